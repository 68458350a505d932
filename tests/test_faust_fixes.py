"""processors/faust_fixes.py patches private parts of Faust and aiokafka: it must refuse to start on
a release where they moved, rather than silently bring the restart frame loss back."""

from __future__ import annotations

import pytest

from processors import faust_fixes


def test_the_installed_releases_have_every_patched_target():
    checked = faust_fixes.check_targets()
    assert len(checked) == 6
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
