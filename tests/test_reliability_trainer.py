"""kill -9 the trainer process mid-training: a new one resumes from the last checkpoint in the store."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from infra.objectstore import ObjectStore
from schemas import DatasetReady, Rendition, decode

from helpers import wait_until, worker_env


@pytest.mark.slow
def test_trainer_killed_mid_training_resumes_from_its_checkpoint(dataset, tmp_path):
    from assembler.synthetic import produce
    from infra import kafka

    settings, syn = dataset
    prefix = f"sessions/{syn.session}/checkpoints/"
    ready = DatasetReady(
        session=syn.session, status="ready", samples=24, cameras=["cam0"], reference="dance", wall_time=time.time()
    )
    # The assembler's own DatasetReady (no reference) is on the topic first: the trainer's default
    # reference covers it; both name the same session, so both train the same checkpoints.
    produce(settings, [(settings.topic_datasets, syn.session.encode(), ready.encode())])
    command = [
        sys.executable,
        "-m",
        "booth.cli",
        "train",
        "--budget",
        "40",
        "--checkpoint-every",
        "1",
        "--reference",
        "dance",
        "--crop-size",
        "32",
        "--max-sessions",
        "1",
        "-q",
    ]

    def start(name: str) -> subprocess.Popen:
        return subprocess.Popen(
            command, env=worker_env(settings), stdout=open(tmp_path / name, "wb"), stderr=subprocess.STDOUT
        )

    def checkpoints() -> list[str]:
        return sorted(k for k in ObjectStore(settings).list(prefix) if k.rsplit("/", 1)[-1].startswith("ckpt-"))

    first = start("t1.log")
    try:
        wait_until(lambda: first.poll() is None and len(checkpoints()) >= 2, timeout=120, what="two checkpoints")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    saved = checkpoints()[-1]
    saved_step = int(saved.rsplit("ckpt-", 1)[1].split(".")[0])
    # Killed before the end: earlier versions of the video may be out, the final one (and its figures) not.
    assert saved_step > 0 and ObjectStore(settings).get(f"sessions/{syn.session}/results/metrics.json") is None

    second = start("t2.log")
    try:
        assert second.wait(240) == 0, (tmp_path / "t2.log").read_text()[-2000:]
    finally:
        if second.poll() is None:
            second.kill()
    results = json.loads(ObjectStore(settings).get(f"sessions/{syn.session}/results/metrics.json"))
    # It went on from the checkpoint (the last one, perhaps written just before the kill), not step 0.
    assert results["start_step"] >= saved_step > 0 and results["steps"] > results["start_step"]
    # The budget counts from the first attempt: the whole job stayed near 40 s of training.
    started = json.loads(ObjectStore(settings).get(prefix + "started.json"))["wall_time"]
    assert results["train_seconds"] < 40 + 10
    assert time.time() - started < 40 + 120
    c = kafka.consumer(settings, settings.topic_renditions, group_id=None, consumer_timeout_ms=2000)
    renditions = [decode(r.value) for r in c]
    c.close()
    assert any(isinstance(r, Rendition) and r.session == syn.session for r in renditions)
