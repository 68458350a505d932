"""PoseNet multi-person (Coral's quantized MobileNet v1 0.75 builds): several people per frame.

The graph ends in Coral's custom op ``PosenetDecoderOp``. Two ways to run it, picked once when the
estimator is built:

1. Coral's ``posenet_decoder`` plugin loads (a Coral board, with the Edge TPU or CPU model): the
   whole graph runs and the op returns the poses.
2. Anywhere else: the op is cut off the graph (vision.parts.surgery; the edited model is cached
   under the state folder, never in the repository) and its inputs, the keypoint heatmaps and the
   short and mid offsets, are decoded in numpy (vision.parts.decode: the multi-person procedure the
   op implements). On the Edge TPU the cut graph still runs on the accelerator.

Either way the answer is every person scoring at least ``min_pose_score``, strongest first; how
many to keep is the caller's choice (the pose stage keeps ``pose_max_people``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from vision.parts import decode, surgery
from vision.pose import tflite
from vision.pose.base import BackendUnavailable, Estimator, Person, check_image
from vision.pose.imaging import stretch

log = logging.getLogger(__name__)

RESOLUTIONS = ("353_481", "481_641")
DECODER_LIB_ENV = "BOOTH_POSENET_DECODER_LIB"
DEFAULT_DECODER_LIB = "posenet_decoder.so"
MISSING_OP = "PosenetDecoderOp custom op not available"
WITH_DECODER = "decoder-op"
NUMPY_DECODER = "numpy"


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
    """Decoder-op outputs -> Persons in image pixels, strongest first.

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


def _load_plugin(decoder_lib: str | None, loader: Callable[[str], Any]) -> tuple[Any | None, str]:
    """Coral's decoder plugin, or None with the reason it is not used."""
    if decoder_lib is None:
        decoder_lib = os.environ.get(DECODER_LIB_ENV, DEFAULT_DECODER_LIB)
    if not decoder_lib:
        return None, "no decoder plugin requested"
    try:
        return loader(decoder_lib), f"Coral's decoder plugin {decoder_lib!r} loaded"
    except tflite.DELEGATE_ERRORS as e:
        return None, f"{MISSING_OP}: Coral's decoder plugin {decoder_lib!r} did not load ({e})"


class PoseNetEstimator(Estimator):
    """PoseNet MobileNet v1 0.75, several people per frame, on the Edge TPU or the CPU.

    device: "auto" (Edge TPU if its delegate loads, else CPU), "edgetpu" or "cpu".
    decoder_lib: path of Coral's posenet_decoder plugin; None reads $BOOTH_POSENET_DECODER_LIB,
    else 'posenet_decoder.so' from the library path; "" never loads it. Without it the poses are
    decoded in numpy (``decoder`` says which; ``decoder_reason`` why).
    cache_dir: where the decoder-less model is written (default <state_dir>/models).
    min_pose_score: people scoring less are not returned.
    max_detections, nms_radius: numpy decoding; None takes the values stored in the model's
    decoder op (20 people, 10 input pixels).
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
        cache_dir: Path | None = None,
        min_pose_score: float = 0.2,
        max_detections: int | None = None,
        nms_radius: float | None = None,
        delegate_loader: tflite.DelegateLoader | None = None,
        decoder_loader: Callable[[str], Any] = tflite.load_delegate_library,
    ):
        self.min_pose_score = float(min_pose_score)
        choice = tflite.pick_model(models_dir, *model_names(resolution), device=device, delegate_loader=delegate_loader)
        self.device = choice.device
        plugin, self.decoder_reason = _load_plugin(decoder_lib, decoder_loader)
        runners = None
        if plugin is not None:
            runners = tflite.runners(choice, num_threads, (plugin,))
            try:
                runners.get()  # the whole graph, decoder op included, must load in this runtime
            except RuntimeError as e:
                plugin, runners = None, None
                self.decoder_reason = f"{MISSING_OP} in this TFLite runtime ({str(e).splitlines()[0]})"
        info = surgery.find_decoder(choice.model_path.read_bytes())
        if info is None:
            raise BackendUnavailable(
                f"{choice.model_path.name} has no {surgery.DECODER_OP} op: not the PoseNet build this code expects"
            )
        self.info: surgery.DecoderInfo = info
        self.decoder = WITH_DECODER if plugin is not None else NUMPY_DECODER
        if runners is None:  # numpy decoding: run the graph without its decoder op
            path, self.info = surgery.stripped_model(choice.model_path, cache_dir or surgery.default_cache_dir())
            choice = dataclasses.replace(choice, model_path=path)
            runners = tflite.runners(choice, num_threads)
        options = self.info.options
        self.stride = int(options.get("stride", 16))
        self.score_threshold = float(options.get("score_threshold", 0.2))
        self.max_detections = int(max_detections if max_detections is not None else options.get("max_detections", 20))
        self.nms_radius = float(nms_radius if nms_radius is not None else options.get("nms_radius", 10.0))
        self.choice = choice
        self._runners = runners
        runner = runners.get()  # fail now, not on the first frame, if the model cannot load
        _, in_h, in_w, _ = runner.inputs[0]["shape"]
        self.input_size = (int(in_w), int(in_h))
        log.info("posenet on %s, poses decoded by %s (%s)", self.device, self.decoder, self.decoder_reason)

    def __repr__(self) -> str:
        return f"<PoseNetEstimator device={self.device!r} decoder={self.decoder!r}>"

    def net_outputs(self, image_rgb: np.ndarray) -> decode.NetOutputs:
        """The network's heatmaps and offsets as floats (numpy-decoder mode only)."""
        if self.decoder != NUMPY_DECODER:
            raise RuntimeError("raw offsets are only exposed when the decoder op has been removed")
        tensor, _ = stretch(check_image(image_rgb), *self.input_size)
        runner = self._runners.get()
        by_index = {d["index"]: (d, a) for d, a in zip(runner.outputs, runner(tensor[None]))}
        heat, short, mid = (
            decode.dequantize(by_index[i][1], by_index[i][0]["quantization"])[0] for i in self.info.inputs[:3]
        )
        return decode.NetOutputs(heat, short, mid, None, None, None, self.stride, self.input_size)

    def estimate(self, image_rgb: np.ndarray, key: str = "") -> list[Person]:
        image = check_image(image_rgb)
        size = (image.shape[1], image.shape[0])
        if self.decoder == WITH_DECODER:
            tensor, _ = stretch(image, *self.input_size)
            yx, kp_scores, pose_scores, n = self._runners.get()(tensor[None])[:4]
            return decode_outputs(yx, kp_scores, pose_scores, n, self.input_size, size, self.min_pose_score)
        poses = decode.decode_multiple_poses(
            self.net_outputs(image), self.max_detections, self.score_threshold, self.nms_radius
        )
        (in_w, in_h), (w, h) = self.input_size, size
        people = []
        for p in poses:  # already strongest first
            if p.score < self.min_pose_score:
                continue
            kps = np.column_stack([p.yx[:, 1] * w / in_w, p.yx[:, 0] * h / in_h, p.scores]).astype(np.float32)
            people.append(Person(keypoints=kps, score=float(p.score)))
        return people
