"""How a recording of Kafka topics is laid out in an MCAP file (readable by any MCAP tool).

File
    profile ``motion-booth``; one metadata record named ``booth.recording`` with string values
    ``format`` ("1"), ``bootstrap``, ``topics`` (comma-separated), ``session`` (the filter, or ""),
    ``started_at`` (ISO 8601, UTC); and, written when the file is finished, one named
    ``booth.sessions``: whose data the file holds, one entry per session id found in it, valued
    ``consent``, ``no consent`` (as its recorded start said) or ``unknown`` (its start is not in
    the file). A visitor's data in a recording is a copy that `booth session purge` cannot reach:
    this record says which files to delete.
Channels
    one per Kafka topic: ``channel.topic`` is the topic name, ``message_encoding`` is
    ``motion-booth/kafka-record`` (below), no schema (schema id 0: the encoding describes itself),
    channel metadata ``{"partitions": "<count when recorded>"}``.
Messages
    one per Kafka record, written in the order the recorder read them (each partition's records in
    offset order):

    * ``log_time``: the record's Kafka timestamp in nanoseconds. Only if a producer's timestamps went
      backwards within one partition is it raised to the previous record's, so that reading in
      log-time order still yields every partition in offset order (the envelope keeps the true one);
    * ``publish_time``: when the recorder read the record, in nanoseconds;
    * ``sequence``: the record's offset modulo 2**32 (the full offset is in the envelope);
    * ``data``, a small envelope then the value, raw::

          bytes 0-3   N, unsigned 32-bit big-endian
          bytes 4..   N bytes of UTF-8 JSON:
                      {"partition": int, "offset": int, "timestamp_ms": int, "timestamp_type": int,
                       "key": base64 | null, "headers": [[name, base64 | null], ...],
                       "value_is_null": bool}
          rest        the record's value bytes (empty when value_is_null)

Keys and header values are base64 because they may be arbitrary bytes; values (camera images
included) follow the JSON raw, as on the bus.
"""

from __future__ import annotations

import base64
import json
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tools.replay.sessions import session_of, start_consent

PROFILE = "motion-booth"
ENCODING = "motion-booth/kafka-record"
METADATA_NAME = "booth.recording"
SESSIONS_METADATA = "booth.sessions"
FORMAT_VERSION = "1"
_LENGTH = struct.Struct(">I")


class RecordingError(ValueError):
    """A file that is not a readable recording; the text says what is wrong."""


@dataclass(frozen=True)
class KafkaRecord:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()
    timestamp_type: int = 0  # 0 = producer's create time, 1 = broker's log-append time


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text, validate=True)


def encode_record(record: KafkaRecord) -> bytes:
    meta = {
        "partition": record.partition,
        "offset": record.offset,
        "timestamp_ms": record.timestamp_ms,
        "timestamp_type": record.timestamp_type,
        "key": _b64(record.key),
        "headers": [[name, _b64(value)] for name, value in record.headers],
        "value_is_null": record.value is None,
    }
    header = json.dumps(meta, separators=(",", ":")).encode()
    return _LENGTH.pack(len(header)) + header + (record.value or b"")


