"""How much of a reference dance a visitor's captured poses cover, and which way they faced.

A generator renders well the poses it has seen; a dance frame is *covered* when some captured
frame holds a pose close to it. The comparison follows the trainer (trainer.dance): the dance is
first normalized into the visitor's frame (trainer.normalize.fit_normalizer, else the body-only
fit), so both are at the visitor's scale; then each pair is compared with its translation taken
out (over the keypoints confident in both, each pose centred on their mean), because the
generator is convolutional: where in the picture a pose stands matters little, its shape does.

Distance: the root mean square keypoint offset, in units of the visitor's torso length (mid
shoulders to mid hips, median over the capture). COVERED_RMS = 0.3: the pose estimator's own
jitter on a still person is about 0.03-0.05 torso lengths per keypoint, and a dancer's arm
raised rather than lowered moves wrist and elbow by 0.9-1.6 torso lengths, an RMS of about 0.6
over 17 keypoints; a quarter-turn swaps the shoulders' order, about 0.5. 0.3 is well clear of
the noise and about half of one limb's change, so "covered" means the same figure, give or take
an elbow's bend (tests/test_coverage.py checks both sides of it).

Facings (front, back, left, right) come from the keypoints alone: the shoulders' order across
the picture says front (the person's left shoulder on the picture's right) or back; shoulders
closer than PROFILE_WIDTH torso lengths mean a profile, turned towards the side of the picture
where the nose (else the ears' middle) lies: "left" is towards the camera's left.

A dance frame whose pose the estimator missed (fewer than MIN_SHARED confident keypoints) cannot
be covered or not: it counts as unmeasured, outside the share.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from schemas.keypoints import INDEX, NUM_KEYPOINTS

COVERED_RMS = 0.3
PROFILE_WIDTH = 0.35
MIN_SHARED = 8  # keypoints confident in both poses for a comparison to count
SCORE = 0.3
FACINGS = ("front", "back", "left", "right")
MAX_DANCE_FRAMES = 600  # a longer dance is compared at evenly spaced frames
REFIT_GROWTH = 1.5  # the live meter places the dance anew when the capture has grown this much
MAX_CAPTURED = 3000  # per camera; beyond, every other pose is kept (the capture is then 100+ s)

_LS, _RS = INDEX["left_shoulder"], INDEX["right_shoulder"]
_LH, _RH = INDEX["left_hip"], INDEX["right_hip"]
_LW, _RW = INDEX["left_wrist"], INDEX["right_wrist"]
_LK, _RK = INDEX["left_knee"], INDEX["right_knee"]
_LA, _RA = INDEX["left_ankle"], INDEX["right_ankle"]
_NOSE, _LEAR, _REAR = INDEX["nose"], INDEX["left_ear"], INDEX["right_ear"]

# What the display asks for, by what uncovered dance frames show that the capture lacks.
PROMPTS = {
    "back": "turn round",
    "left": "turn to your side",
    "right": "turn to your other side",
    "arms_up": "arms up",
    "low": "bend your knees",
    "wide": "step wide",
}


def _check(poses: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(poses, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[1:] != (NUM_KEYPOINTS, 3):
        raise ValueError(f"{name} must have shape (T, {NUM_KEYPOINTS}, 3), got {arr.shape}")
    return arr


def torso_lengths(poses: np.ndarray, thr: float = SCORE) -> np.ndarray:
    """Per pose, mid shoulders to mid hips in pixels; NaN where a shoulder or hip is not confident."""
    p = _check(poses, "poses")
    ok = (p[:, [_LS, _RS, _LH, _RH], 2] >= thr).all(axis=1)
    sh = p[:, [_LS, _RS], :2].mean(axis=1)
    hp = p[:, [_LH, _RH], :2].mean(axis=1)
    return np.where(ok, np.linalg.norm(sh - hp, axis=1), np.nan)


def facing(pose: np.ndarray, thr: float = SCORE) -> str | None:
    """front / back / left / right from one pose's keypoints (module doc); None when the shoulders
    or the torso's length cannot be seen."""
    p = _check(pose, "pose")[0]
    if p[_LS, 2] < thr or p[_RS, 2] < thr:
        return None
    torso = float(torso_lengths(p[None], thr)[0])
    if not np.isfinite(torso) or torso <= 1e-6:
        return None
    width = (p[_LS, 0] - p[_RS, 0]) / torso
    if width >= PROFILE_WIDTH:
        return "front"
    if width <= -PROFILE_WIDTH:
        return "back"
    centre = 0.5 * (p[_LS, 0] + p[_RS, 0])
    if p[_NOSE, 2] >= thr:
        ahead = p[_NOSE, 0]
    elif p[_LEAR, 2] >= thr or p[_REAR, 2] >= thr:
        ears = [p[k, 0] for k in (_LEAR, _REAR) if p[k, 2] >= thr]
        ahead = float(np.mean(ears))
    else:
        return None
    return "left" if ahead < centre else "right"


