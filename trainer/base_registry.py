"""The base models in the store: their versions, the promoted one per configuration, and the pick
of a session's warm start (`pick_base`). Building one is trainer.base; a session's job reads only
this, so the two never import each other.
"""

from __future__ import annotations

import json
import logging
import re
import time

from infra.objectstore import ObjectStore
from schemas import layout
from trainer.checkpoints import StoreCheckpoints

log = logging.getLogger(__name__)

_VERSION = re.compile(r"v(\d{4})/")


SHARED_INPUTS = {"framing": "whole", "posemap_style": "stick", "temporal": False, "conditioning": "pose"}


def config_label(net: dict, data: dict) -> str:
    """A configuration in words, e.g. 'person-facing-256' (with '-temporal' or '-warp' where they
    apply): what a base and a session must share."""
    label = f"{data.get('framing', 'whole')}-{data.get('posemap_style', 'stick')}-{net.get('size')}"
    if data.get("temporal"):
        label += "-temporal"
    if data.get("conditioning", "pose") != "pose":
        label += f"-{data['conditioning']}"
    return label


def _matches(manifest: dict, net: dict, data: dict) -> bool:
    learnt = {**SHARED_INPUTS, **manifest.get("data", {})}
    wanted = {**SHARED_INPUTS, **{k: data[k] for k in SHARED_INPUTS if k in data}}
    return manifest.get("net") == net and all(learnt[k] == wanted[k] for k in SHARED_INPUTS)


# --- the store ---------------------------------------------------------------------------------------
def versions(store: ObjectStore) -> list[int]:
    """Every base version with anything stored (finished or not), oldest first."""
    names = (k[len(layout.BASE_PREFIX) :] for k in store.list(layout.BASE_PREFIX))
    return sorted({int(m.group(1)) for name in names if (m := _VERSION.match(name))})


def read_manifest(store: ObjectStore, version: int) -> dict | None:
    raw = store.get(layout.base_manifest_key(version))
    return json.loads(raw) if raw else None


def promoted(store: ObjectStore) -> dict[str, int]:
    """configuration label -> the promoted version of it."""
    raw = store.get(layout.BASE_PROMOTED_KEY)
    return {str(k): int(v) for k, v in json.loads(raw).get("promoted", {}).items()} if raw else {}


def list_bases(store: ObjectStore) -> list[dict]:
    """One row per version: its manifest (or {"version", "state": "unfinished"}) and whether promoted."""
    chosen = set(promoted(store).values())
    rows = []
    for v in versions(store):
        m = read_manifest(store, v)
        rows.append({**(m or {"version": v, "state": "unfinished"}), "promoted": v in chosen})
    return rows


def promote(store: ObjectStore, version: int) -> dict:
    """Make a finished version the one its configuration warm-starts from; returns its manifest."""
    manifest = read_manifest(store, version)
    if manifest is None:
        raise ValueError(f"base v{version:04d} has no manifest: it does not exist or its build did not finish")
    table = promoted(store)
    table[manifest["label"]] = version
    body = {"promoted": table, "wall_time": time.time()}
    store.put(layout.BASE_PROMOTED_KEY, json.dumps(body, indent=2).encode(), "application/json")
    return manifest


def pick_base(store: ObjectStore, net, data: dict) -> tuple[bytes | None, str | None, str]:
    """(checkpoint bytes, name, why) of the promoted base to warm-start from, or (None, None, why not).

    The base must have the session's architecture (net: NetConfig) and have learnt from the same
    inputs (data: framing, pose-map style, size as TrainConfig.data records). A base that cannot
    be read or does not fit is never fatal: the session trains from scratch and `why` says so."""
    from trainer.pix2pix import checkpoint as ckpt
    from trainer.pix2pix.networks import NetConfig

    want = config_label(net.to_dict(), data)
    try:
        table = promoted(store)
    except (ValueError, TypeError, AttributeError) as exc:
        return None, None, f"the promoted-base record {layout.BASE_PROMOTED_KEY} is unreadable ({exc})"
    if not table:
        return None, None, "no promoted base model (booth base build, then booth base promote)"
    version = table.get(want)
    if version is None:
        return None, None, f"no promoted base model for {want} (promoted: {', '.join(sorted(table))})"
    name = f"base v{version:04d}"
    try:
        manifest = read_manifest(store, version)
        if manifest is None:
            raise ValueError("its manifest is missing")
        if not _matches(manifest, net.to_dict(), data):
            return None, None, f"{name} ({manifest.get('label')}) has another architecture or inputs than this session"
        raw = StoreCheckpoints(store, layout.base_version_prefix(version)).load(manifest["checkpoint"])
        if raw is None:
            raise ValueError(f"its checkpoint {manifest['checkpoint']} is missing")
        if NetConfig.from_dict(ckpt.from_bytes(raw)["net"]) != net:
            raise ValueError("its checkpoint's network is not the one its manifest names")
    except Exception as exc:  # noqa: BLE001 - an unreadable base costs a warm start, never the session
        return None, None, f"{name} is unreadable ({type(exc).__name__}: {exc})"
    q = manifest.get("quality", {}).get("box_psnr")
    said = f", held-out person-box PSNR {q:.2f} dB" if isinstance(q, (int, float)) else ""
    return raw, name, f"warm start from {name} ({want}, {len(manifest.get('sessions', []))} sessions{said})"


# --- building -------------------------------------------------------------------------------------


def export_base(store: ObjectStore, version: int) -> tuple[dict, bytes]:
    """(manifest, checkpoint bytes) of a finished version, e.g. to keep it outside the store."""
    manifest = read_manifest(store, version)
    if manifest is None:
        raise ValueError(f"base v{version:04d} has no manifest")
    raw = store.get(layout.base_version_prefix(version) + manifest["checkpoint"])
    if raw is None:
        raise ValueError(f"base v{version:04d}: its checkpoint {manifest['checkpoint']} is missing")
    return manifest, raw


def import_base(store: ObjectStore, manifest: dict, checkpoint: bytes) -> int:
    """Store an exported base as the next version (its manifest says where it came from); returns it."""
    version = (versions(store) or [0])[-1] + 1
    StoreCheckpoints(store, layout.base_version_prefix(version)).save(manifest["checkpoint"], checkpoint)
    body = {**manifest, "version": version, "imported_from": manifest.get("version")}
    store.put(layout.base_manifest_key(version), json.dumps(body, indent=2).encode(), "application/json")
    return version
