"""The trainer's CUDA path: person-centred pix2pix at the GPU defaults, against the CPU default.

    python -m bench.bench_cuda                 # on a CUDA machine: ~50 s of training per arm, ~6 minutes
    python -m bench.bench_cuda --quick         # tiny sizes, 5 s per arm: checks the script end to end
    python -m bench.bench_cuda --out DIR       # where the table (JSON) and the picture sheet go

One synthetic session (trainer.pix2pix.synthetic PERSON_A moving smoothly between random poses,
640x360, 300 frames), person masks drawn from the pose, the background plate estimated from the
training frames, the last 15% held out (trainer.training_set.holdout_split). Each arm trains the
person framing (trainer.coherent.CoherentPersonCentred, facing pose maps, the pix2pix fast networks
with a matte) for the same wall-clock budget, one after the other:

* 256 b1 fp32: the CPU default (crop 256, batch 1), as a reference;
* 512 b8 amp: the CUDA default's networks and batch (trainer.job: crop 512, CUDA_BATCH 8, float16
  autocast), without the face residual;
* 512 b8 fp32: the same without autocast (what amp buys);
* 512 b8 amp+face: with the face residual (trainer.job's default);
* 512 bN amp: the largest batch of 32 and 16 that fits, when there is CUDA.

Reported per arm: steps, steps/s (whole budget, first steps included, and steady: the median step
of the second half), samples/s, peak GPU memory (torch.cuda.max_memory_allocated, reset per arm),
held-out person-box and whole-frame SSIM/PSNR at the camera's resolution, rendering fps of the
held-out frames. Then rendering fps of the 512 amp generator on 60 frames of another dance.
Without CUDA it runs on the CPU and says so (autocast is CUDA-only: the amp arms are fp32 there).
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from bench.footage import synthetic_session
from trainer.coherent import CoherentPersonCentred
from trainer.evaluation import held_out_frames
from trainer.pix2pix.evaluate import video_quality
from trainer.pix2pix.networks import NetConfig
from trainer.pix2pix.run import make_trainer
from trainer.pix2pix.train import TrainConfig
from trainer.training_set import TrainingSet, holdout_split
from vision.crop import crop_side, person_box
from vision.personmask import PersonMasker
from vision.plate import estimate_plate

CAMERA = "cam0"
STYLE = "facing"
CUDA_BATCH = 8  # trainer.job's samples per step on a GPU
BIG_BATCHES = (32, 16)


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def build_session(n: int, size: tuple[int, int]):
    """The session as a TrainingSet, its split, person masks of the training frames, plate and crop side."""
    session = synthetic_session(n=n, size=size, seed=3)
    data = TrainingSet(
        list(session.frames),
        np.zeros((n, 1, 1, 3), np.uint8),  # no stored maps: the person framing draws its own from the poses
        session.poses,
        np.array([CAMERA] * n),
        np.arange(n),
    )
    split = holdout_split(data.cameras, data.seqs)
    idx = np.flatnonzero(split.train)
    masker = PersonMasker("silhouette")
    masks = {int(i): np.round(masker.mask(data.frames[i], data.poses[i]) * 255).astype(np.uint8) for i in idx}
    plate = estimate_plate([data.frames[i] for i in idx], [masks[int(i)] for i in idx]).image
    side = crop_side(data.poses[idx])
    return session, data, split, masks, plate, side


def dance_poses(n: int, size: tuple[int, int]) -> np.ndarray:
    from trainer.pix2pix.synthetic import random_poses

    keys = random_poses(n // 8 + 2, size, seed=11)
    t = np.arange(n) / 8
    i, f = t.astype(int), (t % 1.0)[:, None, None]
    return (keys[i] * (1 - f) + keys[i + 1] * f).astype(np.float32)


def run_arm(name, crop, batch, amp, face, ctx, budget_s, device, dance=None) -> tuple[dict, np.ndarray | None]:
    data, split, masks, plate, side = ctx
    framing = CoherentPersonCentred(crop, STYLE, {CAMERA: plate}, {CAMERA: side}, temporal=False, face=face)
    net = NetConfig.fast(crop, matte=True, in_channels=framing.in_channels)
    cfg = TrainConfig(net=net, batch_size=batch, amp=amp, checkpoint_every_s=None, face=face, device=device, seed=0)
    row: dict = {"arm": name, "crop": crop, "batch": batch, "amp": amp and device == "cuda", "face": face}
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    trainer = None
    try:
        trainer = make_trainer(framing.training_samples(data, np.flatnonzero(split.train), masks), cfg)
        _sync()
        t0 = time.perf_counter()
        trainer.run(budget_s=budget_s, export=False)
        _sync()
        wall = time.perf_counter() - t0
    except torch.cuda.OutOfMemoryError:
        del trainer
        gc.collect()
        torch.cuda.empty_cache()
        row["error"] = "out of memory"
        return row, None
    steps = trainer.step
    step_s = [h["step_s"] for h in trainer.history if "step_s" in h]
    steady = float(np.median(step_s[len(step_s) // 2 :])) if step_s else float("nan")
    row.update(
        steps=steps,
        train_s=wall,
        steps_s=steps / wall,
        steady_steps_s=1.0 / steady if steady > 0 else float("nan"),
        samples_s=steps * batch / wall,
        peak_gib=torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan"),
    )
    generator = trainer.generator() if hasattr(trainer, "generator") else trainer.G.eval()
    with torch.no_grad():
        _sync()
        t0 = time.perf_counter()
        real, fake, _maps, poses = held_out_frames(generator, framing, data, split.test)[CAMERA]
        _sync()
        row["render_fps"] = len(fake) / (time.perf_counter() - t0)
        row.update(video_quality(real, fake, poses))
        if dance is not None:  # twice: the first pass warms the kernels up
            for _ in range(2):
                _sync()
                t0 = time.perf_counter()
                n = sum(1 for _ in framing.frames(generator, dance, CAMERA))
                _sync()
            row["dance_fps"] = n / (time.perf_counter() - t0)
    del trainer, generator
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    return row, fake


def warm_up(ctx, crop: int, device: str) -> None:
    """A few untimed steps, so that the first arm does not pay for starting the device's libraries."""
    data, split, masks, plate, side = ctx
    framing = CoherentPersonCentred(crop, STYLE, {CAMERA: plate}, {CAMERA: side})
    cfg = TrainConfig(net=NetConfig.fast(crop, matte=True), checkpoint_every_s=None, device=device, amp=True)
    trainer = make_trainer(framing.training_samples(data, np.flatnonzero(split.train), masks), cfg)
    trainer.run(max_steps=3, export=False)
    _sync()
    del trainer
    gc.collect()


