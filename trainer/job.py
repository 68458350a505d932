"""One session's training job: dataset -> fine-tuning (warm-started when a base fits) ->
evaluation -> rendition of the reference dance -> results and a presigned link in the store.

Objects per session (schemas.layout): checkpoints/ (resumable training state, started.json),
results/ (rendition.mp4, side-by-side.mp4, samples.png, loss.png, metrics.json).

Errors are typed for the service (trainer.service): DatasetError and ReferenceUnavailable are
permanent for the session; the object store or broker being away is not (retried there).

Privacy: a job looks for its session's purge marker (schemas.layout.purge_marker_key) before it
starts, every ``purge_check_s`` while it trains, and before it publishes; a purged session stops
at the next step, its objects are deleted (the last checkpoint included) and `Purged` is raised:
nothing is published. A session without consent (its manifest) keeps only its video and records
once the video is made (infra.retention.discard_unconsented). The video's link never outlives
the video (infra.retention.video_link_expiry_s).
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from infra.objectstore import ObjectStore
from infra.retention import discard_unconsented, video_link_expiry_s
from infra.settings import Settings
from schemas import DatasetReady, Rendition, layout
from trainer.checkpoints import StoreCheckpoints
from trainer.dance import build_dance, load_reference, reference_frames, reference_name
from trainer.dataset import holdout_mask, load_training_set

log = logging.getLogger(__name__)

# (phase, step, total, losses, elapsed_s, eta_s, message)
Progress = Callable[..., None]


@dataclass(frozen=True)
class TrainerConfig:
    budget_s: float = 3600.0  # wall clock for fine-tuning one session
    checkpoint_every_s: float = 180.0
    holdout_every: int = 10  # every n-th sample is held out for evaluation
    reference: str | None = None  # used when the session names none (else settings.default_reference)
    side_by_side: bool = True
    max_render_frames: int | None = None
    progress_every_s: float = 1.0
    device: str | None = None
    progress_bar: bool = True


class Cancelled(Exception):
    """The job was asked to stop (its partition went to another trainer); its checkpoint stays."""


class Purged(Exception):
    """The session was purged: the job stopped and deleted what it had written; nothing published."""


def base_checkpoint(store: ObjectStore, size: int) -> tuple[bytes | None, str | None, str, object]:
    """(checkpoint bytes, name, why, its NetConfig) of the base model to warm-start from, or
    (None, None, why not, the fast preset at `size`).

    A base that cannot be read or does not fit the dataset is never fatal: the session trains from
    scratch and `why` says so."""
    from trainer.pix2pix import checkpoint as ckpt
    from trainer.pix2pix.networks import NetConfig

    scratch = NetConfig.fast(size)
    base_store = StoreCheckpoints(store, layout.BASE_PREFIX)
    name = ckpt.latest_checkpoint(base_store)
    if name is None:
        return None, None, f"no base model in {layout.BASE_PREFIX}", scratch
    data = base_store.load(name)
    try:
        if data is None:
            raise ValueError("listed but missing")
        net = NetConfig.from_dict(ckpt.from_bytes(data)["net"])
    except Exception as exc:  # noqa: BLE001 - an unreadable base costs a warm start, never the session
        return None, None, f"base model {name} is unreadable ({type(exc).__name__}: {exc})", scratch
    if net.size != size:
        return None, None, f"base model {name} is {net.size}px but the dataset {size}px", scratch
    return data, name, f"warm start from {name}", net


class TrainingJob:
    """Everything the trainer does for one DatasetReady; `run()` returns the published Rendition."""

    def __init__(
        self,
        settings: Settings,
        config: TrainerConfig,
        ready: DatasetReady,
        progress: Progress,
        publish: Callable[[Rendition], None],
        cancel: threading.Event | None = None,
    ):
        self.settings, self.config, self.ready = settings, config, ready
        self.session = ready.session
        self.progress, self.publish = progress, publish
        self.cancel = cancel or threading.Event()
        self.store = ObjectStore(settings)
        # One try per look: a store that is away must not hold up training (the next look retries).
        self._marker_store = ObjectStore(settings, attempts=1)
        self._purge_seen = False
        self._purge_looked_at = -float("inf")
        self.consent = False

    # --- purge ---------------------------------------------------------------------------------
    def purged(self, now: bool = False) -> bool:
        """Whether the session's purge marker is in the store; looked up every purge_check_s (or
        now), and once seen, always true."""
        t = time.monotonic()
        if self._purge_seen or (not now and t - self._purge_looked_at < self.settings.purge_check_s):
            return self._purge_seen
        self._purge_looked_at = t
        try:
            self._purge_seen = self._marker_store.exists(layout.purge_marker_key(self.session))
        except Exception as exc:  # noqa: BLE001 - the store away for a moment: look again next time
            log.warning("session %s: could not look for a purge marker (%s)", self.session, exc)
        return self._purge_seen

    def _stop_purged(self, where: str) -> Purged:
        """Delete what this job (and anyone before it) wrote of the purged session."""
        gone = self.store.delete_prefix(layout.session_prefix(self.session))
        log.warning("session %s was purged (%s): stopped; %d objects deleted", self.session, where, len(gone))
        return Purged(f"session {self.session} was purged ({where})")

    def run(self) -> Rendition:
        from trainer.assembler import read_manifest
        from trainer.assembler.representation import DEFAULT_REPRESENTATION, check_representation
        from trainer.pix2pix.train import TrainConfig, fine_tune

        s, cfg, session = self.settings, self.config, self.session
        if self.purged(now=True):
            raise self._stop_purged("before training")
        self.progress("loading", message="reading the dataset")
        manifest = read_manifest(s, session, store=self.store) or {}
        self.consent = manifest.get("consent") is True
        representation = check_representation(manifest.get("representation", DEFAULT_REPRESENTATION))
        # The reference is checked before the budget is spent, not after.
        name = reference_name(s, session, self.ready.reference, cfg.reference)
        made = None if self.consent else self._made_earlier(name)
        if made is not None:
            return made
        ref = load_reference(s, session, name, representation)
        data = load_training_set(s, session, store=self.store, expected=manifest.get("samples"))
        held = holdout_mask(len(data), cfg.holdout_every)
        train_pairs = list(zip(data.maps[~held], data.frames[~held]))
        test = held if held.any() else np.arange(len(data)) < 4

        base, base_name, why, net = base_checkpoint(self.store, data.size)
        if base is None:
            log.warning("session %s: %s; fine-tuning starts from scratch", session, why)
        train_cfg = TrainConfig(
            net=net, checkpoint_every_s=cfg.checkpoint_every_s, device=cfg.device, progress_bar=cfg.progress_bar
        )
        store = StoreCheckpoints(self.store, layout.checkpoints_prefix(session))
        budget = self._remaining_budget()
        self.progress("training", message=why)
        last = {"t": 0.0}

        def on_progress(step: int, total: int, losses: dict, eta: float) -> None:
            now = time.monotonic()
            if now - last["t"] >= cfg.progress_every_s:
                last["t"] = now
                self.progress(
                    "training",
                    step,
                    total,
                    {k: float(v) for k, v in losses.items()},
                    elapsed=budget - eta if eta <= budget else 0.0,
                    eta=eta,
                )

        result = fine_tune(
            train_pairs,
            train_cfg,
            budget,
            store,
            progress_cb=on_progress,
            init_checkpoint=base,
            should_stop=lambda: self.cancel.is_set() or self.purged(),
        )
        if result.stop_reason == "stopped":
            if self.purged(now=True):
                raise self._stop_purged(f"during training, at step {result.step}")
            raise Cancelled(f"session {session}: stopped at step {result.step}; its checkpoint is kept")
        generator = result.generator
        self.progress("evaluating", result.step, result.step, message="sample grid, SSIM, PSNR")
        from trainer.evaluation import evaluate

        results = evaluate(
            s,
            self.store,
            session,
            generator,
            data.maps[test],
            data.frames[test],
            data.poses[test],
            data.src_size,
            result.history,
            representation,
        )
        results.update(
            warm_start=base is not None,
            base_checkpoint=base_name,
            steps=result.step,
            start_step=result.step - result.steps_this_run,
            train_seconds=result.elapsed_s,
            samples=len(data),
            held_out=int(held.sum()),
            representation=representation,
        )
        self.progress("rendering", result.step, result.step, message="rendering the reference dance")
        dance = build_dance(
            s, ref, name, data.poses, data.src_size, generator.size, representation, cfg.max_render_frames
        )
        rendition = self._render(generator, dance, data.src_size, results)
        self.progress("done", result.step, result.step, message=rendition.url[:200])
        if not self.consent:
            discard_unconsented(self.store, session)
        return rendition

    def _made_earlier(self, name: str) -> Rendition | None:
        """A session without consent whose video was made and whose frames are already discarded
        (a redelivery after a crash before the commit): its Rendition again, with a fresh link."""
        video_key = layout.result_key(self.session, "rendition.mp4")
        listed = self.store.list_info(video_key)
        if not listed or self.store.list(layout.shards_prefix(self.session)):
            return None
        raw = self.store.get(layout.result_key(self.session, "metrics.json"))
        results = json.loads(raw) if raw else {}
        frames = int(results.get("rendition_frames") or 0)
        rendition = self._rendition(video_key, listed[0].written_at, name, frames, results)
        self.publish(rendition)
        discard_unconsented(self.store, self.session)
        log.info("session %s: its video was made earlier; published again", self.session)
        return rendition

    def _rendition(self, video_key: str, written_at: float, name: str, frames: int, results: dict) -> Rendition:
        expiry = video_link_expiry_s(self.settings, written_at)
        return Rendition(
            session=self.session,
            reference=name,
            video_key=video_key,
            url=self.store.presign(video_key, expiry),
            expires_at=time.time() + expiry,
            frames=frames,
            metrics={
                k: float(v)
                for k, v in results.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)
            },
            wall_time=time.time(),
        )

    def _remaining_budget(self) -> float:
        """The budget counts from the first attempt: a resumed session gets what is left of it."""
        key = layout.checkpoints_prefix(self.session) + "started.json"
        raw = self.store.get(key)
        if raw is None:
            self.store.put(key, json.dumps({"wall_time": time.time()}).encode(), "application/json")
            return self.config.budget_s
        spent = time.time() - json.loads(raw)["wall_time"]
        return max(self.config.budget_s - spent, min(60.0, self.config.budget_s * 0.1))

    def _render(self, generator, dance, src_size: tuple[int, int], results: dict) -> Rendition:
        from trainer.rendition import count_frames, render_video

        cfg, session, store = self.config, self.session, self.store
        video_key = layout.result_key(session, "rendition.mp4")
        with tempfile.TemporaryDirectory(prefix="booth-render-") as tmp:
            out = Path(tmp) / "rendition.mp4"
            render_video(generator, dance.poses, src_size, out, fps=30, progress=cfg.progress_bar, maps=dance.maps)
            frames = count_frames(out)
            written_at = time.time()  # no later than the store's own time for it: the link expires first
            store.put(video_key, out.read_bytes(), "video/mp4")
            if cfg.side_by_side:
                dancer = reference_frames(store, dance.ref, len(dance.poses), Path(tmp))
                if dancer is not None:
                    side = Path(tmp) / "side.mp4"
                    render_video(
                        generator,
                        dance.poses,
                        src_size,
                        side,
                        fps=30,
                        side_by_side=dancer,
                        progress=False,
                        maps=dance.maps,
                    )
                    store.put(layout.result_key(session, "side-by-side.mp4"), side.read_bytes(), "video/mp4")
                    results["side_by_side_frames"] = count_frames(side)
        results["rendition_frames"] = frames
        # NaN (e.g. no keypoint comparable) is written as null: JSON and the schemas have no NaN.
        results = {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in results.items()}
        store.put(
            layout.result_key(session, "metrics.json"), json.dumps(results, indent=2).encode(), "application/json"
        )
        if self.purged(now=True):
            raise self._stop_purged("before its video was published")
        rendition = self._rendition(video_key, written_at, dance.name, frames, results)
        self.publish(rendition)
        log.info("session %s: rendition %s", session, rendition.url)
        return rendition
