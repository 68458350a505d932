"""`booth train`, `booth oneshot`, `booth reference ...` and `booth base ...`: registered on the
main `booth` command group. The trainer's options are declared once each in trainer.cli_options.

Heavy imports happen inside each command, so `booth --help` stays fast.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import click

from tools.choices import REPRESENTATIONS
from tools.terminal import print_table, settings_from
from trainer.cli_options import (
    CONDITIONING,
    CROP_SIZE,
    DEVICE,
    FRAMING,
    JOB_OPTIONS,
    LOOP_OPTIONS,
    NETWORK_OPTIONS,
    PERSON_MASKS,
    QUIET,
    budget_option,
)
from trainer.cli_options import trainer_config as _trainer_config

_settings = settings_from


_table = print_table


@click.group("reference")
def reference() -> None:
    """Reference dances: poses extracted ahead of time, corrected by hand, versioned."""


@reference.command("add")
@click.argument("video", type=click.Path(exists=True, dir_okay=False))
@click.option("--name", required=True, help="Reference name (letters, digits, '_' and '-').")
@click.option(
    "--backend",
    type=click.Choice(["auto", "movenet", "blazepose", "posenet"]),
    default=None,
    help="Pose backend (default: the pose_backend setting).",
)
@click.option(
    "--mode",
    type=click.Choice(["savgol", "median"]),
    default="savgol",
    show_default=True,
    help="Centered smoothing: Savitzky-Golay or confidence-weighted median.",
)
@click.option(
    "--resolution",
    default=256,
    show_default=True,
    type=click.IntRange(32, 2048),
    help="Preview video: size of each half (pose overlay | pose map).",
)
@click.option("--replace", is_flag=True, help="Store as a new version if the name exists.")
@click.option(
    "--representation",
    type=click.Choice(REPRESENTATIONS),
    default="pose",
    show_default=True,
    help="parts / pose+parts: also store each frame's body-part map, which sessions assembled "
    "in those representations need.",
)
@click.option(
    "--people",
    type=click.IntRange(1, 4),
    default=1,
    show_default=True,
    help="Dancers to keep (several: PoseNet and the identity tracker, numbered left to right at the start).",
)
@click.pass_context
def reference_add(ctx, video, name, backend, mode, resolution, replace, representation, people):
    """Extract a reference dance's poses from VIDEO."""
    from tqdm import tqdm

    from schemas import InvalidId
    from trainer.references import add_reference
    from trainer.references.video import probe
    from vision.pose.base import BackendUnavailable

    try:
        total = probe(video).frames
        with tqdm(total=total, desc=f"poses of {name}", unit=" frames") as bar:
            meta = add_reference(
                _settings(ctx),
                video,
                name,
                backend=backend,
                mode=mode,
                resolution=resolution,
                replace=replace,
                progress=bar.update,
                representation=representation,
                people=people,
            )
    except InvalidId as exc:
        raise click.BadParameter(str(exc), param_hint="--name") from exc
    except (ValueError, FileExistsError, FileNotFoundError, BackendUnavailable) as exc:
        raise click.ClickException(str(exc)) from exc
    _report(meta)


@reference.command("correct")
@click.argument("name")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--mode",
    type=click.Choice(["savgol", "median"]),
    default=None,
    help="Smoothing mode (default: the previous version's).",
)
@click.pass_context
def reference_correct(ctx, name, file, mode):
    """Apply manual corrections from FILE (CSV rows 'frame,keypoint,x,y' or 'frame,drop'); stores a new version."""
    from schemas import InvalidId
    from trainer.references import correct_reference

    try:
        meta = correct_reference(_settings(ctx), name, file, mode=mode)
    except InvalidId as exc:
        raise click.BadParameter(str(exc), param_hint="NAME") from exc
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from exc
    _report(meta)


