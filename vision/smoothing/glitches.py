"""Detecting pose-estimation glitches: implausible jumps and limbs that suddenly grow.

Sizes are relative to the body (the torso length, from the running median of the torso sides), so
thresholds do not depend on how far the person stands from the camera. A limb only counts as a
glitch when it gets *longer* than its running median: in 2D a limb pointing at the camera is
legitimately short. The keypoint blamed for a bad limb is the endpoint most of whose own limbs are
bad (a misplaced wrist stretches only the forearm; a misplaced elbow both arm segments).
"""

from __future__ import annotations

import csv
import io
import itertools
import warnings
from dataclasses import astuple, dataclass, fields

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from schemas.keypoints import COCO17, NUM_KEYPOINTS, SKELETON

from .impute import check_poses, check_times, confident_mask
from .params import SmoothingParams

LIMBS = np.array(SKELETON, dtype=np.intp)  # [16, 2]
LIMB_NAMES = tuple(f"{COCO17[a]}-{COCO17[b]}" for a, b in SKELETON)
# The two torso sides (shoulder to hip) measure body size: they change least as a dancer moves.
TORSO_SIDES = np.array([SKELETON.index((5, 11)), SKELETON.index((6, 12))], dtype=np.intp)
# One-hot [limb, keypoint] matrices of each limb's first and second endpoint.
_END_A = np.eye(NUM_KEYPOINTS, dtype=np.int64)[LIMBS[:, 0]]
_END_B = np.eye(NUM_KEYPOINTS, dtype=np.int64)[LIMBS[:, 1]]
_INCIDENCE = _END_A + _END_B
JUMP_HALF_WINDOW = 3  # offline: neighbours on each side used to predict where a keypoint should be
JUMP_PASSES = 3


@dataclass(frozen=True)
class Glitch:
    """One row of a glitch report. `part` is a keypoint or a limb ("left_elbow-left_wrist");
    `magnitude` is in body sizes for a jump and a length ratio for a limb; `replaced` names the
    keypoint that was treated as missing because of it."""

    frame: int
    time: float
    part: str
    kind: str  # "jump" or "limb_length"
    magnitude: float
    replaced: str


def limb_lengths(xy: np.ndarray, available: np.ndarray) -> np.ndarray:
    """Length of every SKELETON limb, [..., 16]; NaN where an endpoint is unavailable."""
    xy = np.asarray(xy, dtype=np.float64)
    both = np.asarray(available, bool)[..., LIMBS].all(axis=-1)
    lengths = np.linalg.norm(xy[..., LIMBS[:, 0], :] - xy[..., LIMBS[:, 1], :], axis=-1)
    return np.where(both, lengths, np.nan)


