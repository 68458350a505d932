"""Replication, write quorum, partitions per topic and idempotent sends come from the settings."""

from __future__ import annotations

import subprocess
import sys

import pytest

from infra import kafka
from infra.settings import REPO_ROOT, Settings, TopicSpec


def test_every_topic_gets_the_general_values_unless_it_sets_its_own():
    s = Settings(
        kafka_replication_factor=3,
        kafka_min_insync_replicas=2,
        kafka_topics={"booth.datasets": {"partitions": 32}, "booth.deadletter": {"replication_factor": 5}},
    )
    specs = s.topic_specs()
    assert specs["booth.frames"] == TopicSpec(partitions=4, replication_factor=3, min_insync_replicas=2)
    assert specs["booth.datasets"] == TopicSpec(partitions=32, replication_factor=3, min_insync_replicas=2)
    assert specs["booth.deadletter"] == TopicSpec(partitions=1, replication_factor=5, min_insync_replicas=2)
    assert s.topic_partitions()["booth.datasets"] == 32
    assert specs["booth.frames"].configs() == {"min.insync.replicas": "2"}
    # The embedded stack's defaults: one broker, one copy.
    assert {(t.replication_factor, t.min_insync_replicas) for t in Settings().topic_specs().values()} == {(1, 1)}


@pytest.mark.parametrize(
    "values, message",
    [
        ({"kafka_min_insync_replicas": 2}, "more than its replication factor 1"),
        ({"kafka_topics": {"booth.typo": {"partitions": 2}}}, "not this project.s topics"),
        ({"kafka_topics": {"booth.frames": {"partitions": 8}}}, "set partitions_streams instead"),
        ({"kafka_topics": {"booth.datasets": {"partitionz": 8}}}, "partitionz"),
        ({"kafka_topics": {"booth.datasets": {"partitions": 0}}}, "greater than or equal to 1"),
    ],
)
def test_settings_that_cannot_work_are_refused_by_name(values, message):
    with pytest.raises(ValueError, match=message):
        Settings(**values)


def test_per_topic_settings_pass_to_a_child_process_through_the_environment():
    s = Settings(kafka_topics={"booth.datasets": {"partitions": 12}}, kafka_replication_factor=2)
    code = "from infra.settings import Settings; print(Settings().topic_specs()['booth.datasets'])"
    out = subprocess.run(
        [sys.executable, "-c", code], env=s.to_env(), cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "TopicSpec(partitions=12, replication_factor=2, min_insync_replicas=1)"


def test_the_producer_is_idempotent_only_where_the_settings_say_the_broker_keeps_producer_ids(settings):
    plain = kafka.producer(settings)
    assert (plain.config["enable_idempotence"], plain.config["max_in_flight_requests_per_connection"]) == (False, 1)
    plain.close()
    on = settings.model_copy(update={"kafka_idempotence": True})
    p = kafka.producer(on)
    try:
        assert (p.config["enable_idempotence"], p.config["max_in_flight_requests_per_connection"]) == (True, 5)
        for i in range(50):
            p.send(on.topic_sessions, key=b"k", value=str(i).encode())
        p.flush(timeout=30)
    finally:
        p.close()
    c = kafka.consumer(on, on.topic_sessions, group_id=None, consumer_timeout_ms=5000)
    try:
        got = [int(r.value) for r in c]
    finally:
        c.close()
    assert got == list(range(50))  # once each, in order


def test_topics_are_created_with_the_partitions_each_topic_sets(settings):
    s = settings.model_copy(update={"kafka_topics": {}})
    names = {"topic_datasets": settings.topic_datasets + ".wide", "topic_renditions": settings.topic_renditions + ".w"}
    s = Settings(**{**s.model_dump(), **names, "kafka_topics": {names["topic_datasets"]: {"partitions": 6}}})
    wanted = kafka.ensure_topics(s)
    a = kafka.admin(s)
    try:
        described = {t["name"]: len(t["partitions"]) for t in a.describe_topics(list(wanted))}
    finally:
        a.close()
    assert described[names["topic_datasets"]] == 6 == wanted[names["topic_datasets"]]
    assert described[s.topic_frames] == s.partitions_streams


def test_booth_setup_creates_the_topics_and_the_bucket_from_the_settings(settings):
    from click.testing import CliRunner

    from booth.cli import main
    from infra.objectstore import ObjectStore
    from infra.settings import TopicOverride

    s = settings.model_copy(
        update={
            "topic_datasets": settings.topic_datasets + ".setup",
            # model_copy does not validate: the override goes in as the model it would become
            "kafka_topics": {settings.topic_datasets + ".setup": TopicOverride(partitions=5)},
            "s3_bucket": settings.s3_bucket + "-setup",
        }
    )
    env = {k: v for k, v in s.to_env().items() if k.startswith("BOOTH_")}
    result = CliRunner().invoke(main, ["setup"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert s.topic_datasets in result.output and "min.insync.replicas" in result.output
    a = kafka.admin(s)
    try:
        described = {t["name"]: len(t["partitions"]) for t in a.describe_topics([s.topic_datasets])}
    finally:
        a.close()
    assert described == {s.topic_datasets: 5}
    assert ObjectStore(s).client.bucket_exists(s.s3_bucket)
    # Again: nothing to do, no error.
    assert CliRunner().invoke(main, ["setup"], env=env).exit_code == 0
