"""A session's manifest (built from its shards' index records, so a restart rebuilds the same one)
and its preview picture."""

from __future__ import annotations

import json
from collections import Counter

import cv2
import numpy as np

from dataset.people import session_people
from dataset.representation import DEFAULT_REPRESENTATION, check_representation, needs_parts
from schemas import SessionEvent
from vision.posemap import DEFAULT_STYLE, draw_pose_overlay, letterbox_image

MANIFEST_VERSION = 1
MAX_LISTED_REJECTIONS = 1000
PREVIEW_SAMPLES = 6
PREVIEW_COLUMNS = 2  # (frame with pose | pose map) pairs per row
# What a session's generator may read besides the pose map (trainer.warp_framing builds each), as
# the manifest records it.
CONDITIONINGS = ("pose", "warp", "warp-reliable")
# What the manifest keeps of the guided capture's last Coverage (console.guide).
COVERAGE_FIELDS = ("coverage", "target", "max_seconds", "elapsed_s", "reason", "facings", "dance_facings", "cameras")


def build_manifest(
    *,
    session: str,
    status: str,
    reason: str,
    closed_by: str,
    start: SessionEvent | None,
    end: SessionEvent | None,
    records: list[dict],
    resolution: int,
    shard_size: int,
    min_samples: int,
    preview_key: str | None,
    representation: str = DEFAULT_REPRESENTATION,
    consent: bool = False,
    conditioning: str | None = None,
    waited: dict[str, dict[str, int]] | None = None,
    last_seq: dict[str, int] | None = None,
    coverage: dict | None = None,
) -> dict:
    """The manifest of a session from the index records of all its shards.

    representation: what the pose maps show (dataset.representation); the trainer
    renders the reference dance in the same one. consent: the visitor's, from the start event
    (without it the trainer keeps only the video once it is made). conditioning: what the
    session's generator should read besides the pose map (trainer.warp_framing), when the
    assembler was told; the trainer follows it unless told otherwise itself. last_seq: each
    camera's last frame from its end marker. waited: on a give-up (closed_by "end-timeout"), per
    camera the announced last frame, how far frames and poses got, and what is missing by cause
    (no_pose, not_received); not_received frames count as rejected frames too. coverage: the guided
    capture's last Coverage (sessions/<s>/coverage.json), when it was written before closing.
    """
    check_representation(representation)
    members = {
        "image": "<key>.jpg (as captured; .png if the camera sent PNG)",
        "posemap": "<key>.posemap.png",
        "pose": "<key>.pose.json",
    }
    if needs_parts(representation):
        members["posemap"] += f" (the {representation} map)"
        members["parts"] = "<key>.parts.png (part ids 0..24 at the frame's size, 8-bit grey)"
    records = sorted(records, key=lambda r: (r["camera"], r["index"]))
    per_camera: dict[str, dict] = {}
    rejected: Counter = Counter()
    listed = []
    backends: set[str] = set()
    imputed = keypoints = total_bytes = 0
    per_slot: Counter = Counter()
    left_out: dict[str, tuple[int, int]] = {}  # camera -> (newest shard, people left out so far)
    for r in records:
        per_slot.update({int(k): n for k, n in r.get("people", {}).items()})
        if "slots" in r and r["index"] >= left_out.get(r["camera"], (-1, 0))[0]:
            left_out[r["camera"]] = (r["index"], int(r["slots"].get("left_out", 0)))
        cam = per_camera.setdefault(r["camera"], {"samples": 0, "shards": 0, "rejected": Counter()})
        cam["samples"] += len(r["samples"])
        cam["shards"] += r["shard_key"] is not None
        for seq, why in r["rejected"].items():
            cam["rejected"][why] += 1
            rejected[why] += 1
            listed.append({"camera": r["camera"], "seq": int(seq), "reason": why})
        imputed += r["imputed"]
        keypoints += r["keypoints"]
        total_bytes += r["bytes"]
        backends.update(r["backends"])
    for camera, w in (waited or {}).items():
        if w.get("not_received"):
            cam = per_camera.setdefault(camera, {"samples": 0, "shards": 0, "rejected": Counter()})
            cam["rejected"]["not_received"] += w["not_received"]
            rejected["not_received"] += w["not_received"]
    listed.sort(key=lambda x: (x["camera"], x["seq"]))
    samples = sum(c["samples"] for c in per_camera.values())
    if per_slot:  # shards from before a second person appeared hold the main person alone, in slot 0
        per_slot[0] += sum(len(r["samples"]) for r in records if "people" not in r)
    people: dict[str, object] = {
        # How many visitors (dataset.people): 1 unless several people were drawn in enough samples.
        "people": session_people(dict(per_slot), samples),
    }
    if per_slot:
        people["people_samples"] = {str(k): n for k, n in sorted(per_slot.items())}
        people["people_left_out"] = sum(n for _, n in left_out.values())
    manifest = {
        **people,
        "manifest_version": MANIFEST_VERSION,
        "session": session,
        "status": status,
        "reason": reason,
        "closed_by": closed_by,
        "consent": consent,
        "reference": start.reference if start else None,
        "announced_cameras": list(start.cameras) if start else [],
        "cameras": sorted(c for c, v in per_camera.items() if v["samples"]),
        "started_wall_time": start.wall_time if start else None,
        "ended_wall_time": end.wall_time if end else None,
        "format": "webdataset",
        "members": members,
        "representation": representation,
        # The stored maps' style (vision.posemap STYLES). The person-centred trainer draws its own
        # maps from the keypoints, in the style its checkpoints record.
        "posemap_style": DEFAULT_STYLE,
        "resolution": resolution,
        "shard_size": shard_size,
        "min_samples": min_samples,
        "pose_backends": sorted(backends),
        "samples": samples,
        "frames": samples + sum(rejected.values()),
        "per_camera": {
            c: {"samples": v["samples"], "shards": v["shards"], "rejected": dict(sorted(v["rejected"].items()))}
            for c, v in sorted(per_camera.items())
        },
        "rejected": dict(sorted(rejected.items())),
        "rejected_frames": listed[:MAX_LISTED_REJECTIONS],
        "rejected_frames_truncated": len(listed) > MAX_LISTED_REJECTIONS,
        "imputed_share": round(imputed / keypoints, 6) if keypoints else 0.0,
        "shards": sorted(r["shard_key"] for r in records if r["shard_key"]),
        "bytes": total_bytes,
        "preview_key": preview_key,
    }
    if conditioning is not None:
        manifest["conditioning"] = conditioning
    if last_seq:  # named only when a camera announced its end: older manifests keep their bytes
        manifest["last_seq"] = dict(sorted(last_seq.items()))
    if waited:
        manifest["gave_up_waiting"] = waited
    manifest["coverage"] = None if coverage is None else {k: coverage.get(k) for k in COVERAGE_FIELDS}
    return manifest


