"""`booth process` (registered on the `booth` group by booth/cli.py).

The Faust app is imported only when the command runs, so `booth --help` stays fast.
"""

from __future__ import annotations

import logging

import click

from tools.terminal import settings_from

_settings = settings_from


@click.command("process")
@click.option("--backend", type=click.Choice(["auto", "movenet", "blazepose", "posenet"]), help="Pose backend.")
@click.option("--threads", type=int, help="TFLite threads per interpreter.")
@click.option(
    "--max-people",
    type=click.IntRange(1, 32),
    help="People kept per frame, strongest first (several: --backend posenet).",
)
@click.option("--loglevel", hidden=True, help="Faust's log level (default: from booth -v).")
@click.pass_context
def process(ctx, backend, threads, max_people, loglevel):
    """Run a stream-processing worker (pose -> tracking -> imputation -> smoothing); run several to split partitions."""
    from processors.app import run_worker

    updates = {
        k: v for k, v in (("pose_backend", backend), ("pose_threads", threads), ("pose_max_people", max_people)) if v
    }
    level = loglevel or logging.getLevelName(ctx.obj["log_level"]).lower()
    run_worker(_settings(ctx).model_copy(update=updates), loglevel=level)
