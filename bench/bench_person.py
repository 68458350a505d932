"""Person-centred generation against today's whole-frame path, at equal wall-clock budget.

    .venv/bin/python -m bench.bench_person            # 240 s of training per path and session
    .venv/bin/python -m bench.bench_person --quick    # 40 s per path and session; 10-15 minutes in all

Part 1, per session (bench.footage: a pedestrian of ../shared/data/videos/vtest.avi, the two shared
photos' people moving over their backdrop, a synthetic person), on the same frames and the same
split (trainer.training_set.novel_split: the 15% of frames whose poses are farthest from the rest, in
three stretches, with a half-second gap around each):

* whole: today's path: the frame letterboxed into 256x256, stick-figure map -> frame
  (trainer.framing.WholeFrame), a 256x256 square video;
* person: the trainer's default on a CPU: a 256x256 crop following the person, facing pose map
  -> person + alpha matte over the session's background plate, composited back at the camera's
  size (trainer.framing.PersonCentred; masks and plate as the trainer makes them).

Both train for the same seconds of training steps (the pix2pix fast networks, batch 1), in
alternating slices so that other load on the machine hits both alike. Quality is measured on the
held-out frames at the camera's resolution (the whole path's output un-letterboxed to it):
person-box and whole-frame SSIM/PSNR, flicker, pose error (trainer.pix2pix.evaluate). Target:
person-box PSNR at least 3 dB above the whole-frame path on average, output at the camera's aspect.

Part 2 (facing): a synthetic person whose front and back differ (TwoSidedPerson: a white panel on
the shirt in front, another shirt colour behind) turns round every half second; the person path
(128 px) learns it from stick-figure maps and from facing maps, for the same budget, alternately;
"right side" is the share of held-out frames whose generated chest shows the side the pose faces.

Pictures and held-out videos go to <state dir>/bench/person/ (the session's real | whole | person
person boxes and frames; the videos at each path's output size).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from bench.footage import Session, footage_session, photo_session, synthetic_session
from infra.settings import REPO_ROOT, Settings
from trainer.evaluation import held_out_frames
from trainer.framing import PersonCentred, WholeFrame
from trainer.pix2pix.evaluate import frames_pose_error, video_quality
from trainer.pix2pix.train import TrainConfig, Trainer
from trainer.training_set import DEFAULT_HOLDOUT_GAP, TrainingSet, holdout_split
from vision.crop import crop_side, person_box
from vision.personmask import PersonMasker
from vision.plate import estimate_plate

SHARED = REPO_ROOT.parent / "shared"
SIZE = 256  # today's --resolution and the person path's crop on a CPU
SLICE_S = 10.0  # alternate the two paths every this many seconds of training
CAMERA = "cam0"


@dataclass
class Prepared:
    session: Session
    data: TrainingSet
    train: np.ndarray
    test: np.ndarray
    gap: int
    whole: WholeFrame
    person: PersonCentred
    masks: dict
    prep_s: float
    mask_source: str


def prepare(
    session: Session,
    models_dir: Path | None,
    style: str = "facing",
    size: int = SIZE,
    split: tuple[np.ndarray, np.ndarray] | None = None,
    dance: np.ndarray | None = None,
) -> Prepared:
    """Split, person masks, plate and crop size, as the trainer makes them (trainer.job): the held-out
    frames are the pose-novel stretches (trainer.training_set.novel_split) with the trainer's half-second
    gap in the session's frames, sparing the frames that show the `dance`'s poses; split: (train,
    test) masks instead."""
    n = len(session.frames)
    data = TrainingSet(
        list(session.frames),
        np.zeros((n, 1, 1, 3), np.uint8),  # no stored maps: both paths draw theirs from the poses
        session.poses,
        np.array([CAMERA] * n),
        np.arange(n),
    )
    gap = holdout_gap(session.fps)
    novel = holdout_split(data.cameras, data.seqs, gap=gap, poses=data.poses, dance=dance)
    train, test = split or (novel.train, novel.test)
    started = time.perf_counter()
    idx = np.flatnonzero(train)
    masker = PersonMasker("auto", models_dir)
    masks = {int(i): masker.mask(data.frames[i], data.poses[i]) for i in idx}
    plate = estimate_plate([data.frames[i] for i in idx], [masks[int(i)] for i in idx])
    side = crop_side(data.poses[idx])
    prep = time.perf_counter() - started
    whole = WholeFrame(size, "stick", "pose", {CAMERA: session.size})
    person = PersonCentred(size, style, {CAMERA: plate.image}, {CAMERA: side})
    return Prepared(session, data, train, test, novel.gap, whole, person, masks, prep, masker.name)


def holdout_gap(fps: float) -> int:
    """The trainer's held-out gap (15 frames at 30 fps: half a second) in frames of this fps."""
    return max(1, round(DEFAULT_HOLDOUT_GAP * fps / 30.0))


