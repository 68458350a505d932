"""Kafka clients built from Settings, so security options and limits are set in one place."""

from __future__ import annotations

import logging
import ssl
import time

from infra.settings import Settings
from infra.waiting import wait_until

log = logging.getLogger(__name__)

_LOGGED_ARG_LIMIT = 256  # bytes, or characters of an argument's text


def _short(arg: object) -> object:
    if isinstance(arg, (bytes, bytearray, memoryview)):
        return f"<{len(arg)} bytes>" if len(arg) > _LOGGED_ARG_LIMIT else arg
    if isinstance(arg, (int, float, bool)) or arg is None:
        return arg
    text = str(arg)  # a request or response object: its text may hold every record it carries
    return f"<{type(arg).__name__}, {len(text)} characters>" if len(text) > 4 * _LOGGED_ARG_LIMIT else arg


class _NoPayloads(logging.Filter):
    """At debug level the Kafka clients log every record they send (value included), the raw bytes
    they send and receive, and whole requests and responses: a camera frame's image would land in
    the log. A long argument is logged as its size."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_short(a) for a in record.args)
        return True


_NO_PAYLOADS = _NoPayloads()
CLIENT_LOGGERS = ("kafka", "aiokafka")


def hide_payloads() -> None:
    """Put the filter on every logger of the Kafka clients there is (on the loggers themselves, so
    it holds whatever handlers a process configures). Each client factory below calls it, once the
    client's modules (and their loggers) are imported; calling it again is harmless."""
    for name in list(logging.root.manager.loggerDict):
        if name.split(".", 1)[0] in CLIENT_LOGGERS:
            logger = logging.getLogger(name)
            if _NO_PAYLOADS not in logger.filters:
                logger.addFilter(_NO_PAYLOADS)


def _security(settings: Settings) -> dict:
    opts: dict = {"security_protocol": settings.kafka_security_protocol}
    if settings.kafka_sasl_mechanism:
        opts["sasl_mechanism"] = settings.kafka_sasl_mechanism
        opts["sasl_plain_username"] = settings.kafka_sasl_username
        if settings.kafka_sasl_password is not None:
            opts["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    if settings.kafka_ssl_cafile:
        opts["ssl_cafile"] = str(settings.kafka_ssl_cafile)
    if settings.kafka_ssl_certfile:
        opts["ssl_certfile"] = str(settings.kafka_ssl_certfile)
    if settings.kafka_ssl_keyfile:
        opts["ssl_keyfile"] = str(settings.kafka_ssl_keyfile)
    return opts


def _delivery(settings: Settings) -> dict:
    """Idempotent sends where the broker keeps producer ids (settings.kafka_idempotence). Without:
    after a restart of a broker that forgot producer ids (the embedded one) InitProducerId fails,
    which kafka-python treats as fatal, so plain retries with one request in flight keep each key's
    order and a retried duplicate is dropped downstream by seq."""
    if settings.kafka_idempotence:
        return dict(enable_idempotence=True, max_in_flight_requests_per_connection=5)
    return dict(enable_idempotence=False, max_in_flight_requests_per_connection=1)


def producer(settings: Settings, **overrides):
    from kafka import KafkaProducer

    hide_payloads()
    opts = dict(
        bootstrap_servers=settings.kafka_bootstrap,
        max_request_size=settings.kafka_max_message_bytes,
        acks="all",
        linger_ms=5,
        retries=5,
        **_delivery(settings),
        **_security(settings),
    )
    opts.update(overrides)
    return KafkaProducer(**opts)


def consumer(settings: Settings, *topics: str, group_id: str | None, **overrides):
    from kafka import KafkaConsumer

    hide_payloads()
    opts = dict(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=group_id,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
        max_partition_fetch_bytes=settings.kafka_max_message_bytes,
        fetch_max_bytes=max(settings.kafka_max_message_bytes, 52_428_800),
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
        **_security(settings),
    )
    opts.update(overrides)
    return KafkaConsumer(*topics, **opts)


def fetched_end_offsets(settings: Settings, ends: dict, timeout_s: float = 10.0) -> dict:
    """End offsets (as from ListOffsets "latest") checked against a fetch response's high watermark.

    The embedded broker answers ListOffsets "latest" with the first offset of the partition's last
    batch + 1, short by the rest of that batch; a fetch response's high watermark is right on it and
    on Apache Kafka alike, and is taken whenever a fetch answers: after a restart that lost its log
    the embedded broker may list an end past an empty partition (a write it refused still counted),
    which recovery would wait for in vain. `ends` maps (topic, partition) tuples to offsets; the
    same keys come back.
    """
    from kafka import TopicPartition

    out = dict(ends)
    todo = {TopicPartition(tp[0], tp[1]): tp for tp, end in ends.items() if end}  # empty: nothing to check
    if not todo:
        return out
    c = consumer(settings, group_id=None)
    try:
        c.assign(list(todo))
        for ktp, tp in todo.items():
            c.seek(ktp, ends[tp] - 1)  # a record the broker says exists: the fetch returns at once
        deadline = time.monotonic() + timeout_s
        while todo and time.monotonic() < deadline:
            c.poll(timeout_ms=200, max_records=1)
            for ktp in [k for k in todo if c.highwater(k) is not None]:
                tp = todo.pop(ktp)
                out[tp] = c.highwater(ktp)
        if todo:
            log.warning("no fetch answered for %s within %.0f s: kept the listed end offsets", sorted(todo), timeout_s)
    finally:
        c.close()
    return out


def admin(settings: Settings):
    from kafka import KafkaAdminClient

    hide_payloads()
    return KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, **_security(settings))


