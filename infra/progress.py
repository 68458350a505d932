"""Progress a person can follow on a terminal and off it (a log file, a pipe, CI).

On a terminal: tqdm's live bar. Off it a live bar is one endless line of carriage returns, or
nothing at all until the end; there, the same bar prints a plain line every PLAIN_EVERY_S seconds.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import IO, Any

PLAIN_EVERY_S = 5.0


def is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class _Lines:
    """A file for tqdm off a terminal: each redraw becomes one plain line."""

    def __init__(self, out: IO[str]):
        self.out = out
        self.last = ""

    def write(self, text: str) -> None:
        text = text.replace("\r", "").strip()
        if text and text != self.last:  # closing a bar redraws its last state once more
            self.out.write(text + "\n")
            self.out.flush()
            self.last = text

    def flush(self) -> None:
        self.out.flush()


def bar(*, file: IO[str] | None = None, **options: Any):
    """A tqdm bar on `file` (stderr): live on a terminal, a plain line every few seconds off it."""
    from tqdm import tqdm

    out = file or sys.stderr
    if is_terminal(out):
        return tqdm(file=out, dynamic_ncols=True, **options)
    return tqdm(file=_Lines(out), mininterval=PLAIN_EVERY_S, ncols=100, **options)


class PlainStatus:
    """The latest status as a plain line: at once when its heading changes, else every few seconds."""

    def __init__(self, echo: Callable[[str], Any], every_s: float = PLAIN_EVERY_S):
        self.echo, self.every_s = echo, every_s
        self.heading: str | None = None
        self.last = 0.0

    def update(self, heading: str, detail: str = "", force: bool = False) -> bool:
        now = time.monotonic()
        if not force and heading == self.heading and now - self.last < self.every_s:
            return False
        self.echo(f"{heading}: {detail}" if detail else heading)
        self.heading, self.last = heading, now
        return True
