"""End-to-end load: cameras -> pose -> smoothing -> dataset, every frame accounted for.

    .venv/bin/python -m bench.bench_load [--quick] [--cameras 4] [--fps 30] [--seconds 60]
                                          [--size 640x480] [--workers 1] [--fetch-wait 100]
                                          [--assembler-nice 0]

--cameras, --workers, --fetch-wait and --assembler-nice take comma lists (e.g. `--cameras 1,4
--workers 1,2`): every combination runs in turn, in one invocation, and a summary table compares
them at the end.

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

Where the cores go: CPU seconds (user + system, bench/cpu.py) from capture start to the dataset
being ready, per process (broker, object store, each worker) and per thread of this process
(capture + JPEG encode, Kafka sends, the assembler, the console preview); each worker's share is
split by its own booth_pose_cpu_seconds_total into decode, inference, tracking and smoothing, the
rest being its event loop (Faust, Kafka client, message encoding). Core-ms per frame add up to
what one frame costs the whole box, so `2000 / total` is the frames/s two idle cores could carry.

A console preview (console.preview.PreviewFeed) reads frames and smoothed poses throughout, as the
operator's page would: its age (capture to the frame it would show, sampled every 0.5 s during
capture) and the records it skipped to stay fresh are reported. --assembler-nice runs the
assembler's thread at that niceness, keeping its work (pose maps, shards) off the cores the live
path needs.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

from assembler.consumer import Assembler
from bench.cpu import ThreadCpu, scrape_counter, tree_cpu, wait_for_metrics
from infra import kafka
from infra.settings import REPO_ROOT, Settings
from infra.stack import Stack, embedded_settings, free_port
from infra.waiting import wait_until

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


def _thread_group(name: str) -> str:
    if name.startswith("capture-"):
        return "capture + JPEG encode"
    if name.startswith("send-") or name == "cameras-network-thread":
        return "cameras' Kafka sends"
    if name == "assembler" or "heartbeat" in name or name == "assembler-network-thread":
        return "assembly (join, pose maps, shards)"
    if name == "console-preview":
        return "console preview"
    return "benchmark harness"


def _assemble(assembler: Assembler, stop: threading.Event, nice: int) -> None:
    if nice:
        import os

        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)  # this thread only
    assembler.run(stop_event=stop, serve_metrics=False)


def run(
    cameras: int,
    fps: float,
    seconds: float,
    size: tuple[int, int],
    workers: int,
    fetch_wait_ms: int = 100,
    assembler_nice: int = 0,
    live_fetch_wait_ms: int = 20,
    inference: str = "process",
) -> dict:
    from console.preview import PreviewFeed
    from dataset import read_manifest
    from producers.camera import run_cameras
    from producers.session import publish
    from schemas import DeadLetter, PoseEstimate, SmoothedPose, decode

    with tempfile.TemporaryDirectory(prefix="booth-load-") as tmp:
        state = Path(tmp)
        settings = embedded_settings(
            state,
            app_id="load",
            kafka_fetch_max_wait_ms=fetch_wait_ms,
            kafka_live_fetch_max_wait_ms=live_fetch_wait_ms,
            pose_inference=inference,
        )
        stack = Stack(settings, state_dir=state)
        stack.up(prometheus=False)
        services = {row["service"]: row["pid"] for row in stack.status()}
        procs: list[subprocess.Popen] = []
        ports: list[int] = []
        stop = threading.Event()
        assembler = _TimedAssembler(
            settings, group_id=settings.group("assembler"), min_samples=1, quiet=True, max_poll_records=500
        )
        thread = threading.Thread(
            target=_assemble, args=(assembler, stop, assembler_nice), name="assembler", daemon=True
        )
        feed = PreviewFeed(settings)
        try:
            for i in range(workers):
                log = open(state / f"worker{i}.log", "ab")
                ports.append(free_port())
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "booth.cli", "process", "--backend", "movenet"],
                        env=settings.to_env(metrics_port=ports[-1]),
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
                log.close()
            thread.start()
            feed.start()
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
            for port in ports:
                wait_for_metrics(port)
            publish(settings, SESSION, "start", list(sources))
            cpu_threads = ThreadCpu().start()
            watched = {**{f"worker{i}": p.pid for i, p in enumerate(procs)}, **services}
            cpu0 = {name: tree_cpu(pid) for name, pid in watched.items()}  # a worker with its inference process
            steps0 = [scrape_counter(port, "booth_pose_cpu_seconds_total", "step") for port in ports]
            ages: list[float] = []
            sampling = threading.Event()

            def sample_preview() -> None:
                while not sampling.wait(0.5):
                    now = time.time()
                    ages.extend(now - row["wall_time"] for row in feed.cameras(now) if row["session"] == SESSION)

            sampler = threading.Thread(target=sample_preview, name="preview-sampler", daemon=True)
            sampler.start()
            t0 = time.monotonic()
            cams = kafka.producer(settings, client_id="cameras")
            try:
                summary = run_cameras(settings, SESSION, sources, fps=fps, size=size, producer=cams)
            finally:
                cams.close()
            capture_s = time.monotonic() - t0
            sampling.set()
            sampler.join()
            publish(settings, SESSION, "end")
            manifest = wait_until(lambda: read_manifest(settings, SESSION), max(180.0, 4 * seconds), 0.5, "the dataset")
            drain_s = time.monotonic() - t0
            cpu = cpu_threads.stop(_thread_group)
            for name, pid in watched.items():
                cpu[name] = tree_cpu(pid) - cpu0[name]
            steps = [scrape_counter(port, "booth_pose_cpu_seconds_total", "step") for port in ports]
            poses = [decode(r.value) for r in _read_topic(settings, settings.topic_poses)]
            smoothed = [decode(r.value) for r in _read_topic(settings, settings.topic_smoothed)]
            letters = [decode(r.value) for r in _read_topic(settings, settings.topic_deadletter)]
        finally:
            feed.stop()
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
    print(
        f"\nconsole preview: age of the frame it shows (capture to now) p50 {_pct(ages, 50)} p95 {_pct(ages, 95)} "
        f"max {_pct(ages, 100)}; records skipped to stay fresh: frames {feed.skipped['frames']}, "
        f"poses {feed.skipped['poses']}"
    )
    profile = _profile(cpu, steps0, steps, workers)
    total = sum(profile.values())
    print(
        f"\nwhere the cores went, capture start to dataset ready ({drain_s:.1f} s), per frame acknowledged "
        f"({acked}); load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}"
    )
    print(f"{'component':<52} {'core-ms/frame':>13} {'share':>7} {'cores':>6}")
    for name, seconds in profile.items():
        print(f"{name:<52} {1000 * seconds / acked:>13.2f} {seconds / total:>7.1%} {seconds / drain_s:>6.2f}")
    per_frame_ms = 1000 * total / acked
    print(
        f"{'total':<52} {per_frame_ms:>13.2f} {1:>7.0%} {total / drain_s:>6.2f}\n"
        f"two idle cores could carry about {2000 / per_frame_ms:.0f} frames/s at this cost per frame "
        f"(target {target:g})"
    )
    return {
        "cameras": cameras,
        "workers": workers,
        "fetch_wait_ms": fetch_wait_ms,
        "live_fetch_wait_ms": live_fetch_wait_ms,
        "assembler_nice": assembler_nice,
        "inference": inference,
        "keep_up": len(first_smooth) / max(spans["smooth"], 1e-9) / target if first_smooth else 0.0,
        "dropped": summary.total("dropped") + summary.total("failed"),
        "accounted": accounted == acked,
        "smoothed_p50": _pct([v for v in to_smoothed], 50),
        "smoothed_p95": _pct([v for v in to_smoothed], 95),
        "preview_p95": _pct(ages, 95),
        "core_ms": per_frame_ms,
    }


def _pct(values: list[float], q: float) -> str:
    return f"{np.percentile(values, q) * 1000:.0f} ms" if values else "-"


def _profile(cpu: dict[str, float], before: list[dict], after: list[dict], workers: int) -> dict[str, float]:
    """CPU seconds per component, the workers split into their steps and their event loop."""
    out: dict[str, float] = {}
    for group in ("capture + JPEG encode", "cameras' Kafka sends"):
        out[group] = cpu.get(group, 0.0)
    out["broker (Tansu)"] = cpu.get("kafka", 0.0)
    names = {"decode": "decode (envelope, JPEG)", "inference": "inference (crop/resize + MoveNet)"}
    for step in ("decode", "inference", "tracking", "smoothing"):
        out[f"worker: {names.get(step, step)}"] = sum(
            a.get(step, 0.0) - b.get(step, 0.0) for a, b in zip(after, before)
        )
    stepped = sum(v for k, v in out.items() if k.startswith("worker: "))
    process = sum(cpu.get(f"worker{i}", 0.0) for i in range(workers))
    out["worker: event loop (Faust, Kafka client, messages)"] = max(0.0, process - stepped)
    out["assembly (join, pose maps, shards)"] = cpu.get("assembly (join, pose maps, shards)", 0.0)
    out["object store (nanio)"] = cpu.get("s3", 0.0)
    out["console preview"] = cpu.get("console preview", 0.0)
    out["benchmark harness"] = cpu.get("benchmark harness", 0.0)
    return out


def _size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    return int(width), int(height)


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",")]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 seconds of capture instead of 60.")
    parser.add_argument("--cameras", type=_ints, default=[4], help="Cameras (a comma list runs each).")
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--seconds", type=float, help="Capture length (default 60; 5 with --quick).")
    parser.add_argument("--size", type=_size, default=(640, 480), help="Frame size, WIDTHxHEIGHT (default 640x480).")
    parser.add_argument("--workers", type=_ints, default=[1], help="Stream-processing worker processes (a list).")
    parser.add_argument(
        "--fetch-wait", type=_ints, default=[100], help="BOOTH_KAFKA_FETCH_MAX_WAIT_MS: the batch clients' (a list)."
    )
    parser.add_argument(
        "--live-fetch-wait",
        type=_ints,
        default=[20],
        help="BOOTH_KAFKA_LIVE_FETCH_MAX_WAIT_MS: the pose workers' (a list).",
    )
    parser.add_argument(
        "--assembler-nice", type=_ints, default=[0], help="Niceness of the assembler's thread (a list; 0 = as is)."
    )
    parser.add_argument(
        "--inference",
        type=lambda text: text.split(","),
        default=["process"],
        help="Where each worker runs its pose backend: process, thread (a list).",
    )
    args = parser.parse_args(argv)
    if not SHARED.is_dir():
        sys.exit(f"the shared photos are not at {SHARED}: the load test needs data/images/squat.png")
    logging.basicConfig(level=logging.ERROR)
    seconds = args.seconds or (5.0 if args.quick else 60.0)
    results = [
        run(cameras, args.fps, seconds, args.size, workers, fetch_wait, nice, live, where)
        for cameras, workers, fetch_wait, nice, live, where in itertools.product(
            args.cameras, args.workers, args.fetch_wait, args.assembler_nice, args.live_fetch_wait, args.inference
        )
    ]
    if len(results) < 2:
        return
    print(f"\nsummary, {seconds:g} s of capture per run at {args.fps:g} fps ({args.size[0]}x{args.size[1]})")
    head = (
        "cameras",
        "workers",
        "fetch wait",
        "live wait",
        "assembler nice",
        "inference",
        "keep-up",
        "lost",
        "accounted",
        "smoothed p50",
    )
    print(" ".join(f"{h:>14}" for h in (*head, "smoothed p95", "preview p95", "core-ms/frame")))
    for r in results:
        row = (
            r["cameras"],
            r["workers"],
            f"{r['fetch_wait_ms']} ms",
            f"{r['live_fetch_wait_ms']} ms",
            r["assembler_nice"],
            r["inference"],
            f"{r['keep_up']:.2f}x",
            r["dropped"],
            "yes" if r["accounted"] else "NO",
            r["smoothed_p50"],
            r["smoothed_p95"],
            r["preview_p95"],
            f"{r['core_ms']:.1f}",
        )
        print(" ".join(f"{str(v):>14}" for v in row))


if __name__ == "__main__":
    main()
