"""The console's door: operator login, cross-site protection and the Host allow-list.

One ASGI middleware (`Guard`) in front of every route, in this order:

1. **Host allow-list** (settings ``console_hosts``): any other Host header is refused (400), so a
   DNS-rebound name (an attacker's domain resolving to this machine) reaches nothing.
2. **Login** for everything but the health check, the login page and its two static files. A
   request is logged in with the signed cookie `POST /login` sets, or with
   ``Authorization: Bearer <password>`` (scripts). The pages answer 303 to /login; anything
   else 401.
   A display token (`DisplayTokens`, issued by the operator) opens the booth display's read-only
   paths and nothing else (403); presented as ``/display?token=`` once, then as its cookie; a
   token that is not valid counts in the login throttle like a wrong password.
3. **State-changing requests** (any method but GET/HEAD/OPTIONS, login included) must be
   ``Content-Type: application/json`` (415 otherwise: a cross-site form or a no-cors fetch cannot
   send that) and carry an ``Origin`` whose host and port are this request's Host (403 otherwise).
   Bearer requests, which a browser never sends by itself, may omit Origin.

Every response carries headers that keep the page out of frames and other sites' reach
(Content-Security-Policy, X-Frame-Options, nosniff, no Referer, so presigned links do not leak).

The cookie is ``<issued>.<nonce>.<HMAC-SHA256>``, signed with a key drawn when the app starts (a
restart logs everyone out), HttpOnly, SameSite=Strict, Secure when ``console_secure_cookie`` is
on, valid ``console_login_ttl_s``; logging out revokes its nonce. The password is compared in
constant time and never logged.

Every password check, form login or Bearer header, goes through one `LoginThrottle` keyed on the
real client (`real_client`: the peer, or X-Forwarded-For from ``trusted_proxies`` only). Request
bodies are counted while read and refused with 413 past LOGIN_MAX_BODY before login and
``console_max_body_bytes`` after; an unreadable login counts as a failed one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import math
import secrets
import threading
import time
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
PAGES = frozenset({"/", "/display", "/mirror"})  # pages a browser opens: sent to the login page, not answered 401
LOGIN = ("POST", "/login")
# Request bodies: before login only a password fits; after it, settings console_max_body_bytes.
LOGIN_MAX_BODY = 4096
MAX_BODY = 64 * 1024
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


DISPLAY_COOKIE = "booth_display"
# What a display token opens: the booth display's page, its read-only data and the files it loads.
DISPLAY_GET = frozenset({"/display", "/api/display", "/api/display/events", "/static/display.js", "/static/style.css"})
DISPLAY_PREFIXES = ("/api/references/",)  # .../<name>/dance.json: the dance the display plays


def display_path(method: str, path: str) -> bool:
    if method not in ("GET", "HEAD"):
        return False
    return path in DISPLAY_GET or (path.startswith(DISPLAY_PREFIXES) and path.endswith("/dance.json"))


class DisplayTokens:
    """Tokens the operator issues for the booth's screen: 256 random bits each, kept as their
    SHA-256 only, valid ttl_s, revocable one by one (by id) or all at once. A token opens the
    display's read-only paths (DISPLAY_GET) and nothing else."""

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.time):
        self.ttl_s = ttl_s
        self.clock = clock
        self._tokens: dict[str, tuple[str, float]] = {}  # digest -> (id, expires)
        self._lock = threading.Lock()

    @staticmethod
    def _digest(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    def issue(self) -> tuple[str, str, float]:
        """(token, its id, expiry wall time)."""
        token = secrets.token_urlsafe(32)
        digest = self._digest(token)
        expires = self.clock() + self.ttl_s
        with self._lock:
            self._tokens[digest] = (digest[:12], expires)
        return token, digest[:12], expires

    def valid(self, token: str | None) -> bool:
        if not token or len(token) > 200:
            return False
        now = self.clock()
        with self._lock:
            entry = self._tokens.get(self._digest(token))
            if entry is None:
                return False
            if entry[1] <= now:
                self._tokens.pop(self._digest(token), None)
                return False
            return True

    def revoke(self, token_id: str | None = None) -> int:
        """Revoke the token with this id, or every token (None); returns how many."""
        with self._lock:
            gone = [d for d, (i, _) in self._tokens.items() if token_id is None or i == token_id]
            for d in gone:
                del self._tokens[d]
            return len(gone)

    def listed(self) -> list[dict]:
        now = self.clock()
        with self._lock:
            return [{"id": i, "expires_at": e} for i, e in self._tokens.values() if e > now]


class LoginThrottle:
    """Failed password checks per client, with a backoff that slows a flood without locking out.

    The first `free` failures cost nothing; after that the client waits before its next check,
    `base_s` doubling with each further failure up to `max_s` (a minute): a guesser gets about one
    try a minute, and the right password works again at most `max_s` after the last wrong one that
    was checked (attempts refused while waiting are not checked, so they do not extend the wait).
    A client quiet for `forget_s` starts afresh; a correct password clears its count.
    """

    def __init__(
        self,
        free: int = 5,
        base_s: float = 1.0,
        max_s: float = 60.0,
        forget_s: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.free, self.base_s, self.max_s, self.forget_s, self._clock = free, base_s, max_s, forget_s, clock
        self._seen: dict[str, tuple[int, float]] = {}  # client -> (failures, time of the last one)
        self._lock = threading.Lock()

    def _failures(self, client: str, now: float) -> tuple[int, float]:
        count, last = self._seen.get(client, (0, 0.0))
        if count and now - last >= self.forget_s:
            del self._seen[client]
            return 0, 0.0
        return count, last

    def retry_after(self, client: str) -> float:
        """Seconds until this client's password may be checked again (0: now)."""
        with self._lock:
            now = self._clock()
            count, last = self._failures(client, now)
            if count < self.free:
                return 0.0
            wait = min(self.max_s, self.base_s * 2 ** min(count - self.free, 30))  # a day of guesses: no overflow
            return min(wait, max(0.0, last + wait - now))

    def failed(self, client: str) -> None:
        with self._lock:
            now = self._clock()
            count, _ = self._failures(client, now)
            self._seen[client] = (count + 1, now)
            if len(self._seen) > 10_000:  # forget the quiet ones, then the oldest, rather than grow
                recent = sorted(self._seen.items(), key=lambda kv: kv[1][1])[-5_000:]
                self._seen = {c: v for c, v in recent if now - v[1] < self.forget_s}

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._seen.pop(client, None)


def real_client(scope: Scope, headers: dict[str, str], trusted: list[Any]) -> str:
    """The address a request comes from: its peer's, or, when the peer is one of the `trusted`
    proxies (ip_network objects), the last address in X-Forwarded-For that is not a trusted proxy.
    From anyone else forwarded headers count for nothing: they are the sender's to write."""
    peer = str((scope.get("client") or ("unknown", 0))[0])
    forwarded = headers.get("x-forwarded-for")
    if not trusted or not forwarded or not _trusted(peer, trusted):
        return peer
    hops = [h.strip() for h in forwarded.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, trusted):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer  # a proxy we trust would not write that: do not let it pick a key
    return hops[0] if hops else peer


def _trusted(address: str, trusted: list[Any]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


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
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        if key == "x-forwarded-for" and key in out:  # several lines are one list, in order
            out[key] += "," + text
        else:
            out.setdefault(key, text)
    return out


def _cookie(headers: dict[str, str], name: str) -> str | None:
    for part in headers.get("cookie", "").split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value
    return None


class BodyTooLarge(Exception):
    """A request body past the limit, found while reading it."""


class Guard:
    """The middleware described in the module doc."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        password: str,
        hosts: list[str],
        logins: Logins,
        displays: DisplayTokens | None = None,
        throttle: LoginThrottle | None = None,
        trusted_proxies: list[Any] | None = None,
        max_body: int = MAX_BODY,
    ):
        self.app = app
        self.password = check_password(password)
        self.hosts = frozenset(hosts)
        self.logins = logins
        self.displays = displays
        self.throttle = throttle or LoginThrottle()
        self.trusted = list(trusted_proxies or [])
        self.max_body = max_body

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

    def _throttled(self, client: str) -> tuple[int, str, list[tuple[bytes, bytes]]] | None:
        wait = self.throttle.retry_after(client)
        if not wait:
            return None
        seconds = str(math.ceil(wait))
        return 429, f"too many failed logins; try again in {seconds} s", [(b"retry-after", seconds.encode())]

    def authenticate(self, headers: dict[str, str], client: str) -> str | tuple[int, str, list[tuple[bytes, bytes]]]:
        """'cookie', 'bearer' or '' (no login presented), or the refusal of a password presented in
        an Authorization header: every password check goes through the client's throttle."""
        if self.logins.valid(_cookie(headers, COOKIE)):
            return "cookie"
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return self._display(headers, client)
        throttled = self._throttled(client)
        if throttled:
            return throttled
        if password_matches(token.strip(), self.password):
            self.throttle.succeeded(client)
            return "bearer"
        self.throttle.failed(client)
        return 401, "wrong password (Authorization: Bearer)", [(b"www-authenticate", b"Bearer")]

    def _display(self, headers: dict[str, str], client: str) -> str | tuple[int, str, list[tuple[bytes, bytes]]]:
        """'display' for a valid display token (its cookie), '' for none; a token presented that is
        not valid (a guess, or revoked) counts as a failed login in the client's throttle."""
        token = _cookie(headers, DISPLAY_COOKIE)
        if token is None or self.displays is None:
            return ""
        throttled = self._throttled(client)
        if throttled:
            return throttled
        if self.displays.valid(token):
            return "display"
        self.throttle.failed(client)
        return ""

    def refusal(
        self, scope: Scope, headers: dict[str, str], client: str
    ) -> tuple[int, str, list[tuple[bytes, bytes]]] | None:
        """(status, message, headers) when the request must be refused, else None."""
        host = headers.get("host", "")
        if host_name(host) not in self.hosts:
            return 400, f"this console does not answer to the host {host[:100]!r} (console_hosts)", []
        method, path = scope["method"], scope["path"]
        public = (method, path) in PUBLIC or (
            method in SAFE_METHODS and (path in PUBLIC_STATIC or path.startswith(PUBLIC_PREFIXES))
        )
        how = self.authenticate(headers, client)
        if isinstance(how, tuple):
            return how
        if how == "" and method in SAFE_METHODS and path == "/display" and self.displays is not None:
            how = self._display_query(scope, client)
            if isinstance(how, tuple):
                return how
        scope["booth.login"] = how
        if how == "display" and not display_path(method, path):
            return 403, "a display token opens the booth display only", []
        if not how and not public:
            if method in SAFE_METHODS and path in PAGES:
                return 303, "log in first", [(b"location", b"/login")]
            return 401, "log in first (POST /login, or Authorization: Bearer)", [(b"www-authenticate", b"Bearer")]
        if (method, path) == LOGIN and not how:
            throttled = self._throttled(client)
            if throttled:
                return throttled
        length = headers.get("content-length", "0").strip()
        limit = self.max_body if how in ("cookie", "bearer") else LOGIN_MAX_BODY
        if not length.isdigit() or int(length) > limit:
            if (method, path) == LOGIN:
                self.throttle.failed(client)  # an unreadable login is a failed one
            return 413, f"the request body is larger than this console reads ({limit} bytes)", []
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

    def _display_query(self, scope: Scope, client: str) -> str | tuple[int, str, list[tuple[bytes, bytes]]]:
        """GET /display?token=...: the link the operator hands the booth's screen. A valid token
        is moved into a cookie by the page (console.app.display_page) and the URL loses it."""
        from urllib.parse import parse_qs

        query = parse_qs((scope.get("query_string") or b"").decode("latin-1"))
        token = (query.get("token") or [None])[0]
        if token is None:
            return ""
        throttled = self._throttled(client)
        if throttled:
            return throttled
        if self.displays is not None and self.displays.valid(token):
            scope["booth.display_token"] = token
            return "display"
        self.throttle.failed(client)
        return 401, "this display link is not valid (revoked, expired or mistyped): ask the operator for a new one", []

    async def __call__(self, scope: Scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        client = real_client(scope, headers, self.trusted)
        # The routes, logs and throttle see the real client, never a header anyone can write.
        scope["client"] = (client, (scope.get("client") or ("", 0))[1])
        refused = self.refusal(scope, headers, client)
        if refused is not None:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            await self._refuse(send, *refused)
            return
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return

        limit = self.max_body if scope.get("booth.login") in ("cookie", "bearer") else LOGIN_MAX_BODY
        received = 0
        started = False

        async def limited_receive():
            # Counted as it arrives (a body without Content-Length, or longer than it said): the
            # console stops reading at the limit instead of holding whatever a client sends.
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def send_with_headers(message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                present = {name.lower() for name, _ in message.get("headers", [])}
                message = {
                    **message,
                    "headers": [*message.get("headers", []), *(h for h in SECURITY_HEADERS if h[0] not in present)],
                }
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_headers)
        except BodyTooLarge:
            if (scope["method"], scope["path"]) == LOGIN:
                self.throttle.failed(client)
            if not started:
                await self._refuse(send, 413, f"the request body is larger than this console reads ({limit} bytes)", [])
