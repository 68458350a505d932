"""Five corrections to Faust's consumer and table recovery, and one producer option, applied before
the app is built (`apply`).

They patch classes at run time, so they are written against faust-streaming 0.15 and aiokafka
0.14 (both pinned in pyproject.toml), and each wraps Faust's own method rather than replacing it.
`check_targets` runs first and refuses to start when any patched method or attribute is missing
or has another shape (a newer release moved it): a patch that silently stops applying would bring
the frame loss back. Without the last two fixes, the restart tests in
tests/test_processors_stream.py and tests/test_processors_recovery.py fail.
"""

from __future__ import annotations

import inspect
import logging


class IncompatibleRelease(RuntimeError):
    """faust-streaming or aiokafka no longer has what processors.faust_fixes patches."""


def _params(fn) -> list[str]:
    return list(inspect.signature(getattr(fn, "__wrapped__", fn)).parameters)


def check_targets() -> list[str]:
    """Check every patched target has the expected shape; returns what was checked, raises
    IncompatibleRelease naming what is wrong otherwise."""
    import aiokafka
    from faust.tables.recovery import Recovery
    from faust.transport import consumer as faust_consumer
    from faust.transport.drivers import aiokafka as driver

    thread = driver.AIOKafkaConsumerThread
    expected = [
        (
            "faust AIOKafkaConsumerThread._create_worker_consumer",
            getattr(thread, "_create_worker_consumer", None),
            ["self", "transport"],
            False,
        ),
        (
            "faust AIOKafkaConsumerThread._highwaters",
            getattr(thread, "_highwaters", None),
            ["self", "partitions"],
            True,
        ),
        (
            "faust Recovery.on_recovery_completed",
            getattr(Recovery, "on_recovery_completed", None),
            ["self", "generation_id"],
            True,
        ),
        ("faust Recovery._resume_streams", getattr(Recovery, "_resume_streams", None), ["self", "generation_id"], True),
        (
            "faust Recovery._build_highwaters",
            getattr(Recovery, "_build_highwaters", None),
            ["self", "consumer", "tps", "destination", "title"],
            True,
        ),
        ("faust Consumer.stop_flow", getattr(faust_consumer.Consumer, "stop_flow", None), ["self"], False),
        ("faust aiokafka Producer._settings_extra", getattr(driver.Producer, "_settings_extra", None), ["self"], False),
        ("faust Consumer.perform_seek", getattr(faust_consumer.Consumer, "perform_seek", None), ["self"], True),
    ]
    problems, checked = [], []
    for name, fn, params, coroutine in expected:
        if fn is None or not callable(fn):
            problems.append(f"{name} is missing")
            continue
        if _params(fn) != params:
            problems.append(f"{name} takes {_params(fn)}, expected {params}")
        if coroutine and not inspect.iscoroutinefunction(getattr(fn, "__wrapped__", fn)):
            problems.append(f"{name} is no longer a coroutine function")
        checked.append(name)
    # aiokafka reads the fetch wait from this attribute when its fetcher starts.
    source = inspect.getsource(aiokafka.AIOKafkaConsumer)
    if (
        "self._fetch_max_wait_ms = fetch_max_wait_ms" not in source
        or "fetch_max_wait_ms=self._fetch_max_wait_ms" not in source
    ):
        problems.append("aiokafka AIOKafkaConsumer no longer keeps its fetch wait in _fetch_max_wait_ms")
    else:
        checked.append("aiokafka AIOKafkaConsumer._fetch_max_wait_ms")
    if problems:
        raise IncompatibleRelease(
            "processors/faust_fixes.py cannot patch this faust-streaming / aiokafka release ("
            + "; ".join(problems)
            + "); install the versions pyproject.toml pins"
        )
    return checked


def limit_fetch_wait(max_wait_ms: int) -> None:
    """Faust builds its consumer with fetch_max_wait_ms=1500 and offers no setting for it; a broker
    that holds fetches for the full wait would add 1.5 s to every hop. Set it on the consumer Faust
    creates, before it starts (aiokafka reads the attribute when its fetcher starts)."""
    from faust.transport.drivers import aiokafka as driver

    original = getattr(driver.AIOKafkaConsumerThread._create_worker_consumer, "__wrapped__", None)
    original = original or driver.AIOKafkaConsumerThread._create_worker_consumer

    def create(self, transport):
        consumer = original(self, transport)
        consumer._fetch_max_wait_ms = max_wait_ms
        return consumer

    create.__wrapped__ = original
    driver.AIOKafkaConsumerThread._create_worker_consumer = create


def seek_before_resuming_streams() -> None:
    """Hold the consumer's flow while recovery hands the stream partitions back.

    When a worker has recovered its tables, Faust resumes the stream partitions and only then seeks
    them to their committed offsets, while the consumer is still running (it was reading the
    changelogs) and the app's flow control is not yet resumed. Records fetched in that window reach
    the agents' streams, which skip *and acknowledge* them because flow control is off; the seek
    then rewinds the fetcher but not Faust's read offset, so the re-fetched records are dropped as
    already read. Net effect: a frame that arrived during a restart is never processed and its
    offset is committed. Stopping the flow first makes the fetcher deliver nothing until the seek is
    done; Faust's own code resumes the flow after the seek, as before.
    """
    from faust.tables.recovery import Recovery

    for name in ("on_recovery_completed", "_resume_streams"):
        original = getattr(Recovery, name)
        original = getattr(original, "__wrapped__", original)

        def held(self, generation_id: int = 0, *, _original=original):
            self.app.consumer.stop_flow()
            return _original(self, generation_id)

        held.__wrapped__ = original
        held.__name__ = name
        setattr(Recovery, name, held)


