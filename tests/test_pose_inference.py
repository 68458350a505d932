"""The pose agent's inference runner (processors/estimate.py): in a child process it gives exactly
what the stage gives in-process, counts what each frame cost in the worker's own metrics, survives
the child's death without losing a frame, and says why when the backend cannot load."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from prometheus_client import REGISTRY

from processors.estimate import Inference, InferenceUnavailable, PoseStage, Rejected
from schemas import Frame, PoseEstimate, frame_key
from vision.pose import load_estimator

from helpers import KillNewChildren, clip_frames, start_worker, stop_worker

KEY = frame_key("s", "c")


def _clip(shared_dir, n: int) -> list[bytes]:
    return [f.encode() for f in clip_frames(shared_dir, "s", "c", n, frame_clock=True)]


def _through(inference: Inference, raws: list[bytes], between=None) -> list:
    """Every frame submitted at once (as the agent's prefetch does), the results awaited in order;
    `between(i)` runs after the i-th result."""

    async def run():
        await inference.start()
        futures = [inference.submit(KEY, raw) for raw in raws]
        out = []
        for i, (future, raw) in enumerate(zip(futures, raws)):
            out.append(await inference.result(future, KEY, raw))
            if between:
                between(i)
        await inference.close()
        return out

    return asyncio.run(run())


def _counter(name: str, labels: dict | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


@pytest.mark.parametrize("where", ["process", "thread"])
def test_inference_gives_what_the_stage_gives_in_process_and_counts_it_here(shared_dir, where):
    raws = _clip(shared_dir, 8)
    stage = PoseStage(load_estimator("movenet"))
    expected = [stage(KEY, raw) for raw in raws]
    decoded0 = sum(_counter("booth_pose_decoded_frames_total", {"reduction": r}) for r in ("1", "2", "4", "8"))
    latency0 = _counter("booth_pose_latency_seconds_count", {"backend": "movenet"})
    got = _through(Inference("movenet", None, 1, 8, where=where), raws)
    assert [p.seq for p in got] == list(range(8))
    for want, have in zip(expected, got):
        assert isinstance(have, PoseEstimate)
        assert np.allclose(want.persons[0].array(), have.persons[0].array(), atol=1e-4)
    decoded = sum(_counter("booth_pose_decoded_frames_total", {"reduction": r}) for r in ("1", "2", "4", "8"))
    assert decoded - decoded0 == 8  # recorded in this process, wherever the frame was estimated
    assert _counter("booth_pose_latency_seconds_count", {"backend": "movenet"}) - latency0 == 8


@pytest.mark.parametrize("where", ["process", "thread"])
def test_a_frame_that_cannot_be_decoded_is_rejected_with_its_reason(shared_dir, where):
    raws = _clip(shared_dir, 2)
    broken = Frame.decode(raws[1]).model_copy(update={"image": b"\xff\xd8 not a jpeg"}).encode()
    got = _through(Inference("movenet", None, 1, 8, where=where), [raws[0], broken, raws[0]])
    assert isinstance(got[0], PoseEstimate) and isinstance(got[2], PoseEstimate)
    assert isinstance(got[1], Rejected) and "is not a jpeg" in str(got[1])


def test_a_killed_inference_process_is_started_again_and_no_frame_is_lost(shared_dir):
    raws = _clip(shared_dir, 12)
    inference = Inference("movenet", None, 1, 8)
    restarts0 = _counter("booth_pose_inference_restarts_total")
    pids = []

    def kill_after_the_third(i: int) -> None:
        pids.append(inference._child.pid)
        if i == 2:
            os.kill(inference._child.pid, signal.SIGKILL)

    got = _through(inference, raws, kill_after_the_third)
    assert [p.seq for p in got] == list(range(12))
    assert all(isinstance(p, PoseEstimate) and p.persons for p in got)
    assert _counter("booth_pose_inference_restarts_total") - restarts0 == 1
    assert len(set(pids)) == 2 and pids[0] != pids[-1]  # the last frames came from another process


@pytest.fixture
def no_shared_models(monkeypatch, tmp_path):
    """Models only where the settings say: ../shared/models is no fallback, here or in children."""
    from vision import models

    nowhere = tmp_path / "no-shared-models"
    monkeypatch.setattr(models, "SHARED_MODELS", nowhere)
    monkeypatch.setenv("BOOTH_SHARED_MODELS", str(nowhere))


def test_a_backend_that_cannot_load_is_a_clear_error(tmp_path, no_shared_models):
    async def start():
        await Inference("movenet", tmp_path, 1, 8).start()

    with pytest.raises(InferenceUnavailable, match="pose backend 'movenet' could not be loaded"):
        asyncio.run(start())


def test_a_worker_whose_backend_cannot_load_exits_naming_what_is_missing(settings, tmp_path, no_shared_models):
    empty = tmp_path / "models"
    empty.mkdir()
    log = tmp_path / "worker.log"
    worker = start_worker(settings.model_copy(update={"models_dir": empty}), log)
    try:
        code = worker.wait(120)
    finally:
        stop_worker(worker)
    assert code != 0
    text = log.read_text()
    assert f"pose backend 'movenet' could not be loaded: model file not found: {empty}" in text
    assert "`booth models --install`" in text


def test_keep_buffers_on_heap_stops_frame_sized_buffers_being_mapped_and_unmapped():
    """What the worker and its inference process ask of the allocator: a 3 MB buffer (a decoded
    1280x720 frame) is mapped by default, and comes from the heap afterwards."""
    code = """
import ctypes, ctypes.util
import numpy as np
from processors.estimate import keep_buffers_on_heap
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(ctypes.util.find_library("c"))
if not hasattr(libc, "mallinfo2"):
    print("no mallinfo2"); raise SystemExit
libc.mallinfo2.restype = Info
def mapped_by(allocate):
    before = libc.mallinfo2().hblks
    kept = allocate()
    return libc.mallinfo2().hblks - before
by_default = mapped_by(lambda: np.ones(3_000_000, np.uint8))
keep_buffers_on_heap()
print(by_default, mapped_by(lambda: np.ones(3_000_000, np.uint8)))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    if out == ["no", "mallinfo2"]:
        pytest.skip("the C library is not glibc 2.33 or later")
    mapped_before, mapped_after = map(int, out)
    assert mapped_before >= 1 and mapped_after == 0


@pytest.mark.parametrize("replacements_killed", [1, 3])
def test_a_replacement_killed_while_it_loads_loses_no_frame(shared_dir, replacements_killed):
    """The inference process is killed, then its replacement about 50 ms after it starts (and, in
    the second case, every replacement the runner tries for that frame): the agent's `result` never
    raises, and every frame comes back estimated or rejected with the reason."""
    raws = _clip(shared_dir, 10)
    inference = Inference("movenet", None, 1, 8)
    restarts0 = _counter("booth_pose_inference_restarts_total")
    killers = []

    def kill_after_the_third(i: int) -> None:
        if i == 2:
            killer = KillNewChildren(os.getpid(), {inference._child.pid}, replacements_killed)
            killer.start()
            killers.append(killer)
            os.kill(inference._child.pid, signal.SIGKILL)

    got = _through(inference, raws, kill_after_the_third)
    killers[0].join(5)
    assert len(killers[0].killed) == replacements_killed
    assert len(got) == 10
    rejected = [i for i, p in enumerate(got) if isinstance(p, Rejected)]
    assert all(isinstance(p, PoseEstimate) and p.persons and p.seq == i for i, p in enumerate(got) if i not in rejected)
    if replacements_killed < Inference.START_ATTEMPTS:
        assert rejected == []  # a new process took the frames up again
        assert _counter("booth_pose_inference_restarts_total") - restarts0 == 1 + replacements_killed
    else:  # no process could be started for the fourth frame: it alone is a dead letter, with why
        assert rejected == [3]
        assert "could not be started again (3 tries): it died while loading" in str(got[3])
        assert _counter("booth_pose_inference_restarts_total") - restarts0 == 4
