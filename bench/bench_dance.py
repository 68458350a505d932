"""The generators judged on the dance they render and on held-out poses the session never showed,
side by side: one-shot, pose-map GAN, warp-conditioned GAN and warp + reliability maps.

    .venv/bin/python -m bench.bench_dance                 # 90 s of training per GAN arm and session
    .venv/bin/python -m bench.bench_dance --budget 300    # the trainer's CPU budget (~25 minutes)
    .venv/bin/python -m bench.bench_dance --quick         # 30 s per arm: a smoke run
    .venv/bin/python -m bench.bench_dance --sessions footage --arms pose warp-reliable

Sessions (no synthetic session made by the part warper chooses here, since the warp arm is made
of that warper and would be rewarded for matching its own output):

* footage: the clearest pedestrian of ../shared/data/videos/vtest.avi (bench.footage: the longest
  clean BlazePose track), real pixels and a real body, walking away from the camera;
* demo: the demo's clip (booth.demo: the astronaut photo's person moved through a dance by
  vision.dance_clip at 640x360); its frames are warped from one photo, so its held-out figures
  favour the warp arm; its dance figures do not (no ground truth is involved).

Every arm gets the same training frames: those outside both held-out splits (trainer.training_set):
"novel" (the stretches whose poses are farthest from the rest of the session, the trainer's
default) and "tail" (the last frames, as before), each with a half-second gap. Arms:

* real: no arm: the session's own frames judged against their own poses, what a renderer that
  drew these poses perfectly would score with this judge on this footage: the judge's floor,
  printed beside every arm ("floor"), since no arm can be expected below it (on the walker: two
  estimators' keypoint noise on a torso ~22 px long). On the demo's clip the "real" frames are the
  clip maker's (a portrait's parts warped to each pose), so that row measures the clip too; and
  its asked hips lie below the frame's edge, so no frame of it has a limb error (trainer.fidelity.
  in_view): its figures are facing and person found;
* oneshot: trainer.oneshot (views chosen among the training frames, parts warped, no training);
* pose: the generator reads the facing pose map (trainer.framing.PersonCentred);
* warp: it also reads the visitor warped part by part to the pose (trainer.warp_framing);
* warp-reliable: and maps of where that warp is unreliable (trainer.warp_reliability: parts
  never seen, bones far from the source's, another facing).

The GAN arms train for the same seconds of steps, alternately in 10 s slices (bench.bench_person),
on a 256 px crop, batch 1, as the trainer does on a CPU.

The dance: the session's own most confident pose (so it needs no normalization) moved by
vision.dance_clip.dance_poses (arms raised and bent, hips and knees swaying: poses the walk
never shows), first as the session faces, then turned round (mirrored about the hips, the face
unseen): a facing the session (nearly) never shows. Each arm renders it at the camera's size and
trainer.fidelity judges every frame with MoveNet (the session's and the dance's poses are
BlazePose's): limb error in torso lengths (mean, p90), facing agreement, share of frames with a
person. Held-out figures: person-box SSIM/PSNR on each split.

Pictures (dance.png per arm: asked pose | rendered frame, eight frames) and the dance videos go
to <state dir>/bench/dance/.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from bench.bench_person import CAMERA, SHARED, _table, holdout_gap, prepare, train_alternately, trainer_for
from bench.footage import Session
from infra.settings import Settings
from trainer.fidelity import FACINGS, DanceJudge, facing_class, facings_of
from trainer.pix2pix.evaluate import video_quality
from trainer.training_set import DEFAULT_HOLDOUT_FRACTION, holdout_split, novel_split

DANCE_HALF = 48  # frames of the dance in each facing
DRAWN_BY = "blazepose"  # bench.footage and the demo's clip take their poses from BlazePose
ARMS = ("pose", "warp", "warp-reliable")  # the GAN arms (trainer.warp_framing.CONDITIONINGS)

COLUMNS = [
    ("session", "session", ""),
    ("arm    ", "arm", ""),
    ("steps", "steps", "d"),
    ("steps/s", "steps_s", ".2f"),
    ("limb err", "dance_limb_error", ".3f"),
    ("limb p90", "dance_limb_error_p90", ".3f"),
    ("facing", "dance_facing_agreement", ".2f"),
    ("found", "dance_person_found", ".2f"),
    ("floor", "floor", ".3f"),
    ("novel box SSIM", "novel_box_ssim", ".3f"),
    ("novel box PSNR", "novel_box_psnr", ".2f"),
    ("tail box SSIM", "tail_box_ssim", ".3f"),
    ("tail box PSNR", "tail_box_psnr", ".2f"),
]
# The limb error by the asked pose's facing (trainer.fidelity.figures): which half of the dance renders worst.
BY_FACING = [("session", "session", ""), ("arm    ", "arm", "")] + [
    (f"{c} limb", f"dance_limb_error_{c}", ".3f") for c in FACINGS
]


def demo_session(frames: int = 150, size: tuple[int, int] = (640, 360)) -> Session:
    """The demo's camera clip (booth.demo: seed 1), with its exact poses."""
    from booth.demo import demo_photo, photo_person
    from vision.dance_clip import dancing_person_clip

    photo = demo_photo(None)
    person = photo_person(photo)
    if person is None:
        raise SystemExit("the demo's clip needs BlazePose's models (../shared/models/blazepose)")
    clip = dancing_person_clip(photo, person[0], person[1], n_frames=frames, size=size, seed=1)
    return Session("demo", np.stack([f for f, _ in clip]), np.stack([p for _, p in clip]), 30.0, "booth demo clip")


