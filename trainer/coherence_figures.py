"""The figures and the picture of what the temporal and face options do for one session, on its
held-out frames, with and without (trainer.evaluation.with_and_without renders them).

Both comparisons use the session's one model, so they cost a few renders, not another training:

* temporal: the model rendered as it is (each frame continuing the last generated one) against the
  same model frame by frame (each frame from a blank previous, as the first of a video):
  "flicker" of each (trainer.pix2pix.evaluate.flicker: 1 = as lively as the real video) and
  "motion error" of each (`motion_error`: how much the video changes otherwise than the real one
  does; 0 = exactly as it does). Flicker alone cannot tell shimmer from motion: a blurred video
  that shimmers can change as much from frame to frame as the real one.
* face: the frames with the face generator's residual against the body generator's alone:
  SSIM/PSNR inside the face box (trainer.pix2pix.face.face_quality).

The picture (`comparison_strip`, coherence.png with the results) shows a few held-out frames, the
face box and the person box of real | with | without, enlarged.
"""

from __future__ import annotations

import cv2
import numpy as np

from trainer.pix2pix.face import face_box
from vision.crop import person_box


def motion_error(reals: np.ndarray, fakes: np.ndarray, boxes: list) -> float:
    """Mean |(fake[t+1] - fake[t]) - (real[t+1] - real[t])| over mean |real[t+1] - real[t]|, each
    inside the union of the two frames' person boxes (None boxes skip the pair): the generated
    video's change from frame to frame that the real video does not have (shimmer, wobble, lag),
    relative to the real change; NaN with fewer than two boxed frames."""
    num = den = 0.0
    for t in range(len(reals) - 1):
        b0, b1 = boxes[t], boxes[t + 1]
        if b0 is None or b1 is None:
            continue
        x0, y0, x1, y1 = min(b0[0], b1[0]), min(b0[1], b1[1]), max(b0[2], b1[2]), max(b0[3], b1[3])
        r = reals[t + 1, y0:y1, x0:x1].astype(np.float32) - reals[t, y0:y1, x0:x1]
        g = fakes[t + 1, y0:y1, x0:x1].astype(np.float32) - fakes[t, y0:y1, x0:x1]
        num, den = num + float(np.abs(g - r).mean()), den + float(np.abs(r).mean())
    return num / den if den > 0 else float("nan")


def comparison_strip(real: np.ndarray, fakes: dict[str, np.ndarray], poses: np.ndarray, face_side: float) -> np.ndarray:
    """RGB picture: three held-out frames, one row each: the face box of the real frame and of
    each of `fakes` (name -> frames, as real), enlarged, then their person boxes."""
    rows = []
    h, w = real.shape[1:3]
    for t in np.unique(np.linspace(0, len(real) - 1, 3).round().astype(int)):
        cells = []
        boxes = ((face_box(poses[t], face_side, (w, h)), (120, 120)), (person_box(poses[t], (w, h)), (80, 120)))
        for box, cell in boxes:
            x0, y0, x1, y1 = box if box is not None else (0, 0, w, h)
            for name, img in (("real", real[t]), *((k, v[t]) for k, v in fakes.items())):
                zoom = cv2.resize(np.ascontiguousarray(img[y0:y1, x0:x1]), cell, interpolation=cv2.INTER_NEAREST)
                for colour, weight in (((0, 0, 0), 3), ((255, 255, 255), 1)):
                    cv2.putText(zoom, name, (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, colour, weight, cv2.LINE_AA)
                cells.append(np.pad(zoom, ((0, 2), (0, 2), (0, 0)), constant_values=24))
        rows.append(np.concatenate(cells, axis=1))
    return np.concatenate(rows, axis=0)