def decode_record(topic: str, data: bytes) -> KafkaRecord:
    if len(data) < _LENGTH.size:
        raise RecordingError(f"a {topic} message is {len(data)} bytes, shorter than its envelope")
    (length,) = _LENGTH.unpack_from(data)
    end = _LENGTH.size + length
    if end > len(data):
        raise RecordingError(f"a {topic} message's envelope says {length} bytes but only {len(data) - 4} follow")
    try:
        meta = json.loads(data[_LENGTH.size : end])
        return KafkaRecord(
            topic=topic,
            partition=int(meta["partition"]),
            offset=int(meta["offset"]),
            timestamp_ms=int(meta["timestamp_ms"]),
            timestamp_type=int(meta.get("timestamp_type", 0)),
            key=_unb64(meta["key"]),
            headers=tuple((str(name), _unb64(value)) for name, value in meta["headers"]),
            value=None if meta["value_is_null"] else bytes(data[end:]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise RecordingError(f"a {topic} message's envelope is malformed: {exc!r}") from None


class RecordingWriter:
    """Appends Kafka records to a new MCAP file; use as a context manager so the file is finished."""

    def __init__(self, path: Path, *, bootstrap: str, topics: dict[str, int], session: str | None):
        from mcap.writer import Writer

        self.path = Path(path)
        self._file = open(self.path, "wb")
        self._writer = Writer(self._file)
        self._writer.start(profile=PROFILE, library="motion-booth recorder")
        self._writer.add_metadata(
            METADATA_NAME,
            {
                "format": FORMAT_VERSION,
                "bootstrap": bootstrap,
                "topics": ",".join(topics),
                "session": session or "",
                "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
        )
        self._channels = {
            topic: self._writer.register_channel(
                topic=topic, message_encoding=ENCODING, schema_id=0, metadata={"partitions": str(count)}
            )
            for topic, count in topics.items()
        }
        self._last_log_time: dict[tuple[str, int], int] = {}
        self.sessions: dict[str, str] = {}  # session -> consent, no consent, unknown

    def _note_session(self, record: KafkaRecord) -> None:
        started = start_consent(record.value)
        if started is not None:
            session, consent = started
            self.sessions[session] = "consent" if consent else "no consent"
            return
        found = session_of(record.key, record.value)
        if found is not None:
            self.sessions.setdefault(found, "unknown")

    def add(self, record: KafkaRecord) -> None:
        self._note_session(record)
        now = time.time_ns()
        log_time = record.timestamp_ms * 1_000_000 if record.timestamp_ms >= 0 else now
        where = (record.topic, record.partition)
        log_time = max(log_time, self._last_log_time.get(where, 0))
        self._last_log_time[where] = log_time
        self._writer.add_message(
            self._channels[record.topic],
            log_time=log_time,
            publish_time=now,
            sequence=record.offset % (1 << 32),
            data=encode_record(record),
        )

    def close(self) -> None:
        if not self._file.closed:
            try:
                self._writer.add_metadata(SESSIONS_METADATA, dict(sorted(self.sessions.items())))
                self._writer.finish()
            finally:
                self._file.close()

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class RecordingInfo:
    path: Path
    metadata: dict[str, str]
    partitions: dict[str, int]  # topic -> partition count when recorded
    counts: dict[str, int] = field(default_factory=dict)  # topic -> messages
    # Whose data it holds: session -> consent, no consent, unknown (None: written before this record)
    sessions: dict[str, str] | None = None
    start_ns: int = 0
    end_ns: int = 0

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def read_info(path: Path) -> RecordingInfo:
    from mcap.exceptions import McapError
    from mcap.reader import make_reader

    path = Path(path)
    try:
        with open(path, "rb") as f:
            reader = make_reader(f)
            header = reader.get_header()
            summary = reader.get_summary()
            records = {m.name: dict(m.metadata) for m in reader.iter_metadata()}
            metadata = records.get(METADATA_NAME)
    except (McapError, OSError, EOFError, struct.error) as exc:
        raise RecordingError(f"{path} is not a readable MCAP recording: {exc}") from None
    if header.profile != PROFILE or metadata is None:
        raise RecordingError(
            f"{path} is an MCAP file but not a Motion Booth recording "
            f"(profile {header.profile!r}, expected {PROFILE!r})"
        )
    if summary is None:
        raise RecordingError(f"{path} has no summary section: the recording was not finished")
    info = RecordingInfo(path=path, metadata=metadata, partitions={}, sessions=records.get(SESSIONS_METADATA))
    names = {}
    for channel in summary.channels.values():
        if channel.message_encoding != ENCODING:
            raise RecordingError(
                f"{path}: channel {channel.topic!r} has encoding {channel.message_encoding!r}, expected {ENCODING!r}"
            )
        info.partitions[channel.topic] = int(channel.metadata.get("partitions", "1"))
        names[channel.id] = channel.topic
    if summary.statistics:
        info.counts = {names[cid]: n for cid, n in summary.statistics.channel_message_counts.items()}
        info.start_ns, info.end_ns = summary.statistics.message_start_time, summary.statistics.message_end_time
    return info


def iter_records(path: Path) -> Iterator[tuple[int, KafkaRecord]]:
    """(log_time_ns, record) in log-time order; each partition comes out in its offset order."""
    from mcap.reader import make_reader

    with open(path, "rb") as f:
        for _schema, channel, message in make_reader(f).iter_messages(log_time_order=True):
            if channel.message_encoding != ENCODING:
                raise RecordingError(f"{path}: channel {channel.topic!r} is not a Kafka record channel")
            yield message.log_time, decode_record(channel.topic, message.data)
