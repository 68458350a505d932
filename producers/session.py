"""Session lifecycle events: a camera run is bound to a session that was started.

A start records whether the visitor consented to their recording being kept after their video is
made (schemas.SessionEvent); without consent nothing of theirs is kept beyond the video.
"""

from __future__ import annotations

import time
import uuid

from infra import kafka
from infra.objectstore import ObjectStore
from infra.settings import Settings
from schemas import SessionEvent, layout, validate_id


class NoReference(ValueError):
    """A session cannot start: it names no reference dance (and none is configured), or one that
    does not exist."""


def session_reference(settings: Settings, reference: str | None, store: ObjectStore | None = None) -> str:
    """The reference dance a new session will be rendered with: the one named, else the configured
    default (BOOTH_DEFAULT_REFERENCE); it must exist in the store. Checked when the session starts,
    so a visitor never records a session that cannot become a video."""
    name = reference or settings.default_reference
    if name is None:
        raise NoReference(
            "a session needs a reference dance: name one (--reference) or configure a default (BOOTH_DEFAULT_REFERENCE)"
        )
    validate_id(name, "reference")
    if not (store or ObjectStore(settings)).exists(layout.reference_latest_key(name)):
        raise NoReference(f"reference dance {name!r} does not exist; add it with `booth reference add`")
    return name


def new_session_id() -> str:
    return time.strftime("s%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


def publish(
    settings: Settings,
    session: str,
    kind: str,
    cameras=(),
    reference: str | None = None,
    note: str = "",
    consent: bool = False,
    producer=None,
) -> SessionEvent:
    """Publish one session event and wait for the broker to have it. A long-lived process (the
    console) passes its own producer; otherwise one is made for this event and closed."""
    validate_id(session, "session")
    event = SessionEvent(
        session=session,
        kind=kind,
        wall_time=time.time(),
        cameras=list(cameras),
        reference=reference,
        note=note,
        consent=consent,
    )
    p = producer or kafka.producer(settings)
    try:
        p.send(settings.topic_sessions, key=session.encode(), value=event.encode()).get(timeout=30)
    finally:
        if producer is None:
            p.close()
    return event
