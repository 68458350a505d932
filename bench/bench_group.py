"""Two people in one session: colour-coded pose maps against one palette for everyone, at equal
wall-clock budget.

    .venv/bin/python -m bench.bench_group            # 240 s of training per arm (about 9 minutes)
    .venv/bin/python -m bench.bench_group --quick    # 60 s per arm (about 3 minutes)

The session: two synthetic people (trainer.pix2pix.synthetic PERSON_A in a red shirt, PERSON_B
in a green one) in one room, each in a new random pose every frame, walking to and fro so that
they cross and swap sides every few seconds: where someone stands does not say who they are.
The generator trains on whole frames (trainer.people.GroupFrame, the trainer's path for several
visitors) from

* coded: each person in their slot's palette (vision.posemap.render_people_map), as the
  assembler stores a group session;
* one palette: both drawn in today's one-person colours, as a dataset that kept everyone but
  did not tell them apart would be.

Same frames, same held-out block (trainer.dataset.holdout_split), alternating slices of training
(bench.bench_person.train_alternately). Figures on the held-out frames at the camera's size:
SSIM/PSNR of the whole frame and "right clothes", the share of (frame, person) pairs whose
generated shirt (the torso between the four torso keypoints) is closer in colour to that
person's shirt than to the other's. A picture sheet (map | real | coded | one palette) and the
held-out videos go to <state dir>/bench/multiperson/.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import cv2
import numpy as np
import torch

from bench.bench_person import _table, _write_video, train_alternately
from infra.settings import Settings
from trainer.dataset import TrainingSet, holdout_split
from trainer.people import GroupFrame
from trainer.pix2pix.evaluate import video_quality
from trainer.pix2pix.networks import NetConfig
from trainer.pix2pix.synthetic import PERSON_A, PERSON_B, random_pose
from trainer.pix2pix.train import TrainConfig, Trainer
from vision.posemap import render_pose_map

CAMERA = "cam0"
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
    """Share of (frame, person) whose generated shirt is nearer their own shirt colour."""
    shirts = np.array([PERSON_A.shirt, PERSON_B.shirt], np.float64)
    right = total = 0
    for fake, pp in zip(fakes, people):
        for k, pose in enumerate(pp):
            mask = np.zeros(fake.shape[:2], np.uint8)
            cv2.fillConvexPoly(mask, np.round(pose[_TORSO, :2]).astype(np.int32), 1)
            # Where the two overlap, the torso shows whoever is in front: count only the visible part.
            if k == 0:
                other = np.zeros_like(mask)
                cv2.fillConvexPoly(other, np.round(pp[1][_TORSO, :2]).astype(np.int32), 1)
                mask &= 1 - other
            if mask.sum() < 20:
                continue
            mean = fake[mask.astype(bool)].mean(axis=0)
            d = np.linalg.norm(shirts - mean, axis=1)
            right += int(d[k] < d[1 - k])
            total += 1
    return right / total if total else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="60 s per arm instead of 240")
    ap.add_argument("--budget", type=float, help="seconds of training per arm")
    args = ap.parse_args()
    budget = args.budget or (60.0 if args.quick else 240.0)
    torch.manual_seed(0)
    out_dir = Path(Settings().state_dir) / "bench" / "multiperson"
    out_dir.mkdir(parents=True, exist_ok=True)
    frames, people = scene()
    n = len(frames)
    data = TrainingSet(
        frames,
        np.zeros((n, 1, 1, 3), np.uint8),  # no stored maps: both arms draw theirs
        people[:, 0].copy(),
        np.array([CAMERA] * n),
        np.arange(n),
        list(people),
        [np.array([0, 1])] * n,
    )
    split = holdout_split(data.cameras, data.seqs)
    arms = {
        "coded": GroupFrame(SIZE, "stick", {CAMERA: SRC}, [0, 1]),
        "one palette": OnePalette(SIZE, "stick", {CAMERA: SRC}, [0, 1]),
    }
    train_idx = np.flatnonzero(split.train)
    trainers = {
        k: Trainer(f.training_samples(data, train_idx), TrainConfig(net=NetConfig.fast(SIZE), checkpoint_every_s=None))
        for k, f in arms.items()
    }
    print(f"two people crossing, {n} frames ({int(split.test.sum())} held out), {SIZE} px, {budget:.0f} s per arm")
    train_alternately(trainers, budget)
    test = np.flatnonzero(split.test)
    rows, fakes = [], {}
    for k, framing in arms.items():
        # Through the rendition's path: every person of each held-out frame, in their slot.
        fake = np.stack([f for f, _m in framing.frames(trainers[k].G, people[test], CAMERA)])
        real = np.stack([frames[i] for i in test])
        q = video_quality(real, fake, people[test, 0])
        fakes[k] = fake
        rows.append(
            {
                "arm": k,
                "steps": trainers[k].step,
                "steps_s": trainers[k].step / max(trainers[k].elapsed_s, 1e-9),
                "ssim": q["ssim"],
                "psnr": q["psnr"],
                "right": right_clothes(fake, people[test]),
                "real right": right_clothes(real, people[test]),
            }
        )
        _write_video(out_dir / f"held-out-{k.replace(' ', '-')}.mp4", fake)
    _table(
        rows,
        [
            ("arm", "arm", ""),
            ("steps", "steps", "d"),
            ("steps/s", "steps_s", ".2f"),
            ("SSIM", "ssim", ".3f"),
            ("PSNR", "psnr", ".2f"),
            ("right clothes", "right", ".2f"),
            ("(real frames)", "real right", ".2f"),
        ],
    )
    coded = rows[0]
    base = rows[1]
    print(
        f"coded - one palette: PSNR {coded['psnr'] - base['psnr']:+.2f} dB, "
        f"right clothes {coded['right'] - base['right']:+.2f}"
    )
    _sheet(out_dir / "held-out.png", arms, data, test, real, fakes)
    print(f"pictures and held-out videos: {out_dir}")


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
