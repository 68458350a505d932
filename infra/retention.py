"""Retention: how long each kind of a visitor's data is kept, and deleting what is due.

The policy: every object under ``sessions/`` and ``purged/`` has a retention class
(schemas.layout.retention_class: frames, checkpoints, videos, records) and is kept that many days
after it was written (settings ``retention_*_days``; records as long as the longest). A session
without the visitor's consent keeps only its video and records once the video is made (the
trainer discards the rest then; `apply_retention` does it too, as a backstop).

Two enforcers read the same settings:

* `apply_retention` (``booth retention apply``) lists the bucket and deletes what is due, discards
  unconsented sessions' data whose video is made (or whose dataset failed), and writes tombstones
  for stream-worker state (infra.changelog) not updated for as long as frames are kept. It works
  on any S3 server and deletes at exactly the number of days.
* `lifecycle_rules` / `apply_lifecycle` (``booth retention lifecycle``): the same days as the
  bucket's lifecycle rules, one per class on the objects' ``booth-retention`` tag plus a rule for
  everything under ``sessions/`` (objects written before tagging), so the store deletes them
  itself (MinIO, S3). S3 counts lifecycle days to the next midnight UTC: the store deletes up to a
  day later than ``apply`` would. Servers without lifecycle support refuse the rules
  (`LifecycleError`); ``apply`` is then the enforcer.

Presigned links to a video never outlive it: `video_link_expiry_s`.

A camera host may also hold visitors' frames: ``booth camera --record-first`` recordings in its
spool (producers/spool.py: ``<state_dir>/spool/<state>/<session>.<camera>.<first ns>``, a folder
or a pair of files with that stem), kept in ``done/`` after publishing by default.
`apply_retention` deletes finished ones (``done/``, ``failed/``) older than the frames' days on the
host it runs on; a purge there deletes the session's.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.changelog import KeyState, changelog_topics, latest_keys, write_tombstones
from infra.objectstore import MAX_LINK_S, RETENTION_TAG, ObjectStore, StoredObject
from infra.settings import Settings
from schemas import layout, validate_id

log = logging.getLogger(__name__)

DAY_S = 24 * 3600


class LifecycleError(RuntimeError):
    """The object store refused the lifecycle rules, or did not keep them."""


def consent_of(store: ObjectStore, session: str) -> bool | None:
    """The session's recorded consent: its consent record, else its manifest; None if neither says."""
    for key in (layout.consent_key(session), layout.manifest_key(session)):
        raw = store.get(key)
        if raw is None:
            continue
        try:
            value = json.loads(raw).get("consent")
        except (ValueError, AttributeError):
            continue
        if isinstance(value, bool):
            return value
    return None


def discard_unconsented(store: ObjectStore, session: str) -> list[str]:
    """Delete what a session without consent does not keep once its video is made (everything but
    schemas.layout.kept_without_consent); returns the keys deleted."""
    kept = layout.kept_without_consent(session)
    doomed = [k for k in store.list(layout.session_prefix(session)) if k not in kept]
    for key in doomed:
        store.delete(key)
    if doomed:
        log.info("session %s (no consent): %d objects discarded after its video", session, len(doomed))
    return doomed


SPOOL_FINISHED = ("done", "failed")  # spool states whose recordings no process will read again
SPOOL_STATES = ("pending", "publishing", *SPOOL_FINISHED)  # all but one being written


def spool_recordings(settings: Settings, states=SPOOL_STATES, session: str | None = None) -> list[Path]:
    """This host's spool recordings in ``states`` (of one session, or all): each a recording's
    folder or one of its files, named <session>.<camera>.<first ns>[.mp4|.json]."""
    root = Path(settings.state_dir) / "spool"
    pattern = f"{validate_id(session, 'session')}.*" if session else "*.*"
    return sorted(p for state in states for p in (root / state).glob(pattern))


