"""The trainer's command-line options, each declared once (booth train, booth base build, booth
oneshot, booth reference train), grouped by what they set: the network and what it reads
(NETWORK_OPTIONS), the training loop (LOOP_OPTIONS), the job around it (JOB_OPTIONS).
`trainer_config` turns them into the job's one options object, trainer.options.TrainerConfig.
Nothing heavy is imported here, so `booth --help` stays fast."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import click

from tools.choices import CONDITIONINGS

F = TypeVar("F", bound=Callable)


def _together(*options: Callable[[F], F]) -> Callable[[F], F]:
    """Several option decorators as one, listed in help in the order given."""

    def apply(f: F) -> F:
        for option in reversed(options):
            f = option(f)
        return f

    return apply


def budget_option(default: float, help: str, **kwargs) -> Callable[[F], F]:
    """--budget (seconds, as budget_s): each command its own default and meaning of it."""
    return click.option("--budget", "budget_s", default=default, show_default=True, help=help, **kwargs)


DEVICE = click.option("--device", help="torch device (default: CUDA when present, else CPU).")
QUIET = click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
PERSON_MASKS = click.option(
    "--person-masks",
    type=click.Choice(["auto", "blazepose", "silhouette"]),
    default="auto",
    show_default=True,
    help="Where person masks come from (plates, mattes, the one-shot video's source views): BlazePose where the "
    "pose is, or drawn from the pose.",
)
FRAMING = click.option(
    "--framing",
    type=click.Choice(["auto", "person", "whole"]),
    default="auto",
    show_default=True,
    help="person: a crop following the person, composited onto the camera's background plate; whole: the "
    "whole frame letterboxed; auto: person for pose maps, whole for part maps.",
)
CROP_SIZE = click.option(
    "--crop-size",
    type=click.IntRange(16, 2048),
    help="Person framing's generator size, a power of two (default 512 where CUDA is, else 256).",
)
POSEMAP_STYLE = click.option(
    "--posemap-style",
    type=click.Choice(["stick", "facing"]),
    help="Pose maps the generator reads (default: facing for person framing, stick for whole).",
)
TEMPORAL = click.option(
    "--temporal/--no-temporal",
    default=None,
    envvar="BOOTH_TRAIN_TEMPORAL",
    help="Person framing: each frame conditioned on the previous generated one, so the video does not "
    "shimmer (default: the trainer's, see docs/generation.md).",
)
FACE = click.option(
    "--face/--no-face",
    default=None,
    envvar="BOOTH_TRAIN_FACE",
    help="Person framing: a small face generator adds detail on a box around the head (default: the trainer's).",
)
CONDITIONING = click.option(
    "--conditioning",
    type=click.Choice(CONDITIONINGS),
    default=None,
    help="What the person-centred generator reads: the pose map, or also the visitor's own pixels warped part by "
    "part to the pose (trainer/warp_framing.py), with warp-reliable also maps of where that warp is unreliable "
    "(parts never seen, bones far from the source's, another facing). Default: the session's manifest "
    "(booth assemble --conditioning), else warp (pose with --temporal, which only the pose map combines with). "
    "A base model warm-starts only sessions that read the same inputs.",
)
CHECKPOINT_EVERY = click.option(
    "--checkpoint-every", "checkpoint_every_s", default=180.0, show_default=True, help="Seconds between checkpoints."
)
BATCH_SIZE = click.option(
    "--batch-size",
    type=click.IntRange(1, 256),
    help="Samples per training step (default 8 where CUDA is, with float16 autocast; else 1).",
)
HOLDOUT = click.option(
    "--holdout",
    type=click.Choice(["novel", "tail"]),
    default="novel",
    show_default=True,
    help="Which frames the held-out figures are measured on: those whose poses are least like the rest of the "
    "session (novel), or the last seconds (tail).",
)
RENDITION_POINTS = click.option(
    "--rendition-points",
    default="0.1,0.3,1",
    show_default=True,
    envvar="BOOTH_RENDITION_POINTS",
    help="Shares of the budget at which a better version of the video is published (the end always is).",
)
FIRST_RENDITION = click.option(
    "--first-rendition",
    "first_rendition_s",
    type=float,
    default=20.0,
    show_default=True,
    envvar="BOOTH_FIRST_RENDITION_S",
    help="Seconds of training before a first version of the video (0: none before the points).",
)
MATCH = click.option(
    "--match",
    help="Several visitors: which reference dancer each visitor dances, as dancer:visitor pairs (e.g. 1:0,0:1); "
    "default left to right at the start.",
)

# What the generator is and reads (a session's recipe: a base model fits the sessions that share it).
NETWORK_OPTIONS = _together(FRAMING, CROP_SIZE, POSEMAP_STYLE, TEMPORAL, FACE, CONDITIONING)
# The training loop.
LOOP_OPTIONS = _together(CHECKPOINT_EVERY, BATCH_SIZE, DEVICE)
# The job around it: held-out frames, versions, the dance, person masks.
JOB_OPTIONS = _together(
    click.option("--reference", help="Reference dance for sessions that name none."),
    PERSON_MASKS,
    HOLDOUT,
    RENDITION_POINTS,
    FIRST_RENDITION,
    MATCH,
)


def trainer_config(quiet: bool = False, **given):
    """The TrainerConfig of the trainer options given (as their commands name them); an option
    left out keeps TrainerConfig's default, and so does --temporal/--face not given."""
    from trainer.options import TrainerConfig
    from trainer.progressive import parse_points

    given = {k: v for k, v in given.items() if not (k in ("temporal", "face") and v is None)}
    if "first_rendition_s" in given:
        given["first_rendition_s"] = given["first_rendition_s"] or None
    try:
        if "rendition_points" in given:
            given["rendition_points"] = parse_points(given["rendition_points"])
        return TrainerConfig(progress_bar=not quiet, **given)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
