"""Visitors' data: consent, retention, purge, and what leaves the booth, against the real broker,
object store, console, assembler, trainer and stream worker."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import signal
import struct
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from kafka import TopicPartition
from kafka.admin import NewTopic
from kafka.partitioner.default import murmur2
from starlette.testclient import TestClient

from assembler.consumer import Assembler
from assembler.synthetic import SyntheticSession, produce
from booth.cli import retention as retention_cli
from booth.cli import session as session_cli
from console.app import create_app
from console.preview import PreviewFeed
from dataset import read_manifest
from infra import kafka
from infra.changelog import changelog_topic, latest_keys
from infra.kafka import CLIENT_LOGGERS
from infra.objectstore import RETENTION_TAG, ObjectStore
from infra.retention import (
    DAY_S,
    LifecycleError,
    apply_lifecycle,
    apply_retention,
    lifecycle_rules,
    video_link_expiry_s,
)
from infra.settings import Settings
from schemas import (
    DatasetReady,
    DeadLetter,
    Frame,
    Rendition,
    SchemaError,
    SessionEvent,
    TrainingProgress,
    decode,
    layout,
)
from schemas.images import header_size
from schemas.redaction import EXCERPT_BYTES, without_pixels
from tools.commands import record as record_cli
from tools.purge import purge
from tools.replay import read_info, record
from tools.status_view import ControlState
from trainer.oneshot import is_oneshot
from trainer.service import TrainerConfig, TrainingService

from helpers import (
    FAST_ASSEMBLER,
    TopicReader,
    clip_frames,
    console_settings,
    logged_in,
    make_frame,
    make_pose,
    pixel_marks,
    produce_frames,
    read_topic,
    running,
    send,
    start_worker,
    stop_worker,
    wait_until,
    with_default_reference,
    worker_env,
)

FAST = FAST_ASSEMBLER


def keys_of(settings, session: str) -> list[str]:
    return ObjectStore(settings).list(layout.session_prefix(session))


def envelope_v1(fields: dict) -> bytes:
    """A SessionEvent as a version-1 writer (before consent) put it on the wire."""
    header = json.dumps(fields).encode()
    return b"MB" + bytes([4, 1]) + struct.pack(">I", len(header)) + header


# --- consent ----------------------------------------------------------------------------------------
def test_session_events_carry_consent_and_version_1_events_are_still_read():
    event = SessionEvent(session="v", kind="start", wall_time=1.0, consent=True)
    assert decode(event.encode()) == event and event.encode()[3] == 3
    old = decode(envelope_v1({"session": "v", "kind": "start", "wall_time": 1.0, "cameras": ["c"]}))
    assert isinstance(old, SessionEvent) and old.consent is False and old.cameras == ["c"]  # no consent recorded
    with pytest.raises(SchemaError, match="version 1 has no consent"):
        decode(envelope_v1({"session": "v", "kind": "start", "wall_time": 1.0, "consent": True}))
    with pytest.raises(SchemaError, match="version 1 has no purge kind"):
        decode(envelope_v1({"session": "v", "kind": "purge", "wall_time": 1.0}))
    header = json.dumps({"session": "v", "kind": "start", "wall_time": 1.0, "consent": "yes"}).encode()
    with pytest.raises(SchemaError, match="consent: Input should be a valid boolean"):
        decode(b"MB" + bytes([4, 2]) + struct.pack(">I", len(header)) + header)
    with pytest.raises(SchemaError, match="SessionEvent schema version 4 is not supported .this build reads 1, 2, 3."):
        decode(b"MB" + bytes([4, 4]) + event.encode()[4:])


def test_consent_is_recorded_from_the_command_line_to_the_store(settings):
    runner = CliRunner()
    settings = with_default_reference(settings)  # sessions need a reference dance that exists
    obj = {"settings": settings}
    agreed = runner.invoke(session_cli, ["start", "--session", "agrees-1", "--consent"], obj=obj)
    declined = runner.invoke(session_cli, ["start", "--session", "declines-1"], obj=obj)
    assert agreed.exit_code == 0 and declined.exit_code == 0, agreed.output + declined.output
    events = {e.session: e for e in read_topic(settings, settings.topic_sessions) if isinstance(e, SessionEvent)}
    assert (events["agrees-1"].consent, events["declines-1"].consent) == (True, False)
    for session in ("agrees-1", "declines-1"):  # (no frames will come: closed, so the assembler can go idle)
        assert runner.invoke(session_cli, ["end", session, "--abort"], obj=obj).exit_code == 0

    # The assembler keeps the record in the store and the manifest; a failed dataset of a session
    # without consent keeps no frames (no video will be made of it).
    yes = SyntheticSession(f"yes-{uuid.uuid4().hex[:6]}", cameras=("cam0",), frames=3)
    no = SyntheticSession(f"no-{uuid.uuid4().hex[:6]}", cameras=("cam0",), frames=3, consent=False)
    produce(
        settings,
        [m for syn in (yes, no) for m in [syn.event_message(settings, syn.start()), *syn.stream_messages(settings)]]
        + [syn.event_message(settings, syn.end()) for syn in (yes, no)],
    )
    summary = Assembler(settings, group_id=settings.group("assembler"), **FAST).run(idle_exit=1.5, serve_metrics=False)
    assert summary.closed == {
        "agrees-1": "aborted",
        "declines-1": "aborted",
        yes.session: "failed",
        no.session: "failed",
    }
    for syn, consent in ((yes, True), (no, False)):
        record_ = json.loads(ObjectStore(settings).get(layout.consent_key(syn.session)))
        assert record_ == {"session": syn.session, "consent": consent, "recorded_at": syn.start_wall}
        assert read_manifest(settings, syn.session)["consent"] is consent
    assert any("/shards/" in k for k in keys_of(settings, yes.session))
    assert set(keys_of(settings, no.session)) == {
        layout.manifest_key(no.session),
        layout.dataset_ready_key(no.session),
        layout.consent_key(no.session),
    }


@pytest.mark.slow
def test_without_consent_only_the_video_is_kept_and_its_link_dies_with_it(dataset):
    settings, syn = dataset
    settings = settings.model_copy(update={"retention_videos_days": 1})  # a link of 7 days would outlive it
    store = ObjectStore(settings)
    manifest = read_manifest(settings, syn.session)
    store.put(layout.manifest_key(syn.session), json.dumps({**manifest, "consent": False}).encode())
    ready = DatasetReady(
        session=syn.session, status="ready", samples=24, cameras=["cam0"], reference="dance", wall_time=time.time()
    )
    service = TrainingService(
        settings, TrainerConfig(budget_s=4, checkpoint_every_s=1, progress_bar=False, reference="dance")
    )
    rendition = service.handle(ready)
    assert isinstance(rendition, Rendition) and rendition.frames == 18

    kept = set(keys_of(settings, syn.session))
    # no frames, shards, checkpoints, samples (and no coverage record: not a guided capture)
    assert kept == layout.kept_without_consent(syn.session) - {layout.coverage_key(syn.session)}
    video = store.list_info(rendition.video_key)[0]
    assert urllib.request.urlopen(rendition.url, timeout=30).read() == store.get(rendition.video_key)
    # The link expires no later than the video is deleted, though the link setting allows 7 days.
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(rendition.url).query)
    assert settings.link_expiry_s == 7 * DAY_S and int(query["X-Amz-Expires"][0]) <= DAY_S
    assert rendition.expires_at <= video.written_at + DAY_S + 1

    # Delivered again (a crash before the commit): the video is not made twice; a fresh link comes.
    again = service.handle(ready)
    assert isinstance(again, Rendition) and (again.video_key, again.frames) == (rendition.video_key, 18)
    assert urllib.request.urlopen(again.url, timeout=30).read() == store.get(rendition.video_key)
    assert set(keys_of(settings, syn.session)) == kept
    renditions = [m for m in read_topic(settings, settings.topic_renditions) if isinstance(m, Rendition)]
    assert len([m for m in renditions if m.final]) == 2
    # The one-shot video came first, and without consent is not kept once the video is made.
    assert is_oneshot(renditions[0]) and not renditions[0].final and renditions[0].video_key not in kept


def test_base_models_learn_only_from_sessions_with_consent(settings):
    from trainer.base import build_base

    store = ObjectStore(settings)
    store.put(layout.manifest_key("agreed-b"), json.dumps({"consent": True, "representation": "pose"}).encode())
    store.put(layout.manifest_key("declined-b"), json.dumps({"consent": False}).encode())
    with pytest.raises(ValueError, match=r"sessions \['declined-b', 'unknown-b'\] have no recorded consent"):
        build_base(settings, ["agreed-b", "declined-b", "unknown-b"], budget_s=1)


# --- what leaves the booth --------------------------------------------------------------------------
def _jpeg_with_metadata(rgb: np.ndarray) -> tuple[bytes, bytes]:
    """A real JPEG with an EXIF-like APP1 segment and a comment holding a secret; (jpeg, secret)."""
    ok, buf = cv2.imencode(".jpg", rgb)
    assert ok
    secret = b"visitor-name-and-thumbnail-" + uuid.uuid4().hex.encode()
    app1 = b"\xff\xe1" + struct.pack(">H", len(secret) + 8) + b"Exif\x00\x00" + secret
    com = b"\xff\xfe" + struct.pack(">H", len(secret) + 2) + secret
    data = buf.tobytes()
    return data[:2] + app1 + com + data[2:], secret


def test_dead_letters_keep_a_frames_headers_but_never_its_pixels():
    rgb = np.random.default_rng(3).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    jpeg, secret = _jpeg_with_metadata(rgb)
    frame = Frame(session="s", camera="c", seq=7, capture_ns=1, wall_time=2.0, width=320, height=240, image=jpeg)
    value = frame.encode()
    letter = decode(DeadLetter.wrap(stage="pose", reason="r", topic="t", value=value, key=b"s/c", wall_time=0).encode())
    assert letter.original_size == len(value) and letter.truncated and len(letter.original) < 2000 < len(value)
    kept = decode(letter.original)  # still the same frame's envelope...
    assert isinstance(kept, Frame) and kept.model_dump(exclude={"image"}) == frame.model_dump(exclude={"image"})
    image = kept.image
    assert header_size(image, "jpeg") == (320, 240)  # ...whose image header still tells its size
    # Segment by segment up to the scan: the same layout at the same offsets, metadata zeroed.
    at, segments = 2, []
    while True:
        marker, length = jpeg[at + 1], struct.unpack(">H", jpeg[at + 2 : at + 4])[0]
        segments.append((at, marker, length))
        at += 2 + length
        if marker == 0xDA:
            break
    assert len(image) == at and {0xE0, 0xE1, 0xFE, 0xC0, 0xDB, 0xC4} <= {m for _, m, _ in segments}
    for offset, marker, length in segments:
        if 0xE0 <= marker <= 0xEF or marker == 0xFE:
            assert image[offset : offset + 4] == jpeg[offset : offset + 4]
            assert image[offset + 4 : offset + 2 + length] == bytes(length - 2), hex(marker)
        else:
            assert image[offset : offset + 2 + length] == jpeg[offset : offset + 2 + length], hex(marker)
    assert secret not in letter.original  # EXIF and comments zeroed
    assert jpeg[-300:-268] not in letter.original  # no scan data: no pixels
    assert cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_COLOR) is None

    ok, png = cv2.imencode(".png", rgb)
    assert ok
    text = b"tEXt" + b"Author\x00" + secret
    png = png.tobytes()
    png = png[:33] + struct.pack(">I", len(text) - 4) + text + b"\x00" * 4 + png[33:]  # a text chunk after IHDR
    kept_png = without_pixels(png)  # a bare image, not in an envelope
    assert secret not in kept_png
    assert header_size(kept_png, "png") == (320, 240) and len(kept_png) == 8 + 25 + 8  # signature, IHDR, IDAT's head
    assert without_pixels(b"garbage that is no image") == b"garbage that is no image"
    bogus = b"MB\x01\x01\xff\xff\xff\xff" + jpeg  # a frame header that runs past the message
    assert without_pixels(bogus) == b"MB"  # printable text only
    huge = b"not an envelope " * 100_000
    cut = DeadLetter.wrap(stage="s", reason="r", topic="t", value=huge, key=None, wall_time=0)
    assert cut.truncated and cut.original == huge[:EXCERPT_BYTES]
    assert without_pixels(b"x" * 5000) == b""  # a long run like base64 is data, not text to show


def _pixel_data(image: bytes, kind: str) -> bytes:
    """The part of an encoded image that is its picture: a JPEG's scan, a PNG's IDAT data, a BMP's
    pixel array."""
    if kind == "jpeg":
        at = 2
        while image[at + 1] != 0xDA:
            at += 2 + struct.unpack(">H", image[at + 2 : at + 4])[0]
        return image[at + 2 + struct.unpack(">H", image[at + 2 : at + 4])[0] : -2]
    if kind == "png":
        at = image.index(b"IDAT")
        return image[at + 4 : at + 4 + struct.unpack(">I", image[at - 4 : at])[0]]
    return image[struct.unpack("<I", image[10:14])[0] :]


def _forms_of(image: bytes) -> dict[str, bytes]:
    return {
        "raw": b"X" + image,
        "base64": b'{"image": "' + base64.b64encode(image[1:]),
        "hex": image.hex().encode(),
        "escaped": repr(image).encode(),
    }


def _readings(record: bytes) -> dict[str, bytes]:
    """The bytes `record` holds in each form that can carry binary: as is, and decoded from its
    base64 runs (every alignment), hex runs, and escapes (\\xff, \\u00ff) as a repr or JSON writes them."""
    text = record.decode("latin-1")
    forms = {"raw": record, "base64": b"", "hex": b"", "escaped": b""}
    for run in re.findall(r"[A-Za-z0-9+/]{12,}", text):
        for shift in range(4):
            part = run[shift:]
            forms["base64"] += b"|" + base64.b64decode(part[: len(part) // 4 * 4])
    for run in re.findall(r"(?:[0-9a-f]{2}){6,}", text):
        forms["hex"] += b"|" + bytes.fromhex(run)
    for run in re.findall(r"(?:\\(?:x|u00)[0-9a-fA-F]{2}|[ -\[\]-~])+", text):
        pieces = re.findall(r"\\(?:x|u00)([0-9a-fA-F]{2})|([ -\[\]-~])", run)
        forms["escaped"] += b"|" + bytes(int(h, 16) if h else ord(c) for h, c in pieces)
    return forms


def _traces(record: bytes, pixel_windows: set[bytes]) -> list[str]:
    """The forms in which any 8 bytes of a picture (`pixel_windows`: all its 8-byte pieces) are in `record`."""
    return [
        form
        for form, data in _readings(record).items()
        if any(data[i : i + 8] in pixel_windows for i in range(len(data) - 7))
    ]


def test_dead_letters_never_keep_image_bytes_in_any_malformed_shape(settings):
    """Every way a picture can reach a stage malformed, through the dead-letter writer onto the
    broker: what is stored (the record's key and value) holds size, digest and at most structure,
    never a byte of the picture, in any encoding."""
    from infra.deadletters import send_dead_letter

    rgb = cv2.GaussianBlur(np.random.default_rng(5).integers(0, 255, (240, 320, 3), dtype=np.uint8), (5, 5), 0)
    images = {kind: cv2.imencode("." + kind, rgb)[1].tobytes() for kind in ("jpeg", "png", "bmp")}
    assert len(images["bmp"]) > 200_000
    windows = {}
    for kind, image in images.items():
        pixels = _pixel_data(image, kind)
        windows[kind] = {pixels[i : i + 8] for i in range(len(pixels) - 7)}
    # The check itself sees pictures: it finds the pixels of each shape kept whole.
    assert all(name in _traces(form, windows["png"]) for name, form in _forms_of(images["png"]).items())

    def envelope(kind: int, header: bytes, payload: bytes = b"") -> bytes:
        return b"MB" + bytes([kind, 1]) + struct.pack(">I", len(header)) + header + payload

    frame_header = json.dumps(
        {"session": "s", "camera": "c", "seq": 1, "capture_ns": 1, "wall_time": 1.0, "width": 320, "height": 240}
    ).encode()
    shapes = []
    for kind, image in images.items():
        b64 = base64.b64encode(image)
        shapes += [
            (kind, "raw", image),
            (kind, "prefixed", b"X" + image),
            (kind, "truncated", image[: len(image) // 2]),
            (kind, "tail only", image[len(image) // 3 :]),
            (kind, "inside broken JSON", b'{"image": "' + image),
            (kind, "base64 inside broken JSON", b'{"image": "' + b64),
            (kind, "base64 alone", b64),
            (kind, "escaped in JSON", json.dumps({"image": image.decode("latin-1")}).encode()),
            (kind, "as a repr", repr(image).encode()),
            (kind, "as hex", image.hex().encode()),
            (kind, "frame header running past the value", b"MB\x01\x01\xff\xff\xff\xff" + image),
            (kind, "frame with a stray byte before its image", envelope(1, frame_header, b"X" + image)),
            (kind, "frame with a cut image", envelope(1, frame_header, image[: len(image) // 2])),
            (kind, "frame with the image in its header", envelope(1, json.dumps({"image": b64.decode()}).encode())),
            (kind, "frame whose header is broken JSON", envelope(1, b'{"session": "' + image)),
            (kind, "pose envelope carrying an image", envelope(2, b'{"session": "s"}', image)),
            (kind, "forged dead letter carrying an image", envelope(8, b'{"stage": "x"}', b"X" + image)),
        ]
    producer = kafka.producer(settings)
    try:
        for i, (_, what, value) in enumerate(shapes):
            key = b"s/c" if i % 2 else b"k" + value[:2000]  # a key can be the carrier too
            send_dead_letter(producer, settings, "pose", what, settings.topic_frames, key, value, 0, 1000 + i)
        producer.flush(10)
    finally:
        producer.close()
    consumer = kafka.consumer(settings, settings.topic_deadletter, group_id=None, auto_offset_reset="earliest")
    records = []
    try:
        deadline = time.monotonic() + 20
        while len(records) < len(shapes) and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records += batch
    finally:
        consumer.close()
    assert len(records) == len(shapes)
    for stored_record in records:
        letter = decode(stored_record.value)
        kind, what, value = shapes[letter.offset - 1000]
        assert letter.reason == what and letter.source_topic == settings.topic_frames and letter.partition == 0
        assert letter.original_size == len(value) and letter.sha256 == hashlib.sha256(value).hexdigest(), what
        assert letter.truncated and len(letter.original) <= 1024, (what, len(letter.original))
        stored = (stored_record.key or b"") + stored_record.value
        assert _traces(stored, windows[kind]) == [], (kind, what)
    # What can be kept is: a bare image's structure, a readable envelope's header, leading text.
    by_what = {(k, w): decode(r.value) for r in records for k, w, _ in [shapes[decode(r.value).offset - 1000]]}
    assert header_size(by_what[("jpeg", "raw")].original, "jpeg") == (320, 240)
    assert header_size(by_what[("png", "truncated")].original, "png") == (320, 240)
    assert by_what[("bmp", "raw")].original == images["bmp"][:54]  # file and info headers
    assert by_what[("jpeg", "prefixed")].original == b"X"
    assert by_what[("png", "inside broken JSON")].original == b'{"image": "'
    assert by_what[("bmp", "frame with a stray byte before its image")].original == envelope(1, frame_header)


def test_client_debug_logs_show_a_frames_size_not_its_bytes(settings, caplog):
    """kafka-python at debug level logs each record sent, the raw bytes on the wire and whole
    requests and responses; none of it may carry a frame's image."""
    frame = make_frame("log-1", "cam0", 0)
    caplog.set_level(logging.DEBUG)
    for name in CLIENT_LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    send(settings, [(settings.topic_frames, frame)])
    fetched = read_topic(settings, settings.topic_frames)  # fetched: the response went through the log too
    assert fetched and all(m.image == frame.image for m in fetched)
    wire = [r for r in caplog.records if r.name.startswith("kafka.protocol")]
    assert wire, "the clients logged nothing at debug level: the check below would prove nothing"
    pixels, as_text = pixel_marks(frame.image)
    assert as_text not in caplog.text and pixels.hex() not in caplog.text

    # The line kafka-python logs for each record sent, through its own logger: the value is its size.
    caplog.clear()
    logging.getLogger("kafka.producer.kafka").debug(
        "%s: Sending (key=%r value=%r headers=%r) to %s", "producer", b"log-1/cam0", frame.encode(), [], "tp"
    )
    assert caplog.messages == [
        f"producer: Sending (key=b'log-1/cam0' value='<{len(frame.encode())} bytes>' headers=[]) to tp"
    ]


def test_recordings_say_whose_sessions_they_hold(settings, tmp_path):
    now = time.time()
    frame = make_frame("nobody-started", "cam0", 0)
    send(
        settings,
        [
            (settings.topic_sessions, SessionEvent(session="rec-yes", kind="start", wall_time=now, consent=True)),
            (settings.topic_sessions, SessionEvent(session="rec-no", kind="start", wall_time=now)),
            (settings.topic_frames, make_frame("rec-no", "cam0", 0)),
            (settings.topic_frames, frame),
        ],
    )
    path = tmp_path / "all.mcap"
    summary = record(settings, path, [settings.topic_sessions, settings.topic_frames], idle_s=1.5)
    expected = {"rec-yes": "consent", "rec-no": "no consent", "nobody-started": "unknown"}
    assert read_info(path).sessions == expected == summary.consent

    out = CliRunner().invoke(
        record_cli,
        [settings.topic_sessions, "-o", str(tmp_path / "cli.mcap"), "--idle", "1.5", "-q"],
        obj={"settings": settings},
    )
    assert out.exit_code == 0, out.output
    assert "rec-no (no consent)" in out.output and "holds visitors' data without recorded consent" in out.output


# --- retention --------------------------------------------------------------------------------------
def test_retention_classes_cover_every_key_a_session_writes():
    s = "s1"
    assert layout.retention_class(layout.shard_key(s, "cam0", 0)) == "frames"
    assert layout.retention_class(layout.shard_index_key(s, "cam0", 0)) == "frames"
    assert layout.retention_class(layout.preview_key(s)) == "frames"
    assert layout.retention_class(layout.checkpoints_prefix(s) + "ckpt-00000010.pt") == "checkpoints"
    for name in layout.RESULT_FILES:
        assert layout.retention_class(layout.result_key(s, name)) == "videos"
    for key in (layout.manifest_key(s), layout.dataset_ready_key(s), layout.consent_key(s), layout.purge_marker_key(s)):
        assert layout.retention_class(key) == "records"
    assert layout.retention_class(layout.session_prefix(s) + "something-new") == "frames"  # strictest
    assert layout.retention_class(layout.reference_latest_key("salsa")) is None
    assert layout.retention_class(layout.BASE_PREFIX + "generator.pt") is None
    days = Settings(retention_frames_days=30, retention_checkpoints_days=1, retention_videos_days=7).retention_days()
    assert days == {"frames": 30, "checkpoints": 1, "videos": 7, "records": 30}
    assert video_link_expiry_s(Settings(retention_videos_days=2), written_at=0, now=DAY_S) == DAY_S
    assert video_link_expiry_s(Settings(link_expiry_s=3600), written_at=0, now=0) == 3600


def spool_files(state_dir, state: str, stem: str, age_days: float = 0.0, folder: bool = False) -> list:
    """A --record-first recording in a camera host's spool, written age_days ago: a video and its
    sidecar side by side, or (folder) in a folder of their own."""
    where = state_dir / "spool" / state
    paths = [where / stem] if folder else [where / f"{stem}.mp4", where / f"{stem}.json"]
    files = [where / stem / "video.mp4", where / stem / "sidecar.json"] if folder else paths
    for path in files:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"frames")
    written = time.time() - age_days * DAY_S
    for path in files + paths:
        os.utime(path, (written, written))
    return paths