def remove_recording(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def video_link_expiry_s(settings: Settings, written_at: float, now: float | None = None) -> float:
    """Seconds a presigned link to a video written at ``written_at`` may live: the link setting,
    and never past the video's own deletion (retention_videos_days after it was written)."""
    now = time.time() if now is None else now
    left = written_at + settings.retention_videos_days * DAY_S - now
    return max(1.0, min(float(settings.link_expiry_s), float(MAX_LINK_S), left))


# --- booth retention apply -----------------------------------------------------------------------
@dataclass
class RetentionReport:
    now: float
    dry_run: bool
    deleted: dict[str, list[str]] = field(default_factory=dict)  # retention class -> keys
    discarded: dict[str, list[str]] = field(default_factory=dict)  # unconsented session -> keys
    tombstones: list[KeyState] = field(default_factory=list)
    recordings: list[Path] = field(default_factory=list)  # this host's finished spool recordings
    kept: int = 0  # objects looked at and not due

    @property
    def total(self) -> int:
        return sum(map(len, self.deleted.values())) + sum(map(len, self.discarded.values()))


def due_objects(settings: Settings, objects: list[StoredObject], now: float) -> list[tuple[StoredObject, str]]:
    """(object, class) of every object older than its class's days."""
    days = settings.retention_days()
    out = []
    for obj in objects:
        kind = layout.retention_class(obj.key)
        if kind is not None and obj.written_at + days[kind] * DAY_S <= now:
            out.append((obj, kind))
    return out


def _unconsented_done(store: ObjectStore, session: str, keys: set[str]) -> bool:
    """Whether a session is past needing its frames: its video is made, or its dataset failed or
    was aborted (no video will be)."""
    if layout.result_key(session, "rendition.mp4") in keys:
        return True
    raw = store.get(layout.manifest_key(session)) if layout.manifest_key(session) in keys else None
    try:
        return raw is not None and json.loads(raw).get("status") in ("failed", "aborted")
    except ValueError:
        return False


def apply_retention(
    settings: Settings, *, now: float | None = None, dry_run: bool = False, store: ObjectStore | None = None
) -> RetentionReport:
    """Delete what the policy says is due (module doc); with dry_run, only report it."""
    now = time.time() if now is None else now
    store = store or ObjectStore(settings)
    report = RetentionReport(now=now, dry_run=dry_run)
    objects = store.list_info(layout.SESSIONS_PREFIX) + store.list_info(layout.PURGED_PREFIX)
    due = due_objects(settings, objects, now)
    for obj, kind in due:
        report.deleted.setdefault(kind, []).append(obj.key)
    report.kept = len(objects) - len(due)

    gone = {obj.key for obj, _ in due}
    by_session: dict[str, set[str]] = defaultdict(set)
    for obj in objects:
        session = layout.session_of_key(obj.key)
        if session is not None and obj.key.startswith(layout.SESSIONS_PREFIX) and obj.key not in gone:
            by_session[session].add(obj.key)
    for session, keys in sorted(by_session.items()):
        extra = sorted(keys - layout.kept_without_consent(session))
        if not extra or consent_of(store, session) is True or not _unconsented_done(store, session, keys):
            continue
        report.discarded[session] = extra
        report.kept -= len(extra)

    stale_before = now - settings.retention_frames_days * DAY_S
    state = [k for topic in changelog_topics(settings) for k in latest_keys(settings, topic) or []]
    report.tombstones = [k for k in state if not k.deleted and k.timestamp_ms <= stale_before * 1000]
    report.recordings = [p for p in spool_recordings(settings, SPOOL_FINISHED) if p.stat().st_mtime <= stale_before]

    if not dry_run:
        for doomed in (*report.deleted.values(), *report.discarded.values()):
            for key in doomed:
                store.delete(key)
        write_tombstones(settings, report.tombstones)
        for path in report.recordings:
            remove_recording(path)
    log.info(
        "retention%s: %d objects due, %d discarded without consent, %d state tombstones, %d local recordings, %d kept",
        " (dry run)" if dry_run else "",
        sum(map(len, report.deleted.values())),
        sum(map(len, report.discarded.values())),
        len(report.tombstones),
        len(report.recordings),
        report.kept,
    )
    return report


# --- lifecycle rules ---------------------------------------------------------------------------
def lifecycle_rules(settings: Settings) -> Any:
    """The bucket lifecycle rules (a minio LifecycleConfig) that enforce the same policy."""
    from minio.commonconfig import ENABLED, Filter, Tag
    from minio.lifecycleconfig import Expiration, LifecycleConfig, Rule

    days = settings.retention_days()
    rules = [
        Rule(
            ENABLED,
            rule_filter=Filter(tag=Tag(RETENTION_TAG, kind)),
            rule_id=f"booth-{kind}",
            expiration=Expiration(days=days[kind]),
        )
        for kind in layout.RETENTION_CLASSES
    ]
    # Objects written before they were tagged: nothing under sessions/ outlives the longest class.
    rules.append(
        Rule(
            ENABLED,
            rule_filter=Filter(prefix=layout.SESSIONS_PREFIX),
            rule_id="booth-sessions",
            expiration=Expiration(days=days["records"]),
        )
    )
    return LifecycleConfig(rules)


def _rule_summary(config: Any) -> dict[str, tuple[int | None, str | None, tuple[str, str] | None]]:
    """rule id -> (days, prefix, tag): what must survive a round trip through the store."""
    summary = {}
    for rule in getattr(config, "rules", None) or []:
        flt = rule.rule_filter
        tag = flt.tag if flt is not None else None
        summary[rule.rule_id] = (
            rule.expiration.days if rule.expiration else None,
            flt.prefix if flt is not None else None,
            (tag.key, tag.value) if tag is not None else None,
        )
    return summary


def apply_lifecycle(settings: Settings, store: ObjectStore | None = None) -> Any:
    """Set the lifecycle rules on the bucket and read them back; LifecycleError names what went
    wrong when the store refuses them or does not keep them."""
    from minio.error import S3Error

    store = store or ObjectStore(settings)
    wanted = lifecycle_rules(settings)
    try:
        store.set_lifecycle(wanted)
    except S3Error as exc:
        raise LifecycleError(
            f"the object store at {settings.s3_endpoint} refused the lifecycle rules ({exc.code}: {exc.message}); "
            "run `booth retention apply` periodically instead"
        ) from None
    try:
        kept = store.get_lifecycle()
    except S3Error as exc:
        raise LifecycleError(
            f"the object store at {settings.s3_endpoint} took the lifecycle rules but cannot show them back "
            f"({exc.code}); run `booth retention apply` periodically instead"
        ) from None
    if _rule_summary(kept) != _rule_summary(wanted):
        raise LifecycleError(
            f"the object store at {settings.s3_endpoint} did not keep the lifecycle rules (it holds "
            f"{sorted(_rule_summary(kept))}); run `booth retention apply` periodically instead"
        )
    return kept
