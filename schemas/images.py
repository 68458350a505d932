"""A Frame's image, decoded only once its header agrees with the frame.

The header (read by Pillow, no pixels decoded) must give the size the frame declares, which the
schema bounds: a small payload that would expand to a huge image (a decompression bomb) is refused
before any memory is spent on it. Only the declared format's decoder runs.

A JPEG can also be decoded straight to RGB at 1/2, 1/4 or 1/8 of its size: libjpeg scales in the
DCT domain, skipping most of the inverse transform and upsampling work, so a consumer that only
needs a small image (a 192x192 pose model) pays a fraction of the full decode and no colour copy.
"""

from __future__ import annotations

import io

import cv2
import numpy as np

from schemas.messages import Frame

_SIGNATURES = {"jpeg": b"\xff\xd8\xff", "png": b"\x89PNG\r\n\x1a\n"}
_PILLOW_FORMATS = {"jpeg": "JPEG", "png": "PNG"}
# The reduced-size reads of OpenCV's JPEG decoder (IMREAD_REDUCED_*), as flags combinable with
# IMREAD_COLOR_RGB: the grayscale variants are the bare size bits.
_REDUCED = {
    1: 0,
    2: cv2.IMREAD_REDUCED_GRAYSCALE_2,
    4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
    8: cv2.IMREAD_REDUCED_GRAYSCALE_8,
}
REDUCTIONS = tuple(_REDUCED)


class ImageError(ValueError):
    """The frame's image cannot be used; the text says why."""


def header_size(data: bytes, encoding: str) -> tuple[int, int]:
    """(width, height) from an image's header, checking its signature against `encoding`."""
    from PIL import Image

    if not data.startswith(_SIGNATURES[encoding]):
        raise ImageError(f"image is not a {encoding} (it starts with {data[:8]!r})")
    try:
        with Image.open(io.BytesIO(data), formats=[_PILLOW_FORMATS[encoding]]) as image:
            return image.size
    except Image.DecompressionBombError:
        raise ImageError(
            f"image header promises more than {2 * (Image.MAX_IMAGE_PIXELS or 0)} pixels (a decompression bomb)"
        ) from None
    except Exception as exc:  # noqa: BLE001 - Pillow raises several kinds for a bad header
        raise ImageError(f"undecodable {encoding} image ({len(data)} bytes): {exc}") from None


def _check_header(frame: Frame) -> None:
    width, height = header_size(frame.image, frame.encoding)
    if (width, height) != (frame.width, frame.height):
        raise ImageError(f"image is {width}x{height} but the frame says {frame.width}x{frame.height}")


def reduction_for(scale: float) -> int:
    """The largest DCT reduction (1, 2, 4 or 8) that keeps at least `scale` of the full resolution."""
    if not 0 < scale:
        raise ValueError(f"scale must be positive, got {scale}")
    return max(r for r in REDUCTIONS if r == 1 or r * scale <= 1.0)


def decode_rgb(frame: Frame, reduce: int = 1) -> tuple[np.ndarray, int]:
    """The frame's image as RGB pixels and the factor it was reduced by, or ImageError.

    reduce: 1, 2, 4 or 8. A JPEG is decoded at 1/reduce of its size in the DCT domain: its pixel i
    covers the full image's pixels [i * reduce, (i + 1) * reduce), so the result is
    ceil(width / reduce) x ceil(height / reduce). A PNG is always decoded whole (factor 1).
    """
    if reduce not in _REDUCED:
        raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce}")
    _check_header(frame)
    if frame.encoding != "jpeg":
        reduce = 1
    rgb = cv2.imdecode(np.frombuffer(frame.image, np.uint8), _REDUCED[reduce] | cv2.IMREAD_COLOR_RGB)
    expected = (-(-frame.height // reduce), -(-frame.width // reduce), 3)
    if rgb is None or rgb.shape != expected:
        raise ImageError(f"undecodable {frame.encoding} image ({len(frame.image)} bytes)")
    return rgb, reduce


def decode_bgr(frame: Frame) -> np.ndarray:
    """The frame's image as BGR pixels, or ImageError with the reason."""
    _check_header(frame)
    bgr = cv2.imdecode(np.frombuffer(frame.image, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageError(f"undecodable {frame.encoding} image ({len(frame.image)} bytes)")
    return bgr
