"""The frames producer: connect with retries and backoff, and say clearly when the broker is away."""

from __future__ import annotations

import logging
import time

from infra import kafka
from infra.settings import Settings

log = logging.getLogger(__name__)

# Frames are tens of kilobytes: batches of up to 1 MiB let a few frames share one request, and
# send() blocks at most max_block_ms (metadata missing, buffer full) so the sender can back off.
FRAME_PRODUCER_OPTIONS = dict(
    batch_size=1 << 20, linger_ms=5, max_block_ms=5000, request_timeout_ms=10000, delivery_timeout_ms=30000
)


class BrokerUnavailable(RuntimeError):
    """The broker did not answer within the connect timeout, or lacks the frames topic."""


def connect(settings: Settings, timeout_s: float = 30.0, topic: str | None = None, **overrides):
    """A KafkaProducer for frames, retrying with exponential backoff until ``timeout_s`` has passed.

    With ``topic`` the producer also waits for that topic's metadata, so a missing topic is reported
    now rather than as a failure on every frame.
    """
    from kafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError

    options = {**FRAME_PRODUCER_OPTIONS, **overrides}
    deadline = time.monotonic() + timeout_s
    delay, attempt = 0.5, 0
    while True:
        attempt += 1
        remaining = deadline - time.monotonic()
        try:
            producer = kafka.producer(
                settings, bootstrap_timeout_ms=int(max(0.5, min(remaining, 5.0)) * 1000), **options
            )
            break
        except (KafkaTimeoutError, KafkaConnectionError) as exc:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrokerUnavailable(
                    f"the broker at {settings.kafka_bootstrap} did not answer within {timeout_s:.0f} s "
                    f"({attempt} attempts; last error: {exc}). Is it running (`booth stack up`), and is "
                    "BOOTH_KAFKA_BOOTSTRAP right?"
                ) from None
            wait = min(delay, remaining)
            log.warning("broker at %s is not reachable (%s); retrying in %.1f s", settings.kafka_bootstrap, exc, wait)
            time.sleep(wait)
            delay = min(delay * 2, 5.0)
    if topic:
        try:
            producer.partitions_for(topic)
        except KafkaError as exc:
            producer.close(timeout=1)
            raise BrokerUnavailable(
                f"topic {topic} is not available on {settings.kafka_bootstrap} ({exc}); "
                "`booth stack up` creates the topics"
            ) from None
    return producer
