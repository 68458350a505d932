"""Dead letters: whatever a stage cannot process goes to the dead-letter topic with the reason.

Nothing is dropped silently: each dead letter is also counted in booth_deadletters_total{stage}
and logged once as a warning.
"""

from __future__ import annotations

import logging
import time

from prometheus_client import Counter

from infra.settings import Settings
from schemas import DeadLetter

log = logging.getLogger(__name__)

DEADLETTERS = Counter("booth_deadletters_total", "Messages sent to the dead-letter topic", ["stage"])


def build(
    stage: str, reason: str, topic: str, key: bytes | None, value: bytes | None, partition: int = -1, offset: int = -1
) -> DeadLetter:
    DEADLETTERS.labels(stage).inc()
    log.warning(
        "dead letter from %s (%s[%s]@%s key=%r): %s", stage, topic, partition, offset, DeadLetter.key_text(key), reason
    )
    return DeadLetter.wrap(
        stage=stage,
        reason=reason,
        topic=topic,
        value=value,
        key=key,
        partition=partition,
        offset=offset,
        wall_time=time.time(),
    )


def send_dead_letter(
    producer,
    settings: Settings,
    stage: str,
    reason: str,
    topic: str,
    key: bytes | None,
    value: bytes | None,
    partition: int = -1,
    offset: int = -1,
):
    """Send with a kafka-python producer; returns the send future."""
    letter = build(stage, reason, topic, key, value, partition, offset)
    return producer.send(settings.topic_deadletter, key=record_key(letter), value=letter.encode())


def record_key(letter: DeadLetter) -> bytes | None:
    """The dead letter's own record key: the original's, as the letter keeps it (printable text)."""
    return None if letter.key is None else letter.key.encode("utf-8")
