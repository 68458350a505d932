"""Which offsets are safe to commit: a message is held until what it contributed is persisted.

Per partition the committable offset is the lowest offset still held (everything before it is
persisted or resolved), or, with nothing held, the offset after the last one consumed. A crash
then re-reads every message whose data was not yet written, and nothing else is lost.
"""

from __future__ import annotations

from dataclasses import dataclass

TP = tuple[str, int]  # (topic, partition)


@dataclass(frozen=True)
class Held:
    topic: str
    partition: int
    offset: int
    generation: int = 0  # of the partition's log here: a log the broker lost is a new generation

    @property
    def tp(self) -> TP:
        return self.topic, self.partition


class OffsetTracker:
    def __init__(self) -> None:
        self._next: dict[TP, int] = {}
        self._held: dict[TP, set[int]] = {}
        self._generation: dict[TP, int] = {}

    def consumed(self, topic: str, partition: int, offset: int) -> Held:
        """Record a consumed message; it is held until `release`d."""
        tp = (topic, partition)
        self._next[tp] = max(self._next.get(tp, 0), offset + 1)
        self._held.setdefault(tp, set()).add(offset)
        return Held(topic, partition, offset, self._generation.get(tp, 0))

    def release(self, *held: Held) -> None:
        for h in held:
            if h.generation == self._generation.get(h.tp, 0):  # an older log's offset is not this one's
                self._held.get(h.tp, set()).discard(h.offset)

    def held_count(self) -> int:
        return sum(len(v) for v in self._held.values())

    def committable(self) -> dict[TP, int]:
        out = {}
        for tp, nxt in self._next.items():
            held = self._held.get(tp)
            out[tp] = min(held) if held else nxt
        return out

    def forget(self, tps: set[TP] | None = None, *, lost: bool = False) -> None:
        """Drop the state of some partitions (all if None), e.g. after they were revoked. `lost`:
        the broker lost their logs, and messages still held from them must not release the same
        offsets of the new ones."""
        for tp in list(self._next) if tps is None else tps:
            self._next.pop(tp, None)
            self._held.pop(tp, None)
            if lost:
                self._generation[tp] = self._generation.get(tp, 0) + 1