def test_retention_apply_deletes_each_kind_when_it_is_due(settings, tmp_path):
    settings = settings.model_copy(
        update={
            "retention_frames_days": 5,
            "retention_checkpoints_days": 2,
            "retention_videos_days": 4,
            "state_dir": tmp_path,
        }
    )
    old_done = spool_files(tmp_path, "done", "old-1.cam0.100", age_days=6)
    old_failed = spool_files(tmp_path, "failed", "old-2.cam0.100", age_days=6, folder=True)
    fresh_done = spool_files(tmp_path, "done", "new-1.cam0.100", age_days=1)
    old_pending = spool_files(tmp_path, "pending", "old-3.cam0.100", age_days=6)  # not published yet: kept
    store = ObjectStore(settings)
    kept, gone = "kept-1", "gone-1"  # with consent; without, its video made
    for session, consent in ((kept, True), (gone, False)):
        store.put(layout.consent_key(session), json.dumps({"session": session, "consent": consent}).encode())
        store.put(layout.manifest_key(session), json.dumps({"status": "ready", "consent": consent}).encode())
        store.put(layout.shard_key(session, "cam0", 0), b"frames")
        store.put(layout.preview_key(session), b"jpeg")
        store.put(layout.checkpoints_prefix(session) + "ckpt-00000001.pt", b"state")
        store.put(layout.result_key(session, "rendition.mp4"), b"video")
        store.put(layout.result_key(session, "samples.png"), b"pictures")
    store.put(layout.purge_marker_key("purged-1"), b"{}")
    store.put(layout.reference_latest_key("salsa"), b"{}")
    topic = changelog_topic(settings)  # the stream workers' state: one stale key, one fresh
    admin = kafka.admin(settings)
    admin.create_topics([NewTopic(topic, 1, 1)])
    admin.close()
    p = kafka.producer(settings)
    p.send(topic, key=b'"old/cam0"', value=b"{}", partition=0, timestamp_ms=int((time.time() - 6 * DAY_S) * 1000))
    p.send(topic, key=b'"new/cam0"', value=b"{}", partition=0)
    p.flush()
    p.close()
    (obj,) = store.list_info(layout.shard_key(kept, "cam0", 0))
    assert abs(obj.written_at - time.time()) < 120

    # Now: only the unconsented session's frames, checkpoints and extra pictures go (its video is made).
    now = time.time()
    dry = apply_retention(settings, now=now, dry_run=True)
    assert dry.deleted == {} and set(dry.discarded) == {gone} and len(keys_of(settings, gone)) == 7
    assert [k.key for k in dry.tombstones] == [b'"old/cam0"'] and dry.recordings == sorted(old_done + old_failed)
    assert all(p.exists() for p in old_done + old_failed)
    first = apply_retention(settings, now=now)
    assert sorted(first.discarded[gone]) == sorted(
        [
            layout.shard_key(gone, "cam0", 0),
            layout.preview_key(gone),
            layout.checkpoints_prefix(gone) + "ckpt-00000001.pt",
            layout.result_key(gone, "samples.png"),
        ]
    )
    assert set(keys_of(settings, gone)) == {
        layout.consent_key(gone),
        layout.manifest_key(gone),
        layout.result_key(gone, "rendition.mp4"),
    }
    assert {k.key: k.deleted for k in latest_keys(settings, topic)} == {b'"old/cam0"': True, b'"new/cam0"': False}
    assert [p.exists() for p in old_done + old_failed + fresh_done + old_pending] == [False] * 3 + [True] * 4

    # Days later, class by class.
    later = apply_retention(settings, now=now + 2 * DAY_S + 60)
    assert later.deleted == {"checkpoints": [layout.checkpoints_prefix(kept) + "ckpt-00000001.pt"]}
    later = apply_retention(settings, now=now + 4 * DAY_S + 60)
    assert sorted(later.deleted["videos"]) == sorted(
        [layout.result_key(s, n) for s in (kept, gone) for n in ("rendition.mp4",)]
        + [layout.result_key(kept, "samples.png")]
    )
    later = apply_retention(settings, now=now + 5 * DAY_S + 60)
    assert (
        set(later.deleted) == {"frames", "records"} and layout.purge_marker_key("purged-1") in later.deleted["records"]
    )
    assert store.list(layout.SESSIONS_PREFIX) == [] and store.list(layout.PURGED_PREFIX) == []
    assert store.get(layout.reference_latest_key("salsa")) == b"{}"  # not a visitor's

    shown = CliRunner().invoke(retention_cli, ["apply", "--dry-run"], obj={"settings": settings})
    assert shown.exit_code == 0 and "dry run" in shown.output, shown.output


