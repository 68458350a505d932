"""The embedded stack starts for real, carries messages and objects, and stops without leftovers."""

from __future__ import annotations

import asyncio
import io
import os
import time

import pytest

from infra import kafka
from infra.objectstore import ObjectStore
from infra.stack import Stack, embedded_settings
from schemas import Frame, decode
from schemas.ids import frame_key


def _frame(seq: int) -> Frame:
    return Frame(
        session="s1",
        camera="cam0",
        seq=seq,
        capture_ns=seq * 33_000_000,
        wall_time=time.time(),
        width=640,
        height=480,
        image=bytes([0xFF, 0xD8]) + os.urandom(2000),
    )


def test_topics_have_explicit_partition_counts(settings):
    a = kafka.admin(settings)
    try:
        described = {t["name"]: len(t["partitions"]) for t in a.describe_topics(list(settings.topic_partitions()))}
    finally:
        a.close()
    assert described[settings.topic_frames] == settings.partitions_streams == 2
    assert described[settings.topic_sessions] == settings.partitions_control == 1


def test_frame_round_trips_through_broker_with_kafka_python(settings):
    frames = [_frame(i) for i in range(5)]
    p = kafka.producer(settings)
    for f in frames:
        p.send(settings.topic_frames, key=frame_key(f.session, f.camera), value=f.encode())
    p.flush()
    p.close()
    c = kafka.consumer(settings, settings.topic_frames, group_id="rt", consumer_timeout_ms=15000)
    got = []
    for record in c:
        got.append(decode(record.value))
        if len(got) == len(frames):
            break
    c.close()
    assert got == frames  # one key -> one partition -> order kept


def test_frame_round_trips_through_broker_with_aiokafka(settings):
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    frame = _frame(7)

    async def go():
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap, max_request_size=settings.kafka_max_message_bytes
        )
        await producer.start()
        try:
            await producer.send_and_wait(settings.topic_frames, frame.encode(), key=b"s1/cam0")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            settings.topic_frames,
            bootstrap_servers=settings.kafka_bootstrap,
            auto_offset_reset="earliest",
            group_id=None,
        )
        await consumer.start()
        try:
            record = await asyncio.wait_for(consumer.getone(), 20)
        finally:
            await consumer.stop()
        return record

    record = asyncio.run(go())
    assert record.key == b"s1/cam0"
    assert decode(record.value) == frame


def test_object_round_trips_through_s3(settings):
    data = os.urandom(100_000)
    ObjectStore(settings).put("sessions/s1/probe.bin", data)
    assert ObjectStore(settings).get("sessions/s1/probe.bin") == data
    assert ObjectStore(settings).get("sessions/s1/absent.bin") is None
    url = ObjectStore(settings).presign("sessions/s1/probe.bin", 600)
    import urllib.request

    assert urllib.request.urlopen(url, timeout=10).read() == data


def test_s3_server_checks_signatures(settings):
    from minio import Minio
    from minio.error import S3Error

    wrong = Minio(
        settings.s3_endpoint,
        access_key=settings.s3_access_key,
        secret_key="not-the-secret",
        secure=False,
        region=settings.s3_region,
    )
    with pytest.raises(S3Error):
        wrong.put_object(settings.s3_bucket, "x", io.BytesIO(b"x"), 1)


def test_stack_up_is_idempotent_and_down_leaves_nothing(tmp_path):
    s = Stack(embedded_settings(tmp_path), state_dir=tmp_path)
    first = s.up(prometheus=False)
    pids = {row["service"]: row["pid"] for row in first}
    assert set(pids) == {"kafka", "s3"}
    assert all(row["running"] and row["answering"] for row in first)
    again = s.up(prometheus=False)  # nothing new is started
    assert {row["service"]: row["pid"] for row in again} == pids
    assert sorted(s.down()) == ["kafka", "s3"]
    for pid in pids.values():
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split(")")[-1].split()[0] == "Z"
    assert s.status() == []
    assert s.down() == []  # idempotent


def test_reset_topics_drops_old_data(settings, stack):
    p = kafka.producer(settings)
    p.send(settings.topic_sessions, b"old")
    p.flush()
    p.close()
    Stack(settings, state_dir=stack.state_dir).reset_topics()
    c = kafka.consumer(settings, settings.topic_sessions, group_id=None, consumer_timeout_ms=3000)
    assert [r.value for r in c] == []
    c.close()


def test_s3_storage_engine_keeps_messages_across_a_restart(tmp_path):
    settings = embedded_settings(tmp_path)
    s = Stack(settings, state_dir=tmp_path, storage="s3")
    s.up(prometheus=False)
    try:
        p = kafka.producer(settings)
        for i in range(3):
            p.send(settings.topic_sessions, key=b"s1", value=b"event-%d" % i)
        p.flush()
        p.close()
    finally:
        s.down()
    again = Stack(settings, state_dir=tmp_path, storage="s3")
    again.up(prometheus=False)  # same S3 data folder: the broker finds its log again
    try:
        c = kafka.consumer(settings, settings.topic_sessions, group_id=None, consumer_timeout_ms=5000)
        assert [r.value for r in c] == [b"event-0", b"event-1", b"event-2"]
        c.close()
    finally:
        again.down()


def test_the_s3_server_never_lists_an_object_still_being_written(tmp_path):
    """The broker's S3 engine reads every name in a records folder as an offset; an upload's
    temporary file in a listing made its fetches fail (ParseInt(InvalidDigit)) and it dropped the
    connection. Listings taken while 3 MB objects are written show whole objects only."""
    import io
    import threading
    import time

    from minio import Minio

    settings = embedded_settings(tmp_path)
    s = Stack(settings, state_dir=tmp_path)
    s.up(prometheus=False)
    try:
        c = Minio(
            settings.s3_endpoint,
            access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key.get_secret_value(),
            secure=False,
            region=settings.s3_region,
        )
        c.make_bucket("listing")
        stop, data, written = threading.Event(), b"x" * 3_000_000, []

        def put() -> None:
            while not stop.is_set():
                name = f"records/{len(written):020d}.batch"
                c.put_object("listing", name, io.BytesIO(data), len(data))
                written.append(name)

        writer = threading.Thread(target=put)
        writer.start()
        listed, deadline = set(), time.monotonic() + 3
        try:
            while time.monotonic() < deadline:
                listed.update(o.object_name for o in c.list_objects("listing", prefix="records/", recursive=True))
        finally:
            stop.set()
            writer.join(30)
    finally:
        s.down()
    assert len(written) >= 5 and listed and listed <= set(written), sorted(listed - set(written))[:3]
