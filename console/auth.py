"""The console's door: operator login, cross-site protection and the Host allow-list.

One ASGI middleware (`Guard`) in front of every route, in this order:

1. **Host allow-list** (settings ``console_hosts``): any other Host header is refused (400), so a
   DNS-rebound name (an attacker's domain resolving to this machine) reaches nothing.
2. **Login** for everything but the health check, the login page and its two static files. A
   request is logged in with the signed cookie `POST /login` sets, or with
   ``Authorization: Bearer <password>`` (scripts). The page answers 303 to /login; anything
   else 401.
3. **State-changing requests** (any method but GET/HEAD/OPTIONS, login included) must be
   ``Content-Type: application/json`` (415 otherwise: a cross-site form or a no-cors fetch cannot
   send that) and carry an ``Origin`` whose host and port are this request's Host (403 otherwise).
   Bearer requests, which a browser never sends by itself, may omit Origin.

Every response carries headers that keep the page out of frames and other sites' reach
(Content-Security-Policy, X-Frame-Options, nosniff, no Referer, so presigned links do not leak).

The cookie is ``<issued>.<nonce>.<HMAC-SHA256>``, signed with a key drawn when the app starts (a
restart logs everyone out), HttpOnly, SameSite=Strict, Secure when ``console_secure_cookie`` is
on, valid ``console_login_ttl_s``; logging out revokes its nonce. Failed logins are limited per
client address. The password is compared in constant time and never logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

COOKIE = "booth_console"
MIN_PASSWORD = 12
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Reachable without a login: a health check for load balancers, and the login page itself.
PUBLIC = frozenset({("GET", "/healthz"), ("GET", "/login"), ("POST", "/login")})
PUBLIC_STATIC = frozenset({"/static/login.js", "/static/style.css"})
# The visitors' short links (infra.links): a link is its own credential, checked by its handler.
PUBLIC_PREFIXES = ("/v/",)
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' blob: data:; media-src *; frame-ancestors 'none'; "
        b"base-uri 'none'; form-action 'self'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


class ConsoleConfigError(ValueError):
    """The console's settings cannot protect it (no password, too short)."""


def check_password(password: str | None) -> str:
    if not password:
        raise ConsoleConfigError(
            "the console needs an operator password: set BOOTH_CONSOLE_PASSWORD, or put a file named "
            "console_password in BOOTH_SECRETS_DIR (never in the config file)"
        )
    if len(password) < MIN_PASSWORD:
        raise ConsoleConfigError(f"the console password must be at least {MIN_PASSWORD} characters long")
    return password


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class Logins:
    """Signed login cookies: issue, check, revoke."""

    def __init__(self, ttl_s: float, key: bytes | None = None, clock: Callable[[], float] = time.time):
        self.ttl_s = ttl_s
        self._key = key or secrets.token_bytes(32)
        self._clock = clock
        self._revoked: dict[str, float] = {}  # nonce -> when its cookie would have expired
        self._lock = threading.Lock()

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode("ascii"), hashlib.sha256).digest())

    def issue(self) -> str:
        payload = f"{int(self._clock())}.{_b64(secrets.token_bytes(16))}"
        return f"{payload}.{self._sign(payload)}"

    def valid(self, token: str | None) -> bool:
        if not token or token.count(".") != 2:
            return False
        issued, nonce, signature = token.split(".")
        try:
            expected = self._sign(f"{issued}.{nonce}")
        except UnicodeEncodeError:
            return False
        if not hmac.compare_digest(signature.encode(), expected.encode()) or not issued.isdigit():
            return False
        now = self._clock()
        with self._lock:
            if nonce in self._revoked:
                return False
        return int(issued) <= now + 60 and now < int(issued) + self.ttl_s

    def revoke(self, token: str | None) -> None:
        if self.valid(token):
            issued, nonce, _ = token.split(".")  # type: ignore[union-attr]
            with self._lock:
                now = self._clock()
                self._revoked = {n: t for n, t in self._revoked.items() if t > now}
                self._revoked[nonce] = int(issued) + self.ttl_s


