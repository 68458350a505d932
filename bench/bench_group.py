"""Two people in one session: colour-coded pose maps against one palette for everyone, at equal
wall-clock budget.

    .venv/bin/python -m bench.bench_group            # 180 s of training per arm (about 11 minutes)
    .venv/bin/python -m bench.bench_group --quick    # 50 s per arm (about 4 minutes)

The session: two synthetic people (trainer.pix2pix.synthetic PERSON_A in a red shirt, PERSON_B
in a green one) in one room, each in a new random pose every frame, walking to and fro so that
they cross and swap sides every few seconds: where someone stands does not say who they are.
The generator trains on whole frames (trainer.group.GroupFrame, the trainer's path for several
visitors) from

* coded: each person in their slot's palette (vision.posemap.render_people_map), as the
  assembler stores a group session;
* coded, swapped: the same with the palettes the other way round (A in slot 1, B in slot 0): an
  untrained generator lets some of the map's colours through, so one assignment alone could
  score for that; the mean of the two cannot;
* one palette: both drawn in today's one-person colours, as a dataset that kept everyone but
  did not tell them apart would be.

Same frames, same held-out block (trainer.training_set.holdout_split), alternating slices of training
(bench.bench_person.train_alternately). Figures on the held-out frames at the camera's size:
SSIM/PSNR of the whole frame and "right clothes": the share of held-out frames where the
generated red-shirted person is redder than the green-shirted one (the cores of their torsos,
away from the map's lines; real frames score about 1, a generator that cannot tell who is who
about 0.5). A picture sheet (maps |
real | coded | one palette), the held-out videos and a rendition of a real two-dancer reference
(couple_rendition) go to <state dir>/bench/multiperson/.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import cv2
import numpy as np
import torch

from bench.bench_person import _table, _write_video, train_alternately
from infra.settings import REPO_ROOT, Settings
from trainer.group import GroupFrame
from trainer.pix2pix.evaluate import video_quality
from trainer.pix2pix.networks import NetConfig
from trainer.pix2pix.synthetic import PERSON_A, PERSON_B, random_pose
from trainer.pix2pix.train import TrainConfig, Trainer
from trainer.training_set import TrainingSet, holdout_split
from vision.posemap import render_pose_map

CAMERA = "cam0"
SHARED = REPO_ROOT.parent / "shared"
SRC = (256, 160)  # the camera's frame
SIZE = 128  # the generator's square
FRAMES = 300
_TORSO = [5, 6, 12, 11]


def scene(n: int = FRAMES, seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """(frames, people [n, 2, 17, 3]): A and B, crossing every ~60 frames."""
    rng = np.random.default_rng(seed)
    b_person = dataclasses.replace(PERSON_B, background=PERSON_A.background)
    w, h = SRC
    frames, people = [], []
    for t in range(n):
        swing = 0.3 * np.sin(2 * np.pi * t / 120.0)
        poses = []
        for centre in (0.5 - swing, 0.5 + swing):
            p = random_pose((w // 2, h), rng)
            p[:, 0] += w * centre - w // 4  # the half-width figure moved to its place
            poses.append(p)
        frame = PERSON_A.render(poses[0], SRC, SRC)
        other = b_person.render(poses[1], SRC, SRC)
        mask = (other != b_person.backdrop(SRC)).any(axis=2)
        frame[mask] = other[mask]
        frames.append(frame)
        people.append(np.stack(poses))
    return frames, np.stack(people)


class OnePalette(GroupFrame):
    """Everyone drawn in today's colours: the maps say where people are, not who."""

    def input_map(self, people: np.ndarray, slots: np.ndarray, src_size: tuple[int, int]) -> np.ndarray:
        maps = [render_pose_map(p, src_size, self.size, style=self.style) for p in people]
        return np.max(np.stack(maps), axis=0) if maps else np.zeros((self.size, self.size, 3), np.uint8)


