"""Frames/s through the whole Faust pose stage against a bare inference loop over the same frames.

    .venv/bin/python -m bench.bench_pose_stage [--quick] [--frames N]

One run, side by side: (1) a bare loop decoding and estimating the same JPEG frames in this process
(the work the stage cannot avoid), (2) the same frames produced to the embedded broker and consumed
by a `booth process` worker, timed from the first frame sent to the last pose received. Also the
capture-to-pose latency p50/p95 of the stage. Target: stage / bare >= 0.85.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from infra import kafka
from infra.settings import REPO_ROOT
from infra.stack import Stack, embedded_settings
from processors.app import PoseStage
from processors.pose import load_estimator
from processors.pose.synthetic import moving_photo_clip
from schemas import Frame, PoseEstimate, decode, frame_key


def frames(n: int) -> list[Frame]:
    photo_path = REPO_ROOT.parent / "shared" / "data" / "images" / "squat.png"
    if photo_path.is_file():
        photo = cv2.cvtColor(cv2.imread(str(photo_path)), cv2.COLOR_BGR2RGB)
    else:
        from skimage import data

        photo = data.astronaut()
    out = []
    for i, (rgb, _) in enumerate(moving_photo_clip(photo, n_frames=n, size=(640, 480), seed=2)):
        jpg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
        out.append(Frame(session="bench", camera="cam0", seq=i, capture_ns=i * 33_333_333, wall_time=time.time(),
                         width=640, height=480, image=jpg))
    return out


def bare(clip: list[Frame]) -> float:
    stage = PoseStage(load_estimator("movenet"))
    stage(frame_key("bench", "cam0"), clip[0].encode())  # warm-up, as the worker has had
    t0 = time.perf_counter()
    for f in clip:
        stage(frame_key("bench", "cam0"), f.encode())
    return len(clip) / (time.perf_counter() - t0)


def through_stage(clip: list[Frame], tmp: Path) -> tuple[float, np.ndarray]:
    settings = embedded_settings(tmp, metrics_port=-1)
    stack = Stack(settings, state_dir=tmp)
    stack.up(prometheus=False)
    env = dict(os.environ)
    for name, value in settings.model_dump().items():
        if value is not None:
            env[f"BOOTH_{name.upper()}"] = str(value.get_secret_value() if hasattr(value, "get_secret_value") else value)
    worker = subprocess.Popen([sys.executable, "-m", "booth.cli", "process", "--backend", "movenet"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        p = kafka.producer(settings)
        c = kafka.consumer(settings, settings.topic_poses, group_id=None)
        # Warm-up: the worker joins its group and loads the model before the clock starts.
        p.send(settings.topic_frames, key=frame_key("warm", "cam0"),
               value=clip[0].model_copy(update={"session": "warm"}).encode()).get(30)
        while not any(decode(r.value).session == "warm" for rs in c.poll(timeout_ms=500).values() for r in rs):
            if worker.poll() is not None:
                raise RuntimeError("the worker exited")
        t0 = time.perf_counter()
        for f in clip:
            p.send(settings.topic_frames, key=frame_key(f.session, f.camera),
                   value=f.model_copy(update={"wall_time": time.time()}).encode())
        p.flush()
        latencies, seen = [], set()
        while len(seen) < len(clip):
            for records in c.poll(timeout_ms=500).values():
                for r in records:
                    pose = decode(r.value)
                    if isinstance(pose, PoseEstimate) and pose.session == "bench" and pose.seq not in seen:
                        seen.add(pose.seq)
                        latencies.append(pose.pose_wall_time - pose.wall_time)
        rate = len(clip) / (time.perf_counter() - t0)
        p.close()
        c.close()
        return rate, np.array(latencies)
    finally:
        worker.terminate()
        worker.wait(20)
        stack.down()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--frames", type=int, default=None)
    args = ap.parse_args()
    n = args.frames or (60 if args.quick else 300)
    clip = frames(n)
    bare_rate = bare(clip)
    with tempfile.TemporaryDirectory() as tmp:
        stage_rate, lat = through_stage(clip, Path(tmp))
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"pose stage, MoveNet CPU, {n} frames of 640x480 JPEG")
    for col in ("path", "frames/s", "x bare", "latency p50", "latency p95"):
        t.add_column(col)
    t.add_row("bare decode + estimate loop", f"{bare_rate:.1f}", "1.00", "-", "-")
    t.add_row("Faust stage (broker in and out)", f"{stage_rate:.1f}", f"{stage_rate / bare_rate:.2f}",
              f"{np.percentile(lat, 50) * 1000:.0f} ms", f"{np.percentile(lat, 95) * 1000:.0f} ms")
    Console().print(t)
    print(f"target stage/bare >= 0.85: {'met' if stage_rate / bare_rate >= 0.85 else 'NOT met'}")


if __name__ == "__main__":
    main()
