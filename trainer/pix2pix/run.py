"""Running a trainer: the one the config asks for (the plain loop of train.py, or sequence.py's for
the temporal and face options), fine-tuned or trained from scratch within a budget. Apart from
train.py so that the loop's module does not import its own subclass."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace

from trainer.pix2pix import checkpoint as ckpt
from trainer.pix2pix.data import PairSource
from trainer.pix2pix.sequence import SequenceTrainer
from trainer.pix2pix.train import ProgressCallback, TrainConfig, Trainer, TrainResult

log = logging.getLogger(__name__)


def make_trainer(dataset: PairSource, config: TrainConfig) -> Trainer:
    """The trainer for the config: trainer.pix2pix.sequence's for the temporal or face options."""
    if config.temporal or config.face:
        return SequenceTrainer(dataset, config)
    return Trainer(dataset, config)


def fine_tune(
    dataset: PairSource,
    config: TrainConfig,
    budget_s: float,
    checkpoint_store: ckpt.CheckpointStore,
    progress_cb: ProgressCallback | None = None,
    init_checkpoint: bytes | str | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Fine-tune on one person's samples (data.py) within budget_s seconds of wall clock.

    If the store already holds a checkpoint (an earlier attempt crashed) training resumes from
    it exactly and init_checkpoint is ignored; otherwise init_checkpoint (bytes or a path of a base
    checkpoint) warm-starts both networks. The result's generator is also saved to the store as
    `generator.pt` (weights only, for rendition).
    """
    started = time.monotonic()
    trainer = make_trainer(dataset, config)
    resumed = trainer.restore(checkpoint_store)
    if resumed:
        log.info("resuming from %s (step %d)", resumed, trainer.step)
    elif init_checkpoint is not None:
        trainer.warm_start(init_checkpoint)
    return trainer.run(
        budget_s=budget_s, store=checkpoint_store, progress_cb=progress_cb, started=started, should_stop=should_stop
    )


def train_base(
    dataset: PairSource,
    config: TrainConfig,
    checkpoint_store: ckpt.CheckpointStore,
    *,
    budget_s: float | None = None,
    max_steps: int | None = None,
    progress_cb: ProgressCallback | None = None,
) -> TrainResult:
    """Train a base model from scratch (resuming if the store has a checkpoint); the same loop as
    fine_tune, bounded by budget_s and/or max_steps."""
    started = time.monotonic()
    if max_steps is not None:
        config = replace(config, max_steps=max_steps)
    trainer = make_trainer(dataset, config)
    trainer.restore(checkpoint_store)
    return trainer.run(budget_s=budget_s, store=checkpoint_store, progress_cb=progress_cb, started=started)
