"""Progressive renditions: the visitor's video gets better while the budget runs.

Fine-tuning is cut at stops (seconds of the budget): a first one shortly after training starts
(TrainerConfig.first_rendition_s, so the visitor has a video within about a minute of their
dataset), then at shares of the budget (TrainerConfig.rendition_points, e.g. 10 %, 30 %). At each
stop the training state is checkpointed and a version is rendered and published
(trainer.versions.Versions.publish); the end of the budget gives the final one. Rendering counts
against the budget: the stops are wall clock, as the budget is. A session resumed after a crash
keeps its published versions and continues at the next stop still ahead of it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where training starts, not with the job's module
    from trainer.pix2pix import checkpoint as ckpt
    from trainer.pix2pix.data import PairSource
    from trainer.pix2pix.train import ProgressCallback, TrainConfig, TrainResult

DEFAULT_POINTS = (0.1, 0.3, 1.0)
DEFAULT_FIRST_S = 20.0
MIN_GAP_S = 5.0  # versions closer than this to each other or to the end would spend the budget on rendering


def check_points(points: Sequence[float]) -> tuple[float, ...]:
    """Shares of the budget, each in (0, 1], increasing; the end (1.0) is always a rendition."""
    out = tuple(float(p) for p in points)
    if any(not 0 < p <= 1 for p in out) or list(out) != sorted(set(out)):
        raise ValueError(f"rendition points are increasing shares of the budget in (0, 1], got {list(points)}")
    return out


def parse_points(text: str) -> tuple[float, ...]:
    """'0.1,0.3,1' or '10%,30%,100%' -> (0.1, 0.3, 1.0)."""
    try:
        values = [float(p.strip().rstrip("%")) / (100 if p.strip().endswith("%") else 1) for p in text.split(",")]
    except ValueError:
        raise ValueError(
            f"rendition points are comma-separated shares like 0.1,0.3,1 or 10%,30%,100%: {text!r}"
        ) from None
    return check_points(values)


def stops(
    budget_s: float,
    points: Sequence[float],
    first_s: float | None,
    spent_s: float,
    published: int,
    min_gap_s: float = MIN_GAP_S,
) -> list[float]:
    """Seconds from now (this attempt's start) at which to publish a version before the final one.

    budget_s: the whole budget; spent_s: what earlier attempts spent of it; published: versions
    already out. The first stop (first_s after training starts) is only for a session with none,
    and only when no point comes before it. A stop less than min_gap_s after the one before it
    (or this attempt's start), or before the end, is left out: a short budget gets fewer versions."""
    left = budget_s - spent_s
    at = [p * budget_s - spent_s for p in points if p < 1.0]
    if first_s and published == 0 and not any(0 < t <= first_s for t in at):
        at.append(first_s)
    kept: list[float] = []
    for t in sorted(round(t, 3) for t in at):
        if t - (kept[-1] if kept else 0.0) >= min_gap_s and left - t >= min_gap_s:
            kept.append(t)
    return kept


def fine_tune_in_stages(
    dataset: PairSource,
    config: TrainConfig,
    budget_s: float,
    store: ckpt.CheckpointStore,
    at: Sequence[float],
    on_stage: Callable[[TrainResult], None],
    *,
    progress_cb: ProgressCallback | None = None,
    init_checkpoint: bytes | str | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[TrainResult, int]:
    """trainer.pix2pix.train.fine_tune, stopping at each of `at` (seconds from the call, within
    budget_s) for on_stage(result) with a checkpoint saved; returns (the final result, the step
    this call started from)."""
    from trainer.pix2pix.run import make_trainer

    started = time.monotonic()
    trainer = make_trainer(dataset, config)  # the temporal and face options' trainer where asked
    if trainer.restore(store) is None and init_checkpoint is not None:
        trainer.warm_start(init_checkpoint)
    first_step = trainer.step

    def until(deadline: float) -> TrainResult:
        return trainer.run(
            budget_s=deadline, store=store, progress_cb=progress_cb, started=started, should_stop=should_stop
        )

    for stop in at:
        if stop >= budget_s or time.monotonic() - started >= stop:
            continue  # a slow stage ate this stop: the next one comes soon enough
        result = until(stop)
        if result.stop_reason == "stopped":
            return result, first_step
        on_stage(result)
        trainer.G.train()
    return until(budget_s), first_step