COLUMNS = [
    ("arm", "arm", ""),
    ("crop", "crop", "d"),
    ("batch", "batch", "d"),
    ("amp", "amp", ""),
    ("face", "face", ""),
    ("steps", "steps", "d"),
    ("steps/s", "steps_s", ".2f"),
    ("steady/s", "steady_steps_s", ".2f"),
    ("samples/s", "samples_s", ".1f"),
    ("peak GiB", "peak_gib", ".2f"),
    ("box SSIM", "box_ssim", ".3f"),
    ("box PSNR", "box_psnr", ".2f"),
    ("SSIM", "ssim", ".3f"),
    ("PSNR", "psnr", ".2f"),
    ("render fps", "render_fps", ".1f"),
    ("dance fps", "dance_fps", ".1f"),
    ("note", "error", ""),
]


def table(rows: list[dict]) -> str:
    cells = [[title for title, _k, _f in COLUMNS]]
    for r in rows:
        line = []
        for _title, key, fmt in COLUMNS:
            v = r.get(key, "")
            line.append(format(v, fmt) if isinstance(v, (int, float)) and not isinstance(v, bool) and fmt else str(v))
        cells.append(line)
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths))) for line in cells
    )


def sheet(path: Path, real: np.ndarray, fakes: dict[str, np.ndarray], poses: np.ndarray, frames: int = 3) -> None:
    """Held-out frames, one row each: the person box of real | each arm's generated frame, enlarged."""
    rows = []
    for t in np.linspace(0, len(real) - 1, frames).round().astype(int):
        box = person_box(poses[t], (real.shape[2], real.shape[1]), margin=0.25)
        cells = []
        for name, img in (("real", real[t]), *((k, v[t]) for k, v in fakes.items())):
            x0, y0, x1, y1 = box if box is not None else (0, 0, img.shape[1], img.shape[0])
            zoom = cv2.resize(np.ascontiguousarray(img[y0:y1, x0:x1]), (200, 300), interpolation=cv2.INTER_AREA)
            cv2.putText(zoom, name, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
            cells.append(zoom)
        rows.append(np.concatenate(cells, axis=1))
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(rows, axis=0), cv2.COLOR_RGB2BGR))


