"""The face residual: a small generator that adds detail to the body generator's face.

The body generator spends a few dozen of its pixels on the face, and its L1 + PatchGAN losses,
averaged over the whole crop, barely notice a blurred one. As in "Everybody Dance Now", a second,
small pix2pix pair works on a square around the head only: its generator reads the pose map and
the body generator's person layer inside the box and outputs a residual that is added to that
layer there (faded out towards the box's edges, so no seam shows); its discriminator judges the
face box alone, conditioned on the same two crops. The body generator is not changed by it (its
output is taken as given, detached), so the face pair can be added to a trained body model.

Box: a square of a fixed side per session (FACE_FRACTION of the person crop: the crop is sized to
the body, so this is about two head heights), centred on the confident head keypoints (COCO-17
nose, eyes, ears) and moved inside the crop where it would leave it; no confident head keypoint,
no box, and the face generator leaves that frame alone. The same rule, in the camera's pixels
(`face_box`), places the box where the face figures are measured.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from trainer.pix2pix.networks import NetConfig, PatchDiscriminator, UNetGenerator

HEAD_KEYPOINTS = (0, 1, 2, 3, 4)  # COCO-17 nose, eyes, ears
FACE_FRACTION = 0.25  # the face box's side as a share of the person crop's
SCORE_THRESHOLD = 0.3
NO_BOX = (-1, -1)
MIN_FACE_CROP = 32  # the smallest person crop with a face box (8 px)
FEATHER = 0.2  # the residual fades to 0 over this share of each side of the box


def face_side(crop_size: int) -> int:
    """The face box's side in crop pixels (a power of two, as the face networks need)."""
    side = crop_size * FACE_FRACTION
    if crop_size < MIN_FACE_CROP or crop_size & (crop_size - 1):
        raise ValueError(f"a face box needs a power-of-two person crop of at least {MIN_FACE_CROP} px, got {crop_size}")
    return int(side)


def head_centre(pose: np.ndarray, score_threshold: float = SCORE_THRESHOLD) -> np.ndarray | None:
    """Mean (x, y) of the confident head keypoints of a [17, 3] pose, or None."""
    kp = np.asarray(pose, np.float32)[list(HEAD_KEYPOINTS)]
    ok = np.isfinite(kp).all(axis=1) & (kp[:, 2] >= score_threshold)
    return kp[ok, :2].mean(axis=0) if ok.any() else None


def crop_face_origin(pose_in_crop: np.ndarray, crop_size: int) -> tuple[int, int]:
    """Integer top-left (x0, y0) of the face box in a person crop (pose in crop pixels), kept
    inside the crop; NO_BOX when no head keypoint is confident."""
    c = head_centre(pose_in_crop)
    if c is None:
        return NO_BOX
    side = face_side(crop_size)
    x0, y0 = (int(np.clip(round(float(v) - side / 2), 0, crop_size - side)) for v in c)
    return x0, y0


