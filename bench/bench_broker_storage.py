"""The embedded broker's storage engines side by side: in RAM (default) against the embedded S3 server.

    .venv/bin/python -m bench.bench_broker_storage [--quick]

Produces N frame-sized records (acks=all), then reads them back from the start, on a fresh stack
per engine; prints messages/s and MB/s both ways, and the ratio to the memory engine.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from infra import kafka
from infra.stack import Stack, embedded_settings


def run(storage: str, n: int, size: int) -> tuple[float, float, bool]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = embedded_settings(Path(tmp))
        stack = Stack(settings, state_dir=Path(tmp), storage=storage)
        stack.up(prometheus=False)
        try:
            payload = os.urandom(size)
            p = kafka.producer(settings)
            t0 = time.perf_counter()
            for i in range(n):
                p.send(settings.topic_frames, key=b"bench/cam%d" % (i % 4), value=payload)
            p.flush()
            produce_s = time.perf_counter() - t0
            p.close()
            c = kafka.consumer(settings, settings.topic_frames, group_id=None, consumer_timeout_ms=5000)
            t0, got = time.perf_counter(), 0
            for _ in c:
                got += 1
                if got == n:
                    break
            consume_s = time.perf_counter() - t0
            c.close()
            return n / produce_s, n / consume_s, got == n
        finally:
            stack.down()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    n, size = (200, 60_000) if args.quick else (1000, 60_000)
    results = {engine: run(engine, n, size) for engine in ("memory", "s3")}
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"embedded broker storage, {n} records of {size // 1000} kB")
    for col in ("engine", "produce msg/s", "produce MB/s", "consume msg/s", "x memory (produce)", "all read back"):
        t.add_column(col)
    base = results["memory"][0]
    for engine, (prod, cons, ok) in results.items():
        t.add_row(engine, f"{prod:.0f}", f"{prod * size / 1e6:.1f}", f"{cons:.0f}", f"{prod / base:.2f}", str(ok))
    Console().print(t)


if __name__ == "__main__":
    main()
