"""Polling until something holds: one helper for the stack, the clients, the benchmarks and tests."""

from __future__ import annotations

import time


def wait_until(check, timeout: float = 30.0, interval: float = 0.2, what: str = "condition"):
    """Call `check` every `interval` s until it returns something true, and return that; raise
    TimeoutError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)
