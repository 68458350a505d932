"""The trainer service: a consumer group over DatasetReady that runs one TrainingJob at a time.

    datasets --[TrainingService]--> training (progress), renditions, deadletter

Several trainers (one per GPU machine) share the datasets topic's partitions, keyed by session,
so each session goes to exactly one of them. A job runs on a worker thread while the consumer
keeps polling with its partitions paused: the group can rebalance at any time, and a trainer
whose partition moves away stops its job at the next step (its checkpoint stays in the store)
so the new owner resumes it.

Failures end one session, never the service:
* permanent ones (a corrupt or missing dataset, a missing reference, anything unexpected): a
  `failed` TrainingProgress with the reason, a dead letter, the offset committed, the next
  session served;
* the object store or the broker being away: the job is retried with backoff (it resumes from
  its checkpoint); if they stay away the service exits without committing, so nothing is lost.
The offset of a DatasetReady is committed only after its Rendition (or its failure) is published.

A session purged while it trains (trainer.job: a marker in the store, seen by whichever trainer
has it) stops at the next step; nothing is published for it and its offset is committed.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from infra import kafka, metrics
from infra.consume import ConsumeLoop
from infra.deadletters import send_dead_letter
from infra.objectstore import TransientStoreError
from infra.settings import Settings
from schemas import DatasetReady, Rendition, SchemaError, TrainingProgress
from trainer.job import Cancelled, Purged, TrainerConfig, TrainingJob

log = logging.getLogger(__name__)

TRAINING_STEP = Gauge("booth_training_step", "Training step of the session being trained", ["session"])
TRAINING_LOSS = Gauge("booth_training_loss", "Latest training loss", ["session", "loss"])
TRAINING_ETA = Gauge("booth_training_eta_seconds", "Estimated seconds of training left", ["session"])
SESSION_SECONDS = Histogram(
    "booth_trainer_session_seconds",
    "DatasetReady to Rendition",
    buckets=(30, 60, 120, 300, 600, 1200, 1800, 3600, 5400, 7200),
)
SESSIONS = Counter("booth_trainer_sessions_total", "Sessions the trainer finished, by outcome", ["outcome"])
for _outcome in ("rendered", "failed", "purged"):  # exported from the start: a rate() over nothing shows no data
    SESSIONS.labels(_outcome)

STAGE = "trainer"

__all__ = ["TrainerConfig", "TrainingService", "is_transient"]


def is_transient(exc: BaseException) -> bool:
    """Whether an error is the infrastructure being away (retry) rather than the session (fail it)."""
    from kafka.errors import KafkaError

    try:
        from minio.error import S3Error
    except ImportError:  # pragma: no cover - minio is a dependency
        S3Error = ()  # type: ignore[assignment,misc]
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (TransientStoreError, KafkaError, S3Error, ConnectionError, TimeoutError)):
            return True
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return False


@dataclass
class _Running:
    """The job in flight: its record, thread and outcome."""

    record: Any
    ready: DatasetReady
    cancel: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    result: Rendition | None = None
    error: BaseException | None = None  # Cancelled, or transient: anything else fails the session
    attempt: int = 1
    retry_at: float | None = None


class TrainingService:
    def __init__(
        self,
        settings: Settings,
        config: TrainerConfig = TrainerConfig(),
        *,
        transient_retries: int = 5,
        retry_delay_s: float = 5.0,
    ):
        self.settings, self.config = settings, config
        self.transient_retries, self.retry_delay_s = transient_retries, retry_delay_s
        self.assigned: set[int] = set()  # partitions of the datasets topic this trainer owns now
        self._producer = None

    # --- events ---------------------------------------------------------------------------
    @property
    def producer(self):
        if self._producer is None:  # one per process, closed when run() ends
            self._producer = kafka.producer(self.settings)
        return self._producer

    def _publish(self, topic: str, key: str, message) -> None:
        self.producer.send(topic, key=key.encode(), value=message.encode()).get(timeout=30)

    def _progress(
        self,
        session: str,
        phase: str,
        step: int = 0,
        total: int = 0,
        losses: dict | None = None,
        elapsed: float = 0.0,
        eta: float = 0.0,
        message: str = "",
    ) -> None:
        if phase == "training":
            TRAINING_STEP.labels(session).set(step)
            TRAINING_ETA.labels(session).set(eta)
            for name, value in (losses or {}).items():
                TRAINING_LOSS.labels(session, name).set(value)
        self._publish(
            self.settings.topic_training,
            session,
            TrainingProgress(
                session=session,
                phase=phase,
                step=step,
                total_steps=max(total, step),
                losses=losses or {},
                elapsed_s=elapsed,
                eta_s=eta,
                message=message[:500],
                wall_time=time.time(),
            ),
        )

    def _job(self, ready: DatasetReady, cancel: threading.Event | None = None) -> TrainingJob:
        def progress(
            phase: str,
            step: int = 0,
            total: int = 0,
            losses: dict | None = None,
            elapsed: float = 0.0,
            eta: float = 0.0,
            message: str = "",
        ) -> None:
            self._progress(ready.session, phase, step, total, losses, elapsed, eta, message)

        def publish(rendition: Rendition) -> None:
            self._publish(self.settings.topic_renditions, ready.session, rendition)

        return TrainingJob(self.settings, self.config, ready, progress, publish, cancel)

    def _fail(self, ready: DatasetReady, exc: BaseException, record: Any | None = None) -> None:
        """A permanent failure: the session ends `failed` with its reason (and a dead letter)."""
        reason = f"{type(exc).__name__}: {exc}"
        log.error("session %s: training failed: %s", ready.session, reason, exc_info=exc)
        SESSIONS.labels("failed").inc()
        self._progress(ready.session, "failed", message=reason)
        if record is not None:
            send_dead_letter(
                self.producer,
                self.settings,
                STAGE,
                f"session {ready.session} failed: {reason}",
                record.topic,
                record.key,
                record.value,
                record.partition,
                record.offset,
            ).get(30)

    # --- one session ------------------------------------------------------------------------
    def handle(
        self, ready: DatasetReady, *, cancel: threading.Event | None = None, record: Any | None = None
    ) -> Rendition | None:
        """Train and render one session; None when there is nothing to train, it was purged, or it
        failed permanently (the failure is published, with a dead letter of `record` when given).
        Transient errors and Cancelled propagate: the caller retries or leaves it uncommitted."""
        if ready.status != "ready":
            log.info("session %s: dataset %s (%s); nothing to train", ready.session, ready.status, ready.reason)
            return None
        t0 = time.monotonic()
        try:
            rendition = self._job(ready, cancel).run()
        except Purged:
            SESSIONS.labels("purged").inc()
            return None
        except Exception as exc:
            if isinstance(exc, Cancelled) or is_transient(exc):
                raise
            self._fail(ready, exc, record)
            return None
        SESSIONS.labels("rendered").inc()
        SESSION_SECONDS.observe(time.monotonic() - t0)
        return rendition

    # --- the consumer ---------------------------------------------------------------------
    def run(
        self, stop: threading.Event | None = None, idle_exit: float | None = None, max_sessions: int | None = None
    ) -> int:
        """Consume DatasetReady until stopped; returns the number of sessions rendered."""
        from kafka import ConsumerRebalanceListener, TopicPartition
        from kafka.structs import OffsetAndMetadata

        s = self.settings
        metrics.serve(s, STAGE)
        group = s.group(STAGE)
        consumer = kafka.consumer(s, group_id=group, max_poll_records=1, max_poll_interval_ms=3600 * 1000)
        state: dict[str, Any] = {"running": None, "done": 0, "closing": False}
        committable: dict[TopicPartition, int] = {}
        service = self

        def tp_of(record: Any) -> TopicPartition:
            return TopicPartition(record.topic, record.partition)

        lost: set[TopicPartition] = set()  # partitions whose log the broker lost while a job ran

        def finish(record: Any) -> None:
            if tp_of(record) in lost:
                lost.discard(tp_of(record))  # its offset was in the old log: nothing of the new one to commit
            else:
                committable[tp_of(record)] = record.offset + 1
            state["running"] = None
            consumer.resume(*consumer.assignment())

        class _Rebalance(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked):
                if state["closing"]:
                    return  # leaving the group on stop: stop_running() ends the job
                running: _Running | None = state["running"]
                if running is not None and tp_of(running.record) in set(revoked):
                    log.warning(
                        "session %s: its partition moved to another trainer; stopping at the next step",
                        running.ready.session,
                    )
                    running.cancel.set()
                    if running.thread is not None:
                        running.thread.join()
                    state["running"] = None
                for tp in revoked:
                    committable.pop(tp, None)
                service.assigned -= {tp.partition for tp in revoked}

            def on_partitions_assigned(self, assigned):
                service.assigned = {tp.partition for tp in assigned}
                if state["running"] is not None:
                    consumer.pause(*assigned)  # one job at a time per trainer

        def start(running: _Running) -> None:
            def work() -> None:
                try:
                    running.result = service.handle(running.ready, cancel=running.cancel, record=running.record)
                except BaseException as exc:  # noqa: BLE001 - judged by tick() in the consumer thread
                    running.error = exc

            running.error = running.result = None
            running.thread = threading.Thread(target=work, name=f"train-{running.ready.session}", daemon=True)
            running.thread.start()

        def handle(records: list, now: float) -> None:
            for record in records:
                try:
                    ready = DatasetReady.decode(record.value)
                except SchemaError as exc:
                    send_dead_letter(
                        self.producer,
                        s,
                        STAGE,
                        str(exc),
                        record.topic,
                        record.key,
                        record.value,
                        record.partition,
                        record.offset,
                    ).get(30)
                    committable[tp_of(record)] = record.offset + 1
                    continue
                if ready.status != "ready":
                    self.handle(ready)  # nothing to train: logged
                    committable[tp_of(record)] = record.offset + 1
                    continue
                consumer.pause(*consumer.assignment())
                running = _Running(record, ready)
                state["running"] = running
                start(running)

        def tick(now: float, backlog: bool) -> bool:
            running: _Running | None = state["running"]
            if running is None:
                return False
            if running.retry_at is not None:
                if now >= running.retry_at:
                    running.retry_at = None
                    running.attempt += 1
                    start(running)
                return False
            if running.thread is None or running.thread.is_alive():
                return False
            session = running.ready.session
            if isinstance(running.error, Cancelled):
                state["running"] = None  # stopped on request: the next owner (or run) resumes it
                return False
            if running.error is not None:  # the object store or broker is away: handle() fails the rest
                if running.attempt > self.transient_retries:
                    raise RuntimeError(
                        f"session {session}: the object store or broker stayed away through "
                        f"{self.transient_retries} retries; exiting without committing"
                    ) from running.error
                delay = min(self.retry_delay_s * 2 ** (running.attempt - 1), 120.0)
                log.warning(
                    "session %s: %s; retrying in %.0f s (attempt %d of %d)",
                    session,
                    running.error,
                    delay,
                    running.attempt + 1,
                    self.transient_retries + 1,
                )
                running.retry_at = now + delay
                return False
            state["done"] += running.result is not None
            finish(running.record)
            return True

        def commit() -> None:
            assigned = consumer.assignment()
            offsets = {tp: OffsetAndMetadata(off, "", -1) for tp, off in committable.items() if tp in assigned}
            if offsets:
                consumer.commit(offsets)
                for tp in offsets:
                    committable.pop(tp, None)

        def stop_running() -> None:
            running: _Running | None = state["running"]
            if running is not None and running.thread is not None and running.thread.is_alive():
                running.cancel.set()
                running.thread.join()

        def log_lost(partitions: list) -> None:
            for tp in partitions:  # read again from the new log's start (infra.consume.reset_lost_logs)
                committable.pop(tp, None)
                running: _Running | None = state["running"]
                if running is not None and tp_of(running.record) == tp:
                    lost.add(tp)

        consumer.subscribe([s.topic_datasets], listener=_Rebalance())
        try:
            ConsumeLoop(
                consumer,
                handle,
                tick=tick,
                commit=commit,
                commit_every_s=5.0,
                lag_group=group,
                on_log_lost=log_lost,
                poll_ms=500,
                max_records=1,
                idle_exit_s=idle_exit,
                busy=lambda: state["running"] is not None,
                done=lambda: max_sessions is not None and state["done"] >= max_sessions and state["running"] is None,
                stop=stop,
            ).run()
        finally:
            state["closing"] = True
            stop_running()
            consumer.close(autocommit=False)
            self.assigned = set()
            if self._producer is not None:
                self._producer.flush()
                self._producer.close()
                self._producer = None
        return state["done"]
