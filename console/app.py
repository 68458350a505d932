"""The operator console's web app (Starlette; served by uvicorn from `booth console`).

    GET  /healthz                        {"ok": true}: the only thing served without a login
    GET  /login                          the login page (static/login.html, login.js)
    POST /login                          {"password": "..."}: sets the login cookie
    POST /logout                         ends this login
    GET  /                               the page (static/index.html, app.js, style.css)
    GET  /api/state                      the whole state as JSON (see console.state.build_state)
    GET  /api/events                     the same state as server-sent events, about once a second
    GET  /api/preview/<camera>.jpg       newest frame with its smoothed pose drawn over it (ETag, 304)
    POST /api/sessions                   start a session:
                                         {"session"?, "cameras": [...], "reference"?, "note"?, "consent"?: bool}
    POST /api/sessions/<session>/end     end it: {"abort"?: bool, "note"?}
    GET  /api/sessions/<session>/qr.svg  the visitor's short link (infra.links) as a QR code (also qr.png)
    GET  /mirror                         the live mirror (console.mirror): the reference dancer moving as a
                                         camera's visitor moves; /api/mirror/<camera>.mjpeg and /state
    GET  /v/<token>                      a visitor's short link: 302 to a fresh presigned link to the
                                         video while it is kept, 404 once it is gone (no login)
    GET  /api/references                 the reference dances to pick from
    GET  /api/references/<name>/dance.json  a dance's poses for drawing (picker preview, display)
    POST /api/display-tokens             issue a display token: {"token", "id", "url", "expires_at"}
    POST /api/display-tokens/revoke      {"id"?}: revoke one, or all without an id
    POST /api/display/between            {"show": "last-video" | "attract"}: the display between sessions
    GET  /display                        the booth display (static/display.html, display.js)
    GET  /api/display                    the display's state (also as events: /api/display/events)

Everything but the health check, the login page and the short links needs the operator's login (the
display's paths also open to a display token, console.auth.DisplayTokens), every POST is
application/json from this console's own origin, and only the allowed Host names are answered
(console.auth). Errors are JSON objects {"error": "..."} naming the problem. Purged sessions
(their purge event on the sessions topic) disappear from the state and the previews.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import threading
import time
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from console import mirror
from console.auth import (
    COOKIE,
    DISPLAY_COOKIE,
    DisplayTokens,
    Guard,
    Logins,
    LoginThrottle,
    check_password,
    password_matches,
)
from console.preview import PreviewError, PreviewFeed
from console.qr import qr_png, qr_svg
from console.state import build_state
from console.status import StatusFeed
from console.takes import Takes
from infra.links import session_of, share_url
from infra.objectstore import ObjectStore, TransientStoreError
from infra.retention import DAY_S, video_link_expiry_s
from infra.settings import Settings
from schemas import InvalidId, layout, validate_id

STATIC = Path(__file__).resolve().parent / "static"
MAX_CAMERAS = 64
START_FIELDS = {"session", "cameras", "reference", "note", "consent", "until_coverage", "max_seconds"}
BETWEEN = ("last-video", "attract")
END_FIELDS = {"abort", "note"}


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def _finite(value: Any) -> Any:
    """JSON for the browser: NaN and infinities (a scraped gauge can hold them) become null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def dumps(state: dict) -> str:
    return json.dumps(_finite(state), separators=(",", ":"), default=str)


