"""Dataset assembly throughput against bare S3 puts of the same bytes, side by side in one run.

Starts its own embedded stack (broker + S3 server) in a temporary folder, replays a synthetic
two-camera session (real 640x480 JPEGs, poses, start/end events), assembles it, then writes the
very same sample bytes with plain puts: one put per sample object (.jpg, .posemap.png, .pose.json),
and one put per shard tar. The stack is stopped at the end.

    .venv/bin/python -m bench.bench_assemble [--quick] [--frames N] [--shard-size N]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from assembler.consumer import Assembler
from assembler.synthetic import SyntheticSession, produce
from dataset.reader import shard_samples
from dataset.shards import iter_tar_samples
from infra.objectstore import ObjectStore
from infra.stack import Stack, embedded_settings
from schemas import layout


class _TimedAssembler(Assembler):
    """Measures the time spent working (joining, rendering, writing), not waiting on the broker."""

    busy_s = 0.0

    def process_batch(self, records, now=None):
        t = time.perf_counter()
        try:
            return super().process_batch(records, now)
        finally:
            self.busy_s += time.perf_counter() - t

    def _finalize(self, state, closed_by, now):
        t = time.perf_counter()
        try:
            return super()._finalize(state, closed_by, now)
        finally:
            self.busy_s += time.perf_counter() - t


def _puts(settings, objects: list[tuple[str, bytes]]) -> float:
    store = ObjectStore(settings)
    t = time.perf_counter()
    for key, data in objects:
        store.put(key, data)
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="A small session: finishes in seconds.")
    parser.add_argument("--frames", type=int, help="Frames per camera (default 300; 40 with --quick).")
    parser.add_argument("--shard-size", type=int, default=32)
    parser.add_argument("--resolution", type=int, default=256)
    args = parser.parse_args(argv)
    frames = args.frames or (40 if args.quick else 300)
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory() as tmp:
        settings = embedded_settings(Path(tmp))
        stack = Stack(settings, state_dir=Path(tmp))
        stack.up(prometheus=False)
        try:
            syn = SyntheticSession("bench", frames=frames, size=(640, 480))
            produce(
                settings,
                [syn.event_message(settings, syn.start())]
                + syn.stream_messages(settings)
                + [syn.event_message(settings, syn.end())],
            )
            asm = _TimedAssembler(
                settings,
                group_id="bench",
                shard_size=args.shard_size,
                resolution=args.resolution,
                end_grace_s=0.5,
                min_samples=1,
                quiet=True,
            )
            t0 = time.perf_counter()
            summary = asm.run(idle_exit=0.5, serve_metrics=False)
            wall = time.perf_counter() - t0
            samples = summary.samples
            store = ObjectStore(settings)
            shard_keys = [k for k in store.list(layout.shards_prefix("bench")) if k.endswith(".tar")]
            tars = [(k, store.get(k)) for k in shard_keys]
            assert sum(1 for _, d in tars for _ in shard_samples(d)) == samples == len(syn.expected_samples())
            members = [
                (f"bare/{name}.{suffix}", data)
                for _, d in tars
                for name, parts in iter_tar_samples(d)
                for suffix, data in parts.items()
            ]
            per_object = _puts(settings, members)
            per_shard = _puts(settings, [(f"bare-shards/{k.rsplit('/', 1)[1]}", d) for k, d in tars])
        finally:
            stack.down()

    mb = sum(len(d) for _, d in tars) / 1e6
    rows = [
        ("assembler, busy time (decode, join, render, tar, put)", asm.busy_s),
        ("assembler, wall incl. group join + end grace", wall),
        (f"bare S3 puts, one per sample object ({len(members)} puts)", per_object),
        (f"bare S3 puts, one per shard tar ({len(tars)} puts)", per_shard),
    ]
    print(
        f"\n{samples} samples from 2 cameras at 640x480, pose maps {args.resolution}px, "
        f"shards of {args.shard_size}; {mb:.1f} MB of sample bytes\n"
    )
    print(f"{'method':<58} {'seconds':>8} {'samples/s':>10} {'vs per-object puts':>19}")
    for name, seconds in rows:
        print(f"{name:<58} {seconds:8.2f} {samples / seconds:10.1f} {per_object / seconds:18.2f}x")


if __name__ == "__main__":
    main()
