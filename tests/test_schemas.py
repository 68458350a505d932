"""Contracts round-trip; malformed input is rejected with an error that names the problem."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from schemas import (
    DatasetReady,
    DeadLetter,
    Frame,
    InvalidId,
    Person,
    PoseEstimate,
    Rendition,
    SchemaError,
    SessionEvent,
    SmoothedPose,
    TrainingProgress,
    decode,
    frame_key,
    parse_frame_key,
    validate_id,
)

ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,20}", fullmatch=True)
finite = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)


def pose(seed=0, **fields):
    rng = np.random.default_rng(seed)
    kp = np.column_stack([rng.uniform(0, 640, 17), rng.uniform(0, 480, 17), rng.uniform(0, 1, 17)])
    return Person.from_array(kp, 0.8, **fields)


EXAMPLES = [
    Frame(session="s", camera="c", seq=0, capture_ns=1, wall_time=1.5, width=2, height=2, image=b"\xff\xd8x"),
    PoseEstimate(
        session="s",
        camera="c",
        seq=3,
        capture_ns=1,
        wall_time=1.5,
        width=640,
        height=480,
        backend="movenet",
        device="cpu",
        inference_ms=9.1,
        persons=[pose(1, track=4), pose(2, track=1), pose(5)],
        ended_tracks=[2, 3],
        dropped=2,
    ),
    SmoothedPose(
        session="s",
        camera="c",
        seq=3,
        capture_ns=1,
        wall_time=1.5,
        width=640,
        height=480,
        backend="movenet",
        persons=[pose(3, track=4, flags=[1] * 17)],
        flags=[1] * 17,
        others=[pose(4, track=1, flags=[3] * 17), pose(6, track=7, flags=[0] * 17)],
    ),
    SessionEvent(session="s", kind="start", wall_time=2.0, cameras=["c0", "c1"], reference="salsa"),
    DatasetReady(session="s", status="ready", manifest_key="sessions/s/manifest.json", samples=10, wall_time=3.0),
    TrainingProgress(session="s", phase="training", step=5, total_steps=10, losses={"l1": 0.3}, wall_time=4.0),
    Rendition(session="s", reference="salsa", video_key="k", url="http://x", expires_at=9.0, frames=3, wall_time=5.0),
    DeadLetter.wrap(
        stage="pose", reason="bad jpeg", topic="booth.frames", value=b"\x00" * 10, key=b"s/c", wall_time=1.0
    ),
]


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: type(m).__name__)
def test_every_contract_round_trips(message):
    data = message.encode()
    assert data[:2] == b"MB"
    back = decode(data)
    assert type(back) is type(message) and back == message
    assert type(message).decode(data) == message


def test_frame_image_travels_raw_after_the_header():
    image = bytes(range(256)) * 10
    f = Frame(session="s", camera="c", seq=1, capture_ns=1, wall_time=1, width=8, height=8, image=image)
    data = f.encode()
    (header_len,) = struct.unpack(">I", data[4:8])
    header = json.loads(data[8 : 8 + header_len])
    assert "image" not in header and header["seq"] == 1
    assert data[8 + header_len :] == image  # no base64, no copy in JSON


def test_decoding_the_wrong_kind_is_a_clear_error():
    with pytest.raises(SchemaError, match="expected a Frame, got a SessionEvent"):
        Frame.decode(EXAMPLES[3].encode())


def test_unknown_version_and_kind_are_named():
    data = bytearray(EXAMPLES[0].encode())
    data[3] = 7
    with pytest.raises(SchemaError, match="Frame schema version 7 is not supported"):
        decode(bytes(data))
    data[2] = 99
    with pytest.raises(SchemaError, match="unknown message kind 99"):
        decode(bytes(data))


def _rebuild(message, **changes) -> bytes:
    data = message.encode()
    (n,) = struct.unpack(">I", data[4:8])
    header = json.loads(data[8 : 8 + n])
    header.update(changes)
    raw = json.dumps(header).encode()
    return data[:4] + struct.pack(">I", len(raw)) + raw + data[8 + n :]


@pytest.mark.parametrize(
    "field,value,expected",
    [
        ("seq", -1, "seq: Input should be greater than or equal to 0"),
        ("width", 0, "width: Input should be greater than 0"),
        ("session", "../etc", "session: Value error, id '../etc' has a forbidden character '.'"),
        ("camera", "cam/0", "camera: Value error"),
        ("encoding", "bmp", "encoding"),
        ("extra_field", 1, "extra_field: Extra inputs are not permitted"),
    ],
)
def test_invalid_fields_are_named(field, value, expected):
    with pytest.raises(SchemaError) as err:
        decode(_rebuild(EXAMPLES[0], **{field: value}))
    assert expected in str(err.value)


def _envelope(kind: int, version: int, header: dict) -> bytes:
    raw = json.dumps(header).encode()
    return b"MB" + bytes([kind, version]) + struct.pack(">I", len(raw)) + raw


V1_SMOOTHED = {
    "session": "s",
    "camera": "c",
    "seq": 3,
    "capture_ns": 1,
    "wall_time": 1.5,
    "width": 640,
    "height": 480,
    "backend": "movenet",
    "persons": [{"score": 0.8, "keypoints": [[1.0, 2.0, 0.9]] * 17, "extra": None}],
    "flags": [5] * 17,
    "mode": "online",
    "latency_ms": 3.0,
}


def test_version_1_smoothed_poses_are_still_read_as_the_main_person_alone():
    old = decode(_envelope(3, 1, V1_SMOOTHED))
    assert isinstance(old, SmoothedPose) and old.others == [] and old.flags == [5] * 17
    assert old.persons[0].track is None and old.persons[0].keypoints[0] == (1.0, 2.0, 0.9)
    # ... but a version 1 message may not carry what only version 2 has.
    with pytest.raises(SchemaError, match="SmoothedPose version 1 has no others"):
        decode(_envelope(3, 1, {**V1_SMOOTHED, "others": []}))
    person = {**V1_SMOOTHED["persons"][0], "track": 1}
    with pytest.raises(SchemaError, match="has no persons\\[\\].track/flags"):
        decode(_envelope(3, 1, {**V1_SMOOTHED, "persons": [person]}))


def test_version_1_renditions_are_read_as_the_one_final_version():
    v1 = {
        "session": "s",
        "reference": "salsa",
        "video_key": "k",
        "url": "http://x",
        "expires_at": 9.0,
        "frames": 3,
        "metrics": {"ssim": 0.5},
        "wall_time": 5.0,
    }
    old = decode(_envelope(Rendition.KIND, 1, v1))
    assert isinstance(old, Rendition) and (old.version, old.kind, old.final) == (1, "gan", True)
    with pytest.raises(SchemaError, match="Rendition version 1 has no version"):
        decode(_envelope(Rendition.KIND, 1, {**v1, "version": 2}))
    newer = Rendition(**{**v1, "version": 2, "kind": "preview", "final": False})
    assert decode(newer.encode()) == newer


def test_version_1_pose_estimates_without_identities_are_refused():
    header = {k: v for k, v in V1_SMOOTHED.items() if k not in ("flags", "mode", "latency_ms")}
    with pytest.raises(SchemaError, match="PoseEstimate schema version 1 is not supported \\(this build reads 2\\)"):
        decode(_envelope(2, 1, header))
    assert isinstance(decode(_envelope(2, 2, header)), PoseEstimate)


def test_tracks_and_people_are_checked():
    with pytest.raises(SchemaError, match="a track id appears twice"):
        decode(_rebuild(EXAMPLES[1], persons=[pose(1, track=3).model_dump(), pose(2, track=3).model_dump()]))
    with pytest.raises(SchemaError, match="persons.0.track: Input should be greater than or equal to 1"):
        decode(_rebuild(EXAMPLES[1], persons=[pose(1).model_dump() | {"track": 0}]))
    with pytest.raises(SchemaError, match="persons holds the main person only"):
        decode(_rebuild(EXAMPLES[2], persons=[pose(1).model_dump(), pose(2).model_dump()]))
    with pytest.raises(SchemaError, match="a track id appears twice"):
        decode(_rebuild(EXAMPLES[2], others=[pose(4, track=4).model_dump()]))
    with pytest.raises(SchemaError, match="flags hold bits 1, 2, 4, 8 only"):
        decode(_rebuild(EXAMPLES[2], others=[pose(4, track=2, flags=[1] * 17).model_dump() | {"flags": [16] * 17}]))
    with pytest.raises(SchemaError, match="ended_tracks.0"):
        decode(_rebuild(EXAMPLES[1], ended_tracks=[0]))


def test_pose_with_wrong_keypoint_count_is_rejected():
    bad = _rebuild(EXAMPLES[1], persons=[{"score": 0.5, "keypoints": [[1, 2, 0.5]] * 5}])
    with pytest.raises(SchemaError, match="keypoints has 5 rows; a pose has 17"):
        decode(bad)


def test_empty_frame_image_is_rejected():
    data = EXAMPLES[0].encode()
    (n,) = struct.unpack(">I", data[4:8])
    with pytest.raises(SchemaError, match="image is empty"):
        decode(data[: 8 + n])


def test_dead_letter_truncates_huge_originals():
    header = json.dumps({"reason": "x " * DeadLetter.MAX_ORIGINAL}).encode()  # a readable envelope, kept
    big = b"MB\x05\x01" + struct.pack(">I", len(header)) + header
    d = DeadLetter.wrap(stage="pose", reason="too big", topic="t", value=big, key=None, wall_time=0)
    back = decode(d.encode())
    assert back.truncated and back.original_size == len(big) and len(back.original) == DeadLetter.MAX_ORIGINAL
    assert back.original == big[: DeadLetter.MAX_ORIGINAL]


@pytest.mark.parametrize("bad", ["", "../x", "a/b", "a.b", "x" * 65, "caf\u00e9", "\u0430dmin", "a b", "-x", None, 5])
def test_hostile_ids_are_rejected(bad):
    with pytest.raises(InvalidId):
        validate_id(bad, "session")


def test_frame_keys_round_trip():
    assert parse_frame_key(frame_key("s-1", "cam_0")) == ("s-1", "cam_0")
    with pytest.raises(InvalidId):
        parse_frame_key(b"no-slash")
    with pytest.raises(InvalidId):
        frame_key("s", "../c")


@given(st.binary(max_size=400))
@hsettings(max_examples=400, deadline=None)
def test_decoder_never_fails_other_than_with_schema_error(data):
    try:
        decode(data)
    except SchemaError:
        pass


@given(st.binary(min_size=1, max_size=200), st.integers(0, 2**32 - 1), st.integers(0, 255))
@hsettings(max_examples=300, deadline=None)
def test_corrupted_envelopes_fail_cleanly(tail, length, kind):
    data = b"MB" + bytes([kind, 1]) + struct.pack(">I", length) + tail
    try:
        decode(data)
    except SchemaError as exc:
        assert str(exc)


@given(session=ids, camera=ids, seq=st.integers(0, 2**40), wall=finite, image=st.binary(min_size=1, max_size=500))
@hsettings(max_examples=200, deadline=None)
def test_frames_round_trip_property(session, camera, seq, wall, image):
    f = Frame(
        session=session, camera=camera, seq=seq, capture_ns=seq, wall_time=wall, width=640, height=480, image=image
    )
    assert decode(f.encode()) == f


def test_every_message_kind_has_its_own_code():
    """A code shared by two kinds would decode one as the other (the KINDS table keeps the last)."""
    from schemas.messages import KINDS, MESSAGES

    assert len({cls.KIND for cls in MESSAGES}) == len(MESSAGES) == len(KINDS)
    assert {cls.__name__ for cls in KINDS.values()} >= {"Claim", "Coverage"}
