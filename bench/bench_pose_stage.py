"""Frames/s through the whole Faust pose stage against a bare inference loop over the same frames.

    .venv/bin/python -m bench.bench_pose_stage [--quick] [--frames N]

One run, side by side: (1) a bare loop decoding and estimating the same JPEG frames in this process
(the work the stage cannot avoid), (2) the same frames produced to the embedded broker and consumed
by a `booth process` worker, timed by the worker's own pose timestamps. Also the capture-to-pose
latency p50/p95 of the stage at a paced 30 fps. Target: stage / bare >= 0.85.
"""

from __future__ import annotations

import argparse
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
from schemas import Frame, PoseEstimate, decode, frame_key
from vision.pose import load_estimator
from vision.pose.synthetic import moving_photo_clip


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
        out.append(
            Frame(
                session="bench",
                camera="cam0",
                seq=i,
                capture_ns=i * 33_333_333,
                wall_time=time.time(),
                width=640,
                height=480,
                image=jpg,
            )
        )
    return out


def bare(clip: list[Frame]) -> float:
    stage = PoseStage(load_estimator("movenet"))
    stage(frame_key("bench", "cam0"), clip[0].encode())  # warm-up, as the worker has had
    t0 = time.perf_counter()
    for f in clip:
        stage(frame_key("bench", "cam0"), f.encode())
    return len(clip) / (time.perf_counter() - t0)


def _poses(consumer, session: str, want: int, worker, every_s: float = 0.0) -> list[PoseEstimate]:
    """The session's poses by seq; `every_s` spaces the reads so this process stays off the CPU."""
    got: dict[int, PoseEstimate] = {}
    while len(got) < want:
        if worker.poll() is not None:
            raise RuntimeError("the worker exited")
        time.sleep(every_s)
        for records in consumer.poll(timeout_ms=500).values():
            for r in records:
                pose = decode(r.value)
                if isinstance(pose, PoseEstimate) and pose.session == session:
                    got.setdefault(pose.seq, pose)
    return [got[k] for k in sorted(got)]


def through_stage(clip: list[Frame], tmp: Path, paced_s: float) -> tuple[float, np.ndarray]:
    """Throughput: the whole clip waits on the topic, then the worker starts; the rate is taken from
    the worker's own timestamps (first to last pose), so the benchmark's producer and consumer do not
    compete for the two cores while it is measured. Latency: frames sent at 30 fps to a warm worker."""
    settings = embedded_settings(tmp, metrics_port=-1)
    stack = Stack(settings, state_dir=tmp)
    stack.up(prometheus=False)
    p = kafka.producer(settings)
    for f in clip:
        p.send(settings.topic_frames, key=frame_key(f.session, f.camera), value=f.encode())
    p.flush()
    worker = subprocess.Popen(
        [sys.executable, "-m", "booth.cli", "process", "--backend", "movenet"],
        env=settings.to_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        c = kafka.consumer(settings, settings.topic_poses, group_id=None)
        poses = _poses(c, "bench", len(clip), worker, every_s=1.0)
        stamps = np.array(sorted(q.pose_wall_time for q in poses))
        rate = (len(stamps) - 1) / (stamps[-1] - stamps[0])
        live = [f.model_copy(update={"session": "live"}) for f in clip[: int(paced_s * 30)]]
        t0 = time.perf_counter()
        for i, f in enumerate(live):
            time.sleep(max(0.0, t0 + i / 30 - time.perf_counter()))
            p.send(
                settings.topic_frames,
                key=frame_key("live", "cam0"),
                value=f.model_copy(update={"wall_time": time.time()}).encode(),
            )
        p.flush()
        latencies = np.array([q.pose_wall_time - q.wall_time for q in _poses(c, "live", len(live), worker)])
        c.close()
        p.close()
        return rate, latencies
    finally:
        worker.terminate()
        worker.wait(20)
        stack.down()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--frames", type=int, default=None)
    args = ap.parse_args()
    n = args.frames or (120 if args.quick else 600)
    clip = frames(n)
    bare_rate = bare(clip)
    with tempfile.TemporaryDirectory() as tmp:
        stage_rate, lat = through_stage(clip, Path(tmp), paced_s=3 if args.quick else 10)
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"pose stage, MoveNet CPU, {n} frames of 640x480 JPEG")
    for col in ("path", "frames/s", "x bare", "latency p50", "latency p95"):
        t.add_column(col)
    t.add_row("bare decode + estimate loop", f"{bare_rate:.1f}", "1.00", "-", "-")
    t.add_row(
        "Faust worker (pose + smoothing agents)",
        f"{stage_rate:.1f}",
        f"{stage_rate / bare_rate:.2f}",
        f"{np.percentile(lat, 50) * 1000:.0f} ms",
        f"{np.percentile(lat, 95) * 1000:.0f} ms",
    )
    t.caption = "latency: capture to pose at a paced 30 fps, one camera"
    Console().print(t)
    ratio = stage_rate / bare_rate
    print(f"target stage/bare >= 0.85: {'met' if ratio >= 0.85 else 'NOT met'} ({ratio:.2f})")


if __name__ == "__main__":
    main()
