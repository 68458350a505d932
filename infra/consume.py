"""The one consume loop of the kafka-python services (assembler, trainer, console preview).

    poll -> a log the broker lost? -> handle(records) -> tick(now, backlog)
         -> commit (periodic, or when tick asks) -> booth_consumer_lag -> stop / done / idle exit

What differs between services is passed in; what they share (the order of those steps, the
commit on the way out, the idle clock that starts only once the group has assigned partitions)
lives here once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from infra.metrics_names import LOG_RESETS, set_consumer_lag

log = logging.getLogger(__name__)


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


def reset_lost_logs(consumer: Any, group: str) -> list:
    """Partitions whose read position is beyond the end of the broker's log, sought to its start.

    A broker that lost its log (the embedded in-memory broker restarted) recreates its topics
    empty; it then answers a fetch beyond their end with an empty result instead of an
    out-of-range error, so a consumer would wait there for ever while new records pile up below
    it. Everything now in such a log came after the loss: it is read from its start, with a warning
    and booth_consumer_log_resets_total. The end is the high watermark of the last fetch (as in
    report_consumer_lag); a log that has already grown past the old position again cannot be told
    from one that did not lose anything.
    """
    lost = []
    for tp in consumer.assignment():
        resets = LOG_RESETS.labels(group, tp.topic)  # exported from the start, at 0
        end = consumer.highwater(tp)
        position = consumer.position(tp, timeout_ms=0) if end is not None else None
        if position is not None and position > end:
            log.warning(
                "%s[%d]: read position %d is beyond the broker's log end %d: the broker lost its log; "
                "reading it again from its start",
                tp.topic,
                tp.partition,
                position,
                end,
            )
            resets.inc()
            lost.append(tp)
    if lost:
        consumer.seek_to_beginning(*lost)
    return lost


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
    on_log_lost(partitions): after partitions were found beyond the broker's log end and sought
        to its start (reset_lost_logs, with lag_group as the group): forget what is held of them.
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
    on_log_lost: Callable[[list], None] | None = None

    def run(self) -> None:
        last_record = last_commit = self.clock()
        while self.stop is None or not self.stop.is_set():
            kwargs = {"max_records": self.max_records} if self.max_records else {}
            polled = self.consumer.poll(timeout_ms=self.poll_ms, **kwargs)
            if self.lag_group is not None:
                lost = reset_lost_logs(self.consumer, self.lag_group)
                if lost and self.on_log_lost is not None:
                    self.on_log_lost(lost)
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
                self._commit()
                last_commit = now
            if self.done():
                break
            if self.idle_exit_s is not None and not self.busy() and now - last_record >= self.idle_exit_s:
                break
        if self.commit is not None:
            self._commit()

    def _commit(self) -> None:
        """Commit; a commit the group refuses (it rebalanced: a broker restart forgets every member)
        is skipped with a warning: the next poll joins again, and what was not committed is read again."""
        from kafka.errors import CommitFailedError

        assert self.commit is not None
        try:
            self.commit()
        except CommitFailedError as exc:
            log.warning("offsets not committed (%s); the group is being joined again", exc)
