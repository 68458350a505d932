"""The one-shot rendition: the visitor's own pixels moved part by part through the reference dance
(vision.warp), no training, seconds after the session's dataset is ready.

    shot = render_oneshot(store, session, data, train, dance.poses, plate, mask_of=mask_of)

Source views are picked among the session's training frames of the main camera (vision.warp.
select_views: the most confident, whole, front-facing ones, plus the best back view when the
visitor turned round); `mask_of(i)` gives a frame's person mask (vision.personmask, as the
trainer makes them), asked only for a dozen candidates and, without a plate, for the frames one
is estimated from. The background is the plate the caller passes (trainer.plates.SessionPlates.
quick: the session's stored plate, the booth's empty background, or one estimated from a spread
of frames). The video is stored at layout.result_key(session, "oneshot.mp4").

Bad input never raises here for lack of the person: a visitor never seen whole gets the best
partial rendition, and `OneShot.missing` names the parts the dance needed that no view showed
(also in `warnings`); only a session with no usable pose at all raises OneShotError.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from infra.objectstore import ObjectStore
from schemas import layout
from trainer.training_set import TrainingSet
from vision.warp import PartWarper, SourceView, body_scale, select_views

log = logging.getLogger(__name__)

VIDEO = "oneshot.mp4"
CANDIDATES = 12  # frames whose person masks are computed to choose the views from
MAX_VIEWS = 2
FPS = 30


class OneShotError(ValueError):
    """The session has no frame the person can be taken from (no usable pose at all)."""


@dataclass
class OneShot:
    video_key: str
    frames: int
    views: list[int]  # sample indices of the source views, best first
    missing: list[str]  # parts the dance shows that no source view has
    seconds: float
    written_at: float
    warnings: list[str] = field(default_factory=list)

    def metrics(self) -> dict[str, float]:
        """Figures for the Rendition that carries it (numbers only)."""
        return {
            "oneshot": 1.0,
            "oneshot_seconds": round(self.seconds, 2),
            "oneshot_views": float(len(self.views)),
            "oneshot_missing_parts": float(len(self.missing)),
        }


def _pose_only_area(pose: np.ndarray) -> float:
    s = body_scale(pose)
    return 0.0 if s is None else s * s


def choose_views(
    data: TrainingSet,
    candidates: np.ndarray,
    size: tuple[int, int],
    mask_of: Callable[[int], np.ndarray],
    k: int = MAX_VIEWS,
) -> tuple[list[SourceView], list[int]]:
    """(source views, their sample indices) among the candidates, frames of `size` (width, height):
    the CANDIDATES best by pose alone, then by vision.warp.select_views with their real person masks."""
    idx = np.asarray(candidates)
    if not len(idx):
        return [], []
    rough = select_views(data.poses[idx], [_pose_only_area(p) for p in data.poses[idx]], size, k=CANDIDATES, spacing=3)
    picked = idx[rough]
    masks = {int(i): mask_of(int(i)) for i in picked}
    areas = [
        float(np.asarray(masks[int(i)], np.float32).sum() / (255.0 if masks[int(i)].dtype == np.uint8 else 1.0))
        for i in picked
    ]
    best = [int(picked[j]) for j in select_views(data.poses[picked], areas, size, k=k)]
    views = [SourceView.build(data.frames[i], masks[i], data.poses[i]) for i in best]
    return views, best


def oneshot_frames(warper: PartWarper, poses: np.ndarray, plate: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(frame, pose map) per pose: the warped person over the plate, and the stick figure it follows."""
    from vision.posemap import render_pose_map

    size = plate.shape[1], plate.shape[0]
    for pose in poses:
        frame, _missing = warper.render(pose, plate)
        yield frame, render_pose_map(pose, size, size)


