"""Session lifecycle events: a camera run is bound to a session that was started.

A start records whether the visitor consented to their recording being kept after their video is
made (schemas.SessionEvent); without consent nothing of theirs is kept beyond the video.
"""

from __future__ import annotations

import time
import uuid

from infra import kafka
from infra.settings import Settings
from schemas import SessionEvent, validate_id


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
) -> SessionEvent:
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
    p = kafka.producer(settings)
    try:
        p.send(settings.topic_sessions, key=session.encode(), value=event.encode()).get(timeout=30)
    finally:
        p.close()
    return event