def right_clothes(fakes: np.ndarray, people: np.ndarray) -> float:
    """Share of frames showing both shirts where the generated A (red shirt) is redder than the
    generated B (green shirt). Redness is (R - G) / (R + G), which does not change with
    brightness: the palettes differ in brightness, and an untrained generator lets some of the
    map through, which must not count as knowing who is who (it scores about 0.5)."""
    right = total = 0

    def torso(pose: np.ndarray, shrink: float) -> np.ndarray:
        pts = pose[_TORSO, :2]
        c = pts.mean(axis=0)
        mask = np.zeros(fakes.shape[1:3], np.uint8)
        cv2.fillConvexPoly(mask, np.round(c + shrink * (pts - c)).astype(np.int32), 1)
        return mask

    for fake, (a, b) in zip(fakes, people):
        # The torsos' cores, away from the map's limb lines; where they overlap B is in front.
        cores = [torso(a, 0.5) & (1 - torso(b, 1.0)), torso(b, 0.5)]
        if min(int(m.sum()) for m in cores) < 20:
            continue
        red = []
        for m in cores:
            rgb = fake[m.astype(bool)].astype(np.float64).mean(axis=0)
            red.append((rgb[0] - rgb[1]) / (rgb[0] + rgb[1] + 1.0))
        right += int(red[0] > red[1])
        total += 1
    return right / total if total else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="50 s per arm instead of 180")
    ap.add_argument("--budget", type=float, help="seconds of training per arm")
    args = ap.parse_args()
    budget = args.budget or (50.0 if args.quick else 180.0)
    torch.manual_seed(0)
    out_dir = Path(Settings().state_dir) / "bench" / "multiperson"
    out_dir.mkdir(parents=True, exist_ok=True)
    frames, people = scene()
    n = len(frames)

    def dataset(slots: list[int]) -> TrainingSet:
        return TrainingSet(
            frames,
            np.zeros((n, 1, 1, 3), np.uint8),  # no stored maps: every arm draws its own
            people[:, 0].copy(),
            np.array([CAMERA] * n),
            np.arange(n),
            list(people),
            [np.array(slots)] * n,
        )

    data = dataset([0, 1])
    split = holdout_split(data.cameras, data.seqs)
    # (framing, its dataset): "coded, swapped" gives A the second palette and B the first, so a
    # pull of one palette towards one shirt colour cancels out between the two coded arms.
    arms = {
        "coded": (GroupFrame(SIZE, "stick", {CAMERA: SRC}, [0, 1]), data),
        "coded, swapped": (GroupFrame(SIZE, "stick", {CAMERA: SRC}, [1, 0]), dataset([1, 0])),
        "one palette": (OnePalette(SIZE, "stick", {CAMERA: SRC}, [0, 1]), data),
    }
    train_idx = np.flatnonzero(split.train)
    trainers = {
        k: Trainer(f.training_samples(d, train_idx), TrainConfig(net=NetConfig.fast(SIZE), checkpoint_every_s=None))
        for k, (f, d) in arms.items()
    }
    test = np.flatnonzero(split.test)
    real = np.stack([frames[i] for i in test])

    def held_out(k: str) -> np.ndarray:
        # Through the rendition's path: every person of each held-out frame, in their slot.
        return np.stack([f for f, _m in arms[k][0].frames(trainers[k].G, people[test], CAMERA)])

    at_start = {k: right_clothes(held_out(k), people[test]) for k in arms}
    print(f"two people crossing, {n} frames ({len(test)} held out), {SIZE} px, {budget:.0f} s per arm")
    train_alternately(trainers, budget)
    rows, fakes = [], {}
    for k in arms:
        fake = fakes[k] = held_out(k)
        q = video_quality(real, fake, people[test, 0])
        rows.append(
            {
                "arm": k,
                "steps": trainers[k].step,
                "steps_s": trainers[k].step / max(trainers[k].elapsed_s, 1e-9),
                "ssim": q["ssim"],
                "psnr": q["psnr"],
                "start": at_start[k],
                "right": right_clothes(fake, people[test]),
            }
        )
        _write_video(out_dir / f"held-out-{k.replace(', ', '-').replace(' ', '-')}.mp4", fake)
    _table(
        rows,
        [
            ("arm", "arm", ""),
            ("steps", "steps", "d"),
            ("steps/s", "steps_s", ".2f"),
            ("SSIM", "ssim", ".3f"),
            ("PSNR", "psnr", ".2f"),
            ("right clothes at step 0", "start", ".2f"),
            ("right clothes", "right", ".2f"),
        ],
    )
    coded = (rows[0]["right"] + rows[1]["right"]) / 2
    print(
        f"real frames: right clothes {right_clothes(real, people[test]):.2f}; coded (mean of both assignments) "
        f"{coded:.2f} vs one palette {rows[2]['right']:.2f}; PSNR coded - one palette "
        f"{(rows[0]['psnr'] + rows[1]['psnr']) / 2 - rows[2]['psnr']:+.2f} dB"
    )
    _sheet(out_dir / "held-out.png", {k: arms[k][0] for k in ("coded", "one palette")}, data, test, real, fakes)
    couple_rendition(trainers["coded"].G, arms["coded"][0], data, out_dir)
    print(f"pictures and held-out videos: {out_dir}")


