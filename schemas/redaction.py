"""What a dead letter may keep of a message: a pixel-free excerpt, never an image's picture.

Frames carry visitors' images. When a stage cannot process a message its dead letter keeps, beside
the value's size and SHA-256 (schemas.DeadLetter), an excerpt for debugging: the envelope's JSON
header and the image's structure (format, size, markers), never its picture. So:

* an envelope of a known kind whose JSON header reads keeps its prefix and header (strings in it
  that look like encoded data, base64 runs of 100+ characters or an image signature, are replaced
  by their length and digest); of a Frame's image only the headers; of a DeadLetter's payload what
  this function keeps of it; any other kind has no payload and keeps none;
* a bare image (a value that starts with a JPEG, PNG or BMP signature) keeps only its headers;
* anything else (a broken envelope, an image behind a stray byte, invalid JSON, a cut-off
  picture) keeps its leading printable text only, at most EXCERPT_BYTES, cut before any base64
  run of 100+ characters or image signature: binary bytes never, wherever they come from.

Image headers: a JPEG keeps its markers up to and including the start-of-scan header, with the
contents of APPn and COM segments (EXIF, thumbnails, comments) zeroed in place so offsets still
match; a PNG keeps its signature, its IHDR chunk and the header (length and type) of its first IDAT
chunk, leaving every other chunk (text, EXIF) out; a BMP its file and info headers (no palette);
any other payload nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import unicodedata

# The envelope's fixed prefix (schemas/README.md): magic, kind, version, header length.
_PREFIX = struct.Struct(">2sBBI")
_MAGIC = b"MB"
_FRAME_KIND = 1
_DEADLETTER_KIND = 8
_KINDS = range(1, 10)
_JPEG = b"\xff\xd8"
_PNG = b"\x89PNG\r\n\x1a\n"
_BMP = b"BM"
MAX_IMAGE_HEADERS = 64 * 1024
EXCERPT_BYTES = 256
# Encoded data inside text: a long base64 run, or the base64 form of a JPEG / PNG signature.
# Escaped bytes (\\u00ff, \\xff) in a row are binary written out as text: the same.
_ENCODED = re.compile(r"[A-Za-z0-9+/_-]{100,}|/9j/|iVBORw0KGgo|(?:\\u00[0-9a-fA-F]{2}|\\x[0-9a-fA-F]{2}){4,}")


def _jpeg_headers(data: bytes) -> bytes:
    out = bytearray(_JPEG)
    i, n = 2, len(data)
    while i + 2 <= n and len(out) < MAX_IMAGE_HEADERS:
        if data[i] != 0xFF:
            break  # not a marker where one must be: the rest is not structure we can read
        marker = data[i + 1]
        if marker == 0xFF:  # a fill byte before a marker
            out.append(0xFF)
            i += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # markers without a length
            out += data[i : i + 2]
            i += 2
            continue
        if marker == 0xD9:  # end of image
            out += data[i : i + 2]
            break
        if i + 4 > n:
            break
        (length,) = struct.unpack_from(">H", data, i + 2)
        if length < 2 or i + 2 + length > n:
            break
        if 0xE0 <= marker <= 0xEF or marker == 0xFE:  # APPn (EXIF, thumbnails) and comments
            out += data[i : i + 4] + bytes(length - 2)
        else:  # frame, table and scan headers: sizes and coding, no pixels
            out += data[i : i + 2 + length]
        if marker == 0xDA:  # start of scan: what follows is the picture
            break
        i += 2 + length
    return bytes(out[:MAX_IMAGE_HEADERS])


def _png_headers(data: bytes) -> bytes:
    out = bytearray(_PNG)
    i, n = len(_PNG), len(data)
    while i + 8 <= n:
        (length,) = struct.unpack_from(">I", data, i)
        kind = data[i + 4 : i + 8]
        if kind == b"IDAT":  # the picture: its chunk header only (readers need it to find the size)
            out += data[i : i + 8]
            break
        if kind == b"IHDR" and i + 12 + length <= n:
            out += data[i : i + 12 + length]
        i += 12 + length  # any other chunk (text, EXIF, ...) is left out
    return bytes(out[:MAX_IMAGE_HEADERS])


def _bmp_headers(data: bytes) -> bytes | None:
    """A BMP's 14-byte file header and its info header (at most 124 bytes), or None when the
    value does not read as one (then it is not treated as a picture's structure)."""
    if len(data) < 18:
        return None
    (info,) = struct.unpack_from("<I", data, 14)
    if info not in (12, 40, 52, 56, 64, 108, 124) or len(data) < 14 + info:
        return None
    return data[: 14 + info]


def _is_bmp(data: bytes) -> bool:
    return data.startswith(_BMP) and _bmp_headers(data) is not None


def image_headers(image: bytes) -> bytes:
    """The image's headers without its pixels (see the module doc); nothing for an unknown format."""
    if image.startswith(_JPEG):
        return _jpeg_headers(image)
    if image.startswith(_PNG):
        return _png_headers(image)
    if image.startswith(_BMP):
        return _bmp_headers(image) or b""
    return b""


def _printable(ch: str) -> bool:
    return ch in "\t\n\r" or (ch != "\ufffd" and not unicodedata.category(ch).startswith("C"))


def text_excerpt(value: bytes, limit: int = EXCERPT_BYTES) -> bytes:
    """The value's leading printable text (UTF-8), at most `limit` bytes, cut before encoded data."""
    text = value[: limit + 4].decode("utf-8", "replace")
    end = next((i for i, ch in enumerate(text) if not _printable(ch)), len(text))
    text = text[:end]
    found = _ENCODED.search(text)
    if found:
        text = text[: found.start()]
    kept = text.encode("utf-8")[:limit]
    return kept.decode("utf-8", "ignore").encode("utf-8")  # not ending inside a character


def _scrub(node: object) -> object:
    """A JSON value with every string that holds encoded data replaced by its size and digest."""
    if isinstance(node, str) and (_ENCODED.search(node) or not all(_printable(ch) for ch in node)):
        digest = hashlib.sha256(node.encode("utf-8", "surrogatepass")).hexdigest()
        return f"<{len(node)} characters of encoded data, sha256 {digest}>"
    if isinstance(node, list):
        return [_scrub(v) for v in node]
    if isinstance(node, dict):
        return {k: _scrub(v) for k, v in node.items()}
    return node


def _header(prefix: bytes, header: bytes) -> bytes | None:
    """The prefix and JSON header as kept (scrubbed and re-measured when it had encoded data),
    or None when the header is not a JSON object."""
    try:
        fields = json.loads(header)
        scrubbed = _scrub(fields) if isinstance(fields, dict) else None
    except (ValueError, RecursionError):  # bad UTF-8 or JSON, too long an integer, a nesting bomb
        return None
    if scrubbed is None:
        return None
    if scrubbed == fields:
        return prefix + header  # unchanged bytes: the copy still decodes as the original did
    magic, kind, version, _ = _PREFIX.unpack(prefix)
    body = json.dumps(scrubbed, separators=(",", ":")).encode()
    return _PREFIX.pack(magic, kind, version, len(body)) + body


def without_pixels(value: bytes, _depth: int = 0) -> bytes:
    """What a dead letter keeps of ``value`` before its size limit (see the module doc)."""
    if len(value) >= _PREFIX.size:
        magic, kind, _version, header_len = _PREFIX.unpack_from(value)
        end = _PREFIX.size + header_len
        if magic == _MAGIC and kind in _KINDS and end <= len(value):
            kept = _header(value[: _PREFIX.size], value[_PREFIX.size : end])
            if kept is not None:
                rest = value[end:]
                if kind == _FRAME_KIND:
                    return kept + image_headers(rest)
                if kind == _DEADLETTER_KIND and _depth < 2:
                    return kept + without_pixels(rest, _depth + 1)
                return kept
    if value.startswith(_JPEG) or value.startswith(_PNG) or _is_bmp(value):
        return image_headers(value)
    return text_excerpt(value)