def _finite(value):
    """JSON has no NaN: figures that were not measured become null."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return float(value) if isinstance(value, np.floating) else value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny crops and session, 5 s per arm")
    ap.add_argument("--budget", type=float, help="seconds of training per arm (default 50; --quick 5)")
    ap.add_argument("--frames", type=int, help="session length (default 300; --quick 60)")
    ap.add_argument("--out", type=Path, default=Path(".booth/bench/cuda"), help="folder for bench.json and sheet.png")
    ap.add_argument("--no-big", action="store_true", help="skip the largest-batch arm")
    args = ap.parse_args()
    budget = args.budget or (5.0 if args.quick else 50.0)
    n = args.frames or (60 if args.quick else 300)
    size = (640, 360)
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    torch.manual_seed(0)
    started = time.perf_counter()
    if cuda:
        torch.backends.cudnn.benchmark = False  # as the trainer runs (no change of its settings)
        name = torch.cuda.get_device_name(0)
        print(f"device: {name}; torch {torch.__version__}, CUDA {torch.version.cuda}", flush=True)
    else:
        name = f"CPU ({torch.get_num_threads()} torch threads)"
        print(
            "NOTE: no CUDA device: running on the CPU; autocast is CUDA-only, so the 'amp' arms run in float32 "
            "and no GPU memory is measured",
            flush=True,
        )
    small, big = (64, 128) if args.quick else (256, 512)
    batch = 2 if args.quick else CUDA_BATCH
    arms = [
        (f"{small} b1 fp32 (CPU default)", small, 1, False, False),
        (f"{big} b{batch} amp (CUDA default)", big, batch, True, False),
        (f"{big} b{batch} fp32", big, batch, False, False),
        (f"{big} b{batch} amp+face", big, batch, True, True),
    ]
    session, data, split, masks, plate, side = build_session(n, size)
    ctx = (data, split, masks, plate, side)
    print(
        f"session: {session.source}, {n} frames {size[0]}x{size[1]}, {int(split.train.sum())} trained on, "
        f"{int(split.test.sum())} held out after a gap of {split.gap}; crop side {side:.0f} px; "
        f"{budget:.0f} s of training per arm ({time.perf_counter() - started:.1f} s to build)",
        flush=True,
    )
    warm_up(ctx, small, device)
    dance = dance_poses(60 if not args.quick else 16, size)
    rows: list[dict] = []
    shown: dict[str, np.ndarray] = {}
    for k, (label, crop, b, amp, face) in enumerate(arms):
        row, fake = run_arm(label, crop, b, amp, face, ctx, budget, device, dance=dance if k == 1 else None)
        rows.append(row)
        if fake is not None:
            shown[label.split(" (")[0]] = fake
        print(table([row]).splitlines()[1], f"({time.perf_counter() - started:.0f} s)", flush=True)
    if cuda and not args.no_big:
        for b in BIG_BATCHES:
            row, fake = run_arm(f"{big} b{b} amp", big, b, True, False, ctx, budget, device)
            rows.append(row)
            print(table([row]).splitlines()[1], f"({time.perf_counter() - started:.0f} s)", flush=True)
            if fake is not None:
                shown[f"{big} b{b} amp"] = fake
                break
    print(f"\n{name}; {budget:.0f} s of training per arm; held-out frames at {size[0]}x{size[1]}:")
    print(table(rows))
    ref = next((r for r in rows if r["batch"] == batch and r["amp"] and not r["face"] and "steps" in r), None)
    fp32 = next((r for r in rows if r["batch"] == batch and r["crop"] == big and not r["amp"] and "steps" in r), None)
    if ref and fp32 and cuda:
        print(
            f"amp vs fp32 at {big} b{batch}: samples/s x{ref['samples_s'] / fp32['samples_s']:.2f}, "
            f"peak memory x{ref['peak_gib'] / fp32['peak_gib']:.2f}, "
            f"box PSNR {ref['box_psnr'] - fp32['box_psnr']:+.2f} dB"
        )
    if ref and "dance_fps" in ref:
        print(f"rendering {len(dance)} dance frames with the {big} b{batch} amp generator: {ref['dance_fps']:.1f} fps")
    args.out.mkdir(parents=True, exist_ok=True)
    test = np.flatnonzero(split.test)  # held_out_frames' order: one camera, seqs ascending
    real, poses = np.stack([data.frames[i] for i in test]), data.poses[test]
    sheet(args.out / "sheet.png", real, shown, poses)
    info = {
        "device": name,
        "torch": torch.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "session": {"frames": n, "size": list(size), "train": int(split.train.sum()), "test": int(split.test.sum())},
        "budget_s": budget,
        "total_s": time.perf_counter() - started,
        "rows": rows,
    }
    (args.out / "bench.json").write_text(json.dumps(_finite(info), indent=1))
    print(f"\ntable: {args.out / 'bench.json'}; held-out real | generated per arm: {args.out / 'sheet.png'}")
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
