"""How good is a session's generator on its held-out frames, judged the way the visitor sees it:
generated frames at the camera's own resolution (whatever the framing) against the real ones.

Figures (trainer.pix2pix.evaluate): whole-frame SSIM/PSNR ("ssim", "psnr"), person-box SSIM/PSNR
("box_ssim", "box_psnr": where the person is, so a perfect backdrop cannot hide a poor person),
flicker, and pose consistency ("pose_error": MoveNet on the generated frames against the poses
they were made for, in body sizes); a version's figures during training (`version_figures`) are
the main camera's SSIM/PSNR ones. The person boxes are found once per held-out frame
(`person_boxes`) and handed to every figure and picture that needs them.

The temporal and face options' with and without (`with_and_without`), on the main camera's
held-out frames, with the session's one model (a few renders, not another training):

* temporal: the model rendered as it is (each frame continuing the last generated one) against the
  same model frame by frame (each frame from a blank previous, as the first of a video): flicker
  and motion error of each (trainer.pix2pix.evaluate.motion_error: how much the video changes
  otherwise than the real one does; 0 = exactly as it does);
* face: the frames with the face generator's residual against the body generator's alone:
  SSIM/PSNR inside the face box (trainer.pix2pix.face.face_quality).

Pictures stored with the results: samples.png (`sample_sheet`: input | real | generated at the
camera's aspect, then the person's box of each enlarged), loss.png and coherence.png
(`comparison_strip`: a few held-out frames, the face box and the person box of real | with |
without, enlarged).
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from infra.objectstore import ObjectStore
from schemas import layout
from schemas.keypoints import empty_keypoints
from trainer.training_set import TrainingSet

log = logging.getLogger(__name__)

VERSION_FIGURES = ("box_psnr", "box_ssim", "psnr", "ssim")
SAMPLE_ROWS = 4
CELL_HEIGHT = 180


def held_out_frames(generator, framing, data: TrainingSet, test: np.ndarray) -> dict[str, tuple]:
    """Per camera: (real frames, generated frames, input maps, poses) of its held-out samples in
    seq order, all at the camera's size (samples of another size are left out)."""
    out = {}
    for camera in data.camera_names():
        size = data.camera_size(camera)
        idx = [i for i in np.flatnonzero(test & (data.cameras == camera)) if data.frame_size(i) == size]
        if not idx:
            continue
        idx = sorted(idx, key=lambda i: data.seqs[i])
        poses = data.poses[idx]
        fakes, maps = zip(*framing.frames(generator, poses, camera, maps=data.maps[idx]))
        out[camera] = (np.stack([data.frames[i] for i in idx]), np.stack(fakes), np.stack(maps), poses)
    return out


def version_figures(generator, framing, data: TrainingSet, test: np.ndarray, camera: str) -> dict:
    """The held-out figures a version carries (VERSION_FIGURES): the main camera's (`camera`)
    whole-frame and person-box SSIM/PSNR; {} when it has no held-out frame. No flicker or pose
    check: those wait for the final evaluation."""
    from trainer.pix2pix.evaluate import frame_boxes, frame_quality

    run = held_out_frames(generator, framing, data, test & (data.cameras == camera)).get(camera)
    if run is None:
        return {}
    real, fake, _maps, poses = run
    q = frame_quality(real, fake, frame_boxes(real, poses))
    return {k: q[k] for k in VERSION_FIGURES}


def evaluate(
    store: ObjectStore,
    session: str,
    generator,
    framing,
    data: TrainingSet,
    test: np.ndarray,
    history: list[dict],
    estimator,
) -> dict:
    """The held-out figures (means over every camera's held-out frames) and the temporal and face
    options' with and without (on the main camera's); writes samples.png, loss.png and
    coherence.png with the session's results. estimator: the pose check's (held_out_estimator,
    made once per trainer process: trainer.estimators), or the exception it could not be made with."""
    from trainer.pix2pix.evaluate import video_quality
    from trainer.pix2pix.samples import loss_curves, png_bytes

    per_camera = held_out_frames(generator, framing, data, test)
    if not per_camera:
        raise ValueError("no held-out frames to evaluate")
    boxes = person_boxes(per_camera)
    figures = {c: video_quality(r, f, p, boxes[c]) for c, (r, f, _m, p) in per_camera.items()}
    out = _weighted(figures)
    out.update(_pose_error(estimator, session, per_camera))
    # The main camera's frames as rendered above are the options' "with": rendered once.
    camera = data.main_camera()
    options, coherence = with_and_without(
        generator, framing, data, test, camera, per_camera.get(camera), boxes.get(camera)
    )
    out.update(options)
    pictures = {"samples.png": sample_sheet(per_camera, boxes=boxes)}
    if history:
        pictures["loss.png"] = loss_curves(history)
    if coherence is not None:
        pictures["coherence.png"] = coherence
    for name, picture in pictures.items():
        store.put(layout.result_key(session, name), png_bytes(picture), "image/png")
    return out


