"""How good is a session's generator on its held-out frames, judged the way the visitor sees it:
generated frames at the camera's own resolution (whatever the framing) against the real ones.

Figures (trainer.pix2pix.evaluate): whole-frame SSIM/PSNR ("ssim", "psnr"), person-box SSIM/PSNR
("box_ssim", "box_psnr": where the person is, so a perfect backdrop cannot hide a poor person),
flicker, and pose consistency ("pose_error": MoveNet on the generated frames against the poses
they were made for, in body sizes), and the temporal and face options' with and without
(`with_and_without`, trainer.coherence_figures). Pictures stored with the results: samples.png (input | real |
generated at the camera's aspect, then the person's box of each enlarged), loss.png and
coherence.png.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np

from infra.objectstore import ObjectStore
from infra.settings import Settings
from schemas import layout
from schemas.keypoints import empty_keypoints
from trainer.training_set import TrainingSet

log = logging.getLogger(__name__)

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


def evaluate(
    settings: Settings,
    store: ObjectStore,
    session: str,
    generator,
    framing,
    data: TrainingSet,
    test: np.ndarray,
    history: list[dict],
) -> dict:
    """The held-out figures (means over every camera's held-out frames) and the temporal and face
    options' with and without (on the main camera's); writes samples.png, loss.png and
    coherence.png with the session's results."""
    from trainer.pix2pix.evaluate import frames_pose_error, video_quality
    from trainer.pix2pix.samples import loss_curves, png_bytes

    per_camera = held_out_frames(generator, framing, data, test)
    if not per_camera:
        raise ValueError("no held-out frames to evaluate")
    boxes = person_boxes(per_camera)
    figures = {c: video_quality(r, f, p, boxes[c]) for c, (r, f, _m, p) in per_camera.items()}
    out = _weighted(figures)
    try:
        from vision.pose import load_estimator

        estimator = load_estimator("auto", settings.models_dir)

        def estimate(image: np.ndarray) -> np.ndarray:
            persons = estimator.estimate(image, key="eval")
            return persons[0].keypoints if persons else empty_keypoints()

        fakes = np.concatenate([f for _r, f, _m, _p in per_camera.values()])
        poses = np.concatenate([p for _r, _f, _m, p in per_camera.values()])
        out["pose_error"] = frames_pose_error(fakes, poses, estimate)
    except Exception as exc:  # noqa: BLE001 - evaluation must not cost the visitor the video
        log.warning("pose consistency not measured: %s", exc)
    # The main camera's frames as rendered above are the options' "with": rendered once.
    camera = data.main_camera()
    options, coherence = with_and_without(generator, framing, data, test, per_camera.get(camera), boxes.get(camera))
    out.update(options)
    pictures = {"samples.png": sample_sheet(per_camera, boxes=boxes)}
    if history:
        pictures["loss.png"] = loss_curves(history)
    if coherence is not None:
        pictures["coherence.png"] = coherence
    for name, picture in pictures.items():
        store.put(layout.result_key(session, name), png_bytes(picture), "image/png")
    return out


def with_and_without(
    generator, framing, data, test: np.ndarray, run: tuple | None, boxes: list | None
) -> tuple[dict, np.ndarray | None]:
    """(figures, picture or None) for a CoherentPersonCentred framing's options on the main
    camera's held-out frames; run: those frames as the session's model renders them (real,
    generated, input maps, poses: held_out_frames) and their person boxes, None where there are none.
    ({}, None) when neither option is on."""
    from trainer.coherence_figures import comparison_strip, motion_error
    from trainer.pix2pix.evaluate import flicker
    from trainer.pix2pix.face import face_quality

    if not (getattr(framing, "temporal", False) or getattr(framing, "face", False)) or run is None or boxes is None:
        return {}, None
    camera = data.main_camera()
    real, fake, _maps, poses = run
    shown = {"with": fake}
    out: dict = {}
    if framing.temporal:
        alone = held_out_frames(generator, framing.frame_by_frame(), data, test & (data.cameras == camera))
        shown["frame by frame"] = alone[camera][1]
        out["flicker_sequential"] = flicker(real, fake, boxes)
        out["flicker_frame_by_frame"] = flicker(real, shown["frame by frame"], boxes)
        out["motion_error_sequential"] = motion_error(real, fake, boxes)
        out["motion_error_frame_by_frame"] = motion_error(real, shown["frame by frame"], boxes)
    if framing.face:
        side = framing.face_side_px(camera)
        body = getattr(generator, "body", generator)
        shown["no face"] = held_out_frames(body, framing, data, test & (data.cameras == camera))[camera][1]
        out.update(face_quality(real, fake, poses, side))
        without = face_quality(real, shown["no face"], poses, side)
        out.update(face_ssim_without=without["face_ssim"], face_psnr_without=without["face_psnr"])
    return out, comparison_strip(real, shown, poses, framing.face_side_px(camera))


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


def _label(image: np.ndarray, text: str) -> np.ndarray:
    out = image.copy()
    for colour, weight in (((0, 0, 0), 3), ((255, 255, 255), 1)):
        cv2.putText(out, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.42, colour, weight, cv2.LINE_AA)
    return out


def person_boxes(per_camera: dict[str, tuple]) -> dict[str, list]:
    """Per camera: the person's box (vision.crop.person_box) in each of its held-out frames."""
    from vision.crop import person_box

    return {c: [person_box(p, (r.shape[2], r.shape[1])) for p in poses] for c, (r, _f, _m, poses) in per_camera.items()}


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
