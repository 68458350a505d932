"""Base models of a booth (`booth base build|list|promote|show`): a generator trained on several
earlier sessions of one scene (different people), which fine-tuning warm-starts from.

Each build is a new version under schemas.layout.base_version_prefix: its training state and,
written last, manifest.json (network and input configuration, representation, sessions used,
steps, and its quality on those sessions' held-out frames); a version without a manifest is an
unfinished build and is never used. One version is promoted per configuration
(layout.BASE_PROMOTED_KEY); a session warm-starts from the promoted base whose configuration is
its own (`pick_base`) and otherwise trains from scratch, saying why: a base never blocks a session.
A base learns only from sessions whose visitors agreed to their keeping.
"""

from __future__ import annotations

import bisect
import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from itertools import accumulate

import numpy as np

from infra.objectstore import ObjectStore
from infra.settings import Settings
from schemas import layout
from trainer.checkpoints import StoreCheckpoints

log = logging.getLogger(__name__)

_VERSION = re.compile(r"v(\d{4})/")


class ConcatSamples(Sequence):
    """Several sessions' training samples read as one sequence (each built on demand by its own
    session's framing: its crop track, plate and masks)."""

    def __init__(self, parts: Sequence[Sequence]) -> None:
        self.parts = [p for p in parts if len(p)]
        self.ends = list(accumulate(len(p) for p in self.parts))

    def __len__(self) -> int:
        return self.ends[-1] if self.ends else 0

    def __getitem__(self, i):  # type: ignore[override]
        if not 0 <= i < len(self):
            raise IndexError(i)
        k = bisect.bisect_right(self.ends, i)
        return self.parts[k][i - (self.ends[k - 1] if k else 0)]


# What a base and a session must have learnt alike, with the value a record without it means.
# (The face residual is not among them: a face session takes a base's face networks when it has
# them, else starts them fresh.)
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
def build_base(
    settings: Settings,
    sessions: list[str],
    budget_s: float,
    config=None,
    max_steps: int | None = None,
    echo: Callable[[str], None] = lambda _m: None,
) -> dict:
    """Train a new base version on the sessions (framing, masks and plates as the trainer makes
    them for each, trainer.job), evaluate it on each session's held-out block; returns its
    manifest. config: a TrainerConfig (framing, crop size, pose-map style, device, ...)."""
    from trainer.assembler import read_manifest as read_session
    from trainer.assembler.representation import DEFAULT_REPRESENTATION
    from trainer.dataset import load_training_set

    store = ObjectStore(settings)
    if not sessions:
        raise ValueError("a base model needs at least one session")
    manifests = {s: read_session(settings, s, store=store) or {} for s in sessions}
    # A base model learns from the visitors' frames: only from those who agreed to their keeping.
    unconsented = [s for s, m in manifests.items() if m.get("consent") is not True]
    if unconsented:
        raise ValueError(
            f"sessions {unconsented} have no recorded consent: a base model learns only from those that do"
        )
    kinds = {s: m.get("representation", DEFAULT_REPRESENTATION) for s, m in manifests.items()}
    if len(set(kinds.values())) > 1:
        raise ValueError(f"sessions assembled in different representations {kinds}: a model learns one")
    sets = {}
    for s in sessions:
        echo(f"{s}: reading the dataset")
        sets[s] = load_training_set(settings, s, store=store, expected=manifests[s].get("samples"))
    return build_base_on(settings, sets, next(iter(kinds.values())), budget_s, config, max_steps, echo)


