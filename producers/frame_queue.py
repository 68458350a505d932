"""The bounded queue between a capture thread and its sender: capture never waits on the network.

When the queue is full the policy decides: ``drop-oldest`` (keep the freshest frames, the default
for live cameras), ``drop-newest`` (keep what is queued, discard the new frame) or ``block`` (the
capture thread waits: nothing is dropped, but a live camera's driver may then drop frames itself).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Literal

Policy = Literal["drop-oldest", "drop-newest", "block"]
POLICIES: tuple[str, ...] = ("drop-oldest", "drop-newest", "block")


class FrameQueue:
    def __init__(
        self,
        maxsize: int,
        policy: Policy = "drop-oldest",
        on_drop: Callable[[int], object] = lambda n: None,
        on_depth: Callable[[int], object] = lambda n: None,
    ):
        if maxsize < 1:
            raise ValueError(f"queue size must be at least 1, got {maxsize}")
        if policy not in POLICIES:
            raise ValueError(f"queue policy {policy!r} is not one of {', '.join(POLICIES)}")
        self.maxsize, self.policy = maxsize, policy
        self._items: deque = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._on_drop, self._on_depth = on_drop, on_depth

    def put(self, item) -> None:
        """Queue an item from the capture thread, applying the policy when full."""
        dropped = 0
        with self._cond:
            if self.policy == "block":
                while len(self._items) >= self.maxsize and not self._closed:
                    self._cond.wait()
            if self._closed:  # closed under a waiting put: the run was abandoned
                dropped = 1
            elif len(self._items) < self.maxsize:
                self._items.append(item)
            elif self.policy == "drop-oldest":
                self._items.popleft()
                self._items.append(item)
                dropped = 1
            else:  # drop-newest
                dropped = 1
            depth = len(self._items)
            self._cond.notify_all()
        if dropped:
            self._on_drop(dropped)
        self._on_depth(depth)

    def get(self):
        """The next item for the sender; None once the queue is closed and empty."""
        with self._cond:
            while not self._items and not self._closed:
                self._cond.wait()
            if not self._items:
                return None
            item = self._items.popleft()
            depth = len(self._items)
            self._cond.notify_all()
        self._on_depth(depth)
        return item

    def close(self) -> None:
        """No more items: get() returns what is left, then None."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def discard(self) -> int:
        """Drop everything still queued (a run abandoned while the broker is away); returns how many."""
        with self._cond:
            n = len(self._items)
            self._items.clear()
            self._cond.notify_all()
        if n:
            self._on_drop(n)
        self._on_depth(0)
        return n

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)
