"""Reading and writing videos with PyAV, frame by frame (a reference dance never sits in memory)."""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


@dataclass(frozen=True)
class VideoInfo:
    frames: int | None  # as the container declares it (may be absent or approximate)
    fps: float
    size: tuple[int, int]


def probe(path: str | Path) -> VideoInfo:
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError(f"{path} has no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or Fraction(30)
            return VideoInfo(
                stream.frames or None, float(rate), (stream.codec_context.width, stream.codec_context.height)
            )
    except av.error.FFmpegError as exc:
        raise ValueError(f"{path} is not a readable video: {exc}") from None


def read_frames(path: str | Path) -> Iterator[tuple[np.ndarray, float]]:
    """(RGB uint8 frame, time in seconds) per decoded frame.

    Times come from the presentation timestamps; a video whose timestamps do not increase (some
    muxers leave them out) falls back to frame index / frame rate from that point on.
    """
    info = probe(path)
    last = -np.inf
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for i, frame in enumerate(container.decode(stream)):
            t = frame.time
            if t is None or not np.isfinite(t) or t <= last:
                t = max(i / info.fps, last + 1.0 / info.fps)
            last = t
            yield frame.to_ndarray(format="rgb24"), float(t)


def _codec() -> str:
    # H.264 plays everywhere; MPEG-4 part 2 is the fallback of FFmpeg builds without an encoder.
    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def encode_mp4(frames: Iterable[np.ndarray], fps: float) -> bytes:
    """MP4 bytes of RGB uint8 frames (all of one size, even width and height)."""
    buf = io.BytesIO()
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(buf, mode="w", format="mp4") as container:
        stream = None
        for rgb in frames:
            if stream is None:
                h, w = rgb.shape[:2]
                if w % 2 or h % 2:
                    raise ValueError(f"video frames need even sizes for yuv420p, got {w}x{h}")
                stream = container.add_stream(_codec(), rate=rate)
                stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
                if stream.codec_context.name == "libx264":
                    stream.options = {"crf": "23", "preset": "veryfast"}
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
                container.mux(packet)
        if stream is None:
            raise ValueError("no frames to encode")
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def write_mp4(path: str | Path, frames: Iterable[np.ndarray], fps: float) -> None:
    Path(path).write_bytes(encode_mp4(frames, fps))
