"""`booth replay`: a recording back into topics, paced like the original or as fast as possible.

Records go out in log-time order (each partition in its recorded order), keeping key, headers and
partition (when the target topic has that partition; otherwise the key picks one). With
``as_session`` the recording's one session is renamed everywhere: keys ``old``/``old/cam`` and the
messages' session fields, re-encoded through the schema models so they are validated again.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import Counter as PromCounter

from infra import kafka
from infra.settings import Settings
from schemas import validate_id
from tools.replay.layout import RecordingError, iter_records, read_info
from tools.replay.sessions import belongs_to, rewrite_key, rewrite_value, session_of

log = logging.getLogger(__name__)


class ReplayError(RuntimeError):
    pass


@dataclass
class ReplaySummary:
    sent: dict[str, int]  # target topic -> records
    same_partition: int
    by_key: int  # the target topic has fewer partitions than the recorded one: the key chose
    rewritten: int  # records moved to as_session
    kept_as_recorded: int  # with as_session: values that are not valid envelopes, sent unchanged
    skipped: int  # records of other sessions
    recorded_span_s: float
    elapsed_s: float
    speed: float

    @property
    def total(self) -> int:
        return sum(self.sent.values())


REPLAYED = PromCounter("booth_replay_messages", "recorded messages replayed into topics", ["topic"])


def parse_topic_map(pairs: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``["old=new", ...]`` -> ``{"old": "new"}``; a malformed pair is named in the error."""
    mapping = {}
    for pair in pairs:
        old, sep, new = pair.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise ValueError(f"topic map {pair!r} is not of the form old=new")
        mapping[old.strip()] = new.strip()
    return mapping


def _target_partitions(settings: Settings, topics: set[str]) -> dict[str, int]:
    client = kafka.admin(settings)
    try:
        existing = set(client.list_topics())
        missing = sorted(topics - existing)
        if missing:
            raise ReplayError(
                f"target topic(s) {', '.join(missing)} do not exist on {settings.kafka_bootstrap}: "
                "create them (`booth stack up` creates the project's) or use --topic-map old=new"
            )
        return {t["name"]: len(t["partitions"]) for t in client.describe_topics(sorted(topics))}
    finally:
        client.close()


def _only_session(path: Path, session: str | None) -> str:
    found = set()
    for _, r in iter_records(path):
        if session is None or belongs_to(session, r.key, r.value):
            if (s := session_of(r.key, r.value)) is not None:
                found.add(s)
    if not found:
        raise ReplayError(f"no message in {path} names a session, so there is none to rename")
    if len(found) > 1:
        raise ReplayError(
            f"{path} holds {len(found)} sessions ({', '.join(sorted(found)[:10])}); "
            "pick the one to rename with --session"
        )
    return found.pop()


def replay(
    settings: Settings,
    path: Path,
    *,
    speed: float = 1.0,
    session: str | None = None,
    as_session: str | None = None,
    topic_map: Mapping[str, str] | None = None,
    keep_timestamps: bool = False,
    progress: bool = False,
) -> ReplaySummary:
    """Replay ``path``; ``speed`` 0 = as fast as possible, 2 = twice the recorded pace."""
    from tqdm import tqdm

    if speed < 0:
        raise ValueError(f"speed must be 0 (as fast as possible) or positive, got {speed}")
    if as_session is not None:
        validate_id(as_session, "--as-session")
    if session is not None:
        validate_id(session, "--session")
    info = read_info(path)
    topic_map = dict(topic_map or {})
    unknown = sorted(set(topic_map) - set(info.partitions))
    if unknown:
        raise ReplayError(
            f"--topic-map names {', '.join(unknown)}, not in the recording "
            f"(it holds {', '.join(sorted(info.partitions)) or 'no topics'})"
        )
    targets = {topic: topic_map.get(topic, topic) for topic in info.partitions}
    partitions = _target_partitions(settings, set(targets.values()))
    old = _only_session(path, session) if as_session is not None else None
    new = as_session or ""

    producer = kafka.producer(settings)
    sent: Counter[str] = Counter()
    errors: list[BaseException] = []
    same = by_key = rewritten = kept = skipped = 0
    first_log: int | None = None
    start = 0.0
    try:
        with tqdm(total=info.total, unit="msg", desc="replaying", disable=not progress, file=sys.stderr) as bar:
            for log_time, r in iter_records(path):
                bar.update(1)
                if session is not None and not belongs_to(session, r.key, r.value):
                    skipped += 1
                    continue
                key, value = r.key, r.value
                if old is not None:
                    key = rewrite_key(key, old, new)
                    new_value = rewrite_value(value, old, new)
                    if new_value is None:
                        kept += 1
                    else:
                        rewritten += new_value != value or key != r.key
                        value = new_value
                if first_log is None:
                    first_log, start = log_time, time.monotonic()
                elif speed > 0:
                    due = start + (log_time - first_log) / 1e9 / speed
                    if (wait := due - time.monotonic()) > 0:
                        time.sleep(wait)
                topic = targets[r.topic]
                partition = r.partition if r.partition < partitions[topic] else None
                same += partition is not None
                by_key += partition is None
                future = producer.send(
                    topic,
                    value=value,
                    key=key,
                    headers=list(r.headers) or None,
                    partition=partition,
                    timestamp_ms=r.timestamp_ms if keep_timestamps and r.timestamp_ms >= 0 else None,
                )
                future.add_errback(errors.append)
                sent[topic] += 1
                REPLAYED.labels(topic=topic).inc()
        producer.flush()
    finally:
        producer.close()
    if errors:
        raise ReplayError(
            f"{len(errors)} of {sum(sent.values())} records were not delivered; first error: {errors[0]!r}"
        )
    return ReplaySummary(
        sent=dict(sent),
        same_partition=same,
        by_key=by_key,
        rewritten=rewritten,
        kept_as_recorded=kept,
        skipped=skipped,
        recorded_span_s=max(0, info.end_ns - info.start_ns) / 1e9,
        elapsed_s=time.monotonic() - start if start is not None else 0.0,
        speed=speed,
    )


__all__ = ["ReplayError", "ReplaySummary", "RecordingError", "parse_topic_map", "replay"]
