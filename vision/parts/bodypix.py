"""BodyPix (MobileNet v1 0.75, 512 x 512, Coral's quantized build): 24 body parts per person.

Three ways to run it, picked once when the segmenter is built:

1. Edge TPU with Coral's ``posenet_decoder`` plugin: the whole graph runs, the decoder op
   returns poses and 33 x 33 instance masks (what the booth's Coral board ran).
2. Edge TPU without the plugin: the Edge TPU model minus its decoder op.
3. CPU: the CPU model minus its decoder op.

In 2 and 3 the decoder op is cut off the graph (vision.parts.surgery; the edited model is
cached under the state folder, never in the repository) and poses and instances are decoded
in numpy (vision.parts.decode). Segmentation and part maps come from the graph itself in
all three.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from vision import models
from vision.parts import decode, surgery
from vision.parts.result import PartsResult
from vision.pose import tflite
from vision.pose.base import BackendUnavailable, Person, check_image
from vision.pose.imaging import stretch
from vision.pose.posenet import DECODER_LIB_ENV, DEFAULT_DECODER_LIB

log = logging.getLogger(__name__)

CPU_MODEL = "bodypix_mobilenet_v1_075_512_512_16_quant_decoder.tflite"
EDGETPU_MODEL = "bodypix_mobilenet_v1_075_512_512_16_quant_decoder_edgetpu.tflite"
WITH_DECODER = "decoder-op"
NUMPY_DECODER = "numpy"


class BodyPixSegmenter:
    """Person segmentation with 24 body parts plus COCO-17 poses, several people per image.

    device: "auto" (Edge TPU if its delegate loads, else CPU), "edgetpu" or "cpu".
    decoder_lib: Coral's posenet_decoder plugin for the Edge TPU; None reads
    $BOOTH_POSENET_DECODER_LIB (else 'posenet_decoder.so'); "" never loads it.
    cache_dir: where the decoder-less model is written (default <state_dir>/models).
    mask_threshold: person probability above which a pixel belongs to someone.
    multi_person: False decodes one pose (argmax per keypoint) and gives every person pixel to it.
    max_detections, score_threshold, nms_radius: multi-person decoding; None takes the values
    stored in the model's decoder op.
    """

    name = "bodypix"

    def __init__(
        self,
        models_dir: Path | None = None,
        num_threads: int = 1,
        *,
        device: str = "auto",
        decoder_lib: str | None = None,
        cache_dir: Path | None = None,
        mask_threshold: float = 0.5,
        multi_person: bool = True,
        max_detections: int | None = None,
        score_threshold: float | None = None,
        nms_radius: float | None = None,
        delegate_loader: tflite.DelegateLoader | None = None,
        decoder_loader: Callable[[str], Any] = tflite.load_delegate_library,
    ):
        if not 0.0 < mask_threshold < 1.0:
            raise ValueError(f"mask_threshold must lie in (0, 1), got {mask_threshold}")
        try:
            models_dir = models.backend_dir("bodypix", models_dir)
        except models.ModelError as e:
            raise BackendUnavailable(str(e)) from e
        self.mask_threshold = float(mask_threshold)
        self.multi_person = bool(multi_person)
        choice = tflite.pick_model(models_dir, CPU_MODEL, EDGETPU_MODEL, device=device, delegate_loader=delegate_loader)
        self.device = choice.device
        self.decoder = NUMPY_DECODER
        plugin = None
        if choice.device == tflite.EDGETPU:
            plugin = _load_plugin(decoder_lib, decoder_loader)
            if plugin is not None:
                self.decoder = WITH_DECODER
        info = surgery.find_decoder(choice.model_path.read_bytes())
        if info is None:
            raise BackendUnavailable(
                f"{choice.model_path.name} has no {surgery.DECODER_OP} op: not the BodyPix build this code expects"
            )
        self.info: surgery.DecoderInfo = info
        if self.decoder == NUMPY_DECODER:
            path, self.info = surgery.stripped_model(choice.model_path, cache_dir or surgery.default_cache_dir())
            choice = dataclasses.replace(choice, model_path=path)
        options = self.info.options
        self.stride = int(options.get("stride", 16))
        self.max_detections = int(max_detections if max_detections is not None else options.get("max_detections", 20))
        self.score_threshold = float(
            score_threshold if score_threshold is not None else options.get("score_threshold", 0.2)
        )
        self.nms_radius = float(nms_radius if nms_radius is not None else options.get("nms_radius", 10.0))
        self.choice = choice
        plugins = (plugin,) if plugin is not None else ()
        self._runners = tflite.runners(choice, num_threads, plugins)
        runner = self._runners.get()
        _, in_h, in_w, _ = runner.inputs[0]["shape"]
        self.input_size = (int(in_w), int(in_h))
        log.info("bodypix on %s, poses decoded by %s", self.device, self.decoder)

    def __repr__(self) -> str:
        return f"<BodyPixSegmenter device={self.device!r} decoder={self.decoder!r}>"

    # --- running the graph ---------------------------------------------------------------------
    def _run(self, image: np.ndarray) -> dict[int, np.ndarray]:
        """Graph outputs by tensor index, dequantized, batch dimension dropped."""
        tensor, _ = stretch(image, *self.input_size)
        runner = self._runners.get()
        arrays = runner(tensor[None])
        return {
            d["index"]: decode.dequantize(a, d["quantization"])[0] if a.ndim > 0 else a
            for d, a in zip(runner.outputs, arrays)
        }

    def _maps(self, outs: dict[int, np.ndarray], skip: set[int]) -> tuple[np.ndarray, np.ndarray]:
        """The segmentation logits [h, w] and part logits [h, w, 24] among the other outputs."""
        rest = [a for i, a in outs.items() if i not in skip and a.ndim == 3]
        segments = next((a[..., 0] for a in rest if a.shape[-1] == 1), None)
        parts = next((a for a in rest if a.shape[-1] == decode.NUM_PARTS), None)
        if segments is None or parts is None:
            raise BackendUnavailable("the BodyPix graph lacks its segmentation or part-heatmap output")
        return segments, parts

    def net_outputs(self, image_rgb: np.ndarray) -> decode.NetOutputs:
        """The network's raw outputs as floats (numpy-decoder mode only)."""
        if self.decoder != NUMPY_DECODER:
            raise RuntimeError("raw offsets are only exposed when the decoder op has been removed")
        outs = self._run(check_image(image_rgb))
        heat, short, mid, long = (outs[i] for i in self.info.inputs[:4])
        segments, parts = self._maps(outs, set(self.info.inputs))
        return decode.NetOutputs(heat, short, mid, long, segments, parts, self.stride, self.input_size)

    # --- results ---------------------------------------------------------------------------------
    def segment(self, image_rgb: np.ndarray) -> PartsResult:
        """Part ids, person ids and poses for one RGB uint8 image, at the image's size."""
        image = check_image(image_rgb)
        size = (image.shape[1], image.shape[0])
        if self.decoder == NUMPY_DECODER:
            net = self.net_outputs(image)
            segments, parts = net.segments, net.part_heatmaps
            if self.multi_person:
                poses = decode.decode_multiple_poses(net, self.max_detections, self.score_threshold, self.nms_radius)
            else:
                poses = [decode.decode_single_pose(net)]
            owner_scores = -decode.instance_costs(net, poses) if self.multi_person and poses else None
        else:
            outs = self._run(image)
            segments, parts = self._maps(outs, set(self.info.outputs))
            poses, owner_scores = _from_decoder_op([outs[i] for i in self.info.outputs])
            if not self.multi_person:  # the op always decodes several; keep the best one
                poses, owner_scores = poses[:1], None
        return self._assemble(segments, parts, poses, owner_scores, size)

    def _assemble(self, segments, parts, poses, owner_scores, size) -> PartsResult:
        w, h = size
        mask = decode.block_to_image(segments, self.stride, self.input_size, size) > decode.logit(self.mask_threshold)
        part_ids = np.zeros((h, w), np.uint8)
        person_ids = np.zeros((h, w), np.uint8)
        ys, xs = np.nonzero(mask)
        if ys.size:
            # Parts and owners only matter on the person mask: resample just its bounding box.
            region = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
            box = (slice(region[1], region[3]), slice(region[0], region[2]))
            inside = mask[box]

            def up(field: np.ndarray) -> np.ndarray:
                return decode.block_to_image(field, self.stride, self.input_size, size, region)

            part_ids[box] = np.where(inside, up(parts).argmax(axis=2) + 1, 0)
            if poses and (owner_scores is None or len(poses) == 1):
                person_ids[box] = inside
            elif poses:
                owner = up(owner_scores).reshape(inside.shape + (-1,)).argmax(axis=2) + 1
                person_ids[box] = np.where(inside, owner, 0)
        in_w, in_h = self.input_size
        persons = []
        for p in poses:
            kps = np.column_stack([p.yx[:, 1] * w / in_w, p.yx[:, 0] * h / in_h, p.scores])
            persons.append(Person(keypoints=kps.astype(np.float32), score=float(p.score)))
        return PartsResult(part_ids, person_ids, persons, source=self.name)


