"""Dance fidelity: does a rendered video show the dance that was asked for?

Every version of a session's video (the one-shot preview, each GAN version) is judged on the
dance itself, which needs no ground truth: a pose estimator *other* than the one that drew the
conditioning (BlazePose where the poses came from MoveNet, MoveNet where they came from
BlazePose: an estimator checking its own drawings would forgive its own mistakes) reads the
rendered frames, and its poses are compared with the poses asked for, in the frame's pixels as
rendered:

* limb error ("dance_limb_error", "dance_limb_error_p90"): the 12 limb keypoints (shoulders,
  elbows, wrists, hips, knees, ankles) after moving each pose into its own hip-shoulder frame
  (mid-hip at the origin, the torso along +y, one torso length = 1), so placement and size are
  forgiven and what is left is the body's shape, in torso lengths; a frame's error is the mean
  over the keypoints both poses have; an asked keypoint outside the rendered frame is not
  judged (the frame cannot show it: a portrait's hips guessed below its edge), and a frame whose
  asked torso lies outside it has no limb error (`in_view`); and the mean by the asked pose's
  facing ("dance_limb_error_front", "_back", "_profile", for the facings with a compared frame),
  which says what part of the dance renders worst;
* facing agreement ("dance_facing_agreement"): front / back / profile of the asked pose against
  the rendered person's (`facing_class`), over the frames whose asked facing is known (a rendered
  frame whose facing cannot be read does not agree);
* person found ("dance_person_found"): the share of judged frames where the estimator finds a
  person at all.

The judge's floor ("dance_limb_floor", "dance_limb_floor_p90", "dance_facing_floor", `real_floor`):
the same judge on the session's own real frames against their own poses, what a renderer that drew
the asked poses perfectly would score on this footage. Two estimators disagree by more on a small
person (a 60 px walker: 0.12 torso lengths, where one estimator reading the same frames twice
already differs by 0.09) than on a large one, so every limb error is read beside its floor.

A spread of JUDGED_FRAMES frames is kept while the video is written (`DanceJudge.watch`) and
judged afterwards; `dance_sheet` draws eight of them, asked pose | rendered frame (dance.png).
Bad input never raises: a dance pose without a readable torso, a frame with nobody found, an
estimator that cannot load: the figures are computed on what is there, and `warnings` say what
was not.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import cv2
import numpy as np

from schemas.keypoints import INDEX, NUM_KEYPOINTS

log = logging.getLogger(__name__)

LIMBS = tuple(range(INDEX["left_shoulder"], NUM_KEYPOINTS))  # the 12 limb keypoints, shoulders to ankles
FACE = (INDEX["nose"], INDEX["left_eye"], INDEX["right_eye"])
SCORE_THRESHOLD = 0.3
JUDGED_FRAMES = 24  # ~50 ms each with BlazePose on a CPU: about a second per version (docs/benchmarks.md)
SHEET_FRAMES = 8
PROFILE_FACING = 0.35  # |vision.posemap.facing| below this: the shoulders overlap, a profile
FACINGS = ("front", "back", "profile")
CELL_HEIGHT = 240
JUDGE_MARGIN = 1.6  # the judge looks at a square this many times the asked body's longer side


def independent_backend(drawn_by: str | Iterable[str] | None) -> str:
    """The estimator that judges poses drawn by `drawn_by` (a backend name or names): MoveNet when
    BlazePose drew them, else BlazePose."""
    names = [drawn_by] if isinstance(drawn_by, str) or drawn_by is None else list(drawn_by)
    return "movenet" if any("blazepose" in str(n).lower() for n in names) else "blazepose"


def _torso(pose: np.ndarray, thr: float) -> tuple[np.ndarray, np.ndarray] | None:
    """(mid-hip, mid-shoulder) when both shoulders and both hips are confident and apart."""
    ls, rs, lh, rh = (INDEX[n] for n in ("left_shoulder", "right_shoulder", "left_hip", "right_hip"))
    ok = np.isfinite(pose).all(axis=1) & (pose[:, 2] >= thr)
    if not ok[[ls, rs, lh, rh]].all():
        return None
    hip, shoulder = pose[[lh, rh], :2].mean(0), pose[[ls, rs], :2].mean(0)
    if np.linalg.norm(shoulder - hip) < 1e-3:
        return None
    return hip, shoulder


def torso_aligned(pose: np.ndarray, thr: float = SCORE_THRESHOLD) -> np.ndarray | None:
    """The 12 limb keypoints [12, 2] in the pose's hip-shoulder frame (torso lengths, mid-hip at 0,
    the shoulders at (0, 1)); NaN where a keypoint is not confident; None without a torso."""
    pose = np.asarray(pose, np.float64)
    torso = _torso(pose, thr)
    if torso is None:
        return None
    hip, shoulder = torso
    up = shoulder - hip
    length = float(np.linalg.norm(up))
    uy = up / length
    ux = np.array([uy[1], -uy[0]])  # image x for an upright torso (y grows downwards in images)
    rel = pose[list(LIMBS), :2] - hip
    out = np.stack([rel @ ux, rel @ uy], axis=1) / length
    weak = ~(np.isfinite(pose[list(LIMBS)]).all(axis=1) & (pose[list(LIMBS), 2] >= thr))
    out[weak] = np.nan
    return out


def in_view(pose: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """The pose with its keypoints outside a (width, height) frame unseen (score 0): what the
    rendered frame cannot show is not judged. An estimator reading the frame must put the hips
    of a person cut at the waist inside the picture, so comparing them with hips asked below the
    frame's edge measures the crop, not the body (and shrinks the torso every keypoint is scaled by)."""
    pose = np.array(pose, np.float32, copy=True)
    if size is None:
        return pose
    w, h = size
    x, y = pose[:, 0], pose[:, 1]
    pose[~((x >= 0) & (x < w) & (y >= 0) & (y < h)), 2] = 0.0
    return pose


