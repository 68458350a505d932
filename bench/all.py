"""Run every benchmark in turn: `python -m bench.all [--quick]` (each prints its own table)."""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = (
    "bench_broker_storage",
    "bench_pose",
    "bench_pose_stage",
    "bench_multiperson",
    "bench_parts",
    "bench_smoothing",
    "bench_produce",
    "bench_assemble",
    "bench_train",
    "bench_person",
    "bench_temporal",
    "bench_oneshot",
    "bench_warpcond",
    "bench_dance",
    "bench_warmstart",
    "bench_group",
    "bench_load",
    "bench_guided",
    "bench_mirror",
    "bench_mirror_quality",
)


def main() -> int:
    failed = []
    for name in BENCHMARKS:
        print(f"\n=== bench.{name} ===", flush=True)
        if subprocess.call([sys.executable, "-m", f"bench.{name}", *sys.argv[1:]]) != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
