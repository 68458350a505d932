"""Rendition: a sequence of (already normalized) poses -> the visitor dancing, as an MP4.

`write_video` encodes frames as they come (H.264 yuv420p via PyAV), so a long dance is never held
in memory: the trainer feeds it its framing's frames (trainer.framing), at the camera's own size
and aspect. Optionally each output frame is a side-by-side strip: reference frame (letterboxed to
the frame's size) | pose map | result.

`render_video` is the plain generator's square output: pose maps from the shared renderer
(vision.posemap) at the generator's size (or given ready-made, e.g. part maps), generated in
batches.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from fractions import Fraction
from functools import cache
from itertools import islice
from pathlib import Path

import av
import numpy as np

from schemas.keypoints import NUM_KEYPOINTS
from trainer.pix2pix.inference import generate_batches
from vision.posemap import DEFAULT_SCORE_THRESHOLD, letterbox_image, render_pose_map

log = logging.getLogger(__name__)

PREFERRED_CODEC = "libx264"
FALLBACK_CODEC = "mpeg4"


@cache
def video_codec() -> str:
    """libx264 when this PyAV build has the encoder, else mpeg4 (with a warning, once)."""
    try:
        av.codec.Codec(PREFERRED_CODEC, "w")
        return PREFERRED_CODEC
    except Exception:  # noqa: BLE001 - PyAV raises UnknownCodecError (a ValueError) or FFmpegError by version
        log.warning("this PyAV build has no %s encoder; writing MPEG-4 Part 2 video instead", PREFERRED_CODEC)
        return FALLBACK_CODEC


class _Mp4Writer:
    def __init__(self, path: Path, width: int, height: int, fps: float, crf: int) -> None:
        if width % 2 or height % 2:
            raise ValueError(f"yuv420p needs even frame sides, got {width}x{height}")
        self.container = av.open(str(path), mode="w")
        codec = video_codec()
        self.stream = self.container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        self.stream.width, self.stream.height = width, height
        self.stream.pix_fmt = "yuv420p"
        if codec == PREFERRED_CODEC:
            self.stream.options = {"crf": str(crf), "preset": "medium"}
        else:
            self.stream.bit_rate = 4_000_000

    def write(self, rgb: np.ndarray) -> None:
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        self.container.mux(self.stream.encode(frame))

    def close(self) -> None:
        self.container.mux(self.stream.encode(None))  # flush delayed frames
        self.container.close()


def _batched(items: Iterable, n: int) -> Iterator[list]:
    it = iter(items)
    while batch := list(islice(it, n)):
        yield batch


def render_video(
    generator,
    poses: np.ndarray | Sequence[np.ndarray],
    src_size: int | tuple[int, int],
    out_path: str | os.PathLike,
    fps: float = 30,
    side_by_side: Sequence[np.ndarray] | None = None,
    progress: bool = True,
    *,
    batch_size: int = 8,
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    crf: int = 18,
    maps: Sequence[np.ndarray] | None = None,
) -> Path:
    """Render poses ([T, 17, 3] in pixels of a src_size image) through the generator into an MP4 at
    out_path, one frame per pose. side_by_side: T reference frames (uint8 RGB, any size, e.g.
    the reference dancer's video) for a reference | pose map | result strip. maps: T input maps
    (uint8 RGB at the generator's size) used instead of drawing the poses' stick figures; read one
    batch at a time, so a lazy sequence keeps a long dance out of memory. Returns out_path."""
    poses = np.asarray(poses, np.float32)
    if poses.ndim != 3 or poses.shape[1:] != (NUM_KEYPOINTS, 3):
        raise ValueError(f"poses must be (T, {NUM_KEYPOINTS}, 3), got {poses.shape}")
    if len(poses) == 0:
        raise ValueError("no poses to render")
    if maps is not None and len(maps) != len(poses):
        raise ValueError(f"maps has {len(maps)} maps for {len(poses)} poses")
    if side_by_side is not None and len(side_by_side) != len(poses):
        raise ValueError(f"side_by_side has {len(side_by_side)} frames for {len(poses)} poses")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    size = generator.size
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    width = size * (3 if side_by_side is not None else 1)
    bar = None
    if progress:
        from infra.progress import bar as progress_bar

        bar = progress_bar(total=len(poses), unit="frame", desc="rendering")

    def input_map(i: int) -> np.ndarray:
        if maps is None:
            return render_pose_map(poses[i], src_size, size, score_threshold=score_threshold)
        m = np.asarray(maps[i])
        if m.shape != (size, size, 3) or m.dtype != np.uint8:
            raise ValueError(
                f"map {i} must be uint8 ({size}, {size}, 3) for a {size}px generator, got {m.dtype} {m.shape}"
            )
        return m

    def map_batches() -> Iterator[np.ndarray]:
        for batch in _batched(range(len(poses)), batch_size):
            yield np.stack([input_map(i) for i in batch])

    maps_seen: list[np.ndarray] = []  # the maps of the batch being generated, for the strip

    def remember(batches: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        for b in batches:
            maps_seen[:] = [b]
            yield b

    writer = _Mp4Writer(out_path, width, size, fps, crf)
    try:
        t = 0
        for fakes in generate_batches(generator, remember(map_batches())):
            for k, fake in enumerate(fakes):
                if side_by_side is not None:
                    ref = letterbox_image(np.asarray(side_by_side[t]), size)
                    fake = np.concatenate([ref, maps_seen[0][k], fake], axis=1)
                writer.write(fake)
                t += 1
            if bar is not None:
                bar.update(len(fakes))
    finally:
        writer.close()
        if bar is not None:
            bar.close()
    return out_path


def write_video(
    frames: Iterable[tuple[np.ndarray, np.ndarray]],
    total: int,
    out_path: str | os.PathLike,
    fps: float = 30,
    side_by_side: Sequence[np.ndarray] | None = None,
    side_path: str | os.PathLike | None = None,
    progress: bool = True,
    *,
    crf: int = 18,
) -> Path:
    """Encode (frame, input picture) pairs, uint8 RGB of one size, into an MP4 at out_path; with
    side_by_side (`total` reference frames of any size) and side_path, in the same pass a second
    MP4 of strips: reference (letterboxed to the frame's size) | input | frame. An odd frame side
    loses its last row or column (yuv420p needs even sides). Returns out_path; ValueError when the
    frames do not number `total`."""
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if side_by_side is not None and len(side_by_side) != total:
        raise ValueError(f"side_by_side has {len(side_by_side)} frames for {total} poses")
    strips = side_by_side is not None and side_path is not None
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    writers: list[_Mp4Writer] = []
    bar = None
    if progress:
        from infra.progress import bar as progress_bar

        bar = progress_bar(total=total, unit="frame", desc="rendering")
    t = 0
    try:
        for frame, picture in frames:
            h, w = frame.shape[0] // 2 * 2, frame.shape[1] // 2 * 2
            outs = [frame[:h, :w]]
            if strips:
                ref = letterbox_image(np.asarray(side_by_side[t]), (w, h))  # type: ignore[index]
                outs.append(np.concatenate([ref, picture[:h, :w], frame[:h, :w]], axis=1))
            if not writers:
                paths = [out_path] + ([Path(side_path)] if strips else [])  # type: ignore[arg-type]
                writers = [_Mp4Writer(p, o.shape[1], o.shape[0], fps, crf) for p, o in zip(paths, outs)]
            for writer, out in zip(writers, outs):
                writer.write(out)
            t += 1
            if bar is not None:
                bar.update(1)
    finally:
        for writer in writers:
            writer.close()
        if bar is not None:
            bar.close()
    if t != total:
        raise ValueError(f"{t} frames were rendered for {total} poses")
    return out_path


def count_frames(path: str | os.PathLike) -> int:
    """Frames in the first video stream, by decoding (container headers can be missing or wrong)."""
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError(f"{path} has no video stream")
        return sum(1 for _ in container.decode(video=0))