def limb_error(asked: np.ndarray, found: np.ndarray, thr: float = SCORE_THRESHOLD) -> float:
    """Mean distance of the limb keypoints both poses have, each in its own hip-shoulder frame, in
    torso lengths; NaN when either has no torso or they share no keypoint."""
    a, f = torso_aligned(asked, thr), torso_aligned(found, thr)
    if a is None or f is None:
        return float("nan")
    d = np.linalg.norm(a - f, axis=1)
    return float(np.nanmean(d)) if np.isfinite(d).any() else float("nan")


def facing_class(pose: np.ndarray, thr: float = SCORE_THRESHOLD) -> str | None:
    """ "front", "back" or "profile" from keypoints, None without a torso. The shoulders' order
    (vision.posemap.facing: the person's left shoulder on the image's right is the front) decides,
    overlapping shoulders are a profile, and a front with no face keypoint seen (nose, eyes) is a
    back whose left and right were swapped, as estimators do for a back view."""
    from vision.posemap import facing

    pose = np.asarray(pose, np.float32)
    if _torso(pose.astype(np.float64), thr) is None:
        return None
    f = facing(pose, thr)
    if abs(f) < PROFILE_FACING:
        return "profile"
    if f < 0:
        return "back"
    face_seen = bool((np.isfinite(pose[list(FACE), 2]) & (pose[list(FACE), 2] >= thr)).any())
    return "front" if face_seen else "back"


def facings_of(poses: np.ndarray, thr: float = SCORE_THRESHOLD) -> dict[str, int]:
    """How many of the poses face each way (those without a torso are left out)."""
    counts = dict.fromkeys(FACINGS, 0)
    for p in poses:
        c = facing_class(p, thr)
        if c is not None:
            counts[c] += 1
    return counts


def judged_indices(total: int, n: int = JUDGED_FRAMES) -> list[int]:
    """n frame indices spread evenly over a dance of `total` frames (all of a shorter one)."""
    if total <= 0:
        return []
    return sorted({int(round(x)) for x in np.linspace(0, total - 1, min(n, total))})


def judge_estimator(backend: str, models_dir: str | Path | None = None):
    """The judge `backend`'s estimator from models_dir (a folder that is not there: the default
    one), one per process and folder; raises when it cannot load."""
    return _judge_estimator(backend, Path(models_dir) if models_dir and Path(models_dir).is_dir() else None)


