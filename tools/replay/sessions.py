"""Which session a Kafka record belongs to, and moving a record to another session.

A record's session is read leniently (the envelope's JSON header, not a full validation) so that
the malformed messages of a bad session, the ones worth debugging, are still recognised. Keys are
``session`` or ``session/camera``; a DeadLetter names its session through the original's key.
"""

from __future__ import annotations

import json
import struct

from schemas import DeadLetter, SchemaError, decode, validate_id
from schemas.ids import InvalidId
from schemas.messages import MAGIC

# The envelope's fixed prefix (schemas/README.md): magic, kind, version, header length.
_PREFIX = struct.Struct(">2sBBI")


def _key_session(key: bytes | str | None) -> str | None:
    if key is None:
        return None
    text = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
    head = text.partition("/")[0]
    try:
        return validate_id(head)
    except InvalidId:
        return None


def _header_fields(value: bytes | None) -> tuple[dict, bytes] | None:
    if not value or len(value) < _PREFIX.size:
        return None
    magic, _kind, _version, length = _PREFIX.unpack_from(value)
    if magic != MAGIC or _PREFIX.size + length > len(value):
        return None
    try:
        fields = json.loads(value[_PREFIX.size : _PREFIX.size + length])
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return (fields, value[_PREFIX.size + length :]) if isinstance(fields, dict) else None


def session_of(key: bytes | None, value: bytes | None) -> str | None:
    """The message's own session field if it has one, else the key's session, else None."""
    parsed = _header_fields(value)
    if parsed:
        fields, payload = parsed
        if isinstance(fields.get("session"), str):
            return fields["session"]
        if "source_topic" in fields:  # a DeadLetter: the original's key, else the original itself
            return _key_session(fields.get("key")) or session_of(None, payload)
    return _key_session(key)


_SESSION_EVENT_KIND = 4


def start_consent(value: bytes | None) -> tuple[str, bool] | None:
    """(session, consent) when the value is a session start event, else None (read leniently,
    like session_of; an event without a consent field recorded none)."""
    parsed = _header_fields(value)
    if not parsed or value is None or value[2] != _SESSION_EVENT_KIND:
        return None
    fields, _payload = parsed
    if fields.get("kind") != "start" or not isinstance(fields.get("session"), str):
        return None
    return fields["session"], fields.get("consent") is True


def belongs_to(session: str, key: bytes | None, value: bytes | None) -> bool:
    return _key_session(key) == session or session_of(key, value) == session


def rewrite_key(key: bytes | None, old: str, new: str) -> bytes | None:
    """``old`` or ``old/rest`` becomes ``new`` or ``new/rest``; any other key is kept."""
    if key is None:
        return None
    head, sep, rest = key.partition(b"/")
    return new.encode() + sep + rest if head == old.encode() else key


def rewrite_value(value: bytes | None, old: str, new: str) -> bytes | None:
    """The message re-encoded under session ``new``, validated by its schema model.

    Returns None when the value is not a valid envelope (it is then replayed as recorded).
    A message of another session, or one with no session, comes back unchanged.
    """
    try:
        message = decode(value)
    except SchemaError:
        return None
    validate_id(new, "new session")
    fields = message.model_dump()
    if getattr(message, "session", None) == old:
        fields["session"] = new
    elif isinstance(message, DeadLetter):
        if message.key is not None:
            fields["key"] = (rewrite_key(message.key.encode(), old, new) or b"").decode("utf-8", "backslashreplace")
        # The copy moves too when it is still a whole envelope (a Frame without its pixels is); one
        # cut at the size limit stays as it was. The original's size changes by what the rename did.
        moved = rewrite_value(message.original, old, new)
        if moved is not None:
            fields["original"] = moved
            fields["original_size"] = message.original_size + len(moved) - len(message.original)
            fields["sha256"] = None  # the digest was of the value before the rename, which no copy holds
    else:
        return value
    return type(message).model_validate(fields).encode()
