"""End-to-end load: cameras -> pose -> smoothing -> dataset, every frame accounted for.

    .venv/bin/python -m bench.bench_load [--quick] [--cameras 4] [--fps 30] [--seconds 60]
                                          [--size 640x480] [--workers 1]

Starts a private embedded stack (broker + S3 server) on free ports, `--workers` stream-processing
workers (`booth process --backend movenet`, subprocesses) and an Assembler in this process. A short
warm-up session runs through the whole pipeline first, so model loading and consumer-group joins
are not measured. Then producers.camera.run_cameras sends every camera in real time from memory
(the squat photo drifting across the frame, vision.pose.synthetic), the session ends, and the
benchmark waits for the dataset. The full run is 4 cameras x 30 fps x 60 s; `--quick` is 5 s.

Accounting, for the frames the broker acknowledged:

    frames in = samples written + rejected by the assembler (no person, ...) + dead letters

Latencies are wall-clock, from a frame's capture time to: its pose published (PoseEstimate's
pose_wall_time), its smoothed pose published (SmoothedPose.latency_ms) and its sample written to
object storage (the shard holding it stored). Rates are compared with the target rate
(cameras x fps) in the same run.
"""

from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

from infra import kafka
from infra.settings import REPO_ROOT, Settings
from infra.stack import Stack, embedded_settings
from infra.waiting import wait_until
from trainer.assembler import Assembler

SHARED = REPO_ROOT.parent / "shared"
SESSION = "load"