@cache  # keyed by the folder as a Path, so "x" and Path("x") share one estimator
def _judge_estimator(backend: str, where: Path | None):
    from vision.pose import load_estimator

    # Every frame on its own: a crop carried over from another frame (or another video) misleads.
    options = {"track": False, "with_mask": False} if backend == "blazepose" else {"track": False}
    return load_estimator(backend, where, **options)


@dataclass
class Fidelity:
    """One video's dance figures, what fell short, and its picture (dance.png), if one was drawn."""

    figures: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    picture: np.ndarray | None = None
    seconds: float = 0.0


class DanceJudge:
    """Keeps a spread of a video's rendered frames while it is written, then judges them.

    poses [T, 17, 3]: the dance asked for, in the rendered frames' pixels; drawn_by: the backend
    (or backends) that drew them, so another judges; session_poses: the visitor's own poses, to
    warn when the dance asks for facings the session never showed."""

    def __init__(
        self,
        poses: np.ndarray,
        drawn_by: str | Iterable[str] | None,
        models_dir: str | Path | None = None,
        *,
        frames: int = JUDGED_FRAMES,
        session_poses: np.ndarray | None = None,
    ):
        self.poses = np.asarray(poses, np.float32)
        self.backend = independent_backend(drawn_by)
        self.models_dir = models_dir  # where judge() loads its judge from (judge_estimator)
        self.session_poses = session_poses
        self.indices = judged_indices(len(self.poses), frames)
        self._wanted = set(self.indices)
        self.kept: dict[int, np.ndarray] = {}

    def watch(self, frames: Iterable[tuple[np.ndarray, np.ndarray]]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Pass (frame, picture) pairs through, keeping a copy of the judged frames."""
        for t, (frame, picture) in enumerate(frames):
            if t in self._wanted:
                self.kept[t] = np.array(frame, copy=True)
            yield frame, picture

    def judge(self) -> Fidelity:
        """The figures on the frames kept (module doc), by the judge loaded from models_dir
        (judge_estimator); never raises for bad input."""
        try:
            estimator = judge_estimator(self.backend, self.models_dir)
        except Exception as exc:  # noqa: BLE001 - a judge that cannot load must not cost the video
            estimator = exc
        return self.judge_with(estimator)

    def judge_with(self, estimator) -> Fidelity:
        """The figures on the frames kept, by `estimator`: the judge's, made already (trainer.
        estimators), or the exception it could not be made with; never raises for bad input."""
        started = time.monotonic()
        out = Fidelity()
        if not self.kept:
            out.warnings.append("dance fidelity: no rendered frame to judge")
            return out
        if isinstance(estimator, Exception):  # a judge that cannot load must not cost the video
            out.warnings.append(f"dance fidelity not measured: {self.backend} cannot load ({estimator})")
            return out
        ts = sorted(self.kept)
        found: list[np.ndarray | None] = []
        for t in ts:
            try:
                found.append(estimate_near(estimator, self.kept[t], self.poses[t], key=f"dance-{t}"))
            except Exception as exc:  # noqa: BLE001 - one unreadable frame counts as nobody found
                log.warning("dance fidelity: frame %d could not be read (%s)", t, exc)
                found.append(None)
        h, w = self.kept[ts[0]].shape[:2]
        out.figures, out.warnings = figures(self.poses[ts], found, self.backend, size=(w, h))
        if self.session_poses is not None and len(self.session_poses):
            out.warnings += facing_warnings(self.session_poses, self.poses)
        try:
            out.picture = dance_sheet(self.poses, self.kept, dict(zip(ts, found)))
        except Exception as exc:  # noqa: BLE001 - the figures stand without their picture
            out.warnings.append(f"no dance.png: {type(exc).__name__}: {exc}")
        out.seconds = time.monotonic() - started
        out.figures["dance_judge_seconds"] = round(out.seconds, 2)
        return out


class SessionJudge:
    """Judges every video of one session on the dance it shows: a DanceJudge for each video, and the
    judge's floor on the session's own frames (real_floor), measured once per judge and carried by
    every judgement that asks for it.

    frames, poses: the session's frames of its main camera and their poses (drawn by `drawn_by`,
    the manifest's pose backends); estimators: the process's (trainer.estimators.Estimators), whose
    `judge(backend)` gives the judge's estimator, or the exception it could not be made with."""

    def __init__(
        self,
        frames: Sequence[np.ndarray],
        poses: np.ndarray,
        estimators,
        *,
        drawn_by: Iterable[str] | None = None,
    ):
        self.frames, self.poses, self.estimators, self.drawn_by = frames, poses, estimators, drawn_by
        self._floors: dict[str, tuple[dict[str, float], list[str]]] = {}

    def watcher(self, dance) -> DanceJudge | None:
        """A DanceJudge for a video of this dance (trainer.dance.Dance), or None for a group's dance."""
        poses = np.asarray(dance.poses)
        if poses.ndim != 3:  # several dancers: judged one person at a time is not done yet
            return None
        drawn_by = (getattr(dance.ref, "meta", None) or {}).get("backend")
        return DanceJudge(poses, drawn_by, session_poses=self.poses)

    def verdict(self, judge: DanceJudge | None, floor: bool = True) -> Fidelity:
        """The judge's figures, warnings and picture of the frames it kept; with `floor`, the judge's
        floor among the figures and its warning among the warnings. Nothing for no judge."""
        if judge is None:
            return Fidelity()
        fidelity = judge.judge_with(self.estimators.judge(judge.backend))
        if floor:
            figures, notes = self.floor(judge.backend)
            fidelity.figures.update(figures)
            fidelity.warnings += [n for n in notes if n not in fidelity.warnings]
        return fidelity

    def floor(self, backend: str) -> tuple[dict[str, float], list[str]]:
        """(figures, warnings) of the judge `backend` on the session's own frames, measured once."""
        if backend not in self._floors:
            estimator = self.estimators.judge(backend)
            self._floors[backend] = floor_with(estimator, self.frames, self.poses, backend, drawn_by=self.drawn_by)
        return self._floors[backend]