HOUR_MS = 3_600_000
# Apache Kafka checks retention every log.retention.check.interval.ms (5 minutes by default).
RETENTION_CHECK_MS = 5 * 60_000


def topic_configs(settings: Settings) -> dict[str, dict[str, str]]:
    """Standard topic configs per topic: the visitor topics are deleted by time. A segment is
    deleted once its newest record is older than retention.ms, and a segment takes records for
    segment.ms, so a record goes at most retention.ms + segment.ms (+ the broker's check interval)
    after it was written; other topics keep the broker's default."""
    retention_ms = round(settings.broker_retention_hours * HOUR_MS)
    segment_ms = min(retention_ms, HOUR_MS)
    visitor = {"cleanup.policy": "delete", "retention.ms": str(retention_ms), "segment.ms": str(segment_ms)}
    return {topic: dict(visitor) for topic in settings.visitor_topics()}


def changelog_configs(settings: Settings) -> dict[str, str]:
    """The stream workers' keyed state (infra.changelog): compacted, and compacted within the
    visitor topics' retention, so a value overwritten or tombstoned by a purge is gone by then."""
    retention_ms = round(settings.broker_retention_hours * HOUR_MS)
    return {
        "cleanup.policy": "compact",
        "segment.ms": str(min(retention_ms, HOUR_MS)),
        "max.compaction.lag.ms": str(retention_ms),
    }


SMOOTHER_TABLE = "smoother_state"
TRACKER_TABLE = "tracker_state"
# Every table the stream workers keep keyed "<session>/<camera>": purge and retention tombstone them all.
SESSION_TABLES = (SMOOTHER_TABLE, TRACKER_TABLE)


def changelog_topic(settings: Settings, table: str = SMOOTHER_TABLE) -> str:
    """Faust's name for a table's changelog: <app id>-<table>-changelog (the app id is the
    processors' consumer group)."""
    return f"{settings.group('processors')}-{table}-changelog"


def changelog_topics(settings: Settings) -> list[str]:
    """The changelogs of every SESSION_TABLES table (infra.changelog reads and tombstones them)."""
    return [changelog_topic(settings, table) for table in SESSION_TABLES]


