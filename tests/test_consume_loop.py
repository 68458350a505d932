"""infra.consume.ConsumeLoop's own rules (the services' tests run it against the real broker):
the order of poll, handle, tick and commit, the idle clock, and what happens on the way out."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from infra.consume import ConsumeLoop


@dataclass
class Record:
    topic: str
    partition: int
    offset: int


@dataclass
class ScriptedConsumer:
    """Hands out the scripted polls in order (then nothing), with a clock that each poll advances
    by `step` seconds, as a poll's wait would."""

    polls: list[list[Record]]
    assigned: bool = True
    step: float = 1.0
    now: float = 0.0
    calls: list[str] = field(default_factory=list)

    def poll(self, timeout_ms: int, max_records: int | None = None) -> dict:
        self.now += self.step
        self.calls.append("poll")
        batch = self.polls.pop(0) if self.polls else []
        return {("t", 0): batch} if batch else {}

    def assignment(self) -> set:
        return {("t", 0)} if self.assigned else set()

    def clock(self) -> float:
        return self.now


def test_records_are_handled_then_ticked_and_commits_are_periodic_and_final():
    consumer = ScriptedConsumer([[Record("t", 0, 0), Record("t", 0, 1)], [], [Record("t", 0, 2)]])
    handled, commits = [], []

    def handle(records, now):
        consumer.calls.append("handle")
        handled.extend(r.offset for r in records)

    def tick(now, backlog):
        consumer.calls.append("tick")
        return False

    def commit():
        consumer.calls.append("commit")
        commits.append(consumer.now)

    ConsumeLoop(
        consumer, handle, tick=tick, commit=commit, commit_every_s=2.0, idle_exit_s=3.0, clock=consumer.clock
    ).run()
    assert handled == [0, 1, 2]
    assert consumer.calls[:6] == ["poll", "handle", "tick", "poll", "tick", "commit"]  # commit after 2 s
    assert commits == [2.0, 4.0, 6.0, 6.0]  # every 2 s, and once more on the way out
    assert consumer.now == 3.0 + 3.0  # idle for 3 s after the last record (polled at t=3)


def test_tick_can_ask_for_a_commit_and_a_full_poll_is_reported_as_backlog():
    consumer = ScriptedConsumer([[Record("t", 0, i) for i in range(3)], [Record("t", 0, 3)]])
    seen, commits = [], []

    def tick(now, backlog):
        seen.append(backlog)
        return now == 2.0  # e.g. a session closed: commit now

    ConsumeLoop(
        consumer,
        lambda records, now: None,
        tick=tick,
        commit=lambda: commits.append(consumer.now),
        commit_every_s=100.0,
        max_records=3,
        idle_exit_s=1.0,
        clock=consumer.clock,
    ).run()
    assert seen[:2] == [True, False]
    assert commits == [2.0, consumer.now]


def test_idle_time_counts_only_once_partitions_are_assigned_and_nothing_is_open():
    consumer = ScriptedConsumer([], assigned=False)
    busy = {"open": True}

    def tick(now, backlog):
        if now >= 5.0:
            consumer.assigned = True  # the group join took 5 s: not idleness
        if now >= 8.0:
            busy["open"] = False  # a session stayed open until then
        return False

    ConsumeLoop(
        consumer, lambda r, n: None, tick=tick, idle_exit_s=2.0, busy=lambda: busy["open"], clock=consumer.clock
    ).run()
    assert consumer.now == 8.0


def test_done_stops_the_loop_and_an_error_leaves_without_committing():
    consumer = ScriptedConsumer([[Record("t", 0, 0)], [Record("t", 0, 1)], [Record("t", 0, 2)]])
    handled, commits = [], []
    ConsumeLoop(
        consumer,
        lambda records, now: handled.extend(records),
        commit=lambda: commits.append(1),
        done=lambda: len(handled) == 2,
        clock=consumer.clock,
    ).run()
    assert len(handled) == 2 and commits

    commits.clear()

    def boom(records, now):
        raise RuntimeError("a bug in the service")

    with pytest.raises(RuntimeError):
        ConsumeLoop(ScriptedConsumer([[Record("t", 0, 0)]]), boom, commit=lambda: commits.append(1)).run()
    assert commits == []  # what was being handled is read again after a restart


def test_a_position_past_the_logs_end_is_read_again_from_its_start_and_counted():
    """A broker that lost its log answers a fetch past the new end with nothing: the loop notices
    (position > the fetch's high watermark), seeks those partitions to their start, counts them and
    tells the service; a partition at its end is left alone."""
    from collections import namedtuple

    from prometheus_client import REGISTRY

    TP = namedtuple("TP", "topic partition")
    lost, fine = TP("t", 0), TP("t", 1)

    class Broker(ScriptedConsumer):
        positions = {lost: 40, fine: 3}
        sought: list = []

        def assignment(self):
            return {lost, fine}

        def highwater(self, tp):
            return 3

        def position(self, tp, timeout_ms=None):
            return self.positions[tp]

        def seek_to_beginning(self, *tps):
            self.sought.extend(tps)
            self.positions.update({tp: 0 for tp in tps})

    def counted() -> float:
        return REGISTRY.get_sample_value("booth_consumer_log_resets_total", {"group": "g-lost", "topic": "t"}) or 0.0

    before, told = counted(), []
    consumer = Broker([[Record("t", 1, 2)]])
    ConsumeLoop(
        consumer, lambda r, n: None, lag_group="g-lost", on_log_lost=told.append, idle_exit_s=2.0, clock=consumer.clock
    ).run()
    assert consumer.sought == [lost] and told == [[lost]] and counted() - before == 1