def test_lifecycle_rules_come_from_the_same_settings_and_a_store_without_them_is_reported(settings):
    from minio.xml import marshal

    s = settings.model_copy(update={"retention_frames_days": 9, "retention_checkpoints_days": 1})
    xml = marshal(lifecycle_rules(s)).decode()
    for kind, days in (("frames", 9), ("checkpoints", 1), ("videos", 7), ("records", 9)):
        rule = f"<Tag><Key>{RETENTION_TAG}</Key><Value>{kind}</Value></Tag></Filter><ID>booth-{kind}</ID>"
        assert rule + f"<Expiration><Days>{days}</Days></Expiration>" in xml, (kind, xml)
    assert "<Prefix>sessions/</Prefix></Filter><ID>booth-sessions</ID><Expiration><Days>9</Days>" in xml
    # The embedded store has no lifecycle support: the rules are refused, clearly.
    with pytest.raises(LifecycleError, match="refused the lifecycle rules .*run `booth retention apply` periodically"):
        apply_lifecycle(s)
    out = CliRunner().invoke(retention_cli, ["lifecycle"], obj={"settings": s})
    assert out.exit_code != 0 and "refused the lifecycle rules" in out.output

    class Forgetful(ObjectStore):  # a store that takes the rules and then holds none
        def set_lifecycle(self, config) -> None:
            pass

        def get_lifecycle(self):
            return None

    with pytest.raises(LifecycleError, match="did not keep the lifecycle rules"):
        apply_lifecycle(s, store=Forgetful(s))

    class Keeping(ObjectStore):  # and one that keeps them, as MinIO does
        rules = None

        def set_lifecycle(self, config) -> None:
            from minio.lifecycleconfig import LifecycleConfig
            from minio.xml import unmarshal

            self.rules = unmarshal(LifecycleConfig, marshal(config).decode())

        def get_lifecycle(self):
            return self.rules

    kept = apply_lifecycle(s, store=Keeping(s))
    assert [r.rule_id for r in kept.rules] == [f"booth-{k}" for k in layout.RETENTION_CLASSES] + ["booth-sessions"]


