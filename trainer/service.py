"""The trainer service: serves the shared queue of DatasetReady, one TrainingJob at a time.

    datasets --[TrainingService]--> training (progress), renditions, deadletter
                  ^ claims (who trains what: trainer.claims)

Any number of trainers (one per GPU) serve every session in arrival order: each reads every
partition of the datasets topic, and an idle trainer claims the oldest session nobody holds
(trainer.claims). A job runs on a worker thread while the loop keeps reading and renews the
job's lease; a trainer that dies stops renewing, and another takes its session over from the
last checkpoint once the lease has ended. A trainer that cannot renew in time (or sees another
holding its session) stops its job at the next step, so no session is trained by two at once.

Failures end one session, never the service:
* permanent ones (a corrupt or missing dataset, a missing reference, anything unexpected): a
  `failed` TrainingProgress with the reason, a dead letter, the offset committed, the next
  session served;
* the object store or the broker being away: the job is retried with backoff (it resumes from
  its checkpoint); if they stay away the service exits without committing, so nothing is lost.
A DatasetReady is `done` on the claims topic only after its Rendition (or its failure) is published,
and the group's committed offsets only ever pass work that is done.

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
from infra.deadletters import send_dead_letter
from infra.objectstore import TransientStoreError
from infra.settings import Settings
from schemas import DatasetReady, Rendition, TrainingProgress
from trainer.claims import LostLease, SessionQueue, trainer_id
from trainer.estimators import Estimators
from trainer.job import Cancelled, Purged, TrainingJob
from trainer.options import TrainerConfig

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
    work: Any = None  # trainer.claims.Work
    lease_until: float = 0.0
    renew_at: float = 0.0
    lost: bool = False  # another trainer holds it now (or will): stop, say nothing


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
        self.trainer: str | None = None  # this trainer's id on the claims topic, while run() runs
        self._producer = None
        # The estimators every session's figures use, made once for the process (trainer.estimators).
        self.estimators = Estimators.load(settings.models_dir)

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

        return TrainingJob(self.settings, self.config, ready, progress, publish, cancel, self.estimators)

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

    # --- the queue ------------------------------------------------------------------------------
    def run(
        self, stop: threading.Event | None = None, idle_exit: float | None = None, max_sessions: int | None = None
    ) -> int:
        """Serve the shared queue (trainer.claims) until stopped; returns the number of sessions rendered.

        idle_exit: stop after this many seconds with no job and nothing waiting; max_sessions: stop
        once this many sessions are rendered."""
        s = self.settings
        metrics.serve(s, STAGE)
        me = trainer_id()
        queue = SessionQueue(s, me, self.producer)
        self.trainer = me
        state: dict[str, Any] = {"running": None, "done": 0}
        last_busy = last_commit = time.monotonic()
        log.info("trainer %s: serving %s (lease %.0f s)", me, s.topic_datasets, s.trainer_lease_s)
        try:
            while stop is None or not stop.is_set():
                queue.poll(200 if state["running"] is not None else 100)
                self._sweep(queue)
                queue.report_lag()
                now = time.time()
                if state["running"] is not None:
                    self._keep_lease(queue, state["running"], now)
                    if self._tick(queue, state, now):
                        last_busy = time.monotonic()
                served = max_sessions is not None and state["done"] >= max_sessions
                if state["running"] is None and not served:  # served its share: takes nothing more
                    self._take_next(queue, state)
                mono = time.monotonic()
                if state["running"] is not None or queue.waiting(time.time()):
                    last_busy = mono
                if mono - last_commit >= 5.0:
                    self._commit(queue)
                    last_commit = mono
                if max_sessions is not None and state["done"] >= max_sessions and state["running"] is None:
                    break
                if idle_exit is not None and state["running"] is None and mono - last_busy >= idle_exit:
                    break
        finally:
            running: _Running | None = state["running"]
            if running is not None:
                if running.thread is not None and running.thread.is_alive():
                    running.cancel.set()
                    running.thread.join()
                if not running.lost:  # stopped unfinished: another trainer takes it over at once
                    try:
                        queue.finish(running.work, "release")
                    except Exception:  # noqa: BLE001 - on the way out; the lease ends by itself
                        log.warning("session %s: could not release it; its lease ends by itself", running.ready.session)
            self._commit(queue)
            queue.close()
            if self._producer is not None:
                self._producer.flush()
                self._producer.close()
                self._producer = None
        return state["done"]

    def _commit(self, queue: SessionQueue) -> None:
        from kafka.errors import KafkaError

        try:
            queue.commit()
        except KafkaError as exc:  # the next commit covers it
            log.warning("committing the datasets' done-watermark failed: %s", exc)

    def _start(self, running: _Running) -> None:
        def work() -> None:
            try:
                running.result = self.handle(running.ready, cancel=running.cancel, record=running.record)
            except BaseException as exc:  # noqa: BLE001 - judged by _tick() in the loop's thread
                running.error = exc

        running.error = running.result = None
        running.thread = threading.Thread(target=work, name=f"train-{running.ready.session}", daemon=True)
        running.thread.start()

    def _sweep(self, queue: SessionQueue) -> None:
        """Work with nothing to train, done at once whatever this trainer is doing: a failed dataset
        (every trainer judges it alike: no claim), and a record that does not decode (the trainer
        that claims it sends its dead letter)."""
        from kafka.errors import KafkaError

        for work in queue.waiting(time.time()):
            if work.ready is not None and work.ready.status != "ready":
                queue.report_lag()
                self.handle(work.ready)  # logged
                queue.mark_done_locally(work)
            elif work.ready is None:
                try:
                    if queue.claim(work):
                        r = work.record
                        send_dead_letter(
                            self.producer,
                            self.settings,
                            STAGE,
                            work.error,
                            r.topic,
                            r.key,
                            r.value,
                            r.partition,
                            r.offset,
                        ).get(30)
                        queue.finish(work)
                except (KafkaError, TimeoutError) as exc:
                    log.warning("work %s: claiming failed (%s); trying again shortly", work.id, exc)
                    return

    def _take_next(self, queue: SessionQueue, state: dict[str, Any]) -> None:
        """Claim the oldest waiting session this trainer can win, and start it."""
        from kafka.errors import KafkaError

        for work in queue.waiting(time.time()):
            if work.ready is None or work.ready.status != "ready":
                continue  # _sweep's
            try:
                if not queue.claim(work):
                    continue  # another trainer's claim came first
            except (KafkaError, TimeoutError) as exc:
                log.warning("work %s: claiming failed (%s); trying again shortly", work.id, exc)
                return
            held = queue.holds(work)
            log.info("trainer %s: took session %s (work %s)", queue.trainer, work.session, work.id)
            running = _Running(work.record, work.ready, work=work, lease_until=held.lease_until if held else 0.0)
            running.renew_at = time.time() + self.settings.trainer_lease_s / 3
            state["running"] = running
            queue.report_lag()
            self._start(running)
            return

    def _keep_lease(self, queue: SessionQueue, running: _Running, now: float) -> None:
        """Renew the lease on time; a trainer that lost it, or cannot renew before it ends, stops the
        job at its next step (the checkpoint stays for whoever takes it over)."""
        from kafka.errors import KafkaError

        if running.lost:
            return
        lease = self.settings.trainer_lease_s
        if now >= running.renew_at:
            try:
                running.lease_until = queue.renew(running.work)
                running.renew_at = now + lease / 3
            except LostLease as exc:
                self._lose(running, str(exc))
                return
            except (KafkaError, TimeoutError) as exc:
                log.warning("session %s: renewing its lease failed (%s)", running.ready.session, exc)
                running.renew_at = now + 1.0
        if not running.lost and time.time() > running.lease_until - lease / 6:
            self._lose(running, "its lease is about to end without a renewal")

    def _lose(self, running: _Running, why: str) -> None:
        log.warning("session %s: %s; stopping it for another trainer to take over", running.ready.session, why)
        running.lost = True
        running.cancel.set()

    def _tick(self, queue: SessionQueue, state: dict[str, Any], now: float) -> bool:
        """Judge the running job once it ends; True when it is over (done, failed or handed over)."""
        running: _Running = state["running"]
        if running.lost and (running.thread is None or not running.thread.is_alive()):
            state["running"] = None  # handed over: no word, the holder has it now
            return True
        if running.retry_at is not None:
            if now >= running.retry_at:
                running.retry_at = None
                running.attempt += 1
                self._start(running)
            return False
        if running.thread is None or running.thread.is_alive():
            return False
        session = running.ready.session
        if isinstance(running.error, Cancelled):  # not by this loop: give the work back
            queue.finish(running.work, "release")
            state["running"] = None
            return True
        if running.error is not None:  # the object store or broker is away: handle() fails the rest
            if running.attempt > self.transient_retries:
                raise RuntimeError(
                    f"session {session}: the object store or broker stayed away through "
                    f"{self.transient_retries} retries; exiting (another trainer takes it over)"
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
        queue.finish(running.work)
        log.info("trainer %s: finished session %s (work %s)", queue.trainer, session, running.work.id)
        state["done"] += running.result is not None
        state["running"] = None
        return True
