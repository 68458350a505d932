"""`booth status`: sessions, stage throughput and training progress in one terminal view.

Data and drawing are apart: `StatusWatcher.refresh()` (and the one-shot `snapshot()`) return a
plain dict; `render()` turns one into rich tables. The control topics are read from their earliest
record without a consumer group (nothing is committed, no rebalance); the components' /metrics
endpoints are scraped and their counters turned into per-second rates between two scrapes.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections import Counter, deque
from typing import Any

from infra import kafka
from infra.metrics import DEFAULT_PORTS
from infra.metrics_names import EXPECTED_SERIES, STAGE_COUNTERS
from infra.settings import Settings
from schemas import (
    Coverage,
    DatasetReady,
    DeadLetter,
    Rendition,
    SchemaError,
    SessionEvent,
    TrainingProgress,
    decode,
)
from tools.warning_words import headline

CONTROL_TOPICS = ("sessions", "datasets", "training", "renditions", "deadletter")
# The held-out figures a rendition carries (trainer.evaluation) and its dance's (trainer.fidelity)
# that the views show.
QUALITY_KEYS = (
    "box_ssim",
    "box_psnr",
    "ssim",
    "psnr",
    "flicker",
    "pose_error",
    "held_out",
    "dance_limb_error",
    "dance_limb_error_p90",
    "dance_facing_agreement",
    "dance_person_found",
    "dance_limb_floor",
)
WARNING_PREFIX = "warning: "  # training progress messages that are warnings (trainer.job)
_TRAINING_GAUGES = ("booth_training_step", "booth_training_loss", "booth_training_eta_seconds")


def default_targets(settings: Settings) -> dict[str, str]:
    """Each component's /metrics: its default port on metrics_host, unless BOOTH_METRICS_TARGETS
    names where it runs (components on other hosts, or on ports of their own)."""
    targets = {c: f"http://{settings.metrics_host}:{port}/metrics" for c, port in DEFAULT_PORTS.items()}
    targets.update(settings.metrics_targets)
    return targets


def scrape(url: str, timeout: float = 1.0) -> dict[str, float]:
    """Sample name -> value summed over its label sets (raises OSError if the endpoint is down)."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=timeout) as response:
        text = response.read().decode("utf-8", "replace")
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return dict(totals)


def _scrape_all(targets: dict[str, str], timeout: float) -> tuple[float, dict[str, dict]]:
    results = {}
    for component, url in targets.items():
        try:
            results[component] = {"url": url, "up": True, "error": None, "values": scrape(url, timeout)}
        except (OSError, ValueError, urllib.error.URLError) as exc:
            reason = getattr(exc, "reason", None) or exc
            results[component] = {"url": url, "up": False, "error": str(reason), "values": {}}
    return time.monotonic(), results


def _total(scraped: dict[str, dict], name: str) -> float | None:
    values = [c["values"][name] for c in scraped.values() if name in c["values"]]
    return sum(values) if values else None


