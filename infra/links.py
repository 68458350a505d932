"""The visitor's link: short, unguessable, on the public address, and valid as long as the video.

A presigned link is about 340 characters (too dense a QR code for a phone at arm's length) and
names the object store's address, which inside a deployment only the services can reach. The
visitor gets ``<public_url>/v/<session>.<mac>`` instead (about 70 characters): the mac is 96
bits of HMAC-SHA256 over the session id, so a link cannot be guessed from a session id and needs
no record of its own. The console answers it with a redirect to a fresh presigned link on the
public store address (console.app), for as long as the video is kept: after the retention
deletes it (or a purge), the link finds nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import urlsplit

from infra.settings import Settings
from schemas import InvalidId, validate_id

SHARE_PATH = "/v/"
_MAC_BYTES = 12  # 96 bits: 16 characters of base64url


def _key(settings: Settings) -> bytes:
    if settings.link_secret is not None:
        return settings.link_secret.get_secret_value().encode()
    # Derived, so a deployment needs no extra secret; a separate label keeps it apart from S3 signing.
    return hmac.new(settings.s3_secret().encode(), b"booth share links", hashlib.sha256).digest()


def _mac(settings: Settings, session: str) -> str:
    digest = hmac.new(_key(settings), b"share\0" + session.encode(), hashlib.sha256).digest()[:_MAC_BYTES]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def share_token(settings: Settings, session: str) -> str:
    return f"{validate_id(session, 'session')}.{_mac(settings, session)}"


def session_of(settings: Settings, token: str) -> str | None:
    """The session a token was made for, or None when it is malformed or its mac is wrong."""
    session, sep, mac = token.rpartition(".")
    if not sep:
        return None
    try:
        validate_id(session, "session")
    except InvalidId:
        return None
    return session if hmac.compare_digest(mac.encode(), _mac(settings, session).encode()) else None


def share_url(settings: Settings, session: str, base_url: str | None = None) -> str:
    """The visitor's link to the session's video, on settings.public_url (or base_url, the
    address a request reached the console on, when none is set)."""
    base = settings.public_url or base_url
    if not base:
        raise ValueError("no public address for links: set BOOTH_PUBLIC_URL (e.g. https://booth.example.org)")
    return f"{base.rstrip('/')}{SHARE_PATH}{share_token(settings, session)}"


def public_store_address(settings: Settings) -> tuple[str, bool] | None:
    """(host[:port], secure) presigned links point at when it is not s3_endpoint, else None."""
    url = settings.s3_public_url or settings.public_url
    if not url:
        return None
    parts = urlsplit(url)
    return parts.netloc, parts.scheme == "https"