def nanmedian_quiet(values: np.ndarray, axis: int) -> np.ndarray:
    """np.nanmedian (NaN where a slice is all NaN, which is expected: gaps), without its warning
    and about 10x faster on the small arrays the live smoother passes every frame."""
    v = np.moveaxis(np.sort(np.asarray(values, dtype=float), axis=axis), axis, -1)  # NaNs sort last
    n = (~np.isnan(v)).sum(axis=-1, keepdims=True)
    lo = np.take_along_axis(v, np.maximum((n - 1) // 2, 0), axis=-1)
    hi = np.take_along_axis(v, np.minimum(n // 2, v.shape[-1] - 1), axis=-1)
    return ((lo + hi) / 2)[..., 0]  # both NaN where n == 0


def body_size(lengths: np.ndarray) -> np.ndarray:
    """Torso length per pose from limb lengths [..., 16]: mean of the visible torso sides, else NaN."""
    sides = np.asarray(lengths)[..., TORSO_SIDES]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(sides, axis=-1)


def limb_too_long(lengths: np.ndarray, typical: np.ndarray, size: np.ndarray, params: SmoothingParams) -> np.ndarray:
    """Limbs longer than limb_ratio x their typical length *and* by limb_min_excess body sizes:
    the second test keeps pixel noise on tiny face limbs from counting as a glitch."""
    with np.errstate(invalid="ignore"):
        long = (lengths > params.limb_ratio * typical) & (lengths - typical > params.limb_min_excess * size)
    return long & np.isfinite(lengths) & np.isfinite(typical)


def blame_limbs(bad: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Keypoints to blame for bad limbs, [..., 17] bool, from bad [..., 16] and lengths [..., 16].

    Each bad limb blames the endpoint with the larger share of bad limbs among its measured limbs
    (then the larger count); a tie blames both, since nothing tells them apart.
    """
    bad = np.asarray(bad, bool)
    measured = np.isfinite(lengths)
    n_bad = bad.astype(np.int64) @ _INCIDENCE
    n_measured = np.maximum(measured.astype(np.int64) @ _INCIDENCE, 1)
    score = (n_bad / n_measured) * 1000.0 + n_bad  # lexicographic: share first, count second
    sa, sb = score[..., LIMBS[:, 0]], score[..., LIMBS[:, 1]]
    blame_a = (bad & (sa >= sb)).astype(np.int64)
    blame_b = (bad & (sb >= sa)).astype(np.int64)
    return (blame_a @ _END_A + blame_b @ _END_B) > 0


def _centered_windows(values: np.ndarray, half: int) -> np.ndarray:
    """values[T, ...] -> [T, ..., 2*half+1] windows centred on each frame, NaN-padded at the ends."""
    pad = np.full((half,) + values.shape[1:], np.nan)
    padded = np.concatenate([pad, values, pad], axis=0)
    return sliding_window_view(padded, 2 * half + 1, axis=0)


def running_median(values: np.ndarray, window: int) -> np.ndarray:
    """Centered running nanmedian along axis 0 over `window` frames (rounded up to odd)."""
    values = np.asarray(values, dtype=np.float64)
    return nanmedian_quiet(_centered_windows(values, window // 2), axis=-1)


def predict_from_neighbours(xy: np.ndarray, available: np.ndarray, times: np.ndarray, half: int) -> np.ndarray:
    """Where each keypoint should be, judged only from its neighbours within `half` frames each side.

    The median, over every pair of available neighbours, of the straight line through the pair
    evaluated at the frame's time: exact for uniform motion, unbiased when neighbours are only on one
    side (dropouts), and robust to a glitch among the neighbours. [T, 17, 2], NaN if < 2 neighbours.
    """
    pts = np.where(np.asarray(available, bool)[..., None], xy, np.nan)
    win = _centered_windows(pts, half).copy()  # [T, 17, 2, W]
    win[..., half] = np.nan  # the frame itself is what is being judged
    tw = _centered_windows(np.asarray(times, dtype=np.float64), half)  # [T, W]
    t0 = np.asarray(times, dtype=np.float64)
    pairs = [(a, b) for a, b in itertools.combinations(range(2 * half + 1), 2) if half not in (a, b)]
    a_idx = np.array([a for a, _ in pairs])
    b_idx = np.array([b for _, b in pairs])
    pa, pb = win[..., a_idx], win[..., b_idx]  # [T, 17, 2, P]
    ta, tb = tw[:, a_idx], tw[:, b_idx]  # [T, P]
    with np.errstate(invalid="ignore"):
        frac = ((t0[:, None] - ta) / (tb - ta))[:, None, None, :]
        lines = pa + (pb - pa) * frac
    return nanmedian_quiet(lines, axis=-1)


def detect_glitches(
    poses: np.ndarray,
    times: np.ndarray,
    params: SmoothingParams = SmoothingParams(),
    confident: np.ndarray | None = None,
) -> tuple[np.ndarray, list[Glitch]]:
    """Offline (centered) glitch detection on a whole sequence poses[T, 17, 3] at times[T] seconds.

    Returns (outlier mask [T, 17], report rows sorted by frame). Only confident keypoints are judged.
    """
    poses = check_poses(poses)
    if poses.ndim != 3:
        raise ValueError(f"detect_glitches needs a sequence [T, 17, 3], got {poses.shape}")
    times = check_times(times, len(poses))
    xy = poses[..., :2]
    conf = confident_mask(poses, params.confidence_threshold) if confident is None else np.asarray(confident, bool)
    rows: list[Glitch] = []

    size = running_median(body_size(limb_lengths(xy, conf)), params.window)
    fallback = nanmedian_quiet(size, axis=0)
    size = np.where(np.isfinite(size), size, fallback)  # NaN when no torso was ever seen: no jumps

    # A glitch among a frame's few neighbours can make the frame itself look wrong, so judge
    # again with the glitches found so far left out, until the verdicts settle.
    jumped = np.zeros_like(conf)
    for _ in range(JUMP_PASSES):
        expected = predict_from_neighbours(xy, conf & ~jumped, times, JUMP_HALF_WINDOW)
        with np.errstate(invalid="ignore"):
            jump = np.linalg.norm(xy - expected, axis=-1) / size[:, None]
        verdict = conf & (np.nan_to_num(jump, nan=0.0) > params.jump_threshold)
        if np.array_equal(verdict, jumped):
            break
        jumped = verdict
    for t, k in zip(*np.nonzero(jumped)):
        rows.append(Glitch(int(t), float(times[t]), COCO17[k], "jump", float(jump[t, k]), COCO17[k]))

    usable = conf & ~jumped
    lengths = limb_lengths(xy, usable)
    typical = running_median(lengths, params.window)
    with np.errstate(invalid="ignore"):
        ratio = lengths / typical
    bad = limb_too_long(lengths, typical, size[:, None], params)
    blamed = blame_limbs(bad, lengths) & usable
    for t in np.flatnonzero(bad.any(axis=1)):
        for limb in np.flatnonzero(bad[t]):
            culprits = [COCO17[k] for k in LIMBS[limb] if blamed[t, k]]
            rows.append(
                Glitch(
                    int(t), float(times[t]), LIMB_NAMES[limb], "limb_length", float(ratio[t, limb]), "+".join(culprits)
                )
            )
    rows.sort(key=lambda g: (g.frame, g.kind, g.part))
    return jumped | blamed, rows


def render_report(rows: list[Glitch], fmt: str = "text") -> str:
    """The report as an aligned text table ("text") or CSV with a header ("csv")."""
    names = [f.name for f in fields(Glitch)]
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(names)
        for row in rows:
            writer.writerow([f"{v:.4f}" if isinstance(v, float) else v for v in astuple(row)])
        return out.getvalue()
    if fmt != "text":
        raise ValueError(f"render_report format must be 'text' or 'csv', got {fmt!r}")
    if not rows:
        return "no glitches\n"
    cells = [names] + [[f"{v:.3f}" if isinstance(v, float) else str(v) for v in astuple(row)] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(names))]
    return "".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() + "\n" for r in cells)
