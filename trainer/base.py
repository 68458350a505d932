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
import time
from collections.abc import Callable, Sequence
from itertools import accumulate

import numpy as np

from infra.objectstore import ObjectStore
from infra.settings import Settings
from schemas import layout
from trainer.base_registry import (  # noqa: F401 - the registry, as the command line reads it from here
    config_label,
    export_base,
    import_base,
    list_bases,
    pick_base,
    promote,
    promoted,
    read_manifest,
    versions,
)
from trainer.checkpoints import StoreCheckpoints

log = logging.getLogger(__name__)


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
def build_base(
    settings: Settings,
    sessions: list[str],
    budget_s: float,
    config=None,
    max_steps: int | None = None,
    echo: Callable[[str], None] = lambda _m: None,
) -> dict:
    """Train a new base version on the sessions (framing, masks and plates as the trainer makes
    them for each, trainer.framing_choice), evaluate it on each session's held-out block; returns its
    manifest. config: a TrainerConfig (framing, crop size, pose-map style, device, ...)."""
    from dataset import read_manifest as read_session
    from dataset.representation import DEFAULT_REPRESENTATION
    from trainer.training_set import load_training_set

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
    """build_base on sessions already read: session id -> trainer.training_set.TrainingSet (their
    plates are stored under those ids). The caller answers for the visitors' consent."""
    from trainer.evaluation import held_out_frames
    from trainer.framing_choice import choose_framing, recipe
    from trainer.options import TrainerConfig
    from trainer.pix2pix.evaluate import video_quality
    from trainer.pix2pix.run import train_base as run
    from trainer.pix2pix.train import pick_device
    from trainer.plates import PersonMasks, SessionPlates
    from trainer.training_set import holdout_split

    config = config or TrainerConfig()
    store = ObjectStore(settings)
    sessions = list(sets)
    device = pick_device(config.device).type
    parts, held, framings, notes = [], {}, {}, []
    for s, data in sets.items():
        echo(f"{s}: person masks and plate")
        poses = data.poses if config.holdout == "novel" else None
        split = holdout_split(data.cameras, data.seqs, config.holdout_fraction, config.holdout_gap, poses=poses)
        # As the trainer frames the session (its masks, plate and crop size).
        plates = SessionPlates(store, s, data, PersonMasks(data, config.person_masks, settings.models_dir))
        framed = choose_framing(data, split.train, representation, config, device, plates)
        notes += [f"{s}: {w}" for w in framed.warnings]
        framings[s] = framed.framing
        parts.append(framed.framing.training_samples(data, np.flatnonzero(split.train), framed.masks))
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
    version = (versions(store) or [0])[-1] + 1
    prefix = layout.base_version_prefix(version)
    samples = ConcatSamples(parts)
    echo(f"base v{version:04d}: {len(samples)} training frames of {len(sessions)} sessions, {budget_s:.0f} s")
    train_cfg = config.loop(net, data_info, device)
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
