"""Versioned message contracts and their binary envelope.

Every message on the bus is one envelope (documented for other languages in schemas/README.md):

    bytes 0-1   magic b"MB"
    byte  2     kind code (Frame=1 ... Claim=9, Coverage=10)
    byte  3     schema version of that kind
    bytes 4-7   header length N, unsigned 32-bit big-endian
    bytes 8..   N bytes of UTF-8 JSON: the message's fields
    rest        the raw payload (a Frame's encoded image, a DeadLetter's original bytes), else empty

Images travel as raw bytes after the header: never base64, never inside the JSON.
Decoding validates every field and raises SchemaError naming the field and the problem.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from schemas.ids import InvalidId, validate_id
from schemas.keypoints import NUM_KEYPOINTS
from schemas.redaction import text_excerpt, without_pixels

MAGIC = b"MB"
_PREFIX = struct.Struct(">2sBBI")
MAX_HEADER_BYTES = 1 << 20


class SchemaError(ValueError):
    """A message that does not match its contract; the text names the field and the problem."""


def _safe_id(value: object) -> str:
    try:
        return validate_id(value)
    except InvalidId as exc:
        raise ValueError(str(exc)) from None


# An id that becomes part of object keys (see schemas/ids.py).
SafeId = Annotated[str, BeforeValidator(_safe_id)]


NonNeg = Annotated[float, Field(ge=0)]


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    KIND: ClassVar[int]
    VERSION: ClassVar[int] = 1
    # Older versions still read, each with the fields it lacks (a message of that version that
    # has one of them is refused): what they meant must be what the current version means without them.
    READS: ClassVar[dict[int, frozenset[str]]] = {}
    PAYLOAD: ClassVar[str | None] = None  # the field carried raw after the header

    @classmethod
    def upgrade(cls, version: int, fields: dict[str, Any]) -> dict[str, Any]:
        """The header fields of an older version (one of READS) as this version has them; raises
        SchemaError for what that version could not have held beyond READS' missing fields."""
        return fields

    def encode(self) -> bytes:
        fields = self.model_dump(mode="json", exclude={self.PAYLOAD} if self.PAYLOAD else None)
        header = json.dumps(fields, separators=(",", ":"), allow_nan=False).encode()
        payload = getattr(self, self.PAYLOAD) if self.PAYLOAD else b""
        return _PREFIX.pack(MAGIC, self.KIND, self.VERSION, len(header)) + header + payload

    @classmethod
    def decode(cls, data: bytes) -> Message:
        message = decode(data)
        if not isinstance(message, cls):
            raise SchemaError(f"expected a {cls.__name__}, got a {type(message).__name__}")
        return message


MAX_FRAME_SIDE = 8192
MAX_FRAME_PIXELS = 7680 * 4320


class Frame(Message):
    """One camera image, JPEG-encoded, keyed session/camera."""

    KIND: ClassVar[int] = 1
    PAYLOAD: ClassVar[str | None] = "image"

    session: SafeId
    camera: SafeId
    seq: int = Field(ge=0)
    capture_ns: int = Field(ge=0, description="monotonic capture clock, nanoseconds")
    wall_time: NonNeg = Field(description="capture time, seconds since the Unix epoch")
    width: int = Field(gt=0, le=MAX_FRAME_SIDE)
    height: int = Field(gt=0, le=MAX_FRAME_SIDE)
    encoding: Literal["jpeg", "png"] = "jpeg"
    image: bytes = Field(repr=False)

    @model_validator(mode="after")
    def _bounded_pixels(self):
        # Decoding costs 3 bytes a pixel: an 8K frame is 100 MB, the most a stage will spend on one.
        if self.width * self.height > MAX_FRAME_PIXELS:
            raise ValueError(f"{self.width}x{self.height} is more than {MAX_FRAME_PIXELS} pixels (8K)")
        return self

    @field_validator("image")
    @classmethod
    def _image_not_empty(cls, value: bytes) -> bytes:
        if not value:
            raise ValueError("image is empty")
        return value


MAX_PERSONS = 32


