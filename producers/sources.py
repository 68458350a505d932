"""Where frames come from: a camera, a video file, a network stream, an image folder, in-memory arrays.

Every source yields SourceFrame objects holding a BGR uint8 image (OpenCV's channel order, so the
JPEG encoder takes it as is). Two kinds of timing:

* live sources (a camera, a stream) stamp each frame with the monotonic and wall clocks the moment
  it is read;
* media sources (a file, a folder, arrays) give each frame its position on the media timeline
  (``pts_s``); the runner anchors that timeline at the start of the run to make capture
  timestamps, and paces sending by it (``speed``).

Sources are opened when constructed, so a bad source fails before anything is connected or sent.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from schemas.ids import InvalidId, validate_id

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")
DEFAULT_FPS = 30.0


class SourceError(RuntimeError):
    """A source that cannot be opened or read; the text names the source and the problem."""


@dataclass(slots=True)
class SourceFrame:
    image: np.ndarray  # H x W x 3, uint8, BGR
    pts_s: float | None = None  # media sources: seconds since the first frame
    capture_ns: int | None = None  # live or recorded sources: time.monotonic_ns() at capture
    wall_time: float | None = None  # live or recorded sources: time.time() at capture
    seq: int | None = None  # recorded sources: the sequence number given at capture


class Source:
    """A stream of frames. ``live`` sources run in real time; media sources are paced by the runner."""

    live: bool = False
    description: str = "source"
    nominal_fps: float | None = None

    def __iter__(self) -> Iterator[SourceFrame]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.description}>"


def _stamp() -> tuple[int, float]:
    return time.monotonic_ns(), time.time()


class DeviceSource(Source):
    """A V4L2 camera (an index such as 0, or a path such as /dev/video2) read with OpenCV."""

    live = True

    def __init__(
        self, device: int | str, size: tuple[int, int] | None = None, fps: float | None = None, max_failures: int = 30
    ):
        self.device = device
        self.description = f"camera {device}"
        self.max_failures = max_failures
        backend = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
        self._cap = cv2.VideoCapture(device, backend)
        if not self._cap.isOpened():
            self._cap.release()
            raise SourceError(
                f"camera {device} cannot be opened: there is no such video device, or it is busy or not "
                "permitted (list devices with `ls /dev/video*`)"
            )
        # Ask the driver for the target size and rate so the capture path resizes as little as possible.
        if size:
            self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, size[0])
            self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, size[1])
        if fps:
            self._cap.set(cv2.CAP_PROP_FPS, fps)
        self.nominal_fps = self._cap.get(cv2.CAP_PROP_FPS) or None

    def __iter__(self) -> Iterator[SourceFrame]:
        failures = 0
        while True:
            # grab() returns as soon as the driver hands over a buffer: stamp then, decode after.
            ok = self._cap.grab()
            capture_ns, wall = _stamp()
            image = self._cap.retrieve()[1] if ok else None
            if image is None:
                failures += 1
                if failures >= self.max_failures:
                    raise SourceError(
                        f"camera {self.device} stopped delivering frames ({failures} failed reads in a row)"
                    )
                time.sleep(0.01)
                continue
            failures = 0
            yield SourceFrame(_bgr(image), capture_ns=capture_ns, wall_time=wall)

    def close(self) -> None:
        self._cap.release()


class _PyAVSource(Source):
    def __init__(self, target: str, description: str, **open_kwargs):
        import av

        self.description = description
        try:
            self._container = av.open(target, **open_kwargs)
        except (av.FFmpegError, OSError) as exc:
            raise SourceError(f"{description} cannot be opened: {_redact(str(exc))}") from None
        if not self._container.streams.video:
            self._container.close()
            raise SourceError(f"{description} has no video stream")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"  # decode with frame threads: files decode ahead of pacing
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.nominal_fps = float(rate) if rate else None

    def _decoded(self):
        import av

        try:
            yield from self._container.decode(self._stream)
        except av.FFmpegError as exc:
            raise SourceError(f"{self.description} cannot be decoded: {_redact(str(exc))}") from None

    def close(self) -> None:
        self._container.close()


class VideoFileSource(_PyAVSource):
    """A video file decoded with PyAV; frames carry their presentation time."""

    def __init__(self, path: str | Path):
        path = Path(path)
        if not path.exists():
            raise SourceError(f"video file {path} does not exist")
        if not path.is_file():
            raise SourceError(f"video file {path} is not a regular file")
        super().__init__(str(path), f"video file {path}")

    def __iter__(self) -> Iterator[SourceFrame]:
        first = None
        fallback_step = 1.0 / (self.nominal_fps or DEFAULT_FPS)
        for index, frame in enumerate(self._decoded()):
            t = frame.time
            if t is None:  # a stream without timestamps: assume its nominal rate
                t = index * fallback_step
            if first is None:
                first = t
            yield SourceFrame(_to_bgr(frame), pts_s=max(0.0, t - first))


class StreamSource(_PyAVSource):
    """A network stream (RTSP, RTMP, HTTP, ...) decoded with PyAV and stamped on arrival."""

    live = True

    def __init__(self, url: str, timeout_s: float = 10.0):
        options = {"rtsp_transport": "tcp"} if url.lower().startswith("rtsp") else {}
        super().__init__(url, f"stream {_redact(url)}", options=options, timeout=timeout_s)

    def __iter__(self) -> Iterator[SourceFrame]:
        for frame in self._decoded():
            capture_ns, wall = _stamp()
            yield SourceFrame(_to_bgr(frame), capture_ns=capture_ns, wall_time=wall)


def _natural_key(path: Path):
    # img2.png before img10.png, as a person would sort them.
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


class ImageFolderSource(Source):
    """The images of a folder in natural name order, played at ``fps``."""

    def __init__(self, folder: str | Path, fps: float | None = None):
        folder = Path(folder)
        if not folder.is_dir():
            raise SourceError(f"image folder {folder} does not exist")
        self.files = sorted(
            (p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()), key=_natural_key
        )
        if not self.files:
            raise SourceError(f"image folder {folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        self.nominal_fps = float(fps or DEFAULT_FPS)
        self.description = f"image folder {folder} ({len(self.files)} images)"

    def __iter__(self) -> Iterator[SourceFrame]:
        for index, path in enumerate(self.files):
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise SourceError(f"image {path} cannot be read (not an image, or truncated)")
            yield SourceFrame(image, pts_s=index / (self.nominal_fps or DEFAULT_FPS))


class ArraySource(Source):
    """Frames from memory: a sequence of H x W x 3 uint8 RGB arrays, played at ``fps``."""

    def __init__(self, frames: Sequence[np.ndarray] | np.ndarray, fps: float | None = None, name: str = "arrays"):
        if len(frames) == 0:
            raise SourceError(f"{name}: no frames given")
        for index, frame in enumerate(frames):
            if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
                got = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
                raise SourceError(f"{name}: frame {index} must be an H x W x 3 uint8 RGB array, got {got}")
        self.frames = frames
        self.nominal_fps = float(fps or DEFAULT_FPS)
        self.description = f"{name} ({len(frames)} frames in memory)"

    def __iter__(self) -> Iterator[SourceFrame]:
        for index, frame in enumerate(self.frames):
            yield SourceFrame(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), pts_s=index / (self.nominal_fps or DEFAULT_FPS))


def write_video(
    path: str | Path, frames: Sequence[np.ndarray] | np.ndarray, fps: float = DEFAULT_FPS, crf: int = 18
) -> Path:
    """Save H x W x 3 uint8 RGB arrays as an H.264 MP4 that VideoFileSource plays back (even sizes)."""
    import av

    source = ArraySource(frames, fps=fps, name=str(path))  # validates the arrays
    height, width = frames[0].shape[:2]
    if width % 2 or height % 2:
        raise SourceError(f"{path}: H.264 needs even frame sizes, got {width}x{height}")
    path = Path(path)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(
            "libx264", rate=Fraction(fps).limit_denominator(1001), options={"preset": "ultrafast", "crf": str(crf)}
        )
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for frame in source.frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _to_bgr(frame) -> np.ndarray:
    """A decoded PyAV frame as BGR; the common yuv420p case through OpenCV, several times faster."""
    if frame.format.name == "yuv420p" and frame.width % 2 == 0 and frame.height % 2 == 0:
        return cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2BGR_I420)
    return frame.to_ndarray(format="bgr24")


def _bgr(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def _redact(url: str) -> str:
    """Hide a password in rtsp://user:password@host URLs before printing them."""
    return re.sub(r"(//[^/:@]+):[^/@]*@", r"\1:***@", url)


