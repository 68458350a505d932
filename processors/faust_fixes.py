"""Three corrections to Faust's consumer, applied before the app is built (`apply`).

They patch classes at run time, so they are written against faust-streaming 0.15 (pinned in
pyproject.toml), and each wraps Faust's own method rather than replacing it. Without the last two, the
restart tests in tests/test_processors_stream.py and tests/test_processors_recovery.py fail.
"""

from __future__ import annotations


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


def apply(settings) -> None:
    limit_fetch_wait(settings.kafka_fetch_max_wait_ms)
    seek_before_resuming_streams()
    exact_recovery_highwaters(settings)