@reference.command("train")
@click.argument("name")
@budget_option(600.0, "Training seconds.", type=click.FloatRange(1))
@DEVICE
@click.option(
    "--size",
    default=128,
    show_default=True,
    type=click.Choice(["32", "64", "128", "256", "512"]),
    help="The generator's side in pixels: the live mirror renders it once per pose.",
)
@click.option(
    "--ngf",
    type=click.IntRange(4, 128),
    default=16,
    show_default=True,
    help="The generator's first layer's width (a session's is 32; the mirror renders 16 twice as fast).",
)
@click.pass_context
def reference_train(ctx, name, budget_s, device, size, ngf):
    """Train a generator of reference NAME's dancer (pose map -> the dancer) on its own frames;
    run again to train it on from where it stopped."""
    from schemas import InvalidId
    from trainer.references.generator import train_generator
    from trainer.training_set import DatasetError

    try:
        info = train_generator(
            _settings(ctx), name, budget_s=budget_s, device=device, size=int(size), ngf=ngf, progress_bar=True
        )
    except InvalidId as exc:
        raise click.BadParameter(str(exc), param_hint="NAME") from exc
    except (ValueError, FileNotFoundError, DatasetError) as exc:
        raise click.ClickException(str(exc)) from exc
    figures = ", ".join(f"{k} {info[k]:.3f}" for k in ("box_ssim", "box_psnr", "ssim", "psnr") if k in info)
    click.echo(
        f"{name} v{info['version']}: generator {info['size']}px after {info['steps']} steps "
        f"({info['train_seconds']:.0f} s on {info['device']}, {info['trained_on']} frames); held out: {figures}"
    )


@reference.command("list")
@click.pass_context
def reference_list(ctx):
    """The stored reference dances (latest versions)."""
    from trainer.references import list_references

    _table(list_references(_settings(ctx)), "references")


def _report(meta: dict) -> None:
    click.echo(
        f"{meta['name']} v{meta['version']}: {meta['frames']} frames, {meta['usable_frames']} usable, "
        f"{meta['glitches']} glitches, {meta['corrections']} corrections; "
        f"preview {meta['files']['preview.mp4']}"
    )


@click.command("oneshot")
@click.option("--session", required=True, help="The session to render (its dataset must be assembled).")
@click.option("--reference", help="Reference dance (default: the session's, else BOOTH_DEFAULT_REFERENCE).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Also write the MP4 here.")
@PERSON_MASKS
@click.option("--max-frames", type=int, help="Render only the dance's first frames.")
@QUIET
@click.pass_context
def oneshot(ctx, session, reference, out, person_masks, max_frames, quiet):
    """Render the one-shot video: the visitor's own pixels warped part by part through the dance, no training."""
    from schemas import InvalidId, layout, validate_id
    from trainer.dance import ReferenceUnavailable
    from trainer.oneshot import OneShotError, run_oneshot
    from trainer.training_set import DatasetError

    try:
        validate_id(session, "session")
    except InvalidId as exc:
        raise click.BadParameter(str(exc), param_hint="--session") from exc
    try:
        shot = run_oneshot(
            _settings(ctx),
            session,
            reference,
            out_path=out,
            person_masks=person_masks,
            max_frames=max_frames,
            progress=not quiet,
        )
    except (DatasetError, ReferenceUnavailable, OneShotError) as exc:
        raise click.ClickException(str(exc)) from exc
    for warning in shot.warnings:
        click.echo(f"warning: {warning}", err=True)
    _table(
        [
            {"": "video", "value": shot.video_key},
            {"": "frames", "value": shot.frames},
            {"": "source views (samples)", "value": ", ".join(map(str, shot.views))},
            {"": "parts never seen", "value": ", ".join(shot.missing) or "none"},
            {"": "seconds", "value": f"{shot.seconds:.1f}"},
            *([{"": "written to", "value": str(out)}] if out else []),
        ],
        f"one-shot video of {session} ({layout.result_key(session, 'oneshot.mp4')})",
    )


@click.command("train")
@budget_option(3600.0, "Fine-tuning budget per session, seconds.")
@NETWORK_OPTIONS
@LOOP_OPTIONS
@JOB_OPTIONS
@click.option("--max-sessions", type=int, help="Exit after this many renditions.")
@click.option("--idle-exit", type=float, help="Exit after this many idle seconds.")
@QUIET
@click.pass_context
def train(ctx, max_sessions, idle_exit, quiet, **options):
    """Consume DatasetReady events: fine-tune, evaluate, render, publish the link."""
    from trainer.service import TrainingService

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    config = _trainer_config(quiet, **options)
    done = TrainingService(_settings(ctx), config).run(stop=stop, idle_exit=idle_exit, max_sessions=max_sessions)
    click.echo(f"{done} session(s) rendered")


