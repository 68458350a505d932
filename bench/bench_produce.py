"""Camera producer throughput at 640x480: encode+produce against a bare encode loop and a bare produce.

    .venv/bin/python -m bench.bench_produce [--quick] [--frames N] [--quality Q]

Starts a private embedded stack (broker + S3) on free ports and stops it at the end. Every row runs
in this one process on the same synthetic frames (a textured, moving scene: JPEGs of realistic size):

* bare encode      RGB -> BGR and JPEG encode in a loop (what the capture thread does, without Kafka)
* bare produce     pre-encoded Frame messages handed to the producer, then flushed (all acknowledged)
* encode+produce   run_cameras on the frames as fast as possible (speed 0, policy block: nothing
                   dropped), timed until every frame is acknowledged
* ..., 2 cams      the same with two cameras at once (frames/s summed over both)
* record-first     the high-speed mode's recording: frames to H.264 files in the spool (no JPEG, no
                   network), timed until the files are closed

Ratios are frames/s divided by the bare encode and bare produce rates measured in the same run.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

SIZE = (640, 480)


def synthetic_frames(n: int, size: tuple[int, int] = SIZE, seed: int = 0) -> list[np.ndarray]:
    """RGB frames: a smooth background, sensor-like noise and a few moving discs."""
    width, height = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    background = np.stack([xx * 255 / width, yy * 255 / height, (xx + yy) * 127 / (width + height)], -1)
    noise = rng.normal(0, 6, (8, height, width, 3))
    frames = []
    for i in range(n):
        image = np.clip(background + noise[i % len(noise)], 0, 255).astype(np.uint8)
        for k in range(4):
            x = int((k * 150 + i * (3 + k)) % width)
            cv2.circle(image, (x, height // 2 + (k - 2) * 60), 40, (255 - 50 * k, 60 * k, 200), -1)
        frames.append(image)
    return frames


def bare_encode(frames: list[np.ndarray], quality: int) -> tuple[float, list[bytes]]:
    from producers.camera import encode_jpeg

    started = time.perf_counter()
    jpegs = [encode_jpeg(cv2.cvtColor(f, cv2.COLOR_RGB2BGR), SIZE, quality)[0] for f in frames]
    return time.perf_counter() - started, jpegs


def bare_produce(settings, producer, jpegs: list[bytes]) -> float:
    from schemas import Frame, frame_key

    messages = [
        Frame(
            session="bench",
            camera="bare",
            seq=i,
            capture_ns=i,
            wall_time=time.time(),
            width=SIZE[0],
            height=SIZE[1],
            image=jpeg,
        ).encode()
        for i, jpeg in enumerate(jpegs)
    ]
    key = frame_key("bench", "bare")
    acknowledged = []
    started = time.perf_counter()
    for message in messages:
        producer.send(settings.topic_frames, key=key, value=message).add_callback(acknowledged.append)
    producer.flush(timeout=120)
    elapsed = time.perf_counter() - started
    assert len(acknowledged) == len(messages), "not every message was acknowledged"
    return elapsed


def encode_and_produce(settings, producer, frames: list[np.ndarray], quality: int, cameras: int) -> float:
    from producers.camera import run_cameras

    sources = {f"cam{i}": frames for i in range(cameras)}
    started = time.perf_counter()
    summary = run_cameras(
        settings, "bench", sources, speed=0, quality=quality, queue_size=32, policy="block", producer=producer
    )
    elapsed = time.perf_counter() - started
    assert summary.ok and summary.total("acknowledged") == len(frames) * cameras, summary.as_dict()
    return elapsed


def record_first(settings, frames: list[np.ndarray]) -> float:
    from producers.spool import record_cameras

    started = time.perf_counter()
    summary = record_cameras(settings, "bench", {"rec": frames}, speed=0)
    elapsed = time.perf_counter() - started
    assert summary.total("recorded") == len(frames), summary.as_dict()
    return elapsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few frames, one repeat: finishes in seconds")
    parser.add_argument("--frames", type=int, default=None, help="frames per measurement (default 300, quick 40)")
    parser.add_argument("--repeats", type=int, default=None, help="best of this many runs (default 3, quick 1)")
    parser.add_argument("--quality", type=int, default=90)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    n = args.frames or (40 if args.quick else 300)
    repeats = args.repeats or (1 if args.quick else 3)

    from infra.stack import Stack, embedded_settings
    from producers.broker import connect

    state = Path(tempfile.mkdtemp(prefix="bench-produce-"))
    settings = embedded_settings(state)
    stack = Stack(settings, state_dir=state)
    try:
        stack.up(prometheus=False)
        frames = synthetic_frames(n)
        producer = connect(settings, topic=settings.topic_frames)
        try:
            encode_and_produce(settings, producer, frames[:5], args.quality, 1)  # warm-up: connections, metadata
            best: dict[str, float] = {}

            def keep(label: str, seconds: float) -> None:
                best[label] = min(best.get(label, float("inf")), seconds)

            jpegs = bare_encode(frames, args.quality)[1]
            runs = {
                "bare encode": lambda: bare_encode(frames, args.quality)[0],
                "bare produce": lambda: bare_produce(settings, producer, jpegs),
                "encode+produce": lambda: encode_and_produce(settings, producer, frames, args.quality, 1),
                "encode+produce, 2 cams": lambda: encode_and_produce(settings, producer, frames, args.quality, 2) / 2,
                "record-first (H.264)": lambda: record_first(settings, frames),
            }
            labels = list(runs)
            for repeat in range(repeats):
                # Rotate the order each repeat so no row always runs first (cold caches, clock ramp).
                for label in labels[repeat % len(labels) :] + labels[: repeat % len(labels)]:
                    keep(label, runs[label]())
        finally:
            producer.close(timeout=5)
    finally:
        stack.down()
        shutil.rmtree(state, ignore_errors=True)
    _print(best, n, repeats, args.quality, float(np.mean([len(j) for j in jpegs])))


def _print(best: dict[str, float], n: int, repeats: int, quality: int, jpeg_bytes: float) -> None:
    from rich.console import Console
    from rich.table import Table

    order = ("bare encode", "bare produce", "encode+produce", "encode+produce, 2 cams", "record-first (H.264)")
    fps = {label: n / best[label] for label in order}
    table = Table(
        title=f"camera producer, {SIZE[0]}x{SIZE[1]}, JPEG q{quality} (mean {jpeg_bytes / 1024:.0f} KiB), "
        f"{n} frames, best of {repeats}"
    )
    for column in ("path", "frames/s", "MB/s", "x bare encode", "x bare produce"):
        table.add_column(column, justify="left" if column == "path" else "right")
    for label, rate in fps.items():
        megabytes = "-" if label.startswith("record-first") else f"{rate * jpeg_bytes / 1e6:.1f}"
        table.add_row(
            label, f"{rate:.0f}", megabytes, f"{rate / fps['bare encode']:.2f}", f"{rate / fps['bare produce']:.2f}"
        )
    Console().print(table)


if __name__ == "__main__":
    main()
