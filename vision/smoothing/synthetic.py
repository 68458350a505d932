"""Synthetic dancers with known truth: a 2D stick figure moving smoothly, and realistic corruption.

The figure has a rigid torso and head and limbs of fixed lengths; its root sways and its joint
angles are sums of sinusoids (0.15-1.2 Hz, the range of dance movements), so every SKELETON limb
keeps its length exactly while the pose changes continuously. Sizes suit a full body in 640x480.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from schemas.keypoints import INDEX, NUM_KEYPOINTS

# Body dimensions in pixels (a person about 330 px tall).
TORSO_LENGTH = 110.0  # pelvis centre to neck
SHOULDER_HALF = 38.0
HIP_HALF = 22.0
UPPER_ARM, FOREARM = 62.0, 55.0
THIGH, SHIN = 85.0, 80.0
NECK_TO_NOSE = 38.0


def _wave(rng: np.random.Generator, t: np.ndarray, amplitude: float, n: int = 3) -> np.ndarray:
    """A smooth random signal: a sum of `n` sinusoids with total peak amplitude <= `amplitude`."""
    freqs = rng.uniform(0.15, 1.2, n)
    phases = rng.uniform(0, 2 * np.pi, n)
    amps = rng.dirichlet(np.ones(n)) * amplitude
    return (amps[:, None] * np.sin(2 * np.pi * freqs[:, None] * t[None, :] + phases[:, None])).sum(axis=0)


def _unit(angle: np.ndarray) -> np.ndarray:
    """Direction of `angle` (radians from straight down, counter-clockwise on screen) as [..., 2]."""
    return np.stack([np.sin(angle), np.cos(angle)], axis=-1)


def stick_figure(n_frames: int, fps: float = 30.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A dancing stick figure: (poses [T, 17, 3] float32 with score 1, times [T] seconds)."""
    if n_frames < 1 or not fps > 0:
        raise ValueError(f"stick_figure needs n_frames >= 1 and fps > 0, got {n_frames} and {fps}")
    rng = np.random.default_rng(seed)
    t = np.arange(n_frames) / fps
    pelvis = np.stack([320.0 + _wave(rng, t, 60.0), 285.0 + _wave(rng, t, 12.0)], axis=-1)
    lean = _wave(rng, t, 0.25)  # torso angle from vertical
    up = -_unit(lean)  # pelvis -> neck
    side = np.stack([-up[:, 1], up[:, 0]], axis=-1)  # perpendicular, towards the figure's left
    neck = pelvis + TORSO_LENGTH * up
    head = lean + _wave(rng, t, 0.3)
    nose = neck + NECK_TO_NOSE * -_unit(head)
    head_side = np.stack([np.cos(head), -np.sin(head)], axis=-1)
    head_up = -_unit(head)

    xy = np.zeros((n_frames, NUM_KEYPOINTS, 2))
    xy[:, INDEX["nose"]] = nose
    for s, name in ((1, "left"), (-1, "right")):
        xy[:, INDEX[f"{name}_eye"]] = nose + 8.0 * s * head_side + 6.0 * head_up
        xy[:, INDEX[f"{name}_ear"]] = nose + 17.0 * s * head_side + 2.0 * head_up
        shoulder = neck + s * SHOULDER_HALF * side
        hip = pelvis + s * HIP_HALF * side
        # Arms swing widely, legs less; angles are relative to straight down, mirrored per side.
        arm = lean + s * (0.6 + _wave(rng, t, 1.1))
        elbow_bend = s * (0.6 + _wave(rng, t, 0.6))
        leg = lean + s * (0.12 + _wave(rng, t, 0.3))
        knee_bend = -s * (0.2 + np.abs(_wave(rng, t, 0.35)))
        elbow = shoulder + UPPER_ARM * _unit(arm)
        knee = hip + THIGH * _unit(leg)
        xy[:, INDEX[f"{name}_shoulder"]] = shoulder
        xy[:, INDEX[f"{name}_hip"]] = hip
        xy[:, INDEX[f"{name}_elbow"]] = elbow
        xy[:, INDEX[f"{name}_wrist"]] = elbow + FOREARM * _unit(arm + elbow_bend)
        xy[:, INDEX[f"{name}_knee"]] = knee
        xy[:, INDEX[f"{name}_ankle"]] = knee + SHIN * _unit(leg + knee_bend)
    poses = np.concatenate([xy, np.ones((n_frames, NUM_KEYPOINTS, 1))], axis=-1)
    return poses.astype(np.float32), t


