"""The one JSON state the page draws: control-topic rows, preview counts and pipeline numbers merged."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from tools.warning_words import explain, headline

MAX_SESSIONS = 50


def _session_row(name: str, control: dict | None, counts: dict | None) -> dict[str, Any]:
    c = control or {}
    n = counts or {}
    training = None
    if c.get("phase") is not None:
        step, total = c.get("step") or 0, c.get("total_steps") or 0
        training = {
            "phase": c["phase"],
            "step": step,
            "total_steps": total,
            "fraction": min(1.0, step / total) if total else None,
            "eta_s": c.get("eta_s"),
            "losses": c.get("losses") or {},
            "message": c.get("message"),
            "warnings": c.get("warnings") or [],  # as the trainer wrote them
            # Each in an operator's words, the trainer's text kept as its details (tools.warning_words).
            "notices": [explain(w) for w in c.get("warnings") or []],
        }
    rendition = None
    if c.get("rendition_url"):
        rendition = {
            "url": c["rendition_url"],
            "frames": c.get("frames"),
            "quality": c.get("quality") or {},
            "version": c.get("version"),
            "versions": c.get("versions") or [],  # the quality curve: one point per version, oldest first
            "qr_svg": f"/api/sessions/{name}/qr.svg",
            "qr_png": f"/api/sessions/{name}/qr.png",
        }
    return {
        "session": name,
        "state": c.get("state"),
        "cameras": c.get("cameras") or n.get("cameras_seen") or [],
        "reference": c.get("reference"),
        "consent": c.get("consent"),
        "started_at": c.get("started_at"),
        "ended_at": c.get("ended_at"),
        "frames": n.get("frames", 0),
        "poses": n.get("poses", 0),
        "with_person": n.get("with_person", 0),
        "imputed_share": n.get("imputed_share"),
        "outlier_share": n.get("outlier_share"),
        "dataset": None if c.get("dataset") is None else {"status": c["dataset"], "samples": c.get("samples")},
        "failure": c.get("failure"),
        "training": training,
        "rendition": rendition,
        "coverage": c.get("coverage"),
        "status_line": status_line(c, n, training, rendition),
        "updated_at": max(c.get("updated_at") or 0.0, n.get("last_frame_at") or 0.0) or None,
    }


def status_line(c: dict, n: dict, training: dict | None, rendition: dict | None) -> str:
    """One line for the operator: recording -> assembling -> first video -> training x% -> final,
    then what the trainer warned of that may show in the video, in a few words."""
    line = _progress_line(c, n, training, rendition)
    heads_up = headline(training.get("warnings") or []) if training and not c.get("failure") else ""
    return f"{line} · ⚠ {heads_up}" if heads_up else line


def _progress_line(c: dict, n: dict, training: dict | None, rendition: dict | None) -> str:
    if c.get("failure"):
        return f"failed: {c['failure']}"
    state = c.get("state")
    if state == "abort":
        return "aborted"
    if rendition and rendition.get("versions") and any(v.get("final") for v in rendition["versions"]):
        return "final video ready"
    if state in (None, "start"):
        cov = c.get("coverage") or {}
        covered = f", dance covered {cov['coverage']:.0%}" if cov else ""
        return f"recording: {n.get('frames', 0)} frames{covered}"
    if c.get("dataset") is None:
        return "assembling the recording"
    if training and training["phase"] == "training" and training["fraction"] is not None:
        eta = training.get("eta_s")
        first = "first video ready, " if rendition else ""
        left = f", about {_minutes(eta)} left" if eta else ""
        return f"{first}training {training['fraction']:.0%}{left}"
    if training:
        return ("first video ready, " if rendition else "") + f"{training['phase']}"
    return "dataset ready, waiting for the trainer"


def _minutes(seconds: float) -> str:
    # Whole minutes (half a minute under two): a figure that jumps each second reads as unsteady.
    if seconds < 120:
        return f"{max(0.5, round(seconds / 30) / 2):g} min"
    return f"{round(seconds / 60):.0f} min"


def _pipeline(snap: dict[str, Any] | None) -> dict[str, Any]:
    if snap is None:
        return {
            "stages": [],
            "drops": None,
            "deadletters": {"total": 0, "by_stage": {}, "last": []},
            "components": {},
            "invalid_control_messages": 0,
            "taken_at": None,
        }
    components = snap.get("components", {})
    dead = snap["deadletters"]
    stages = []
    for stage, s in snap["stages"].items():
        comp = components.get(s["component"], {})
        stages.append(
            {
                "stage": stage,
                "component": s["component"],
                "up": comp.get("up", False),
                "total": s["total"],
                "rate": s["rate"],
                "deadletters": dead["by_stage"].get(stage, 0),
            }
        )
    # Stages that dead-letter without a throughput counter of their own (trainer, say) still show.
    for stage, count in sorted(dead["by_stage"].items()):
        if stage not in snap["stages"]:
            stages.append(
                {"stage": stage, "component": None, "up": None, "total": None, "rate": None, "deadletters": count}
            )
    return {
        "stages": stages,
        "drops": snap.get("drops"),
        "deadletters": dead,
        "components": components,
        "invalid_control_messages": snap.get("invalid_control_messages", 0),
        "training_metrics": snap.get("training_metrics", {}),
        "taken_at": snap.get("taken_at"),
    }


def build_state(
    snapshot: dict[str, Any] | None,
    counts: dict[str, dict],
    cameras: list[dict],
    errors: Sequence[str | None] = (),
    now: float | None = None,
) -> dict[str, Any]:
    """snapshot: StatusWatcher.refresh() (None before the first); counts and cameras: PreviewFeed's."""
    control = {row["session"]: row for row in (snapshot or {}).get("sessions", [])}
    rows = [_session_row(name, control.get(name), counts.get(name)) for name in set(control) | set(counts)]
    rows.sort(key=lambda r: r["updated_at"] or 0.0, reverse=True)
    return {
        "now": time.time() if now is None else now,
        "ready": snapshot is not None,
        "sessions": rows[:MAX_SESSIONS],
        "cameras": cameras,
        "pipeline": _pipeline(snapshot),
        "errors": [e for e in [*((snapshot or {}).get("errors") or []), *errors] if e],
    }
