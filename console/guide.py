"""Guided capture: follow one session's smoothed poses against its reference dance, publish the
coverage about once a second (schemas.Coverage on the training topic) and end the session by
itself when the coverage reaches its target or at its time cap.

Used by `booth session start --until-coverage ... --max-seconds ...` (in that process) and by the
console for every session it sees start (in a thread). Reading is group-less, from the earliest
records, keys filtered before decoding; an end or abort of the session from anywhere (the
operator) stops the guide with a last Coverage marked done. Frames without a person count as
frames, so "nobody in the picture" is known and said, and nothing read is dropped uncounted.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import numpy as np

from infra import kafka
from infra.settings import Settings
from schemas import Coverage, SchemaError, SessionEvent, SmoothedPose, decode
from schemas.messages import CameraCoverage
from trainer.coverage import LiveCoverage

log = logging.getLogger(__name__)


@dataclass
class Take:
    """When a guided recording ends by itself: a coverage target (0..1) and/or a time cap (s)."""

    target: float | None = None
    max_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.target is not None and not 0.0 < self.target <= 1.0:
            raise ValueError(f"the coverage target must be in (0, 1], got {self.target}")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise ValueError(f"the time cap must be positive seconds, got {self.max_seconds}")


def load_dance(settings: Settings, reference: str) -> np.ndarray:
    from trainer.references import load_reference_version

    return load_reference_version(settings, reference).poses


class Guide:
    """Coverage of one session, published; `run` returns the last Coverage (done)."""

    def __init__(
        self,
        settings: Settings,
        session: str,
        reference: str,
        take: Take | None = None,
        *,
        dance: np.ndarray | None = None,
        started_at: float | None = None,
        end_session: bool = True,
        producer=None,
        interval_s: float = 1.0,
    ):
        self.settings = settings
        self.session = session
        self.reference = reference
        self.take = take or Take()
        self.live = LiveCoverage(load_dance(settings, reference) if dance is None else dance)
        self.started_at = time.time() if started_at is None else started_at
        self.end_session = end_session
        self.interval_s = interval_s
        self.undecodable = 0
        self.last: Coverage | None = None
        self._producer = producer
        self._own_producer = producer is None
        self._prefix = session.encode() + b"/"

    def _message(self, now: float, done: bool = False, reason: str = "") -> Coverage:
        r = self.live.report(now)
        return Coverage(
            session=self.session,
            reference=self.reference,
            coverage=r["coverage"],
            target=self.take.target,
            max_seconds=self.take.max_seconds,
            elapsed_s=max(0.0, now - self.started_at),
            facings=r["facings"],
            dance_facings=r["dance_facings"],
            prompts=r["prompts"][:4],
            cameras={name: CameraCoverage(**c) for name, c in r["cameras"].items()},
            dance_frames=r["dance_frames"],
            measurable_frames=r["measurable_frames"],
            done=done,
            reason=reason,
            wall_time=now,
        )

    def _publish(self, message: Coverage) -> None:
        if self._producer is None:
            self._producer = kafka.producer(self.settings)
        self._producer.send(self.settings.topic_training, key=self.session.encode(), value=message.encode()).get(
            timeout=30
        )
        self.last = message

    def _record(self, final: Coverage) -> None:
        """The last Coverage in the store before the session ends, for the assembler's manifest."""
        import json

        from infra.objectstore import ObjectStore
        from schemas import layout

        body = json.dumps(final.model_dump(mode="json"), sort_keys=True).encode()
        ObjectStore(self.settings).put(layout.coverage_key(self.session), body, "application/json")

    def apply(self, topic: str, key: bytes | None, value: bytes | None) -> str | None:
        """One record; returns "ended" when the session was ended or aborted."""
        if topic == self.settings.topic_sessions:
            if key != self.session.encode():
                return None
            try:
                event = decode(value)
            except SchemaError:
                return None
            if isinstance(event, SessionEvent) and event.kind in ("end", "abort", "purge"):
                return "ended"
            return None
        if key is None or not key.startswith(self._prefix):
            return None
        try:
            pose = decode(value)
        except SchemaError:
            self.undecodable += 1  # the pose stage dead-letters these; counted here too
            return None
        if not isinstance(pose, SmoothedPose) or pose.session != self.session:
            return None
        main = pose.persons[0].array() if pose.persons else None
        self.live.add(pose.camera, main, pose.wall_time, others=len(pose.others))
        return None

    def run(self, stop: threading.Event | None = None) -> Coverage:
        from kafka import TopicPartition

        stop = stop or threading.Event()
        consumer = kafka.consumer(self.settings, group_id=None)
        try:
            parts = []
            for topic in (self.settings.topic_sessions, self.settings.topic_smoothed):
                parts += [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
            consumer.assign(parts)
            consumer.seek_to_beginning(*parts)
            next_report = time.monotonic()
            reason = ""
            while not stop.is_set():
                for records in consumer.poll(timeout_ms=100).values():
                    for r in records:
                        if self.apply(r.topic, r.key, r.value) == "ended":
                            reason = "ended"
                now = time.time()
                if reason:
                    break
                if time.monotonic() >= next_report:
                    next_report = time.monotonic() + self.interval_s
                    message = self._message(now)
                    if self.take.target is not None and message.coverage >= self.take.target:
                        reason = "target"
                    elif self.take.max_seconds is not None and now - self.started_at >= self.take.max_seconds:
                        reason = "time cap"
                    if reason:
                        break
                    self._publish(message)
            final = self._message(time.time(), done=True, reason=reason or "ended")
            self._publish(final)
            self._record(final)
            if reason in ("target", "time cap") and self.end_session:
                from producers.session import publish

                publish(self.settings, self.session, "end", note=f"guided capture: {reason}", producer=self._producer)
            return final
        finally:
            consumer.close()
            if self._own_producer and self._producer is not None:
                self._producer.close(timeout=5)
                self._producer = None