@dataclass(frozen=True)
class Corruption:
    """What `corrupt` did: the corrupted poses and where keypoints were dropped or made outliers."""

    poses: np.ndarray  # [T, 17, 3] float32
    dropped: np.ndarray  # [T, 17] bool: score set below 0.2, position only roughly right
    outliers: np.ndarray  # [T, 17] bool: confidently placed far from the truth


def corrupt(
    poses: np.ndarray,
    seed: int = 0,
    jitter_px: float = 2.0,
    drop_fraction: float = 0.2,
    mean_drop_frames: float = 3.0,
    outlier_rate: float = 0.005,
    outlier_px: tuple[float, float] = (60.0, 150.0),
) -> Corruption:
    """Corrupt truth poses [T, 17, 3] the way a pose estimator does.

    - Gaussian jitter of `jitter_px` on every coordinate, scores in [0.5, 1];
    - a `drop_fraction` of keypoints dropped, in bursts of `mean_drop_frames` on average (occlusions
      last), each keypoint a two-state Markov chain: dropped ones get a score in [0, 0.2) and a
      position 20 px off on average, as an estimator's low-confidence guess;
    - at `outlier_rate` per keypoint and frame, a 1-2 frame glitch: a confident position
      `outlier_px` away in a random direction.
    """
    poses = np.asarray(poses, dtype=np.float64)
    if not 0 <= drop_fraction < 1 or mean_drop_frames < 1:
        raise ValueError(
            f"corrupt needs 0 <= drop_fraction < 1 and mean_drop_frames >= 1, got "
            f"{drop_fraction} and {mean_drop_frames}"
        )
    rng = np.random.default_rng(seed)
    n, k = poses.shape[:2]
    out = poses.copy()
    out[..., :2] += rng.normal(0.0, jitter_px, (n, k, 2))
    out[..., 2] = rng.uniform(0.5, 1.0, (n, k))

    # Markov chain with stationary drop probability p and mean burst length B.
    p, burst = drop_fraction, mean_drop_frames
    enter = min(1.0, p / ((1 - p) * burst)) if p > 0 else 0.0
    leave = 1.0 / burst
    dropped = np.zeros((n, k), bool)
    state = rng.random(k) < p
    draws = rng.random((n, k))
    for i in range(n):
        state = np.where(state, draws[i] >= leave, draws[i] < enter)
        dropped[i] = state
    out[dropped, 2] = rng.uniform(0.0, 0.2, dropped.sum())
    out[dropped, :2] += rng.normal(0.0, 20.0, (dropped.sum(), 2))

    outliers = np.zeros((n, k), bool)
    starts = np.argwhere((rng.random((n, k)) < outlier_rate) & ~dropped)
    for i, j in starts:
        length = rng.integers(1, 3)
        angle = rng.uniform(0, 2 * np.pi)
        shift = rng.uniform(*outlier_px) * np.array([np.cos(angle), np.sin(angle)])
        frames = np.arange(i, min(i + length, n))
        frames = frames[~dropped[frames, j]]
        out[frames, j, :2] = poses[frames, j, :2] + shift + rng.normal(0.0, jitter_px, (len(frames), 2))
        outliers[frames, j] = True
    return Corruption(out.astype(np.float32), dropped, outliers)