class ControlState:
    """Folds control-topic messages into one row per session, plus dead-letter counts.

    A purge event removes its session's row, and every later message of that session is ignored."""

    def __init__(self) -> None:
        self.sessions: dict[str, dict[str, Any]] = {}
        self.purged: set[str] = set()
        self.deadletters: Counter[str] = Counter()
        self.last_deadletters: deque[dict] = deque(maxlen=5)
        self.invalid = 0
        self.last_invalid: str | None = None

    def _row(self, session: str) -> dict[str, Any]:
        return self.sessions.setdefault(
            session,
            {
                "session": session,
                "state": None,
                "cameras": [],
                "reference": None,
                "consent": None,
                "started_at": None,
                "ended_at": None,
                "dataset": None,
                "samples": None,
                "failure": None,
                "phase": None,
                "step": None,
                "total_steps": None,
                "losses": {},
                "eta_s": None,
                "rendition_url": None,
                "frames": None,
                "quality": {},
                "version": None,
                "versions": [],
                "message": None,
                "warnings": [],
                "coverage": None,
                "updated_at": 0.0,
            },
        )

    def apply(self, value: bytes | None) -> None:
        try:
            message = decode(value)
        except SchemaError as exc:
            self.invalid += 1
            self.last_invalid = str(exc)
            return
        if isinstance(message, DeadLetter):
            self.deadletters[message.stage] += 1
            self.last_deadletters.append(
                {
                    "stage": message.stage,
                    "reason": message.reason,
                    "source_topic": message.source_topic,
                    "wall_time": message.wall_time,
                }
            )
            return
        session = getattr(message, "session", None)
        if session is None or session in self.purged:
            return
        if isinstance(message, SessionEvent) and message.kind == "purge":
            self.purged.add(session)
            self.sessions.pop(session, None)
            return
        row = self._row(session)
        row["updated_at"] = max(row["updated_at"], getattr(message, "wall_time", 0.0))
        if isinstance(message, SessionEvent) and message.kind == "camera-end":
            return  # a camera run is over; the session goes on until its end event
        if isinstance(message, SessionEvent):
            if row["state"] != "closed" or message.kind != "start":  # a replayed start does not reopen it
                row["state"] = message.kind
            if message.kind == "start":
                row.update(
                    cameras=list(message.cameras),
                    reference=message.reference,
                    consent=message.consent,
                    started_at=message.wall_time,
                )
            else:
                row["ended_at"] = message.wall_time
        elif isinstance(message, DatasetReady):
            row.update(dataset=message.status, samples=message.samples)
            if row["state"] in (None, "start"):
                row["state"] = "closed"  # closed without an end event (by inactivity): no longer recording
            if message.status == "failed":
                row["failure"] = f"dataset failed: {message.reason}"
        elif isinstance(message, TrainingProgress):
            if message.phase == "failed":
                row["failure"] = f"training failed: {message.message}"
            row.update(
                phase=message.phase,
                step=message.step,
                total_steps=message.total_steps,
                losses=dict(message.losses),
                eta_s=message.eta_s,
                message=message.message or row["message"],
            )
            if message.message.startswith(WARNING_PREFIX):
                text = message.message[len(WARNING_PREFIX) :]
                if text not in row["warnings"]:
                    row["warnings"] = [*row["warnings"], text]
        elif isinstance(message, Coverage):
            if row["coverage"] is None or message.wall_time >= row["coverage"]["wall_time"]:
                row["coverage"] = message.model_dump(mode="json")
        elif isinstance(message, Rendition):
            quality = {k: message.metrics[k] for k in QUALITY_KEYS if k in message.metrics}
            # Versions come in order, but a replay or a redelivery may repeat one: the newest wins.
            curve = {v["version"]: v for v in row["versions"]}
            curve[message.version] = {
                "version": message.version,
                "kind": message.kind,
                "final": message.final,
                "train_seconds": message.metrics.get("train_seconds"),
                **quality,
            }
            row["versions"] = [curve[v] for v in sorted(curve)]
            if message.version >= (row["version"] or 0):
                row.update(rendition_url=message.url, frames=message.frames, quality=quality, version=message.version)

    def as_dict(self) -> dict[str, Any]:
        rows = sorted(self.sessions.values(), key=lambda r: r["updated_at"], reverse=True)
        return {
            "sessions": [dict(r) for r in rows],
            "deadletters": {
                "total": sum(self.deadletters.values()),
                "by_stage": dict(self.deadletters),
                "last": list(self.last_deadletters),
            },
            "invalid_control_messages": self.invalid,
            "last_invalid": self.last_invalid,
            "purged": sorted(self.purged),
        }