class LoginThrottle:
    """At most `failures` failed logins per client address within `window_s`."""

    def __init__(self, failures: int = 5, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.failures, self.window_s, self._clock = failures, window_s, clock
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, client: str) -> deque[float]:
        now = self._clock()
        seen = self._seen.setdefault(client, deque())
        while seen and seen[0] <= now - self.window_s:
            seen.popleft()
        return seen

    def retry_after(self, client: str) -> float:
        """Seconds until this client may try again (0: now)."""
        with self._lock:
            seen = self._recent(client)
            if len(seen) < self.failures:
                return 0.0
            return max(1.0, seen[0] + self.window_s - self._clock())

    def failed(self, client: str) -> None:
        with self._lock:
            self._recent(client).append(self._clock())
            if len(self._seen) > 10_000:  # forget the quiet ones rather than grow without bound
                self._seen = {c: d for c, d in self._seen.items() if d}


def password_matches(given: object, password: str) -> bool:
    return isinstance(given, str) and hmac.compare_digest(given.encode("utf-8"), password.encode("utf-8"))


def host_name(host: str) -> str:
    """'Example.org:8080' -> 'example.org'; '[::1]:8080' -> '::1'."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def _headers(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in scope.get("headers") or ():
        out.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
    return out


def _cookie(headers: dict[str, str], name: str) -> str | None:
    for part in headers.get("cookie", "").split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value
    return None


class Guard:
    """The middleware described in the module doc."""

    def __init__(self, app: ASGIApp, *, password: str, hosts: list[str], logins: Logins):
        self.app = app
        self.password = check_password(password)
        self.hosts = frozenset(hosts)
        self.logins = logins

    async def _refuse(self, send, status: int, message: str, headers: list[tuple[bytes, bytes]]) -> None:
        body = json.dumps({"error": message}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"cache-control", b"no-store"),
                    *SECURITY_HEADERS,
                    *headers,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def authenticated(self, headers: dict[str, str]) -> str | None:
        """'cookie' or 'bearer' when the request is logged in, else None."""
        if self.logins.valid(_cookie(headers, COOKIE)):
            return "cookie"
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and password_matches(token.strip(), self.password):
            return "bearer"
        return None

    def refusal(self, scope: Scope, headers: dict[str, str]) -> tuple[int, str, list[tuple[bytes, bytes]]] | None:
        """(status, message, headers) when the request must be refused, else None."""
        host = headers.get("host", "")
        if host_name(host) not in self.hosts:
            return 400, f"this console does not answer to the host {host[:100]!r} (console_hosts)", []
        method, path = scope["method"], scope["path"]
        public = (method, path) in PUBLIC or (
            method in SAFE_METHODS and (path in PUBLIC_STATIC or path.startswith(PUBLIC_PREFIXES))
        )
        how = self.authenticated(headers)
        if how is None and not public:
            if method in SAFE_METHODS and path == "/":
                return 303, "log in first", [(b"location", b"/login")]
            return 401, "log in first (POST /login, or Authorization: Bearer)", [(b"www-authenticate", b"Bearer")]
        if method in SAFE_METHODS:
            return None
        media = headers.get("content-type", "").partition(";")[0].strip().lower()
        if media != "application/json":
            return 415, f"a {method} here must be application/json, not {media or 'without a content type'}", []
        origin = headers.get("origin") or None
        if origin is None:
            if how == "bearer":
                return None
            return 403, "cross-site protection: the request has no Origin header", []
        netloc = urlsplit(origin).netloc.lower() if origin != "null" else ""
        if not netloc or netloc != host.strip().lower():
            return 403, f"cross-site protection: Origin {origin[:100]!r} is not this console ({host[:100]})", []
        return None

    async def __call__(self, scope: Scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        refused = self.refusal(scope, headers)
        if refused is not None:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            await self._refuse(send, *refused)
            return

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message = {
                    **message,
                    "headers": [*message.get("headers", []), *(h for h in SECURITY_HEADERS if h[0] not in present)],
                }
            await send(message)

        await self.app(scope, receive, send_with_headers)
