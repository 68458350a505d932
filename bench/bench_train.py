"""pix2pix training benchmark: classic vs fast networks, and warm start vs scratch.

    .venv/bin/python -m bench.bench_train            # 256x256 speed, 128x128 warm-start study
    .venv/bin/python -m bench.bench_train --quick    # 128x128 speed, 64x64 study; about a minute

Part 1 times training steps at batch 1 for the classic pix2pix pair (U-Net-256 ngf 64 + 70x70
PatchGAN) and the fast variant, each in its own process so peak memory (max RSS growth on CPU,
torch.cuda.max_memory_allocated on CUDA) is its own. Step time is the median of the timed steps,
which keeps other load on the machine from skewing one side.

Part 2 trains a base model on one synthetic person, then fine-tunes on a similar one from that
base (warm) and from scratch for the same number of steps (same network, so the same time), and
compares SSIM on held-out frames of the second person, and how many steps the warm start needed to
reach the SSIM scratch ended with.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

from trainer.pix2pix import checkpoint as ckpt
from trainer.pix2pix.checkpoint import LocalCheckpointStore
from trainer.pix2pix.evaluate import reconstruction_metrics
from trainer.pix2pix.networks import NetConfig, count_parameters
from trainer.pix2pix.run import train_base
from trainer.pix2pix.synthetic import PERSON_A, PERSON_B, make_pairs, random_poses
from trainer.pix2pix.train import TrainConfig, Trainer

VARIANTS = {"classic": NetConfig.classic, "fast": NetConfig.fast}


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def worker(variant: str, size: int, steps: int, warmup: int) -> dict:
    """Run in a child process: time `steps` training steps of one variant."""
    from torch.utils.flop_counter import FlopCounterMode

    pairs = make_pairs(PERSON_A, random_poses(8, size, seed=0), size, size)
    rss0 = _maxrss_mib()
    trainer = Trainer(pairs, TrainConfig(net=VARIANTS[variant](size), batch_size=1))
    cuda = trainer.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    with FlopCounterMode(display=False) as flops:
        trainer.train_step()
    for _ in range(max(0, warmup - 1)):
        trainer.train_step()
    times = []
    for _ in range(steps):
        if cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        trainer.train_step()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else _maxrss_mib() - rss0
    return {
        "variant": variant,
        "device": str(trainer.device) + (" (AMP)" if trainer.amp else ""),
        "params_g": count_parameters(trainer.G),
        "params_d": count_parameters(trainer.D, trainable_only=False),
        "gflop_step": flops.get_total_flops() / 1e9,
        "step_s": statistics.median(times),
        "peak_mib": peak,
        "memory_kind": "CUDA max allocated" if cuda else "max RSS growth",
    }


def speed_table(size: int, steps: int, warmup: int, rounds: int) -> None:
    # Variants alternate over several rounds, and each keeps its least disturbed round (lowest
    # median step time, highest peak memory seen), so a burst of other load on a shared machine
    # does not land on one side only.
    rows: dict[str, dict] = {}
    for _ in range(rounds):
        for variant in VARIANTS:
            cmd = [
                sys.executable,
                "-m",
                "bench.bench_train",
                "--worker",
                variant,
                "--size",
                str(size),
                "--steps",
                str(steps),
                "--warmup",
                str(warmup),
            ]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            row = json.loads(out.strip().splitlines()[-1])
            best = rows.setdefault(variant, row)
            best["step_s"] = min(best["step_s"], row["step_s"])
            best["peak_mib"] = max(best["peak_mib"], row["peak_mib"])
    c, f = rows["classic"], rows["fast"]
    print(
        f"\n== training step, {size}x{size}, batch 1, {c['device']}, best of {rounds} alternating "
        f"rounds of {steps} timed steps (median) =="
    )
    print(f"{'':30}{'classic':>10}{'fast':>10}  fast vs classic")
    lines = [  # (row, classic, fast, format, True if higher is better)
        ("generator params (M)", c["params_g"] / 1e6, f["params_g"] / 1e6, "{:.2f}", False),
        ("discriminator params (M)", c["params_d"] / 1e6, f["params_d"] / 1e6, "{:.2f}", False),
        ("GFLOP per step", c["gflop_step"], f["gflop_step"], "{:.1f}", False),
        ("step time (ms)", c["step_s"] * 1e3, f["step_s"] * 1e3, "{:.0f}", False),
        ("steps/s", 1 / c["step_s"], 1 / f["step_s"], "{:.2f}", True),
        ("peak memory (MiB)", c["peak_mib"], f["peak_mib"], "{:.0f}", False),
    ]
    for name, a, b, fmt, higher_better in lines:
        ratio = (b / a if higher_better else a / b) if min(a, b) > 0 else float("nan")
        word = "higher" if higher_better else "lower"
        print(f"{name:30}{fmt.format(a):>10}{fmt.format(b):>10}  {ratio:.2f}x {word}")
    print(f"(memory: {c['memory_kind']})")


def warm_vs_scratch(size: int, base_steps: int, tune_steps: int, eval_every: int) -> None:
    net = NetConfig.fast(size)
    cfg = TrainConfig(net=net, batch_size=4, checkpoint_every_s=None, seed=1)
    base_pairs = make_pairs(PERSON_A, random_poses(64, size, seed=10), size, size)
    tune_pairs = make_pairs(PERSON_B, random_poses(24, size, seed=20), size, size)
    held_out = make_pairs(PERSON_B, random_poses(12, size, seed=30), size, size)

    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        store = LocalCheckpointStore(tmp)
        train_base(base_pairs, cfg, store, max_steps=base_steps)
        base_bytes = store.load(ckpt.latest_checkpoint(store))
    base_s = time.perf_counter() - t

    curves: dict[str, list[tuple[int, float]]] = {}
    wall: dict[str, float] = {}
    for name in ("scratch", "warm"):
        trainer = Trainer(tune_pairs, cfg)
        if name == "warm":
            trainer.warm_start(base_bytes)
        curve, spent = [(0, reconstruction_metrics(trainer.G, held_out)["ssim"])], 0.0
        while trainer.step < tune_steps:
            t = time.perf_counter()
            trainer.run(max_steps=min(tune_steps, trainer.step + eval_every))
            spent += time.perf_counter() - t
            curve.append((trainer.step, reconstruction_metrics(trainer.G, held_out)["ssim"]))
        curves[name], wall[name] = curve, spent

    scratch_final = curves["scratch"][-1][1]
    reach = next((s for s, v in curves["warm"] if v >= scratch_final), None)
    print(
        f"\n== warm start vs scratch: fast variant {size}x{size}, batch 4; base trained "
        f"{base_steps} steps on person A ({base_s:.0f} s); fine-tuned on person B =="
    )
    print(f"{'steps':>8}{'SSIM scratch':>15}{'SSIM warm':>12}")
    for (s, a), (_, b) in zip(curves["scratch"], curves["warm"]):
        print(f"{s:>8}{a:>15.3f}{b:>12.3f}")
    print(
        f"equal budget ({tune_steps} steps; wall {wall['scratch']:.0f} s scratch, {wall['warm']:.0f} s warm): "
        f"SSIM scratch {scratch_final:.3f}, warm {curves['warm'][-1][1]:.3f}"
    )
    if reach is None:
        print("warm start did not reach scratch's final SSIM within the budget")
    else:
        print(
            f"warm start reached scratch's final SSIM {scratch_final:.3f} after {reach} steps "
            f"(evaluated every {eval_every}): {tune_steps / max(reach, 1):.1f}x fewer steps"
            + (" (already at step 0)" if reach == 0 else "")
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="lower resolutions and fewer steps")
    ap.add_argument("--worker", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int)
    ap.add_argument("--steps", type=int)
    ap.add_argument("--warmup", type=int, default=2)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.size, args.steps, args.warmup)))
        return
    torch.manual_seed(0)
    np.random.seed(0)
    if args.quick:
        speed_table(size=args.size or 128, steps=args.steps or 4, warmup=args.warmup, rounds=2)
        warm_vs_scratch(size=64, base_steps=150, tune_steps=60, eval_every=20)
    else:
        speed_table(size=args.size or 256, steps=args.steps or 8, warmup=args.warmup, rounds=3)
        warm_vs_scratch(size=128, base_steps=400, tune_steps=200, eval_every=40)


if __name__ == "__main__":
    main()
