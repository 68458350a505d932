"""Warp-conditioned generation against the pose-map-only generator, at equal wall-clock budget.

    .venv/bin/python -m bench.bench_warpcond                # 240 s of training per arm, the footage; ~11 minutes
    .venv/bin/python -m bench.bench_warpcond --budget 300   # the 5 CPU minutes of the target; ~13 minutes
    .venv/bin/python -m bench.bench_warpcond --quick        # 40 s per arm, footage and squat: a smoke run

Both arms are the trainer's person path on a CPU (a 256 px crop following the person, facing pose
maps, RGB + matte over the session's plate), on the same frames, split, masks and plate
(bench.bench_person.prepare), trained alternately in 10 s slices (bench.bench_person.
train_alternately) so that other load hits both alike:

* pose: the generator reads the pose map (today's default);
* warp: it also reads the visitor's pixels warped part by part to the pose, and their matte
  (trainer.warp_framing: training targets warped from pool views at least 8 frames away; held-out
  poses from the pool of training frames).

Real footage only chooses: a photo's person moved over its backdrop (squat) or any session made
by moving parts tests the plumbing, and the warp arm, made of the part warper, is rewarded there
for matching what made the frames; the closing line compares the arms on real footage alone.

Figures on the dance (bench.bench_dance: the session's pose moved through new poses, then turned
round; MoveNet judges every rendered frame, trainer.fidelity): limb error in torso lengths and
facing agreement; on the held-out frames (the pose-novel split, bench.bench_person.prepare) at
the camera's resolution: person-box SSIM/PSNR, whole-frame SSIM/PSNR, flicker, pose error,
steps/s; and two bounds that need no
training: the plate alone (nobody drawn) and the real person cut out by its mask over the plate
(a perfect person: the most any generator composited over this plate can score). Target: person-box SSIM >= 0.85
after 5 CPU minutes. Pictures (real | pose | warp, boxes enlarged, then the frames) and held-out
videos go to <state dir>/bench/warpcond/.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from bench.bench_dance import dance_for, judged_arms
from bench.bench_oneshot import VIDEO_SUFFIXES, load
from bench.bench_person import (
    CAMERA,
    QUALITY_COLUMNS,
    SHARED,
    _sheet,
    _table,
    _write_video,
    estimator,
    prepare,
    train_alternately,
    trainer_for,
)
from infra.settings import Settings
from trainer.pix2pix.evaluate import frames_pose_error, video_quality
from trainer.warp_framing import WarpConditioned

COLUMNS = [
    ("session           ", "session", ""),
    ("arm", "arm", ""),
    ("steps", "steps", "d"),
    ("steps/s", "steps_s", ".2f"),
    ("dance limb", "dance_limb_error", ".3f"),
    ("limb p90", "dance_limb_error_p90", ".3f"),
    ("facing", "dance_facing_agreement", ".2f"),
    *QUALITY_COLUMNS,
]
REAL = ("footage",)  # sessions of real footage (and any video file given)


def is_real(name: str) -> bool:
    return name in REAL or Path(name).suffix.lower() in VIDEO_SUFFIXES


def bounds(name: str, real: np.ndarray, poses: np.ndarray, plate: np.ndarray, models_dir, estimate) -> list[dict]:
    """What the figures can be on this footage for any generator that draws the person over the
    plate: the plate alone (nobody drawn: the floor), and the real held-out person cut out by the
    person mask over the plate (a perfect person: the ceiling; what is left is the plate's own
    error and the mask's edge)."""
    from vision.personmask import PersonMasker

    masker = PersonMasker("auto", models_dir)
    nobody = np.repeat(plate[None], len(real), axis=0)
    cut = []
    for frame, pose in zip(real, poses):
        a = masker.mask(frame, pose)[..., None]
        cut.append(np.round(frame * a + plate * (1 - a)).astype(np.uint8))
    return [
        {
            "session": name,
            "arm": arm,
            **video_quality(real, fake, poses),
            "pose_error": frames_pose_error(fake, poses, estimate),
        }
        for arm, fake in (("plate only", nobody), ("real on plate", np.stack(cut)))
    ]


def run_session(name: str, budget: float, models_dir: Path | None, out_dir: Path, estimate) -> list[dict]:
    t0 = time.perf_counter()
    session = load(name, models_dir, Path(Settings().state_dir) / "bench" / "oneshot")
    p = prepare(session, models_dir)
    w, h = session.size
    warp = WarpConditioned.from_person(p.person, p.data, p.train, p.masks)
    print(
        f"\n{name}: {session.source}; {len(session.frames)} frames {w}x{h}, {int(p.train.sum())} trained on, "
        f"{int(p.test.sum())} held out after a gap of {p.gap}; masks {p.mask_source}; "
        f"source pool: seqs {[s for s, _ in warp.views[CAMERA]]}",
        flush=True,
    )
    dance = dance_for(session, p.train)
    arms = {"pose": p.person, "warp": warp}
    trainers = {arm: trainer_for(framing, p) for arm, framing in arms.items()}
    train_alternately(trainers, budget)
    rows, shown = [], {}
    for arm, row, held in judged_arms(name, arms, trainers, p.data, {"test": p.test}, dance, models_dir, out_dir):
        real, fake, poses = held["test"]
        rows.append({**row, **video_quality(real, fake, poses), "pose_error": frames_pose_error(fake, poses, estimate)})
        shown[arm] = fake
        _write_video(out_dir / f"{Path(name).stem}-{arm}.mp4", fake)
    rows += bounds(name, real, poses, p.person.plates[CAMERA], models_dir, estimate)
    _sheet(out_dir / f"{Path(name).stem}-held-out.png", real, shown, poses)
    _table(rows, COLUMNS)
    print(f"({time.perf_counter() - t0:.0f} s)", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="40 s per arm, footage and squat")
    ap.add_argument("--budget", type=float, help="seconds of training per arm and session (default 240)")
    ap.add_argument("--sessions", nargs="+", help="names or video files (default: footage; --quick: footage squat)")
    args = ap.parse_args()
    budget = args.budget or (40.0 if args.quick else 240.0)
    sessions = args.sessions or (["footage", "squat"] if args.quick else ["footage"])
    torch.manual_seed(0)
    models_dir = SHARED / "models" if (SHARED / "models").is_dir() else None
    out_dir = Path(Settings().state_dir) / "bench" / "warpcond"
    out_dir.mkdir(parents=True, exist_ok=True)
    estimate = estimator(models_dir)
    print(f"{budget:.0f} s of training per arm and session; torch threads {torch.get_num_threads()}")
    rows: list[dict] = []
    for name in sessions:
        rows += run_session(name, budget, models_dir, out_dir, estimate)
    print("\nheld-out frames, at the camera's resolution:")
    _table(rows, COLUMNS)
    for name in sessions:
        arm = {r["arm"]: r for r in rows if r["session"] == name}
        if not is_real(name):
            print(f"{name}: not real footage: tests the plumbing, chooses nothing")
            continue
        print(
            f"{name}: dance limb error pose {arm['pose']['dance_limb_error']:.3f} -> warp "
            f"{arm['warp']['dance_limb_error']:.3f} (p90 {arm['pose']['dance_limb_error_p90']:.3f} -> "
            f"{arm['warp']['dance_limb_error_p90']:.3f}), facing agreement {arm['pose']['dance_facing_agreement']:.2f} "
            f"-> {arm['warp']['dance_facing_agreement']:.2f}"
        )
        print(
            f"{name}: person-box SSIM pose {arm['pose']['box_ssim']:.3f} -> warp {arm['warp']['box_ssim']:.3f} "
            f"(target >= 0.85 after 300 s: {'met' if arm['warp']['box_ssim'] >= 0.85 else 'NOT met'}"
            f"{'' if budget >= 300 else f', run for {budget:.0f} s'}), PSNR {arm['pose']['box_psnr']:.2f} -> "
            f"{arm['warp']['box_psnr']:.2f} dB; steps/s ratio warp/pose "
            f"{arm['warp']['steps_s'] / max(arm['pose']['steps_s'], 1e-9):.2f}; bounds on this footage: "
            f"plate only {arm['plate only']['box_ssim']:.3f}, a perfect person over the plate "
            f"{arm['real on plate']['box_ssim']:.3f}"
        )
    print(f"\npictures and held-out videos: {out_dir}")


if __name__ == "__main__":
    main()
