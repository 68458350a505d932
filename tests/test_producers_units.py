"""Camera producer parts that need no broker: sources, queue policies, timeline, summary."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

from producers.frame_queue import FrameQueue
from producers.sources import (
    ArraySource,
    ImageFolderSource,
    SourceError,
    SourceFrame,
    VideoFileSource,
    open_source,
    parse_sources,
)
from producers.summary import CameraStats
from producers.timeline import Anchor, Timeline

from helpers import counter_frame, read_counter, write_counter_video


# --- queue policies ------------------------------------------------------------------------------
def _fill(policy: str, items: int, size: int = 3):
    dropped = []
    q = FrameQueue(size, policy, on_drop=dropped.append)
    for i in range(items):
        q.put(i)
    q.close()
    return [x for x in iter(q.get, None)], sum(dropped)


def test_drop_oldest_keeps_the_newest_frames():
    assert _fill("drop-oldest", 10) == ([7, 8, 9], 7)


def test_drop_newest_keeps_the_queued_frames():
    assert _fill("drop-newest", 10) == ([0, 1, 2], 7)


def test_block_waits_for_room_and_drops_nothing():
    q = FrameQueue(2, "block")
    q.put(0)
    q.put(1)
    done = threading.Event()
    threading.Thread(target=lambda: (q.put(2), done.set()), daemon=True).start()
    assert not done.wait(0.2), "put returned although the queue was full"
    assert q.get() == 0
    assert done.wait(2)
    q.close()
    assert [q.get(), q.get(), q.get()] == [1, 2, None]


def test_discard_counts_what_was_queued():
    dropped = []
    q = FrameQueue(5, "drop-oldest", on_drop=dropped.append)
    for i in range(4):
        q.put(i)
    assert q.discard() == 4 and dropped == [4] and len(q) == 0


def test_bad_queue_options_are_named():
    with pytest.raises(ValueError, match="policy 'lifo'"):
        FrameQueue(2, "lifo")
    with pytest.raises(ValueError, match="at least 1"):
        FrameQueue(0)


# --- source specs --------------------------------------------------------------------------------
def test_parse_sources_names_cameras_and_keeps_urls_whole():
    assert parse_sources(["front=clip.mp4", "/dev/video0", "http://host/live?token=a=b"]) == {
        "front": "clip.mp4",
        "cam1": "/dev/video0",
        "cam2": "http://host/live?token=a=b",
    }


def test_parse_sources_rejects_duplicates_and_empty_sources():
    with pytest.raises(SourceError, match="'cam0' is given twice"):
        parse_sources(["cam0=a.mp4", "cam0=b.mp4"])
    with pytest.raises(SourceError, match="source is empty"):
        parse_sources(["cam0="])


def test_missing_file_and_unknown_scheme_are_clear(tmp_path):
    with pytest.raises(SourceError, match=r"nope\.mp4: no such file"):
        open_source(str(tmp_path / "nope.mp4"))
    with pytest.raises(SourceError, match="unsupported scheme 'ftp'"):
        open_source("ftp://host/clip.mp4")


def test_unopenable_camera_index_is_clear():
    with pytest.raises(SourceError, match="camera 99 cannot be opened"):
        open_source(99)


def test_a_file_that_is_not_a_video_is_clear(tmp_path):
    bogus = tmp_path / "notes.mp4"
    bogus.write_text("not a video")
    with pytest.raises(SourceError, match="notes.mp4 cannot be opened"):
        open_source(bogus)


def test_video_file_yields_frames_with_their_presentation_times(tmp_path):
    path = write_counter_video(tmp_path / "clip.mp4", frames=10, fps=25)
    with VideoFileSource(path) as source:
        frames = list(source)
    assert [read_counter(f.image) for f in frames] == list(range(10))
    assert [f.pts_s for f in frames] == pytest.approx([i / 25 for i in range(10)], abs=1e-6)
    assert all(f.image.shape == (240, 320, 3) and f.capture_ns is None for f in frames)


def test_image_folder_plays_in_natural_order(tmp_path):
    for number in (10, 2, 1):
        cv2.imwrite(str(tmp_path / f"img{number}.png"), cv2.cvtColor(counter_frame(number), cv2.COLOR_RGB2BGR))
    (tmp_path / "readme.txt").write_text("ignored")
    frames = list(open_source(tmp_path, fps=10))
    assert isinstance(open_source(tmp_path), ImageFolderSource)
    assert [read_counter(f.image) for f in frames] == [1, 2, 10]
    assert [f.pts_s for f in frames] == pytest.approx([0.0, 0.1, 0.2])


def test_array_source_turns_rgb_into_bgr_and_rejects_bad_arrays():
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 0] = 200  # red
    (frame,) = list(ArraySource([rgb]))
    assert frame.image[0, 0].tolist() == [0, 0, 200]
    with pytest.raises(SourceError, match=r"frame 1 must be an H x W x 3 uint8 RGB array, got float64 \(8, 8, 3\)"):
        ArraySource([rgb, np.zeros((8, 8, 3))])


# --- timeline ------------------------------------------------------------------------------------
def test_media_timestamps_follow_the_timeline_not_the_sending_pace():
    anchor = Anchor(mono_ns=1_000_000_000, wall=1_700_000_000.0)
    timeline = Timeline(anchor, live=False, speed=0)
    stamps = [timeline.admit(SourceFrame(np.zeros((2, 2, 3), np.uint8), pts_s=i / 30)) for i in range(4)]
    assert [s[0] - anchor.mono_ns for s in stamps] == [round(i * 1e9 / 30) for i in range(4)]
    assert [s[1] for s in stamps] == pytest.approx([anchor.wall + i / 30 for i in range(4)])


def test_fps_cap_keeps_every_other_frame_of_a_30fps_clip_at_15():
    timeline = Timeline(Anchor.now(), live=False, speed=0, fps=15)
    kept = [i for i in range(30) if timeline.admit(SourceFrame(np.zeros((2, 2, 3), np.uint8), pts_s=i / 30))]
    assert kept == list(range(0, 30, 2))


def test_real_time_pacing_waits_for_each_frame():
    timeline = Timeline(Anchor.now(), live=False, speed=2.0)
    started = time.monotonic()
    for i in range(5):
        timeline.admit(SourceFrame(np.zeros((2, 2, 3), np.uint8), pts_s=i / 10))
    assert time.monotonic() - started >= 0.4 / 2.0 - 0.01  # 0.4 s of media at twice real time


def test_stopping_interrupts_pacing():
    stop = threading.Event()
    timeline = Timeline(Anchor.now(), live=False, speed=1.0, stop=stop)
    threading.Timer(0.1, stop.set).start()
    started = time.monotonic()
    assert timeline.admit(SourceFrame(np.zeros((2, 2, 3), np.uint8), pts_s=30.0)) is None
    assert time.monotonic() - started < 5


# --- summary -------------------------------------------------------------------------------------
def test_closing_counts_unacknowledged_frames_as_failed_and_ignores_late_callbacks():
    stats = CameraStats("unit-close")
    stats.count("sent", 5)
    stats.count("acknowledged", 3)
    assert stats.close() == 2
    assert stats.failed == 2
    assert stats.count("acknowledged") is False and stats.acknowledged == 3


def test_http_stream_is_live_and_stamped_on_arrival(tmp_path):
    import functools
    import http.server
    from fractions import Fraction

    import av

    from producers.sources import StreamSource

    with av.open(str(tmp_path / "live.ts"), "w", format="mpegts") as container:  # a streamable container
        stream = container.add_stream("libx264", rate=Fraction(30), options={"preset": "ultrafast", "crf": "18"})
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for number in range(6):
            for packet in stream.encode(av.VideoFrame.from_ndarray(counter_frame(number), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        before = time.monotonic_ns()
        with open_source(f"http://127.0.0.1:{server.server_port}/live.ts") as source:
            assert isinstance(source, StreamSource) and source.live
            frames = list(source)
    finally:
        server.shutdown()
    assert [read_counter(f.image) for f in frames] == list(range(6))
    assert all(f.pts_s is None and before <= f.capture_ns <= time.monotonic_ns() for f in frames)
    assert [f.capture_ns for f in frames] == sorted(f.capture_ns for f in frames)


def test_stream_url_password_is_hidden_in_messages():
    with pytest.raises(SourceError) as error:
        open_source("rtsp://user:secret@127.0.0.1:1/cam")
    assert "secret" not in str(error.value) and "user:***@" in str(error.value)


def test_camera_exports_the_series_the_dashboard_expects():
    from prometheus_client import REGISTRY

    from infra.metrics_names import EXPECTED_SERIES, scraped_names

    stats = CameraStats("unit-series")
    for name in ("captured", "sent", "acknowledged", "dropped", "failed", "bytes_sent"):
        stats.count(name)
    exported = {(s.name, tuple(sorted(s.labels))) for m in REGISTRY.collect() for s in m.samples}
    for series in EXPECTED_SERIES.values():
        if "camera" in series.components:
            for sample in scraped_names(series):
                assert any(name == sample and set(series.labels) <= set(labels) for name, labels in exported), sample


def test_frames_fit_inside_the_size_bound_with_their_aspect_kept():
    from producers.camera import fit_size

    assert fit_size((1280, 720), (640, 480)) == (640, 360)  # 16:9
    assert fit_size((1920, 1080), (640, 480)) == (640, 360)
    assert fit_size((1024, 512), (640, 480)) == (640, 320)  # 2:1
    assert fit_size((480, 640), (640, 480)) == (360, 480)  # portrait
    assert fit_size((640, 480), (640, 480)) == (640, 480)
    assert fit_size((320, 240), (640, 480)) == (320, 240)  # never enlarged
    assert fit_size((321, 241), (640, 480)) == (320, 240)  # even sides
    for src in ((1280, 720), (1024, 512), (777, 333), (3000, 1000)):
        w, h = fit_size(src, (640, 480))
        assert w <= 640 and h <= 480 and w % 2 == 0 and h % 2 == 0
        assert abs(w / h - src[0] / src[1]) < 2.5 / h * (src[0] / src[1])  # within a pixel's rounding
    with pytest.raises(ValueError, match="too small"):
        fit_size((8, 100), (640, 480))
