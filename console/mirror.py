"""The live mirror's page and streams on the console (trainer.mirror renders the frames).

    GET /mirror                              the mirror page (static/mirror.html, mirror.js): the
                                             dancer big, its rate, delay and drops beside it
    GET /api/mirror/<camera>.mjpeg           the frames as multipart/x-mixed-replace JPEGs
    GET /api/mirror/<camera>/state           rate, delay p50/p95, drops, mode, whether there is a generator

Both take ?reference=NAME (default: the default_reference setting). A camera's mirror starts on
its first request and runs until the console stops; asking for another reference replaces it.
Behind the console's login like everything else (console.auth). A page reopens its stream when it
breaks, when the console answers again after a restart, and when the camera's mirror was
restarted (its state names the feed that serves it).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse

from infra.settings import Settings
from schemas import InvalidId, validate_id

BOUNDARY = "mirrorframe"
STATIC = Path(__file__).resolve().parent / "static"


def _renderer() -> Any:
    """trainer.mirror, imported when a mirror starts: it brings torch and the trainer, which
    the console needs for nothing else."""
    from trainer import mirror as renderer

    return renderer


class MirrorError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class Mirrors:
    """One running mirror per camera, started on demand."""

    def __init__(self, settings: Settings, factory: Callable | None = None, **options):
        self.settings, self.factory, self.options = settings, factory, options
        self._feeds: dict[str, Any] = {}
        self._lock = threading.Lock()

    def get(self, camera: str, reference: str | None) -> Any:
        """The camera's running trainer.mirror.MirrorFeed of `reference`'s dancer."""
        name = reference or self.settings.default_reference
        if not name:
            raise MirrorError(400, "name the reference dancer: ?reference=NAME (or set default_reference)")
        try:
            validate_id(camera, "camera")
            validate_id(name, "reference name")
        except InvalidId as exc:
            raise MirrorError(400, str(exc)) from None
        with self._lock:
            feed = self._feeds.get(camera)
            if feed is not None and feed.mirror.ref.name == name:
                return feed
            try:
                mirror = (self.factory or _renderer().load_mirror)(self.settings, camera, name, **self.options)
            except FileNotFoundError as exc:
                raise MirrorError(404, str(exc)) from None
            if feed is not None:
                feed.stop()
            self._feeds[camera] = feed = _renderer().MirrorFeed(self.settings, mirror).start()
            return feed

    def stop(self) -> None:
        with self._lock:
            for feed in self._feeds.values():
                feed.stop()
            self._feeds.clear()


def _feed(request: Request) -> Any:
    mirrors: Mirrors = request.app.state.mirrors
    return mirrors.get(request.path_params["camera"], request.query_params.get("reference"))


async def page(request: Request) -> Response:
    return FileResponse(STATIC / "mirror.html", headers={"Cache-Control": "no-cache"})


async def state(request: Request) -> Response:
    try:
        feed = await run_in_threadpool(_feed, request)
    except MirrorError as exc:
        return JSONResponse({"error": exc.message}, exc.status)
    body = {**feed.mirror.state(), "feed": feed.id, "reader_error": feed.last_error}
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


async def stream(request: Request) -> Response:
    try:
        feed = await run_in_threadpool(_feed, request)
    except MirrorError as exc:
        return JSONResponse({"error": exc.message}, exc.status)
    mirror = feed.mirror

    async def parts():
        shown = 0
        first = mirror.latest()  # what is on the screen now (the held or idle frame), at once
        # Ends with its feed (a mirror restarted or replaced): the page sees the new feed's id and reopens.
        while not feed.stopped and not await request.is_disconnected():
            frame = first or await run_in_threadpool(mirror.wait, shown, 1.0)
            first = None
            if frame is None or frame.number <= shown:
                await asyncio.sleep(0)
                continue
            shown = frame.number
            head = (
                f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(frame.jpeg)}\r\n"
                f"X-Mirror-Frame: {frame.number}\r\nX-Mirror-Mode: {frame.mode}\r\n\r\n"
            )
            yield head.encode() + frame.jpeg + b"\r\n"

    return StreamingResponse(
        parts(),
        media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