class _TimedAssembler(Assembler):
    """Notes when each sample's shard reached the object store."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.written: dict[tuple[str, str, int], float] = {}

    def _flush(self, state, buffers):
        for buf in buffers:
            super()._flush(state, [buf])
            now = time.time()
            for seq in buf.samples:
                self.written[(state.session, buf.camera, seq)] = now


def _clip(size: tuple[int, int], seed: int) -> list[np.ndarray]:
    import cv2

    from vision.pose.synthetic import moving_photo_clip

    photo = cv2.cvtColor(cv2.imread(str(SHARED / "data" / "images" / "squat.png")), cv2.COLOR_BGR2RGB)
    return [rgb for rgb, _ in moving_photo_clip(photo, n_frames=60, size=size, seed=seed)]


def _read_topic(settings: Settings, topic: str) -> list:
    """Every record of a topic, read without a group until a poll brings nothing new."""
    consumer = kafka.consumer(settings, topic, group_id=None)
    records: list = []
    try:
        quiet = 0
        while quiet < 3:
            batch = [r for rs in consumer.poll(timeout_ms=500).values() for r in rs]
            records.extend(batch)
            quiet = 0 if batch else quiet + 1
    finally:
        consumer.close()
    return records


def _percentiles(values: list[float]) -> tuple[str, str, str, str]:
    if not values:
        return ("-",) * 4
    a = np.asarray(values)
    return tuple(f"{v:.3f}" for v in (np.percentile(a, 50), np.percentile(a, 95), a.max())) + (str(len(a)),)


def run(cameras: int, fps: float, seconds: float, size: tuple[int, int], workers: int) -> None:
    from producers.camera import run_cameras
    from producers.session import publish
    from schemas import DeadLetter, PoseEstimate, SmoothedPose, decode
    from trainer.assembler import read_manifest

    with tempfile.TemporaryDirectory(prefix="booth-load-") as tmp:
        state = Path(tmp)
        settings = embedded_settings(state, app_id="load")
        stack = Stack(settings, state_dir=state)
        stack.up(prometheus=False)
        procs: list[subprocess.Popen] = []
        stop = threading.Event()
        assembler = _TimedAssembler(settings, group_id=settings.group("assembler"), min_samples=1, quiet=True)
        thread = threading.Thread(target=assembler.run, kwargs=dict(stop_event=stop, serve_metrics=False), daemon=True)
        try:
            for i in range(workers):
                log = open(state / f"worker{i}.log", "ab")
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "booth.cli", "process", "--backend", "movenet"],
                        env=settings.to_env(metrics_port=-1),
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
                log.close()
            thread.start()
            # Warm-up: a short session through every stage, so nothing below waits on start-up.
            t0 = time.monotonic()
            warm = {"warm": _clip(size, seed=99)[:6]}
            publish(settings, "warmup", "start", list(warm))
            run_cameras(settings, "warmup", warm, fps=fps, size=size)
            publish(settings, "warmup", "end")
            wait_until(lambda: read_manifest(settings, "warmup"), 180, 0.5, "the warm-up session's dataset")
            warmup_s = time.monotonic() - t0

            clips = {f"cam{i}": _clip(size, seed=i) for i in range(cameras)}
            n = int(round(fps * seconds))
            sources = {camera: [clip[k % len(clip)] for k in range(n)] for camera, clip in clips.items()}
            publish(settings, SESSION, "start", list(sources))
            t0 = time.monotonic()
            summary = run_cameras(settings, SESSION, sources, fps=fps, size=size)
            capture_s = time.monotonic() - t0
            publish(settings, SESSION, "end")
            manifest = wait_until(lambda: read_manifest(settings, SESSION), max(180.0, 4 * seconds), 0.5, "the dataset")
            drain_s = time.monotonic() - t0
            poses = [decode(r.value) for r in _read_topic(settings, settings.topic_poses)]
            smoothed = [decode(r.value) for r in _read_topic(settings, settings.topic_smoothed)]
            letters = [decode(r.value) for r in _read_topic(settings, settings.topic_deadletter)]
        finally:
            stop.set()
            thread.join(30)
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
            stack.down()

    mine = lambda m: m.session == SESSION  # noqa: E731 - the warm-up session is not measured
    poses = [p for p in poses if isinstance(p, PoseEstimate) and mine(p)]
    smoothed = [s for s in smoothed if isinstance(s, SmoothedPose) and mine(s)]
    letters = [d for d in letters if isinstance(d, DeadLetter) and (d.key or "").startswith(SESSION + "/")]
    first_pose: dict = {}
    for p in poses:
        first_pose.setdefault((p.camera, p.seq), p)
    first_smooth: dict = {}
    for s in smoothed:
        first_smooth.setdefault((s.camera, s.seq), s)
    to_pose = [p.pose_wall_time - p.wall_time for p in first_pose.values()]
    to_smoothed = [s.latency_ms / 1000 for s in first_smooth.values()]
    to_sample = [
        t - first_pose[(c, q)].wall_time
        for (sess, c, q), t in assembler.written.items()
        if sess == SESSION and (c, q) in first_pose
    ]

    acked = summary.total("acknowledged")
    rejected = Counter(manifest.get("rejected", {}))
    samples = manifest["samples"]
    accounted = samples + sum(rejected.values()) + len(letters)
    target = cameras * fps
    # A stage's rate is taken from the first capture to the last frame it finished: below the
    # target rate, the stage falls behind and its latency grows with the length of the run.
    start = min((p.wall_time for p in first_pose.values()), default=0.0)
    spans = {
        "pose": max((p.pose_wall_time for p in first_pose.values()), default=start) - start,
        "smooth": max((s.wall_time + s.latency_ms / 1000 for s in first_smooth.values()), default=start) - start,
        "sample": max((t for (sess, _, _), t in assembler.written.items() if sess == SESSION), default=start) - start,
    }

    print(
        f"\n{cameras} cameras x {fps:g} fps x {seconds:g} s at {size[0]}x{size[1]}, {workers} worker(s) "
        f"(movenet, {settings.pose_threads} TFLite thread(s)); warm-up took {warmup_s:.1f} s; "
        f"capture {capture_s:.1f} s, dataset ready {drain_s:.1f} s after capture began\n"
    )
    print(f"{'frames':<44} {'count':>7} {'per s':>8} {'vs target':>10}")
    rows = [
        ("captured", summary.total("captured"), capture_s),
        ("dropped by the cameras' queues", summary.total("dropped"), None),
        ("failed to reach the broker", summary.total("failed"), None),
        ("acknowledged by the broker (frames in)", acked, capture_s),
        ("pose estimates (first copy per frame)", len(first_pose), spans["pose"]),
        ("pose estimates published twice", len(poses) - len(first_pose), None),
        ("smoothed poses (first copy per frame)", len(first_smooth), spans["smooth"]),
        ("samples written", samples, spans["sample"]),
        *((f"rejected by the assembler: {why}", count, None) for why, count in sorted(rejected.items())),
        ("dead letters", len(letters), None),
    ]
    for name, count, over in rows:
        per_s, ratio = ("", "") if not over else (f"{count / over:.1f}", f"{count / over / target:.2f}x")
        print(f"{name:<44} {count:>7} {per_s:>8} {ratio:>10}")
    verdict = "yes" if accounted == acked else f"NO: {acked - accounted:+d} frames unaccounted"
    print(
        f"\nframes in == samples + rejected + dead letters: {acked} == {samples} + {sum(rejected.values())} + "
        f"{len(letters)} -> {verdict}\n"
    )
    print(f"{'latency from capture (s)':<44} {'p50':>7} {'p95':>8} {'max':>10} {'frames':>7}")
    for name, values in (
        ("to pose published", to_pose),
        ("to smoothed pose published", to_smoothed),
        ("to sample stored", to_sample),
    ):
        p50, p95, top, count = _percentiles(values)
        print(f"{name:<44} {p50:>7} {p95:>8} {top:>10} {count:>7}")
    print(
        f"\n(a sample is stored with its shard of {assembler.config.shard_size} frames per camera; each camera's "
        f"last, partial shard when the session closes, {assembler.config.end_grace_s:g} s after its last message)"
    )


def _size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    return int(width), int(height)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 seconds of capture instead of 60.")
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--seconds", type=float, help="Capture length (default 60; 5 with --quick).")
    parser.add_argument("--size", type=_size, default=(640, 480), help="Frame size, WIDTHxHEIGHT (default 640x480).")
    parser.add_argument("--workers", type=int, default=1, help="Stream-processing worker processes.")
    args = parser.parse_args(argv)
    if not SHARED.is_dir():
        sys.exit(f"the shared photos are not at {SHARED}: the load test needs data/images/squat.png")
    logging.basicConfig(level=logging.ERROR)
    run(args.cameras, args.fps, args.seconds or (5.0 if args.quick else 60.0), args.size, args.workers)


if __name__ == "__main__":
    main()