def held_out_estimator(models_dir: Path | None):
    """The pose check's estimator (pose_error): "auto" with its default options, tracking per key;
    one serves every session of a process (each tracks under its own key)."""
    from vision.pose import load_estimator

    return load_estimator("auto", models_dir)


def _pose_error(estimator, session: str, per_camera: dict[str, tuple]) -> dict:
    """{"pose_error": ...} of the generated frames of every camera (in turn, as one video), or {}
    with a warning where it cannot be measured (estimator: an exception, it could not be made)."""
    from trainer.pix2pix.evaluate import frames_pose_error

    if isinstance(estimator, Exception):
        log.warning("pose consistency not measured: %s", estimator)
        return {}
    try:
        key = f"eval-{session}"  # this session's own tracking, forgotten after: none carried over

        def estimate(image: np.ndarray) -> np.ndarray:
            persons = estimator.estimate(image, key=key)
            return persons[0].keypoints if persons else empty_keypoints()

        fakes = np.concatenate([f for _r, f, _m, _p in per_camera.values()])
        poses = np.concatenate([p for _r, _f, _m, p in per_camera.values()])
        try:
            return {"pose_error": frames_pose_error(fakes, poses, estimate)}
        finally:
            estimator.reset(key)
    except Exception as exc:  # noqa: BLE001 - evaluation must not cost the visitor the video
        log.warning("pose consistency not measured: %s", exc)
        return {}


def with_and_without(
    generator, framing, data, test: np.ndarray, camera: str, run: tuple | None, boxes: list | None
) -> tuple[dict, np.ndarray | None]:
    """(figures, picture or None) for a CoherentPersonCentred framing's options (module doc) on
    the main camera's (`camera`) held-out frames; run: those frames as the session's model renders
    them (real, generated, input maps, poses: held_out_frames) and boxes their person boxes, None
    where there are none. ({}, None) when neither option is on."""
    from trainer.pix2pix.evaluate import flicker, motion_error
    from trainer.pix2pix.face import face_boxes, face_quality

    if not (getattr(framing, "temporal", False) or getattr(framing, "face", False)) or run is None or boxes is None:
        return {}, None
    real, fake, _maps, poses = run
    main = test & (data.cameras == camera)
    # The "without"s: the same model on the same frames, rendered without the option.
    shown = {"with": fake}
    if framing.temporal:
        shown["frame by frame"] = held_out_frames(generator, framing.frame_by_frame(), data, main)[camera][1]
    if framing.face:
        shown["no face"] = held_out_frames(getattr(generator, "body", generator), framing, data, main)[camera][1]
    out: dict = {}
    if framing.temporal:
        alone = shown["frame by frame"]
        out["flicker_sequential"] = flicker(real, fake, boxes)
        out["flicker_frame_by_frame"] = flicker(real, alone, boxes)
        out["motion_error_sequential"] = motion_error(real, fake, boxes)
        out["motion_error_frame_by_frame"] = motion_error(real, alone, boxes)
    side = framing.face_side_px(camera)
    faces = face_boxes(poses, side, (real.shape[2], real.shape[1]))
    if framing.face:
        out.update(face_quality(real, fake, faces, side))
        without = face_quality(real, shown["no face"], faces, side)
        out.update(face_ssim_without=without["face_ssim"], face_psnr_without=without["face_psnr"])
    return out, comparison_strip(real, shown, faces, boxes)


