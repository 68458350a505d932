"""Reading an assembled session back: its manifest and its samples, shard by shard."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from dataset.people import people_of
from dataset.shards import (
    IMAGE_SUFFIXES,
    PARTS_SUFFIX,
    POSE_SUFFIX,
    POSEMAP_SUFFIX,
    decode_ids,
    decode_rgb,
    iter_tar_samples,
)
from infra.objectstore import ObjectStore
from infra.settings import Settings
from schemas import layout
from schemas.keypoints import NUM_KEYPOINTS
from vision.posemap import letterbox_image


@dataclass(frozen=True)
class SessionSample:
    key: str
    camera: str
    seq: int
    frame: np.ndarray  # uint8 RGB [h, w, 3], the camera's frame as captured
    posemap: np.ndarray  # uint8 RGB [R, R, 3], aligned with letterbox_image(frame, R); the input map
    #                          in the session's representation (manifest "representation")
    pose: np.ndarray  # float32 [17, 3] in the frame's pixels
    flags: np.ndarray  # uint8 [17], schemas.keypoints bits
    src_size: tuple[int, int]
    part_ids: np.ndarray | None = None  # uint8 [h, w] in the frame's pixels (parts representations)
    people: np.ndarray | None = None  # float32 [P, 17, 3]: every drawn person (dataset.people), the
    #                                    main one alone in slot 0 for one-person samples
    slots: np.ndarray | None = None  # int64 [P]: each person's slot (palette, visitor)


def pose_array(record: dict) -> np.ndarray:
    """The [17, 3] keypoints of a sample's pose.json record."""
    return np.asarray(record["keypoints"], dtype=np.float32).reshape(NUM_KEYPOINTS, 3)


def read_manifest(settings: Settings, session: str, store: ObjectStore | None = None) -> dict | None:
    data = (store or ObjectStore(settings)).get(layout.manifest_key(session))
    return None if data is None else json.loads(data)


def shard_samples(data: bytes, what: str = "shard") -> Iterator[SessionSample]:
    """The samples of one shard's tar bytes, in order."""
    for key, parts in iter_tar_samples(data):
        image = next((parts[s] for s in IMAGE_SUFFIXES if s in parts), None)
        if image is None or POSEMAP_SUFFIX not in parts or POSE_SUFFIX not in parts:
            raise ValueError(f"{what}: sample {key!r} lacks an image, pose map or pose ({sorted(parts)})")
        record = json.loads(parts[POSE_SUFFIX])
        people, slots = people_of(record)
        yield SessionSample(
            key=key,
            camera=record["camera"],
            seq=int(record["seq"]),
            frame=decode_rgb(image, f"{what}: {key} image"),
            posemap=decode_rgb(parts[POSEMAP_SUFFIX], f"{what}: {key} pose map"),
            pose=pose_array(record),
            flags=np.asarray(record["flags"], np.uint8),
            src_size=(int(record["width"]), int(record["height"])),
            part_ids=decode_ids(parts[PARTS_SUFFIX], f"{what}: {key} part ids") if PARTS_SUFFIX in parts else None,
            people=people,
            slots=slots,
        )


def session_shard_keys(settings: Settings, session: str, store: ObjectStore | None = None) -> list[str]:
    """The shard keys of a session: the manifest's list, or (still assembling) what is stored."""
    store = store or ObjectStore(settings)
    manifest = read_manifest(settings, session, store=store)
    if manifest is not None:
        if manifest["status"] == "aborted":
            raise ValueError(f"session {session} was aborted: it has no dataset")
        return list(manifest["shards"])
    return sorted(k for k in store.list(layout.shards_prefix(session)) if k.endswith(".tar"))


def iter_session_samples(
    settings: Settings, session: str, *, cameras: set[str] | None = None, store: ObjectStore | None = None
) -> Iterator[SessionSample]:
    """Every sample of a session, shard by shard (one shard in memory at a time)."""
    store = store or ObjectStore(settings)
    found = False
    for key in session_shard_keys(settings, session, store=store):
        found = True
        camera, _ = layout.parse_shard_name(key.rsplit("/", 1)[-1].removesuffix(".tar"))
        if cameras is not None and camera not in cameras:
            continue
        data = store.get(key)
        if data is None:
            raise FileNotFoundError(f"shard {key} of session {session} is listed but missing from the store")
        yield from shard_samples(data, key)
    if not found and read_manifest(settings, session, store=store) is None:
        raise FileNotFoundError(f"session {session} has no manifest and no shards in bucket {settings.s3_bucket}")


def load_session_samples(
    settings: Settings, session: str, *, letterbox: bool = True, cameras: set[str] | None = None
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The session's training samples as (frame_rgb, posemap_rgb, pose [17, 3]) tuples.

    With letterbox (default) the frame is placed exactly like its pose map (vision.posemap's
    letterbox_image at the map's size), so the pair is pixel-aligned for pix2pix; otherwise it is
    the frame as captured. The pose stays in the captured frame's pixels either way.
    """
    out = []
    for s in iter_session_samples(settings, session, cameras=cameras):
        frame = letterbox_image(s.frame, (s.posemap.shape[1], s.posemap.shape[0])) if letterbox else s.frame
        out.append((frame, s.posemap, s.pose))
    return out