# --- purge ------------------------------------------------------------------------------------------
def _changelog(settings, records: list[tuple[bytes, bytes | None, int]]) -> str:
    topic = changelog_topic(settings)
    admin = kafka.admin(settings)
    admin.create_topics([NewTopic(topic, settings.partitions_streams, 1)])
    admin.close()
    p = kafka.producer(settings)
    for key, value, partition in records:
        p.send(topic, key=key, value=value, partition=partition)
    p.flush()
    p.close()
    return topic


def test_purge_deletes_everything_of_one_visitor_and_the_console_forgets_them(settings, tmp_path):
    settings = console_settings(settings, state_dir=tmp_path)
    store = ObjectStore(settings)
    visitor, other = "visitor-9", "other-9"
    recordings = spool_files(tmp_path, "done", f"{visitor}.cam0.5") + spool_files(
        tmp_path, "pending", f"{visitor}.cam1.9"
    )
    recordings += spool_files(tmp_path, "done", f"{visitor}.cam2.7", folder=True)
    others = spool_files(tmp_path, "done", f"{other}.cam0.5") + spool_files(
        tmp_path, "done", f"{other}.c.1", folder=True
    )
    for session in (visitor, other):
        for key in (layout.shard_key(session, "cam0", 0), layout.manifest_key(session), layout.consent_key(session)):
            store.put(key, b"x")
        store.put(layout.checkpoints_prefix(session) + "ckpt-00000005.pt", b"x")
        store.put(layout.result_key(session, "rendition.mp4"), b"x")
    topic = _changelog(
        settings,
        [(b'"visitor-9/cam0"', b"{}", 0), (b'"visitor-9/cam0"', b"{}", 0), (b'"visitor-9/cam1"', b"{}", 1)]
        + [(b'"other-9/cam0"', b"{}", 0)],
    )
    now = time.time()
    frames = {"camV": make_frame(visitor, "camV", 0), "camO": make_frame(other, "camO", 0)}
    send(
        settings,
        [(settings.topic_sessions, SessionEvent(session=s, kind="start", wall_time=now)) for s in (visitor, other)]
        + [(settings.topic_frames, f) for f in frames.values()]
        + [(settings.topic_smoothed, make_pose(f)) for f in frames.values()]
        + [
            (
                settings.topic_training,
                TrainingProgress(session=visitor, phase="training", step=3, total_steps=9, wall_time=now),
            )
        ],
    )
    with TestClient(create_app(settings, targets={}), base_url="http://127.0.0.1") as client:
        logged_in(client)

        def rows() -> set[str]:
            return {r["session"] for r in client.get("/api/state").json()["sessions"]}

        wait_until(lambda: rows() == {visitor, other}, timeout=20, what="both sessions in the console")
        assert client.get("/api/preview/camV.jpg").status_code == 200

        result = CliRunner().invoke(session_cli, ["purge", visitor, "--settle", "0.5"], obj={"settings": settings})
        assert result.exit_code == 0, result.output
        assert f"purged {visitor}: 5 objects" in result.output and "2 tombstones" in result.output

        wait_until(lambda: rows() == {other}, timeout=20, what="the purged session to leave the console")
        assert client.get("/api/preview/camV.jpg").status_code == 404
        assert client.get("/api/preview/camO.jpg").status_code == 200
        assert [c["camera"] for c in client.get("/api/state").json()["cameras"]] == ["camO"]
        # Progress arriving for it afterwards (a trainer that had not stopped yet) brings no row back.
        send(
            settings,
            [
                (
                    settings.topic_training,
                    TrainingProgress(session=visitor, phase="done", step=9, total_steps=9, wall_time=now),
                )
            ],
        )
        time.sleep(2.5)
        assert rows() == {other}

    assert keys_of(settings, visitor) == [] and len(keys_of(settings, other)) == 5
    assert not any(p.exists() for p in recordings) and all(p.exists() for p in others)
    assert store.exists(layout.purge_marker_key(visitor))
    state = {(k.key, k.partition): k.deleted for k in latest_keys(settings, topic)}
    assert state == {
        (b'"visitor-9/cam0"', 0): True,
        (b'"visitor-9/cam1"', 1): True,
        (b'"other-9/cam0"', 0): False,
    }
    events = [e for e in read_topic(settings, settings.topic_sessions) if isinstance(e, SessionEvent)]
    assert (events[-1].session, events[-1].kind) == (visitor, "purge")

    again = CliRunner().invoke(session_cli, ["purge", visitor, "--settle", "0", "--json"], obj={"settings": settings})
    report = json.loads(again.output)
    assert report["objects"] == [] and report["tombstones"] == []  # nothing left to delete
    # What the broker keeps is said, topic by topic: the embedded broker deletes nothing.
    assert "left on the broker" in result.output and "never" in result.output
    left = {c["topic"]: c for c in report["broker"]}
    assert {settings.topic_frames, settings.topic_smoothed, settings.topic_sessions, topic} <= set(left)
    assert left[settings.topic_frames]["gone_by"] is None and "embedded" in left[settings.topic_frames]["policy"]
    bad = CliRunner().invoke(session_cli, ["purge", "../x"], obj={"settings": settings})
    assert bad.exit_code != 0 and "forbidden character" in bad.output


