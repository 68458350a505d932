"""Reference dances: poses extracted ahead of time from a video, smoothed with a centered filter,
checked for glitches, correctable by hand, stored in versions under ``references/<name>/``.

Each version ``v0001/``, ``v0002/`` ... holds:
    poses.npz      poses [T, 17, 3] float32 (source pixels), flags [T, 17] uint8, times [T] float64
                   seconds, src_size [2] (width, height), usable [T] bool
    raw.npz        the pose estimator's output, unchanged from version to version
    glitches.csv   vision.smoothing's glitch report of the (corrected) raw estimates
    preview.mp4    per frame: the video with the pose drawn over it | the pose map
    meta.json      where it came from and how it was made
    corrections.csv  (versions made by `correct`) every manual edit so far, applied to raw.npz
    parts.npz      (added with a parts representation) part_ids [T, h, w] uint8: the main person's
                   body parts per frame (vision.parts), at most PARTS_MAX_SIDE on the longer
                   side (source pixels times w / width); the same in every version
``latest.json`` names the current version; it is written last, so readers never see half a version.
The original video is kept once as ``source.<ext>`` (previews of later versions are drawn from it).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from dataset.representation import (
    DEFAULT_REPRESENTATION,
    LazySegmenter,
    check_representation,
    main_person_parts,
    needs_parts,
)
from infra.objectstore import ObjectStore
from infra.settings import Settings
from schemas import layout
from schemas.ids import validate_id
from schemas.keypoints import IMPUTED, OBSERVED, SMOOTHED, empty_keypoints
from trainer.references.corrections import Corrections, apply_to_raw, merge, parse_corrections, to_csv
from trainer.references.dancers import DANCERS_FILE, read_dancers
from trainer.references.video import encode_mp4, probe, read_frames
from vision.partsmap import render_representation
from vision.posemap import draw_pose_overlay, letterbox_image, render_pose_map
from vision.smoothing import SmoothingParams, detect_glitches, interpolate_gaps, render_report, smooth_sequence
from vision.smoothing.impute import confident_mask, person_present

log = logging.getLogger(__name__)

MODES = ("savgol", "median")
PREVIEW_RESOLUTION = 256
PARTS_FILE = "parts.npz"
# BodyPix sees a 512 x 512 picture and decides parts on a 16 px grid: finer part maps hold no
# more detail, and a long 1080p reference would need gigabytes.
PARTS_MAX_SIDE = 512


@dataclass(frozen=True)
class Reference:
    name: str
    version: int
    poses: np.ndarray  # [T, 17, 3] float32, source pixels
    flags: np.ndarray  # [T, 17] uint8
    times: np.ndarray  # [T] float64 seconds
    src_size: tuple[int, int]
    usable: np.ndarray  # [T] bool
    meta: dict
    dancers: np.ndarray | None = None  # [T, D, 17, 3] every dancer of a multi-person reference (dancers.py)


@dataclass(frozen=True)
class Smoothed:
    poses: np.ndarray
    flags: np.ndarray
    usable: np.ndarray
    glitches_csv: str
    glitches: int
    filled: int  # keypoints placed by interpolation across frames without a usable estimate


# --- the pipeline ------------------------------------------------------------------------------
def estimate_video(
    path: str | Path,
    estimator,
    key: str = "reference",
    progress: Callable[[int], None] | None = None,
    on_frame: Callable[[np.ndarray, np.ndarray], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Raw estimates of the main (most confident) person per frame: (poses [T, 17, 3], times [T],
    (width, height)). Frames without a person get score 0 everywhere. on_frame(rgb, pose) sees
    each frame with its estimate (for work on the same decoded frames, such as part maps)."""
    poses, times, size = [], [], None
    for rgb, t in read_frames(path):
        size = size or (rgb.shape[1], rgb.shape[0])
        people = estimator.estimate(rgb, key=key)
        poses.append(people[0].keypoints if people else empty_keypoints())
        times.append(t)
        if on_frame:
            on_frame(rgb, poses[-1])
        if progress:
            progress(1)
    if not poses:
        raise ValueError(f"{path} has no decodable frames")
    return np.asarray(poses, np.float32), np.asarray(times, np.float64), size