def face_box(pose: np.ndarray, side: float, frame_size: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """Integer (x0, y0, x1, y1) of a `side` square on the head keypoints of a pose in a frame's
    pixels, clipped to the frame (W, H); None without a confident head keypoint or when less than
    3 px of it are inside."""
    c = head_centre(pose)
    if c is None:
        return None
    w, h = frame_size
    x0, y0 = int(max(0, np.floor(c[0] - side / 2))), int(max(0, np.floor(c[1] - side / 2)))
    x1, y1 = int(min(w, np.ceil(c[0] + side / 2))), int(min(h, np.ceil(c[1] + side / 2)))
    return (x0, y0, x1, y1) if min(x1 - x0, y1 - y0) >= 3 else None


def face_boxes(poses: np.ndarray, side: float, frame_size: tuple[int, int]) -> list:
    """face_box of each pose [T, 17, 3] of a video of frame_size (W, H)."""
    return [face_box(p, side, frame_size) for p in poses]


def face_nets(crop_size: int) -> tuple[NetConfig, UNetGenerator, PatchDiscriminator]:
    """(config, generator, discriminator) of the face pair for a person crop: input = the pose map
    and the body's person layer in the box (6 channels), output = a residual (3 channels)."""
    side = face_side(crop_size)
    # PatchGAN layers that fit the box: 1 for 8 px, 2 up to 32 px, 3 (70x70 patches) above.
    layers = 1 if side <= 8 else 2 if side <= 32 else 3
    # Light: the box has a sixteenth of the crop's pixels, but the fast preset's 256-channel inner
    # blocks would still cost half a body step in weights (gradients, Adam) alone; 128 channels and
    # a 2x2 bottleneck keep it under a tenth of one. No dropout: its noise would shimmer.
    cfg = NetConfig.fast(
        side,
        in_channels=6,
        out_channels=3,
        n_down=min(4, int(np.log2(side))),
        max_channels=128,
        dropout=0.0,
        n_layers_d=layers,
    )
    return cfg, UNetGenerator(cfg), PatchDiscriminator(cfg)


def feather_window(side: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """[1, 1, side, side]: 1 in the middle, falling linearly to 0 over FEATHER of each side."""
    r = torch.arange(side, dtype=torch.float32, device=device)
    ramp = ((torch.minimum(r, side - 1 - r) + 0.5) / max(1.0, FEATHER * side)).clamp(0, 1)
    return (ramp[:, None] * ramp[None, :])[None, None]


def take(images: torch.Tensor, origins: Sequence[tuple[int, int]], side: int) -> torch.Tensor:
    """The face boxes [B, C, side, side] of images [B, C, S, S] (origins all boxed)."""
    return torch.stack([images[b, :, y : y + side, x : x + side] for b, (x, y) in enumerate(origins)])


def residual(face_g: nn.Module, maps: torch.Tensor, layer: torch.Tensor, side: int) -> torch.Tensor:
    """The face generator's residual on boxes of maps and person layer (both [B, 3, side, side]),
    feathered towards the box's edges."""
    return face_g(torch.cat([maps, layer], 1)) * feather_window(side, maps.device)


def add_residual(
    layer: torch.Tensor, boxed: torch.Tensor, res: torch.Tensor, origins: Sequence[tuple[int, int]]
) -> torch.Tensor:
    """The person layer [B, 3, S, S] with the residual [k, 3, f, f] added in the boxes of the
    samples flagged in `boxed` ([B] bool, k of them), clipped to the image range."""
    side = res.shape[-1]
    canvas = torch.zeros_like(layer)
    for k, b in enumerate(torch.nonzero(boxed).flatten().tolist()):
        x, y = origins[b]
        canvas[b, :, y : y + side, x : x + side] = res[k].to(canvas.dtype)
    return (layer + canvas).clamp(-1.0, 1.0)


def refine(face_g: nn.Module, maps: torch.Tensor, layer: torch.Tensor, origins: Sequence[tuple[int, int]]):
    """The body's person layer [B, 3, S, S] with the face generator's residual added where a box is
    (origins per sample, NO_BOX for none); maps are the current pose maps [B, 3, S, S]."""
    side = face_g.cfg.size
    boxed = torch.tensor([o != NO_BOX for o in origins], dtype=torch.bool)
    if not boxed.any():
        return layer
    mine = [o for o in origins if o != NO_BOX]
    res = residual(face_g, take(maps[boxed], mine, side), take(layer[boxed], mine, side), side)
    return add_residual(layer, boxed, res, origins)


class FaceRefined(nn.Module):
    """A body generator with its face generator: called, it is the body generator (so everything
    that renders a matte generator takes it); the face residual is applied by whoever knows the
    head keypoints (trainer.coherent)."""

    def __init__(self, body: UNetGenerator, face: UNetGenerator) -> None:
        super().__init__()
        self.body, self.face = body, face
        self.cfg = body.cfg

    @property
    def size(self) -> int:
        return self.body.size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def face_quality(reals: np.ndarray, fakes: np.ndarray, boxes: list, side: float) -> dict[str, float]:
    """Mean SSIM/PSNR inside the face boxes (face_boxes of the real frames' poses, `side` in the
    frames' pixels) of generated frames against the real ones (uint8 [T, H, W, 3]):
    {"face_ssim", "face_psnr", "face_frames", "face_px"}; NaN figures when no frame has a box."""
    from trainer.pix2pix.evaluate import image_metrics

    reals, fakes = np.asarray(reals), np.asarray(fakes)
    if reals.shape != fakes.shape or reals.ndim != 4:
        raise ValueError(f"need real and generated frames [T, H, W, 3] of one shape, got {reals.shape}, {fakes.shape}")
    scores = [
        image_metrics(r[b[1] : b[3], b[0] : b[2]], f[b[1] : b[3], b[0] : b[2]])
        for r, f, b in zip(reals, fakes, boxes)
        if b is not None
    ]
    s = np.array(scores) if scores else np.full((1, 2), np.nan)
    return {
        "face_ssim": float(s[:, 0].mean()),
        "face_psnr": float(s[:, 1].mean()),
        "face_frames": len(scores),
        "face_px": float(side),
    }
