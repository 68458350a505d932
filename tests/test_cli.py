"""The command line reads alike everywhere: help on every command and option, -v for logging
and --version at the top, no group where there is nothing to choose."""

from __future__ import annotations

import subprocess
import sys

import click
from click.testing import CliRunner

from booth.cli import main


def commands(cmd: click.Command, path: str = "booth"):
    yield path, cmd
    if isinstance(cmd, click.Group):
        for name, sub in cmd.commands.items():
            yield from commands(sub, f"{path} {name}")


def test_every_command_and_option_says_what_it_does():
    bare = [path for path, cmd in commands(main) if not (cmd.help or cmd.short_help)]
    assert not bare, f"commands without help: {bare}"
    options = [
        f"{path} {p.opts[0]}"
        for path, cmd in commands(main)
        for p in cmd.params
        if isinstance(p, click.Option) and not p.hidden and not p.help and p.name not in ("help", "version")
    ]
    assert not options, f"options without help: {options}"


def test_groups_only_where_there_are_subcommands():
    empty = [path for path, cmd in commands(main) if isinstance(cmd, click.Group) and not cmd.commands]
    assert not empty, f"groups without subcommands: {empty}"
    usage = CliRunner().invoke(main, ["train", "--help"]).output
    assert "COMMAND [ARGS]" not in usage and "--budget" in usage


def test_version_and_verbosity_at_the_top():
    from importlib.metadata import version

    out = subprocess.run([sys.executable, "-m", "booth.cli", "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and version("motion-booth") in out.stdout
    assert not any(p.opts == ["--loglevel"] and not p.hidden for _, cmd in commands(main) for p in cmd.params), (
        "logging is chosen with booth -v, not per command"
    )
    assert CliRunner().invoke(main, ["-vv", "config"]).exit_code == 0


def test_the_spelled_out_representations_are_the_drawn_ones():
    """The commands spell out vision.partsmap.KINDS and the conditionings (tools.choices) so `booth --help`
    stays light; they must not drift."""
    from dataset.manifest import CONDITIONINGS as conditionings
    from tools.choices import CONDITIONINGS, REPRESENTATIONS
    from vision.partsmap import KINDS

    assert REPRESENTATIONS == KINDS
    assert CONDITIONINGS == conditionings


def test_the_command_line_loads_no_stage_until_a_command_runs():
    """`booth` registers every stage's commands without importing their work: no consumer's metrics
    in a process that runs another stage, and a quick `booth --help`."""
    code = "import sys, booth.cli; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    loaded = set(out.stdout.split())
    assert {"assembler.cli", "processors.cli", "trainer.cli"} <= loaded
    heavy = {"assembler.consumer", "assembler.metrics", "dataset", "trainer.job", "processors.app", "torch"}
    assert not heavy & loaded, f"loaded by `booth` alone: {sorted(heavy & loaded)}"
