"""What a dead letter may keep of a message: everything but an image's pixels.

Frames carry visitors' images. When a stage cannot process a message its dead letter keeps a copy
for debugging, and a debugger needs the envelope's JSON header and the image's structure (format,
size, markers), never its picture. So:

* a Frame envelope keeps its prefix and JSON header, and of its image only the headers;
* a bare image (a value that starts with a JPEG or PNG signature) keeps only its headers;
* a Frame envelope whose header length runs past the message keeps its first 1 KiB;
* anything else is kept as it was, up to the dead letter's size limit.

Image headers: a JPEG keeps its markers up to and including the start-of-scan header, with the
contents of APPn and COM segments (EXIF, thumbnails, comments) zeroed in place so offsets still
match; a PNG keeps its signature, its IHDR chunk and the header (length and type) of its first IDAT
chunk, leaving every other chunk (text, EXIF) out; any other image format its first 16 bytes.
"""

from __future__ import annotations

import struct

# The envelope's fixed prefix (schemas/README.md): magic, kind, version, header length.
_PREFIX = struct.Struct(">2sBBI")
_MAGIC = b"MB"
_FRAME_KIND = 1
_JPEG = b"\xff\xd8"
_PNG = b"\x89PNG\r\n\x1a\n"
MAX_IMAGE_HEADERS = 64 * 1024
MALFORMED_FRAME_BYTES = 1024
_SIGNATURE_BYTES = 16


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


def image_headers(image: bytes) -> bytes:
    """The image's headers without its pixels (see the module doc)."""
    if image.startswith(_JPEG):
        return _jpeg_headers(image)
    if image.startswith(_PNG):
        return _png_headers(image)
    return image[:_SIGNATURE_BYTES]


def without_pixels(value: bytes) -> bytes:
    """What a dead letter keeps of ``value`` before its size limit (see the module doc)."""
    if len(value) >= _PREFIX.size:
        magic, kind, _version, header_len = _PREFIX.unpack_from(value)
        end = _PREFIX.size + header_len
        if magic == _MAGIC and kind == _FRAME_KIND:
            if end > len(value):  # a header that runs past the message: what follows may be anything
                return value[:MALFORMED_FRAME_BYTES]
            return value[:end] + image_headers(value[end:])
    if value.startswith(_JPEG) or value.startswith(_PNG):
        return image_headers(value)
    return value
