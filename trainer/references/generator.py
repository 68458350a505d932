"""A generator of the reference dancer: pose map -> this dancer, trained offline on the reference's
own frames and poses, so a booth can render the dancer doing what a visitor does, live
(trainer.mirror).

The session trainer's own pieces are used, not copies: trainer.training_set's TrainingSet and held-out
split, trainer.framing's whole-frame framing (the dancer's own background is the target, so there
is no plate to composite onto, and one pose renders one frame with no crop track to smooth over a
clip: what a live mirror needs), trainer.job's recipe (network and recorded inputs) and batch
choice, trainer.pix2pix's fine-tuning (resumable checkpoints) and trainer.evaluation's held-out
figures and sample sheet.

Stored with the reference version it was trained on (schemas.layout.reference_file_key):
    generator.pt    the generator alone (trainer.pix2pix.checkpoint.export_generator)
    generator.json  how it was made and its held-out figures
    generator.png   held-out frames: input | real | generated (trainer.evaluation.sample_sheet)
and its resumable training state under ``training/`` of that version. A corrected reference is a
new version with new poses: it has no generator until one is trained for it.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from infra.objectstore import ObjectStore
from infra.settings import Settings
from schemas import layout

log = logging.getLogger(__name__)

GENERATOR_FILE = "generator.pt"
FIGURES_FILE = "generator.json"
PICTURE_FILE = "generator.png"
CAMERA = "reference"  # the one "camera" of a reference's training set
# The generator's side and first layer's width: what a 2-core booth renders live beside its pose
# stage (bench/bench_mirror.py: at 128 px and width 16, camera, pose stage and mirror take 28 ms of
# CPU per rendered frame on a quiet machine, 44-49 on a loaded one; width 32 costs 40 % more, 256 px
# at width 32 three times as much). What it costs in quality: bench/bench_mirror_quality.py.
DEFAULT_SIZE = 128
DEFAULT_NGF = 16
DEFAULT_MAX_FRAMES = 600  # frames decoded for training, spread over the clip (memory, not quality)


class NoGenerator(LookupError):
    """The reference has no generator of its dancer (yet)."""


@dataclass(frozen=True)
class DancerGenerator:
    name: str
    version: int
    generator: object  # trainer.pix2pix.networks.UNetGenerator, eval mode
    framing: object  # trainer.framing.WholeFrame over the reference's frame size
    info: dict  # generator.json
    ref: object  # trainer.references.Reference


def _framing(size: int, src_size: tuple[int, int]):
    from trainer.framing import DEFAULT_STYLES, WholeFrame

    return WholeFrame(size, DEFAULT_STYLES["whole"], "pose", {CAMERA: tuple(src_size)})


def reference_training_set(store: ObjectStore, ref, size: int, max_frames: int = DEFAULT_MAX_FRAMES):
    """(TrainingSet of the reference's usable frames, spread over the clip, the frame indices used)."""
    from trainer.references.video import read_frames
    from trainer.training_set import DatasetError, TrainingSet

    usable = np.flatnonzero(np.asarray(ref.usable, bool))
    if len(usable) < 4:
        raise DatasetError(f"reference {ref.name} v{ref.version} has {len(usable)} usable poses: too few to train on")
    picked = usable[np.unique(np.linspace(0, len(usable) - 1, min(max_frames, len(usable))).round().astype(int))]
    key = (ref.meta.get("source") or {}).get("key")
    video = store.get(key) if key else None
    if video is None or key is None:
        raise DatasetError(f"reference {ref.name} v{ref.version}: its source video is not in the store")
    wanted, frames, seen = set(picked.tolist()), {}, 0
    with tempfile.TemporaryDirectory(prefix="booth-reference-") as tmp:
        path = Path(tmp) / ("source." + key.rsplit(".", 1)[-1])
        path.write_bytes(video)
        for i, (rgb, _t) in enumerate(read_frames(path)):  # streamed: a long reference never sits in memory
            seen = i + 1
            if i in wanted:
                frames[i] = rgb
    if seen != len(ref.poses):
        raise DatasetError(
            f"reference {ref.name} v{ref.version}: its video has {seen} frames for {len(ref.poses)} poses"
        )
    n = len(picked)
    # The whole-frame framing draws pose maps itself in the "pose" representation: the stored maps
    # are never read, so one shared blank stands for all of them (it only says the maps' side).
    blank = np.broadcast_to(np.zeros((1, size, size, 3), np.uint8), (n, size, size, 3))
    dataset = TrainingSet(
        [frames[i] for i in picked],
        blank,
        np.asarray(ref.poses[picked], np.float32),
        np.array([CAMERA] * n),
        picked.astype(np.int64),
    )
    return dataset, picked


def train_generator(
    settings: Settings,
    name: str,
    *,
    budget_s: float = 600.0,
    device: str | None = None,
    size: int = DEFAULT_SIZE,
    ngf: int | None = DEFAULT_NGF,
    max_frames: int = DEFAULT_MAX_FRAMES,
    progress: Callable[[int, int, dict, float], None] | None = None,
    progress_bar: bool = False,
) -> dict:
    """Train (or go on training: the version's checkpoint resumes) the dancer's generator of the
    latest version of reference `name` for budget_s seconds; store it; return generator.json."""
    from trainer.checkpoints import StoreCheckpoints
    from trainer.evaluation import held_out_frames, sample_sheet
    from trainer.framing_choice import recipe
    from trainer.options import CUDA_BATCH
    from trainer.pix2pix.checkpoint import export_generator
    from trainer.pix2pix.evaluate import video_quality
    from trainer.pix2pix.run import fine_tune
    from trainer.pix2pix.samples import png_bytes
    from trainer.pix2pix.train import TrainConfig, pick_device
    from trainer.references import load_reference_version
    from trainer.training_set import DEFAULT_HOLDOUT_FRACTION, DEFAULT_HOLDOUT_GAP, holdout_split

    if size < 16 or size & (size - 1):
        raise ValueError(f"the generator's size must be a power of two of at least 16, got {size}")
    if not budget_s > 0:
        raise ValueError(f"the training budget must be positive, got {budget_s}")
    started = time.monotonic()
    store = ObjectStore(settings)
    ref = load_reference_version(settings, name)
    data, picked = reference_training_set(store, ref, size, max_frames)
    split = holdout_split(data.cameras, data.seqs, DEFAULT_HOLDOUT_FRACTION, DEFAULT_HOLDOUT_GAP)
    test = split.test if split.test.any() else np.arange(len(data)) >= len(data) - min(4, len(data))
    framing = _framing(size, ref.src_size)
    net, data_info = recipe(framing)
    if ngf is not None:
        net = replace(net, ngf=ngf)
    dev = pick_device(device).type
    cfg = TrainConfig(
        net=net,
        batch_size=CUDA_BATCH if dev == "cuda" else 1,
        amp=True,
        checkpoint_every_s=180.0,
        device=device,
        progress_bar=progress_bar,
        data=data_info,
    )
    checkpoints = StoreCheckpoints(store, layout.reference_version_prefix(name, ref.version) + "training/")
    result = fine_tune(
        framing.training_samples(data, np.flatnonzero(split.train)), cfg, budget_s, checkpoints, progress
    )
    generator = result.generator
    per_camera = held_out_frames(generator, framing, data, test)
    real, fake, _maps, poses = per_camera[CAMERA]
    q = video_quality(real, fake, poses)
    info = {
        "reference": name,
        "version": ref.version,
        "device": dev,
        "net": net.to_dict(),
        **data_info,
        "steps": result.step,
        "train_seconds": round(result.elapsed_s, 1),
        "seconds": round(time.monotonic() - started, 1),
        "frames": len(data),
        "trained_on": int(split.train.sum()),
        "held_out": int(test.sum()),
        **{k: float(q[k]) for k in ("ssim", "psnr", "box_ssim", "box_psnr", "flicker") if np.isfinite(q[k])},
        "wall_time": time.time(),
    }
    key = layout.reference_file_key
    store.put(key(name, ref.version, PICTURE_FILE), png_bytes(sample_sheet(per_camera)), "image/png")
    store.put(key(name, ref.version, GENERATOR_FILE), export_generator(generator), "application/octet-stream")
    # Written last: a generator.json means the generator beside it is whole.
    store.put(key(name, ref.version, FIGURES_FILE), json.dumps(info, indent=1).encode(), "application/json")
    log.info(
        "reference %s v%d: generator after %d steps, box SSIM %s", name, ref.version, result.step, info.get("box_ssim")
    )
    return info


def generator_info(settings: Settings, name: str, version: int, store: ObjectStore | None = None) -> dict | None:
    """generator.json of a reference version, or None without a generator."""
    data = (store or ObjectStore(settings)).get(layout.reference_file_key(name, version, FIGURES_FILE))
    return None if data is None else json.loads(data)


def load_dancer(settings: Settings, name: str, device: str = "cpu", threads: int | None = 1) -> DancerGenerator:
    """The latest version of reference `name` with its dancer's generator; NoGenerator without one."""
    from trainer.pix2pix.checkpoint import load_generator
    from trainer.references import load_reference_version

    if threads:
        import torch

        torch.set_num_threads(threads)
    store = ObjectStore(settings)
    ref = load_reference_version(settings, name)
    info = generator_info(settings, name, ref.version, store)
    weights = store.get(layout.reference_file_key(name, ref.version, GENERATOR_FILE)) if info else None
    if info is None or weights is None:
        raise NoGenerator(
            f"reference {name} v{ref.version} has no generator of its dancer: `booth reference train {name}`"
        )
    generator = load_generator(weights, device)
    return DancerGenerator(name, ref.version, generator, _framing(int(info["size"]), ref.src_size), info, ref)