def _traits(pose: np.ndarray, thr: float = SCORE) -> set[str]:
    """What a prompt can ask for that this pose shows: arms up, low (knees bent), wide stance."""
    p = pose
    out: set[str] = set()
    torso = float(torso_lengths(p[None], thr)[0])
    if not np.isfinite(torso) or torso <= 1e-6:
        return out
    for w, s in ((_LW, _LS), (_RW, _RS)):
        if p[w, 2] >= thr and p[s, 2] >= thr and p[w, 1] < p[s, 1] - 0.2 * torso:
            out.add("arms_up")
    if all(p[k, 2] >= thr for k in (_LH, _RH, _LA, _RA)):
        hip_y = 0.5 * (p[_LH, 1] + p[_RH, 1])
        ankle_y = 0.5 * (p[_LA, 1] + p[_RA, 1])
        if ankle_y - hip_y < 1.3 * torso:  # legs are about 1.6 torso lengths when straight
            out.add("low")
        if abs(p[_LA, 0] - p[_RA, 0]) > 1.0 * torso:
            out.add("wide")
    return out


def min_distances(dance: np.ndarray, captured: np.ndarray, torso: float, thr: float = SCORE, chunk: int = 0):
    """(per dance frame: the smallest distance to any captured pose and that pose's index; per
    captured pose: its smallest distance to any dance frame). Distances in torso lengths (module
    doc); inf where no pair shares MIN_SHARED confident keypoints."""
    d = _check(dance, "dance")
    c = _check(captured, "captured")
    best_d = np.full(len(d), np.inf, np.float32)
    arg_d = np.full(len(d), -1, np.int64)
    best_c = np.full(len(c), np.inf, np.float32)
    if len(d) == 0 or len(c) == 0:
        return best_d, arg_d, best_c
    chunk = chunk or max(1, 2_000_000 // (len(d) * NUM_KEYPOINTS))  # about 8 MB per [D, C, K] array
    dm = (d[:, :, 2] >= thr).astype(np.float32)  # [D, K]
    for start in range(0, len(c), chunk):
        cc = c[start : start + chunk]
        cm = (cc[:, :, 2] >= thr).astype(np.float32)  # [C, K]
        both = dm[:, None, :] * cm[None, :, :]  # [D, C, K]
        n = both.sum(axis=2)
        safe = np.maximum(n, 1.0)
        # each pose centred on the mean of the keypoints both have, so translation does not count
        dcen = (d[:, None, :, :2] * both[..., None]).sum(axis=2) / safe[..., None]  # [D, C, 2]
        ccen = (cc[None, :, :, :2] * both[..., None]).sum(axis=2) / safe[..., None]
        diff = (d[:, None, :, :2] - dcen[:, :, None, :]) - (cc[None, :, :, :2] - ccen[:, :, None, :])
        sq = (diff**2).sum(axis=3) * both
        rms = np.sqrt(sq.sum(axis=2) / safe) / max(torso, 1e-6)
        rms = np.where(n >= MIN_SHARED, rms, np.inf).astype(np.float32)
        i = rms.argmin(axis=1)
        v = rms[np.arange(len(d)), i]
        better = v < best_d
        best_d[better] = v[better]
        arg_d[better] = i[better] + start
        best_c[start : start + len(cc)] = rms.min(axis=0)
    return best_d, arg_d, best_c


def normalize_dance(dance: np.ndarray, captured: np.ndarray) -> np.ndarray:
    """The dance in the visitor's frame, as the trainer places it (trainer.dance.build_dance)."""
    from trainer.normalize import fit_body_normalizer, fit_normalizer

    try:
        return fit_normalizer(dance, captured).apply_sequence(dance)
    except ValueError:
        body = fit_body_normalizer(dance, captured)
        return np.stack([body.apply(p) for p in dance])


def visitor_torso(captured: np.ndarray) -> float | None:
    t = torso_lengths(captured)
    t = t[np.isfinite(t) & (t > 1e-6)]
    return float(np.median(t)) if len(t) else None


def measurable(dance: np.ndarray, thr: float = SCORE) -> np.ndarray:
    """Dance frames whose pose the estimator found well enough to compare."""
    return (_check(dance, "dance")[:, :, 2] >= thr).sum(axis=1) >= MIN_SHARED


@dataclass
class Match:
    """A capture against a dance: per dance frame the nearest captured pose, per captured pose its
    nearest dance frame, in torso lengths (inf: not comparable)."""

    dance_distance: np.ndarray
    dance_nearest: np.ndarray
    capture_distance: np.ndarray
    measurable: np.ndarray
    threshold: float = COVERED_RMS

    @property
    def covered(self) -> np.ndarray:
        return self.measurable & (self.dance_distance <= self.threshold)

    @property
    def share(self) -> float:
        n = int(self.measurable.sum())
        return float(self.covered.sum()) / n if n else 0.0

    def uncovered_frames(self) -> list[int]:
        return [int(i) for i in np.flatnonzero(self.measurable & ~self.covered)]


def match(dance: np.ndarray, captured: np.ndarray, threshold: float = COVERED_RMS) -> Match:
    """Compare a dance [T, 17, 3] (source pixels) with captured poses [N, 17, 3] (visitor pixels)."""
    d = _check(dance, "dance")
    c = _check(captured, "captured")
    ok = measurable(d)
    if len(c) == 0:
        return Match(np.full(len(d), np.inf), np.full(len(d), -1), np.zeros(0), ok, threshold)
    placed = place(d, c)
    if placed is None:
        return Match(np.full(len(d), np.inf), np.full(len(d), -1), np.full(len(c), np.inf), ok, threshold)
    dd, arg, dc = min_distances(placed[0], c, placed[1])
    return Match(dd, arg, dc, ok, threshold)


def nearest_covers(dance: np.ndarray, captured: np.ndarray, threshold: float = COVERED_RMS) -> np.ndarray:
    """Per captured pose: whether it is the nearest one to some dance frame it covers. Training on
    these keeps the training frames' coverage of the dance at the capture's (trainer.training_set keeps
    them out of the held-out frames)."""
    m = match(dance, captured, threshold)
    keep = np.zeros(len(m.capture_distance), bool)
    keep[m.dance_nearest[m.covered]] = True
    return keep


def place(dance: np.ndarray, captured: np.ndarray) -> tuple[np.ndarray, float] | None:
    """(the dance normalized into the capture's frame, the visitor's torso length), or None when
    the capture has nothing to place it by."""
    torso = visitor_torso(captured)
    if torso is None:
        return None
    try:
        return normalize_dance(dance, captured), torso
    except ValueError:
        return None


def ranges(frames: list[int]) -> list[list[int]]:
    """[3, 4, 5, 9] -> [[3, 5], [9, 9]]: uncovered frames named compactly."""
    out: list[list[int]] = []
    for f in frames:
        if out and f == out[-1][1] + 1:
            out[-1][1] = f
        else:
            out.append([f, f])
    return out


def relevance_weights(capture_distance: np.ndarray, threshold: float = COVERED_RMS, boost: float = 3.0) -> np.ndarray:
    """Sampling weights for training frames: 1 + boost * exp(-(d / threshold)^2), d the frame's
    distance to the nearest dance pose. A frame on a dance pose is drawn up to 1 + boost times as
    often as one far from every dance pose, which is still drawn (weight 1): nothing starves."""
    d = np.asarray(capture_distance, np.float64)
    near = np.where(np.isfinite(d), np.exp(-((d / threshold) ** 2)), 0.0)
    return 1.0 + boost * near


@dataclass
class _Camera:
    poses: list = field(default_factory=list)
    facings: set = field(default_factory=set)
    last_person_at: float | None = None
    last_frame_at: float | None = None
    frames: int = 0
    person_frames: int = 0
    with_others: int = 0
    stride: int = 1
    skipped: int = 0


class LiveCoverage:
    """Coverage of one dance as a session's smoothed poses arrive, per camera and together (a
    dance frame counts as covered when any camera's capture covers it)."""

    def __init__(self, dance: np.ndarray, *, threshold: float = COVERED_RMS, max_frames: int = MAX_DANCE_FRAMES):
        d = _check(dance, "dance")
        if len(d) == 0:
            raise ValueError("the dance has no poses")
        self.frame_index = np.unique(np.linspace(0, len(d) - 1, min(len(d), max_frames)).round().astype(int))
        self.dance = d[self.frame_index]
        self.threshold = threshold
        self.measurable = measurable(self.dance)
        faced = {facing(p) for p in self.dance[self.measurable]}
        self.dance_facings = [f for f in FACINGS if f in faced]
        self._traits = [_traits(p) for p in self.dance]
        self.cameras: dict[str, _Camera] = {}
        self._matches: dict[str, Match] = {}
        self._placed: dict[str, tuple[np.ndarray, float, int]] = {}  # normalized dance, torso, poses then
        self._compared: dict[str, int] = {}
        self._dirty: set[str] = set()

    def add(self, camera: str, pose: np.ndarray | None, wall_time: float | None = None, others: int = 0) -> None:
        """One smoothed frame of ``camera``: its main person's pose, or None when nobody is in it."""
        cam = self.cameras.setdefault(camera, _Camera())
        now = time.time() if wall_time is None else wall_time
        cam.frames += 1
        cam.last_frame_at = now
        cam.with_others += int(others > 0)
        if pose is None:
            return
        p = _check(pose, "pose")[0]
        if (p[:, 2] >= SCORE).sum() < MIN_SHARED:
            return
        cam.last_person_at = now
        cam.person_frames += 1
        f = facing(p)
        if f:
            cam.facings.add(f)
        if cam.frames % cam.stride:
            cam.skipped += 1
            return
        cam.poses.append(p)
        if len(cam.poses) > MAX_CAPTURED:  # halve what is kept, and keep every other pose from now on
            cam.poses = cam.poses[::2]
            cam.stride *= 2
        self._dirty.add(camera)

    def _match(self, camera: str) -> Match:
        """The camera's match, kept up to date cheaply: the dance is placed again (the trainer's
        normalizer refitted, everything compared anew) only once the capture has grown by
        REFIT_GROWTH since the last placing; in between only the new poses are compared."""
        if camera not in self._dirty and camera in self._matches:
            return self._matches[camera]
        cam = self.cameras[camera]
        poses = np.stack(cam.poses) if cam.poses else np.zeros((0, NUM_KEYPOINTS, 3), np.float32)
        placed = self._placed.get(camera)
        seen = self._compared.get(camera, 0)
        old = self._matches.get(camera)
        if placed is None or old is None or len(poses) < seen or len(poses) > REFIT_GROWTH * placed[2]:
            fitted = place(self.dance, poses) if len(poses) else None
            if fitted is None:
                self._matches[camera] = match(self.dance, poses, self.threshold)
            else:
                self._placed[camera] = (fitted[0], fitted[1], len(poses))
                dd, arg, dc = min_distances(fitted[0], poses, fitted[1])
                self._matches[camera] = Match(dd, arg, dc, self.measurable, self.threshold)
        else:
            new = poses[seen:]
            dd, arg, dc = min_distances(placed[0], new, placed[1])
            better = dd < old.dance_distance
            old.dance_distance = np.where(better, dd, old.dance_distance)
            old.dance_nearest = np.where(better, arg + seen, old.dance_nearest)
            old.capture_distance = np.concatenate([old.capture_distance, dc])
        self._compared[camera] = len(poses)
        self._dirty.discard(camera)
        return self._matches[camera]

    def report(self, now: float | None = None) -> dict:
        """The meter: shares (0..1), facings, prompts and what the meter does not know."""
        now = time.time() if now is None else now
        covered = np.zeros(len(self.dance), bool)
        cameras = {}
        for name in sorted(self.cameras):
            cam, m = self.cameras[name], self._match(name)
            covered |= m.covered
            cameras[name] = {
                "coverage": round(m.share, 4),
                "poses": cam.person_frames,
                "frames": cam.frames,
                "facings": sorted(cam.facings, key=FACINGS.index),
                "person_seen_s_ago": None if cam.last_person_at is None else round(now - cam.last_person_at, 1),
                "frames_with_others": cam.with_others,
            }
        n = int(self.measurable.sum())
        share = float((covered & self.measurable).sum()) / n if n else 0.0
        seen = set().union(*(c.facings for c in self.cameras.values())) if self.cameras else set()
        missing = self.measurable & ~covered
        return {
            "coverage": round(share, 4),
            "dance_frames": len(self.dance),
            "measurable_frames": n,
            "facings": sorted(seen, key=FACINGS.index),
            "dance_facings": self.dance_facings,
            "cameras": cameras,
            "prompts": self.prompts(missing, seen, cameras),
            "threshold": self.threshold,
        }

    def prompts(self, missing: np.ndarray, seen: set, cameras: dict) -> list[str]:
        """At most two short requests, the most needed first: who is not in the picture, then what
        the uncovered dance frames show most that the capture lacks."""
        if not cameras or all(c["person_seen_s_ago"] is None or c["person_seen_s_ago"] > 2.0 for c in cameras.values()):
            return ["step into the picture"]
        counts: dict[str, int] = {}
        captured_traits: set[str] = set()
        for name in self.cameras:
            for p in self.cameras[name].poses[-300:]:
                captured_traits |= _traits(p)
        for i in np.flatnonzero(missing):
            f = facing(self.dance[i])
            if f in ("back", "left", "right") and f not in seen:
                counts[f] = counts.get(f, 0) + 1
            for t in self._traits[i] - captured_traits:
                counts[t] = counts.get(t, 0) + 1
        ranked = sorted(counts, key=lambda k: -counts[k])
        out = [PROMPTS[k] for k in ranked[:2]]
        if not out and missing.any():
            out = ["follow the dancer"]
        return out


class Repeated(Sequence):
    """A sequence's items, item i given counts[i] times in a row: training frames near the dance are
    drawn oftener by the trainer's shuffled order without changing how the samples are built."""

    def __init__(self, base: Sequence, counts: np.ndarray):
        counts = np.asarray(counts, np.int64)
        if len(counts) != len(base) or (counts < 1).any():
            raise ValueError(f"need one count >= 1 per item: {len(counts)} counts for {len(base)} items")
        self.base = base
        self.index = np.repeat(np.arange(len(base)), counts)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, j):  # type: ignore[override]
        return self.base[int(self.index[j])]


