"""The one consume loop of the kafka-python services (assembler, trainer, console preview).

    poll -> handle(records) -> tick(now, backlog) -> commit (periodic, or when tick asks)
         -> booth_consumer_lag -> stop / done / idle exit

What differs between services is passed in; what they share (the order of those steps, the
commit on the way out, the idle clock that starts only once the group has assigned partitions)
lives here once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from infra.metrics_names import set_consumer_lag


def report_consumer_lag(consumer: Any, group: str) -> None:
    """Set booth_consumer_lag for a kafka-python consumer: high watermark minus position, per
    assigned partition; partitions not fetched yet are left out rather than guessed.

    The end is the high watermark of the latest fetch response (consumer.highwater), never
    end_offsets(): the embedded broker answers ListOffsets "latest" with the first offset of the
    last record batch + 1, while its fetch responses carry the true end (15 records produced in
    batches of 10 and 5: end_offsets says 11, highwater 15). Local reads only: cheap after a poll.
    """
    lags = {}
    for tp in consumer.assignment():
        end = consumer.highwater(tp)
        position = consumer.position(tp, timeout_ms=0) if end is not None else None
        if position is not None:
            lags[(tp.topic, tp.partition)] = end - position
    set_consumer_lag(group, lags)


@dataclass
class ConsumeLoop:
    """Run `handle` on every polled batch until stopped.

    handle(records, now): the batch (a flat list, in partition order); may be empty only when
        `handle_empty` is set (services that keep time in it).
    tick(now, backlog) -> bool: time-based work after each poll; True asks for a commit now.
        backlog is True when the poll came back full (more is waiting: do not time anything out).
    commit(): commit what is safe; called every `commit_every_s`, when tick asks, and on the way
        out of a clean stop (never after an exception: the uncommitted work is read again).
    lag_group: report booth_consumer_lag under this name after every poll.
    idle_exit_s: stop after this long without records while `busy()` is False; the clock starts
        once the consumer has partitions (a group join takes seconds and is not idleness).
    done(): checked after each batch; True stops the loop (e.g. "served N sessions").
    """

    consumer: Any
    handle: Callable[[list, float], Any]
    tick: Callable[[float, bool], bool] | None = None
    commit: Callable[[], None] | None = None
    commit_every_s: float = 1.0
    lag_group: str | None = None
    poll_ms: int = 200
    max_records: int | None = None
    idle_exit_s: float | None = None
    busy: Callable[[], bool] = lambda: False
    done: Callable[[], bool] = lambda: False
    stop: threading.Event | None = None
    handle_empty: bool = False
    clock: Callable[[], float] = time.monotonic

    def run(self) -> None:
        last_record = last_commit = self.clock()
        while self.stop is None or not self.stop.is_set():
            kwargs = {"max_records": self.max_records} if self.max_records else {}
            polled = self.consumer.poll(timeout_ms=self.poll_ms, **kwargs)
            if self.lag_group is not None:
                report_consumer_lag(self.consumer, self.lag_group)
            records = [r for batch in polled.values() for r in batch]
            now = self.clock()
            if records or not self.consumer.assignment():
                last_record = now
            if records or self.handle_empty:
                self.handle(records, now)
            full = self.max_records is not None and len(records) >= self.max_records
            wants_commit = self.tick(now, full) if self.tick is not None else False
            if self.commit is not None and (wants_commit or now - last_commit >= self.commit_every_s):
                self.commit()
                last_commit = now
            if self.done():
                break
            if self.idle_exit_s is not None and not self.busy() and now - last_record >= self.idle_exit_s:
                break
        if self.commit is not None:
            self.commit()