def turned(poses: np.ndarray) -> np.ndarray:
    """The same poses seen from the other side (trainer.fidelity.facing_class flips between front
    and back): a front is mirrored about the mid-hip's x, the labels kept (the person's left stays
    their left), its face hidden; a back gets its face shown (BlazePose places the face keypoints
    of a back view too), mirrored only where its shoulders were in a back's order, since
    estimators often label a back view's shoulders as a front's."""
    from schemas.keypoints import INDEX
    from vision.posemap import facing

    out = np.array(poses, np.float32, copy=True)
    face = [INDEX["nose"], INDEX["left_eye"], INDEX["right_eye"]]
    for p in out:
        front = facing_class(p) == "front"
        if front or facing(p) < 0:
            hips = p[[INDEX["left_hip"], INDEX["right_hip"]], 0].mean()
            p[:, 0] = 2 * hips - p[:, 0]
        p[face, 2] = 0.0 if front else 0.9
    return out


def dance_for(session: Session, train: np.ndarray) -> np.ndarray:
    """The dance asked of the session (module doc), in the camera's pixels."""
    from vision.dance_clip import dance_poses

    idx = np.flatnonzero(train)
    # The most confident keypoints, a front or back view before a profile.
    scores = [float(np.sum(p[:, 2] >= 0.3)) + 0.5 * (facing_class(p) in ("front", "back")) for p in session.poses[idx]]
    base = session.poses[idx[int(np.argmax(scores))]]
    first = dance_poses(base, DANCE_HALF, session.fps, seed=7)
    second = turned(dance_poses(base, DANCE_HALF, session.fps, seed=8))
    return np.concatenate([first, second])