class StatusWatcher:
    """Keeps a group-less consumer on the control topics; each refresh() reads what is new."""

    def __init__(
        self,
        settings: Settings,
        *,
        targets: dict[str, str] | None = None,
        idle_s: float = 1.0,
        scrape_timeout: float = 0.5,
    ):
        from kafka import TopicPartition

        self.settings = settings
        self.targets = default_targets(settings) if targets is None else targets
        self.idle_s = idle_s
        self.scrape_timeout = scrape_timeout
        self.state = ControlState()
        self.errors: list[str] = []
        self._previous: tuple[float, dict[str, dict]] | None = None
        self._first = True
        self._consumer = kafka.consumer(settings, group_id=None)
        assigned = []
        for name in CONTROL_TOPICS:
            topic = getattr(settings, f"topic_{name}")
            parts = self._consumer.partitions_for_topic(topic)
            if not parts:
                self.errors.append(f"topic {topic} does not exist")
            assigned += [TopicPartition(topic, p) for p in sorted(parts)]
        self._consumer.assign(assigned)
        if assigned:
            self._consumer.seek_to_beginning(*assigned)

    def _read_control(self) -> None:
        # End offsets are not trusted on this broker: read until quiet. The first read catches up
        # on history, so it waits longer; a cap keeps a busy topic from holding the view forever.
        idle = self.idle_s if self._first else min(self.idle_s, 0.2)
        cap = time.monotonic() + max(10 * idle, 5.0)
        last = time.monotonic()
        while time.monotonic() - last < idle and time.monotonic() < cap:
            batches = self._consumer.poll(timeout_ms=100)
            if batches:
                last = time.monotonic()
            for records in batches.values():
                for r in records:
                    self.state.apply(r.value)
        self._first = False

    def refresh(self) -> dict[str, Any]:
        before = self._previous or _scrape_all(self.targets, self.scrape_timeout)
        self._read_control()
        after = _scrape_all(self.targets, self.scrape_timeout)
        self._previous = after
        dt = max(after[0] - before[0], 1e-6)
        stages = {}
        for stage, name in STAGE_COUNTERS.items():
            now, then = _total(after[1], name), _total(before[1], name)
            rate = None if now is None or then is None else max(now - then, 0.0) / dt
            stages[stage] = {
                "counter": name,
                "component": EXPECTED_SERIES[name].components[0],
                "total": now,
                "rate": rate,
            }
        drops_now = _total(after[1], "booth_camera_frames_dropped_total")
        drops_then = _total(before[1], "booth_camera_frames_dropped_total")
        return {
            "taken_at": time.time(),
            **self.state.as_dict(),
            "stages": stages,
            "drops": {
                "total": drops_now,
                "rate": None if drops_now is None or drops_then is None else max(drops_now - drops_then, 0) / dt,
            },
            "training_metrics": {name: _total(after[1], name) for name in _TRAINING_GAUGES},
            "components": {c: {k: v for k, v in r.items() if k != "values"} for c, r in after[1].items()},
            "errors": list(self.errors),
        }

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> StatusWatcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def snapshot(settings: Settings, *, targets: dict[str, str] | None = None, idle_s: float = 1.0) -> dict[str, Any]:
    """One look at everything: control topics read until quiet, rates over that read's duration."""
    with StatusWatcher(settings, targets=targets, idle_s=idle_s) as watcher:
        return watcher.refresh()


# --- drawing -------------------------------------------------------------------------------------
def _num(value: float | None, fmt: str = "{:,.0f}") -> str:
    return "-" if value is None else fmt.format(value)


def _ago(wall: float | None, now: float) -> str:
    if not wall:
        return "-"
    seconds = max(0.0, now - wall)
    return (
        f"{seconds:.0f}s ago"
        if seconds < 120
        else f"{seconds / 60:.0f}m ago"
        if seconds < 7200
        else f"{seconds / 3600:.1f}h ago"
    )


def coverage_text(c: dict | None) -> str:
    """ "63% front,back (target 80%, ended: target)": the dance's share the capture covers."""
    if not c:
        return "-"
    text = f"{c['coverage']:.0%} {','.join(c['facings']) or 'no facing'}"
    if c.get("target") is not None:
        text += f" (target {c['target']:.0%})"
    if c.get("done"):
        text += f", {c['reason']}"
    return text