def estimate_near(estimator, frame: np.ndarray, asked: np.ndarray, key: str = "") -> np.ndarray | None:
    """The estimator's pose of the person in a square around where the asked pose stands (a person
    small in a wide frame is too small for a single-person model looking at all of it), in the
    frame's pixels; None when it finds nobody. The whole frame where the asked pose has no box."""
    from vision.crop import body_box

    h, w = frame.shape[:2]
    box = body_box(asked)
    x0 = y0 = 0
    crop = frame
    if box is not None:
        side = JUDGE_MARGIN * float(max(box[2] - box[0], box[3] - box[1]))
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        x0, y0 = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
        x1, y1 = int(min(w, cx + side / 2)), int(min(h, cy + side / 2))
        if x1 - x0 >= 16 and y1 - y0 >= 16:
            crop = frame[y0:y1, x0:x1]
        else:
            x0 = y0 = 0
    people = estimator.estimate(np.ascontiguousarray(crop), key=key)
    if not people:
        return None
    kp = np.array(people[0].keypoints, np.float32, copy=True)
    kp[:, 0] += x0
    kp[:, 1] += y0
    return kp


def real_floor(
    frames: Sequence[np.ndarray],
    poses: np.ndarray,
    backend: str,
    models_dir: str | Path | None = None,
    *,
    drawn_by: Iterable[str] | None = None,
    n: int = JUDGED_FRAMES,
) -> tuple[dict[str, float], list[str]]:
    """floor_with the judge `backend` loaded from models_dir (judge_estimator). Never raises."""
    try:
        estimator = judge_estimator(backend, models_dir)
    except Exception as exc:  # noqa: BLE001 - floor_with says why there is no floor
        estimator = exc
    return floor_with(estimator, frames, poses, backend, drawn_by=drawn_by, n=n)


