"""Synthetic people for tests, benchmarks and smoke runs of the training stack.

`random_poses` draws plausible standing figures facing the camera; a `SyntheticPerson` renders a
pose as a flat cartoon body (clothes, skin, background): a deterministic function of the pose,
so a generator can learn it from pose maps exactly as it learns a real visitor.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from schemas.keypoints import INDEX, NUM_KEYPOINTS
from trainer.pix2pix.data import PairDataset
from vision.posemap import Letterbox, as_size, render_pose_map

_I = INDEX


def _rot(angle: float) -> np.ndarray:
    """Unit vector at `angle` radians from straight down (y grows downwards)."""
    return np.array([np.sin(angle), np.cos(angle)])


def random_pose(src_size: int | tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """One [17, 3] figure with score 1, its height 55-80% of the image, somewhere near the middle."""
    w, h = as_size(src_size)
    H = h * rng.uniform(0.55, 0.8)
    hip = np.array([w * rng.uniform(0.38, 0.62), h * rng.uniform(0.48, 0.56)])
    lean = rng.uniform(-0.15, 0.15)
    up = -_rot(lean)
    side = np.array([-up[1], up[0]])  # towards image right = the person's left
    neck = hip + up * 0.3 * H
    p = np.zeros((NUM_KEYPOINTS, 3))
    p[:, 2] = 1.0
    p[_I["left_shoulder"], :2] = neck + side * 0.1 * H
    p[_I["right_shoulder"], :2] = neck - side * 0.1 * H
    p[_I["left_hip"], :2] = hip + side * 0.07 * H
    p[_I["right_hip"], :2] = hip - side * 0.07 * H
    nose = neck + up * 0.12 * H
    p[_I["nose"], :2] = nose
    for s, sign in (("left", 1), ("right", -1)):
        p[_I[f"{s}_eye"], :2] = nose + side * sign * 0.03 * H + up * 0.02 * H
        p[_I[f"{s}_ear"], :2] = nose + side * sign * 0.06 * H
        a = sign * rng.uniform(0.1, 2.6)  # upper arm, from hanging down to raised
        elbow = p[_I[f"{s}_shoulder"], :2] + _rot(a + lean) * 0.15 * H
        p[_I[f"{s}_elbow"], :2] = elbow
        p[_I[f"{s}_wrist"], :2] = elbow + _rot(a + lean + sign * rng.uniform(-0.3, 1.8)) * 0.14 * H
        t = sign * rng.uniform(-0.05, 0.45)  # thigh
        knee = p[_I[f"{s}_hip"], :2] + _rot(t) * 0.22 * H
        p[_I[f"{s}_knee"], :2] = knee
        p[_I[f"{s}_ankle"], :2] = knee + _rot(t - sign * rng.uniform(0.0, 0.5)) * 0.22 * H
    return p.astype(np.float32)


def random_poses(n: int, src_size: int | tuple[int, int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([random_pose(src_size, rng) for _ in range(n)])


@dataclass(frozen=True)
class SyntheticPerson:
    """A cartoon person: colours (RGB) and limb widths as fractions of the output side."""

    shirt: tuple[int, int, int] = (200, 40, 40)
    trousers: tuple[int, int, int] = (40, 50, 140)
    skin: tuple[int, int, int] = (225, 180, 150)
    hair: tuple[int, int, int] = (60, 40, 20)
    background: tuple[int, int, int] = (90, 120, 90)
    limb_frac: float = 0.045
    head_frac: float = 0.055

    def backdrop(self, out_size: int | tuple[int, int]) -> np.ndarray:
        """The empty scene (uint8 [H, W, 3]): a vertical gradient, so it is not trivially flat."""
        W, H = as_size(out_size)
        ramp = np.linspace(0.75, 1.15, H)[:, None, None]
        return np.repeat(np.clip(np.array(self.background)[None, None] * ramp, 0, 255).astype(np.uint8), W, axis=1)

    def layers(
        self, pose: np.ndarray, src_size: int | tuple[int, int], out_size: int | tuple[int, int]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(frame, plate, mask): the person over the backdrop, the backdrop alone, and the person's
        pixels (float32 [H, W], 1 where the two differ) - a scene whose plate and mask are exact."""
        frame, plate = self.render(pose, src_size, out_size), self.backdrop(out_size)
        return frame, plate, (frame != plate).any(axis=2).astype(np.float32)

    def render(self, pose: np.ndarray, src_size: int | tuple[int, int], out_size: int | tuple[int, int]) -> np.ndarray:
        box = Letterbox.fit(src_size, out_size)
        W, H = box.out_size
        xy = box.to_output(np.asarray(pose, np.float32)[:, :2]) - 0.5
        img = self.backdrop((W, H))
        m = min(W, H)
        lw = max(2, round(self.limb_frac * m))
        pt = {name: tuple(int(v) for v in np.round(xy[i] * 16)) for name, i in INDEX.items()}

        def limb(a: str, b: str, colour, width: int) -> None:
            cv2.line(img, pt[a], pt[b], colour, width, cv2.LINE_AA, 4)

        for s in ("left", "right"):
            limb(f"{s}_hip", f"{s}_knee", self.trousers, lw + 1)
            limb(f"{s}_knee", f"{s}_ankle", self.trousers, lw)
        torso = np.array([pt["left_shoulder"], pt["right_shoulder"], pt["right_hip"], pt["left_hip"]])
        cv2.fillConvexPoly(img, torso, self.shirt, cv2.LINE_AA, 4)
        for s in ("left", "right"):
            limb(f"{s}_shoulder", f"{s}_elbow", self.shirt, lw)
            limb(f"{s}_elbow", f"{s}_wrist", self.skin, max(2, lw - 2))
        head_r = max(2, round(self.head_frac * m)) * 16
        cv2.circle(img, pt["nose"], head_r, self.skin, -1, cv2.LINE_AA, 4)
        hair_c = (pt["nose"][0], pt["nose"][1] - head_r // 2)
        cv2.ellipse(img, hair_c, (head_r, head_r // 2), 0, 180, 360, self.hair, -1, cv2.LINE_AA, 4)
        return img


PERSON_A = SyntheticPerson()
# Same build and style as A, other clothes, skin, hair and room: "a similar person".
PERSON_B = SyntheticPerson(
    shirt=(40, 150, 70),
    trousers=(35, 35, 40),
    skin=(170, 120, 90),
    hair=(200, 170, 90),
    background=(125, 105, 140),
    limb_frac=0.055,
)


# COCO-17 with left and right swapped: the same figure seen from behind.
TURNED = np.array([0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15])


def shows_front(pose: np.ndarray) -> bool:
    """Whether a figure shows its front: its left shoulder on the image's right."""
    p = np.asarray(pose)
    return bool(p[_I["left_shoulder"], 0] > p[_I["right_shoulder"], 0])


@dataclass(frozen=True)
class TwoSidedPerson(SyntheticPerson):
    """A cartoon person whose front and back differ, for checking that a generator tells them apart
    from the pose map: the front has a face under the hair and a white panel on the shirt; the
    back a head all hair and a shirt of another colour. A pose shows the front when its left
    shoulder is on the image's right; TURNED turns a pose round."""

    panel: tuple[int, int, int] = (245, 245, 245)
    back_shirt: tuple[int, int, int] = (40, 150, 70)

    def render(self, pose: np.ndarray, src_size: int | tuple[int, int], out_size: int | tuple[int, int]) -> np.ndarray:
        pose = np.asarray(pose, np.float32)
        front = shows_front(pose)
        base = SyntheticPerson(
            shirt=self.shirt if front else self.back_shirt,
            trousers=self.trousers,
            skin=self.skin,
            hair=self.hair,
            background=self.background,
            limb_frac=self.limb_frac,
            head_frac=self.head_frac,
        )
        img = base.render(pose, src_size, out_size)
        box = Letterbox.fit(src_size, out_size)
        xy = box.to_output(pose[:, :2]) - 0.5
        m = min(box.out_size)
        if front:
            c, w, h = self.chest(xy)
            cv2.rectangle(img, (int(c[0] - w), int(c[1] - h)), (int(c[0] + w), int(c[1] + h)), self.panel, -1)
        else:
            head_r = max(2, round(self.head_frac * m)) * 16
            nose = tuple(int(v) for v in np.round(xy[_I["nose"]] * 16))
            cv2.circle(img, nose, head_r, self.hair, -1, cv2.LINE_AA, 4)
        return img

    @staticmethod
    def chest(xy: np.ndarray) -> tuple[np.ndarray, float, float]:
        """(centre, half width, half height) of the chest panel for keypoints xy in output pixels."""
        sh = (xy[_I["left_shoulder"]] + xy[_I["right_shoulder"]]) / 2
        hp = (xy[_I["left_hip"]] + xy[_I["right_hip"]]) / 2
        w = 0.25 * float(np.linalg.norm(xy[_I["left_shoulder"]] - xy[_I["right_shoulder"]]))
        return sh + 0.35 * (hp - sh), w, 0.18 * float(np.linalg.norm(hp - sh))

    def facing_right(self, image: np.ndarray, pose: np.ndarray, size: tuple[int, int]) -> bool:
        """Whether a generated image (of a pose in pixels of an image of `size`, rendered at that
        size) shows the pose's true side: the shirt's colour below the panel (the front's shirt or
        the back's) is nearer this person's render of that side than of the other."""
        pose = np.asarray(pose, np.float32)
        xy = pose[:, :2] - 0.5
        sh = (xy[_I["left_shoulder"]] + xy[_I["right_shoulder"]]) / 2
        hp = (xy[_I["left_hip"]] + xy[_I["right_hip"]]) / 2
        c = sh + 0.75 * (hp - sh)  # the panel ends at 0.53 of the way down
        w = 0.25 * float(np.linalg.norm(xy[_I["left_shoulder"]] - xy[_I["right_shoulder"]]))
        h = 0.08 * float(np.linalg.norm(hp - sh))
        x0, x1 = int(c[0] - w), int(c[0] + w) + 1
        y0, y1 = int(c[1] - h), int(c[1] + h) + 1
        # The labels swapped: the same figure in the same place, showing the other side.
        this, other = self.render(pose, size, size), self.render(pose[TURNED], size, size)
        region = (slice(max(0, y0), max(1, y1)), slice(max(0, x0), max(1, x1)))

        def mean(img: np.ndarray) -> np.ndarray:
            return img[region].reshape(-1, 3).astype(np.float32).mean(axis=0)

        g = mean(image)
        return bool(np.abs(g - mean(this)).sum() < np.abs(g - mean(other)).sum())


def make_pairs(person: SyntheticPerson, poses: np.ndarray, src_size: int | tuple[int, int], size: int) -> PairDataset:
    """(pose map, rendered person) pairs at size x size, from the shared pose-map renderer."""
    maps = np.stack([render_pose_map(p, src_size, size) for p in poses])
    frames = np.stack([person.render(p, src_size, size) for p in poses])
    return PairDataset(maps, frames)