def manifest_bytes(manifest: dict) -> bytes:
    return json.dumps(manifest, sort_keys=True, indent=1).encode()


def failure_reason(samples: int, min_samples: int, rejected: dict[str, int]) -> str:
    why = ", ".join(f"{n} {r.replace('_', ' ')}" for r, n in sorted(rejected.items(), key=lambda x: -x[1]))
    return f"only {samples} usable frames; at least {min_samples} are needed" + (f" (rejected: {why})" if why else "")


def preview_choice(records: list[dict], k: int = PREVIEW_SAMPLES) -> list[tuple[str, str, int]]:
    """(shard_key, camera, seq) of up to k samples spread evenly over the session."""
    every = sorted((seq, r["camera"], r["shard_key"]) for r in records for seq in r["samples"])
    if not every:
        return []
    picks = sorted(set(np.linspace(0, len(every) - 1, min(k, len(every))).round().astype(int).tolist()))
    return [(every[i][2], every[i][1], every[i][0]) for i in picks]


def render_preview(samples: list[tuple[np.ndarray, np.ndarray, np.ndarray]], resolution: int) -> bytes:
    """JPEG grid of (frame with pose overlay | pose map) pairs; samples are (frame, posemap, pose).

    The pose map is the sample's input map, whatever its representation."""
    if not samples:
        raise ValueError("a preview needs at least one sample")
    r, pad = resolution, 4
    rows = -(-len(samples) // PREVIEW_COLUMNS)
    width = PREVIEW_COLUMNS * (2 * r + pad) + pad
    grid = np.full((rows * (r + pad) + pad, width, 3), 24, np.uint8)
    for i, (frame, posemap, pose) in enumerate(samples):
        y = pad + (i // PREVIEW_COLUMNS) * (r + pad)
        x = pad + (i % PREVIEW_COLUMNS) * (2 * r + pad)
        overlay = letterbox_image(draw_pose_overlay(frame, pose, alpha=0.85), r)
        grid[y : y + r, x : x + r] = overlay
        grid[y : y + r, x + r : x + 2 * r] = cv2.resize(posemap, (r, r)) if posemap.shape[:2] != (r, r) else posemap
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 88])
    if not ok:
        raise RuntimeError("JPEG encoding of the preview failed")
    return buf.tobytes()
