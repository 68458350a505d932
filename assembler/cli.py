"""`booth assemble`: the dataset assembler, registered on the main `booth` command group.

Heavy imports happen inside the command, so `booth --help` stays fast.
"""

from __future__ import annotations

import signal
import threading

import click

from tools.choices import CONDITIONINGS, REPRESENTATIONS
from tools.terminal import print_table, settings_from

_settings = settings_from


_table = print_table


@click.command("assemble")
@click.option("--group", default=None, help="Consumer group id (default: <app_id>-assembler).")
@click.option(
    "--shard-size",
    default=32,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="Samples per camera per tar shard.",
)
@click.option(
    "--resolution",
    default=256,
    show_default=True,
    type=click.IntRange(16, 4096),
    help="Pose map size in pixels (square).",
)
@click.option(
    "--min-samples",
    default=20,
    show_default=True,
    type=click.IntRange(0),
    help="Fewer usable frames than this: the dataset is failed.",
)
@click.option(
    "--end-grace",
    default=3.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Seconds without messages after a session's end before it is closed, for cameras that did not "
    "announce their last frame (a camera run announces it: the session then closes once those poses are in).",
)
@click.option(
    "--end-timeout",
    default=300.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Seconds without messages after a session's end before the assembler gives up waiting for the poses of "
    "the cameras' announced last frames; what is missing is counted in the manifest by cause.",
)
@click.option(
    "--inactivity-timeout",
    default=300.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Seconds without messages after which a session that never ended is closed.",
)
@click.option(
    "--unknown-session-grace",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Seconds a message waits for its session's start before it is dead-lettered.",
)
@click.option(
    "--idle-exit",
    type=click.FloatRange(0),
    default=None,
    help="Exit after this many idle seconds with no open session (default: run until stopped).",
)
@click.option(
    "--representation",
    type=click.Choice(REPRESENTATIONS),
    default="pose",
    show_default=True,
    help="Generator input drawn per sample: stick figure, body-part map (segments every frame), "
    "or part map with the face keypoints. The trainer follows the manifest.",
)
@click.option(
    "--conditioning",
    type=click.Choice(CONDITIONINGS),
    default=None,
    help="Recorded in the manifest: what the session's generator reads besides the pose map (warp: the visitor "
    "warped part by part to the pose). The trainer follows it unless given --conditioning itself.",
)
@click.option(
    "--member",
    default="0/1",
    show_default=True,
    help="This assembler's share as I/N: N assemblers each take the sessions that hash to them.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
@click.pass_context
def assemble(
    ctx,
    group,
    shard_size,
    resolution,
    min_samples,
    end_grace,
    end_timeout,
    inactivity_timeout,
    unknown_session_grace,
    idle_exit,
    representation,
    conditioning,
    member,
    quiet,
):
    """Assemble sessions into training datasets (WebDataset shards in object storage)."""
    from assembler.consumer import Assembler

    try:
        index, members = (int(v) for v in member.split("/"))
    except ValueError:
        raise click.BadParameter(f"{member!r} is not I/N (e.g. 0/2)", param_hint="--member") from None
    try:
        assembler = Assembler(
            _settings(ctx),
            group_id=group or _settings(ctx).group("assembler"),
            shard_size=shard_size,
            resolution=resolution,
            min_samples=min_samples,
            end_grace_s=end_grace,
            end_timeout_s=end_timeout,
            inactivity_timeout_s=inactivity_timeout,
            unknown_session_grace_s=unknown_session_grace,
            representation=representation,
            conditioning=conditioning,
            member=index,
            members=members,
            quiet=quiet,
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    if assembler.segmenter is not None:
        from vision.pose.base import BackendUnavailable

        try:
            assembler.segmenter.load()  # a missing model is an error now, not at the first session
        except BackendUnavailable as exc:
            raise click.ClickException(f"--representation {representation}: {exc}") from exc
    stop = threading.Event()
    # ^C or SIGTERM: stop at the next poll; open shards stay uncommitted and are read again later.
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        summary = assembler.run(stop_event=stop, idle_exit=idle_exit)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    _table([{"session": s, "status": st} for s, st in summary.closed.items()], "sessions closed")
    click.echo(
        f"{summary.samples} samples in {summary.shards} shards; rejected: "
        f"{dict(summary.rejected) or 'none'}; dead letters: {summary.dead_letters}"
    )