def open_source(spec, size: tuple[int, int] | None = None, fps: float | None = None) -> Source:
    """Open what ``spec`` names: a Source (as is), RGB arrays, a camera index or /dev/video path,
    a stream URL, an image folder, or a video file."""
    if isinstance(spec, Source):
        return spec
    if (isinstance(spec, np.ndarray) and spec.ndim == 4) or isinstance(spec, (list, tuple)):
        return ArraySource(spec, fps=fps)
    if isinstance(spec, int) and not isinstance(spec, bool):
        return DeviceSource(spec, size=size, fps=fps)
    if not isinstance(spec, (str, Path)):
        raise SourceError(f"cannot make a source of a {type(spec).__name__}")
    text = str(spec).strip()
    if not text:
        raise SourceError("the source is empty")
    if text.isdigit():
        return DeviceSource(int(text), size=size, fps=fps)
    if text.startswith("/dev/video"):
        return DeviceSource(text, size=size, fps=fps)
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme in STREAM_SCHEMES:
        return StreamSource(text)
    if scheme:
        raise SourceError(
            f"source {_redact(text)}: unsupported scheme {scheme!r} (use one of {', '.join(STREAM_SCHEMES)})"
        )
    path = Path(text).expanduser()
    if path.is_dir():
        return ImageFolderSource(path, fps=fps)
    if not path.exists():
        raise SourceError(f"source {text}: no such file, folder, camera index or stream URL")
    return VideoFileSource(path)


def parse_sources(specs: Sequence[str]) -> dict[str, str]:
    """``["cam0=video.mp4", "/dev/video0"]`` -> ``{"cam0": "video.mp4", "cam1": "/dev/video0"}``.

    A spec may start with ``CAMERA_ID=``; one without gets ``cam<position>``. Ids are validated and
    must be unique.
    """
    out: dict[str, str] = {}
    for position, spec in enumerate(specs):
        camera, sep, rest = spec.partition("=")
        # Only a valid id may precede '=': a URL such as http://host/?a=b stays whole.
        if sep and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", camera):
            spec = rest
        else:
            camera = f"cam{position}"
        try:
            validate_id(camera, "camera id")
        except InvalidId as exc:
            raise SourceError(str(exc)) from None
        if camera in out:
            raise SourceError(f"camera id {camera!r} is given twice")
        if not spec:
            raise SourceError(f"camera {camera}: the source is empty")
        out[camera] = spec
    return out