def smooth_reference(
    raw: np.ndarray,
    times: np.ndarray,
    mode: str = "savgol",
    params: SmoothingParams = SmoothingParams(),
    corrections: Corrections | None = None,
) -> Smoothed:
    """Centered smoothing of a whole reference (vision.smoothing), its glitch report, exact
    manual corrections, and short gaps (frames without a person, dropped frames) filled in time."""
    if mode not in MODES:
        raise ValueError(f"smoothing mode must be one of {MODES}, got {mode!r}")
    p = params
    if corrections is not None:
        raw = apply_to_raw(raw, corrections)
    conf = confident_mask(raw, p.confidence_threshold)
    conf &= person_present(conf, p.min_keypoints, p.min_torso)[:, None]
    _, rows = detect_glitches(raw, times, p, confident=conf)
    poses, flags = smooth_sequence(raw, times, mode=mode, params=p)
    if corrections is not None:
        for (frame, k), (x, y) in corrections.points.items():
            poses[frame, k] = (x, y, 1.0)
            flags[frame, k] = OBSERVED
    have = (flags & (OBSERVED | IMPUTED)) != 0
    xy, filled = interpolate_gaps(poses[..., :2], have, times, p.max_gap)
    filled &= ~have
    poses[filled, :2] = xy[filled]
    poses[filled, 2] = p.confidence_threshold
    flags[filled] |= IMPUTED | SMOOTHED
    usable = ((flags & (OBSERVED | IMPUTED)) != 0).sum(axis=1) >= p.min_keypoints
    return Smoothed(
        poses.astype(np.float32),
        flags.astype(np.uint8),
        usable,
        render_report(rows, "csv"),
        len(rows),
        int(filled.sum()),
    )


def parts_size(src_size: tuple[int, int], max_side: int = PARTS_MAX_SIDE) -> tuple[int, int]:
    """(width, height) at which a reference's part maps are stored."""
    w, h = src_size
    s = min(1.0, max_side / max(w, h))
    return max(1, round(w * s)), max(1, round(h * s))


