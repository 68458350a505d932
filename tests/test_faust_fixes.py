"""processors/faust_fixes.py patches private parts of Faust and aiokafka: it must refuse to start on
a release where they moved, rather than silently bring the restart frame loss back."""

from __future__ import annotations

import pytest

from processors import faust_fixes


def test_the_installed_releases_have_every_patched_target():
    checked = faust_fixes.check_targets()
    assert len(checked) == 7
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