def test_the_visitor_topics_are_kept_only_broker_retention_hours_and_a_purge_says_until_when(settings):
    """The frame, pose and dead-letter topics carry a time retention (standard Kafka configs) from
    their creation, and get it on a rerun when they exist already; the workers' keyed state is
    compacted within the same time; a purge computes from those configs when the rest goes."""
    from kafka.admin import ConfigResource, ConfigResourceType

    from infra.kafka import changelog_configs, ensure_topics, topic_settings
    from processors.app import build_app
    from tools.purge import copy_left

    short = settings.model_copy(update={"broker_retention_hours": 2.0})
    ensure_topics(short)
    configs = topic_settings(short, short.visitor_topics() + [short.topic_sessions])
    for topic in short.visitor_topics():
        assert configs[topic]["retention.ms"] == str(2 * 3_600_000), topic
        assert configs[topic]["segment.ms"] == str(3_600_000) and configs[topic]["cleanup.policy"] == "delete"
    assert configs[short.topic_sessions].get("retention.ms") != str(2 * 3_600_000)  # control topics: the default

    # Topics made before (an older set-up): the next `booth stack up` / compose `setup` sets them.
    admin = kafka.admin(short)
    try:
        admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, short.topic_frames, configs={"retention.ms": "999999999"})],
            raise_on_unknown=False,
        )
    finally:
        admin.close()
    assert topic_settings(short, [short.topic_frames])[short.topic_frames]["retention.ms"] == "999999999"
    ensure_topics(short.model_copy(update={"broker_retention_hours": 3.0}))
    assert topic_settings(short, [short.topic_frames])[short.topic_frames]["retention.ms"] == str(3 * 3_600_000)

    app = build_app(short)
    for table in app.tables.values():
        config = table.changelog_topic.config
        assert config["max.compaction.lag.ms"] == str(2 * 3_600_000) and config["cleanup.policy"] == "compact"
    assert changelog_configs(short)["segment.ms"] == str(3_600_000)

    # On Apache Kafka, from what it reports: retention + a segment's span + its 5-minute check.
    now = 1_000_000.0
    frames = copy_left("f", "frames", {"retention.ms": "7200000", "segment.ms": "3600000"}, False, False, now)
    assert frames.until == now + 2 * 3600 + 3600 + 300 and "2 h" in frames.policy
    state = copy_left("c", "state", {"max.compaction.lag.ms": "7200000", "segment.ms": "3600000"}, True, False, now)
    assert state.until == now + 2 * 3600 + 3600 + 300 and "compacted within 2 h" in state.policy
    control = copy_left("s", "events", {"retention.ms": "259200000"}, False, False, now)
    assert control.until == now + 72 * 3600 + 7 * 24 * 3600 + 300  # the broker's default 7-day segments
    assert copy_left("f", "frames", {"retention.ms": "7200000"}, False, True, now).until is None  # embedded


