"""Hostile bytes against the decoders every stage runs on untrusted input.

A decoder may only ever answer with a message or with its own error type (SchemaError, Rejected):
anything else escapes the stages' `except` clauses and kills an agent or the assembler on the same
message again after every restart (a poison pill).
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from processors.app import SmoothStage
from processors.estimate import Rejected, decode_frame
from schemas import Frame, Person, PoseEstimate, SchemaError, SmoothedPose, decode, frame_key
from schemas.messages import _PREFIX, KINDS, MAGIC
from vision.smoothing import SmoothingParams

FUZZ = hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def envelope(kind: int, header: bytes, payload: bytes = b"", version: int | None = None) -> bytes:
    """A raw envelope, of the kind's current version unless told."""
    version = KINDS[kind].VERSION if version is None and kind in KINDS else (version or 1)
    return _PREFIX.pack(MAGIC, kind, version, len(header)) + header + payload


def _jpeg(width: int = 32, height: int = 24) -> bytes:
    image = np.zeros((height, width, 3), np.uint8)
    image[:, : width // 2] = (40, 160, 220)
    ok, buf = cv2.imencode(".jpg", image)
    assert ok
    return buf.tobytes()


GOOD_FRAME = Frame(
    session="s1", camera="cam0", seq=3, capture_ns=100, wall_time=1.0, width=32, height=24, image=_jpeg()
)
GOOD_KEY = frame_key("s1", "cam0")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
# Headers whose keys are the real field names, so the values reach the field validators.
FIELD_NAMES = sorted({name for cls in KINDS.values() for name in cls.model_fields})
field_headers = st.dictionaries(st.sampled_from(FIELD_NAMES), json_values, max_size=12)

# What a JSON parser must refuse without taking the process down with it.
NESTING_BOMB = b"[" * 3000 + b"]" * 3000  # deeper than the interpreter's recursion limit
HUGE_INT = b'{"seq": ' + b"9" * 5000 + b"}"


@given(kind=st.sampled_from(sorted(KINDS)), header=st.binary(max_size=300), payload=st.binary(max_size=50))
@example(kind=1, header=NESTING_BOMB, payload=b"x")
@example(kind=2, header=HUGE_INT, payload=b"")
@example(kind=1, header=b'{"session": "\\ud800"}', payload=b"x")
@FUZZ
def test_any_header_bytes_decode_or_raise_schema_error(kind, header, payload):
    try:
        decode(envelope(kind, header, payload))
    except SchemaError as exc:
        assert str(exc)


@given(
    kind=st.sampled_from(sorted(KINDS)),
    fields=field_headers,
    payload=st.binary(max_size=50),
    version=st.sampled_from([None, 1]),  # the current version, and the first (still read for some kinds)
)
@FUZZ
def test_any_json_header_decodes_or_raises_schema_error(kind, fields, payload, version):
    header = json.dumps(fields).encode()
    try:
        message = decode(envelope(kind, header, payload, version))
    except SchemaError as exc:
        assert str(exc)
    else:
        assert message.KIND == kind  # what decodes is exactly what the kind byte says


@st.composite
def mutated(draw, original: bytes):
    """A valid message with a few bytes overwritten, cut, or inserted."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[at : at + draw(st.integers(1, 64))]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


@given(raw=mutated(GOOD_FRAME.encode()), key=st.one_of(st.just(GOOD_KEY), st.none(), st.binary(max_size=80)))
@example(raw=envelope(1, NESTING_BOMB, b"x"), key=GOOD_KEY)
@example(raw=envelope(1, HUGE_INT, b"x"), key=GOOD_KEY)
@example(raw=b"", key=GOOD_KEY)
@example(raw=None, key=GOOD_KEY)
@FUZZ
def test_decode_frame_returns_an_image_or_rejects(raw, key):
    try:
        frame, rgb = decode_frame(key, raw)
    except Rejected as exc:
        assert str(exc)
    else:
        assert rgb.shape == (frame.height, frame.width, 3) and rgb.dtype == np.uint8


def test_frame_payload_must_be_the_declared_format():
    # OpenCV decodes a dozen formats by their magic bytes; only the declared one may reach a decoder.
    ok, bmp = cv2.imencode(".bmp", np.zeros((24, 32, 3), np.uint8))
    assert ok
    disguised = GOOD_FRAME.model_copy(update={"image": bmp.tobytes()})
    with pytest.raises(Rejected, match="is not a jpeg"):
        decode_frame(GOOD_KEY, disguised.encode())
    frame, rgb = decode_frame(GOOD_KEY, GOOD_FRAME.encode())
    assert frame == GOOD_FRAME and rgb.shape == (24, 32, 3)


def test_nesting_bomb_and_huge_numbers_are_schema_errors_naming_the_header():
    for header in (NESTING_BOMB, HUGE_INT):
        with pytest.raises(SchemaError, match="header is not valid JSON"):
            decode(envelope(1, header, b"x"))


coords = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
persons = st.builds(
    lambda kp, score: [Person.from_array(np.asarray(kp, np.float64).reshape(17, 3), score)],
    st.lists(st.tuples(coords, coords, st.floats(0, 1)), min_size=17, max_size=17),
    st.floats(0, 1),
)


@given(
    steps=st.lists(
        st.tuples(st.integers(0, 50), st.integers(0, 10**12), st.one_of(st.just([]), persons)), min_size=1, max_size=12
    )
)
@hsettings(max_examples=150, deadline=None)
def test_smoother_takes_any_valid_pose_sequence(steps):
    """Any schema-valid sequence (gaps, repeats, time going backwards, wild coordinates) gives a
    valid SmoothedPose, a skip (a redelivery) or Rejected (a dead letter): nothing else may escape
    into the agent."""
    stage, state = SmoothStage(SmoothingParams()), None
    for seq, capture_ns, people in steps:
        pose = PoseEstimate(
            session="s",
            camera="c",
            seq=seq,
            capture_ns=capture_ns,
            wall_time=1.0,
            width=640,
            height=480,
            backend="fuzz",
            persons=people,
        )
        try:
            new_state, out = stage(state, pose)
        except Rejected as exc:
            assert "cannot smooth" in str(exc)
            continue
        if out is not None:
            assert isinstance(out, SmoothedPose) and out.seq == seq
            assert decode(out.encode()) == out
            state = new_state
