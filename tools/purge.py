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

What it cannot reach: the session's messages on the stream and control topics, which are not
compacted and go when the broker's time retention says (docs/guarantees.md), and copies made
outside the booth (recordings say whose sessions they hold).
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
class PurgeReport:
    session: str
    marker: str  # the purge marker's key
    event_topic: str  # where the purge event went
    objects: list[str] = field(default_factory=list)  # there when it began or deleted by the first sweep
    late_objects: list[str] = field(default_factory=list)  # written meanwhile, deleted by the second
    changelogs: list[str] = field(default_factory=list)  # those that exist (none: no worker ever ran)
    tombstones: list[KeyState] = field(default_factory=list)
    recordings: list[Path] = field(default_factory=list)  # this host's spool files of the session

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
    report.recordings = spool_recordings(settings, session=session)
    for path in report.recordings:
        remove_recording(path)
    if settle_s > 0:
        time.sleep(settle_s)
        report.late_objects = store.delete_prefix(layout.session_prefix(session))
    return report
