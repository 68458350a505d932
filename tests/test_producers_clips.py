"""Test clips whose frames carry their own number: 8 black/white blocks along the bottom edge hold the
frame number in binary (robust to H.264, JPEG and resizing), and the number is also drawn as text."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

BITS = 8


def counter_frame(number: int, size: tuple[int, int] = (320, 240)) -> np.ndarray:
    """An RGB frame showing ``number``."""
    width, height = size
    image = np.full((height, width, 3), (40, 90, 160), np.uint8)
    cv2.putText(image, f"#{number}", (10, height // 2), cv2.FONT_HERSHEY_SIMPLEX, 2.0, (255, 255, 0), 3)
    block = width // BITS
    for bit in range(BITS):
        value = 255 if (number >> bit) & 1 else 0
        image[height - block:, bit * block:(bit + 1) * block] = value
    return image


def read_counter(image: np.ndarray) -> int:
    """The number shown by a counter_frame, from any resized, lossy copy (BGR or RGB)."""
    gray = image.mean(axis=2) if image.ndim == 3 else image
    height, width = gray.shape
    block = width / BITS
    row = int(height - block / 2)
    return sum(1 << bit for bit in range(BITS) if gray[row, int((bit + 0.5) * block)] > 128)


def decode_jpeg(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "the payload is not a decodable JPEG"
    return image


def write_counter_video(path: Path, frames: int = 30, size: tuple[int, int] = (320, 240), fps: int = 30) -> Path:
    from producers.sources import write_video

    return write_video(path, [counter_frame(number, size) for number in range(frames)], fps=fps)


def test_counter_survives_jpeg_and_resizing():
    from producers.camera import encode_jpeg

    for number in (0, 1, 85, 170, 255):
        bgr = cv2.cvtColor(counter_frame(number), cv2.COLOR_RGB2BGR)
        assert read_counter(decode_jpeg(encode_jpeg(bgr, (640, 480), quality=60))) == number


def test_counter_video_holds_each_number_in_order(tmp_path):
    import av

    path = write_counter_video(tmp_path / "clip.mp4", frames=12)
    with av.open(str(path)) as container:
        numbers = [read_counter(f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]
    assert numbers == list(range(12))