def training_relevance(
    dance: np.ndarray, poses: np.ndarray, cameras: np.ndarray, idx: np.ndarray, boost: float = 3.0
) -> tuple[np.ndarray, dict]:
    """For the training frames idx (of poses [N, 17, 3], cameras [N]): how many times each is
    given per epoch (round(relevance_weights), 1..1 + boost), and a summary for metrics.json: the
    dance's share covered by the training frames (any camera), the dance frames none covers (as
    ranges of the reference's frame numbers) and how the repeats fell."""
    d = _check(dance, "dance")
    idx = np.asarray(idx)
    counts = np.ones(len(idx), np.int64)
    covered = np.zeros(len(d), bool)
    ok = measurable(d)
    for camera in sorted(set(np.asarray(cameras)[idx].tolist())):
        mine = np.flatnonzero(np.asarray(cameras)[idx] == camera)
        m = match(d, poses[idx[mine]])
        covered |= m.covered
        counts[mine] = np.rint(relevance_weights(m.capture_distance, boost=boost)).astype(np.int64)
    missing = [int(i) for i in np.flatnonzero(ok & ~covered)]
    n = int(ok.sum())
    summary = {
        "share": round(float((ok & covered).sum()) / n, 4) if n else 0.0,
        "dance_frames": len(d),
        "measurable_frames": n,
        "uncovered_frames": len(missing),
        "uncovered": ranges(missing),
        "threshold": COVERED_RMS,
        "repeats": {str(k): int((counts == k).sum()) for k in sorted(set(counts.tolist()))},
    }
    return counts, summary


def uncovered_words(summary: dict, times: np.ndarray | None = None) -> str | None:
    """The trainer's warning in an operator's words, or None when every dance pose was seen."""
    if not summary["uncovered_frames"]:
        return None
    spans = summary["uncovered"][:3]

    def at(f: int) -> str:
        return f"{times[f] - times[0]:.1f}s" if times is not None and f < len(times) else f"frame {f}"

    where = ", ".join(at(a) if a == b else f"{at(a)}-{at(b)}" for a, b in spans)
    more = " and more" if len(summary["uncovered"]) > 3 else ""
    return (
        f"the visitor never showed {summary['uncovered_frames']} of the dance's {summary['measurable_frames']} "
        f"poses ({where}{more}): those moments may come out blurred"
    )
