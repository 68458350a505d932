"""A Frame's image, decoded only once its header agrees with the frame.

The header (read by Pillow, no pixels decoded) must give the size the frame declares, which the
schema bounds: a small payload that would expand to a huge image (a decompression bomb) is refused
before any memory is spent on it. Only the declared format's decoder runs.
"""

from __future__ import annotations

import io

import cv2
import numpy as np

from schemas.messages import Frame

_SIGNATURES = {"jpeg": b"\xff\xd8\xff", "png": b"\x89PNG\r\n\x1a\n"}
_PILLOW_FORMATS = {"jpeg": "JPEG", "png": "PNG"}


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


def decode_bgr(frame: Frame) -> np.ndarray:
    """The frame's image as BGR pixels, or ImageError with the reason."""
    width, height = header_size(frame.image, frame.encoding)
    if (width, height) != (frame.width, frame.height):
        raise ImageError(f"image is {width}x{height} but the frame says {frame.width}x{frame.height}")
    bgr = cv2.imdecode(np.frombuffer(frame.image, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageError(f"undecodable {frame.encoding} image ({len(frame.image)} bytes)")
    return bgr