def floor_with(
    estimator,
    frames: Sequence[np.ndarray],
    poses: np.ndarray,
    backend: str,
    *,
    drawn_by: Iterable[str] | None = None,
    n: int = JUDGED_FRAMES,
) -> tuple[dict[str, float], list[str]]:
    """The judge `backend` on a session's own frames against their own poses (n spread over them):
    (figures "dance_limb_floor", "dance_limb_floor_p90", "dance_facing_floor", warnings).
    estimator: the judge's, made already (trainer.estimators), or the exception it could not be
    made with. Not measured when `drawn_by` (the estimators that drew the session's poses)
    includes the judge: an estimator reading its own frames again agrees with itself, which is no
    floor. Never raises."""
    if drawn_by is not None and any(backend in str(b).lower() for b in drawn_by):
        return {}, [f"no judge floor: the session's poses were drawn by {backend}, the judge itself"]
    idx = judged_indices(min(len(frames), len(poses)), n)
    if not idx:
        return {}, ["no judge floor: the session has no frame"]
    if isinstance(estimator, Exception):
        return {}, [f"no judge floor: {type(estimator).__name__}: {estimator}"]
    try:
        found = []
        for t in idx:
            try:
                found.append(estimate_near(estimator, frames[t], poses[t], key=f"floor-{t}"))
            except Exception as exc:  # noqa: BLE001 - one unreadable frame counts as nobody found
                log.warning("judge floor: frame %d could not be read (%s)", t, exc)
                found.append(None)
        h, w = frames[idx[0]].shape[:2]
        out, _warnings = figures(np.asarray(poses, np.float32)[idx], found, backend, size=(w, h))
    except Exception as exc:  # noqa: BLE001 - the figures stand without their floor
        return {}, [f"no judge floor: {type(exc).__name__}: {exc}"]
    return {
        "dance_limb_floor": out["dance_limb_error"],
        "dance_limb_floor_p90": out["dance_limb_error_p90"],
        "dance_facing_floor": out["dance_facing_agreement"],
    }, []


def figures(
    asked: np.ndarray, found: list[np.ndarray | None], judge: str = "", size: tuple[int, int] | None = None
) -> tuple[dict[str, float], list[str]]:
    """The dance figures of asked poses [N, 17, 3] against the poses found on their rendered frames
    (None: nobody found) of `size` (width, height; None: every keypoint counts as in the frame),
    and warnings for what could not be compared."""
    n = len(asked)
    readable = [torso_aligned(a) is not None for a in asked]
    seen = [in_view(a, size) for a in asked]
    cut = sum(r and torso_aligned(s) is None for r, s in zip(readable, seen))
    facing_asked = [facing_class(a) for a in asked]
    # Each frame's error beside its asked facing, so the figures can say which facings render worst.
    per_frame = [(c, limb_error(s, f)) for c, s, f in zip(facing_asked, seen, found) if f is not None]
    errors = [e for _c, e in per_frame if np.isfinite(e)]
    # Over the frames whose asked facing is known: a rendered body whose facing cannot be read (or
    # nobody) does not agree, so breaking the body on the hard frames earns nothing.
    pairs = [(c, None if f is None else facing_class(f)) for c, f in zip(facing_asked, found)]
    pairs = [(a, f) for a, f in pairs if a is not None]
    people = sum(f is not None for f in found)
    out: dict[str, float] = {
        "dance_judged": float(n),
        "dance_person_found": people / n if n else float("nan"),
        "dance_limb_error": float(np.mean(errors)) if errors else float("nan"),
        "dance_limb_error_p90": float(np.percentile(errors, 90)) if errors else float("nan"),
        "dance_facing_agreement": float(np.mean([a == f for a, f in pairs])) if pairs else float("nan"),
        "dance_compared": float(len(errors)),
    }
    for c in FACINGS:  # only the facings the dance asks for and a frame could be compared on
        of_c = [e for a, e in per_frame if a == c and np.isfinite(e)]
        if of_c:
            out[f"dance_limb_error_{c}"] = float(np.mean(of_c))
    warnings = []
    if sum(readable) < n:
        warnings.append(f"dance fidelity: {n - sum(readable)} of {n} judged dance poses have no readable torso")
    if cut:
        warnings.append(
            f"dance fidelity: {cut} of {n} judged dance poses have their torso outside the rendered frame "
            "(hips or shoulders past its edge): no limb error there"
        )
    if people < n:
        warnings.append(f"dance fidelity: {judge or 'the judge'} found nobody in {n - people} of {n} rendered frames")
    if not errors:
        warnings.append("dance fidelity: no frame could be compared; no limb error")
    return out, warnings


