"""Fixtures: a real embedded stack (broker + S3 server) on free ports, shared by the session."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from infra.settings import REPO_ROOT
from infra.stack import Stack, embedded_settings
from infra.waiting import wait_until  # noqa: F401 - the tests import it from here

SHARED = REPO_ROOT.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"the shared models and photos are not at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """A private Tansu broker and nanio S3 server for the whole test session."""
    state = tmp_path_factory.mktemp("stack")
    settings = embedded_settings(state)
    s = Stack(settings, state_dir=state)
    s.up(prometheus=False)
    yield s
    s.down()


@pytest.fixture
def settings(stack, request):
    """Settings on the shared stack with topics of this test's own (no cross-test interference)."""
    suffix = uuid.uuid4().hex[:8]
    names = {
        f"topic_{t}": f"t.{suffix}.{t}"
        for t in (
            "frames",
            "poses",
            "smoothed",
            "sessions",
            "datasets",
            "training",
            "renditions",
            "deadletter",
            "claims",
        )
    }
    s = stack.settings.model_copy(
        update={
            **names,
            "s3_bucket": f"b-{suffix}",
            "partitions_streams": 2,
            "app_id": f"test-{suffix}",
            "trainer_lease_s": 6.0,  # a killed trainer's session is taken over within 7 s
        }
    )
    from infra.kafka import ensure_topics
    from infra.objectstore import ObjectStore

    ensure_topics(s)
    ObjectStore(s).ensure_bucket()
    return s


@pytest.fixture
def dataset(settings, shared_dir, tmp_path):
    """A real assembled session and a real reference dance (poses estimated from a video)."""
    from assembler.synthetic import SyntheticSession

    from helpers import add_dance, assemble

    settings = settings.model_copy(update={"kafka_session_timeout_ms": 3000, "kafka_heartbeat_interval_ms": 500})
    syn = SyntheticSession(f"s-{uuid.uuid4().hex[:6]}", cameras=("cam0",), frames=24)
    assemble(settings, syn)
    add_dance(settings, shared_dir, tmp_path)
    return settings, syn


os.environ.setdefault("BOOTH_STATE_DIR", str(REPO_ROOT / ".booth-test"))
