"""`booth record`: copy topics into an MCAP file (see layout.py), from their earliest records.

The recorder assigns itself every partition and joins no consumer group, so it commits no offsets
and never triggers a rebalance of the running pipeline. The broker's end offsets cannot be trusted,
so "everything has been read" means: no record arrived for ``idle_s`` seconds (or ``max_messages``
were kept, or ``stop`` was set, or ^C).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from infra import kafka
from infra.settings import Settings
from schemas import validate_id
from tools.replay.layout import KafkaRecord, RecordingError, RecordingWriter
from tools.replay.sessions import belongs_to, session_of

log = logging.getLogger(__name__)


@dataclass
class RecordSummary:
    path: Path
    counts: dict[str, int]  # topic -> records written
    skipped: int  # records of other sessions
    sessions: list[str]  # sessions seen among the records written
    stopped_by: str  # "idle", "max", "stop" or "interrupt"
    elapsed_s: float
    partitions: dict[str, int] = field(default_factory=dict)
    consent: dict[str, str] = field(default_factory=dict)  # session -> consent, no consent, unknown (in the file)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _partitions(consumer, settings: Settings, topics: Sequence[str]) -> dict[str, int]:
    found = {}
    for topic in topics:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            raise RecordingError(f"topic {topic!r} does not exist on {settings.kafka_bootstrap}")
        found[topic] = len(parts)
    return found


def record(
    settings: Settings,
    output: Path,
    topics: Sequence[str] | None = None,
    *,
    session: str | None = None,
    idle_s: float | None = None,
    max_messages: int | None = None,
    progress: bool = False,
    stop: threading.Event | None = None,
    poll_ms: int = 200,
) -> RecordSummary:
    """Record ``topics`` (default: all the project's topics) into ``output``; see the module doc."""
    from kafka import TopicPartition
    from tqdm import tqdm

    if max_messages is not None and max_messages < 1:
        raise ValueError(f"max_messages must be at least 1, got {max_messages}")
    if idle_s is not None and idle_s <= 0:
        raise ValueError(f"idle_s must be positive, got {idle_s}")
    if session is not None:
        validate_id(session, "--session")
    topics = list(dict.fromkeys(topics or settings.topic_partitions()))
    consumer = kafka.consumer(settings, group_id=None)
    counts: Counter[str] = Counter()
    sessions: set[str] = set()
    skipped = 0
    stopped_by: str | None = None
    partitions: dict[str, int] = {}
    consent: dict[str, str] = {}
    started = time.monotonic()
    try:
        partitions = _partitions(consumer, settings, topics)
        assigned = [TopicPartition(t, p) for t, n in partitions.items() for p in range(n)]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        bar = tqdm(total=max_messages, unit="msg", desc="recording", disable=not progress, file=sys.stderr)
        with (
            RecordingWriter(output, bootstrap=settings.kafka_bootstrap, topics=partitions, session=session) as writer,
            bar,
        ):
            last_seen = time.monotonic()
            while stopped_by is None:
                if stop is not None and stop.is_set():
                    stopped_by = "stop"
                    break
                batches = consumer.poll(timeout_ms=poll_ms)
                if batches:
                    last_seen = time.monotonic()
                elif idle_s is not None and time.monotonic() - last_seen >= idle_s:
                    stopped_by = "idle"
                for records in batches.values():
                    for r in records:
                        if session is not None and not belongs_to(session, r.key, r.value):
                            skipped += 1
                            continue
                        writer.add(
                            KafkaRecord(
                                topic=r.topic,
                                partition=r.partition,
                                offset=r.offset,
                                timestamp_ms=r.timestamp,
                                timestamp_type=r.timestamp_type,
                                key=r.key,
                                value=r.value,
                                headers=tuple((name, value) for name, value in (r.headers or ())),
                            )
                        )
                        counts[r.topic] += 1
                        if (found := session_of(r.key, r.value)) is not None:
                            sessions.add(found)
                        bar.update(1)
                        if max_messages is not None and counts.total() >= max_messages:
                            stopped_by = "max"
                            break
                    if stopped_by == "max":
                        break
                if skipped:
                    bar.set_postfix(skipped=skipped, refresh=False)
            consent = dict(writer.sessions)
    except KeyboardInterrupt:
        stopped_by = "interrupt"  # the writer above has finished the file: it stays readable
    finally:
        consumer.close()
    return RecordSummary(
        path=Path(output),
        counts=dict(counts),
        skipped=skipped,
        sessions=sorted(sessions),
        stopped_by=stopped_by,
        elapsed_s=time.monotonic() - started,
        partitions=partitions,
        consent=consent,
    )