def render_oneshot(
    store: ObjectStore,
    session: str,
    data: TrainingSet,
    train: np.ndarray,
    poses: np.ndarray,
    plate: np.ndarray,
    *,
    mask_of: Callable[[int], np.ndarray],
    camera: str,
    out_path: Path | None = None,
    progress: bool = False,
    judge=None,
) -> OneShot:
    """Render `poses` (the dance, normalized to the visitor, in the camera's pixels) as the visitor
    by part warping, store the MP4 at the session's oneshot.mp4 and return what was done.

    train: bool mask of the samples the views may come from; mask_of(i): the person mask of
    sample i; plate: the camera's background (trainer.plates.SessionPlates.quick); out_path: also
    keep the MP4 there; judge: a trainer.fidelity.DanceJudge that keeps frames as they are written."""
    from trainer.rendition import count_frames, write_video

    started = time.monotonic()
    size = data.camera_size(camera)
    candidates = np.flatnonzero((data.cameras == camera) & train)
    candidates = np.array([i for i in candidates if data.frame_size(int(i)) == size], int)
    views, chosen = choose_views(data, candidates, size, mask_of)
    if not views:
        raise OneShotError(f"session {session}: no frame of camera {camera} shows enough of the person to take from")
    warper = PartWarper(views)
    warnings = []
    missing = warper.missing_parts(poses)
    if missing:
        warnings.append(
            f"one-shot video: the visitor was never seen with their {', '.join(missing)}: "
            "the dance is shown without them"
        )
    if (plate.shape[1], plate.shape[0]) != tuple(size):
        raise ValueError(f"the plate is {plate.shape[1]}x{plate.shape[0]}, camera {camera} is {size[0]}x{size[1]}")
    key = layout.result_key(session, VIDEO)
    with tempfile.TemporaryDirectory(prefix="booth-oneshot-") as tmp:
        path = Path(tmp) / VIDEO
        frames_out = oneshot_frames(warper, poses, plate)
        if judge is not None:
            frames_out = judge.watch(frames_out)
        write_video(frames_out, len(poses), path, FPS, progress=progress)
        frames = count_frames(path)
        written_at = time.time()
        store.put(key, path.read_bytes(), "video/mp4")
        if out_path is not None:
            Path(out_path).parent.mkdir(parents=True, exist_ok=True)
            Path(out_path).write_bytes(path.read_bytes())
    seconds = time.monotonic() - started
    log.info("session %s: one-shot video of %d frames from views %s in %.1f s", session, frames, chosen, seconds)
    return OneShot(key, frames, chosen, missing, seconds, written_at, warnings)


def is_oneshot(rendition) -> bool:
    """Whether a Rendition carries the one-shot video (its metrics say so), not the fine-tuned one."""
    return (rendition.metrics or {}).get("oneshot") == 1.0


def run_oneshot(
    settings,
    session: str,
    reference: str | None = None,
    *,
    out_path: Path | None = None,
    person_masks: str = "auto",
    max_frames: int | None = None,
    progress: bool = True,
) -> OneShot:
    """`booth oneshot`: the session's dataset and reference dance read from the store, the one-shot
    video rendered and stored (see render_oneshot). Raises DatasetError, ReferenceUnavailable or
    OneShotError when the session cannot give one."""
    from dataset import read_manifest
    from trainer.dance import build_dance, load_reference, reference_name
    from trainer.plates import PersonMasks, SessionPlates
    from trainer.training_set import holdout_split, load_training_set

    store = ObjectStore(settings)
    manifest = read_manifest(settings, session, store=store) or {}
    name = reference_name(settings, session, reference or manifest.get("reference"))
    ref = load_reference(store, session, name)
    data = load_training_set(settings, session, store=store, expected=manifest.get("samples"))
    # The views come from the frames the trainer learns from, as in the trainer; the held-out frames
    # stay unseen so the figures of both videos are comparable.
    train = holdout_split(data.cameras, data.seqs, poses=data.poses).train
    camera = data.main_camera()
    size = data.camera_size(camera)
    dance = build_dance(store, ref, name, data.poses[data.cameras == camera], size, data.size, "pose", max_frames)
    masks = PersonMasks(data, person_masks, settings.models_dir)
    shot = render_oneshot(
        store,
        session,
        data,
        train,
        dance.poses,
        SessionPlates(store, session, data, masks).quick(camera, train),
        mask_of=masks.of,
        camera=camera,
        out_path=out_path,
        progress=progress,
    )
    if dance.note:
        shot.warnings.append(dance.note)
    if masks.masker.why:
        shot.warnings.append(masks.masker.why)
    return shot