def test_status_views_drop_a_purged_session_for_good():
    state = ControlState()
    state.apply(SessionEvent(session="a", kind="start", wall_time=1.0, consent=True).encode())
    state.apply(SessionEvent(session="b", kind="start", wall_time=1.0).encode())
    assert {r["session"]: r["consent"] for r in state.as_dict()["sessions"]} == {"a": True, "b": False}
    state.apply(SessionEvent(session="a", kind="purge", wall_time=2.0).encode())
    state.apply(TrainingProgress(session="a", phase="done", step=1, total_steps=1, wall_time=3.0).encode())
    assert [r["session"] for r in state.as_dict()["sessions"]] == ["b"] and state.as_dict()["purged"] == ["a"]

    feed = PreviewFeed(Settings())
    feed.apply(make_frame("a", "cam0", 0).encode())
    feed.apply(make_frame("b", "cam1", 0).encode())
    feed.forget(["a"])
    feed.apply(make_frame("a", "cam0", 1).encode())  # read again after a reconnect: still forgotten
    assert set(feed.sessions()) == {"b"} and feed.preview("cam0") is None and feed.preview("cam1") is not None


def test_an_assembler_drops_a_session_purged_mid_recording_and_replays_never_bring_it_back(settings):
    syn = SyntheticSession(f"mid-{uuid.uuid4().hex[:6]}", cameras=("cam0",), frames=12)
    messages = syn.stream_messages(settings)
    frames = [m for m in messages if m[0] == settings.topic_frames]
    poses = [m for m in messages if m[0] == settings.topic_smoothed]
    produce(settings, [syn.event_message(settings, syn.start()), *frames[:8], *poses[:8]])
    asm = Assembler(settings, group_id=settings.group("assembler"), **FAST)
    stop = threading.Event()
    worker = threading.Thread(target=asm.run, kwargs=dict(stop_event=stop, serve_metrics=False))
    worker.start()
    try:
        wait_until(
            lambda: sum("/shards/" in k for k in keys_of(settings, syn.session)) == 2, timeout=30, what="two shards"
        )
        report = purge(settings, syn.session, settle_s=1.5)
        assert len(report.objects) >= 4  # consent record, shards and their index records
        produce(settings, [*frames[8:], *poses[8:], syn.event_message(settings, syn.end())])
        wait_until(lambda: asm.summary.closed.get(syn.session) == "purged", timeout=20, what="the purge to reach it")
        time.sleep(2.5)  # the rest of the session and its end arrive: nothing is written
    finally:
        stop.set()
        worker.join(30)
    assert keys_of(settings, syn.session) == []
    assert not [m for m in read_topic(settings, settings.topic_datasets) if getattr(m, "session", None) == syn.session]

    # A new assembler reading everything from the start (a replay) does not take the session up.
    fresh = Assembler(settings, group_id=f"{settings.group('assembler')}-again", **FAST)
    summary = fresh.run(idle_exit=2.0, serve_metrics=False)
    assert syn.session not in summary.closed and keys_of(settings, syn.session) == []