def couple_rendition(generator, framing: GroupFrame, data: TrainingSet, out_dir: Path, frames: int = 24) -> None:
    """The rendition path end to end on a real two-dancer reference: the shared photo of a couple
    walking, moved about (vision.pose.synthetic), its dancers followed with PoseNet and the tracker
    (trainer.references.dancers), each normalized onto the visitor matched left to right
    (trainer.group), rendered by the coded generator: rendition.png (reference | map | video
    frame) and rendition.mp4."""
    import tempfile

    from trainer.group import build_group_dance
    from trainer.references.dancers import track_dancers
    from trainer.references.video import write_mp4
    from vision.pose import load_estimator
    from vision.pose.synthetic import moving_photo_clip

    photo_path = SHARED / "data" / "images" / "two_people_walking.png"
    if not photo_path.is_file():
        print(f"no {photo_path}: no couple rendition")
        return
    photo = cv2.cvtColor(cv2.imread(str(photo_path)), cv2.COLOR_BGR2RGB)
    clip = [f for f, _ in moving_photo_clip(photo, n_frames=60, size=(320, 240), seed=3)[:frames]]
    estimator = load_estimator("posenet", SHARED / "models", max_detections=4)
    with tempfile.TemporaryDirectory() as tmp:
        write_mp4(Path(tmp) / "couple.mp4", clip, 10)
        raw, _times, _size, found = track_dancers(Path(tmp) / "couple.mp4", estimator, 2)

    class Reference:  # the raw estimates are enough for a picture
        poses, dancers = raw[:, 0], raw

    dance = build_group_dance(Reference(), "couple", data, CAMERA, slots=[0, 1])
    out = list(framing.frames(generator, dance.poses, CAMERA))
    video = np.stack([f for f, _m in out])
    _write_video(out_dir / "rendition.mp4", video)
    w, h = SRC
    rows = []
    for t in np.unique(np.linspace(0, len(out) - 1, 3).round().astype(int)):
        ref = cv2.resize(clip[t], (round(clip[t].shape[1] * h / clip[t].shape[0]), h), interpolation=cv2.INTER_AREA)
        cells = [ref, out[t][1], out[t][0]]
        rows.append(np.concatenate([np.pad(c, ((2, 2), (2, 2), (0, 0))) for c in cells], axis=1))
    cv2.imwrite(str(out_dir / "rendition.png"), cv2.cvtColor(np.concatenate(rows), cv2.COLOR_RGB2BGR))
    print(f"couple rendition: {found['dancers']} dancers found, matched dancer:visitor {dance.match}")


def _sheet(path: Path, arms: dict, data: TrainingSet, test: np.ndarray, real: np.ndarray, fakes: dict) -> None:
    """Rows of held-out frames: coded map | one-palette map | real | coded | one palette."""
    picks = np.unique(np.linspace(0, len(test) - 1, 4).round().astype(int))
    w, h = SRC
    rows = []
    for j in picks:
        i = test[j]
        cells = [
            cv2.resize(arms[k].input_map(data.people[i], data.slots[i], SRC), (h, h), interpolation=cv2.INTER_AREA)
            for k in arms
        ]
        cells += [real[j], fakes["coded"][j], fakes["one palette"][j]]
        rows.append(np.concatenate([np.pad(c, ((2, 2), (2, 2), (0, 0))) for c in cells], axis=1))
    sheet = np.concatenate(rows, axis=0)
    labels = ("coded map", "one-palette map", "real", "coded", "one palette")
    x = 4
    head = np.zeros((18, sheet.shape[1], 3), np.uint8)
    for label, width in zip(labels, (h + 4, h + 4, w + 4, w + 4, w + 4)):
        cv2.putText(head, label, (x, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
        x += width
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate([head, sheet]), cv2.COLOR_RGB2BGR))


if __name__ == "__main__":
    main()
