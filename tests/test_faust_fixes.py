"""processors/faust_fixes.py patches private parts of Faust and aiokafka: it must refuse to start on
a release where they moved, rather than silently bring the restart frame loss back."""

from __future__ import annotations

import pytest

from processors import faust_fixes


def test_the_installed_releases_have_every_patched_target():
    checked = faust_fixes.check_targets()
    assert len(checked) == 9
    assert "aiokafka AIOKafkaConsumer._fetch_max_wait_ms" in checked


def test_a_moved_method_is_refused_by_name(monkeypatch):
    from faust.tables.recovery import Recovery

    async def resume(self, generation_id, extra):  # another shape
        return None

    monkeypatch.setattr(Recovery, "_resume_streams", resume)
    with pytest.raises(faust_fixes.IncompatibleRelease, match=r"Recovery\._resume_streams takes"):
        faust_fixes.check_targets()


def test_a_missing_method_and_a_sync_one_are_refused(monkeypatch):
    from faust.transport.drivers import aiokafka as driver

    monkeypatch.delattr(driver.AIOKafkaConsumerThread, "_create_worker_consumer")
    monkeypatch.setattr(driver.AIOKafkaConsumerThread, "_highwaters", lambda self, partitions: {})
    with pytest.raises(faust_fixes.IncompatibleRelease) as info:
        faust_fixes.check_targets()
    assert "_create_worker_consumer is missing" in str(info.value)
    assert "_highwaters is no longer a coroutine function" in str(info.value)


def test_a_renamed_aiokafka_attribute_is_refused(monkeypatch):
    import inspect

    real = inspect.getsource
    monkeypatch.setattr(inspect, "getsource", lambda obj: real(obj).replace("_fetch_max_wait_ms", "_fetch_wait"))
    with pytest.raises(faust_fixes.IncompatibleRelease, match="_fetch_max_wait_ms"):
        faust_fixes.check_targets()


def test_apply_wraps_each_method_once():
    from faust.tables.recovery import Recovery
    from faust.transport.drivers import aiokafka as driver

    from infra.settings import Settings

    settings = Settings()
    faust_fixes.apply(settings)
    first = (Recovery._resume_streams, driver.AIOKafkaConsumerThread._highwaters)
    faust_fixes.apply(settings)
    # Applied again (a second app in one process), each patch still wraps Faust's own method.
    assert Recovery._resume_streams.__wrapped__ is first[0].__wrapped__
    assert driver.AIOKafkaConsumerThread._highwaters.__wrapped__ is first[1].__wrapped__
    faust_fixes.check_targets()  # and the check still sees the originals' shape through the wrappers


def test_the_live_paths_fetch_wait_reaches_the_consumer_faust_builds():
    import asyncio

    import faust

    from infra.settings import Settings

    async def built_wait() -> int:
        app = faust.App("fetch-wait-test", broker="kafka://127.0.0.1:1")
        consumer = app.consumer._thread._create_worker_consumer(app.transport)
        try:
            return consumer._fetch_max_wait_ms
        finally:
            await consumer.stop()

    faust_fixes.apply(Settings(kafka_live_fetch_max_wait_ms=37, kafka_fetch_max_wait_ms=400))
    assert asyncio.run(built_wait()) == 37  # the live path's, not the batch clients'
    faust_fixes.apply(Settings())
    assert asyncio.run(built_wait()) == Settings().kafka_live_fetch_max_wait_ms == 20


def test_a_service_worker_leaves_the_log_level_alone():
    import logging

    import faust

    from processors.app import service_worker

    app = faust.App("log-level-test", broker="kafka://127.0.0.1:1")
    logger = logging.Logger("root-like", logging.WARNING)
    logger.addHandler(logging.NullHandler())
    service_worker(app).on_setup_root_logger(logger, logging.WARNING)
    assert logger.level == logging.WARNING  # no spinner: debug records are not even built
    spinning = faust.Worker(app, loglevel="warning", quiet=True)
    spinning.on_setup_root_logger(logger, logging.WARNING)
    assert logger.level == logging.DEBUG  # what Faust's own worker does, and why it is not used


@pytest.mark.parametrize("enabled", [True, False])
def test_the_workers_producer_is_idempotent_when_the_settings_say_so(enabled):
    """Faust offers idempotent sends only in transactions: the patch gives its producer them with
    settings.kafka_idempotence (and leaves them off without, for the embedded broker)."""
    import asyncio

    import faust

    from infra.kafka import faust_broker_options
    from infra.settings import Settings

    settings = Settings(kafka_bootstrap="127.0.0.1:1", kafka_idempotence=enabled)
    faust_fixes.idempotent_producer(settings.kafka_idempotence)
    app = faust.App("idempotence-test", **faust_broker_options(settings))

    async def build():
        return app.producer._new_producer()

    producer = asyncio.run(build())
    assert (producer._txn_manager is not None) is enabled
    assert app.conf.producer_acks == -1  # acks=all, which idempotent sends need


