"""`booth camera` and `booth publish-spool` (registered on the `booth` group by booth/cli.py).

Both also work standalone (settings then come from the environment), which the tests use.
"""

from __future__ import annotations

import logging
import threading

import click

from producers.frame_queue import POLICIES
from tools.terminal import settings_from

_settings = settings_from


def _quiet_kafka_logs() -> None:
    # kafka-python logs every refused connection at ERROR; the producers report broker trouble
    # themselves, in one line. Its own logs stay visible under `booth -vv`.
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        logging.getLogger("kafka").setLevel(logging.CRITICAL)


def _parse_size(_ctx, _param, value: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not WIDTHxHEIGHT, e.g. 640x480") from None
    from producers.camera import check_size

    try:
        check_size((width, height))
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return width, height


def _run_interruptibly(work, on_interrupt) -> None:
    """Run ``work`` in a thread so Ctrl-C reaches the main thread and becomes a clean stop."""
    from producers.workers import Worker

    worker = Worker(work, "cli-work").start()
    while worker.running:
        try:
            worker.wait(0.2)
        except KeyboardInterrupt:
            on_interrupt()


@click.command("camera")
@click.option("--session", required=True, help="Session id (from `booth session start`).")
@click.option(
    "--source",
    "sources",
    multiple=True,
    required=True,
    metavar="[ID=]SOURCE",
    help="Repeatable. A camera index (0) or /dev/videoN, a video file, an image folder, or an "
    "rtsp:// or http(s):// stream; prefix CAMERA_ID= to name it (default cam0, cam1, ...).",
)
@click.option(
    "--size",
    default="640x480",
    show_default=True,
    callback=_parse_size,
    help="Largest frame size sent, WIDTHxHEIGHT: larger frames are shrunk to fit inside, aspect kept.",
)
@click.option(
    "--fps", type=click.FloatRange(min=0, min_open=True), help="Rate cap; the frame rate of image folders (default 30)."
)
@click.option(
    "--speed",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Files, folders: 1 = real time, 2 = twice as fast, 0 = as fast as possible.",
)
@click.option("--quality", type=click.IntRange(1, 100), default=90, show_default=True, help="JPEG quality.")
@click.option(
    "--queue-size",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Frames held between capture and sender.",
)
@click.option(
    "--policy",
    type=click.Choice(POLICIES),
    default="drop-oldest",
    show_default=True,
    help="What a full queue does with a new frame.",
)
@click.option("--max-frames", type=click.IntRange(min=1), help="Stop each camera after this many frames.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), help="Stop after this many seconds.")
@click.option(
    "--record-first",
    is_flag=True,
    help="High-speed mode: record H.264 MP4 to the spool at full rate, publish afterwards.",
)
@click.option(
    "--segment",
    "segment_s",
    type=click.FloatRange(min=0, min_open=True),
    help="With --record-first: cut recordings every this many seconds.",
)
@click.option(
    "--publish/--no-publish",
    default=True,
    show_default=True,
    help="With --record-first: publish recordings from this process as they finish "
    "(--no-publish leaves them to `booth publish-spool`).",
)
@click.option(
    "--connect-timeout",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Seconds to keep retrying an unreachable broker.",
)
@click.option("--metrics/--no-metrics", default=True, show_default=True, help="Serve Prometheus metrics.")
@click.pass_context
def camera(
    ctx,
    session,
    sources,
    size,
    fps,
    speed,
    quality,
    queue_size,
    policy,
    max_frames,
    duration,
    record_first,
    segment_s,
    publish,
    connect_timeout,
    metrics,
):
    """Capture cameras, files or streams and produce JPEG frames for a session."""
    from producers.broker import BrokerUnavailable
    from producers.camera import run_cameras
    from producers.sources import SourceError, parse_sources
    from schemas import InvalidId, validate_id

    settings = _settings(ctx)
    try:
        validate_id(session, "session")
    except InvalidId as exc:
        raise click.BadParameter(str(exc), param_hint="--session") from None
    try:
        named = parse_sources(sources)
    except SourceError as exc:
        raise click.BadParameter(str(exc), param_hint="--source") from None
    _quiet_kafka_logs()
    if metrics:
        from infra.metrics import serve

        serve(settings, "camera")

    stop = threading.Event()
    results: dict = {}

    def on_interrupt():
        if stop.is_set():
            raise KeyboardInterrupt
        click.echo("stopping (Ctrl-C again to quit at once)", err=True)
        stop.set()

    options = dict(
        fps=fps, speed=speed, size=size, quality=quality, max_frames=max_frames, duration_s=duration, stop=stop
    )
    try:
        if record_first:
            _record(settings, session, named, options, segment_s, publish, connect_timeout, results, on_interrupt)
        else:

            def work():
                try:
                    results["summary"] = run_cameras(
                        settings,
                        session,
                        named,
                        queue_size=queue_size,
                        policy=policy,
                        connect_timeout_s=connect_timeout,
                        **options,
                    )
                except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
                    results["error"] = exc

            _run_interruptibly(work, on_interrupt)
        if "error" in results:
            raise results["error"]
    except SourceError as exc:
        raise click.ClickException(str(exc)) from None
    except BrokerUnavailable as exc:
        raise click.ClickException(str(exc)) from None
    except (ValueError, InvalidId) as exc:
        raise click.ClickException(str(exc)) from None
    summaries = [results[k] for k in ("recorded", "summary") if results.get(k) is not None]
    for summary in summaries:
        summary.print()
    if "note" in results:
        click.echo(results["note"])
    if not all(s.ok for s in summaries):
        raise click.ClickException("not every frame was captured and delivered (see the table)")
    return summaries[-1] if summaries else None


def _record(settings, session, named, options, segment_s, publish, connect_timeout, results, on_interrupt):
    from producers.spool import BackgroundPublisher, Spool, record_cameras

    publisher = BackgroundPublisher(settings, session=session, connect_timeout_s=connect_timeout) if publish else None

    def work():
        try:
            results["recorded"] = record_cameras(settings, session, named, segment_s=segment_s, **options)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            results["error"] = exc

    try:
        _run_interruptibly(work, on_interrupt)
    finally:
        if publisher is not None:

            def finish():
                try:
                    results["summary"] = publisher.finish()
                except BaseException as exc:  # noqa: BLE001
                    results.setdefault("error", exc)

            _run_interruptibly(finish, publisher.stop.set)
    if publisher is None and "recorded" in results:
        results["note"] = (
            f"recordings are in {Spool.of(settings).dir('pending')}; publish them with `booth publish-spool`"
        )


@click.command("publish-spool")
@click.option("--session", help="Only this session's recordings (default: all).")
@click.option("--follow", is_flag=True, help="Keep watching the spool for new recordings until Ctrl-C.")
@click.option(
    "--keep/--delete", default=True, show_default=True, help="Move published recordings to spool/done, or delete them."
)
@click.option(
    "--speed",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="0 = as fast as possible, 1 = at the recorded pace.",
)
@click.option(
    "--connect-timeout",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Seconds to keep retrying an unreachable broker.",
)
@click.option("--metrics/--no-metrics", default=True, show_default=True, help="Serve Prometheus metrics.")
@click.pass_context
def publish_spool(ctx, session, follow, keep, speed, connect_timeout, metrics):
    """Publish recordings made with `booth camera --record-first`, with their original timestamps."""
    from producers.broker import BrokerUnavailable
    from producers.spool import BackgroundPublisher
    from producers.spool import publish_spool as publish
    from schemas import InvalidId, validate_id

    settings = _settings(ctx)
    if session is not None:
        try:
            validate_id(session, "session")
        except InvalidId as exc:
            raise click.BadParameter(str(exc), param_hint="--session") from None
    _quiet_kafka_logs()
    if metrics:
        from infra.metrics import serve

        serve(settings, "camera")
    options = dict(session=session, keep=keep, speed=speed, connect_timeout_s=connect_timeout)
    try:
        if follow:
            publisher = BackgroundPublisher(settings, **options)
            _run_interruptibly(publisher.wait, publisher.interrupt)
            summary = publisher.finish()
        else:
            summary = publish(settings, **options)
    except BrokerUnavailable as exc:
        raise click.ClickException(str(exc)) from None
    if not summary.cameras:
        click.echo("nothing to publish")
        return summary
    summary.print()
    if not summary.ok:
        raise click.ClickException("some recordings were not fully published (see the table and the log)")
    return summary


@click.group("background")
def background() -> None:
    """The empty booth per camera: the background the visitor is composited onto."""


@background.command("capture")
@click.option("--camera", required=True, help="Camera id, as the sessions name it.")
@click.option(
    "--source", required=True, help="A camera index or /dev/videoN, a video file, an image folder or a stream."
)
@click.option(
    "--frames", type=click.IntRange(1, 1000), default=30, show_default=True, help="Frames to take the median of."
)
@click.option(
    "--size",
    default="640x480",
    show_default=True,
    callback=_parse_size,
    help="The same bound as `booth camera --size`.",
)
@click.option("--skip", type=click.IntRange(0), default=5, show_default=True, help="Frames dropped first (exposure).")
@click.pass_context
def background_capture(ctx, camera, source, frames, size, skip):
    """Capture the empty booth from one camera; later sessions of that camera use it as their plate."""
    from producers.background import capture_background
    from producers.sources import SourceError
    from schemas import InvalidId

    try:
        about = capture_background(_settings(ctx), camera, source, frames=frames, size=size, skip=skip)
    except InvalidId as exc:
        raise click.BadParameter(str(exc), param_hint="--camera") from None
    except (SourceError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"camera {camera}: background {about['width']}x{about['height']} from {about['frames']} frames stored")


@background.command("list")
@click.pass_context
def background_list(ctx):
    """The stored backgrounds."""
    import time

    from producers.background import list_backgrounds
    from tools.terminal import print_table

    rows = [
        {
            "camera": b["camera"],
            "size": f"{b['width']}x{b['height']}",
            "frames": b["frames"],
            "captured": time.strftime("%Y-%m-%d %H:%M", time.localtime(b["wall_time"])),
            "source": b["source"],
        }
        for b in list_backgrounds(_settings(ctx))
    ]
    print_table(rows, "backgrounds") if rows else click.echo("no backgrounds stored")


@background.command("delete")
@click.argument("camera")
@click.pass_context
def background_delete(ctx, camera):
    """Forget a camera's background: its sessions estimate their own plate again."""
    from producers.background import delete_background
    from schemas import InvalidId

    try:
        existed = delete_background(_settings(ctx), camera)
    except InvalidId as exc:
        raise click.BadParameter(str(exc), param_hint="CAMERA") from None
    click.echo(f"camera {camera}: {'background deleted' if existed else 'had no background'}")
