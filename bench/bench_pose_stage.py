"""Frames/s through the whole Faust pose stage against a bare inference loop over the same frames.

    .venv/bin/python -m bench.bench_pose_stage [--quick] [--frames N] [--size 640x480]

One run, side by side on the same JPEG frames (the squat photo drifting, as a tracked camera sees
it): bare loops in this process, decoding the way the stage used to (whole image to BGR, then an
RGB copy), whole straight to RGB, and at reduced size in the DCT domain straight to RGB (the
stage's way: Estimator.input_scale); then the frames produced to the embedded broker and consumed
by a `booth process` worker, timed by the worker's own pose timestamps, once with its inference in
a child process (the default) and once in a thread; the reference loop runs again at the end and
the ratio is taken against the mean of its two runs. The worker's CPU per frame (its inference
process included) is split by its booth_pose_cpu_seconds_total into decode, inference, tracking
and smoothing, the rest being its event loop (Faust, the Kafka client, message encoding). Also the capture-to-pose
latency p50/p95 of the stage at a paced 30 fps, and whether MoveNet takes several cameras' frames
in one inference call. Target: stage / bare (the stage's own decode) >= 0.90.
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

from bench.cpu import scrape_counter, tree_cpu, wait_for_metrics
from infra import kafka
from infra.settings import REPO_ROOT
from infra.stack import Stack, embedded_settings, free_port
from processors.estimate import parse_frame
from schemas import Frame, PoseEstimate, decode, frame_key
from schemas.images import decode_bgr, decode_rgb, reduction_for
from vision.pose import load_estimator
from vision.pose.synthetic import moving_photo_clip

TARGET = 0.90


def frames(n: int, size: tuple[int, int] = (640, 480)) -> list[Frame]:
    photo_path = REPO_ROOT.parent / "shared" / "data" / "images" / "squat.png"
    if photo_path.is_file():
        photo = cv2.cvtColor(cv2.imread(str(photo_path)), cv2.COLOR_BGR2RGB)
    else:
        from skimage import data

        photo = data.astronaut()
    out = []
    for i, (rgb, _) in enumerate(moving_photo_clip(photo, n_frames=n, size=size, seed=2)):
        jpg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
        out.append(
            Frame(
                session="bench",
                camera="cam0",
                seq=i,
                capture_ns=i * 33_333_333,
                wall_time=time.time(),
                width=size[0],
                height=size[1],
                image=jpg,
            )
        )
    return out


DECODES = {
    "whole to BGR + RGB copy (before)": "bgr",
    "whole, straight to RGB": "rgb",
    "reduced in the DCT domain, to RGB (the stage's)": "reduced",
}


def bare(clip: list[Frame], how: str) -> tuple[float, float, float]:
    """(frames/s, decode CPU ms/frame, inference CPU ms/frame) of a decode + estimate loop."""
    estimator = load_estimator("movenet")
    key, stream = frame_key("bench", "cam0"), "bench/cam0"
    raws = [f.encode() for f in clip]

    def decode_one(raw: bytes) -> tuple:
        frame = parse_frame(key, raw)
        if how == "bgr":
            return cv2.cvtColor(decode_bgr(frame), cv2.COLOR_BGR2RGB), 1
        if how == "rgb":
            return decode_rgb(frame)
        return decode_rgb(frame, reduction_for(estimator.input_scale(stream, frame.width, frame.height)))

    image, r = decode_one(raws[0])
    estimator.estimate_scaled(image, stream, 1 / r)  # warm-up, as the worker has had
    estimator.reset()
    decode_s = infer_s = 0.0
    t0 = time.perf_counter()
    for raw in raws:
        c0 = time.thread_time()
        image, r = decode_one(raw)
        c1 = time.thread_time()
        estimator.estimate_scaled(image, stream, 1 / r)
        decode_s, infer_s = decode_s + c1 - c0, infer_s + time.thread_time() - c1
    rate = len(clip) / (time.perf_counter() - t0)
    return rate, 1000 * decode_s / len(clip), 1000 * infer_s / len(clip)


def batching(clip: list[Frame]) -> str:
    """Whether MoveNet runs several cameras' frames in one call: the interpreter resized to a batch
    of 4 must give each frame what a call of its own gives."""
    from vision import models
    from vision.pose import tflite
    from vision.pose.imaging import letterbox
    from vision.pose.movenet import CPU_MODEL, INPUT_SIZE

    path = models.model_path(models.find_models_dir(), CPU_MODEL)
    batch = np.stack([letterbox(decode_rgb(f)[0], INPUT_SIZE, INPUT_SIZE)[0] for f in clip[:4]])
    single = tflite.runtime().Interpreter(model_path=str(path), num_threads=1)
    single.allocate_tensors()
    alone = []
    for image in batch:
        single.set_tensor(single.get_input_details()[0]["index"], image[None])
        single.invoke()
        alone.append(single.get_tensor(single.get_output_details()[0]["index"])[0])
    batched = tflite.runtime().Interpreter(model_path=str(path), num_threads=1)
    index = batched.get_input_details()[0]["index"]
    try:
        batched.resize_tensor_input(index, list(batch.shape))
        batched.allocate_tensors()
        batched.set_tensor(index, batch)
        batched.invoke()
    except (RuntimeError, ValueError) as exc:
        return f"no: {' '.join(str(exc).split())}"
    out = batched.get_tensor(batched.get_output_details()[0]["index"])
    if out.shape[0] != len(batch) or not np.allclose(out, np.stack(alone), atol=1e-3):
        return "no: the batched call does not give each frame its own result"
    return "yes"


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


def through_stage(
    clip: list[Frame], tmp: Path, paced_s: float, inference: str
) -> tuple[float, np.ndarray, dict[str, float]]:
    """Throughput: the whole clip waits on the topic, then the worker starts; the rate is taken from
    the worker's own timestamps (first to last pose), so the benchmark's producer and consumer do not
    compete for the two cores while it is measured. Latency: frames sent at 30 fps to a warm worker.
    inference: where the worker runs its backend (Settings.pose_inference); its CPU includes that
    process."""
    settings = embedded_settings(tmp, metrics_port=-1)
    stack = Stack(settings, state_dir=tmp)
    stack.up(prometheus=False)
    p = kafka.producer(settings)
    for f in clip:
        p.send(settings.topic_frames, key=frame_key(f.session, f.camera), value=f.encode())
    p.flush()
    port = free_port()
    worker = subprocess.Popen(
        [sys.executable, "-m", "booth.cli", "process", "--backend", "movenet"],
        env=settings.to_env(metrics_port=port, pose_inference=inference),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        c = kafka.consumer(settings, settings.topic_poses, group_id=None)
        wait_for_metrics(port)
        cpu0, steps0 = tree_cpu(worker.pid), scrape_counter(port, "booth_pose_cpu_seconds_total", "step")
        poses = _poses(c, "bench", len(clip), worker, every_s=1.0)
        # The smoothing agent runs just behind the pose agent: let it finish the backlog too.
        time.sleep(2.0)
        cpu1, steps1 = tree_cpu(worker.pid), scrape_counter(port, "booth_pose_cpu_seconds_total", "step")
        split = {step: 1000 * (steps1.get(step, 0.0) - steps0.get(step, 0.0)) / len(clip) for step in steps1}
        split["event loop"] = 1000 * (cpu1 - cpu0) / len(clip) - sum(split.values())
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
        return rate, latencies, split
    finally:
        worker.terminate()
        worker.wait(20)
        stack.down()


def _size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    return int(width), int(height)


WHERE = {"process": "inference in a child process (the stage's)", "thread": "inference in a thread"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--frames", type=int, default=None)
    ap.add_argument("--size", type=_size, default=(640, 480), help="Frame size, WIDTHxHEIGHT (default 640x480).")
    args = ap.parse_args()
    n = args.frames or (120 if args.quick else 600)
    clip = frames(n, args.size)
    loops = {name: bare(clip, how) for name, how in DECODES.items()}
    stages = {}
    for where in WHERE:
        with tempfile.TemporaryDirectory() as tmp:
            stages[where] = through_stage(clip, Path(tmp), 3 if args.quick else 10, where)
    # The reference loop once more after the stages: the machine's pace drifts by a few per cent
    # over minutes, and the ratio is taken against the mean of the two.
    stage_decode = "reduced in the DCT domain, to RGB (the stage's)"
    again = bare(clip, "reduced")
    reference = (loops[stage_decode][0] + again[0]) / 2
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"pose stage, MoveNet CPU, {n} frames of {args.size[0]}x{args.size[1]} JPEG")
    for col in ("path", "frames/s", "x bare", "decode CPU", "inference CPU", "latency p50", "latency p95"):
        t.add_column(col)
    rows = {f"bare loop: {name}": v for name, v in loops.items()}
    rows[f"bare loop: {stage_decode}, again"] = again
    for name, (rate, dec, inf) in rows.items():
        t.add_row(name, f"{rate:.1f}", f"{rate / reference:.2f}", f"{dec:.2f} ms", f"{inf:.2f} ms")
    for where, (rate, lat, split) in stages.items():
        t.add_row(
            f"Faust worker, {WHERE[where]}",
            f"{rate:.1f}",
            f"{rate / reference:.2f}",
            f"{split.get('decode', 0):.2f} ms",
            f"{split.get('inference', 0):.2f} ms",
            f"{np.percentile(lat, 50) * 1000:.0f} ms",
            f"{np.percentile(lat, 95) * 1000:.0f} ms",
        )
    t.caption = (
        "x bare: against the loop with the stage's own decode (the mean of its two runs); CPU: thread CPU "
        "time per frame; latency: capture to pose at a paced 30 fps, one camera"
    )
    Console(width=150).print(t)
    for where, (_, _, split) in stages.items():
        print(
            f"worker CPU per frame, {WHERE[where]}: "
            + ", ".join(f"{k} {v:.2f} ms" for k, v in split.items())
            + f"; total {sum(split.values()):.2f} ms"
        )
    print(f"several frames in one MoveNet call (batch of 4): {batching(clip)}")
    ratio = stages["process"][0] / reference
    print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"target stage/bare >= {TARGET:.2f}: {'met' if ratio >= TARGET else 'NOT met'} ({ratio:.2f})")


if __name__ == "__main__":
    main()
