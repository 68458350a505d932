"""Temporal coherence and the face residual against today's frame-by-frame person path.

    .venv/bin/python -m bench.bench_temporal            # 80 s of training per arm and session (~11 min)
    .venv/bin/python -m bench.bench_temporal --quick    # 25 s per arm and session (~4 min)

Per session (bench.footage: a pedestrian of ../shared/data/videos/vtest.avi, the squat photo's
person moved over its backdrop), on the same frames and the same split (the last 15% held out
after a gap), three arms of the person-centred path (128 px crop, facing pose maps, matte over
the plate, the pix2pix fast networks, batch 1) train for the same seconds of training steps, in
alternating slices (bench.bench_person.train_alternately):

* plain: today's generator, frame by frame;
* temporal: conditioned on the previous frame and pose map, trained on pairs, rendered
  sequentially (trainer.coherent, trainer.pix2pix.sequence);
* temporal+face: the same plus the face residual generator (trainer.pix2pix.face), trained in
  the same seconds.

Figures on the held-out frames at the camera's resolution: flicker (the generated video's mean
frame-to-frame change in the person's box over the real video's; target <= 1.3), motion error
(trainer.pix2pix.evaluate.motion_error: the frame-to-frame change the real video does not have,
over the real change; 0 is ideal: flicker cannot tell shimmer from motion), face-box
SSIM/PSNR (a square of a quarter of the person crop's side on the head keypoints: about two head
heights; its size in camera pixels is printed, it is small for the video's pedestrians), person-box
SSIM/PSNR, pose error; cost: steps/s from single steps of fresh trainers taken in turn (median
of 6 each, so load that drifts hits all arms alike; the "steps" column is what each arm took in
the budget) and render fps (held-out frames; a temporal model renders one frame at a time).
"t+f, face off" is the temporal+face model rendered without its face residual: the face
generator's effect alone. Pictures: <state dir>/bench/temporal/<session>-strip.png (held-out
frames: face boxes and person boxes of real | plain | temporal | temporal+face) and one video
per arm.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from bench.bench_person import SHARED, Prepared, _table, _write_video, estimator, prepare, train_alternately
from bench.footage import footage_session, photo_session
from infra.settings import Settings
from trainer.coherent import CoherentPersonCentred
from trainer.evaluation import comparison_strip, held_out_frames
from trainer.pix2pix.evaluate import frame_boxes, frames_pose_error, motion_error, video_quality
from trainer.pix2pix.face import face_boxes, face_quality
from trainer.pix2pix.networks import NetConfig
from trainer.pix2pix.run import make_trainer
from trainer.pix2pix.train import TrainConfig

SIZE = 128  # the person crop; 256 trains ~4x slower, too few steps for three arms in one run
CAMERA = "cam0"
ARMS = {"plain": (False, False), "temporal": (True, False), "temporal+face": (True, True)}
FLICKER_TARGET = 1.3
COST_ROUNDS = 6


def framing_for(p: Prepared, temporal: bool, face: bool) -> CoherentPersonCentred:
    return CoherentPersonCentred(
        p.person.size, p.person.style, p.person.plates, p.person.sides, temporal=temporal, face=face
    )


def trainers_for(p: Prepared, framings: dict) -> dict:
    out = {}
    for k, f in framings.items():
        net = NetConfig.fast(f.size, matte=True, in_channels=f.in_channels)
        cfg = TrainConfig(net=net, checkpoint_every_s=None, temporal=f.temporal, face=f.face)
        out[k] = make_trainer(f.training_samples(p.data, np.flatnonzero(p.train), p.masks), cfg)
    return out


def step_rates(p: Prepared, framings: dict, rounds: int = COST_ROUNDS) -> dict[str, float]:
    """Steps/s of each arm from the median of `rounds` single steps taken in turn (after two
    untimed rounds), on fresh trainers: a cost that drifting load hits alike."""
    trainers = trainers_for(p, framings)
    times: dict[str, list[float]] = {k: [] for k in trainers}
    for r in range(rounds + 2):
        for k, t in trainers.items():
            t0 = time.perf_counter()
            t.train_step()
            if r >= 2:
                times[k].append(time.perf_counter() - t0)
    return {k: 1.0 / float(np.median(v)) for k, v in times.items()}


def compare(p: Prepared, budget_s: float, out_dir: Path, estimate) -> list[dict]:
    framings = {k: framing_for(p, *opts) for k, opts in ARMS.items()}
    rates = step_rates(p, framings)
    trainers = trainers_for(p, framings)
    train_alternately(trainers, budget_s)
    rows, shown = [], {}
    # The face residual on and off on one model: the same body generator, so only the face differs.
    arms = [*((k, f, trainers[k]) for k, f in framings.items()), ("t+f, face off", framings["temporal"], None)]
    for k, f, t in arms:
        t = t or trainers["temporal+face"]
        generator = t.G.eval() if k == "t+f, face off" or not hasattr(t, "generator") else t.generator()
        t0 = time.perf_counter()
        real, fake, _maps, poses = held_out_frames(generator, f, p.data, p.test)[CAMERA]
        render_fps = len(fake) / (time.perf_counter() - t0)
        size = (real.shape[2], real.shape[1])
        boxes = frame_boxes(real, poses)
        q = video_quality(real, fake, poses, boxes)
        fq = face_quality(real, fake, face_boxes(poses, f.face_side_px(CAMERA), size), f.face_side_px(CAMERA))
        rows.append(
            {
                "session": p.session.name,
                "arm": k,
                "steps": t.step,
                "steps_s": rates["temporal+face" if k == "t+f, face off" else k],
                "render_fps": render_fps,
                **q,
                "motion_error": motion_error(real, fake, boxes),
                **fq,
                "pose_error": frames_pose_error(fake, poses, estimate),
            }
        )
        if k == "t+f, face off":
            continue
        shown[k] = fake
        _write_video(out_dir / f"{p.session.name}-{k}.mp4", fake)
    faces = face_boxes(poses, framings["plain"].face_side_px(CAMERA), size)
    strip = comparison_strip(real, shown, faces, boxes)
    cv2.imwrite(str(out_dir / f"{p.session.name}-strip.png"), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))
    return rows


COLUMNS = [
    ("session  ", "session", ""),
    ("arm          ", "arm", ""),
    ("steps", "steps", "d"),
    ("steps/s", "steps_s", ".2f"),
    ("render fps", "render_fps", ".1f"),
    ("flicker", "flicker", ".2f"),
    ("motion err", "motion_error", ".3f"),
    ("face SSIM", "face_ssim", ".3f"),
    ("face PSNR", "face_psnr", ".2f"),
    ("face px", "face_px", ".0f"),
    ("box SSIM", "box_ssim", ".3f"),
    ("box PSNR", "box_psnr", ".2f"),
    ("pose err", "pose_error", ".3f"),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="25 s per arm and session instead of 80")
    ap.add_argument("--budget", type=float, help="seconds of training per arm and session")
    ap.add_argument("--sessions", nargs="+", default=["squat", "footage"])
    args = ap.parse_args()
    budget = args.budget or (25.0 if args.quick else 80.0)
    torch.manual_seed(0)
    models_dir = SHARED / "models" if (SHARED / "models").is_dir() else None
    out_dir = Path(Settings().state_dir) / "bench" / "temporal"
    out_dir.mkdir(parents=True, exist_ok=True)
    estimate = estimator(models_dir)
    print(f"{budget:.0f} s of training per arm and session, {SIZE} px crop; torch threads {torch.get_num_threads()}")
    rows: list[dict] = []
    for name in args.sessions:
        t0 = time.perf_counter()
        if name == "footage":
            cache = out_dir.parent / "person" / "cache"  # bench_person's: the track is the same
            session = footage_session(SHARED / "data/videos/vtest.avi", models_dir, cache)
        else:
            session = photo_session(SHARED / f"data/images/{name}.png", models_dir)
        p = prepare(session, models_dir, size=SIZE)
        w, h = session.size
        print(
            f"\n{name}: {session.source}; {len(session.frames)} frames {w}x{h}, {int(p.train.sum())} trained on, "
            f"{int(p.test.sum())} held out after a gap of {p.gap}; crop side {p.person.sides[CAMERA]:.0f} px",
            flush=True,
        )
        rows += compare(p, budget, out_dir, estimate)
        _table(rows[-len(ARMS) - 1 :], COLUMNS)
        print(f"({time.perf_counter() - t0:.0f} s)", flush=True)
    print("\nheld-out frames, at the camera's resolution:")
    _table(rows, COLUMNS)
    mean = {
        arm: {
            k: float(np.nanmean([r[k] for r in rows if r["arm"] == arm]))
            for k in (
                "flicker",
                "motion_error",
                "face_ssim",
                "face_psnr",
                "box_ssim",
                "box_psnr",
                "pose_error",
                "steps_s",
                "render_fps",
            )
        }
        for arm in (*ARMS, "t+f, face off")
    }
    _table([{"session": "mean", "arm": k, **v} for k, v in mean.items()], [c for c in COLUMNS if c[1] != "face_px"])
    plain = mean["plain"]
    for arm in ("temporal", "temporal+face"):
        m = mean[arm]
        met = "met" if m["flicker"] <= FLICKER_TARGET else "NOT met"
        print(
            f"{arm}: flicker {m['flicker']:.2f} vs plain {plain['flicker']:.2f} (target <= {FLICKER_TARGET}: {met}), "
            f"motion error {m['motion_error']:.3f} vs {plain['motion_error']:.3f}; "
            f"face box {m['face_psnr'] - plain['face_psnr']:+.2f} dB, SSIM {m['face_ssim'] - plain['face_ssim']:+.3f} "
            f"vs plain; steps/s ratio to plain {m['steps_s'] / plain['steps_s']:.2f}"
        )
    tf, off = mean["temporal+face"], mean["t+f, face off"]
    print(
        f"face residual on vs off (one temporal+face model): face box {tf['face_psnr'] - off['face_psnr']:+.2f} dB, "
        f"SSIM {tf['face_ssim'] - off['face_ssim']:+.3f}"
    )
    print(f"\npictures and held-out videos: {out_dir}")


if __name__ == "__main__":
    main()