class Hub:
    """The feeds behind the page and the state they add up to."""

    def __init__(self, settings: Settings, preview: PreviewFeed, status: StatusFeed):
        self.settings = settings
        self.preview = preview
        self.status = status
        self._producer = None
        self._producer_lock = threading.Lock()
        self.takes = Takes(settings)
        self.between = "last-video"

    def producer(self):
        """The console's one producer for session events, made on first use, closed by close()."""
        with self._producer_lock:
            if self._producer is None:
                from infra import kafka

                self._producer = kafka.producer(self.settings)
            return self._producer

    def close(self) -> None:
        self.takes.close()
        with self._producer_lock:
            if self._producer is not None:
                self._producer.close(timeout=5)
                self._producer = None

    def _forget_purged(self) -> dict[str, Any] | None:
        snapshot = self.status.latest()
        self.preview.forget((snapshot or {}).get("purged") or ())
        return snapshot

    def preview_of(self, camera: str):
        self._forget_purged()
        return self.preview.preview(camera)

    def state(self) -> dict[str, Any]:
        snapshot = self._forget_purged()
        state = build_state(
            snapshot,
            self.preview.sessions(),
            self.preview.cameras(),
            [e for e in (self.preview.last_error, self.status.last_error, *self.takes.errors()) if e],
        )
        self.takes.follow(state["sessions"])
        for row in state["sessions"]:
            row["take"] = self.takes.status(row["session"])
        state["broker"] = self.settings.kafka_bootstrap
        return state

    def display_state(self) -> dict[str, Any]:
        """What the booth display draws: the recording session (its coverage, dance and the
        visitor's newest pose), else what the operator chose to show between sessions."""
        state = self.state()
        rows = state["sessions"]
        live = next((r for r in rows if r["state"] == "start"), None)
        last_video = next((r["rendition"]["url"] for r in rows if r["rendition"]), None)
        out: dict[str, Any] = {
            "now": state["now"],
            "between": self.between,
            "countdown_s": self.settings.guide_countdown_s,
            "last_video": last_video,
            "session": None,
            "visitor": None,
        }
        if live is not None:
            cov = live.get("coverage") or {}
            out["session"] = {
                "session": live["session"],
                "reference": live["reference"],
                "started_at": live["started_at"],
                "target": cov.get("target"),
                "max_seconds": cov.get("max_seconds"),
                "coverage": cov or None,
            }
            pose = self.preview.latest_pose(live["session"])
            if pose is not None:
                out["visitor"] = {
                    "camera": pose.camera,
                    "seq": pose.seq,
                    "wall_time": pose.wall_time,
                    "width": pose.width,
                    "height": pose.height,
                    "keypoints": pose.persons[0].keypoints if pose.persons else None,
                }
        return out


# --- request parsing -------------------------------------------------------------------------------
async def _body(request: Request, allowed: set[str]) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, f"the request body must be a JSON object, got {type(body).__name__}")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ApiError(400, f"unknown field(s) {', '.join(unknown)}; expected {', '.join(sorted(allowed))}")
    return body


def _id(value: Any, what: str) -> str:
    try:
        return validate_id(value, what)
    except InvalidId as exc:
        raise ApiError(400, str(exc)) from None


def _note(body: dict) -> str:
    note = body.get("note", "")
    if not isinstance(note, str) or len(note) > 1000:
        raise ApiError(400, "note must be a string of at most 1000 characters")
    return note


