"""Identity tracking per camera: a stable track id for each person from frame to frame.

Each frame's people are matched to the camera's tracks by keypoint similarity (an object keypoint
similarity, OKS, against each track's pose predicted to the frame's capture time), with one
optimal assignment for the whole frame (scipy's linear_sum_assignment), so two people crossing
are resolved together rather than greedily. Then:

- a matched person continues its track;
- an unmatched track is *lost*: it keeps its place, moved on with its last velocity, and a person
  similar enough to that prediction takes the id back (someone hidden for a moment behind another
  person or a pillar); the tolerance grows the longer it has been lost;
- a track lost for longer than ``max_lost_s`` ends; it is reported once, in the frame it ends, so
  per-track state elsewhere (the smoother's) can be dropped;
- an unmatched person starts a new track; ids count up from 1 per camera and are never reused. A
  track seen in fewer than ``confirm_hits`` frames ends as soon as it is missed (a one-frame
  merge of two people is not kept to steal an id later).

A detection with too few confident keypoints to be a person (the smoother's own test:
vision.smoothing.impute.person_present) gets no track. The whole state is a small JSON-able
dict, so a stream processor keeps it in a changelogged table and a restarted worker continues
with the same ids.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from schemas.keypoints import NUM_KEYPOINTS
from vision.smoothing.impute import check_poses, confident_mask, person_present

STATE_VERSION = 1
# COCO's per-keypoint OKS constants (the spread of human annotators), COCO-17 order.
SIGMAS = np.array(
    [0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89]
)
KAPPA = 2 * SIGMAS / 10
_NO_MATCH = 1e6  # cost of a pair below the similarity gate: never chosen over a real match
_MIN_SCALE_PX = 16.0  # a track's size never counts as smaller than this (a few bunched keypoints)
_TIME_EPS = 1e-6  # capture times closer than this are the same time (float seconds from integer ns)
_DECIMALS = 2  # stored positions and velocities: 0.01 px is far below pose noise, and JSON stays short


@dataclass(frozen=True)
class TrackingParams:
    # A lost track ends after this long without a match (seconds).
    max_lost_s: float = 1.0
    # Pairs less similar than this (0..1) are never matched: a new id is safer than a wrong one.
    min_similarity: float = 0.2
    # OKS tolerance multiplier over COCO's annotator spread: poses move between frames.
    tolerance: float = 2.0
    # A lost track's tolerance grows by its lost time over this many seconds (it may have turned,
    # stopped or sped up while unseen) ...
    lost_growth_s: float = 0.5
    # ... and its prediction moves on with its last velocity for at most this long.
    max_predict_s: float = 0.5
    # Time constant of a track's velocity, an exponential average of its frame-to-frame motion
    # (seconds): long enough that one merged or jittery detection does not turn it around.
    velocity_time_s: float = 0.45
    # Similarity cost added for a lost track, so a person visible last frame wins a close call
    # (two people side by side are often one merged detection for a frame or two).
    lost_penalty: float = 0.2
    # A person: this many keypoints at this score or more, this many of them on the torso
    # (the smoother's defaults: what it would count as nobody gets no track).
    confidence_threshold: float = 0.3
    min_keypoints: int = 4
    min_torso: int = 1
    # A track matched in fewer frames than this ends as soon as it is missed: a one-frame merge of
    # two people, or a shadow, is not kept to steal a real person's id when they reappear.
    confirm_hits: int = 3
    # At most this many tracks per camera (live and lost); beyond it the longest-lost end first.
    max_tracks: int = 64

    def __post_init__(self) -> None:
        for name in ("max_lost_s", "tolerance", "lost_growth_s", "velocity_time_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"TrackingParams.{name} must be > 0, got {getattr(self, name)}")
        if not self.max_predict_s >= 0 or not self.lost_penalty >= 0:
            raise ValueError("TrackingParams.max_predict_s and lost_penalty must be >= 0")
        if not 0.0 <= self.min_similarity < 1.0:
            raise ValueError(f"TrackingParams.min_similarity must be in [0, 1), got {self.min_similarity}")
        if not 0.0 <= self.confidence_threshold <= 1.0:
            raise ValueError(f"TrackingParams.confidence_threshold must be in [0, 1], got {self.confidence_threshold}")
        if self.min_keypoints < 1 or self.min_torso < 0 or self.max_tracks < 1 or self.confirm_hits < 1:
            raise ValueError("TrackingParams.min_keypoints, confirm_hits and max_tracks must be >= 1, min_torso >= 0")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Assignment:
    """One frame's result: a track id per detection (None: not a person), and the tracks that
    ended at this frame."""

    tracks: list[int | None]
    ended: list[int]


@dataclass
class _Track:
    id: int
    xy: np.ndarray  # [17, 2] last known place of each keypoint, NaN if never seen
    v: np.ndarray  # [2] body velocity, px/s
    t: float  # capture time of its last match
    hits: int  # frames matched

    def scale(self) -> float:
        known = self.xy[np.isfinite(self.xy[:, 0])]
        if len(known) < 2:
            return _MIN_SCALE_PX
        w, h = known.max(axis=0) - known.min(axis=0)
        return max(math.sqrt(max(w, 1.0) * max(h, 1.0)), _MIN_SCALE_PX)

    def predict(self, t: float, max_predict_s: float) -> np.ndarray:
        return self.xy + self.v * min(max(t - self.t, 0.0), max_predict_s)


class PoseTracker:
    """Tracks the people of one camera. Call ``update`` once per frame, in capture order."""

    def __init__(self, params: TrackingParams = TrackingParams()):
        self.params = params
        self._tracks: list[_Track] = []
        self._next_id = 1
        self._t_last: float | None = None  # capture time of the last frame

    @property
    def live(self) -> list[int]:
        """Ids of the tracks not ended (seen or lost), oldest first."""
        return [tr.id for tr in self._tracks]

    def similarity(self, poses: np.ndarray, t: float) -> np.ndarray:
        """[tracks, people] keypoint similarity in [0, 1] of each person to each track's prediction.

        An OKS over the keypoints both know (confident in the person, ever seen in the track),
        divided by at least min_keypoints so a match on two keypoints counts for less than one on
        ten.
        """
        p = self.params
        if not self._tracks or not len(poses):
            return np.zeros((len(self._tracks), len(poses)))
        conf = confident_mask(poses, p.confidence_threshold)  # [N, 17]
        pred = np.stack([tr.predict(t, p.max_predict_s) for tr in self._tracks])  # [T, 17, 2]
        lost_s = self._lost_s()
        scale = np.array([tr.scale() for tr in self._tracks]) * p.tolerance * (1.0 + lost_s / p.lost_growth_s)
        d2 = ((pred[:, None] - poses[None, :, :, :2]) ** 2).sum(-1)  # [T, N, 17]
        both = np.isfinite(d2) & conf[None]
        e = np.exp(-np.where(both, d2, 0.0) / (2 * (scale[:, None, None] * KAPPA) ** 2))
        return (e * both).sum(-1) / np.maximum(both.sum(-1), p.min_keypoints)

    def _lost_s(self) -> np.ndarray:
        """[tracks] how long each track had been unseen at the last frame (0: seen in it)."""
        last = self._t_last if self._t_last is not None else -math.inf
        return np.array([max(last - tr.t, 0.0) for tr in self._tracks])

    def _match(self, poses: np.ndarray, t: float) -> tuple[list[int | None], np.ndarray]:
        """Per detection: the index of its track (None: unmatched), and which detections are people."""
        p = self.params
        people = person_present(confident_mask(poses, p.confidence_threshold), p.min_keypoints, p.min_torso)
        match: list[int | None] = [None] * len(poses)
        idx = np.flatnonzero(people)
        if not self._tracks or not len(idx):
            return match, people
        sim = self.similarity(poses[idx], t)
        lost = self._lost_s() > 0
        cost = np.where(sim >= p.min_similarity, 1.0 - sim + p.lost_penalty * lost[:, None], _NO_MATCH)
        rows, cols = linear_sum_assignment(cost)
        for r, c in zip(rows, cols):
            if cost[r, c] < _NO_MATCH:
                match[int(idx[c])] = int(r)
        return match, people

    def assign(self, poses: Sequence[np.ndarray] | np.ndarray, t: float) -> list[int | None]:
        """Track ids for one frame's people without changing any track (for a frame seen before:
        an unmatched person gets None rather than a new id)."""
        arr = _as_poses(poses)
        match, _ = self._match(arr, float(t))
        return [None if m is None else self._tracks[m].id for m in match]

    def update(self, poses: Sequence[np.ndarray] | np.ndarray, t: float) -> Assignment:
        """Match one frame's people [N, 17, 3] (captured at t seconds) to the tracks and move on."""
        p = self.params
        arr = _as_poses(poses)
        t = float(t)
        if not math.isfinite(t):
            raise ValueError(f"update needs a finite capture time in seconds, got {t}")
        match, people = self._match(arr, t)
        conf = confident_mask(arr, p.confidence_threshold)
        ids: list[int | None] = [None] * len(arr)
        for i, m in enumerate(match):
            if m is not None:
                self._follow(self._tracks[m], arr[i], conf[i], t)
                ids[i] = self._tracks[m].id
        for i in map(int, np.flatnonzero(people)):
            if match[i] is None:
                xy = np.where(conf[i][:, None], arr[i, :, :2], np.nan).astype(np.float64)
                self._tracks.append(_Track(self._next_id, xy, np.zeros(2), t, 1))
                ids[i] = self._next_id
                self._next_id += 1
        self._t_last = t if self._t_last is None else max(t, self._t_last)
        gone = [t - tr.t > p.max_lost_s + _TIME_EPS or (tr.t < t and tr.hits < p.confirm_hits) for tr in self._tracks]
        ended = [tr.id for tr, g in zip(self._tracks, gone) if g]
        self._tracks = [tr for tr, g in zip(self._tracks, gone) if not g]
        if len(self._tracks) > p.max_tracks:
            self._tracks.sort(key=lambda tr: tr.t)
            ended += [tr.id for tr in self._tracks[: len(self._tracks) - p.max_tracks]]
            self._tracks = sorted(self._tracks[len(self._tracks) - p.max_tracks :], key=lambda tr: tr.id)
        return Assignment(ids, sorted(ended))

    def _follow(self, track: _Track, pose: np.ndarray, conf: np.ndarray, t: float) -> None:
        """A matched person's keypoints become the track's; the ones not seen move with the body."""
        p = self.params
        both = conf & np.isfinite(track.xy[:, 0])
        dt = t - track.t
        if both.any():
            shift = (pose[both, :2] - track.xy[both]).mean(axis=0)
        else:  # nothing in common: move by the change of the keypoints' centre
            shift = np.zeros(2)
        if dt > 0 and both.any():
            w = 1.0 - math.exp(-dt / p.velocity_time_s)
            track.v = (1 - w) * track.v + w * shift / dt
        known = np.isfinite(track.xy[:, 0])
        track.xy = np.where(conf[:, None], pose[:, :2], np.where(known[:, None], track.xy + shift, np.nan))
        track.xy = np.round(track.xy.astype(np.float64), _DECIMALS)
        track.v = np.round(track.v, _DECIMALS)
        track.t = max(t, track.t)
        track.hits += 1

    def to_state(self) -> dict:
        """All state as a JSON-able dict (None for unknown keypoints)."""
        return {
            "version": STATE_VERSION,
            "next_id": self._next_id,
            "t_last": self._t_last,
            "tracks": [
                {
                    "id": tr.id,
                    "xy": np.where(np.isfinite(tr.xy), tr.xy, None).tolist(),  # type: ignore[call-overload]
                    "v": tr.v.tolist(),
                    "t": tr.t,
                    "hits": tr.hits,
                }
                for tr in self._tracks
            ],
        }

    @classmethod
    def from_state(cls, state: dict, params: TrackingParams = TrackingParams()) -> PoseTracker:
        """Rebuild a tracker from ``to_state()`` output (after a JSON round trip, too)."""
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise ValueError(
                f"PoseTracker state must be a dict with version {STATE_VERSION}, got "
                f"{state.get('version') if isinstance(state, dict) else type(state).__name__}"
            )
        tracker = cls(params)
        try:
            tracker._next_id = int(state["next_id"])
            tracker._t_last = None if state["t_last"] is None else float(state["t_last"])
            for item in state["tracks"]:
                xy = np.array(item["xy"], dtype=np.float64)
                if xy.shape != (NUM_KEYPOINTS, 2):
                    raise ValueError(f"PoseTracker state: track xy has shape {xy.shape}")
                v = np.array(item["v"], dtype=np.float64).reshape(2)
                tracker._tracks.append(_Track(int(item["id"]), xy, v, float(item["t"]), int(item["hits"])))
        except (KeyError, TypeError) as err:
            raise ValueError(f"PoseTracker state is malformed: {err!r}") from None
        return tracker


def _as_poses(poses: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    if isinstance(poses, np.ndarray):
        arr = poses
    else:
        arr = np.stack(list(poses)) if len(poses) else np.zeros((0, NUM_KEYPOINTS, 3))
    arr = check_poses(np.asarray(arr, np.float64).reshape(-1, NUM_KEYPOINTS, 3))
    return arr