def build_base_on(
    settings: Settings,
    sets: dict,
    representation: str,
    budget_s: float,
    config=None,
    max_steps: int | None = None,
    echo: Callable[[str], None] = lambda _m: None,
) -> dict:
    """build_base on sessions already read: session id -> trainer.dataset.TrainingSet (their
    plates are stored under those ids). The caller answers for the visitors' consent."""
    from trainer.dataset import holdout_split
    from trainer.evaluation import held_out_frames
    from trainer.job import CUDA_BATCH, TrainerConfig, recipe
    from trainer.pix2pix.evaluate import video_quality
    from trainer.pix2pix.train import TrainConfig, pick_device
    from trainer.pix2pix.train import train_base as run

    config = config or TrainerConfig()
    store = ObjectStore(settings)
    sessions = list(sets)
    device = pick_device(config.device).type
    parts, held, framings, notes = [], {}, {}, []
    for s, data in sets.items():
        echo(f"{s}: person masks and plate")
        poses = data.poses if config.holdout == "novel" else None
        split = holdout_split(data.cameras, data.seqs, config.holdout_fraction, config.holdout_gap, poses=poses)
        job = _job_for(settings, config, s)
        framing, masks, _info = job._framing(data, split.train, representation, device)  # as the trainer frames it
        notes += [f"{s}: {w}" for w in job.warnings]
        framings[s] = framing
        parts.append(framing.training_samples(data, np.flatnonzero(split.train), masks))
        held[s] = (data, split.test)
    recipes = {s: recipe(f) for s, f in framings.items()}
    kinds_seen = {json.dumps(info, sort_keys=True) for _net, info in recipes.values()}
    if len(kinds_seen) > 1:
        raise ValueError(
            f"the sessions were framed differently {sorted(kinds_seen)}: give --framing and --crop-size "
            "(a session without a view to warp reads the pose map alone)"
        )
    # The session's own recipe (trainer.job): the same network and inputs, so the base fits it.
    framing = next(iter(framings.values()))
    net, data_info = recipes[sessions[0]]
    temporal, face = data_info["temporal"], data_info["face"]
    version = (versions(store) or [0])[-1] + 1
    prefix = layout.base_version_prefix(version)
    samples = ConcatSamples(parts)
    echo(f"base v{version:04d}: {len(samples)} training frames of {len(sessions)} sessions, {budget_s:.0f} s")
    train_cfg = TrainConfig(
        net=net,
        batch_size=config.batch_size or (CUDA_BATCH if device == "cuda" else 1),
        device=config.device,
        progress_bar=config.progress_bar,
        checkpoint_every_s=config.checkpoint_every_s,
        data=data_info,
        temporal=temporal,
        face=face,
    )
    result = run(samples, train_cfg, StoreCheckpoints(store, prefix), budget_s=budget_s, max_steps=max_steps)
    echo(f"base v{version:04d}: {result.step} steps; evaluating on the held-out frames")
    per_session = {}
    keys = ("box_psnr", "box_ssim", "psnr", "ssim")
    for s, (data, test) in held.items():
        cams = held_out_frames(result.generator, framings[s], data, test).values()
        figures = [video_quality(real, fake, poses) for real, fake, _maps, poses in cams]
        if figures:
            per_session[s] = {k: float(np.nanmean([f[k] for f in figures])) for k in keys}
    quality = {k: float(np.nanmean([q[k] for q in per_session.values()])) if per_session else None for k in keys}
    manifest = {
        "version": version,
        "label": config_label(net.to_dict(), data_info),
        "net": net.to_dict(),
        "data": data_info,
        "representation": representation,
        "crop_size": framing.size if framing.name == "person" else None,
        "sessions": list(sessions),
        "samples": len(samples),
        "steps": result.step,
        "train_seconds": round(result.elapsed_s, 1),
        "checkpoint": result.checkpoint,
        "quality": quality,
        "quality_per_session": per_session,
        "notes": notes,
        "wall_time": time.time(),
    }
    store.put(layout.base_manifest_key(version), json.dumps(manifest, indent=2).encode(), "application/json")
    return manifest


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


def _job_for(settings: Settings, config, session: str):
    """A TrainingJob used for its framing step only (masks, plates, crop size as a session gets them)."""
    from schemas import DatasetReady
    from trainer.job import TrainingJob

    ready = DatasetReady(session=session, status="ready", samples=0, wall_time=time.time())
    job = TrainingJob(settings, config, ready, progress=lambda *a, **k: None, publish=lambda _r: None)
    job.warnings = []
    return job
