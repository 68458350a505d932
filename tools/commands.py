"""`booth record`, `booth replay` and `booth status` (registered on the `booth` group in booth/cli.py).

Heavy imports happen inside each command so `booth --help` stays fast.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from tools.terminal import settings_from

_settings = settings_from


def _print_table(title: str, rows: list[tuple[str, object]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for name, value in rows:
        table.add_row(name, str(value))
    Console().print(table)


@click.command("record")
@click.argument("topics", nargs=-1)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="MCAP file to write (default: booth-<time>.mcap).",
)
@click.option("--session", help="Keep only this session's messages (by key or the message's session).")
@click.option(
    "--idle",
    "idle_s",
    type=click.FloatRange(min=0, min_open=True),
    help="Stop after this many seconds without a message (default: run until ^C).",
)
@click.option("--max", "max_messages", type=click.IntRange(min=1), help="Stop after this many messages.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click.option("--force", is_flag=True, help="Overwrite the output file if it exists.")
@click.pass_context
def record(ctx, topics, output, session, idle_s, max_messages, quiet, force):
    """Record TOPICS (default: all the project's) from their start into an MCAP file."""
    from tools.replay import RecordingError
    from tools.replay import record as do_record

    settings = _settings(ctx)
    output = output or Path(time.strftime("booth-%Y%m%d-%H%M%S.mcap"))
    if output.exists() and not force:
        raise click.ClickException(f"{output} exists; choose another --output or pass --force")
    try:
        summary = do_record(
            settings,
            output,
            topics or None,
            session=session,
            idle_s=idle_s,
            max_messages=max_messages,
            progress=not quiet,
        )
    except (RecordingError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    rows: list[tuple[str, object]] = [
        ("file", summary.path),
        ("stopped by", summary.stopped_by),
        ("seconds", f"{summary.elapsed_s:.1f}"),
    ]
    rows += [(f"  {topic}", n) for topic, n in sorted(summary.counts.items())]
    rows += [
        ("messages", summary.total),
        ("other sessions skipped", summary.skipped),
        ("sessions (whose data it holds)", _whose(summary.consent) or ", ".join(summary.sessions[:10]) or "-"),
    ]
    _print_table("recorded", rows)
    unconsented = sorted(s for s, c in summary.consent.items() if c != "consent")
    if unconsented:
        click.echo(
            f"note: {output} holds visitors' data without recorded consent ({', '.join(unconsented[:10])}); "
            "delete it when you are done debugging",
            err=True,
        )


def _whose(consent: dict[str, str] | None, limit: int = 10) -> str:
    """'s1 (consent), s2 (no consent)', at most `limit` sessions."""
    items = sorted((consent or {}).items())
    text = ", ".join(f"{s} ({c})" for s, c in items[:limit])
    return text + (f" and {len(items) - limit} more" if len(items) > limit else "")


@click.command("replay")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--speed",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Pace factor: 2 = twice as fast as recorded, 0 = as fast as possible.",
)
@click.option("--session", help="Replay only this session's messages.")
@click.option("--as-session", "as_session", help="Rename the recording's session to this id (keys and messages).")
@click.option(
    "--topic-map", "topic_map", multiple=True, metavar="OLD=NEW", help="Send a recorded topic elsewhere (repeatable)."
)
@click.option("--keep-timestamps", is_flag=True, help="Give records their recorded timestamps instead of now.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click.option("--metrics/--no-metrics", default=True, help="Serve /metrics on the replay port while running.")
@click.pass_context
def replay(ctx, file, speed, session, as_session, topic_map, keep_timestamps, quiet, metrics):
    """Replay a recording FILE into the topics (to debug a bad session, say)."""
    from tools.replay import RecordingError, ReplayError, parse_topic_map, read_info
    from tools.replay import replay as do_replay

    settings = _settings(ctx)
    if metrics:
        from infra.metrics import serve

        serve(settings, "replay")
    try:
        summary = do_replay(
            settings,
            file,
            speed=speed,
            session=session,
            as_session=as_session,
            topic_map=parse_topic_map(topic_map),
            keep_timestamps=keep_timestamps,
            progress=not quiet,
        )
    except (RecordingError, ReplayError, ValueError) as exc:  # InvalidId included: it names the option
        raise click.ClickException(str(exc)) from exc
    rows: list[tuple[str, object]] = [(f"  {topic}", n) for topic, n in sorted(summary.sent.items())]
    rows += [
        ("messages", summary.total),
        ("same partition", summary.same_partition),
        ("partition chosen by key", summary.by_key),
        ("other sessions skipped", summary.skipped),
    ]
    if as_session:
        rows += [
            (f"moved to {as_session}", summary.rewritten),
            ("not envelopes, sent as recorded", summary.kept_as_recorded),
        ]
    try:
        whose = read_info(file).sessions
    except RecordingError:
        whose = None
    rows += [
        ("sessions in the file", _whose(whose) if whose is not None else "not listed (an older recording)"),
        ("recorded span", f"{summary.recorded_span_s:.2f}s"),
        ("replayed in", f"{summary.elapsed_s:.2f}s" + (f" (speed {speed:g})" if speed else " (as fast as possible)")),
    ]
    _print_table("replayed", rows)


@click.command("status")
@click.option("--once", is_flag=True, help="Print one snapshot and exit.")
@click.option("--json", "as_json", is_flag=True, help="With --once: the snapshot as JSON.")
@click.option(
    "--interval", type=click.FloatRange(min=0.2), default=2.0, show_default=True, help="Seconds between redraws."
)
@click.option(
    "--idle",
    "idle_s",
    type=click.FloatRange(min=0.05),
    default=1.0,
    show_default=True,
    help="Control topics count as read after this many quiet seconds.",
)
@click.pass_context
def status(ctx, once, as_json, interval, idle_s):
    """Live view of sessions, stage throughput and training progress."""
    from tools.status_view import live, render, snapshot

    settings = _settings(ctx)
    if as_json and not once:
        raise click.UsageError("--json needs --once")
    if once:
        snap = snapshot(settings, idle_s=idle_s)
        if as_json:
            click.echo(json.dumps(snap, indent=2, default=str))
        else:
            from rich.console import Console

            Console().print(render(snap))
        return
    live(settings, interval=interval, idle_s=idle_s)