def train_alternately(trainers: dict[str, Trainer], budget_s: float) -> None:
    """Each trainer gets budget_s seconds of training steps, in alternating slices."""
    while True:
        left = {k: budget_s - t.elapsed_s for k, t in trainers.items() if t.elapsed_s < budget_s}
        if not left:
            return
        for k, seconds in left.items():
            trainers[k].run(budget_s=min(SLICE_S, seconds), export=False)


def trainer_for(framing, p: Prepared, seed: int = 0) -> Trainer:
    from trainer.framing_choice import recipe

    net, _data = recipe(framing)  # the trainer's network for this framing (and its conditioning)
    samples = framing.training_samples(p.data, np.flatnonzero(p.train), p.masks)
    return Trainer(samples, TrainConfig(net=net, checkpoint_every_s=None, seed=seed))


def estimator(models_dir: Path | None):
    from schemas.keypoints import empty_keypoints
    from vision.pose import load_estimator

    movenet = load_estimator("movenet", models_dir)

    def estimate(image: np.ndarray) -> np.ndarray:
        persons = movenet.estimate(image, key="bench")
        return persons[0].keypoints if persons else empty_keypoints()

    return estimate


def compare(p: Prepared, budget_s: float, out_dir: Path, estimate) -> list[dict]:
    framings = {"whole": p.whole, "person": p.person}
    trainers = {k: trainer_for(f, p) for k, f in framings.items()}
    train_alternately(trainers, budget_s)
    rows, shown = [], {}
    for k, f in framings.items():
        t = trainers[k]
        (real, fake, _maps, poses) = held_out_frames(t.G, f, p.data, p.test)[CAMERA]
        q = video_quality(real, fake, poses)
        w, h = p.session.size
        rows.append(
            {
                "session": p.session.name,
                "path": k,
                "steps": t.step,
                "train_s": t.elapsed_s,
                "steps_s": t.step / max(t.elapsed_s, 1e-9),
                **q,
                "pose_error": frames_pose_error(fake, poses, estimate),
                "output": f"{SIZE}x{SIZE} square" if k == "whole" else f"{w}x{h} camera",
            }
        )
        shown[k] = fake
        _write_video(out_dir / f"{p.session.name}-{k}.mp4", fake if k == "person" else _square(t, f, poses))
    _sheet(out_dir / f"{p.session.name}-held-out.png", real, shown, poses)
    return rows


def _square(trainer: Trainer, framing: WholeFrame, poses: np.ndarray) -> np.ndarray:
    """Today's rendition: the generator's letterboxed square, as the visitor got it."""
    from trainer.pix2pix.inference import generate

    maps = np.stack([framing.input_map(p, framing.sizes[CAMERA]) for p in poses])
    return generate(trainer.G, maps)


def _write_video(path: Path, frames: np.ndarray, fps: float = 10) -> None:
    from trainer.rendition import write_video

    write_video(((f, f) for f in frames), len(frames), path, fps, progress=False)


