"""Training samples and their WebDataset tar shards, byte-for-byte reproducible.

A sample is three tar members sharing one key: ``<key>.jpg`` (the camera's JPEG exactly as
received; ``.png`` if the camera sent PNG), ``<key>.posemap.png`` (the generator's input in the
session's representation: vision.posemap's stick figure by default, else vision.partsmap's part
map) and ``<key>.pose.json`` (keypoints, flags and where they come from; with several people in
the camera also ``people``, each person's track, slot and keypoints: dataset.people); representations drawn
from part maps add ``<key>.parts.png``, the part ids (0..24) at the frame's size as an 8-bit grey
PNG, so a reader can redraw the map at any size. The same samples always give
the same tar bytes: members in sample order, fixed mtime, owner and mode, and the USTAR format
(no PAX headers carrying times), so re-writing a shard after a crash replaces it with itself.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from dataset.representation import DEFAULT_REPRESENTATION, needs_parts
from schemas.images import ImageError, header_size
from schemas.keypoints import IMPUTED, NUM_KEYPOINTS
from vision.partsmap import render_representation
from vision.posemap import render_people_map, render_pose_map

POSEMAP_SUFFIX = "posemap.png"
POSE_SUFFIX = "pose.json"
PARTS_SUFFIX = "parts.png"
IMAGE_SUFFIXES = ("jpg", "png")


@dataclass(frozen=True)
class Sample:
    """One encoded training sample of a shard."""

    key: str
    seq: int
    image_ext: str  # "jpg" or "png"
    image: bytes
    posemap_png: bytes
    pose_json: bytes
    imputed: int  # keypoints flagged IMPUTED
    parts_png: bytes | None = None  # part ids, for representations drawn from part maps

    def members(self) -> list[tuple[str, bytes]]:
        members = [
            (f"{self.key}.{self.image_ext}", self.image),
            (f"{self.key}.{POSEMAP_SUFFIX}", self.posemap_png),
            (f"{self.key}.{POSE_SUFFIX}", self.pose_json),
        ]
        if self.parts_png is not None:
            members.append((f"{self.key}.{PARTS_SUFFIX}", self.parts_png))
        return members


def png_bytes(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("PNG encoding of a pose map failed")
    return buf.tobytes()


def ids_png_bytes(ids: np.ndarray) -> bytes:
    """An id map (uint8 [H, W]) as a lossless 8-bit grey PNG."""
    ids = np.asarray(ids)
    if ids.ndim != 2 or ids.dtype != np.uint8:
        raise ValueError(f"an id map must be uint8 [H, W], got {ids.dtype} {ids.shape}")
    ok, buf = cv2.imencode(".png", ids)
    if not ok:
        raise RuntimeError("PNG encoding of a part-id map failed")
    return buf.tobytes()


def decode_ids(data: bytes, what: str = "part ids") -> np.ndarray:
    """The uint8 [H, W] id map of ids_png_bytes."""
    ids = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if ids is None or ids.ndim != 2 or ids.dtype != np.uint8:
        raise ValueError(f"{what} is not an 8-bit grey PNG")
    return ids


def _round(values: Iterable[float]) -> list[float]:
    # Three decimals of a pixel are plenty, and a fixed rounding keeps the JSON bytes reproducible.
    return [round(float(v), 3) for v in values]


def encode_sample(
    *,
    key: str,
    seq: int,
    camera: str,
    session: str,
    image: bytes,
    encoding: str,
    width: int,
    height: int,
    pose: np.ndarray,
    flags: list[int],
    backend: str,
    person_score: float,
    capture_ns: int,
    wall_time: float,
    resolution: int,
    representation: str = DEFAULT_REPRESENTATION,
    part_ids: np.ndarray | None = None,
    people: list[dict] | None = None,
) -> Sample:
    """Render the input map and serialise one sample; pose is [17, 3] in pixels of the frame.

    representation: "pose", "parts" or "pose+parts" (dataset.representation); the
    last two need part_ids, uint8 [height, width] in the frame's pixels.
    people: every person of the frame with a slot (dicts of track, slot, keypoints [17, 3] in
    the frame's pixels, flags), for a camera with several people: they are stored in the record's
    "people" and the stick figure shows each in its slot's palette (vision.posemap). Part maps
    keep the main person alone (dataset.representation).
    """
    pose = np.asarray(pose, dtype=np.float32)
    if pose.shape != (NUM_KEYPOINTS, 3):
        raise ValueError(f"pose must be [{NUM_KEYPOINTS}, 3], got {pose.shape}")
    # The map is drawn from the pose exactly as stored (rounded), so a reader can redraw it.
    pose = np.asarray([_round(row) for row in pose], dtype=np.float32)
    flags = [int(f) for f in flags] if flags else [0] * NUM_KEYPOINTS
    parts_png = None
    if needs_parts(representation):
        if part_ids is None:
            raise ValueError(f"the {representation!r} representation needs the frame's part ids")
        part_ids = np.asarray(part_ids)
        if part_ids.shape != (height, width):
            raise ValueError(f"part ids are {part_ids.shape[::-1]} but the frame is {(width, height)}")
        posemap = render_representation(
            representation, poses=pose, src_size=(width, height), out_size=resolution, part_ids=part_ids
        )
        parts_png = ids_png_bytes(part_ids.astype(np.uint8))
    elif people:
        stored = [np.asarray([_round(row) for row in p["keypoints"]], np.float32) for p in people]
        posemap = render_people_map(np.stack(stored), [p["slot"] for p in people], (width, height), resolution)
    else:
        posemap = render_pose_map(pose, (width, height), resolution)
    record = {
        "session": session,
        "camera": camera,
        "seq": seq,
        "capture_ns": capture_ns,
        "wall_time": wall_time,
        "width": width,
        "height": height,
        "backend": backend,
        "person_score": round(float(person_score), 4),
        "resolution": resolution,
        "keypoints": [_round(row) for row in pose],
        "flags": flags,
    }
    if people:
        record["people"] = [
            {
                "track": p["track"],
                "slot": int(p["slot"]),
                "keypoints": [_round(row) for row in p["keypoints"]],
                "flags": [int(f) for f in p["flags"]],
            }
            for p in people
        ]
    return Sample(
        key=key,
        seq=seq,
        image_ext="png" if encoding == "png" else "jpg",
        image=image,
        posemap_png=png_bytes(posemap),
        pose_json=json.dumps(record, sort_keys=True, separators=(",", ":")).encode(),
        imputed=sum(1 for f in flags if f & IMPUTED),
        parts_png=parts_png,
    )


def build_tar(members: Iterable[tuple[str, bytes]]) -> bytes:
    """A tar of (name, bytes) members in the given order, identical for identical input."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def build_shard(samples: Iterable[Sample]) -> bytes:
    return build_tar(m for s in sorted(samples, key=lambda s: s.seq) for m in s.members())


def iter_tar_samples(data: bytes) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {suffix: bytes}) per sample of a WebDataset tar, in tar order."""
    current: str | None = None
    parts: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        for info in tar:
            if not info.isfile():
                continue
            base = info.name.rsplit("/", 1)[-1]
            key, dot, suffix = base.partition(".")
            if not dot:
                raise ValueError(f"tar member {info.name!r} has no suffix; not a WebDataset sample file")
            if key != current:
                if current is not None:
                    yield current, parts
                current, parts = key, {}
            member = tar.extractfile(info)
            assert member is not None  # a regular file always has its bytes
            parts[suffix] = member.read()
    if current is not None:
        yield current, parts


def decode_rgb(data: bytes, what: str = "image") -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{what} cannot be decoded")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def image_problem(data: bytes, encoding: str, width: int, height: int) -> str | None:
    """Why a frame's image is unusable (None if it decodes to the size the frame declares).

    JPEG decoders fill a truncated file with grey instead of failing, so the end-of-image marker
    is checked too. The check decodes at 1/8 scale (DCT scaling): cheap, yet it reads the whole
    entropy-coded stream.
    """
    if encoding == "jpeg":
        if not data.startswith(b"\xff\xd8"):
            return "not a JPEG (no start-of-image marker)"
        if b"\xff\xd9" not in data[-64:]:
            return "truncated JPEG (no end-of-image marker)"
    try:  # the header first: a payload that would decode to more than it declares is never decoded
        size = header_size(data, encoding)
    except ImageError as exc:
        return str(exc)
    if size != (width, height):
        return f"image is {size[0]}x{size[1]}, not the declared {width}x{height}"
    if encoding == "jpeg":
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_REDUCED_COLOR_8)
        expected = (-(-height // 8), -(-width // 8))
    else:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        expected = (height, width)
    if image is None:
        return f"{encoding} image cannot be decoded"
    if image.shape[:2] != expected:
        return f"image is not the declared {width}x{height}"
    return None