def splits(session: Session) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(training frames, {split: held-out frames}): the training frames are outside both."""
    n = len(session.frames)
    cameras, seqs = np.array([CAMERA] * n), np.arange(n)
    gap = holdout_gap(session.fps)
    novel = novel_split(cameras, seqs, session.poses, DEFAULT_HOLDOUT_FRACTION, gap)
    tail = holdout_split(cameras, seqs, DEFAULT_HOLDOUT_FRACTION, gap)
    for s in (novel, tail):
        if s.note:
            print(f"  split: {s.note}")
    return novel.train & tail.train, {"novel": novel.test, "tail": tail.test}


def judge(name: str, arm: str, dance: np.ndarray, frames, models_dir, out_dir: Path, n: int | None = None) -> dict:
    """Render the dance through `frames` (an iterator of (frame, picture)), keep the video, judge
    it (n frames spread over it; all of them by default)."""
    from trainer.pix2pix.samples import png_bytes
    from trainer.rendition import write_video

    j = DanceJudge(dance, DRAWN_BY, models_dir, frames=n or len(dance))
    write_video(j.watch(frames), len(dance), out_dir / f"{name}-{arm}-dance.mp4", 10, progress=False)
    result = j.judge()
    if result.picture is not None:
        (out_dir / f"{name}-{arm}-dance.png").write_bytes(png_bytes(result.picture))
    for w in result.warnings:
        print(f"  {arm}: {w}")
    return result.figures


def judged_arms(
    session: str, arms: dict, trainers: dict, data, tests: dict[str, np.ndarray], dance, models_dir, out_dir
):
    """Each trained GAN arm in turn: (arm, row, {split: (real, fake, poses)}): the row holds its
    steps, steps/s and its dance's figures (`judge`), the held-out frames of each split are
    rendered for the caller to score as it likes."""
    from trainer.evaluation import held_out_frames

    for arm, framing in arms.items():
        t = trainers[arm]
        row = {"session": session, "arm": arm, "steps": t.step, "steps_s": t.step / max(t.elapsed_s, 1e-9)}
        held = {}
        for split, test in tests.items():
            real, fake, _maps, poses = held_out_frames(t.G, framing, data, test)[CAMERA]
            held[split] = (real, fake, poses)
        stem = Path(session).stem
        row.update(judge(stem, arm, dance, framing.frames(t.G, dance, CAMERA), models_dir, out_dir))
        yield arm, row, held


def run_session(
    name: str, session: Session, budget: float, models_dir, out_dir: Path, kinds: tuple[str, ...] = ARMS
) -> list[dict]:
    from trainer.oneshot import choose_views, oneshot_frames
    from trainer.warp_framing import warp_framing
    from vision.warp import PartWarper

    t0 = time.perf_counter()
    train, tests = splits(session)
    p = prepare(session, models_dir, split=(train, tests["novel"]))
    data = p.data
    dance = dance_for(session, train)
    plate = p.person.plates[CAMERA]
    w, h = session.size
    print(
        f"\n{name}: {session.source}; {len(session.frames)} frames {w}x{h} at {session.fps:g} fps, "
        f"{int(train.sum())} trained on, held out: novel {int(tests['novel'].sum())}, tail {int(tests['tail'].sum())}; "
        f"facings of the session {facings_of(session.poses[train])}, of the dance {facings_of(dance)}",
        flush=True,
    )
    candidates = np.flatnonzero(train)
    views, _chosen = choose_views(data, candidates, (w, h), lambda i: p.masks[i])
    warper = PartWarper(views)
    arms = {
        kind: p.person if kind == "pose" else warp_framing(kind).from_person(p.person, data, train, p.masks)
        for kind in kinds
    }
    trainers = {arm: trainer_for(framing, p) for arm, framing in arms.items()}
    train_alternately(trainers, budget)

    # The judge on the session's own frames against their own poses: what a perfect renderer of
    # these poses would score here (two estimators' disagreement, other people in the crop).
    real = judge(name, "real", session.poses, ((f, f) for f in session.frames), models_dir, out_dir, 48)
    rows = [{"session": name, "arm": "real", **real}]
    row: dict = {"session": name, "arm": "oneshot", "steps": 0, "steps_s": float("nan")}
    for split, test in tests.items():
        idx = np.flatnonzero(test)
        fake = np.stack([f for f, _ in oneshot_frames(warper, data.poses[idx], plate)])
        q = video_quality(np.stack([data.frames[i] for i in idx]), fake, data.poses[idx])
        row.update({f"{split}_box_ssim": q["box_ssim"], f"{split}_box_psnr": q["box_psnr"]})
    row.update(judge(name, "oneshot", dance, oneshot_frames(warper, dance, plate), models_dir, out_dir))
    rows.append(row)
    for _arm, row, held in judged_arms(name, arms, trainers, data, tests, dance, models_dir, out_dir):
        for split, (real, fake, poses) in held.items():
            q = video_quality(real, fake, poses)
            row.update({f"{split}_box_ssim": q["box_ssim"], f"{split}_box_psnr": q["box_psnr"]})
        rows.append(row)
    for r in rows:
        r["floor"] = rows[0]["dance_limb_error"]
    _table(rows, COLUMNS)
    print(f"({time.perf_counter() - t0:.0f} s)", flush=True)
    return rows


def main() -> None:
    from bench.bench_oneshot import load

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="30 s per GAN arm")
    ap.add_argument("--budget", type=float, help="seconds of training per GAN arm and session (default 90)")
    ap.add_argument("--sessions", nargs="+", default=["footage", "demo"], help="footage, demo, or video files")
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS, help="the GAN arms (default: all)")
    args = ap.parse_args()
    budget = args.budget or (30.0 if args.quick else 90.0)
    torch.manual_seed(0)
    models_dir = SHARED / "models" if (SHARED / "models").is_dir() else None
    out_dir = Path(Settings().state_dir) / "bench" / "dance"
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"{budget:.0f} s of training per GAN arm and session; torch threads {torch.get_num_threads()}")
    rows: list[dict] = []
    for name in args.sessions:
        session = demo_session() if name == "demo" else load(name, models_dir, out_dir.parent / "oneshot")
        rows += run_session(Path(name).stem, session, budget, models_dir, out_dir, tuple(args.arms))
    print("\nthe dance (judged by MoveNet on every frame) and held-out person boxes, at the camera's resolution:")
    _table(rows, COLUMNS)
    print("\nthe limb error by the asked pose's facing (blank: the dance asks none, or none compared):")
    _table(rows, BY_FACING)
    for name in {r["session"] for r in rows}:
        arm = {r["arm"]: r for r in rows if r["session"] == name}
        arms = [r for r in arm.values() if r["arm"] != "real"]
        best = min(arms, key=lambda r: np.nan_to_num(r["dance_limb_error"], nan=9.0))
        ratios = "".join(
            f"{a}/pose limb error {arm[a]['dance_limb_error'] / max(arm['pose']['dance_limb_error'], 1e-9):.2f}x; "
            for a in ARMS[1:]
            if a in arm and "pose" in arm
        )
        floor = arm["real"]["dance_limb_error"]
        lowest = (
            f"lowest dance limb error: {best['arm']} ({best['dance_limb_error']:.3f}, "
            f"{best['dance_limb_error'] - floor:+.3f} over the floor); {ratios}"
            if np.isfinite(best["dance_limb_error"])
            else "no limb error on any arm (see the warnings); "
        )
        print(
            f"{name}: {lowest}target < 0.10 and facing >= 0.9; the judge's floor (the real frames "
            f"themselves): {floor:.3f}, facing {arm['real']['dance_facing_agreement']:.2f}"
        )
    print(f"\npictures and dance videos: {out_dir}")


if __name__ == "__main__":
    main()
