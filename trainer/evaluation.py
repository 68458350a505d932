"""How good is a session's generator, on its held-out frames: SSIM/PSNR, pose consistency and the
pictures a person looks at (sample grid, loss curves), stored with the session's results."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from infra.objectstore import ObjectStore
from infra.settings import Settings
from schemas import layout
from schemas.keypoints import empty_keypoints

log = logging.getLogger(__name__)


def evaluate(
    settings: Settings,
    store: ObjectStore,
    session: str,
    generator,
    maps: np.ndarray,
    reals: np.ndarray,
    poses: np.ndarray,
    src_size: tuple[int, int],
    history: list[dict],
    representation: str = "pose",
) -> dict:
    """Metrics of the generator on (maps, reals) with their poses; writes samples.png and loss.png."""
    from trainer.pix2pix.evaluate import pose_consistency, reconstruction_metrics
    from trainer.pix2pix.inference import generate
    from trainer.pix2pix.samples import loss_curves, png_bytes, sample_grid

    fakes = generate(generator, maps[:4])
    store.put(
        layout.result_key(session, "samples.png"), png_bytes(sample_grid(maps[:4], reals[:4], fakes)), "image/png"
    )
    if history:
        store.put(layout.result_key(session, "loss.png"), png_bytes(loss_curves(history)), "image/png")
    out = {k: float(v) for k, v in reconstruction_metrics(generator, list(zip(maps, reals))).items()}
    try:
        from vision.pose import load_estimator

        estimator = load_estimator("movenet", settings.models_dir if Path(settings.models_dir).is_dir() else None)

        def estimate(image: np.ndarray) -> np.ndarray:
            persons = estimator.estimate(image, key="eval")
            return persons[0].keypoints if persons else empty_keypoints()

        if representation == "pose":
            consistency = pose_consistency(generator, poses, src_size, estimate)
        else:  # pose_consistency draws stick figures: this generator reads the held-out part maps
            consistency = map_consistency(generator, maps, poses, src_size, estimate)
        out["pose_error"] = float(consistency["mean_error"])
    except Exception as exc:  # noqa: BLE001 - evaluation must not cost the visitor the video
        log.warning("pose consistency not measured: %s", exc)
    return out


def map_consistency(generator, maps: np.ndarray, poses: np.ndarray, src_size: tuple[int, int], estimate) -> dict:
    """trainer.pix2pix.evaluate.pose_consistency for ready-made input maps (e.g. part maps)."""
    from trainer.pix2pix.evaluate import keypoint_error
    from trainer.pix2pix.inference import generate
    from vision.posemap import Letterbox

    box = Letterbox.fit(src_size, generator.size)
    fakes = generate(generator, maps)
    errors = np.stack([keypoint_error(box.pose_to_output(p), estimate(f), 0.3) for p, f in zip(poses, fakes)])
    seen = np.isfinite(errors)
    return {"mean_error": float(np.nanmean(errors)) if seen.any() else float("nan")}
