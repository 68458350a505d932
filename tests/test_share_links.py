"""The visitor's short link: unguessable, short enough for a sparse QR code, redirected by the
console to a fresh presigned link on the public address, and gone with the video."""

from __future__ import annotations

from urllib.parse import urlsplit

import cv2
import httpx2 as httpx
import numpy as np
import pytest
from pydantic import SecretStr
from starlette.testclient import TestClient

from console.app import create_app
from console.qr import qr_png, qr_version
from infra.links import session_of, share_token, share_url
from infra.objectstore import ObjectStore
from infra.settings import Settings
from producers.session import new_session_id
from schemas import layout

from helpers import console_settings

PUBLIC = "https://booth.example.org"


def test_a_token_names_its_session_and_nothing_else_opens_it():
    s = Settings(link_secret=SecretStr("a-long-link-secret"))
    session = new_session_id()
    token = share_token(s, session)
    assert session_of(s, token) == session
    other = new_session_id() + "x"
    mac = token.rpartition(".")[2]
    # Another session with this mac, a changed mac, a missing one, another key: all refused.
    assert session_of(s, f"{other}.{mac}") is None
    assert session_of(s, f"{session}.{'A' if mac[0] != 'A' else 'B'}{mac[1:]}") is None
    assert session_of(s, session) is None
    assert session_of(s, f"../{session}.{mac}") is None
    assert session_of(Settings(link_secret=SecretStr("another-secret-entirely")), token) is None
    # Without a link secret, the key comes from the storage secret: a different one, different links.
    a = share_token(Settings(s3_secret_key=SecretStr("one-storage-secret")), session)
    b = share_token(Settings(s3_secret_key=SecretStr("two-storage-secret")), session)
    assert a != b and len(mac) == 16  # 96 bits


def test_the_short_link_makes_a_sparse_qr_code_a_phone_reads():
    s = Settings(public_url=PUBLIC, s3_secret_key=SecretStr("a-storage-secret"))
    session = new_session_id()
    link = share_url(s, session)
    assert link.startswith(f"{PUBLIC}/v/{session}.") and len(link) <= 80
    # A presigned link as the trainer makes one: 300+ characters.
    store = ObjectStore(Settings(s3_public_url=PUBLIC, s3_secret_key=SecretStr("a-storage-secret")))
    presigned = store.presign(layout.result_key(session, "rendition.mp4"), 3600)
    assert len(presigned) > 300
    short_v, long_v = qr_version(link), qr_version(presigned)
    assert short_v <= 5 < 10 <= long_v  # 37 modules a side or fewer, against 57 or more
    image = cv2.imdecode(np.frombuffer(qr_png(link), np.uint8), cv2.IMREAD_GRAYSCALE)
    small = cv2.resize(image, (120, 120), interpolation=cv2.INTER_AREA)  # a phone's view at arm's length
    assert cv2.QRCodeDetector().detectAndDecode(small)[0] == link


def test_public_url_must_be_an_origin():
    for bad in ("booth.example.org", "https://booth.example.org/path", "ftp://booth.example.org"):
        with pytest.raises(ValueError, match="public_url"):
            Settings(public_url=bad)
    with pytest.raises(ValueError, match="no public address"):
        share_url(Settings(), "s1")


def test_the_short_link_redirects_to_the_video_until_it_is_deleted(settings):
    session = new_session_id()
    key = layout.result_key(session, "rendition.mp4")
    video = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8
    store = ObjectStore(settings)
    store.put(key, video, content_type="video/mp4")
    app = create_app(console_settings(settings))
    with TestClient(app, base_url="http://127.0.0.1") as client:  # no login: the link is the credential
        link = share_url(settings, session, "http://127.0.0.1/")
        response = client.get(link, follow_redirects=False)
        assert response.status_code == 302 and response.headers["cache-control"] == "no-store"
        target = response.headers["location"]
        assert f"/{settings.s3_bucket}/{key}?" in target and "X-Amz-Signature=" in target
        assert httpx.get(target).content == video
        # A wrong mac, another session's token and a malformed one look alike.
        wrong = link[:-1] + ("A" if link[-1] != "A" else "B")
        other = share_url(settings, new_session_id(), "http://127.0.0.1/")
        for bad in (wrong, other, "http://127.0.0.1/v/nothing"):
            refused = client.get(bad, follow_redirects=False)
            assert refused.status_code == 404 and "not available" in refused.json()["error"]
        # The rest of the console still needs the login.
        assert client.get("/api/state").status_code == 401
        store.delete(key)
        assert client.get(link, follow_redirects=False).status_code == 404


def test_links_point_at_the_public_address_and_a_proxy_passing_host_serves_them(settings):
    """With public_url set, the short link and the presigned link it redirects to are on the public
    address; the store accepts the signature when the request reaches it with that Host header, as
    from infra/Caddyfile's proxy."""
    public = settings.model_copy(update={"public_url": PUBLIC})
    session = new_session_id()
    key = layout.result_key(session, "rendition.mp4")
    ObjectStore(public).put(key, b"video bytes", content_type="video/mp4")
    app = create_app(console_settings(public))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        link = share_url(public, session)
        assert link.startswith(f"{PUBLIC}/v/")
        target = client.get(urlsplit(link).path, follow_redirects=False).headers["location"]
    parts = urlsplit(target)
    assert f"{parts.scheme}://{parts.netloc}" == PUBLIC and parts.path == f"/{settings.s3_bucket}/{key}"
    # What the proxy does: the same request, to the store, with the public Host header.
    direct = f"http://{settings.s3_endpoint}{parts.path}?{parts.query}"
    assert httpx.get(direct, headers={"Host": parts.netloc}).content == b"video bytes"
    assert httpx.get(direct).status_code == 403  # signed for the public host, not the store's own
