"""The trainers' shared queue: every DatasetReady is work any trainer may take, in arrival order.

Partitions do not limit the trainers: each reads every partition of the datasets topic, and who
trains what is settled on the claims topic, whose single partition gives all trainers one order
of each other's words (schemas.Claim). Every trainer applies the same rules to that order
(Ledger), so they agree without talking to each other:

* the first `claim` of work that nobody holds wins; later claims of it lose;
* the holder `renew`s its lease every third of `trainer_lease_s`; a claim made after the lease
  ended (by the claimer's clock, a sixth of the lease of slack) takes the work over: the new holder
  resumes from the last checkpoint (trainer.job);
* a holder that cannot renew (the broker away, the process stalled) stops its job before its lease
  ends, so two trainers never train one session at once;
* `done` (rendered, failed or nothing to do) ends the work for good; `release` gives it back.

A trainer writes its word and reads the claims log up to it before acting on it. Two records of
one session are served one after the other (the later waits for the earlier to be done). Each
trainer commits, for the group `<app_id>-trainer`, every partition's offset below which all work is
done: a restart reads from there. The group's booth_consumer_lag is the work not yet done.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from infra import kafka
from infra.settings import Settings
from schemas import Claim, DatasetReady, SchemaError

log = logging.getLogger(__name__)


def trainer_id() -> str:
    """This process's name on the claims topic: host, pid and a random part (a restart is a new trainer)."""
    host = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname())[:40] or "host"
    return f"{host}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass
class Holding:
    trainer: str
    lease_until: float
    since: float  # the winning claim's wall time


@dataclass
class Ledger:
    """Who holds what, from the claims log read in order (the same on every trainer)."""

    held: dict[str, Holding] = field(default_factory=dict)
    done: set[str] = field(default_factory=set)

    def apply(self, c: Claim) -> None:
        if c.work in self.done:
            return
        current = self.held.get(c.work)
        mine = current is not None and current.trainer == c.trainer
        if c.kind == "claim":
            if current is None or mine or current.lease_until < c.wall_time:
                self.held[c.work] = Holding(c.trainer, c.lease_until, c.wall_time)
        elif c.kind == "renew":
            if mine and current is not None:
                current.lease_until = max(current.lease_until, c.lease_until)
        elif c.kind == "release":
            if mine:
                del self.held[c.work]
        elif c.kind == "done" and mine:
            del self.held[c.work]
            self.done.add(c.work)


@dataclass
class Work:
    """One DatasetReady record: `ready` is None when it does not decode (`error` says why)."""

    id: str
    record: Any
    ready: DatasetReady | None
    error: str = ""

    @property
    def session(self) -> str:
        return self.ready.session if self.ready is not None else f"undecodable-{self.id}"

    @property
    def arrival(self) -> tuple[int, int, int]:
        return (self.record.timestamp or 0, self.record.partition, self.record.offset)


class LostLease(RuntimeError):
    """This trainer no longer holds the work: another took it over."""