def facing_warnings(session_poses: np.ndarray, dance_poses: np.ndarray) -> list[str]:
    """A warning when the dance asks for facings the session never showed (rendered from nothing)."""
    shown = {k for k, v in facings_of(session_poses).items() if v}
    asked = facings_of(dance_poses)
    total = sum(asked.values())
    unseen = {k: v for k, v in asked.items() if v and k not in shown}
    if not shown or not unseen or not total:
        return []
    share = sum(unseen.values()) / total
    return [
        f"the session shows the visitor facing {'/'.join(sorted(shown))} only: {share:.0%} of the dance "
        f"({'/'.join(sorted(unseen))}) faces a way they never showed"
    ]


def _sheet_box(pose: np.ndarray, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The asked person's box grown to at least 3:4 (labels fit), clipped to the frame."""
    from vision.crop import person_box

    w, h = size
    box = person_box(pose, size, margin=0.15)
    if box is None:
        return 0, 0, w, h
    x0, y0, x1, y1 = box
    want = 0.75 * (y1 - y0)
    if x1 - x0 < want:
        cx = (x0 + x1) / 2
        x0, x1 = int(max(0, cx - want / 2)), int(min(w, cx + want / 2))
    return x0, y0, x1, y1


def _cell(image: np.ndarray, box, height: int) -> np.ndarray:
    x0, y0, x1, y1 = box
    crop = np.ascontiguousarray(image[y0:y1, x0:x1])
    width = max(1, round(crop.shape[1] * height / max(1, crop.shape[0])))
    interp = cv2.INTER_AREA if crop.shape[0] > height else cv2.INTER_LINEAR
    return cv2.resize(crop, (width, height), interpolation=interp)


def _pose_cell(pose: np.ndarray, box, height: int) -> np.ndarray:
    """The pose drawn alone at the cell's scale (lines as thick as in a cell-sized frame)."""
    from vision.posemap import draw_pose_overlay

    x0, y0, x1, y1 = box
    k = height / max(1, y1 - y0)
    width = max(1, round((x1 - x0) * k))
    p = np.array(pose, np.float32, copy=True)
    p[:, 0], p[:, 1] = (p[:, 0] - x0) * k, (p[:, 1] - y0) * k
    return draw_pose_overlay(np.full((height, width, 3), 24, np.uint8), p)


def _label(image: np.ndarray, text: str) -> np.ndarray:
    for colour, weight in (((0, 0, 0), 3), ((255, 255, 255), 1)):
        cv2.putText(image, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.42, colour, weight, cv2.LINE_AA)
    return image


def dance_sheet(
    poses: np.ndarray,
    frames: dict[int, np.ndarray],
    found: dict[int, np.ndarray | None],
    rows: int = SHEET_FRAMES,
    height: int = CELL_HEIGHT,
) -> np.ndarray:
    """RGB picture, one row per frame spread over the dance: the asked pose drawn alone | the rendered
    frame, both cropped to the asked person's box; labels: the frame and the asked facing | the
    facing the judge reads and the limb error (torso lengths), or "nobody"."""
    ts = sorted(frames)
    chosen = [ts[k] for k in judged_indices(len(ts), rows)]
    lines = []
    for t in chosen:
        frame = frames[t]
        h, w = frame.shape[:2]
        box = _sheet_box(poses[t], (w, h))
        f = found.get(t)
        err = limb_error(in_view(poses[t], (w, h)), f) if f is not None else float("nan")
        said = "nobody" if f is None else f"{facing_class(f) or '?'} {err:.2f}"
        cells = [
            _label(_pose_cell(poses[t], box, height), f"{t}: {facing_class(poses[t]) or '?'}"),
            _label(_cell(frame, box, height), said),
        ]
        lines.append(np.concatenate(cells, axis=1))
    width = max(line.shape[1] for line in lines)
    lines = [np.pad(x, ((0, 0), (0, width - x.shape[1]), (0, 0)), constant_values=24) for x in lines]
    # Two columns of rows, so eight frames fit one screen.
    half = (len(lines) + 1) // 2
    left, right = lines[:half], lines[half:]
    right += [np.full_like(lines[0], 24)] * (len(left) - len(right))
    gap = np.full((height, 8, 3), 255, np.uint8)
    return np.concatenate([np.concatenate([a, gap, b], axis=1) for a, b in zip(left, right)], axis=0)