def _load_plugin(decoder_lib: str | None, loader: Callable[[str], Any]) -> Any | None:
    if decoder_lib is None:
        decoder_lib = os.environ.get(DECODER_LIB_ENV, DEFAULT_DECODER_LIB)
    if not decoder_lib:
        return None
    try:
        return loader(decoder_lib)
    except tflite.DELEGATE_ERRORS as e:
        log.info("Coral's decoder plugin %r not loaded (%s): decoding BodyPix poses in numpy", decoder_lib, e)
        return None


def _from_decoder_op(op_outputs: list[np.ndarray]) -> tuple[list[decode.DecodedPose], np.ndarray | None]:
    """Poses and per-pose 33 x 33 instance masks as the decoder op returns them.

    Its outputs: keypoints [N, 17, 2] (y, x) in input pixels, keypoint scores [N, 17], pose
    scores [N], the pose count, and (with long offsets) instance masks [N, h, w]. The masks
    become the owner scores [h, w, N] that the numpy path gets from instance_costs.
    """
    yx, kp_scores, pose_scores, count = op_outputs[:4]
    n = int(np.asarray(count).reshape(-1)[0])
    poses = [
        decode.DecodedPose(
            np.asarray(yx).reshape(-1, 17, 2)[i].astype(np.float64),
            np.asarray(kp_scores).reshape(-1, 17)[i].astype(np.float32),
            float(np.asarray(pose_scores).reshape(-1)[i]),
        )
        for i in range(n)
    ]
    owner = None
    if len(op_outputs) > 4 and n:
        masks = np.asarray(op_outputs[4])
        owner = np.moveaxis(masks.reshape((-1,) + masks.shape[-2:])[:n], 0, -1).astype(np.float32)
    return poses, owner