def _check_flags(value: list[int]) -> list[int]:
    if value and len(value) != NUM_KEYPOINTS:
        raise ValueError(f"flags has {len(value)} entries; expected {NUM_KEYPOINTS} or none")
    if any(not 0 <= f <= 15 for f in value):
        raise ValueError("flags hold bits 1, 2, 4, 8 only")
    return value


class Person(BaseModel):
    """One detected person: COCO-17 keypoints (x, y, score) in frame pixels, plus backend extras.

    track: the person's identity in this camera (from 1; None: not tracked, e.g. too little of a
    person to follow). flags: per-keypoint bits (schemas.keypoints), smoothed poses only.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    score: float = Field(ge=0, le=1)
    keypoints: list[tuple[float, float, float]]
    extra: list[list[float]] | None = None
    track: int | None = Field(None, ge=1)
    flags: list[int] | None = None

    @field_validator("keypoints")
    @classmethod
    def _seventeen(cls, value):
        if len(value) != NUM_KEYPOINTS:
            raise ValueError(f"keypoints has {len(value)} rows; a pose has {NUM_KEYPOINTS}")
        for x, y, s in value:
            if not (math.isfinite(x) and math.isfinite(y) and 0.0 <= s <= 1.0):
                raise ValueError(f"keypoint ({x}, {y}, {s}) is not finite or its score is outside [0, 1]")
        return value

    @field_validator("flags")
    @classmethod
    def _flags(cls, value):
        return None if value is None else _check_flags(value)

    @classmethod
    def from_array(
        cls,
        keypoints: np.ndarray,
        score: float,
        extra: np.ndarray | None = None,
        *,
        track: int | None = None,
        flags: list[int] | None = None,
    ) -> Person:
        kp = np.asarray(keypoints, dtype=np.float64)
        return cls(
            score=float(np.clip(score, 0, 1)),
            keypoints=[tuple(map(float, row)) for row in kp],
            extra=None if extra is None else np.asarray(extra, dtype=np.float64).round(3).tolist(),
            track=track,
            flags=flags,
        )

    def array(self) -> np.ndarray:
        return np.asarray(self.keypoints, dtype=np.float32).reshape(NUM_KEYPOINTS, 3)


class _PoseBase(Message):
    session: SafeId
    camera: SafeId
    seq: int = Field(ge=0)
    capture_ns: int = Field(ge=0)
    wall_time: NonNeg
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    backend: str = Field(min_length=1, max_length=64)
    persons: list[Person] = Field(default_factory=list, max_length=MAX_PERSONS)


def _distinct_tracks(people: list[Person]) -> None:
    tracks = [p.track for p in people if p.track is not None]
    if len(tracks) != len(set(tracks)):
        raise ValueError(f"a track id appears twice among the persons: {sorted(tracks)}")


class PoseEstimate(_PoseBase):
    """The raw output of a pose backend for one Frame: the strongest people, strongest first, each
    with its track id from the camera's identity tracker.

    ended_tracks: tracks that ended at this frame (their person gone too long); dropped: people
    found beyond the pose stage's limit and not carried.
    Version 2 added track ids, ended_tracks and dropped; version 1 (no identities) is not read.
    """

    KIND: ClassVar[int] = 2
    VERSION: ClassVar[int] = 2

    device: Literal["edgetpu", "cpu", "cuda"] = "cpu"
    inference_ms: NonNeg = 0.0
    pose_wall_time: NonNeg = 0.0
    ended_tracks: list[Annotated[int, Field(ge=1)]] = Field(default_factory=list, max_length=1024)
    dropped: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _tracks(self):
        _distinct_tracks(self.persons)
        return self


class SmoothedPose(_PoseBase):
    """The imputed and smoothed people of one frame.

    persons: the main person (the camera's main track) or empty when the main person is not in
    this frame; flags: its per-keypoint bits (schemas.keypoints), as in version 1. others: the
    other tracked people, by track id, each with its own flags. Every person carries its track.
    Version 2 added others, track and per-person flags; version 1 (the main person only) is still
    read, as a frame with no others.
    """

    KIND: ClassVar[int] = 3
    VERSION: ClassVar[int] = 2
    READS: ClassVar[dict[int, frozenset[str]]] = {1: frozenset({"others"})}

    flags: list[int] = Field(default_factory=list)
    others: list[Person] = Field(default_factory=list, max_length=MAX_PERSONS - 1)
    mode: Literal["online", "centered"] = "online"
    latency_ms: NonNeg = 0.0

    @field_validator("flags")
    @classmethod
    def _flags(cls, value):
        return _check_flags(value)

    @model_validator(mode="after")
    def _people(self):
        if len(self.persons) > 1:
            raise ValueError(f"persons holds the main person only, got {len(self.persons)}; the rest go in others")
        _distinct_tracks(self.persons + self.others)
        return self


class SessionEvent(Message):
    """A session's lifecycle: start (with the visitor's consent or not), end, abort, purge, and a
    camera run's end.

    consent: the visitor agreed that their recording may be kept (per the retention policy) after
    their video is made; without it nothing of theirs is kept beyond the video. purge: delete
    everything of the session (`booth session purge`). camera-end: a camera run is over; last_seq
    holds, for each of its cameras, the sequence number of its last frame the broker acknowledged
    (-1: none), so the assembler knows which poses it still waits for. Version 1 had neither consent
    nor purge, version 2 neither camera-end nor last_seq; both are still read (version 1 as a
    session without consent).
    """

    KIND: ClassVar[int] = 4
    VERSION: ClassVar[int] = 3
    READS: ClassVar[dict[int, frozenset[str]]] = {1: frozenset({"consent", "last_seq"}), 2: frozenset({"last_seq"})}

    session: SafeId
    kind: Literal["start", "end", "abort", "purge", "camera-end"]
    wall_time: NonNeg
    cameras: list[SafeId] = Field(default_factory=list, max_length=64)
    reference: SafeId | None = None
    note: str = Field(default="", max_length=1000)
    consent: bool = Field(default=False, strict=True)
    last_seq: dict[SafeId, Annotated[int, Field(ge=-1, strict=True)]] = Field(default_factory=dict, max_length=64)

    @classmethod
    def upgrade(cls, version: int, fields: dict[str, Any]) -> dict[str, Any]:
        if version == 1 and fields.get("kind") == "purge":
            raise SchemaError("SessionEvent version 1 has no purge kind (purge came with version 2)")
        if version < 3 and fields.get("kind") == "camera-end":
            raise SchemaError(f"SessionEvent version {version} has no camera-end kind (it came with version 3)")
        return fields


class DatasetReady(Message):
    KIND: ClassVar[int] = 5

    session: SafeId
    status: Literal["ready", "failed"]
    reason: str = ""
    manifest_key: str = ""
    samples: int = Field(ge=0)
    cameras: list[SafeId] = Field(default_factory=list)
    reference: SafeId | None = None
    wall_time: NonNeg


class TrainingProgress(Message):
    KIND: ClassVar[int] = 6

    session: SafeId
    phase: Literal["loading", "training", "rendering", "evaluating", "done", "failed"]
    step: int = Field(ge=0)
    total_steps: int = Field(ge=0)
    losses: dict[str, float] = Field(default_factory=dict)
    elapsed_s: NonNeg = 0.0
    eta_s: NonNeg = 0.0
    message: str = ""
    wall_time: NonNeg


class Rendition(Message):
    """A video of the session for the visitor. Versions are published as training goes on (1, 2,
    ...; kind "gan" from the fine-tuned generator, "preview" from a training-free one): each its
    own object (video_key), while `url` plays the session's stable key, which always holds the
    newest; `final` marks the last one. Version 1 of the schema had one video per session: it is
    still read, as version 1 of kind "gan", final."""

    KIND: ClassVar[int] = 7
    VERSION: ClassVar[int] = 2
    READS: ClassVar[dict[int, frozenset[str]]] = {1: frozenset({"version", "kind", "final"})}

    session: SafeId
    reference: SafeId
    video_key: str
    url: str
    expires_at: NonNeg
    frames: int = Field(ge=0)
    metrics: dict[str, float] = Field(default_factory=dict)
    wall_time: NonNeg
    version: int = Field(default=1, ge=1)
    kind: Literal["gan", "preview"] = "gan"
    final: bool = True


class CameraCoverage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    coverage: float = Field(ge=0, le=1)
    poses: int = Field(ge=0)
    frames: int = Field(ge=0)
    facings: list[Literal["front", "back", "left", "right"]] = Field(default_factory=list, max_length=4)
    person_seen_s_ago: NonNeg | None = None
    frames_with_others: int = Field(0, ge=0)


class Coverage(Message):
    """How much of its reference dance a session's capture covers so far (trainer.coverage), about
    once a second while it records, on the training topic. done: the last one, with why the
    recording ended ("target", "time cap", "ended": by the operator or elsewhere)."""

    KIND: ClassVar[int] = 10

    session: SafeId
    reference: SafeId
    coverage: float = Field(ge=0, le=1)
    target: float | None = Field(None, ge=0, le=1)
    max_seconds: NonNeg | None = None
    elapsed_s: NonNeg = 0.0
    facings: list[Literal["front", "back", "left", "right"]] = Field(default_factory=list, max_length=4)
    dance_facings: list[Literal["front", "back", "left", "right"]] = Field(default_factory=list, max_length=4)
    prompts: list[Annotated[str, Field(max_length=100)]] = Field(default_factory=list, max_length=4)
    cameras: dict[SafeId, CameraCoverage] = Field(default_factory=dict, max_length=64)
    dance_frames: int = Field(0, ge=0)
    measurable_frames: int = Field(0, ge=0)
    done: bool = False
    reason: Literal["", "target", "time cap", "ended"] = ""
    wall_time: NonNeg


class DeadLetter(Message):
    """A message a stage could not process, with why, where it was, its size and SHA-256, and a
    pixel-free excerpt as the payload (schemas.redaction: a Frame keeps its header and its image's
    headers, anything else unreadable its leading printable text only), cut at MAX_ORIGINAL bytes;
    `truncated` says the excerpt is shorter than the original, whose length is `original_size`.
    Version 1 had no digest (read with `sha256` null)."""

    KIND: ClassVar[int] = 8
    VERSION: ClassVar[int] = 2
    READS: ClassVar[dict[int, frozenset[str]]] = {1: frozenset({"sha256"})}
    PAYLOAD: ClassVar[str | None] = "original"
    MAX_ORIGINAL: ClassVar[int] = 900_000  # keep dead letters under the broker's default 1 MB
    MAX_KEY: ClassVar[int] = 300

    stage: str
    reason: str
    source_topic: str
    partition: int = -1
    offset: int = -1
    key: str | None = None
    original_size: int = Field(ge=0)
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    truncated: bool = False
    wall_time: NonNeg
    original: bytes = Field(default=b"", repr=False)

    @classmethod
    def key_text(cls, key: bytes | None) -> str | None:
        """What a dead letter keeps of a record key: its printable text, cut like an excerpt."""
        return None if key is None else text_excerpt(key, cls.MAX_KEY).decode("utf-8")

    @classmethod
    def wrap(
        cls,
        *,
        stage: str,
        reason: str,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        partition: int = -1,
        offset: int = -1,
        wall_time: float,
    ) -> DeadLetter:
        value = value or b""
        kept = without_pixels(value)[: cls.MAX_ORIGINAL]
        return cls(
            stage=stage,
            reason=reason[:2000],
            source_topic=topic,
            partition=partition,
            offset=offset,
            key=cls.key_text(key),
            original_size=len(value),
            sha256=hashlib.sha256(value).hexdigest(),
            truncated=len(kept) < len(value),
            wall_time=wall_time,
            original=kept,
        )


class Claim(Message):
    """A trainer's word on one piece of work (a DatasetReady record, `work` = "<partition>-<offset>")
    on the claims topic, whose one partition orders every trainer's words: `claim` (take it, held
    until `lease_until`), `renew` (hold it longer), `release` (give it back unfinished), `done`.
    Every trainer reads them in log order with the same rules (trainer.claims.Ledger), so all agree
    on who trains what."""

    KIND: ClassVar[int] = 9

    work: SafeId
    session: SafeId
    trainer: SafeId
    kind: Literal["claim", "renew", "release", "done"]
    lease_until: NonNeg
    wall_time: NonNeg


MESSAGES: tuple[type[Message], ...] = (
    Frame,
    PoseEstimate,
    SmoothedPose,
    SessionEvent,
    DatasetReady,
    TrainingProgress,
    Rendition,
    DeadLetter,
    Claim,
    Coverage,
)
KINDS: dict[int, type[Message]] = {cls.KIND: cls for cls in MESSAGES}
if len(KINDS) != len(MESSAGES):  # a shared code would decode one kind as the other
    raise RuntimeError("two message kinds share a kind code: " + ", ".join(f"{c.__name__}={c.KIND}" for c in MESSAGES))


def _describe(error: ValidationError, name: str) -> str:
    parts = []
    for item in error.errors()[:5]:
        field = ".".join(str(p) for p in item["loc"]) or "(message)"
        parts.append(f"{field}: {item['msg']}")
    return f"invalid {name}: " + "; ".join(parts)


def _check_older(cls: type[Message], version: int, fields: dict) -> None:
    """A message of an older version may not carry what that version did not have."""
    newer = set(cls.READS[version]) & set(fields)
    people = fields.get("persons")
    if isinstance(people, list) and any(isinstance(p, dict) and ("track" in p or "flags" in p) for p in people):
        newer.add("persons[].track/flags")
    if newer:
        raise SchemaError(f"{cls.__name__} version {version} has no {', '.join(sorted(newer))}")


def decode(data: bytes | bytearray | memoryview | None) -> Message:
    """Decode and validate any envelope; SchemaError says exactly what is wrong."""
    if data is None:
        raise SchemaError("message is empty (null value)")
    data = bytes(data)
    if len(data) < _PREFIX.size:
        raise SchemaError(f"message is {len(data)} bytes; an envelope needs at least {_PREFIX.size}")
    magic, kind, version, header_len = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise SchemaError(f"bad magic {magic!r}: not a Motion Booth envelope (expected {MAGIC!r})")
    cls = KINDS.get(kind)
    if cls is None:
        raise SchemaError(f"unknown message kind {kind}")
    if version != cls.VERSION and version not in cls.READS:
        readable = ", ".join(str(v) for v in sorted({cls.VERSION, *cls.READS}))
        raise SchemaError(f"{cls.__name__} schema version {version} is not supported (this build reads {readable})")
    if header_len > MAX_HEADER_BYTES or _PREFIX.size + header_len > len(data):
        raise SchemaError(f"header length {header_len} runs past the message ({len(data)} bytes)")
    header = data[_PREFIX.size : _PREFIX.size + header_len]
    payload = data[_PREFIX.size + header_len :]
    try:
        fields: Any = json.loads(header)
    except (ValueError, RecursionError) as exc:
        # ValueError covers bad UTF-8, bad JSON and integers too long to convert; RecursionError
        # a nesting bomb. Any other error type would escape the stages' handlers (a poison pill).
        raise SchemaError(f"{cls.__name__} header is not valid JSON: {exc}") from None
    if not isinstance(fields, dict):
        raise SchemaError(f"{cls.__name__} header must be a JSON object, got {type(fields).__name__}")
    if version != cls.VERSION:
        _check_older(cls, version, fields)
    if cls.PAYLOAD:
        if cls.PAYLOAD in fields:
            raise SchemaError(f"{cls.__name__}.{cls.PAYLOAD} must travel as the raw payload, not in the header")
        fields[cls.PAYLOAD] = payload
    elif payload:
        raise SchemaError(f"{cls.__name__} carries no payload but {len(payload)} bytes follow the header")
    if version != cls.VERSION:
        fields = cls.upgrade(version, fields)
    try:
        return cls.model_validate(fields)
    except ValidationError as exc:
        raise SchemaError(_describe(exc, cls.__name__)) from None