def exact_recovery_highwaters(settings) -> None:
    """Table recovery reads each changelog up to the end offset the broker lists; the embedded broker
    lists the first offset of the last batch + 1, so recovery stopped early and restored a stale
    smoother state. Check the listed ends against a fetch (infra.kafka.fetched_end_offsets), which is
    right on every broker; Faust uses these ends for recovery only."""
    import asyncio

    from faust.transport.drivers import aiokafka as driver

    from infra.kafka import fetched_end_offsets

    original = driver.AIOKafkaConsumerThread._highwaters
    original = getattr(original, "__wrapped__", original)

    async def highwaters(self, partitions):
        ends = await original(self, partitions)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, fetched_end_offsets, settings, dict(ends))

    highwaters.__wrapped__ = original
    driver.AIOKafkaConsumerThread._highwaters = highwaters


def idempotent_producer(enabled: bool) -> None:
    """Faust offers the idempotent producer only inside transactions (exactly-once processing); the
    workers run at least once, with idempotent sends where the broker keeps producer ids
    (settings.kafka_idempotence, infra.kafka._delivery). Faust's producer sends with acks=all."""
    from faust.transport.drivers import aiokafka as driver

    original = driver.Producer._settings_extra
    original = getattr(original, "__wrapped__", original)

    def extra(self):
        opts = dict(original(self))
        if enabled:
            opts.setdefault("enable_idempotence", True)
        return opts

    extra.__wrapped__ = original
    driver.Producer._settings_extra = extra


def recover_changelogs_behind_checkpoint(group: str) -> None:
    """Read a changelog again from its start when the broker's log of it ends before the offset
    this worker last read from it.

    The worker keeps, per changelog partition, the offset of the last record it applied. A broker
    that lost its log (the embedded in-memory broker restarted) recreates the changelog empty; at
    the next rebalance Faust finds that offset past the new end and stops the worker with
    ConsistencyError ("offset 599 > highwater -1"), and even without that check it would skip
    every new record up to the old offset. The table's values in memory are kept (they are still
    the latest this worker knows); the offset is forgotten, so the new changelog is read from its
    start, with a warning and booth_consumer_log_resets_total. Runs where Faust compares the two,
    right after building the ends: before the active partitions are sought (their seek then uses
    the forgotten offset) and after the standby ones were (they are sought again here).
    """
    from faust.tables.recovery import Recovery

    from infra.metrics_names import LOG_RESETS

    log = logging.getLogger(__name__)
    original = Recovery._build_highwaters
    original = getattr(original, "__wrapped__", original)

    async def build_highwaters(self, consumer, tps, destination, title):
        await original(self, consumer, tps, destination, title)
        offsets = self.active_offsets if destination is self.active_highwaters else self.standby_offsets
        behind = {}
        for tp in tps:
            offset, end = offsets.get(tp), destination.get(tp)
            if offset is not None and end is not None and offset > end:
                log.warning(
                    "changelog %s[%d] ends at %d, before offset %d this worker read: the broker lost its log; "
                    "reading it again from its start",
                    tp.topic,
                    tp.partition,
                    end,
                    offset,
                )
                LOG_RESETS.labels(group, tp.topic).inc()
                offsets[tp] = None
                behind[tp] = 0
        if behind and destination is not self.active_highwaters:
            await consumer.seek_wait(behind)

    build_highwaters.__wrapped__ = original  # type: ignore[attr-defined]
    Recovery._build_highwaters = build_highwaters


def read_lost_streams_again(group: str) -> None:
    """After a rebalance's seek to the committed offsets, seek a partition whose position is past
    its log's end to that log's start.

    A broker that lost its log (the embedded in-memory broker restarted) forgets the group too, so
    every worker rebalances; its fetch positions and Faust's own bookkeeping still point into the
    old logs, past the ends of the recreated ones, and the broker answers such a fetch with nothing
    rather than an out-of-range error: the worker would never see a new frame. Everything in such a
    log came after the loss; Faust's read, acknowledged and committed offsets of the partition are
    forgotten with the seek, with a warning and booth_consumer_log_resets_total. A new log that has
    already grown past the old position by then cannot be told from an old one (not promised).
    """
    from faust.transport import consumer as faust_consumer

    from infra.metrics_names import LOG_RESETS

    log = logging.getLogger(__name__)
    original = faust_consumer.Consumer.perform_seek
    original = getattr(original, "__wrapped__", original)

    async def perform_seek(self) -> None:
        await original(self)
        tps = set(self.assignment())
        if not tps:
            return
        ends = await self.highwaters(*tps)
        for tp in sorted(tps):
            end = ends.get(tp)
            position = await self.position(tp) if end is not None else None
            if position is None or end is None or position <= end:
                continue
            log.warning(
                "%s[%d]: read position %d is beyond the broker's log end %d: the broker lost its log; "
                "reading it again from its start",
                tp.topic,
                tp.partition,
                position,
                end,
            )
            LOG_RESETS.labels(group, tp.topic).inc()
            for book in (self._gap, self._acked, self._acked_index, self._committed_offset):
                book.pop(tp, None)
            await self.seek(tp, 0)

    perform_seek.__wrapped__ = original  # type: ignore[attr-defined]
    faust_consumer.Consumer.perform_seek = perform_seek


def apply(settings) -> None:
    check_targets()
    idempotent_producer(settings.kafka_idempotence)
    limit_fetch_wait(settings.kafka_live_fetch_max_wait_ms)
    seek_before_resuming_streams()
    exact_recovery_highwaters(settings)
    recover_changelogs_behind_checkpoint(settings.group("processors"))
    read_lost_streams_again(settings.group("processors"))
