"""The console's door against hostile requests: the real app (served by uvicorn, and as `booth
console`) on the real broker. Cross-site posts, foreign origins, rebound host names and requests
without a login are refused with a clear status, and nothing reaches the sessions topic."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
import uuid

import httpx2 as httpx
import pytest
from pydantic import SecretStr
from starlette.testclient import TestClient

from console.app import create_app
from console.auth import COOKIE, Logins, LoginThrottle, host_name
from schemas import SessionEvent

from helpers import (
    CONSOLE_PASSWORD,
    console_settings,
    free_port,
    logged_in,
    read_topic,
    serve,
    wait_until,
    with_default_reference,
)


@pytest.fixture
def settings(settings):
    """Sessions start without naming a reference dance: a default one exists."""
    return with_default_reference(settings)


def session_events(settings) -> list[SessionEvent]:
    return [m for m in read_topic(settings, settings.topic_sessions, idle_s=0.7) if isinstance(m, SessionEvent)]


def test_hostile_requests_are_refused_with_a_clear_status_and_publish_nothing(settings):
    with serve(create_app(console_settings(settings), targets={})) as base, httpx.Client(timeout=10) as http:
        port = base.rsplit(":", 1)[1]
        start = f"{base}/api/sessions"
        body = '{"session": "evil-1", "cameras": ["cam0"]}'

        # No login: the API says 401, the page sends the browser to the login page.
        anonymous = {
            "POST /api/sessions": http.post(start, content=body, headers={"Content-Type": "application/json"}),
            "POST /api/sessions/x/end": http.post(f"{base}/api/sessions/x/end", json={"abort": True}),
            "GET /api/state": http.get(f"{base}/api/state"),
            "GET /api/events": http.get(f"{base}/api/events"),
            "GET /api/preview/cam0.jpg": http.get(f"{base}/api/preview/cam0.jpg"),
            "GET /static/app.js": http.get(f"{base}/static/app.js"),
        }
        for what, response in anonymous.items():
            assert response.status_code == 401, what
            assert "log in first" in response.json()["error"], what
        page = http.get(base + "/")
        assert page.status_code == 303 and page.headers["location"] == "/login"
        assert http.get(f"{base}/healthz").json() == {"ok": True}
        assert 'id="password"' in http.get(f"{base}/login").text  # the login page itself is open
        wrong = http.post(start, json={}, headers={"Authorization": "Bearer not-the-password-at-all"})
        assert wrong.status_code == 401

        logged_in(http, base)
        same_origin = {"Origin": base}
        hostile = {
            # A cross-site <form> or fetch(..., {mode: "no-cors"}) can only send these content types.
            "text/plain": (
                http.post(start, content=body, headers={**same_origin, "Content-Type": "text/plain"}),
                415,
                "must be application/json, not text/plain",
            ),
            "form": (
                http.post(start, data={"session": "evil-2"}, headers=same_origin),
                415,
                "not application/x-www-form-urlencoded",
            ),
            "end as text/plain": (
                http.post(
                    f"{base}/api/sessions/x/end",
                    content='{"abort": true}',
                    headers={**same_origin, "Content-Type": "text/plain;charset=UTF-8"},
                ),
                415,
                "must be application/json",
            ),
            "foreign Origin": (
                http.post(
                    start, content=body, headers={"Origin": "http://evil.example", "Content-Type": "application/json"}
                ),
                403,
                "Origin 'http://evil.example' is not this console",
            ),
            "Origin of another port": (
                http.post(
                    start, content=body, headers={"Origin": "http://127.0.0.1:1", "Content-Type": "application/json"}
                ),
                403,
                "is not this console",
            ),
            "null Origin (sandboxed frame)": (
                http.post(start, content=body, headers={"Origin": "null", "Content-Type": "application/json"}),
                403,
                "is not this console",
            ),
            "no Origin": (
                httpx.post(start, content=body, headers={"Content-Type": "application/json"}, cookies=http.cookies),
                403,
                "no Origin header",
            ),
            # DNS rebinding: evil.example resolves to this machine; the browser sends its own name.
            "rebound Host": (
                http.get(f"{base}/api/state", headers={"Host": f"evil.example:{port}"}),
                400,
                "does not answer to the host 'evil.example:",
            ),
            "rebound Host, page": (http.get(base + "/", headers={"Host": "evil.example"}), 400, "evil.example"),
            "rebound Host, post": (
                http.post(
                    start,
                    content=body,
                    headers={
                        "Host": f"evil.example:{port}",
                        "Origin": f"http://evil.example:{port}",
                        "Content-Type": "application/json",
                    },
                ),
                400,
                "does not answer to the host",
            ),
        }
        for what, (response, status, message) in hostile.items():
            assert response.status_code == status, (what, response.status_code, response.text)
            assert message in response.json()["error"], (what, response.json())
            assert response.headers["x-frame-options"] == "DENY", what
        # The logged-in page still works, with its protective headers.
        state = http.get(f"{base}/api/state")
        assert state.status_code == 200 and state.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in state.headers["content-security-policy"]
        assert state.headers["referrer-policy"] == "no-referrer"
        assert http.get(f"{base}/api/state", headers={"Host": f"localhost:{port}"}).status_code == 200

    assert session_events(settings) == []  # nothing got through


def test_login_cookie_is_httponly_strict_and_signed_and_logout_ends_it(settings):
    with TestClient(create_app(console_settings(settings), targets={}), base_url="http://localhost") as client:
        origin = {"Origin": "http://localhost"}
        bad = client.post("/login", json={"password": "wrong-password-123"}, headers=origin)
        assert bad.status_code == 401 and bad.json()["error"] == "wrong password"
        assert COOKIE not in bad.headers.get("set-cookie", "")
        assert client.post("/login", json={"password": CONSOLE_PASSWORD}).status_code == 403  # no Origin
        form = client.post("/login", data={"password": CONSOLE_PASSWORD}, headers=origin)
        assert form.status_code == 415  # no login by a cross-site form (login CSRF)

        ok = client.post("/login", json={"password": CONSOLE_PASSWORD}, headers=origin)
        assert ok.status_code == 200
        cookie = ok.headers["set-cookie"]
        attributes = {a.strip().split("=")[0].lower() for a in cookie.split(";")}
        assert {"httponly", "max-age", "path"} <= attributes and "secure" not in attributes
        assert "samesite=strict" in cookie.lower() and CONSOLE_PASSWORD not in cookie
        token = client.cookies[COOKIE]
        assert client.get("/api/state").status_code == 200
        assert client.get("/login", follow_redirects=False).status_code == 303  # logged in already

        # A forged or altered cookie is nobody's login.
        for forged in (token[:-2] + ("AA" if not token.endswith("AA") else "BB"), "1.2.3", "x", ""):
            client.cookies.set(COOKIE, forged)
            assert client.get("/api/state").status_code == 401, forged
        client.cookies.set(COOKIE, token)
        assert client.post("/logout", json={}, headers=origin).status_code == 200
        client.cookies.set(COOKIE, token)  # the same cookie, replayed after logging out
        assert client.get("/api/state").status_code == 401

    secure = console_settings(settings, console_secure_cookie=True, console_hosts="booth.example.org")
    with TestClient(create_app(secure, targets={}), base_url="https://booth.example.org") as client:
        ok = client.post("/login", json={"password": CONSOLE_PASSWORD}, headers={"Origin": "https://booth.example.org"})
        assert ok.status_code == 200 and "secure" in ok.headers["set-cookie"].lower()
        assert client.get("http://localhost/healthz").status_code == 400  # not one of its host names


def test_failed_logins_are_throttled_per_client(settings):
    with TestClient(create_app(console_settings(settings), targets={}), base_url="http://localhost") as client:
        origin = {"Origin": "http://localhost"}
        for _ in range(5):
            assert client.post("/login", json={"password": "guess-guess-guess"}, headers=origin).status_code == 401
        throttled = client.post("/login", json={"password": CONSOLE_PASSWORD}, headers=origin)
        assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) >= 1
        assert "too many failed logins" in throttled.json()["error"]


def test_the_backoff_slows_a_flood_but_never_locks_the_password_out_for_more_than_a_minute():
    now = [0.0]
    throttle = LoginThrottle(clock=lambda: now[0])
    checked = 0
    for tick in range(36_000):  # an hour of guesses, one every 0.1 s, each checked only when allowed
        now[0] = tick / 10
        if throttle.retry_after("guesser") == 0:
            throttle.failed("guesser")
            checked += 1
        assert throttle.retry_after("guesser") <= 60
    assert checked < 5 + 70  # five free, then about one a minute
    assert throttle.retry_after("operator") == 0  # another client is not slowed at all
    last = now[0]
    while throttle.retry_after("guesser"):  # the same client: back within a minute of its last failure
        now[0] += 0.5
    assert now[0] - last <= 60
    for _ in range(5000):  # days of flooding count up without end: the wait stays a minute
        throttle.failed("guesser")
    assert throttle.retry_after("guesser") == 60
    throttle.succeeded("guesser")
    assert throttle.retry_after("guesser") == 0
    throttle.failed("guesser")
    assert throttle.retry_after("guesser") == 0  # a correct password starts the count afresh


def test_bearer_guesses_and_broken_login_bodies_share_the_login_throttle(settings):
    with serve(create_app(console_settings(settings), targets={})) as base, httpx.Client(timeout=10) as http:
        codes = [
            http.get(f"{base}/api/state", headers={"Authorization": f"Bearer guess-{i:08d}"}).status_code
            for i in range(40)
        ]
        assert codes[:5] == [401] * 5 and codes.count(401) <= 7 and codes[-1] == 429, codes
        # The same client's correct password, by any way, waits its turn too.
        login = http.post(f"{base}/login", json={"password": CONSOLE_PASSWORD}, headers={"Origin": base})
        assert login.status_code == 429 and "too many failed logins" in login.json()["error"]
        bearer = http.get(f"{base}/api/state", headers={"Authorization": f"Bearer {CONSOLE_PASSWORD}"})
        assert bearer.status_code == 429

    with serve(create_app(console_settings(settings), targets={})) as base, httpx.Client(timeout=10) as http:
        http.headers.update({"Origin": base, "Content-Type": "application/json"})
        broken = [b"{not json", b"[]", b'{"password": 12}', b'{"other": "x"}', b"\xff\xfe"]
        assert [http.post(f"{base}/login", content=b).status_code for b in broken] == [400, 400, 401, 400, 400]
        assert http.post(f"{base}/login", json={"password": CONSOLE_PASSWORD}).status_code == 429


def test_forwarded_addresses_count_only_from_trusted_proxies(settings):
    # Straight to the console: X-Forwarded-For is the sender's own writing, so every guess is one client's.
    with serve(create_app(console_settings(settings), targets={})) as base, httpx.Client(timeout=10) as http:
        http.headers["Origin"] = base
        codes = [
            http.post(
                f"{base}/login", json={"password": "guess-guess"}, headers={"X-Forwarded-For": f"10.0.0.{i}"}
            ).status_code
            for i in range(30)
        ]
        assert codes[:5] == [401] * 5 and codes[-1] == 429 and codes.count(401) <= 7, codes

    # Behind a proxy it trusts: each visitor is the address the proxy saw, so a guesser locks only itself.
    behind = console_settings(settings, trusted_proxies="127.0.0.1/32, 192.0.2.7")
    with serve(create_app(behind, targets={})) as base, httpx.Client(timeout=10) as http:
        http.headers["Origin"] = base

        def login(password: str, forwarded: str) -> int:
            return http.post(
                f"{base}/login", json={"password": password}, headers={"X-Forwarded-For": forwarded}
            ).status_code

        guesses = [login("guess-guess", "10.0.0.66") for _ in range(10)]
        assert guesses[-1] == 429, guesses
        # The guesser cannot borrow the operator's address by writing it first: the proxy appends.
        assert login("guess-guess", "10.0.0.99, 10.0.0.66") == 429
        assert login(CONSOLE_PASSWORD, "10.0.0.66, 192.0.2.7") == 429  # chains through trusted hops
        assert login(CONSOLE_PASSWORD, "10.0.0.99") == 200  # the operator is not locked out


def test_request_bodies_are_limited_before_they_are_read(settings):
    with serve(create_app(console_settings(settings), targets={})) as base, httpx.Client(timeout=10) as http:
        http.headers.update({"Origin": base, "Content-Type": "application/json"})
        big = b'{"password": "' + b"x" * (1 << 20) + b'"}'
        refused = http.post(f"{base}/login", content=big)
        assert refused.status_code == 413 and "larger than" in refused.json()["error"]
        auth = {"Authorization": f"Bearer {CONSOLE_PASSWORD}"}
        note = {"session": "big-1", "note": "n" * (200 * 1024)}
        assert http.post(f"{base}/api/sessions", json=note, headers=auth).status_code == 413
        small = {"session": "small-1", "cameras": ["cam0"], "note": "n" * 900}
        fits = http.post(f"{base}/api/sessions", json=small, headers=auth)
        assert fits.status_code == 201, fits.text

    # Without a Content-Length (chunked) the console stops reading at the limit, and such a login fails.
    app = create_app(console_settings(settings), targets={})
    pulled = [0]

    async def receive():
        pulled[0] += 1
        return {"type": "http.request", "body": b"x" * 1024, "more_body": pulled[0] < 300_000}  # 300 MB

    def request(body_chunks) -> list[dict]:
        sent: list[dict] = []

        async def send(message):
            sent.append(message)

        scope = {
            "type": "http",
            "method": "POST",
            "path": "/login",
            "raw_path": b"/login",
            "query_string": b"",
            "headers": [
                (b"host", b"localhost"),
                (b"origin", b"http://localhost"),
                (b"content-type", b"application/json"),
            ],
            "client": ("198.51.100.1", 5000),
            "server": ("localhost", 80),
            "scheme": "http",
            "http_version": "1.1",
            "root_path": "",
        }
        asyncio.run(app(scope, body_chunks, send))
        return sent

    for _ in range(5):
        pulled[0] = 0
        sent = request(receive)
        assert sent[0]["status"] == 413 and pulled[0] <= 5, pulled
    with TestClient(app, base_url="http://localhost", client=("198.51.100.1", 5000)) as client:
        ok = client.post("/login", json={"password": CONSOLE_PASSWORD}, headers={"Origin": "http://localhost"})
        assert ok.status_code == 429  # the five unreadable logins were five failures


def test_login_cookies_expire_and_only_this_console_signs_them():
    now = [1_000_000.0]
    logins = Logins(ttl_s=60, clock=lambda: now[0])
    token = logins.issue()
    assert logins.valid(token) and not Logins(ttl_s=60, clock=lambda: now[0]).valid(token)  # another key
    now[0] += 59
    assert logins.valid(token)
    now[0] += 2
    assert not logins.valid(token)
    issued, nonce, signature = logins.issue().split(".")
    later = f"{int(issued) + 3600}.{nonce}.{signature}"  # moving the issue time breaks the signature
    assert not logins.valid(later)
    assert [host_name(h) for h in ("Example.org:8080", "[::1]:8080", "::1", "localhost")] == [
        "example.org",
        "::1",
        "::1",
        "localhost",
    ]


def test_scripts_log_in_with_a_bearer_token(settings):
    with serve(create_app(console_settings(settings), targets={})) as base:
        auth = {"Authorization": f"Bearer {CONSOLE_PASSWORD}"}
        body = {"session": "scripted-1", "cameras": ["cam0"], "consent": True}
        started = httpx.post(f"{base}/api/sessions", json=body, headers=auth)
        assert started.status_code == 201, started.text
        # A bearer request that does carry an Origin must carry this console's.
        foreign = httpx.post(
            f"{base}/api/sessions", json={"session": "scripted-2"}, headers={**auth, "Origin": "http://evil.example"}
        )
        assert foreign.status_code == 403
    assert [(e.session, e.kind, e.consent) for e in session_events(settings)] == [("scripted-1", "start", True)]


def test_the_console_needs_a_long_enough_password(settings):
    from console.auth import ConsoleConfigError

    with pytest.raises(ConsoleConfigError, match="BOOTH_CONSOLE_PASSWORD"):
        create_app(settings, targets={})
    with pytest.raises(ConsoleConfigError, match="at least 12 characters"):
        create_app(console_settings(settings).model_copy(update={"console_password": SecretStr("short")}), targets={})


@contextlib.contextmanager
def booth_console(settings, env: dict[str, str], log_path):
    """`booth console` as an operator starts it, on a free port; yields its base URL."""
    port = free_port()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "booth.cli", "-vv", "console", "--port", str(port), "--no-metrics"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: process.poll() is None and _answers(f"{base}/healthz"), timeout=60, what="`booth console` to answer"
        )
        yield process, base
    finally:
        process.terminate()
        process.wait(20)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_booth_console_reads_its_password_from_the_secrets_folder_and_never_shows_it(settings, tmp_path, caplog):
    password = f"file-{uuid.uuid4().hex}"
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "console_password").write_text(password)
    env = {k: v for k, v in settings.to_env().items() if k != "BOOTH_CONSOLE_PASSWORD"}
    env["BOOTH_SECRETS_DIR"] = str(secrets)
    log_path = tmp_path / "console.log"
    with booth_console(settings, env, log_path) as (process, base), httpx.Client(timeout=10) as http:
        assert http.get(f"{base}/api/state").status_code == 401
        http.headers["Origin"] = base
        assert http.post(f"{base}/login", json={"password": CONSOLE_PASSWORD}).status_code == 401
        assert http.post(f"{base}/login", json={"password": password}).status_code == 200
        assert http.get(f"{base}/api/state").status_code == 200
        assert http.post(f"{base}/api/sessions", json={"session": "from-cli-1", "cameras": ["cam0"]}).status_code == 201
        command_line = open(f"/proc/{process.pid}/cmdline", "rb").read()
    assert password.encode() not in command_line
    assert password not in log_path.read_text()
    assert [(e.session, e.kind) for e in session_events(settings)] == [("from-cli-1", "start")]

    # A config file may not hold it: refused, naming the ways that work, without echoing it.
    config = tmp_path / "booth.toml"
    config.write_text(f'console_password = "{password}"\n')
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("BOOTH_")}
    refused = subprocess.run(
        [sys.executable, "-m", "booth.cli", "config"],
        env={**base_env, "BOOTH_CONFIG": str(config)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = refused.stdout + refused.stderr
    assert refused.returncode != 0 and "BOOTH_CONSOLE_PASSWORD" in output and password not in output

    # In-process, with every logger at debug: logging in leaves no trace of it.
    caplog.set_level(logging.DEBUG)
    app_settings = console_settings(settings)
    with TestClient(create_app(app_settings, targets={}), base_url="http://localhost") as client:
        client.post("/login", json={"password": "wrong-password-1"}, headers={"Origin": "http://localhost"})
        client.post("/login", json={"password": CONSOLE_PASSWORD}, headers={"Origin": "http://localhost"})
    assert CONSOLE_PASSWORD not in caplog.text and "wrong-password-1" not in caplog.text
    assert CONSOLE_PASSWORD not in str(app_settings.safe_summary())


def test_the_production_set_up_serves_the_console_over_tls_only_under_its_domain(settings, tmp_path, monkeypatch):
    """infra/compose.yaml: the console is reachable only through the TLS proxy, with its password
    from a secret file, answering to the public domain only, with a Secure cookie."""
    import re

    import yaml

    from infra.settings import REPO_ROOT, Settings

    compose = yaml.safe_load((REPO_ROOT / "infra" / "compose.yaml").read_text())
    services = compose["services"]
    console, proxy = services["console"], services["proxy"]
    assert "ports" not in console and {"80:80", "443:443"} <= set(proxy["ports"])
    assert "console_password" in console["secrets"] and "console_password" in compose["secrets"]
    caddyfile = (REPO_ROOT / "infra" / "Caddyfile").read_text()
    assert "{$DOMAIN}" in caddyfile and "reverse_proxy console:8080" in caddyfile

    # The console's environment as compose gives it, on this test's broker and store.
    secrets = tmp_path / "run-secrets"
    secrets.mkdir()
    (secrets / "console_password").write_text(CONSOLE_PASSWORD)
    env = {k: re.sub(r"\$\{DOMAIN[^}]*\}", "booth.example.org", str(v)) for k, v in console["environment"].items()}
    env["BOOTH_SECRETS_DIR"] = str(secrets)
    for name, value in env.items():
        if name.startswith("BOOTH_") and not name.startswith(
            ("BOOTH_KAFKA", "BOOTH_S3", "BOOTH_MODELS", "BOOTH_METRICS")
        ):
            monkeypatch.setenv(name, value)
    production = Settings(**{k: getattr(settings, k) for k in ("kafka_bootstrap", "s3_endpoint", "topic_sessions")})
    assert production.console_secure_cookie and production.console_host_names() == ["booth.example.org"]
    with TestClient(create_app(production, targets={}), base_url="https://booth.example.org") as client:
        assert client.get("http://127.0.0.1/healthz").status_code == 400  # not by address: by its name only
        ok = client.post("/login", json={"password": CONSOLE_PASSWORD}, headers={"Origin": "https://booth.example.org"})
        assert ok.status_code == 200 and "secure" in ok.headers["set-cookie"].lower()
        assert client.get("/api/state").status_code == 200