def render(snap: dict[str, Any]):
    from rich.console import Group
    from rich.table import Table

    now = snap["taken_at"]
    sessions = Table(title="sessions")
    for column in (
        "session",
        "state",
        "cameras",
        "reference",
        "dataset",
        "training",
        "losses",
        "eta",
        "coverage",
        "rendition",
        "updated",
    ):
        sessions.add_column(column)
    for r in snap["sessions"][:20]:
        training = "-" if r["phase"] is None else f"{r['phase']} {r['step']}/{r['total_steps']}"
        heads_up = headline(r.get("warnings") or [])  # what may show in the video, in an operator's words
        if heads_up:
            training += f"\n⚠ {heads_up}"
        losses = " ".join(f"{k}={v:.3g}" for k, v in sorted(r["losses"].items())[:4]) or "-"
        dataset = "-" if r["dataset"] is None else f"{r['dataset']} ({r['samples']} samples)"
        rendition = "-" if r["rendition_url"] is None else f"v{r.get('version') or 1}, {r['frames']} frames"
        q = r.get("quality") or {}
        if "box_psnr" in q:
            rendition += f", person {q['box_psnr']:.1f} dB"
        if "dance_limb_error" in q:
            rendition += f", dance limb {q['dance_limb_error']:.2f}"
            if "dance_limb_floor" in q:  # the judge's own score on the session's real frames
                rendition += f" (floor {q['dance_limb_floor']:.2f})"
        if "dance_facing_agreement" in q:
            rendition += f", facing {q['dance_facing_agreement']:.0%}"
        sessions.add_row(
            r["session"],
            r["state"] or "-",
            ",".join(r["cameras"]) or "-",
            r["reference"] or "-",
            dataset,
            training,
            losses,
            _num(r["eta_s"], "{:.0f}s"),
            coverage_text(r.get("coverage")),
            rendition,
            _ago(r["updated_at"], now),
        )

    stages = Table(title="throughput")
    for column in ("stage", "component", "total", "per second"):
        stages.add_column(column)
    for stage, s in snap["stages"].items():
        stages.add_row(stage, s["component"], _num(s["total"]), _num(s["rate"], "{:.1f}"))
    stages.add_row("drops", "camera", _num(snap["drops"]["total"]), _num(snap["drops"]["rate"], "{:.1f}"))

    health = Table(title="components")
    for column in ("component", "metrics", "note"):
        health.add_column(column)
    for name, c in snap["components"].items():
        health.add_row(name, "up" if c["up"] else "down", c["url"] if c["up"] else (c["error"] or ""))

    dead = snap["deadletters"]
    notes = [
        f"dead letters: {dead['total']} " + (" ".join(f"{k}={v}" for k, v in sorted(dead["by_stage"].items())) or "")
    ]
    notes += [f"  last: [{d['stage']}] {d['reason'][:100]} ({d['source_topic']})" for d in dead["last"][-3:]]
    if snap["invalid_control_messages"]:
        notes.append(f"invalid control messages: {snap['invalid_control_messages']} (last: {snap['last_invalid']})")
    notes += snap["errors"]
    return Group(sessions, stages, health, "\n".join(notes))


def live(
    settings: Settings, *, interval: float = 2.0, idle_s: float = 1.0, targets: dict[str, str] | None = None
) -> None:
    """Redraw every ``interval`` seconds until ^C."""
    from rich.live import Live

    with StatusWatcher(settings, targets=targets, idle_s=idle_s) as watcher:
        with Live(render(watcher.refresh()), auto_refresh=False, screen=False) as view:
            try:
                while True:
                    time.sleep(interval)
                    view.update(render(watcher.refresh()), refresh=True)
            except KeyboardInterrupt:
                pass
