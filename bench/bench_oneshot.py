"""The one-shot video (part warping, no training) against the fine-tuned GAN at growing budgets.

    .venv/bin/python -m bench.bench_oneshot            # GAN at 0, 60 and 300 s on the footage; 0 and 60 s elsewhere
    .venv/bin/python -m bench.bench_oneshot --quick    # GAN at 0 and 30 s, footage and squat only; ~4 minutes

Per session (bench.footage: a pedestrian of ../shared/data/videos/vtest.avi, a shared photo's
person moved over its backdrop, the synthetic person), on the same frames, split, person masks and
background plate as the trainer makes them (bench.bench_person.prepare):

* oneshot: trainer.oneshot's path: source views chosen among the training frames
  (vision.warp.select_views), each held-out pose drawn by moving their parts (vision.warp), over
  the plate. No training: its figures do not depend on the budget.
* gan@Ns: the trainer's default on a CPU (person-centred 256 px crop, facing pose maps, matte over
  the plate) after N seconds of training steps (0 s: the untrained generator, what fine-tuning
  starts from without a base model), one run evaluated as its budget grows.

Figures on the held-out block at the camera's resolution (trainer.pix2pix.evaluate): person-box
SSIM/PSNR, whole-frame SSIM/PSNR, flicker, pose error (MoveNet on the generated frames against the
poses asked for, in body sizes). "oneshot s/300" is the one-shot step as the trainer runs it for a
dance of 300 poses, first thing after the dataset is read: the person masks of its candidate
views and of the frames its plate is estimated from, the views, warping, MP4 encoding; measured on
the session's own poses cycled to 300 frames.

Pictures go to <state dir>/bench/oneshot/: per session a sheet of held-out frames (real | oneshot |
gan at each budget; the person's box enlarged, then the frames) and the held-out videos.

The photo and synthetic sessions test the plumbing; the choice between the one-shot video and the
GAN, and between generators, rests on the real footage and on the dance (bench.bench_dance).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.bench_person import (
    CAMERA,
    QUALITY_COLUMNS,
    SHARED,
    Prepared,
    _sheet,
    _table,
    _write_video,
    estimator,
    prepare,
    trainer_for,
)
from bench.footage import Session, footage_session, photo_session, synthetic_session
from infra.settings import Settings
from trainer.evaluation import held_out_frames
from trainer.oneshot import choose_views, oneshot_frames
from trainer.pix2pix.evaluate import frames_pose_error, video_quality
from trainer.rendition import write_video
from vision.warp import PartWarper

DANCE_FRAMES = 300


VIDEO_SUFFIXES = (".avi", ".mp4", ".mov", ".mkv")


def load(name: str, models_dir: Path | None, out_dir: Path) -> Session:
    """A named session (footage, synthetic, a shared photo's name) or any video file: its longest
    clean person track (bench.footage), e.g. a booth recording of one visitor."""
    if name == "footage":
        return footage_session(SHARED / "data/videos/vtest.avi", models_dir, out_dir / "cache")
    if Path(name).suffix.lower() in VIDEO_SUFFIXES:
        if not Path(name).is_file():
            raise SystemExit(f"no video at {name}")
        return footage_session(Path(name), models_dir, out_dir / "cache")
    if name == "synthetic":
        return synthetic_session()
    return photo_session(SHARED / f"data/images/{name}.png", models_dir)


def oneshot_arm(p: Prepared) -> tuple[PartWarper, list[int], float]:
    """(the warper, its views, seconds to choose and cut them) from the training frames."""
    started = time.perf_counter()
    train = np.flatnonzero(p.train)
    views, chosen = choose_views(p.data, train, p.data.frame_size(int(train[0])), lambda i: p.masks[i])
    return PartWarper(views), chosen, time.perf_counter() - started


def dance_seconds(p: Prepared, models_dir: Path | None) -> tuple[float, float]:
    """Seconds of the one-shot step as the trainer runs it for a 300-frame dance, before any
    other mask is made: person masks of the candidate views and of the frames a plate is
    estimated from (vision.personmask, as the trainer's), the views, warping and the MP4; and the
    seconds its dance judge (trainer.fidelity, as the trainer runs it) adds."""
    from trainer.fidelity import DanceJudge
    from trainer.plates import session_plate
    from vision.personmask import PersonMasker

    poses = p.data.poses[np.arange(DANCE_FRAMES) % len(p.data)]
    started = time.perf_counter()
    masker = PersonMasker("auto", models_dir)
    masks: dict[int, np.ndarray] = {}

    def mask_of(i: int) -> np.ndarray:
        if i not in masks:
            masks[i] = masker.mask(p.data.frames[i], p.data.poses[i])
        return masks[i]

    train = np.flatnonzero(p.train)
    views, _chosen = choose_views(p.data, train, p.data.frame_size(int(train[0])), mask_of)
    plate = session_plate(p.data, CAMERA, p.train, mask_of)
    judge = DanceJudge(poses, "blazepose", models_dir)  # the session's poses are BlazePose's here
    with tempfile.TemporaryDirectory() as tmp:
        frames = judge.watch(oneshot_frames(PartWarper(views), poses, plate))
        write_video(frames, len(poses), Path(tmp) / "d.mp4", 30, progress=False)
    seconds = time.perf_counter() - started
    judge.judge()
    return seconds, time.perf_counter() - started - seconds


def figures(real: np.ndarray, fake: np.ndarray, poses: np.ndarray, estimate) -> dict:
    return {**video_quality(real, fake, poses), "pose_error": frames_pose_error(fake, poses, estimate)}


def run_session(name: str, budgets: list[float], models_dir: Path | None, out_dir: Path, estimate) -> list[dict]:
    t0 = time.perf_counter()
    session = load(name, models_dir, out_dir)
    p = prepare(session, models_dir)
    w, h = session.size
    test = np.flatnonzero(p.test)
    test = test[np.argsort(p.data.seqs[test])]
    real = np.stack([p.data.frames[i] for i in test])
    poses = p.data.poses[test]
    print(
        f"\n{name}: {session.source}; {len(session.frames)} frames {w}x{h}, {int(p.train.sum())} trained on, "
        f"{len(test)} held out after a gap of {p.gap}; masks {p.mask_source}, masks+plate {p.prep_s:.1f} s",
        flush=True,
    )
    warper, views, _views_s = oneshot_arm(p)
    plate = p.person.plates[CAMERA]
    shots = [warper.render(q, plate) for q in poses]
    oneshot = np.stack([frame for frame, _ in shots])
    missing = sorted({part for _, m in shots for part in m})
    rows = [
        {
            "session": name,
            "path": "oneshot",
            "budget_s": 0.0,
            "steps": 0,
            **figures(real, oneshot, poses, estimate),
            **dict(zip(("oneshot_s", "judge_s"), dance_seconds(p, models_dir))),
            "note": f"views {views}" + (f"; never seen: {', '.join(missing)}" if missing else ""),
        }
    ]
    _table(rows[-1:], COLUMNS)
    shown = {"oneshot": oneshot}
    _write_video(out_dir / f"{name}-oneshot.mp4", oneshot)
    trainer = trainer_for(p.person, p)
    for budget in budgets:
        if budget > trainer.elapsed_s:
            trainer.run(budget_s=budget - trainer.elapsed_s, export=False)
        (r, fake, _maps, q) = held_out_frames(trainer.G, p.person, p.data, p.test)[CAMERA]
        label = f"gan@{budget:.0f}s"
        rows.append(
            {
                "session": name,
                "path": label,
                "budget_s": budget,
                "steps": trainer.step,
                **figures(r, fake, q, estimate),
                "note": f"{trainer.step / max(trainer.elapsed_s, 1e-9):.2f} steps/s" if trainer.step else "untrained",
            }
        )
        _table(rows[-1:], COLUMNS)
        shown[label] = fake
        _write_video(out_dir / f"{name}-{label}.mp4", fake)
    _sheet(out_dir / f"{name}-held-out.png", real, shown, poses)
    print(f"({time.perf_counter() - t0:.0f} s)", flush=True)
    return rows


COLUMNS = [
    ("session           ", "session", ""),
    ("path", "path", ""),
    ("steps", "steps", "d"),
    *QUALITY_COLUMNS,
    ("oneshot s/300", "oneshot_s", ".1f"),
    ("judge s", "judge_s", ".1f"),
    ("note", "note", ""),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="GAN at 0 and 30 s; footage and squat only")
    ap.add_argument("--budgets", nargs="+", type=float, help="GAN budgets (s) on the first session")
    ap.add_argument("--other-budgets", nargs="+", type=float, help="GAN budgets (s) on the other sessions")
    ap.add_argument("--sessions", nargs="+", help="default: footage squat synthetic")
    ap.add_argument("--oneshot-only", action="store_true", help="no GAN: the one-shot figures and time alone")
    args = ap.parse_args()
    sessions = args.sessions or (["footage", "squat"] if args.quick else ["footage", "squat", "synthetic"])
    first = args.budgets or ([0.0, 30.0] if args.quick else [0.0, 60.0, 300.0])
    others = args.other_budgets or ([0.0, 30.0] if args.quick else [0.0, 60.0])
    if args.oneshot_only:
        first = others = []
    torch.manual_seed(0)
    models_dir = SHARED / "models" if (SHARED / "models").is_dir() else None
    out_dir = Path(Settings().state_dir) / "bench" / "oneshot"
    out_dir.mkdir(parents=True, exist_ok=True)
    estimate = estimator(models_dir)
    print(f"GAN budgets: {first} s on {sessions[0]}, {others} s on the rest; torch threads {torch.get_num_threads()}")
    rows: list[dict] = []
    for k, name in enumerate(sessions):
        rows += run_session(name, first if k == 0 else others, models_dir, out_dir, estimate)
    print("\nheld-out frames, at the camera's resolution:")
    _table(rows, COLUMNS)
    for name in sessions:
        mine = {r["path"]: r for r in rows if r["session"] == name}
        shot = mine["oneshot"]
        beaten = [r["path"] for r in mine.values() if r["path"] != "oneshot" and r["box_ssim"] > shot["box_ssim"]]
        print(
            f"{name}: one-shot person-box SSIM {shot['box_ssim']:.3f}, PSNR {shot['box_psnr']:.2f} dB in "
            f"{shot['oneshot_s']:.1f} s for {DANCE_FRAMES} frames, its dance judged in {shot['judge_s']:.1f} s more "
            f"(target < 30 s: "
            f"{'met' if shot['oneshot_s'] < 30 else 'NOT met'}); the GAN beats it on box SSIM at: "
            f"{', '.join(beaten) or 'none of the budgets run'}"
        )
    print(f"\npictures and held-out videos: {out_dir}")


if __name__ == "__main__":
    main()