@pytest.mark.slow
def test_a_purge_during_training_stops_the_trainer_cleanly(dataset, tmp_path):
    """A real `booth train` process is training the session when it is purged: it stops within a
    few seconds, deletes what it wrote, publishes nothing for it, commits the offset and serves on."""
    settings, syn = dataset
    prefix = layout.checkpoints_prefix(syn.session)
    log_path = tmp_path / "trainer.log"
    command = [sys.executable, "-m", "booth.cli", "-v", "train", "--budget", "300", "--checkpoint-every", "1"]
    trainer = subprocess.Popen(
        [*command, "--reference", "dance", "-q"],
        env=worker_env(settings) | {"BOOTH_PURGE_CHECK_S": "1"},
        stdout=open(log_path, "wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(
            lambda: running(trainer, log_path) and any("ckpt-" in k for k in ObjectStore(settings).list(prefix)),
            timeout=180,
            what="training to write a checkpoint",
        )
        purged_at = time.time()
        report = purge(settings, syn.session, settle_s=4)
        assert any("/shards/" in k for k in report.objects) and any("ckpt-" in k for k in report.objects)
        wait_until(lambda: "was purged (during training" in log_path.read_text(), timeout=30, what="the job to stop")
        stopped_after = time.time() - purged_at
        time.sleep(3)
        assert running(trainer, log_path) and keys_of(settings, syn.session) == []

        reader = TopicReader(settings, settings.topic_datasets)
        wait_until(lambda: reader.poll(), timeout=20, what="the DatasetReady to be read")
        (ready,) = reader.records
        reader.close()
        group = kafka.consumer(settings, group_id=settings.group("trainer"))
        tp = TopicPartition(ready.topic, ready.partition)
        wait_until(lambda: group.committed(tp) == ready.offset + 1, timeout=20, what="the offset to be committed")
        group.close()
    finally:
        trainer.send_signal(signal.SIGTERM)
        code = trainer.wait(60)
    assert code == 0, log_path.read_text()[-2000:]
    assert stopped_after < 20
    phases = [m.phase for m in read_topic(settings, settings.topic_training) if isinstance(m, TrainingProgress)]
    assert "training" in phases and not {"evaluating", "rendering", "done", "failed"} & set(phases)
    # Only the one-shot video, published before training began (and deleted with the rest).
    renditions = [m for m in read_topic(settings, settings.topic_renditions) if isinstance(m, Rendition)]
    assert all(is_oneshot(m) for m in renditions)
    assert not [m for m in read_topic(settings, settings.topic_deadletter)]  # a purge is not a failure


@pytest.mark.slow
def test_a_restarted_worker_forgets_the_state_of_a_purged_session(settings, shared_dir, tmp_path):
    """The smoother's state for a purged camera stream is gone from the table: a worker that
    recovers the table smooths that stream's frames afresh, while another stream's state is there
    (its frames up to the recorded seq are taken as redeliveries)."""
    from processors.app import SmoothStage
    from processors.estimate import PoseStage
    from vision.pose import load_estimator
    from vision.smoothing import SmoothingParams

    estimate, stage = PoseStage(load_estimator("movenet")), SmoothStage(SmoothingParams())
    clips = {s: clip_frames(shared_dir, s, "cam0", 11, seed=1, frame_clock=True) for s in ("gone-7", "kept-7")}
    records = []
    for session, frames in clips.items():
        state = None
        key = f"{session}/cam0".encode()
        for f in frames[:10]:
            state, _ = stage(state, estimate(key, f.encode()))
        partition = (murmur2(key) & 0x7FFFFFFF) % settings.partitions_streams
        records.append((json.dumps(f"{session}/cam0").encode(), json.dumps(state).encode(), partition))
    _changelog(settings, records)
    report = purge(settings, "gone-7", settle_s=0)
    assert [k.key for k in report.tombstones] == [b'"gone-7/cam0"']

    smoothed = TopicReader(settings, settings.topic_smoothed)
    worker = start_worker(settings, tmp_path / "w.log")
    try:
        produce_frames(
            settings,
            [(f"{s}/cam0".encode(), f.encode()) for s in ("gone-7", "kept-7") for f in clips[s][:3]]
            + [(b"kept-7/cam0", clips["kept-7"][10].encode())],
        )

        def outputs() -> dict[str, list[int]]:
            got: dict[str, list[int]] = {}
            for r in smoothed.poll():
                m = decode(r.value)
                got.setdefault(m.session, []).append(m.seq)
            return got

        got = wait_until(
            lambda: running(worker) and (o := outputs()) and len(o.get("gone-7", [])) >= 3 and o.get("kept-7") and o,
            timeout=120,
            what="smoothed poses of both streams",
        )
    finally:
        stop_worker(worker)
        smoothed.close()
    assert got == {"gone-7": [0, 1, 2], "kept-7": [10]}
