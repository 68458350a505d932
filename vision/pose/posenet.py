"""PoseNet multi-person (Coral's quantized models with the decoder built into the graph).

The graph ends in the custom op ``PosenetDecoderOp``. It runs only where that op is registered:
Coral's ``posenet_decoder`` plugin library (loaded as a TFLite delegate) next to the Edge TPU
delegate on a Coral board. Anywhere else loading raises BackendUnavailable saying why.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from vision import models
from vision.pose import tflite
from vision.pose.base import BackendUnavailable, Estimator, Person, check_image
from vision.pose.imaging import stretch

RESOLUTIONS = ("353_481", "481_641")
DECODER_LIB_ENV = "BOOTH_POSENET_DECODER_LIB"
DEFAULT_DECODER_LIB = "posenet_decoder.so"
MISSING_OP = "PosenetDecoderOp custom op not available"


def model_names(resolution: str) -> tuple[str, str]:
    if resolution not in RESOLUTIONS:
        raise ValueError(f"PoseNet resolution must be one of {RESOLUTIONS}, got {resolution!r}")
    base = f"posenet_mobilenet_v1_075_{resolution}_16_quant_decoder"
    return f"{base}.tflite", f"{base}_edgetpu.tflite"


def decode_outputs(
    keypoints_yx: np.ndarray,
    keypoint_scores: np.ndarray,
    pose_scores: np.ndarray,
    num_poses: np.ndarray,
    input_size: tuple[int, int],
    image_size: tuple[int, int],
    min_pose_score: float,
) -> list[Person]:
    """Decoder outputs -> Persons in image pixels.

    keypoints_yx [1, N, 17, 2] are (y, x) in model-input pixels; input_size and image_size are
    (width, height). The image was stretched to the input size.
    """
    (in_w, in_h), (w, h) = input_size, image_size
    people = []
    for i in range(int(np.asarray(num_poses).reshape(-1)[0])):
        score = float(pose_scores.reshape(-1)[i])
        if score < min_pose_score:
            continue
        yx = keypoints_yx.reshape(-1, 17, 2)[i]
        kps = np.column_stack([yx[:, 1] * w / in_w, yx[:, 0] * h / in_h, keypoint_scores.reshape(-1, 17)[i]]).astype(
            np.float32
        )
        people.append(Person(keypoints=kps, score=score))
    return sorted(people, key=lambda p: -p.score)


class PoseNetEstimator(Estimator):
    """PoseNet MobileNet v1 0.75, several people per frame.

    decoder_lib: path of Coral's posenet_decoder plugin; None reads $BOOTH_POSENET_DECODER_LIB,
    else 'posenet_decoder.so' from the library path; "" loads no plugin (for runtimes that have
    the op built in). Raises BackendUnavailable when the op cannot be provided.
    """

    name = "posenet"

    def __init__(
        self,
        models_dir: Path,
        num_threads: int = 1,
        *,
        device: str = "auto",
        resolution: str = "481_641",
        decoder_lib: str | None = None,
        min_pose_score: float = 0.2,
        delegate_loader: tflite.DelegateLoader | None = None,
        decoder_loader: Callable[[str], Any] = tflite.load_delegate_library,
    ):
        cpu_name, tpu_name = model_names(resolution)
        self.min_pose_score = float(min_pose_score)
        if decoder_lib is None:
            decoder_lib = os.environ.get(DECODER_LIB_ENV, DEFAULT_DECODER_LIB)
        self.choice = tflite.choose_model(
            models.model_path(models_dir, cpu_name),
            models.model_path(models_dir, tpu_name),
            device=device,
            delegate_loader=delegate_loader,
        )
        self.device = self.choice.device

        def build():
            plugins: tuple = ()
            if decoder_lib:
                try:
                    plugins = (decoder_loader(decoder_lib),)
                except tflite.DELEGATE_ERRORS as e:
                    raise BackendUnavailable(
                        f"{MISSING_OP}: cannot load Coral's PoseNet decoder library {decoder_lib!r} "
                        f"({e}); set {DECODER_LIB_ENV} to its path, or use the movenet or "
                        "blazepose backend"
                    ) from e
            try:
                return tflite.Runner(tflite.make_interpreter(self.choice, num_threads, plugins))
            except RuntimeError as e:
                raise BackendUnavailable(
                    f"{MISSING_OP} in this TFLite runtime ({str(e).splitlines()[0]}); PoseNet "
                    "needs Coral's posenet_decoder plugin, or use the movenet or blazepose backend"
                ) from e

        self._runners = tflite.PerThread(build)
        runner = self._runners.get()
        _, in_h, in_w, _ = runner.inputs[0]["shape"]
        self.input_size = (int(in_w), int(in_h))

    def estimate(self, image_rgb: np.ndarray, key: str = "") -> list[Person]:
        image = check_image(image_rgb)
        tensor, _ = stretch(image, *self.input_size)
        yx, kp_scores, pose_scores, n = self._runners.get()(tensor[None])[:4]
        return decode_outputs(
            yx, kp_scores, pose_scores, n, self.input_size, (image.shape[1], image.shape[0]), self.min_pose_score
        )
