"""Session and camera ids: they become object keys and Kafka keys, so only a safe set passes.

ASCII letters, digits, '_' and '-', starting with a letter or digit, at most 64 characters. No dots
(so no '..'), no slashes, no unicode look-alikes: anything else is rejected before a key is built.
"""

from __future__ import annotations

import re

MAX_ID_LENGTH = 64
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*", re.ASCII)


class InvalidId(ValueError):
    """An id that is unsafe to use in an object key or a message key."""


def validate_id(value: object, what: str = "id") -> str:
    if not isinstance(value, str):
        raise InvalidId(f"{what} must be a string, got {type(value).__name__}")
    if not value:
        raise InvalidId(f"{what} is empty")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidId(f"{what} is {len(value)} characters long; the limit is {MAX_ID_LENGTH}")
    if not _ID.fullmatch(value):
        bad = next((c for c in value if not (c.isascii() and (c.isalnum() or c in "_-"))), value[0])
        raise InvalidId(
            f"{what} {value[:80]!r} has a forbidden character {bad!r} (U+{ord(bad):04X}); "
            "allowed: ASCII letters, digits, '_' and '-', starting with a letter or digit"
        )
    return value


def frame_key(session: str, camera: str) -> bytes:
    """The Kafka key of one camera's stream: one camera's messages stay ordered in one partition."""
    return f"{validate_id(session, 'session')}/{validate_id(camera, 'camera')}".encode()


def parse_frame_key(key: bytes) -> tuple[str, str]:
    try:
        text = key.decode("ascii")
    except (UnicodeDecodeError, AttributeError) as exc:
        raise InvalidId(f"key {key!r} is not ASCII") from exc
    session, sep, camera = text.partition("/")
    if not sep:
        raise InvalidId(f"key {text!r} is not of the form session/camera")
    return validate_id(session, "session"), validate_id(camera, "camera")
