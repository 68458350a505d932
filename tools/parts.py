"""`booth parts ...`: body-part maps from the command line. Heavy imports happen inside commands."""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
def parts() -> None:
    """Body-part segmentation (BodyPix's 24 parts) and part-mask repair."""


@parts.command("repair")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the repaired PNGs go (default: FOLDER/repaired). Inputs are never overwritten.",
)
@click.option("--no-refine", is_flag=True, help="Colour clustering only; no border refinement.")
def repair(folder: Path, out_dir: Path | None, no_refine: bool) -> None:
    """Snap the colours of every part mask in FOLDER back to the part palette."""
    from vision.parts.repair import IMAGE_SUFFIXES, mask_files, repair_folder

    if not mask_files(folder):
        raise click.ClickException(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    try:
        done = repair_folder(folder, out_dir, refine=not no_refine)
    except (ValueError, OSError) as e:
        raise click.ClickException(str(e)) from e
    for r in done:
        click.echo(f"{r.source.name} -> {r.target}  ({r.parts} parts, {r.recoloured:.1%} of pixels recoloured)")


@parts.command("segment")
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder for <name>.parts.png (coloured part map) and <name>.ids.png (part ids).",
)
@click.option(
    "--backend",
    type=click.Choice(["auto", "bodypix", "pose"]),
    default="auto",
    show_default=True,
    help="bodypix: the 24-part model; pose: parts from pose and person mask; auto: BodyPix where it loads.",
)
@click.option(
    "--device", type=click.Choice(["auto", "edgetpu", "cpu"]), default="auto", show_default=True, help="BodyPix device."
)
@click.option("--threads", default=1, show_default=True, help="TFLite CPU threads.")
@click.pass_context
def segment(
    ctx: click.Context, images: tuple[Path, ...], out_dir: Path, backend: str, device: str, threads: int
) -> None:
    """Run the part segmenter on IMAGES; writes the part maps as PNGs."""
    import cv2

    from vision.parts import load_segmenter
    from vision.partsmap import colour_parts
    from vision.pose.base import BackendUnavailable

    settings = (ctx.obj or {}).get("settings")
    models_dir = getattr(settings, "models_dir", None)
    options: dict[str, object] = {"device": device} if backend != "pose" else {}
    if settings is not None and backend != "pose":
        options["cache_dir"] = Path(settings.state_dir) / "models"
    try:
        seg = load_segmenter(backend, models_dir, threads, **options)
    except BackendUnavailable as e:
        raise click.ClickException(str(e)) from e
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in images:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise click.ClickException(f"cannot read image {path}")
        result = seg.segment(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        cv2.imwrite(
            str(out_dir / f"{path.stem}.parts.png"),
            cv2.cvtColor(colour_parts(result.part_ids, result.person_ids), cv2.COLOR_RGB2BGR),
        )
        cv2.imwrite(str(out_dir / f"{path.stem}.ids.png"), result.part_ids)
        click.echo(
            f"{path.name}: {len(result.persons)} person(s), "
            f"{(result.part_ids > 0).mean():.1%} part pixels ({result.source})"
        )
