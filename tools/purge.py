"""`booth session purge`: delete everything of one visitor, and say what was deleted.

In this order:

1. a purge marker in the store (schemas.layout.purge_marker_key): a trainer training the session
   sees it within ``purge_check_s`` and stops; the assembler never takes the session up again,
   even from a replay of its messages;
2. a ``purge`` SessionEvent on the sessions topic: the console and `booth status` drop the
   session's rows, and an assembler with the session open drops it without writing;
3. every object under ``sessions/<session>/``;
4. tombstones for the session's keys in the stream workers' compacted changelogs (infra.changelog);
5. the session's ``--record-first`` recordings in this host's spool (infra.retention), if any
   (run the purge on each camera host that records first, or publish with ``--delete``);
6. after ``settle_s`` (long enough for a running job to notice the marker), a second sweep of
   the session's objects, for anything written meanwhile.

What it cannot reach, and reports with when it goes (``BrokerCopy``): the session's messages on
the stream and control topics, which Kafka cannot delete by key and which go when the topic's time
retention says (the visitor topics: ``broker_retention_hours``), and the values its tombstones
replace, gone at the changelog's next compaction; and copies made outside the booth (recordings
say whose sessions they hold). docs/guarantees.md lists what is deleted when.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from infra import kafka
from infra.changelog import KeyState, changelog_topics, latest_keys, write_tombstones
from infra.objectstore import ObjectStore
from infra.retention import remove_recording, spool_recordings
from infra.settings import Settings
from schemas import SessionEvent, layout, validate_id


@dataclass
class BrokerCopy:
    """The session's records that stay on one topic after the purge, and when they go at the latest."""

    topic: str
    holds: str
    policy: str  # "delete after <h> h", "compacted", or what the broker says
    until: float | None  # epoch seconds; None: the broker never deletes them (the embedded one)


@dataclass
class PurgeReport:
    session: str
    marker: str  # the purge marker's key
    event_topic: str  # where the purge event went
    objects: list[str] = field(default_factory=list)  # there when it began or deleted by the first sweep
    late_objects: list[str] = field(default_factory=list)  # written meanwhile, deleted by the second
    changelogs: list[str] = field(default_factory=list)  # those that exist (none: no worker ever ran)
    tombstones: list[KeyState] = field(default_factory=list)
    recordings: list[Path] = field(default_factory=list)  # this host's spool files of the session
    broker: list[BrokerCopy] = field(default_factory=list)  # what stays on the broker, and until when

    def by_class(self) -> dict[str, int]:
        """Objects deleted per retention class."""
        return dict(Counter(layout.retention_class(k) or "other" for k in self.objects + self.late_objects))


def purge(
    settings: Settings, session: str, *, settle_s: float | None = None, store: ObjectStore | None = None
) -> PurgeReport:
    """Delete everything of ``session`` (module doc); returns what was deleted."""
    validate_id(session, "session")
    settle_s = 2 * settings.purge_check_s + 1 if settle_s is None else settle_s
    store = store or ObjectStore(settings)
    now = time.time()
    report = PurgeReport(session, layout.purge_marker_key(session), settings.topic_sessions)
    # What exists now is what this purge deletes, even where a job that sees the marker first
    # deletes its own part before the sweep below lists it (a trainer looks every purge_check_s).
    existing = store.list(layout.session_prefix(session))
    store.put(report.marker, json.dumps({"session": session, "purged_at": now}).encode(), "application/json")

    event = SessionEvent(session=session, kind="purge", wall_time=now)
    producer = kafka.producer(settings)
    try:
        producer.send(settings.topic_sessions, key=session.encode(), value=event.encode()).get(timeout=30)
    finally:
        producer.close()

    report.objects = sorted(set(existing) | set(store.delete_prefix(layout.session_prefix(session))))
    for topic in changelog_topics(settings):
        keys = latest_keys(settings, topic)
        if keys is not None:
            report.changelogs.append(topic)
            report.tombstones += [k for k in keys if k.session == session and not k.deleted]
    write_tombstones(settings, report.tombstones)
    report.broker = broker_copies(settings, report.changelogs, time.time())
    report.recordings = spool_recordings(settings, session=session)
    for path in report.recordings:
        remove_recording(path)
    if settle_s > 0:
        time.sleep(settle_s)
        report.late_objects = store.delete_prefix(layout.session_prefix(session))
    return report


def broker_copies(settings: Settings, changelogs: list[str], now: float) -> list[BrokerCopy]:
    """When the session's records on each topic go, from the configs the broker reports. Kafka
    deletes a segment once its newest record is older than retention.ms, and rolls a segment after
    segment.ms, checking every few minutes: a record written before `now` is gone by now +
    retention.ms + segment.ms + the check interval. A compacted changelog drops a replaced value
    within max.compaction.lag.ms (+ segment.ms and the check interval)."""
    holds = {
        settings.topic_frames: "frames (pictures)",
        settings.topic_poses: "poses",
        settings.topic_smoothed: "smoothed poses",
        settings.topic_deadletter: "dead letters (no pixels)",
        settings.topic_sessions: "session events (ids, times, consent)",
        settings.topic_datasets: "dataset notices (ids, counts)",
        settings.topic_training: "training progress (ids, losses)",
        settings.topic_renditions: "renditions (links that expire)",
    }
    holds.update({topic: "keyed state: values replaced by tombstones" for topic in changelogs})
    embedded = kafka.embedded_broker(settings)
    configs = kafka.topic_settings(settings, list(holds))
    return [copy_left(t, what, configs.get(t) or {}, t in changelogs, embedded, now) for t, what in holds.items()]


def copy_left(
    topic: str, holds: str, config: dict[str, str], compacted: bool, embedded: bool, now: float
) -> BrokerCopy:
    """When a record of `topic` written before `now` is gone, from the topic's configs (see broker_copies)."""
    if embedded:
        return BrokerCopy(topic, holds, "none: the embedded broker deletes nothing", None)
    slack_s = int(config.get("segment.ms", 7 * 24 * kafka.HOUR_MS)) / 1000 + kafka.RETENTION_CHECK_MS / 1000
    if compacted:
        lag = int(config.get("max.compaction.lag.ms", -1))
        if lag <= 0 or lag >= 2**62:
            return BrokerCopy(topic, holds, "compacted, with no bound on when", None)
        return BrokerCopy(topic, holds, f"compacted within {lag / kafka.HOUR_MS:g} h", now + lag / 1000 + slack_s)
    retention = int(config.get("retention.ms", -1))
    if retention < 0:
        return BrokerCopy(topic, holds, "kept for ever (retention.ms -1)", None)
    return BrokerCopy(
        topic, holds, f"deleted {retention / kafka.HOUR_MS:g} h after writing", now + retention / 1000 + slack_s
    )