def _cameras(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ApiError(400, f"cameras must be a list of camera ids, got {type(value).__name__}")
    if len(value) > MAX_CAMERAS:
        raise ApiError(400, f"cameras lists {len(value)} ids; the limit is {MAX_CAMERAS}")
    cameras = [_id(c, f"cameras[{i}]") for i, c in enumerate(value)]
    if len(set(cameras)) != len(cameras):
        raise ApiError(400, f"cameras lists an id twice: {cameras}")
    return cameras


async def _publish(hub: Hub, session: str, kind: str, **fields):
    from kafka.errors import KafkaError

    from producers.session import publish

    settings = hub.settings
    try:
        return await run_in_threadpool(lambda: publish(settings, session, kind, producer=hub.producer(), **fields))
    except (KafkaError, TimeoutError, OSError) as exc:
        raise ApiError(
            503, f"could not publish the {kind} event to {settings.topic_sessions}: {type(exc).__name__}: {exc}"
        ) from None


async def _reference(settings: Settings, named: str | None) -> str:
    """The session's reference dance (named or the default), which must exist: a visitor never
    records a session that cannot become a video."""
    from producers.session import NoReference, session_reference

    try:
        return await run_in_threadpool(session_reference, settings, named)
    except NoReference as exc:
        raise ApiError(400, str(exc)) from None
    except TransientStoreError as exc:
        raise ApiError(503, f"cannot check the reference dance: {exc}") from None


# --- endpoints -------------------------------------------------------------------------------------
async def index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


def _with_links(state: dict[str, Any], request: Request) -> dict[str, Any]:
    """Each rendition's short link for the visitor, on the public address (or this console's)."""
    settings: Settings = request.app.state.hub.settings
    for row in state.get("sessions") or ():
        if row.get("rendition"):
            row["rendition"]["link"] = share_url(settings, row["session"], str(request.base_url))
    return state


async def state(request: Request) -> Response:
    return Response(
        dumps(_with_links(request.app.state.hub.state(), request)),
        media_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


def _event_stream(snapshot, interval: float, retry_ms: int) -> Response:
    """Server-sent events, each the whole snapshot (so a client that reconnects is caught up by the
    first one), every `interval` s until the client goes: Starlette then cancels the stream."""

    async def stream():
        yield f"retry: {retry_ms}\n\n"
        while True:
            yield f"data: {dumps(await snapshot())}\n\n"
            await asyncio.sleep(interval)

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )


async def events(request: Request) -> Response:
    hub: Hub = request.app.state.hub

    async def snapshot():
        return _with_links(hub.state(), request)

    return _event_stream(snapshot, request.app.state.event_interval_s, 2000)


def preview(request: Request) -> Response:
    # A plain function: Starlette runs it in its thread pool, so decoding and drawing never block the loop.
    camera = _id(request.path_params["camera"], "camera")
    try:
        shot = request.app.state.hub.preview_of(camera)
    except PreviewError as exc:
        raise ApiError(502, str(exc)) from None
    if shot is None:
        raise ApiError(404, f"no frames from camera {camera} yet")
    headers = {
        "ETag": shot.etag,
        "Cache-Control": "no-cache",
        "X-Frame-Session": shot.session,
        "X-Frame-Seq": str(shot.seq),
        "X-Frame-Posed": "1" if shot.posed else "0",
    }
    if request.headers.get("if-none-match") == shot.etag:
        return Response(status_code=304, headers=headers)
    return Response(shot.jpeg, media_type="image/jpeg", headers=headers)


async def start_session(request: Request) -> Response:
    from producers.session import new_session_id

    body = await _body(request, START_FIELDS)
    session = _id(body["session"], "session") if body.get("session") else new_session_id()
    hub: Hub = request.app.state.hub
    settings = hub.settings
    configured = list(settings.console_camera_sources())
    cameras = _cameras(body.get("cameras")) or configured
    reference = _id(body["reference"], "reference") if body.get("reference") else None
    consent = body.get("consent", False)
    if not isinstance(consent, bool):
        raise ApiError(400, f"consent must be true or false, got {consent!r}")
    take = _take(body, settings)
    reference = await _reference(settings, reference)
    if not cameras:  # a session that cannot record is not shown "recording" with 0 frames
        raise ApiError(
            400,
            "no camera: a session needs at least one (configure the console's cameras, BOOTH_CONSOLE_CAMERAS, "
            "or name the cameras that run elsewhere)",
        )
    unknown = [c for c in cameras if configured and c not in configured]
    if unknown:
        raise ApiError(400, f"camera(s) {', '.join(unknown)} are not among the console's cameras: {configured}")
    event = await _publish(
        hub,
        session,
        "start",
        cameras=cameras,
        reference=reference,
        note=_note(body),
        consent=consent,
    )
    await run_in_threadpool(hub.takes.start, session, reference, take, started_at=event.wall_time)
    return JSONResponse(
        {"session": session, "event": event.model_dump(mode="json"), "take": hub.takes.status(session)},
        status_code=201,
    )


def _take(body: dict, settings: Settings):
    from console.guide import Take

    def number(name: str, default: float, low: float, high: float) -> float:
        value = body.get(name, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low < value <= high:
            raise ApiError(400, f"{name} must be a number in ({low:g}, {high:g}], got {value!r}")
        return float(value)

    return Take(
        number("until_coverage", settings.guide_until_coverage, 0.0, 1.0),
        number("max_seconds", settings.guide_max_seconds, 0.0, 600.0),
    )


async def end_session(request: Request) -> Response:
    session = _id(request.path_params["session"], "session")
    body = await _body(request, END_FIELDS)
    abort = body.get("abort", False)
    if not isinstance(abort, bool):
        raise ApiError(400, f"abort must be true or false, got {abort!r}")
    kind = "abort" if abort else "end"
    event = await _publish(request.app.state.hub, session, kind, note=_note(body))
    request.app.state.hub.takes.end(session)
    return JSONResponse({"session": session, "event": event.model_dump(mode="json")})


# --- the booth display and the picker ---------------------------------------------------------------
async def display_page(request: Request) -> Response:
    token = request.scope.get("booth.display_token")
    if token:  # the link's token becomes the screen's cookie, and leaves the address bar
        response: Response = RedirectResponse("/display", status_code=303)
        settings: Settings = request.app.state.hub.settings
        response.set_cookie(
            DISPLAY_COOKIE,
            token,
            max_age=settings.display_token_ttl_s,
            path="/",
            httponly=True,
            samesite="strict",
            secure=settings.console_secure_cookie,
        )
        return response
    return FileResponse(STATIC / "display.html", headers={"Cache-Control": "no-cache"})


def display_state(request: Request) -> Response:
    return Response(
        dumps(request.app.state.hub.display_state()),
        media_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


async def display_events(request: Request) -> Response:
    hub: Hub = request.app.state.hub

    async def snapshot():
        return await run_in_threadpool(hub.display_state)

    return _event_stream(snapshot, request.app.state.display_interval_s, 1000)


def references(request: Request) -> Response:
    from trainer.references import list_references

    try:
        rows = list_references(request.app.state.hub.settings)
    except TransientStoreError as exc:
        raise ApiError(503, f"cannot list the reference dances: {exc}") from None
    default = request.app.state.hub.settings.default_reference
    for row in rows:
        row["default"] = row["name"] == default
        row["dance"] = f"/api/references/{row['name']}/dance.json"
    return JSONResponse({"references": rows})


def dance(request: Request) -> Response:
    name = _id(request.path_params["name"], "reference")
    try:
        data = request.app.state.hub.takes.dance(name)
    except FileNotFoundError as exc:
        raise ApiError(404, str(exc)) from None
    except (KeyError, ValueError) as exc:
        raise ApiError(502, f"reference dance {name} cannot be read: {exc}") from None
    return Response(dumps(data), media_type="application/json", headers={"Cache-Control": "no-cache"})


async def issue_display_token(request: Request) -> Response:
    await _body(request, set())
    token, token_id, expires = request.app.state.display_tokens.issue()
    base = f"{request.url.scheme}://{request.headers.get('host', '')}"
    return JSONResponse(
        {"token": token, "id": token_id, "expires_at": expires, "url": f"{base}/display?token={token}"},
        status_code=201,
        headers={"Cache-Control": "no-store"},
    )


async def revoke_display_tokens(request: Request) -> Response:
    body = await _body(request, {"id"})
    token_id = body.get("id")
    if token_id is not None and not isinstance(token_id, str):
        raise ApiError(400, "id must be a display token's id (a string)")
    revoked = request.app.state.display_tokens.revoke(token_id)
    if token_id is not None and not revoked:
        raise ApiError(404, f"no display token with id {token_id!r}")
    return JSONResponse({"revoked": revoked, "tokens": request.app.state.display_tokens.listed()})


async def display_between(request: Request) -> Response:
    body = await _body(request, {"show"})
    show = body.get("show")
    if show not in BETWEEN:
        raise ApiError(400, f"show must be one of {', '.join(BETWEEN)}, got {show!r}")
    request.app.state.hub.between = show
    return JSONResponse({"show": show})


# --- login ---------------------------------------------------------------------------------------
async def health(request: Request) -> Response:
    return JSONResponse({"ok": True}, headers={"Cache-Control": "no-store"})


async def login_page(request: Request) -> Response:
    if request.app.state.guard_logins.valid(request.cookies.get(COOKIE)):
        return RedirectResponse("/", status_code=303)
    return FileResponse(STATIC / "login.html", headers={"Cache-Control": "no-cache"})


async def login(request: Request) -> Response:
    # The Guard has checked this client's throttle and the body's size; every failure counts,
    # an unreadable body included (else a flood of broken bodies would be free guesses).
    state = request.app.state
    client = request.client.host if request.client else "unknown"
    try:
        body = await _body(request, {"password"})
    except ApiError:
        state.login_throttle.failed(client)
        raise
    if not password_matches(body.get("password"), state.console_password):
        state.login_throttle.failed(client)
        raise ApiError(401, "wrong password")
    state.login_throttle.succeeded(client)
    settings: Settings = state.hub.settings
    response = JSONResponse({"ok": True, "expires_in_s": settings.console_login_ttl_s})
    response.set_cookie(
        COOKIE,
        state.guard_logins.issue(),
        max_age=settings.console_login_ttl_s,
        path="/",
        httponly=True,
        samesite="strict",
        secure=settings.console_secure_cookie,
    )
    return response


async def logout(request: Request) -> Response:
    request.app.state.guard_logins.revoke(request.cookies.get(COOKIE))
    response = JSONResponse({"ok": True})
    settings: Settings = request.app.state.hub.settings
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=settings.console_secure_cookie)
    return response


def _rendition_url(request: Request) -> str:
    """The short link of a session with a rendition: what the visitor scans."""
    session = _id(request.path_params["session"], "session")
    for row in request.app.state.hub.state()["sessions"]:
        if row["session"] == session and row["rendition"]:
            return share_url(request.app.state.hub.settings, session, str(request.base_url))
    raise ApiError(404, f"session {session} has no rendition yet")


def shared_video(request: Request) -> Response:
    """A visitor's short link: a redirect to a fresh presigned link to the session's newest video,
    valid until the video's deletion (retention_videos_days after it was written). A wrong mac and a
    video that is gone look alike (404), so a link reveals nothing about other sessions."""
    settings: Settings = request.app.state.hub.settings
    session = session_of(settings, request.path_params["token"])
    gone = ApiError(404, "this video is not available (the link is wrong, or the video was deleted)")
    if session is None:
        raise gone
    key = layout.result_key(session, "rendition.mp4")
    store = request.app.state.store
    try:
        found = [o for o in store.list_info(key) if o.key == key]
    except TransientStoreError as exc:
        raise ApiError(503, f"the video store is not answering: {exc}") from None
    if not found:
        raise gone
    now = time.time()
    if found[0].written_at + settings.retention_videos_days * DAY_S <= now:
        raise gone  # due for deletion: the retention job has not come round yet
    url = store.presign(key, video_link_expiry_s(settings, found[0].written_at, now))
    return RedirectResponse(url, status_code=302, headers={"Cache-Control": "no-store"})


def qr_code_svg(request: Request) -> Response:
    return Response(qr_svg(_rendition_url(request)), media_type="image/svg+xml")


def qr_code_png(request: Request) -> Response:
    return Response(qr_png(_rendition_url(request)), media_type="image/png")


async def _api_error(request: Request, exc: ApiError) -> Response:
    return JSONResponse({"error": exc.message}, status_code=exc.status, headers=exc.headers)


async def _http_error(request: Request, exc: HTTPException) -> Response:
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


# --- the app ---------------------------------------------------------------------------------------
# How `booth console` runs uvicorn. Its proxy headers stay off: uvicorn would otherwise take the
# client's address from X-Forwarded-For sent by 127.0.0.1 (every local proxy and every local
# process); the Guard believes them only from settings trusted_proxies.
SERVER_OPTIONS: dict[str, Any] = {
    "proxy_headers": False,
    "forwarded_allow_ips": "",
    "log_level": "warning",
    "timeout_graceful_shutdown": 2,  # open event streams never end by themselves
}


def create_app(
    settings: Settings,
    *,
    targets: dict[str, str] | None = None,
    preview_feed: PreviewFeed | None = None,
    status_feed: StatusFeed | None = None,
    event_interval_s: float = 1.0,
    display_interval_s: float = 0.1,
    mirror_options: dict | None = None,
) -> Starlette:
    """The console for ``settings``' topics; ``targets`` are the /metrics URLs (default: every component's).

    Raises console.auth.ConsoleConfigError when no usable password is configured."""
    password = check_password(settings.console_password.get_secret_value() if settings.console_password else None)
    hub = Hub(settings, preview_feed or PreviewFeed(settings), status_feed or StatusFeed(settings, targets=targets))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        hub.preview.start()
        hub.status.start()
        try:
            yield
        finally:
            await run_in_threadpool(hub.preview.stop)
            await run_in_threadpool(hub.status.stop)
            await run_in_threadpool(hub.close)
            await run_in_threadpool(app.state.mirrors.stop)

    routes = [
        Route("/healthz", health),
        Route("/login", login_page),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/", index),
        Route("/api/state", state),
        Route("/api/events", events),
        Route("/api/preview/{camera}.jpg", preview),
        Route("/api/sessions", start_session, methods=["POST"]),
        Route("/api/sessions/{session}/end", end_session, methods=["POST"]),
        Route("/api/sessions/{session}/qr.svg", qr_code_svg),
        Route("/api/sessions/{session}/qr.png", qr_code_png),
        Route("/mirror", mirror.page),
        Route("/api/mirror/{camera}.mjpeg", mirror.stream),
        Route("/api/mirror/{camera}/state", mirror.state),
        Route("/v/{token}", shared_video),
        Route("/api/references", references),
        Route("/api/references/{name}/dance.json", dance),
        Route("/api/display-tokens", issue_display_token, methods=["POST"]),
        Route("/api/display-tokens/revoke", revoke_display_tokens, methods=["POST"]),
        Route("/api/display/between", display_between, methods=["POST"]),
        Route("/display", display_page),
        Route("/api/display", display_state),
        Route("/api/display/events", display_events),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    logins = Logins(settings.console_login_ttl_s)
    throttle = LoginThrottle()
    displays = DisplayTokens(settings.display_token_ttl_s)
    guard: dict[str, Any] = {
        "password": password,
        "hosts": settings.console_host_names(),
        "logins": logins,
        "displays": displays,
        "throttle": throttle,
        "trusted_proxies": settings.trusted_proxy_networks(),
        "max_body": settings.console_max_body_bytes,
    }
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(Guard, **guard)],
        exception_handlers={ApiError: _api_error, HTTPException: _http_error},  # type: ignore[dict-item]
    )
    app.state.hub = hub
    app.state.mirrors = mirror.Mirrors(settings, **(mirror_options or {}))
    app.state.store = ObjectStore(settings)
    app.state.console_password = password
    app.state.guard_logins = logins
    app.state.login_throttle = throttle
    app.state.event_interval_s = event_interval_s
    app.state.display_interval_s = display_interval_s
    app.state.display_tokens = displays
    return app
