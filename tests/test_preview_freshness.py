"""The console's live preview stays fresh when its reader falls behind: it skips to the newest
records, counts what it passed over, and reports its lag (console/preview.py), on the real broker."""

from __future__ import annotations

import time

from prometheus_client import REGISTRY

from console.preview import PreviewFeed, preview_group
from infra.metrics_names import EXPECTED_SERIES

from helpers import make_frame, make_pose, send, wait_until


def _metric(name: str, **labels: str) -> float:
    for family in REGISTRY.collect():
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def _backlog(settings, session: str, n: int) -> None:
    frames = [make_frame(session, "cam0", seq, wall_time=time.time()) for seq in range(n)]
    send(settings, [(settings.topic_frames, f) for f in frames])
    send(settings, [(settings.topic_smoothed, make_pose(f)) for f in frames])


def test_a_preview_far_behind_skips_to_the_newest_frame_and_counts_what_it_skipped(settings):
    assert "console" in EXPECTED_SERIES["booth_preview_skipped_total"].components
    n = 1500  # more than one poll brings (500 records): the reader finds itself behind
    _backlog(settings, "busy", n)
    before = _metric("booth_preview_skipped_total", topic="frames")
    feed = PreviewFeed(settings, skip_behind=60, keep=4).start()
    try:
        wait_until(lambda: feed.cameras() and feed.cameras()[0]["seq"] == n - 1, 30, 0.1, "the newest frame")
        wait_until(lambda: feed.sessions()["busy"]["poses"] + feed.skipped["poses"] == n, 10, 0.1, "every pose")
        shot = feed.preview("cam0")
        assert (shot.seq, shot.posed) == (n - 1, True)  # the newest frame, with its pose
        counts = feed.sessions()["busy"]
        assert feed.skipped["frames"] > n / 2 and feed.skipped["poses"] > n / 2
        # Every record was either read or passed over: nothing counted twice, none unaccounted for.
        assert counts["frames"] + feed.skipped["frames"] == n
        assert counts["poses"] + feed.skipped["poses"] == n
        assert _metric("booth_preview_skipped_total", topic="frames") - before == feed.skipped["frames"]
        wait_until(
            lambda: (
                _metric("booth_consumer_lag", group=preview_group(settings), topic=settings.topic_frames) == 0
                and any(
                    s.labels.get("group") == preview_group(settings)
                    for f in REGISTRY.collect()
                    for s in f.samples
                    if s.name == "booth_consumer_lag"
                )
            ),
            10,
            0.2,
            "the preview reader's lag to reach 0",
        )
    finally:
        feed.stop()


def test_a_preview_that_keeps_up_reads_every_record(settings):
    _backlog(settings, "calm", 40)
    feed = PreviewFeed(settings, skip_behind=60, keep=4).start()
    try:
        wait_until(lambda: feed.sessions().get("calm", {}).get("poses") == 40, 30, 0.1, "every pose")
        assert feed.sessions()["calm"]["frames"] == 40
        assert feed.skipped == {"frames": 0, "poses": 0}
        assert feed.preview("cam0").seq == 39
    finally:
        feed.stop()
