"""Monitoring: the Prometheus config, the Grafana dashboard, the metric names, and `booth status`."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time

import pytest
import yaml

from infra import kafka
from infra.metrics import DEFAULT_PORTS
from infra.metrics_names import EXPECTED_SERIES, STAGE_COUNTERS, known_sample_names
from infra.settings import REPO_ROOT
from infra.stack import PROMETHEUS_CONFIG, free_port
from schemas import DeadLetter, Rendition, SessionEvent, TrainingProgress

DASHBOARD = REPO_ROOT / "infra" / "grafana-dashboard.json"
_SERIES = re.compile(r"\bbooth_[a-z0-9_]+")


def _dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def _exprs(dashboard: dict) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_prometheus_scrapes_every_component_every_5s(tmp_path):
    assert PROMETHEUS_CONFIG == REPO_ROOT / "infra" / "prometheus.yml"  # the file `booth stack up` passes
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    assert config["global"]["scrape_interval"] == "5s"
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for component, port in DEFAULT_PORTS.items():
        assert component in jobs, f"no scrape job for {component}"
        targets = [t for sc in jobs[component]["static_configs"] for t in sc["targets"]]
        assert targets == [f"127.0.0.1:{port}"], f"{component} is scraped at {targets}, serves on {port}"
        assert jobs[component].get("scrape_interval", "5s") == "5s"
    if shutil.which("promtool") is None:
        return  # Prometheus is optional (Debian package `prometheus`); the YAML checks above still ran
    done = subprocess.run(["promtool", "check", "config", str(PROMETHEUS_CONFIG)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    # The dashboard's queries are PromQL too: promtool parses them as recording rules.
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query{i}", "expr": e.replace("$__rate_interval", "1m")}
                    for i, e in enumerate(_exprs(_dashboard()))
                ],
            }
        ]
    }
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules))
    done = subprocess.run(["promtool", "check", "rules", str(tmp_path / "rules.yml")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_metric_names_belong_to_known_components():
    for series in EXPECTED_SERIES.values():
        assert series.name.startswith("booth_")
        assert series.kind != "counter" or series.name.endswith("_total"), series.name
        assert series.components and set(series.components) <= set(DEFAULT_PORTS), series
    assert set(STAGE_COUNTERS.values()) <= set(EXPECTED_SERIES)
    assert "booth_pose_latency_seconds_bucket" in known_sample_names()
    assert "booth_pose_latency_seconds" not in known_sample_names()  # a histogram scrapes as _bucket etc.


def test_dashboard_is_a_valid_grafana_dashboard_over_known_series():
    dash = _dashboard()
    assert 36 <= dash["schemaVersion"] <= 41
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    referenced = set()
    for panel in dash["panels"]:
        assert panel["title"] and panel["type"] in {"timeseries", "stat", "gauge", "bargauge", "table"}
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]) and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        assert panel["targets"], f"panel {panel['title']!r} has no queries"
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), f"panel {panel['title']!r} repeats a refId"
        for t in panel["targets"]:
            assert t["datasource"]["uid"] == "${datasource}", "queries must use the datasource variable"
            assert t["expr"].strip() and t["expr"].count("(") == t["expr"].count(")"), t["expr"]
            found = set(_SERIES.findall(t["expr"]))
            assert found, f"{t['expr']!r} reads no booth series"
            unknown = found - known_sample_names()
            assert not unknown, f"panel {panel['title']!r} reads unknown series {unknown}"
            referenced |= found
    # Every exported series is on the dashboard (a histogram through its _bucket).
    for series in EXPECTED_SERIES.values():
        wanted = series.name + "_bucket" if series.kind == "histogram" else series.name
        assert wanted in referenced, f"{series.name} is exported but not on the dashboard"
    latency = " ".join(_exprs(dash))
    assert "histogram_quantile(0.95" in latency and "histogram_quantile(0.5" in latency


# --- booth status -----------------------------------------------------------------------------
@pytest.fixture
def fake_processor():
    """A /metrics endpoint whose pose counter climbs while the test runs."""
    from prometheus_client import CollectorRegistry, Counter, start_http_server

    registry = CollectorRegistry()
    frames = Counter("booth_pose_frames", "frames", registry=registry)
    frames.inc(100)
    server, _thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    stop = threading.Event()

    def climb():
        while not stop.wait(0.05):
            frames.inc(5)

    ticker = threading.Thread(target=climb, daemon=True)
    ticker.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/metrics"
    stop.set()
    ticker.join()
    server.shutdown()


def test_status_snapshot_shows_sessions_training_deadletters_and_rates(settings, fake_processor):
    from rich.console import Console

    from tools.status_view import render, snapshot

    now = time.time()
    p = kafka.producer(settings)
    p.send(
        settings.topic_sessions,
        key=b"s-42",
        value=SessionEvent(
            session="s-42", kind="start", wall_time=now, cameras=["cam0", "cam1"], reference="ref1"
        ).encode(),
    )
    p.send(  # a trainer warning: `booth status` names what it means for the video
        settings.topic_training,
        key=b"s-42",
        value=TrainingProgress(
            session="s-42",
            phase="loading",
            step=0,
            total_steps=0,
            message="warning: the person is cut off by the frame's edge in 40% of the training frames",
            wall_time=now + 0.5,
        ).encode(),
    )
    p.send(
        settings.topic_training,
        key=b"s-42",
        value=TrainingProgress(
            session="s-42",
            phase="training",
            step=40,
            total_steps=100,
            losses={"G_GAN": 0.7, "D_real": 0.3},
            eta_s=55,
            wall_time=now + 1,
        ).encode(),
    )
    p.send(
        settings.topic_deadletter,
        value=DeadLetter.wrap(
            stage="pose",
            reason="image does not decode",
            topic=settings.topic_frames,
            value=b"junk",
            key=b"s-42/cam0",
            wall_time=now,
        ).encode(),
    )
    p.send(settings.topic_training, value=b"not an envelope")
    p.send(
        settings.topic_renditions,
        key=b"s-42",
        value=Rendition(
            session="s-42",
            reference="ref1",
            video_key="k.mp4",
            url="http://127.0.0.1:1/k.mp4",
            expires_at=now + 600,
            frames=48,
            metrics={
                "oneshot": 1.0,
                "dance_limb_error": 0.114,
                "dance_limb_floor": 0.102,
                "dance_facing_agreement": 0.9,
            },
            wall_time=now + 2,
            final=False,
            kind="preview",
        ).encode(),
    )
    p.flush()
    p.close()

    down = f"http://127.0.0.1:{free_port()}/metrics"
    snap = snapshot(settings, targets={"processors": fake_processor, "camera": down}, idle_s=0.8)

    (row,) = snap["sessions"]
    assert row["session"] == "s-42" and row["state"] == "start" and row["cameras"] == ["cam0", "cam1"]
    assert (row["phase"], row["step"], row["total_steps"], row["eta_s"]) == ("training", 40, 100, 55)
    assert row["losses"] == {"G_GAN": 0.7, "D_real": 0.3}
    assert snap["deadletters"]["by_stage"] == {"pose": 1}
    assert snap["invalid_control_messages"] == 1 and "bad magic" in snap["last_invalid"]
    pose = snap["stages"]["pose"]
    assert pose["total"] > 100 and pose["rate"] > 0
    assert snap["stages"]["camera"]["total"] is None  # its endpoint is down: no number, not a zero
    assert snap["components"]["processors"]["up"] and not snap["components"]["camera"]["up"]

    console = Console(record=True, width=200)
    console.print(render(snap))
    text = console.export_text()
    assert "s-42" in text and "training 40/100" in text and "dead letters: 1 pose=1" in text
    assert "dance limb 0.11 (floor 0.10), facing 90%" in text  # the preview judged on the dance it shows
    assert "⚠ partly out of the picture" in text and "cut off by the frame" not in text


def test_status_once_cli_prints_the_snapshot_as_json(settings):
    from click.testing import CliRunner

    from tools.commands import status

    p = kafka.producer(settings)
    p.send(
        settings.topic_sessions,
        key=b"cli-1",
        value=SessionEvent(session="cli-1", kind="end", wall_time=time.time()).encode(),
    )
    p.flush()
    p.close()
    result = CliRunner().invoke(status, ["--once", "--json", "--idle", "0.5"], obj={"settings": settings})
    assert result.exit_code == 0, result.output
    snap = json.loads(result.output)
    assert [(r["session"], r["state"]) for r in snap["sessions"]] == [("cli-1", "end")]
    assert set(snap["components"]) == set(DEFAULT_PORTS)
    bad = CliRunner().invoke(status, ["--json"], obj={"settings": settings})
    assert bad.exit_code != 0 and "--json needs --once" in bad.output