@click.group("base")
def base() -> None:
    """Base models of the booth scene that fine-tuning warm-starts from (versioned, one promoted per configuration)."""


@base.command("build")
@click.option("--session", "sessions", multiple=True, required=True, help="Sessions of the booth scene to train on.")
@budget_option(3600.0, "Seconds of training.")
@click.option("--steps", type=int, help="Stop after this many steps.")
@CROP_SIZE
@FRAMING
@CONDITIONING
@DEVICE
@click.option("--promote", "promote_it", is_flag=True, help="Promote the new version once built.")
@QUIET
@click.pass_context
def base_build(ctx, sessions, budget_s, steps, crop_size, framing, conditioning, device, promote_it, quiet):
    """Train a new base version on earlier sessions (with consent) and evaluate it on their held-out frames."""
    from schemas import InvalidId, validate_id
    from trainer.base import build_base, promote
    from trainer.options import TrainerConfig

    try:
        for s in sessions:
            validate_id(s, "session")
    except InvalidId as exc:
        raise click.BadParameter(str(exc), param_hint="--session") from exc
    try:
        config = TrainerConfig(
            framing=framing, crop_size=crop_size, conditioning=conditioning, device=device, progress_bar=not quiet
        )
        manifest = build_base(_settings(ctx), list(sessions), budget_s, config, max_steps=steps, echo=click.echo)
        if promote_it:
            promote(_store(ctx), manifest["version"])
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    _show_base(manifest, promoted=promote_it)


@base.command("list")
@click.pass_context
def base_list(ctx):
    """Every base version: configuration, sessions, steps, held-out quality, promoted or not."""
    from trainer.base import list_bases

    rows = [
        {
            "version": f"v{m['version']:04d}",
            "configuration": m.get("label", m.get("state", "?")),
            "sessions": len(m.get("sessions", [])),
            "steps": m.get("steps", "-"),
            "box PSNR": _fmt_num((m.get("quality") or {}).get("box_psnr")),
            "box SSIM": _fmt_num((m.get("quality") or {}).get("box_ssim"), 3),
            "promoted": "yes" if m["promoted"] else "",
        }
        for m in list_bases(_store(ctx))
    ]
    _table(rows, "base models")


@base.command("promote")
@click.argument("version", type=click.IntRange(1))
@click.pass_context
def base_promote(ctx, version):
    """Make VERSION the base its configuration's sessions warm-start from."""
    from trainer.base import promote

    try:
        manifest = promote(_store(ctx), version)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"base v{version:04d} promoted for {manifest['label']}")


@base.command("show")
@click.argument("version", type=click.IntRange(1))
@click.pass_context
def base_show(ctx, version):
    """One base version's manifest."""
    from trainer.base import promoted, read_manifest

    store = _store(ctx)
    manifest = read_manifest(store, version)
    if manifest is None:
        raise click.ClickException(
            f"base v{version:04d} has no manifest (no such version, or its build did not finish)"
        )
    _show_base(manifest, promoted=version in promoted(store).values())


def _show_base(m: dict, promoted: bool) -> None:
    q = m.get("quality") or {}
    rows = {
        "version": f"v{m['version']:04d}" + (" (promoted)" if promoted else ""),
        "configuration": m["label"],
        "representation": m.get("representation"),
        "sessions": ", ".join(m.get("sessions", [])),
        "training frames / steps / seconds": f"{m.get('samples')} / {m.get('steps')} / {m.get('train_seconds')}",
        "held-out person box PSNR / SSIM": f"{_fmt_num(q.get('box_psnr'))} dB / {_fmt_num(q.get('box_ssim'), 3)}",
        "held-out whole frame PSNR / SSIM": f"{_fmt_num(q.get('psnr'))} dB / {_fmt_num(q.get('ssim'), 3)}",
        "notes": "; ".join(m.get("notes") or []) or "none",
    }
    _table([{"": k, "value": v} for k, v in rows.items()], "base model")


def _store(ctx):
    from infra.objectstore import ObjectStore

    return ObjectStore(_settings(ctx))


def _fmt_num(value, digits: int = 2) -> str:
    return "-" if value is None else f"{float(value):.{digits}f}"