def ensure_topics(settings: Settings, recreate: bool = False) -> dict[str, int]:
    """Create the project's topics with explicit partition counts (never rely on auto-create) and
    their configs (topic_configs), and set those configs on topics that exist already, the
    workers' changelogs included."""
    from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
    from kafka.errors import TopicAlreadyExistsError, UnknownTopicOrPartitionError

    specs = settings.topic_specs()
    wanted = {name: spec.partitions for name, spec in specs.items()}
    configs = topic_configs(settings)
    client = admin(settings)
    try:
        existing = set(client.list_topics())
        if recreate:
            doomed = [t for t in wanted if t in existing]
            if doomed:
                try:
                    client.delete_topics(doomed)
                except UnknownTopicOrPartitionError:
                    pass
                wait_until(lambda: not (set(client.list_topics()) & set(doomed)), 20, what="topics to be deleted")
            existing -= set(doomed)
        new = [
            NewTopic(
                name,
                spec.partitions,
                spec.replication_factor,
                topic_configs={**spec.configs(), **configs.get(name, {})},
            )
            for name, spec in specs.items()
            if name not in existing
        ]
        if new:
            try:
                client.create_topics(new)
            except TopicAlreadyExistsError:
                pass
            wait_until(lambda: set(wanted) <= set(client.list_topics()), 20, what="topics to be created")
        altered = {name: configs[name] for name in configs if name in existing}
        altered.update({name: changelog_configs(settings) for name in changelog_topics(settings) if name in existing})
        if altered:
            resources = [ConfigResource(ConfigResourceType.TOPIC, n, configs=c) for n, c in altered.items()]
            _check_altered(client.alter_configs(resources, raise_on_unknown=False))
        return wanted
    finally:
        client.close()


def _check_altered(response: dict) -> None:
    """Raise naming the topic when the broker refused a config."""
    for name, result in (response.get("topic") or {}).items():
        if result != "OK":
            raise RuntimeError(f"the broker refused the configs of topic {name}: {result}")


def topic_settings(settings: Settings, topics: list[str]) -> dict[str, dict[str, str]]:
    """Each topic's configs as the broker reports them (name -> value, defaults included)."""
    from kafka.admin import ConfigResource, ConfigResourceType

    client = admin(settings)
    try:
        # Every key (a key list makes the embedded broker drop the connection), filtered here.
        described = client.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t) for t in topics], config_filter="all"
        )
    finally:
        client.close()
    found = described.get("topic") or {}
    return {
        t: {k: str(v["value"]) for k, v in (found.get(t) or {}).items() if v.get("value") is not None} for t in topics
    }


def embedded_broker(settings: Settings) -> bool:
    """Whether the broker is the embedded one (Tansu), which keeps topic configs but applies
    neither retention nor compaction: its records stay until it stops (memory storage)."""
    client = admin(settings)
    try:
        return "tansu" in str(client.describe_cluster().get("cluster_id") or "").lower()
    finally:
        client.close()


def aiokafka_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if settings.kafka_security_protocol not in ("SSL", "SASL_SSL"):
        return None
    from aiokafka.helpers import create_ssl_context

    return create_ssl_context(
        cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None,
        certfile=str(settings.kafka_ssl_certfile) if settings.kafka_ssl_certfile else None,
        keyfile=str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None,
    )


def faust_broker_options(settings: Settings) -> dict:
    """Keyword arguments for faust.App that reach the same broker with the same limits."""
    import faust

    hide_payloads()
    opts: dict = dict(
        broker=f"kafka://{settings.kafka_bootstrap}",
        broker_session_timeout=settings.kafka_session_timeout_ms / 1000,
        broker_heartbeat_interval=settings.kafka_heartbeat_interval_ms / 1000,
        producer_max_request_size=settings.kafka_max_message_bytes,
        consumer_max_fetch_size=settings.kafka_max_message_bytes,
        # Faust's own topics (table changelogs, its leader topic) as replicated as the project's.
        topic_replication_factor=settings.kafka_replication_factor,
    )
    context = aiokafka_ssl_context(settings)
    if settings.kafka_sasl_mechanism:
        password = settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else ""
        opts["broker_credentials"] = faust.SASLCredentials(
            username=settings.kafka_sasl_username or "",
            password=password,
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=context,
        )
    elif context is not None:
        opts["broker_credentials"] = faust.SSLCredentials(context)
    return opts
