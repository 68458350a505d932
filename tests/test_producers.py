"""Camera producers against the real embedded broker: completeness, order, metadata, drops, the
record-then-publish path and clear failures."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from click.testing import CliRunner
from prometheus_client import REGISTRY

from infra import kafka
from infra.settings import Settings
from infra.stack import free_port
from producers.camera import run_cameras
from producers.cli import camera as camera_command
from producers.cli import publish_spool as publish_command
from producers.spool import Spool
from schemas import decode, frame_key

from helpers import counter_frame, decode_jpeg, read_counter, write_counter_video


def consume(settings, expected: int, timeout: float = 20.0):
    """Every (key, Frame) on the frames topic: waits for ``expected``, then briefly for any extra."""
    consumer = kafka.consumer(settings, settings.topic_frames, group_id=None, consumer_timeout_ms=500)
    got, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            before = len(got)
            got.extend((r.key, decode(r.value)) for r in consumer)
            if len(got) >= expected and len(got) == before:
                break
    finally:
        consumer.close()
    return got


def metric(name: str, camera: str) -> float:
    return REGISTRY.get_sample_value(f"booth_camera_{name}_total", {"camera": camera}) or 0.0


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def test_file_source_arrives_complete_in_order_with_metadata(settings, tmp_path):
    # A 16:9 clip under a 4:3 bound: shrunk to fit, its aspect kept.
    clip = write_counter_video(tmp_path / "clip.mp4", frames=30, size=(640, 360), fps=30)
    started = time.time()
    summary = run_cameras(settings, "s-file", {"cam0": str(clip)}, speed=0, size=(320, 240), quality=85)

    stats = summary.cameras["cam0"]
    assert (stats.captured, stats.sent, stats.acknowledged, stats.dropped, stats.failed) == (30, 30, 30, 0, 0)
    assert summary.ok
    got = consume(settings, 30)
    assert len(got) == 30
    assert {key for key, _ in got} == {frame_key("s-file", "cam0")}
    frames = [f for _, f in got]
    assert [f.seq for f in frames] == list(range(30))
    for f in frames:
        assert (f.session, f.camera, f.width, f.height, f.encoding) == ("s-file", "cam0", 320, 180, "jpeg")
        image = decode_jpeg(f.image)
        assert image.shape == (180, 320, 3)
        assert read_counter(image) == f.seq
    # Timestamps follow the clip's 30 fps timeline, anchored at the run's start.
    steps = [b.capture_ns - a.capture_ns for a, b in zip(frames, frames[1:])]
    assert all(abs(step - 1e9 / 30) < 1e5 for step in steps)
    assert started - 1 <= frames[0].wall_time <= time.time()
    assert frames[-1].wall_time - frames[0].wall_time == pytest.approx(29 / 30, abs=1e-3)
    assert stats.bytes_sent == sum(len(f.encode()) for f in frames)


def test_a_wide_camera_keeps_its_aspect_and_a_small_one_its_size(settings):
    wide = [counter_frame(i, (1024, 512)) for i in range(3)]  # 2:1
    small = [counter_frame(i, (200, 150)) for i in range(3)]
    summary = run_cameras(settings, "s-aspect", {"wide": wide, "small": small}, speed=0, size=(640, 480))
    assert summary.ok
    got = {}
    for _, f in consume(settings, 6):
        image = decode_jpeg(f.image)
        got[f.camera] = (f.width, f.height, image.shape[1], image.shape[0])
        assert read_counter(image) == f.seq
    assert got == {"wide": (640, 320, 640, 320), "small": (200, 150, 200, 150)}


def test_two_cameras_interleave_in_real_time(settings, tmp_path):
    clip = write_counter_video(tmp_path / "clip.mp4", frames=20, fps=30)
    arrays = [counter_frame(100 + i) for i in range(20)]
    started = time.monotonic()
    summary = run_cameras(settings, "s-two", {"file": str(clip), "mem": arrays}, speed=2.0, fps=None)
    elapsed = time.monotonic() - started

    assert elapsed >= (19 / 30) / 2 - 0.02, "speed 2 must not send faster than twice real time"
    assert all(s.acknowledged == 20 and s.dropped == 0 for s in summary.cameras.values())
    got = consume(settings, 40)
    by_camera = {c: [f for _, f in got if f.camera == c] for c in ("file", "mem")}
    assert [f.seq for f in by_camera["file"]] == list(range(20))
    assert [f.seq for f in by_camera["mem"]] == list(range(20))
    assert [read_counter(decode_jpeg(f.image)) for f in by_camera["mem"]] == list(range(100, 120))
    # Both ran side by side on one shared timeline: frame i of each has the same capture time.
    assert [f.capture_ns for f in by_camera["file"]] == [f.capture_ns for f in by_camera["mem"]]


class GatedProducer:
    """A real producer whose sender stalls until the capture thread has captured everything."""

    def __init__(self, inner, camera: str, frames: int):
        self.inner, self.camera, self.frames = inner, camera, frames

    def send(self, *args, **kwargs):
        deadline = time.monotonic() + 20
        while metric("frames_captured", self.camera) < self.frames and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.inner.send(*args, **kwargs)

    def flush(self, timeout=None):
        return self.inner.flush(timeout=timeout)


@pytest.mark.parametrize("policy", ["drop-oldest", "drop-newest"])
def test_drops_are_counted_when_the_sender_stalls(settings, policy):
    camera, total, queue_size = unique("stall"), 40, 3
    producer = kafka.producer(settings)
    try:
        summary = run_cameras(
            settings,
            "s-drop",
            {camera: [counter_frame(i) for i in range(total)]},
            speed=0,
            queue_size=queue_size,
            policy=policy,
            producer=GatedProducer(producer, camera, total),
        )
    finally:
        producer.close()

    stats = summary.cameras[camera]
    assert stats.captured == total
    assert stats.captured == stats.sent + stats.dropped
    assert stats.sent == stats.acknowledged and stats.failed == 0
    # The stalled sender holds at most one frame; the queue holds the rest of what survives.
    assert queue_size <= stats.sent <= queue_size + 1
    for name in ("captured", "sent", "acknowledged", "dropped", "failed"):
        assert metric(f"frames_{name}", camera) == getattr(stats, name), name
    seqs = [f.seq for _, f in consume(settings, stats.sent)]
    assert len(seqs) == stats.sent and seqs == sorted(seqs)
    if policy == "drop-oldest":
        assert seqs[-queue_size:] == list(range(total - queue_size, total))  # the freshest frames survive
    else:
        assert seqs[:queue_size] == list(range(queue_size))  # queued frames are never displaced
    # The run's end marker names the camera's last frame the broker took, not the last captured.
    marker = kafka.consumer(settings, settings.topic_sessions, group_id=None, consumer_timeout_ms=1500)
    try:
        ends = [e for e in (decode(r.value) for r in marker) if e.kind == "camera-end" and camera in e.cameras]
    finally:
        marker.close()
    assert [(e.session, e.last_seq) for e in ends] == [("s-drop", {camera: seqs[-1]})]


class SlowProducer:
    """A real producer behind a slow link: each send takes 0.2 s."""

    def __init__(self, inner):
        self.inner = inner

    def send(self, *args, **kwargs):
        time.sleep(0.2)
        return self.inner.send(*args, **kwargs)

    def flush(self, timeout=None):
        return self.inner.flush(timeout=timeout)


def test_frames_the_broker_cannot_take_in_time_are_discarded_and_counted(settings):
    camera = unique("slow")
    producer = kafka.producer(settings)
    try:
        summary = run_cameras(
            settings,
            "s-slow",
            {camera: [counter_frame(i) for i in range(12)]},
            speed=0,
            queue_size=8,
            policy="block",
            drain_timeout_s=0.3,
            producer=SlowProducer(producer),
        )
    finally:
        producer.close()
    stats = summary.cameras[camera]
    assert stats.captured == 12 == stats.sent + stats.dropped
    assert stats.dropped >= 4 and stats.acknowledged == stats.sent and stats.failed == 0
    assert metric("frames_dropped", camera) == stats.dropped
    assert [f.seq for _, f in consume(settings, stats.sent)] == list(range(stats.sent))


def test_record_first_then_publish_keeps_the_original_timestamps(settings, tmp_path):
    clip = write_counter_video(tmp_path / "clip.mp4", frames=30, size=(640, 360), fps=30)
    runner = CliRunner()
    obj = {"settings": settings}
    # Recorded in real time, as from a camera: the timeline is over before publishing starts.
    recorded = runner.invoke(
        camera_command,
        [
            "--session",
            "s-rec",
            "--source",
            f"cam0={clip}",
            "--speed",
            "1",
            "--size",
            "320x240",
            "--record-first",
            "--no-publish",
            "--no-metrics",
        ],
        obj=obj,
    )
    assert recorded.exit_code == 0, recorded.output
    spool = Spool.of(settings)
    (recording,) = spool.pending("s-rec")
    assert sorted(p.name for p in recording.iterdir()) == ["sidecar.json", "video.mp4"]  # one folder, one move
    meta = json.loads((recording / "sidecar.json").read_text())
    assert (meta["session"], meta["camera"], len(meta["frames"])) == ("s-rec", "cam0", 30)
    assert consume(settings, 0, timeout=1) == [], "record-first must not touch the broker while capturing"

    time.sleep(0.2)
    publish_started = time.time()
    published = runner.invoke(publish_command, ["--session", "s-rec", "--delete", "--no-metrics"], obj=obj)
    assert published.exit_code == 0, published.output

    frames = [f for _, f in consume(settings, 30)]
    assert [f.seq for f in frames] == list(range(30))
    assert [[f.seq, f.capture_ns, f.wall_time] for f in frames] == meta["frames"]
    assert all(f.wall_time < publish_started for f in frames)  # stamped at capture, not at publishing
    assert [read_counter(decode_jpeg(f.image)) for f in frames] == list(range(30))
    assert all((f.width, f.height) == (320, 180) for f in frames)  # the 16:9 recording, fitted at publishing
    assert not any(list(spool.dir(s).glob("s-rec.*")) for s in ("pending", "publishing", "done", "failed"))
    again = runner.invoke(publish_command, ["--session", "s-rec", "--no-metrics"], obj=obj)
    assert again.exit_code == 0 and "nothing to publish" in again.output


def test_record_first_publishes_segments_in_order_from_the_same_process(settings):
    arrays = [counter_frame(i) for i in range(24)]
    from producers.spool import BackgroundPublisher, record_cameras

    publisher = BackgroundPublisher(settings, session="s-seg")
    recorded = record_cameras(settings, "s-seg", {"cam0": arrays}, speed=4.0, segment_s=0.25, size=(320, 240))
    published = publisher.finish()

    assert recorded.cameras["cam0"].recorded == 24
    stats = published.cameras["cam0"]
    assert (stats.captured, stats.acknowledged, stats.failed) == (24, 24, 0)
    frames = [f for _, f in consume(settings, 24)]
    assert [f.seq for f in frames] == list(range(24))
    assert [read_counter(decode_jpeg(f.image)) for f in frames] == list(range(24))
    spool = Spool.of(settings)
    # A new file starts at the first frame 0.25 s or more after a file's first: frames 0-7, 8-15, 16-23.
    assert len([p for p in spool.dir("done").glob("s-seg.cam0.*") if (p / "video.mp4").is_file()]) == 3
    assert not any(list(spool.dir(s).glob("s-seg.*")) for s in ("pending", "publishing", "failed"))


@pytest.mark.parametrize(
    "source, message",
    [
        ("cam0={tmp}/missing.mp4", "missing.mp4: no such file"),
        ("99", "camera 99 cannot be opened"),
    ],
)
def test_bad_source_exits_non_zero_with_a_clear_error(tmp_path, source, message):
    settings = Settings(kafka_bootstrap=f"127.0.0.1:{free_port()}", state_dir=tmp_path)
    result = CliRunner().invoke(
        camera_command,
        ["--session", "s1", "--source", source.format(tmp=tmp_path), "--no-metrics"],
        obj={"settings": settings},
    )
    assert result.exit_code != 0
    assert message in result.output


def test_bad_session_id_is_rejected(tmp_path):
    settings = Settings(kafka_bootstrap=f"127.0.0.1:{free_port()}", state_dir=tmp_path)
    result = CliRunner().invoke(
        camera_command, ["--session", "../etc", "--source", "0", "--no-metrics"], obj={"settings": settings}
    )
    assert result.exit_code == 2
    assert "forbidden character '.'" in result.output


def test_unreachable_broker_fails_clearly_after_retrying(tmp_path):
    clip = write_counter_video(tmp_path / "clip.mp4", frames=3)
    address = f"127.0.0.1:{free_port()}"
    settings = Settings(kafka_bootstrap=address, state_dir=tmp_path)
    started = time.monotonic()
    result = CliRunner().invoke(
        camera_command,
        ["--session", "s1", "--source", str(clip), "--connect-timeout", "1.5", "--no-metrics"],
        obj={"settings": settings},
    )
    assert result.exit_code == 1
    assert f"the broker at {address} did not answer within 2 s" in result.output
    assert time.monotonic() - started >= 1.5


def _record(settings, session: str, frames: int = 12) -> Spool:
    from producers.spool import record_cameras

    arrays = [counter_frame(i) for i in range(frames)]
    recorded = record_cameras(settings, session, {"cam0": arrays}, speed=0, size=(320, 240))
    assert recorded.cameras["cam0"].recorded == frames
    return Spool.of(settings)


def test_a_recording_left_in_publishing_by_a_dead_publisher_is_published_by_the_next(settings):
    """A publisher killed mid-file leaves its recording in publishing/; a live publisher's claim
    (its lock) is never taken, a dead one's is."""
    import subprocess
    import sys

    session = unique("s-crash")
    spool = _record(settings, session)
    (recording,) = spool.pending(session)
    # A publisher in another process claims it (lock + move), then hangs: its claim stands.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from pathlib import Path\n"
            "from producers.spool import Spool\n"
            "claim = Spool(Path(sys.argv[1])).claim(Path(sys.argv[2]))\n"
            "print('claimed' if claim else 'lost', flush=True)\n"
            "time.sleep(600)\n",
            str(spool.root),
            str(recording),
        ],
        stdout=subprocess.PIPE,
        env=settings.to_env(),
    )
    try:
        assert holder.stdout.readline().strip() == b"claimed"
        assert spool.pending(session) == [] and len(spool.recordings("publishing", session)) == 1
        runner, obj = CliRunner(), {"settings": settings}
        busy = runner.invoke(publish_command, ["--session", session, "--no-metrics"], obj=obj)
        assert busy.exit_code == 0 and "nothing to publish" in busy.output
        assert len(spool.recordings("publishing", session)) == 1  # not stolen from a live publisher
    finally:
        holder.kill()  # the crash: SIGKILL, no clean-up, the lock dies with the process
        holder.wait(10)
    published = CliRunner().invoke(publish_command, ["--session", session, "--no-metrics"], obj={"settings": settings})
    assert published.exit_code == 0, published.output
    frames = [f for _, f in consume(settings, 12) if f.session == session]
    assert [f.seq for f in frames] == list(range(12))
    assert spool.recordings("publishing", session) == [] and len(spool.recordings("done", session)) == 1


def test_a_pair_of_the_flat_layout_split_by_a_crash_is_put_back_together(tmp_path, settings):
    """Recordings written before the folder layout were two files renamed one by one: a crash
    between the renames left the sidecar in publishing/ and the video in pending/."""
    session = unique("s-flat")
    spool = _record(settings, session, frames=4)
    (recording,) = spool.pending(session)
    flat = Spool(tmp_path / "spool")
    (recording / "sidecar.json").rename(flat.dir("publishing") / f"{recording.name}.json")
    (recording / "video.mp4").rename(flat.dir("pending") / f"{recording.name}.mp4")
    half_video = flat.dir("pending") / f"{recording.name}.mp4"
    lone = flat.dir("recording") / "s-lone.cam0.1.mp4"  # a recording that never finished: left alone
    lone.write_bytes(b"partial")

    again = Spool(flat.root)
    (whole,) = again.pending(session)
    assert sorted(p.name for p in whole.iterdir()) == ["sidecar.json", "video.mp4"]
    assert not half_video.exists() and lone.exists()
    assert json.loads((whole / "sidecar.json").read_text())["session"] == session
