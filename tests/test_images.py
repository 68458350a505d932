"""A frame's image is decoded only after its header agrees with the frame (schemas/images.py)."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from schemas import Frame, SchemaError
from schemas.images import ImageError, decode_bgr, header_size

from helpers import with_sof_size


def _frame(image: bytes, width=320, height=240, encoding="jpeg") -> Frame:
    return Frame(
        session="s",
        camera="c",
        seq=0,
        capture_ns=0,
        wall_time=0.0,
        width=width,
        height=height,
        encoding=encoding,
        image=image,
    )


def _jpeg(width=320, height=240) -> bytes:
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[:, : width // 2] = (0, 128, 255)
    return cv2.imencode(".jpg", rgb)[1].tobytes()


def test_a_good_frame_decodes_to_its_declared_size():
    bgr = decode_bgr(_frame(_jpeg()))
    assert bgr.shape == (240, 320, 3)
    assert np.abs(bgr[10, 10].astype(int) - (0, 128, 255)).max() <= 3  # the left half's colour
    png = cv2.imencode(".png", np.full((48, 64, 3), 7, np.uint8))[1].tobytes()
    assert decode_bgr(_frame(png, 64, 48, "png")).shape == (48, 64, 3)


def test_a_header_that_promises_a_huge_image_is_refused_before_decoding():
    t0 = time.perf_counter()
    lie = with_sof_size(_jpeg(), 8000, 8000)  # 64 M pixels: 192 MB once decoded
    assert header_size(lie, "jpeg") == (8000, 8000)
    with pytest.raises(ImageError, match="image is 8000x8000 but the frame says 320x240"):
        decode_bgr(_frame(lie))
    bomb = with_sof_size(_jpeg(), 60000, 60000)  # 3.6 G pixels: about 10 GB
    with pytest.raises(ImageError, match=r"\(a decompression bomb\)"):
        decode_bgr(_frame(bomb))
    assert time.perf_counter() - t0 < 1.0  # refused from the headers: nothing was decoded


def test_a_header_of_another_size_or_format_is_refused():
    with pytest.raises(ImageError, match="image is 320x240 but the frame says 640x480"):
        decode_bgr(_frame(_jpeg(), 640, 480))
    png = cv2.imencode(".png", np.zeros((240, 320, 3), np.uint8))[1].tobytes()
    with pytest.raises(ImageError, match="is not a jpeg"):
        decode_bgr(_frame(png))
    with pytest.raises(ImageError, match=r"undecodable jpeg image \(40 bytes\)"):
        decode_bgr(_frame(_jpeg()[:40]))


def test_the_schema_bounds_a_frame_to_8k():
    Frame.decode(_frame(b"\xff\xd8\xff", 7680, 4320).encode())
    Frame.decode(_frame(b"\xff\xd8\xff", 4320, 7680).encode())  # portrait
    square = (
        _frame(b"\xff\xd8\xff", 4000, 4000)
        .encode()
        .replace(b'"width":4000,"height":4000', b'"width":8000,"height":8000')
    )
    with pytest.raises(SchemaError, match="more than 33177600 pixels"):
        Frame.decode(square)
    with pytest.raises(ValueError, match="less than or equal to 8192"):
        _frame(b"\xff\xd8\xff", 9000, 100)