class SessionQueue:
    """The datasets topic as one queue over all partitions, and the claims log."""

    def __init__(self, settings: Settings, trainer: str, producer: Any, sync_timeout_s: float = 30.0):
        from kafka import TopicPartition

        from infra.waiting import wait_until

        self.settings, self.trainer, self.producer = settings, trainer, producer
        self.lease_s = settings.trainer_lease_s
        self.grace_s = settings.trainer_lease_s / 6
        self.sync_timeout_s = sync_timeout_s
        self.ledger = Ledger()
        self.pending: dict[str, Work] = {}
        self.group = settings.group("trainer")
        self.datasets = kafka.consumer(settings, group_id=self.group)
        parts = wait_until(
            lambda: self.datasets.partitions_for_topic(settings.topic_datasets),
            30,
            what=f"the partitions of {settings.topic_datasets}",
        )
        self.partitions = [TopicPartition(settings.topic_datasets, p) for p in sorted(parts)]
        self.datasets.assign(self.partitions)
        for tp in self.partitions:  # from the group's done-watermark, else the beginning
            committed = self.datasets.committed(tp)
            if committed is None:
                self.datasets.seek_to_beginning(tp)
            else:
                self.datasets.seek(tp, committed)
        self.claims_tp = TopicPartition(settings.topic_claims, 0)
        self.claims = kafka.consumer(settings, group_id=None)
        self.claims.assign([self.claims_tp])
        self.claims.seek_to_beginning(self.claims_tp)
        self._committed: dict[Any, int] = {}

    # --- reading -----------------------------------------------------------------------------
    def poll(self, timeout_ms: int = 100) -> None:
        """Read what is new on both topics (the claims log first: work is claimable only by its rules)."""
        self._read_claims(timeout_ms)
        for batch in self.datasets.poll(timeout_ms=timeout_ms).values():
            for record in batch:
                self._add(record)
        self._notice_lost_logs()

    def _notice_lost_logs(self) -> None:
        """A broker that lost its log (the embedded broker restarted) recreates both topics empty:
        work ids name offsets of the old logs, so the queue starts over from the new ones' starts
        (counted and warned by reset_lost_logs). A job running for old work loses its lease."""
        from infra.consume import reset_lost_logs

        if reset_lost_logs(self.datasets, self.group) + reset_lost_logs(self.claims, self.group):
            self.ledger, self.pending, self._committed = Ledger(), {}, {}
            self.datasets.seek_to_beginning(*self.partitions)
            self.claims.seek_to_beginning(self.claims_tp)

    def _read_claims(self, timeout_ms: int) -> None:
        for batch in self.claims.poll(timeout_ms=timeout_ms).values():
            for record in batch:
                try:
                    self.ledger.apply(Claim.decode(record.value))
                except SchemaError as exc:  # nothing a trainer writes: ignored, said once
                    log.warning("claims topic offset %d: %s; ignored", record.offset, exc)

    def _add(self, record: Any) -> None:
        work_id = f"{record.partition}-{record.offset}"
        try:
            ready = DatasetReady.decode(record.value)
        except SchemaError as exc:
            self.pending[work_id] = Work(work_id, record, None, str(exc))
            return
        self.pending[work_id] = Work(work_id, record, ready)

    def _sync(self, offset: int) -> None:
        """Read the claims log past `offset` (a word this trainer wrote), so the ledger has it."""
        deadline = time.monotonic() + self.sync_timeout_s
        while self.claims.position(self.claims_tp) <= offset:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the claims topic did not return offset {offset} in {self.sync_timeout_s:.0f} s")
            self._read_claims(100)

    # --- the queue ---------------------------------------------------------------------------
    def forget_done(self) -> None:
        for work_id in [w for w in self.pending if w in self.ledger.done]:
            del self.pending[work_id]

    def waiting(self, now: float) -> list[Work]:
        """Work nobody holds (or whose lease ended), in arrival order; a session's later record
        waits until its earlier one is done."""
        self.forget_done()
        out, sessions = [], set()
        for work in sorted(self.pending.values(), key=lambda w: w.arrival):
            if work.session in sessions:
                continue
            sessions.add(work.session)
            held = self.ledger.held.get(work.id)
            if held is None or held.lease_until + self.grace_s < now:
                out.append(work)
        return out

    def holds(self, work: Work) -> Holding | None:
        held = self.ledger.held.get(work.id)
        return held if held is not None and held.trainer == self.trainer else None

    def _say(self, work: Work, kind: str, lease_until: float = 0.0) -> None:
        claim = Claim(
            work=work.id,
            session=work.session,
            trainer=self.trainer,
            kind=kind,  # type: ignore[arg-type]
            lease_until=lease_until,
            wall_time=time.time(),
        )
        sent = self.producer.send(self.settings.topic_claims, key=work.id.encode(), value=claim.encode())
        self._sync(sent.get(timeout=30).offset)

    def claim(self, work: Work) -> bool:
        """Try to take the work; True when this trainer won it."""
        self._say(work, "claim", time.time() + self.lease_s)
        return self.holds(work) is not None

    def renew(self, work: Work) -> float:
        """Extend the lease; returns its new end. LostLease when another trainer holds the work."""
        self._say(work, "renew", time.time() + self.lease_s)
        held = self.holds(work)
        if held is None:
            raise LostLease(f"work {work.id} (session {work.session}) is held by another trainer")
        return held.lease_until

    def finish(self, work: Work, kind: str = "done") -> None:
        """`done` ends the work for everyone; `release` gives it back unfinished."""
        self._say(work, kind)
        if kind == "done":
            self.pending.pop(work.id, None)

    def mark_done_locally(self, work: Work) -> None:
        """Work every trainer judges alike as nothing to do (a dataset that failed): no word needed."""
        self.ledger.done.add(work.id)
        self.pending.pop(work.id, None)

    def report_lag(self) -> None:
        """booth_consumer_lag for the trainers' group: per partition, the work not yet done (held
        or waiting, this trainer's own job included) plus the records not read yet."""
        from infra.metrics_names import set_consumer_lag

        self.forget_done()
        lags: dict[tuple[str, int], int] = {}
        for tp in self.partitions:
            end = self.datasets.highwater(tp)
            position = self.datasets.position(tp, timeout_ms=0) if end is not None else None
            unread = max(0, end - position) if end is not None and position is not None else 0
            open_work = sum(1 for w in self.pending.values() if w.record.partition == tp.partition)
            lags[(tp.topic, tp.partition)] = unread + open_work
        set_consumer_lag(self.group, lags)

    # --- offsets -----------------------------------------------------------------------------
    def commit(self) -> None:
        """Commit each partition's done-watermark: the first offset not done, or the read position."""
        from kafka.structs import OffsetAndMetadata

        self.forget_done()
        offsets = {}
        for tp in self.partitions:
            open_offsets = [w.record.offset for w in self.pending.values() if w.record.partition == tp.partition]
            mark = min(open_offsets) if open_offsets else self.datasets.position(tp)
            if mark is not None and mark != self._committed.get(tp):
                offsets[tp] = OffsetAndMetadata(mark, "", -1)
        if offsets:
            self.datasets.commit(offsets)
            self._committed.update({tp: o.offset for tp, o in offsets.items()})

    def close(self) -> None:
        for consumer in (self.datasets, self.claims):
            try:
                consumer.close(autocommit=False)
            except Exception:
                log.debug("closing a consumer failed", exc_info=True)
