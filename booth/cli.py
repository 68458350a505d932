"""`booth`: one command line for every component. Heavy imports happen inside each command."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import click

from infra.settings import Settings
from tools.choices import CONDITIONINGS
from tools.terminal import print_table, settings_from

_settings = settings_from


_table = print_table


class _Booth(click.Group):
    def invoke(self, ctx: click.Context):
        from infra.settings import MissingSecretError

        try:
            return super().invoke(ctx)
        except MissingSecretError as exc:  # a setting to make, not a failure to debug
            raise click.ClickException(str(exc)) from exc


@click.group(cls=_Booth)
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug), for every command.")
@click.version_option(package_name="motion-booth", prog_name="booth")
@click.pass_context
def main(ctx: click.Context, verbose: int) -> None:
    """Motion Booth: cameras -> pose -> dataset -> pix2pix fine-tuning -> rendition."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        ctx.obj = {"settings": Settings(), "log_level": level}
    except Exception as exc:
        raise click.ClickException(f"configuration error: {exc}") from exc


# --- stack -------------------------------------------------------------------------------------
@main.group()
def stack() -> None:
    """The embedded broker, S3 server and Prometheus."""


@stack.command("up")
@click.option("--prometheus/--no-prometheus", default=None, help="Default: start it if installed.")
@click.option(
    "--storage",
    type=click.Choice(["memory", "s3"]),
    default="memory",
    help="Broker storage: in RAM (fast, lost on stop) or in the embedded S3 server (persists, slower).",
)
@click.pass_context
def stack_up(ctx, prometheus, storage):
    """Start the embedded stack on 127.0.0.1 (idempotent)."""
    from infra.stack import Stack, StackError

    try:
        _table(Stack(_settings(ctx), storage=storage).up(prometheus=prometheus), "stack")
    except StackError as exc:
        raise click.ClickException(str(exc)) from exc