def parts_at(ids: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A part-id map resized (nearest-neighbour: a blend of two ids is no id) to size (w, h)."""
    if (ids.shape[1], ids.shape[0]) == tuple(size):
        return ids
    return cv2.resize(ids, tuple(size), interpolation=cv2.INTER_NEAREST)


def preview_frames(
    path: str | Path,
    poses: np.ndarray,
    src_size: tuple[int, int],
    resolution: int = PREVIEW_RESOLUTION,
    *,
    representation: str = DEFAULT_REPRESENTATION,
    parts: np.ndarray | None = None,
) -> Iterator[np.ndarray]:
    """Per frame: the video with the pose over it | the generator's input in the representation
    (the pose map by default; parts: the stored part maps), each resolution x resolution."""
    if needs_parts(representation) and parts is None:
        raise ValueError(f"a {representation!r} preview needs the reference's part maps")
    for i, (rgb, _t) in enumerate(read_frames(path)):
        if i >= len(poses):
            break
        left = letterbox_image(draw_pose_overlay(rgb, poses[i], alpha=0.85), resolution)
        if needs_parts(representation):
            right = render_representation(
                representation,
                poses=poses[i],
                src_size=src_size,
                out_size=resolution,
                part_ids=parts_at(parts[i], src_size),
            )
        else:
            right = render_pose_map(poses[i], src_size, resolution)
        yield np.hstack([left, right])


# --- storage -----------------------------------------------------------------------------------
def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def _json(data: dict) -> bytes:
    return json.dumps(data, indent=1, sort_keys=True).encode()


def latest_version(settings: Settings, name: str, store: ObjectStore | None = None) -> int | None:
    """The newest version of reference `name`, None for no such reference."""
    return _latest(store or ObjectStore(settings), name)


def _latest(store: ObjectStore, name: str) -> int | None:
    data = store.get(layout.reference_latest_key(name))
    return None if data is None else int(json.loads(data)["version"])


def _store_version(
    store: ObjectStore,
    name: str,
    version: int,
    *,
    raw: np.ndarray,
    times: np.ndarray,
    src_size: tuple[int, int],
    smoothed: Smoothed,
    preview: bytes,
    meta: dict,
    corrections_text: str | None,
    parts_npz: bytes | None = None,
    dancers_npz: bytes | None = None,
) -> dict:
    files = {
        "poses.npz": _npz(
            poses=smoothed.poses,
            flags=smoothed.flags,
            times=times,
            src_size=np.asarray(src_size, np.int32),
            usable=smoothed.usable,
        ),
        "raw.npz": _npz(poses=raw, times=times, src_size=np.asarray(src_size, np.int32)),
        "glitches.csv": smoothed.glitches_csv.encode(),
        "preview.mp4": preview,
    }
    if corrections_text is not None:
        files["corrections.csv"] = corrections_text.encode()
    if parts_npz is not None:
        files[PARTS_FILE] = parts_npz
    if dancers_npz is not None:
        files[DANCERS_FILE] = dancers_npz
    meta = {
        **meta,
        "name": name,
        "version": version,
        "files": {f: layout.reference_file_key(name, version, f) for f in [*files, "meta.json"]},
    }
    files["meta.json"] = _json(meta)
    types = {"npz": "application/octet-stream", "csv": "text/csv", "mp4": "video/mp4", "json": "application/json"}
    for filename, data in files.items():
        store.put(layout.reference_file_key(name, version, filename), data, types[filename.rsplit(".", 1)[1]])
    store.put(
        layout.reference_latest_key(name),
        _json({"name": name, "version": version, "prefix": layout.reference_version_prefix(name, version)}),
        "application/json",
    )
    return meta


def _summary(smoothed: Smoothed, times: np.ndarray, src_size: tuple[int, int]) -> dict:
    n = len(times)
    return {
        "frames": n,
        "fps": round((n - 1) / (times[-1] - times[0]), 3) if n > 1 and times[-1] > times[0] else None,
        "duration_s": round(float(times[-1] - times[0]), 3) if n else 0.0,
        "src_size": list(src_size),
        "usable_frames": int(smoothed.usable.sum()),
        "imputed_share": round(float(((smoothed.flags & IMPUTED) != 0).mean()), 6),
        "filled_keypoints": smoothed.filled,
        "glitches": smoothed.glitches,
    }


def add_reference(
    settings: Settings,
    video: str | Path,
    name: str,
    *,
    backend: str | None = None,
    mode: str = "savgol",
    params: SmoothingParams = SmoothingParams(),
    resolution: int = PREVIEW_RESOLUTION,
    estimator=None,
    replace: bool = False,
    progress: Callable[[int], None] | None = None,
    representation: str = DEFAULT_REPRESENTATION,
    segmenter=None,
    people: int = 1,
) -> dict:
    """Extract, smooth and store a reference dance from a video file; returns its meta.json.

    representation "parts" or "pose+parts" also segments every frame (segmenter: anything with
    segment(rgb) -> vision.parts.PartsResult; default the settings' models) and stores the
    main person's part maps (parts.npz), which sessions assembled in those representations need.
    people > 1 keeps up to that many dancers, the ones who dance (trainer.references.dancers; the
    PoseNet backend unless another is named), dancer 0 (the leftmost at the start) in poses.npz.
    """
    validate_id(name, "reference name")
    check_representation(representation)
    video = Path(video)
    if not video.is_file():
        raise FileNotFoundError(f"video {video} does not exist")
    if mode not in MODES:
        raise ValueError(f"smoothing mode must be one of {MODES}, got {mode!r}")
    info = probe(video)
    store = ObjectStore(settings)
    current = _latest(store, name)
    if current is not None and not replace:
        raise FileExistsError(f"reference {name} exists (version {current}); correct it, or add with replace")
    if people > 1 and needs_parts(representation):
        raise ValueError("part maps keep one dancer: add a multi-person reference in the 'pose' representation")
    if estimator is None:
        from vision.pose import load_estimator

        chosen = backend or ("posenet" if people > 1 else settings.pose_backend)
        options = {"max_detections": max(people, 2)} if chosen == "posenet" else {}
        estimator = load_estimator(chosen, settings.models_dir, num_threads=settings.pose_threads, **options)
    parts: list[np.ndarray] | None = None
    on_frame = None
    if needs_parts(representation):
        segmenter = segmenter or LazySegmenter(settings)
        parts = []

        def on_frame(rgb: np.ndarray, pose: np.ndarray) -> None:
            ids = main_person_parts(segmenter.segment(rgb), pose)
            parts.append(parts_at(ids, parts_size((rgb.shape[1], rgb.shape[0]))))

    dancers_file, dancers_info = None, None
    if people > 1:
        from trainer.references.dancers import dancers_npz, smooth_dancers, track_dancers

        raw_all, times, src_size, dancers_info = track_dancers(video, estimator, people, key=name, progress=progress)
        raw = raw_all[:, 0]
        dancer_poses, dancer_flags = smooth_dancers(raw_all, times, lambda r, t: smooth_reference(r, t, mode, params))
        dancers_file = dancers_npz(dancer_poses, dancer_flags)
    else:
        raw, times, src_size = estimate_video(video, estimator, key=name, progress=progress, on_frame=on_frame)
    smoothed = smooth_reference(raw, times, mode, params)
    parts_array = np.stack(parts) if parts is not None else None
    preview = encode_mp4(
        preview_frames(video, smoothed.poses, src_size, resolution, representation=representation, parts=parts_array),
        info.fps,
    )
    data = video.read_bytes()
    source_key = layout.reference_source_key(name, video.suffix or ".mp4")
    store.put(source_key, data, "video/mp4")
    meta = {
        "created_wall_time": time.time(),
        "based_on": None,
        "source": {
            "filename": video.name,
            "sha256": hashlib.sha256(data).hexdigest(),
            "key": source_key,
            "bytes": len(data),
        },
        "backend": getattr(estimator, "name", str(backend)),
        "device": getattr(estimator, "device", "cpu"),
        "smoothing": {"mode": mode, "params": params.to_dict()},
        "corrections": 0,
        "dropped_frames": [],
        "corrected_keypoints": 0,
        "preview_resolution": resolution,
        "representation": representation,
        "dancers": dancers_info,
        "parts": None
        if parts_array is None
        else {
            "size": [int(parts_array.shape[2]), int(parts_array.shape[1])],
            "segmenter": getattr(segmenter, "name", type(segmenter).__name__),
            "frames_with_parts": int(parts_array.reshape(len(parts_array), -1).any(axis=1).sum()),
        },
        **_summary(smoothed, times, src_size),
    }
    version = (current or 0) + 1
    meta = _store_version(
        store,
        name,
        version,
        raw=raw,
        times=times,
        src_size=src_size,
        smoothed=smoothed,
        preview=preview,
        meta=meta,
        corrections_text=None,
        parts_npz=None if parts_array is None else _npz(part_ids=parts_array),
        dancers_npz=dancers_file,
    )
    log.info("reference %s v%d: %d frames, %d glitches", name, version, meta["frames"], meta["glitches"])
    return meta


def _get(store: ObjectStore, key: str) -> bytes:
    data = store.get(key)
    if data is None:
        raise FileNotFoundError(f"{key} is missing from bucket {store.bucket}")
    return data


def correct_reference(
    settings: Settings,
    name: str,
    corrections_file: str | Path,
    *,
    mode: str | None = None,
    params: SmoothingParams | None = None,
    resolution: int | None = None,
) -> dict:
    """Apply a corrections file to the latest version's raw estimates, re-smooth, store a new version."""
    store = ObjectStore(settings)
    current = _latest(store, name)
    if current is None:
        raise FileNotFoundError(f"no reference named {name}")
    meta = json.loads(_get(store, layout.reference_file_key(name, current, "meta.json")))
    with np.load(io.BytesIO(_get(store, layout.reference_file_key(name, current, "raw.npz")))) as npz:
        raw, times, src_size = npz["poses"], npz["times"], tuple(int(v) for v in npz["src_size"])
    path = Path(corrections_file)
    corrections = parse_corrections(path.read_text(), len(raw), src_size, source=path.name)
    if "corrections.csv" in meta["files"]:
        earlier = _get(store, layout.reference_file_key(name, current, "corrections.csv")).decode()
        corrections = merge(
            parse_corrections(earlier, len(raw), src_size, source=f"{name} v{current} corrections"), corrections
        )
    mode = mode or meta["smoothing"]["mode"]
    params = params or SmoothingParams(**meta["smoothing"]["params"])
    resolution = resolution or meta.get("preview_resolution", PREVIEW_RESOLUTION)
    smoothed = smooth_reference(raw, times, mode, params, corrections)
    source = meta["source"]
    # Part maps come from the frames, which corrections do not change: carried over as they are.
    parts_npz = (
        _get(store, layout.reference_file_key(name, current, PARTS_FILE)) if PARTS_FILE in meta["files"] else None
    )
    representation = meta.get("representation", DEFAULT_REPRESENTATION)
    if parts_npz is None and needs_parts(representation):
        raise FileNotFoundError(f"reference {name} v{current} is a {representation} reference without {PARTS_FILE}")
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / ("source." + source["key"].rsplit(".", 1)[1])
        video.write_bytes(_get(store, source["key"]))
        parts = _parts_from_npz(parts_npz) if parts_npz is not None else None
        preview = encode_mp4(
            preview_frames(video, smoothed.poses, src_size, resolution, representation=representation, parts=parts),
            probe(video).fps,
        )
    new_meta = {
        **meta,
        "created_wall_time": time.time(),
        "based_on": current,
        "backend": meta["backend"],
        "smoothing": {"mode": mode, "params": params.to_dict()},
        "corrections": len(corrections),
        "corrected_keypoints": len(corrections.points),
        "dropped_frames": sorted(corrections.drops),
        "preview_resolution": resolution,
        **_summary(smoothed, times, src_size),
    }
    version = current + 1
    new_meta = _store_version(
        store,
        name,
        version,
        raw=raw,
        times=times,
        src_size=src_size,
        smoothed=smoothed,
        preview=preview,
        meta=new_meta,
        corrections_text=to_csv(corrections),
        parts_npz=parts_npz,
        # Corrections edit dancer 0's poses.npz; the other dancers are carried over as they were.
        dancers_npz=_get(store, meta["files"][DANCERS_FILE]) if DANCERS_FILE in meta["files"] else None,
    )
    log.info("reference %s v%d: %d corrections in all, on top of v%d", name, version, len(corrections), current)
    return new_meta


def load_reference_version(settings: Settings, name: str, version: int | None = None) -> Reference:
    """Reference `name` at `version` (None: its latest): read_reference through a client of settings."""
    return read_reference(ObjectStore(settings), name, version)


def read_reference(store: ObjectStore, name: str, version: int | None = None) -> Reference:
    """Reference `name` at `version` (None: its latest), read through `store`; FileNotFoundError
    for no such reference."""
    version = version or _latest(store, name)
    if version is None:
        raise FileNotFoundError(f"no reference named {name}")
    meta = json.loads(_get(store, layout.reference_file_key(name, version, "meta.json")))
    with np.load(io.BytesIO(_get(store, layout.reference_file_key(name, version, "poses.npz")))) as npz:
        return Reference(
            name,
            version,
            npz["poses"],
            npz["flags"],
            npz["times"],
            (int(npz["src_size"][0]), int(npz["src_size"][1])),
            npz["usable"],
            meta,
            read_dancers(_get(store, meta["files"][DANCERS_FILE])) if DANCERS_FILE in meta["files"] else None,
        )


def _parts_from_npz(data: bytes) -> np.ndarray:
    with np.load(io.BytesIO(data)) as npz:
        return npz["part_ids"]


def load_reference_parts(settings: Settings, ref: Reference) -> np.ndarray:
    """read_reference_parts through a client of settings."""
    return read_reference_parts(ObjectStore(settings), ref)


def read_reference_parts(store: ObjectStore, ref: Reference) -> np.ndarray:
    """The reference's part maps: uint8 [T, h, w] (0 background, 1..24 parts), one per pose.

    Videos larger than PARTS_MAX_SIDE have them stored smaller: a map's pixel (x, y) is the
    source's (x * width / w, y * height / h). Raises FileNotFoundError for a reference added without them.
    """
    if PARTS_FILE not in ref.meta.get("files", {}):
        raise FileNotFoundError(
            f"reference {ref.name} v{ref.version} has no part maps: add it again with "
            "`booth reference add --representation parts` (or pose+parts)"
        )
    key = layout.reference_file_key(ref.name, ref.version, PARTS_FILE)
    parts = _parts_from_npz(_get(store, key))
    if parts.ndim != 3 or len(parts) != len(ref.poses):
        raise ValueError(
            f"reference {ref.name} v{ref.version}: {PARTS_FILE} holds {parts.shape} for {len(ref.poses)} poses"
        )
    return parts


def load_reference(
    settings: Settings, name: str, version: int | None = None
) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """(poses [T, 17, 3] in source pixels, times [T] seconds, (width, height)) of a reference."""
    ref = load_reference_version(settings, name, version)
    return ref.poses, ref.times, ref.src_size


def _generator_summary(store: ObjectStore, name: str, version: int) -> str:
    """What `booth reference list` says of the version's dancer generator."""
    data = store.get(layout.reference_file_key(name, version, "generator.json"))
    if data is None:
        return "none"
    info = json.loads(data)
    ssim = info.get("box_ssim")
    return f"{info['size']}px, {info['steps']} steps" + (f", box SSIM {ssim:.2f}" if ssim is not None else "")


def list_references(settings: Settings) -> list[dict]:
    store = ObjectStore(settings)
    rows = []
    for key in store.list(layout.REFERENCES_PREFIX):
        if not key.endswith("/latest.json") or key.count("/") != 2:
            continue
        name = key.split("/")[1]
        version = _latest(store, name)
        meta = json.loads(_get(store, layout.reference_file_key(name, version, "meta.json")))
        rows.append(
            {
                "name": name,
                "version": version,
                "frames": meta["frames"],
                "fps": meta["fps"],
                "duration_s": meta["duration_s"],
                "backend": meta["backend"],
                "glitches": meta["glitches"],
                "usable_frames": meta["usable_frames"],
                "corrections": meta["corrections"],
                "generator": _generator_summary(store, name, version),
            }
        )
    return rows