def _weighted(figures: dict[str, dict]) -> dict:
    """Frame-weighted means of the cameras' figures (NaN-aware for the person-box ones)."""
    out: dict = {}
    frames = {c: f["frames"] for c, f in figures.items()}
    for key in ("ssim", "psnr", "box_ssim", "box_psnr", "flicker"):
        vals = [(f[key], frames[c]) for c, f in figures.items() if np.isfinite(f[key])]
        out[key] = float(sum(v * n for v, n in vals) / sum(n for _, n in vals)) if vals else float("nan")
    out["held_out"] = int(sum(frames.values()))
    return out


def _cell(image: np.ndarray, height: int = CELL_HEIGHT) -> np.ndarray:
    h, w = image.shape[:2]
    width = max(1, round(w * height / h))
    interp = cv2.INTER_AREA if height < h else cv2.INTER_NEAREST
    return cv2.resize(np.ascontiguousarray(image), (width, height), interpolation=interp)


def _label(image: np.ndarray, text: str, at: tuple[int, int] = (4, 14), scale: float = 0.42) -> np.ndarray:
    out = image.copy()
    for colour, weight in (((0, 0, 0), 3), ((255, 255, 255), 1)):
        cv2.putText(out, text, at, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, weight, cv2.LINE_AA)
    return out


def person_boxes(per_camera: dict[str, tuple]) -> dict[str, list]:
    """Per camera: the person's box in each of its held-out frames (trainer.pix2pix.evaluate.frame_boxes)."""
    from trainer.pix2pix.evaluate import frame_boxes

    return {c: frame_boxes(real, poses) for c, (real, _f, _m, poses) in per_camera.items()}


def sample_sheet(
    per_camera: dict[str, tuple], rows: int = SAMPLE_ROWS, boxes: dict[str, list] | None = None
) -> np.ndarray:
    """Rows of held-out frames spread over the cameras' blocks: input | real | generated at the
    camera's aspect, then the person's box of real and generated enlarged side by side (`boxes`:
    person_boxes, where the caller has them already)."""
    boxes = boxes if boxes is not None else person_boxes(per_camera)
    picks = [(c, t) for c, (r, *_rest) in per_camera.items() for t in range(len(r))]
    chosen = [picks[k] for k in np.unique(np.linspace(0, len(picks) - 1, min(rows, len(picks))).round().astype(int))]
    lines = []
    for camera, t in chosen:
        real, fake, input_map, _pose = (a[t] for a in per_camera[camera])
        cells = [_label(_cell(input_map), "input"), _label(_cell(real), "real"), _label(_cell(fake), "generated")]
        box = boxes[camera][t]
        if box is not None:
            x0, y0, x1, y1 = box
            cells += [_label(_cell(real[y0:y1, x0:x1]), "real person"), _label(_cell(fake[y0:y1, x0:x1]), "generated")]
        lines.append(np.concatenate(cells, axis=1))
    width = max(line.shape[1] for line in lines)
    padded = [np.pad(line, ((0, 4), (0, width - line.shape[1]), (0, 0)), constant_values=24) for line in lines]
    return np.concatenate(padded, axis=0)


def comparison_strip(real: np.ndarray, fakes: dict[str, np.ndarray], faces: list, boxes: list) -> np.ndarray:
    """RGB picture: three held-out frames, one row each: the face box (`faces`: face_boxes) of the
    real frame and of each of `fakes` (name -> frames, as real), enlarged, then their person boxes
    (`boxes`: person_boxes); the whole frame where a frame has no box."""
    rows = []
    h, w = real.shape[1:3]
    for t in np.unique(np.linspace(0, len(real) - 1, 3).round().astype(int)):
        cells = []
        for box, cell in ((faces[t], (120, 120)), (boxes[t], (80, 120))):
            x0, y0, x1, y1 = box if box is not None else (0, 0, w, h)
            for name, img in (("real", real[t]), *((k, v[t]) for k, v in fakes.items())):
                zoom = cv2.resize(np.ascontiguousarray(img[y0:y1, x0:x1]), cell, interpolation=cv2.INTER_NEAREST)
                cells.append(np.pad(_label(zoom, name, (3, 12), 0.35), ((0, 2), (0, 2), (0, 0)), constant_values=24))
        rows.append(np.concatenate(cells, axis=1))
    return np.concatenate(rows, axis=0)