@stack.command("down")
@click.option("--grace", default=5.0, show_default=True, help="Seconds between SIGTERM and SIGKILL.")
@click.pass_context
def stack_down(ctx, grace):
    """Stop what `stack up` started (and nothing else)."""
    from infra.stack import Stack

    stopped = Stack(_settings(ctx)).down(grace=grace)
    click.echo("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))


@stack.command("status")
@click.option("--json", "as_json", is_flag=True, help="As JSON, for scripts.")
@click.pass_context
def stack_status(ctx, as_json):
    """What runs where."""
    from infra.stack import Stack

    rows = Stack(_settings(ctx)).status()
    click.echo(json.dumps(rows, indent=2)) if as_json else _table(rows, "stack")


@stack.command("reset")
@click.pass_context
def stack_reset(ctx):
    """Delete and recreate the topics: the in-memory broker keeps every message in RAM until then."""
    from infra.stack import Stack

    _table([{"topic": k, "partitions": v} for k, v in Stack(_settings(ctx)).reset_topics().items()], "topics")


@main.command("setup")
@click.pass_context
def setup(ctx):
    """Create the topics (partitions, replication factor, min.insync.replicas from the settings), check
    the bucket (made when missing) and set its lifecycle rules, on the configured broker and store: a
    deployment's one-shot set-up (infra/compose.yaml). Running it again changes nothing that exists."""
    from infra.kafka import ensure_topics
    from infra.objectstore import ObjectStore
    from infra.retention import LifecycleError, apply_lifecycle

    settings = _settings(ctx)
    ensure_topics(settings)
    ObjectStore(settings).ensure_bucket()
    try:
        apply_lifecycle(settings)
    except LifecycleError as exc:  # a store without lifecycle rules: `booth retention apply` still deletes
        click.echo(f"warning: {exc}", err=True)
    rows = [
        {
            "topic": name,
            "partitions": spec.partitions,
            "replicas": spec.replication_factor,
            "min.insync.replicas": spec.min_insync_replicas,
        }
        for name, spec in settings.topic_specs().items()
    ]
    _table(rows, f"topics on {settings.kafka_bootstrap}; bucket {settings.s3_bucket} with its lifecycle rules")


# --- session -----------------------------------------------------------------------------------
@main.group()
def session() -> None:
    """Start and end a visitor's session."""


@session.command("start")
@click.option("--session", "session_id", help="Session id (default: a new one).")
@click.option("--camera", "cameras", multiple=True, help="Camera ids taking part.")
@click.option("--reference", help="The reference dance to render.")
@click.option(
    "--consent",
    is_flag=True,
    help="The visitor agreed that their recording is kept (per the retention policy) after their video is "
    "made. Without it only the video is kept.",
)
@click.option(
    "--until-coverage",
    type=click.FloatRange(0, 1, min_open=True),
    help="Guided capture: stay, show the coverage of the reference dance each second, and end the session "
    "when this share of the dance is covered (docs/guided-capture.md).",
)
@click.option(
    "--max-seconds",
    type=click.FloatRange(0, min_open=True),
    help="Guided capture: end the session after this many seconds at the latest.",
)
@click.pass_context
def session_start(ctx, session_id, cameras, reference, consent, until_coverage, max_seconds):
    """Start a session (prints its id): the cameras taking part, the reference dance, the visitor's consent."""
    from producers.session import NoReference, new_session_id, publish, session_reference
    from schemas import InvalidId

    settings = _settings(ctx)
    try:
        reference = session_reference(settings, reference)
    except (NoReference, InvalidId) as exc:
        raise click.BadParameter(str(exc), param_hint="--reference") from exc
    guided = until_coverage is not None or max_seconds is not None
    if guided:  # the dance is loaded before the session starts: a dance that cannot load starts nothing
        from console.guide import Guide, Take, load_dance

        try:
            take = Take(until_coverage, max_seconds)
            dance = load_dance(settings, reference)
        except (FileNotFoundError, KeyError, ValueError) as exc:
            raise click.ClickException(f"reference dance {reference!r} cannot be followed: {exc}") from exc
    try:
        event = publish(settings, session_id or new_session_id(), "start", cameras, reference, consent=consent)
    except InvalidId as exc:
        raise click.BadParameter(str(exc), param_hint="--session") from exc
    click.echo(event.session)
    if not guided:
        return
    guide = Guide(settings, event.session, reference, take, dance=dance, started_at=event.wall_time)
    _follow(guide)


def _follow(guide) -> None:
    """Run a guide in this process, a line a second; ^C ends the session."""
    import threading

    stop = threading.Event()
    result: dict = {}

    def run():
        result["final"] = guide.run(stop)

    worker = threading.Thread(target=run, name="guide", daemon=True)
    worker.start()
    shown = None
    try:
        while worker.is_alive():
            worker.join(1.0)
            last = guide.last
            if last is not None and last is not shown:
                shown = last
                prompts = "; ".join(last.prompts)
                click.echo(
                    f"{last.elapsed_s:5.0f}s  coverage {last.coverage:.0%}  facings {','.join(last.facings) or '-'}"
                    + (f"  ({prompts})" if prompts else ""),
                    err=True,
                )
    except KeyboardInterrupt:
        from producers.session import publish

        publish(guide.settings, guide.session, "end", note="guided capture: ended at the terminal")
        stop.set()
        worker.join(10)
    final = result.get("final")
    if final is None:
        raise click.ClickException("the guide stopped without a result (see the log)")
    click.echo(f"ended ({final.reason}) after {final.elapsed_s:.0f}s: coverage {final.coverage:.0%}", err=True)


@session.command("end")
@click.argument("session_id")
@click.option("--abort", is_flag=True, help="Abort: no dataset, no training.")
@click.pass_context
def session_end(ctx, session_id, abort):
    """End a session: its dataset is closed once its cameras' last poses are in, then trained."""
    from producers.session import publish
    from schemas import InvalidId

    try:
        publish(_settings(ctx), session_id, "abort" if abort else "end")
    except InvalidId as exc:
        raise click.BadParameter(str(exc), param_hint="SESSION_ID") from exc
    click.echo(f"{session_id}: {'aborted' if abort else 'ended'}")


@session.command("purge")
@click.argument("session_id")
@click.option(
    "--settle",
    type=click.FloatRange(min=0),
    help="Seconds to wait before a second sweep of the session's objects (default: twice purge_check_s + 1).",
)
@click.option("--json", "as_json", is_flag=True, help="The report as JSON, every key listed.")
@click.pass_context
def session_purge(ctx, session_id, settle, as_json):
    """Delete everything of one visitor: objects, console rows, keyed state; stops its training."""
    from schemas import InvalidId
    from tools.purge import purge

    try:
        report = purge(_settings(ctx), session_id, settle_s=settle)
    except InvalidId as exc:
        raise click.BadParameter(str(exc), param_hint="SESSION_ID") from exc
    if as_json:
        data = {
            "session": report.session,
            "objects": report.objects + report.late_objects,
            "by_class": report.by_class(),
            "tombstones": [
                {"topic": k.topic, "partition": k.partition, "key": k.key.decode("utf-8", "replace")}
                for k in report.tombstones
            ],
            "recordings": [str(p) for p in report.recordings],
            "marker": report.marker,
            "event_topic": report.event_topic,
            "broker": [
                {"topic": c.topic, "holds": c.holds, "policy": c.policy, "gone_by": c.until} for c in report.broker
            ],
        }
        click.echo(json.dumps(data, indent=2))
        return
    rows = [{"what": f"objects: {kind}", "deleted": n} for kind, n in sorted(report.by_class().items())]
    rows.append({"what": "objects written during the purge", "deleted": len(report.late_objects)})
    rows.append(
        {
            "what": f"keyed state ({', '.join(report.changelogs) or 'no changelog yet'})",
            "deleted": f"{len(report.tombstones)} tombstones",
        }
    )
    rows.append({"what": "recordings in this host's spool (--record-first)", "deleted": len(report.recordings)})
    rows.append({"what": f"console rows (purge event on {report.event_topic})", "deleted": "yes"})
    rows.append({"what": f"training (purge marker {report.marker})", "deleted": "stops at its next check"})
    _table(rows, f"purged {report.session}: {len(report.objects) + len(report.late_objects)} objects")
    _table(
        [
            {"topic": c.topic, "holds": c.holds, "policy": c.policy, "gone by": _when(c.until) if c.until else "never"}
            for c in report.broker
        ],
        "left on the broker (docs/guarantees.md)",
    )


def _when(epoch_s: float) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(epoch_s, datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


# --- retention ---------------------------------------------------------------------------------
@main.group()
def retention() -> None:
    """How long visitors' data is kept (retention_*_days), and deleting what is due."""


@retention.command("show")
@click.pass_context
def retention_show(ctx):
    """The policy: days kept per kind of object, and the link expiry."""
    s = _settings(ctx)
    what = {
        "frames": "shards, shard index, dataset preview (sessions/<id>/shards, index, preview.jpg)",
        "checkpoints": "training state (sessions/<id>/checkpoints)",
        "videos": "rendition, side-by-side, samples, loss, metrics (sessions/<id>/results)",
        "records": "manifest, dataset_ready, consent, purge markers (no pictures)",
    }
    _table([{"class": k, "days": v, "what": what[k]} for k, v in s.retention_days().items()], "retention")
    click.echo(f"links to a video expire after {s.link_expiry_s} s, and never after the video is deleted")


@retention.command("apply")
@click.option("--dry-run", is_flag=True, help="Only list what is due.")
@click.option("--list", "list_keys", is_flag=True, help="List every key deleted.")
@click.pass_context
def retention_apply(ctx, dry_run, list_keys):
    """Delete every object past its retention, unconsented sessions' frames once their video is
    made, and tombstone stream state idle for as long as frames are kept."""
    from infra.retention import apply_retention

    report = apply_retention(_settings(ctx), dry_run=dry_run)
    rows = [{"what": f"objects: {k}", "due": len(v)} for k, v in sorted(report.deleted.items())]
    rows.append({"what": "sessions without consent: frames discarded", "due": sum(map(len, report.discarded.values()))})
    rows.append({"what": "idle stream state (tombstones)", "due": len(report.tombstones)})
    rows.append({"what": "this host's published spool recordings", "due": len(report.recordings)})
    rows.append({"what": "objects kept", "due": report.kept})
    _table(rows, "retention (dry run: nothing deleted)" if dry_run else "retention applied")
    if list_keys:
        for keys in (*report.deleted.values(), *report.discarded.values()):
            for key in keys:
                click.echo(key)
        for path in report.recordings:
            click.echo(path)


@retention.command("lifecycle")
@click.pass_context
def retention_lifecycle(ctx):
    """Set the bucket's lifecycle rules from the same settings (MinIO, S3), so the store deletes
    what is due by itself."""
    from infra.retention import LifecycleError, apply_lifecycle

    try:
        config = apply_lifecycle(_settings(ctx))
    except LifecycleError as exc:
        raise click.ClickException(str(exc)) from exc
    rows = []
    for rule in config.rules:
        flt = rule.rule_filter
        select = f"tag {flt.tag.key}={flt.tag.value}" if flt.tag is not None else f"prefix {flt.prefix}"
        rows.append({"rule": rule.rule_id, "objects": select, "expire after days": rule.expiration.days})
    _table(rows, f"lifecycle rules on {_settings(ctx).s3_bucket}")


@main.command("models")
@click.option("--install", is_flag=True, help="Fetch missing files from their public sources and verify them.")
@click.option("--source", type=click.Path(exists=True, file_okay=False), help="A folder of already-fetched files.")
@click.pass_context
def models(ctx, install, source):
    """List the model files (ok / missing / bad checksum) where they are found: the models folder,
    then ../shared/models; --install fetches what is missing. Exits non-zero when the configured
    pose backend cannot run."""
    from vision import models as registry
    from vision.pose import BackendUnavailable, resolve_backend

    settings = _settings(ctx)
    target = Path(settings.models_dir)
    if install:
        failed = registry.install(target, source=source and Path(source), echo=click.echo)
        if failed:
            click.echo(registry.explain(failed))
    rows = []
    for m in registry.REGISTRY:
        found = registry.find_models_dir(target, [m.name])
        path = m.path_in(found or target)
        rows.append({"model": m.name, "state": registry.check(path, m), "path": path})
    _table(rows, f"models in {target} (then {registry.SHARED_MODELS})")
    try:
        chosen, _, note = resolve_backend(settings.pose_backend, target)
    except BackendUnavailable as exc:
        raise click.ClickException(f"the configured pose backend {settings.pose_backend!r} cannot run: {exc}") from exc
    click.echo(f"pose backend {settings.pose_backend!r}: " + (note or f"{chosen}, ready"))


@main.command("demo")
@click.option(
    "--video",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A clip of a person to use as the camera (default: one built from a photo).",
)
@click.option(
    "--photo",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The photo the default clip moves (default: scikit-image's astronaut photo).",
)
@click.option("--frames", default=150, show_default=True, help="Frames of the built clip (30 fps).")
@click.option("--budget", "budget_s", default=180.0, show_default=True, help="Fine-tuning budget, seconds.")
@click.option(
    "--resolution",
    default=128,
    show_default=True,
    help="Generator size in pixels: the crop around the person (and the dataset's pose maps).",
)
@click.option("--keep-stack", is_flag=True, help="Leave the broker and S3 server running afterwards.")
@click.option(
    "--base-budget",
    "base_budget_s",
    default=90.0,
    show_default=True,
    help="Seconds to train the scene's base model (once: it is kept under the state folder).",
)
@click.option(
    "--base-photo",
    "base_photos",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Photos of other people for the base model (default: scikit-image's camera photo).",
)
@click.option("--no-base", is_flag=True, help="Train the session from scratch, without a base model.")
@click.option("--temporal/--no-temporal", default=None, help="The trainer's temporal option (default: its default).")
@click.option("--face/--no-face", default=None, help="The trainer's face residual option (default: its default).")
@click.option(
    "--conditioning",
    type=click.Choice(CONDITIONINGS),
    default=None,
    help="The trainer's conditioning (default: its default, warp; the face residual needs pose).",
)
@click.option(
    "--mirror-seconds",
    default=3.0,
    show_default=True,
    type=click.FloatRange(0),
    help="The live mirror on the visitor's poses at the end, seconds (0: none).",
)
@click.option(
    "--mirror-budget",
    "mirror_budget_s",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Seconds to train the reference dancer's generator for the mirror (0: it shows the skeleton).",
)
@click.pass_context
def demo(
    ctx,
    video,
    photo,
    frames,
    budget_s,
    resolution,
    keep_stack,
    base_budget_s,
    base_photos,
    no_base,
    temporal,
    face,
    conditioning,
    mirror_seconds,
    mirror_budget_s,
):
    """Run one whole booth session end to end on the embedded stack and print the rendition link."""
    from booth.demo import Demo, DemoOptions

    state = _settings(ctx).state_dir / "demo"
    state.mkdir(parents=True, exist_ok=True)
    log_file = _log_to_file(state / "logs" / "demo.log")
    click.echo(f"booth demo: progress below; libraries' messages go to {log_file}")
    d = Demo(
        DemoOptions(
            video=video,
            photo=photo,
            frames=frames,
            budget_s=budget_s,
            resolution=resolution,
            keep_stack=keep_stack,
            temporal=temporal,
            face=face,
            conditioning=conditioning,
            base=not no_base,
            base_budget_s=base_budget_s,
            base_photos=tuple(base_photos),
            mirror_seconds=mirror_seconds,
            mirror_budget_s=mirror_budget_s,
        ),
        state,
        echo=click.echo,
    )
    try:
        rows = d.run()
    except (RuntimeError, TimeoutError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        d.stop()
    _table([{"": k, "value": v} for k, v in rows.items()], "booth demo")
    files = Path(rows["files"])
    click.echo("\nYour videos:")
    for name, what in (
        ("rendition.mp4", "the fine-tuned video, final version"),
        ("oneshot.mp4", "version 1, made before any training"),
        ("side-by-side.mp4", "the reference dance beside the rendition"),
        ("mirror.mp4", "the live mirror: the reference dancer following the visitor"),
    ):
        if (files / name).is_file():
            click.echo(f"  {files / name}  ({what})")
    click.echo(f"with its pictures and figures in {files}")
    if keep_stack:
        click.echo(
            f"Link, while the stack runs: {rows['rendition link']}\n"
            f"(stop it with: BOOTH_STATE_DIR={state} booth stack down)"
        )


def _log_to_file(path: Path) -> Path:
    """Send this process's logging, Python warnings (kafka-python's among them) and what native
    libraries write to file descriptor 2 (TFLite's notices) to a file, so that the person at the
    terminal sees the command's own lines only. Python's sys.stderr keeps the terminal: progress
    bars and errors still show there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    logging.captureWarnings(True)
    sys.stderr.flush()
    terminal = os.dup(2)
    with open(path, "ab") as log:
        os.dup2(log.fileno(), 2)
    sys.stderr = os.fdopen(terminal, "w", buffering=1)
    return path


@main.command("config")
@click.pass_context
def config(ctx):
    """Print the effective settings (secrets masked)."""
    _table([{"setting": k, "value": v} for k, v in _settings(ctx).safe_summary().items()])


def _register() -> None:
    """Commands that live with their stage."""
    from assembler.cli import assemble
    from console.cli import console
    from processors.cli import process
    from producers.cli import background, camera, publish_spool
    from tools.commands import record, replay, status
    from tools.parts import parts
    from trainer.cli import base, oneshot, reference, train

    for command in (
        camera,
        publish_spool,
        background,
        process,
        assemble,
        train,
        base,
        oneshot,
        reference,
        record,
        replay,
        status,
        console,
        parts,
    ):
        main.add_command(command)


_register()

if __name__ == "__main__":
    sys.exit(main())