def _sheet(path: Path, real: np.ndarray, fakes: dict[str, np.ndarray], poses: np.ndarray) -> None:
    """Three held-out frames: real | whole | person, person boxes enlarged, then the frames."""
    rows = []
    for t in np.linspace(0, len(real) - 1, 3).round().astype(int):
        box = person_box(poses[t], (real.shape[2], real.shape[1]), margin=0.25)
        cells = []
        for name, img in (("real", real[t]), *((k, v[t]) for k, v in fakes.items())):
            x0, y0, x1, y1 = box if box is not None else (0, 0, img.shape[1], img.shape[0])
            zoom = cv2.resize(np.ascontiguousarray(img[y0:y1, x0:x1]), (160, 240), interpolation=cv2.INTER_NEAREST)
            cv2.putText(zoom, name, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
            cells.append(zoom)
        for img in (real[t], *(v[t] for v in fakes.values())):
            cells.append(cv2.resize(img, (round(240 * img.shape[1] / img.shape[0]), 240), interpolation=cv2.INTER_AREA))
        rows.append(np.concatenate(cells, axis=1))
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(rows, axis=0), cv2.COLOR_RGB2BGR))


def facing_study(budget_s: float, models_dir: Path | None, out_dir: Path, size: int = 128) -> list[dict]:
    """Part 2: stick vs facing pose maps on a turning two-sided person (see the module docstring)."""
    from trainer.pix2pix.synthetic import TURNED, TwoSidedPerson, random_poses, shows_front

    person = TwoSidedPerson()
    frame_size, n, turn_every, key_every = (320, 240), 180, 15, 10
    keys = random_poses(n // key_every + 2, frame_size, seed=5)
    t = np.arange(n) / key_every
    i, f = t.astype(int), (t % 1.0)[:, None, None]
    poses = (keys[i] * (1 - f) + keys[i + 1] * f).astype(np.float32)
    back = (np.arange(n) // turn_every) % 2 == 1
    poses[back] = poses[back][:, TURNED]
    session = Session(
        "turning", np.stack([person.render(p, frame_size, frame_size) for p in poses]), poses, 30.0, "TwoSidedPerson"
    )
    prepared = {style: prepare(session, models_dir, style=style, size=size) for style in ("stick", "facing")}
    trainers = {style: trainer_for(p.person, p) for style, p in prepared.items()}
    train_alternately(trainers, budget_s)
    rows, shown = [], {}
    for style, p in prepared.items():
        tr = trainers[style]
        real, fake, _maps, test_poses = held_out_frames(tr.G, p.person, p.data, p.test)[CAMERA]
        right = [person.facing_right(g, q, frame_size) for g, q in zip(fake, test_poses)]
        fronts = [shows_front(q) for q in test_poses]
        shown[style] = fake
        rows.append(
            {
                "maps": style,
                "steps": tr.step,
                "held_out": len(right),
                "front/back": f"{sum(fronts)}/{len(fronts) - sum(fronts)}",
                "right_side": float(np.mean(right)),
                "box_psnr": video_quality(real, fake, test_poses)["box_psnr"],
            }
        )
    _sheet(out_dir / "turning-held-out.png", real, shown, test_poses)
    return rows


def _table(rows: list[dict], cols: list[tuple[str, str, str]]) -> None:
    print("  ".join(f"{title:>{len(title) if i == 0 else 10}}" for i, (title, _k, _f) in enumerate(cols)))
    for r in rows:
        cells = []
        for i, (title, key, fmt) in enumerate(cols):
            v = r.get(key, "")
            text = format(v, fmt) if isinstance(v, (int, float)) and fmt else str(v)
            cells.append(f"{text:>{len(title) if i == 0 else 10}}")
        print("  ".join(cells), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="40 s per path and session instead of 240")
    ap.add_argument("--budget", type=float, help="seconds of training per path and session")
    ap.add_argument("--sessions", nargs="+", default=["footage", "squat", "two_people_walking", "synthetic"])
    ap.add_argument("--parts", nargs="+", type=int, choices=(1, 2), default=[1, 2], help="which parts to run")
    args = ap.parse_args()
    budget = args.budget or (40.0 if args.quick else 240.0)
    torch.manual_seed(0)
    models_dir = SHARED / "models" if (SHARED / "models").is_dir() else None
    out_dir = Path(Settings().state_dir) / "bench" / "person"
    out_dir.mkdir(parents=True, exist_ok=True)
    if 1 in args.parts:
        part1(args.sessions, budget, models_dir, out_dir)
    if 2 in args.parts:
        print(f"\npart 2 (facing): a turning two-sided person, person path at 128 px, {budget:.0f} s each", flush=True)
        _table(
            facing_study(budget, models_dir, out_dir),
            [
                ("maps", "maps", ""),
                ("steps", "steps", "d"),
                ("held out", "held_out", "d"),
                ("front/back", "front/back", ""),
                ("right side", "right_side", ".2f"),
                ("box PSNR", "box_psnr", ".2f"),
            ],
        )
    print(f"\npictures and held-out videos: {out_dir}")


def part1(sessions: list[str], budget: float, models_dir: Path | None, out_dir: Path) -> None:
    estimate = estimator(models_dir)
    print(f"part 1: {budget:.0f} s of training per path and session; torch threads {torch.get_num_threads()}")
    rows: list[dict] = []
    for name in sessions:
        t0 = time.perf_counter()
        if name == "footage":
            session = footage_session(SHARED / "data/videos/vtest.avi", models_dir, out_dir / "cache")
        elif name == "synthetic":
            session = synthetic_session()
        else:
            session = photo_session(SHARED / f"data/images/{name}.png", models_dir)
        p = prepare(session, models_dir)
        w, h = session.size
        print(
            f"\n{name}: {session.source}; {len(session.frames)} frames {w}x{h}, {int(p.train.sum())} trained on, "
            f"{int(p.test.sum())} held out after a gap of {p.gap}; masks {p.mask_source}, masks+plate {p.prep_s:.1f} s",
            flush=True,
        )
        rows += compare(p, budget, out_dir, estimate)
        _table(rows[-2:], COLUMNS)
        print(f"({time.perf_counter() - t0:.0f} s)", flush=True)
    print("\nheld-out frames, at the camera's resolution:")
    _table(rows, COLUMNS)
    mean = {}
    for path in ("whole", "person"):
        mine = [r for r in rows if r["path"] == path]
        mean[path] = {
            k: float(np.nanmean([r[k] for r in mine]))
            for k in ("box_ssim", "box_psnr", "ssim", "psnr", "flicker", "pose_error", "steps_s")
        }
    _table([{"session": "mean", "path": k, **v} for k, v in mean.items()], COLUMNS)
    gain = mean["person"]["box_psnr"] - mean["whole"]["box_psnr"]
    aspect = all(r["output"].endswith("camera") for r in rows if r["path"] == "person")
    ssim_gain = mean["person"]["box_ssim"] - mean["whole"]["box_ssim"]
    print(
        f"\nperson-box PSNR: {gain:+.2f} dB for the person path at equal budget (target >= +3 dB: "
        f"{'met' if gain >= 3 else 'NOT met'}); person-box SSIM {ssim_gain:+.3f}; "
        f"steps/s ratio person/whole {mean['person']['steps_s'] / mean['whole']['steps_s']:.2f}; "
        f"output at the camera's aspect: {'yes' if aspect else 'no'}"
    )


MEAN_KEYS = ("box_ssim", "box_psnr", "ssim", "psnr", "flicker", "pose_error", "steps_s")


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


# The held-out figures every quality benchmark prints (title, key, format).
QUALITY_COLUMNS = [
    ("box SSIM", "box_ssim", ".3f"),
    ("box PSNR", "box_psnr", ".2f"),
    ("SSIM", "ssim", ".3f"),
    ("PSNR", "psnr", ".2f"),
    ("flicker", "flicker", ".2f"),
    ("pose err", "pose_error", ".3f"),
]

COLUMNS = [
    ("session           ", "session", ""),
    ("path", "path", ""),
    ("steps", "steps", "d"),
    ("steps/s", "steps_s", ".2f"),
    *QUALITY_COLUMNS,
    ("output", "output", ""),
]


if __name__ == "__main__":
    main()
