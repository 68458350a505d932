"""Guided capture against the real broker and store: the coverage published once a second, the
session ended at the coverage target or the time cap, and `booth status` shows the coverage."""

from __future__ import annotations

import json
import threading
import time

from click.testing import CliRunner

from console.guide import Guide, Take
from infra.objectstore import ObjectStore
from schemas import Coverage, SessionEvent, layout
from tools.status_view import ControlState, coverage_text

from helpers import dance_poses, figure_pose, read_topic, send, store_dance, wait_until


def _started(settings, session: str) -> float:
    from producers.session import publish

    return publish(settings, session, "start", ["cam0"], "steps").wall_time


def test_the_session_ends_when_the_dance_is_covered(settings):
    store_dance(settings, "steps", dance_poses(24))
    guide = Guide(settings, "guided1", "steps", Take(0.8, 30), started_at=_started(settings, "guided1"), interval_s=0.3)
    result: dict = {}
    runner = threading.Thread(target=lambda: result.setdefault("final", guide.run()), daemon=True)
    runner.start()
    wait_until(lambda: guide.last is not None, timeout=20, what="the first coverage")
    assert guide.last.coverage == 0.0 and guide.last.prompts == ["step into the picture"]
    # the visitor follows the dance, a second person walks through; a frame nobody is in; a broken record
    poses = [figure_pose("guided1", "cam0", i, p, others=int(i == 4)) for i, p in enumerate(dance_poses(24))]
    poses.insert(3, figure_pose("guided1", "cam0", 99, None))
    send(settings, [(settings.topic_smoothed, p) for p in poses])
    runner.join(30)
    final = result["final"]
    assert final.done and final.reason == "target" and final.coverage >= 0.8
    assert final.cameras["cam0"].frames == 25 and final.cameras["cam0"].frames_with_others == 1
    recorded = json.loads(ObjectStore(settings).get(layout.coverage_key("guided1")))
    assert recorded["coverage"] == final.coverage and recorded["reason"] == "target"  # for the manifest
    events = [m for m in read_topic(settings, settings.topic_sessions) if isinstance(m, SessionEvent)]
    assert [e.kind for e in events if e.session == "guided1"] == ["start", "end"]
    published = [m for m in read_topic(settings, settings.topic_training) if isinstance(m, Coverage)]
    assert published[0].coverage == 0.0 and published[-1].done and published[-1].coverage == final.coverage
    state = ControlState()
    for m in published:
        state.apply(m.encode())
    row = state.as_dict()["sessions"][0]
    assert row["coverage"]["reason"] == "target"
    assert coverage_text(row["coverage"]).startswith(f"{final.coverage:.0%}")


def test_the_operator_ends_it_or_the_time_cap_does(settings):
    from producers.session import publish

    store_dance(settings, "steps", dance_poses(12))
    capped = Guide(settings, "guided2", "steps", Take(0.8, 1.5), started_at=_started(settings, "guided2"))
    t0 = time.monotonic()
    final = capped.run()
    assert final.reason == "time cap" and 1.0 < time.monotonic() - t0 < 15 and final.coverage == 0.0
    ended = Guide(settings, "guided3", "steps", Take(0.8, 60), started_at=_started(settings, "guided3"))
    publish(settings, "guided3", "end")
    assert ended.run().reason == "ended"
    kinds = [(m.session, m.kind) for m in read_topic(settings, settings.topic_sessions)]
    assert kinds.count(("guided2", "end")) == 1 and kinds.count(("guided3", "end")) == 1  # the operator's only


def test_booth_session_start_until_coverage(settings):
    from booth.cli import session_start

    store_dance(settings, "steps", dance_poses(12))
    result = CliRunner().invoke(
        session_start,
        "--session guided4 --camera cam0 --reference steps --until-coverage 0.8 --max-seconds 1".split(),
        obj={"settings": settings},
    )
    assert result.exit_code == 0, result.output
    assert "guided4" in result.output and "ended (time cap)" in result.output
    refused = CliRunner().invoke(
        session_start, ["--reference", "steps", "--until-coverage", "1.5"], obj={"settings": settings}
    )
    assert refused.exit_code != 0 and "1.5" in refused.output
