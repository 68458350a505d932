"""The stream workers' keyed state on the broker: Faust table changelogs, compacted topics.

The tables in SESSION_TABLES hold per-stream state: the smoother (``smoother_state``) and the
identity tracker (``tracker_state``) each keep one entry per camera stream, keyed
``"<session>/<camera>"`` (JSON-encoded, as Faust writes string keys); Faust names its changelog
``<app id>-smoother_state-changelog`` and writes each key to the partition of the stream it came
from. A compacted topic keeps the latest record of every key until a tombstone (a null value) for
that key is written to the same partition; the broker then drops the key at its next compaction,
and a worker that recovers the table skips it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from infra import kafka
from infra.kafka import (  # noqa: F401 - the tables' names live beside topic creation, which configures them
    SESSION_TABLES,
    SMOOTHER_TABLE,
    TRACKER_TABLE,
    changelog_topic,
    changelog_topics,
)
from infra.settings import Settings


@dataclass(frozen=True)
class KeyState:
    """The latest record of one key of a compacted topic."""

    topic: str
    partition: int
    key: bytes
    timestamp_ms: int
    deleted: bool  # the latest record is already a tombstone

    @property
    def session(self) -> str | None:
        return table_key_session(self.key)


def table_key_session(key: bytes | None) -> str | None:
    """The session of a table key ("<session>/<camera>", JSON-encoded), or None."""
    if key is None:
        return None
    try:
        text = json.loads(key)
    except ValueError:
        return None
    if not isinstance(text, str) or "/" not in text:
        return None
    return text.partition("/")[0] or None


def latest_keys(settings: Settings, topic: str, timeout_s: float = 30.0) -> list[KeyState] | None:
    """Every key of ``topic`` with its latest record, read from the start to the end each partition
    has now; None when the topic does not exist (no worker has run)."""
    from kafka import TopicPartition

    consumer = kafka.consumer(settings, group_id=None)
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            return None
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        listed = consumer.end_offsets(tps)
        ends = kafka.fetched_end_offsets(settings, {(tp.topic, tp.partition): e for tp, e in listed.items()})
        todo = {tp: ends[(tp.topic, tp.partition)] for tp in tps if ends[(tp.topic, tp.partition)] > 0}
        latest: dict[tuple[int, bytes], KeyState] = {}
        if not todo:
            return []
        consumer.assign(list(todo))
        consumer.seek_to_beginning(*todo)
        deadline = time.monotonic() + timeout_s
        while todo:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: not read to its end within {timeout_s:g} s")
            for records in consumer.poll(timeout_ms=200).values():
                for r in records:
                    if r.key is not None:
                        latest[(r.partition, r.key)] = KeyState(topic, r.partition, r.key, r.timestamp, r.value is None)
            for tp in [tp for tp, end in todo.items() if consumer.position(tp) >= end]:
                del todo[tp]
        return sorted(latest.values(), key=lambda k: (k.partition, k.key))
    finally:
        consumer.close()


def write_tombstones(settings: Settings, keys: list[KeyState]) -> None:
    """A null value for each key, on the partition that holds it; waits until the broker has them."""
    if not keys:
        return
    producer = kafka.producer(settings)
    try:
        futures = [producer.send(k.topic, key=k.key, value=None, partition=k.partition) for k in keys]
        for future in futures:
            future.get(timeout=30)
    finally:
        producer.close()