def test_a_changelog_that_ends_before_the_offset_read_is_read_again_from_its_start():
    """After the broker lost its log, a changelog ends (highwater -1) before the offset this worker
    last read from it (599): Faust would stop with ConsistencyError and skip every new record up
    to 599. The patched recovery forgets that offset (read again from 0), counts it and re-seeks a
    standby partition; a changelog that did not shrink is left as it was."""
    import asyncio
    from collections import Counter

    from faust.tables.recovery import Recovery
    from faust.types import TP
    from prometheus_client import REGISTRY

    from infra.settings import Settings

    settings = Settings()
    faust_fixes.apply(settings)
    lost, kept = TP("booth-changelog", 0), TP("booth-changelog", 1)

    class Consumer:
        sought: dict = {}

        async def highwaters(self, *tps):
            return {lost: 0, kept: 40}  # the next offsets: lost is empty, kept holds 0..39

        async def seek_wait(self, offsets):
            self.sought.update(offsets)

    recovery = Recovery.__new__(Recovery)
    recovery.active_offsets, recovery.standby_offsets = Counter({lost: 599, kept: 20}), Counter({lost: 599, kept: 39})
    recovery.active_highwaters, recovery.standby_highwaters = Counter(), Counter()
    recovery.log = type("Log", (), {"info": lambda *a, **k: None})()

    def counted() -> float:
        labels = {"group": settings.group("processors"), "topic": "booth-changelog"}
        return REGISTRY.get_sample_value("booth_consumer_log_resets_total", labels) or 0.0

    before, consumer = counted(), Consumer()
    asyncio.run(recovery._build_highwaters(consumer, {lost, kept}, recovery.active_highwaters, "active"))
    assert recovery.active_highwaters == {lost: -1, kept: 39}
    assert recovery.active_offsets == {lost: None, kept: 20} and consumer.sought == {}  # sought by Faust next
    asyncio.run(recovery._build_highwaters(consumer, {lost, kept}, recovery.standby_highwaters, "standby"))
    assert recovery.standby_offsets == {lost: None, kept: 39} and consumer.sought == {lost: 0}
    assert counted() - before == 2


def test_a_stream_partition_past_its_logs_end_after_the_seek_is_read_from_its_start():
    """After a rebalance Faust seeks the stream partitions to their committed offsets; one whose
    position is then past the log's end (the broker lost the log, a stale offset was committed to
    the new one) is sought to 0 with Faust's bookkeeping of it forgotten, and counted; a partition
    within its log is left where it was."""
    import asyncio
    from collections import defaultdict

    from faust.transport import consumer as faust_consumer
    from faust.types import TP
    from prometheus_client import REGISTRY

    from infra.settings import Settings

    settings = Settings()
    faust_fixes.apply(settings)
    lost, kept = TP("booth.frames", 1), TP("booth.frames", 2)

    class Consumer:
        def __init__(self):
            self.positions = {lost: 16, kept: 5}
            self._read_offset, self._committed_offset = defaultdict(lambda: None), defaultdict(lambda: None)
            self._gap, self._acked, self._acked_index = {lost: "gap"}, {lost: [14, 15]}, {lost: {14, 15}}

        async def seek_to_committed(self):
            return {lost: 16, kept: 5}

        def assignment(self):
            return {lost, kept}

        async def highwaters(self, *tps):
            return {lost: 0, kept: 9}

        async def position(self, tp):
            return self.positions[tp]

        async def seek(self, tp, offset):
            self.positions[tp] = offset
            self._read_offset[tp] = offset or None

    def counted() -> float:
        labels = {"group": settings.group("processors"), "topic": "booth.frames"}
        return REGISTRY.get_sample_value("booth_consumer_log_resets_total", labels) or 0.0

    before, consumer = counted(), Consumer()
    asyncio.run(faust_consumer.Consumer.perform_seek(consumer))
    assert consumer.positions == {lost: 0, kept: 5} and counted() - before == 1
    assert lost not in consumer._acked and lost not in consumer._gap and consumer._committed_offset[lost] is None
    assert consumer._committed_offset[kept] == 5 and consumer._read_offset[lost] is None
