"""The Prometheus series the components export: one list that the dashboard, `booth status` and the
components' own tests agree on.

Counters are named with their ``_total`` suffix (as scraped); histograms by their base name, which
scrapes as ``_bucket``, ``_sum`` and ``_count`` (see `scraped_names`). Labels listed here are the
ones the dashboard groups by: an exporter must set them (it may add more).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from prometheus_client import Counter, Gauge


@dataclass(frozen=True)
class Series:
    name: str
    kind: Literal["counter", "gauge", "histogram"]
    components: tuple[str, ...]  # keys of infra.metrics.DEFAULT_PORTS that export it
    help: str
    labels: tuple[str, ...] = ()


_ALL = (
    Series(
        "booth_camera_frames_sent_total", "counter", ("camera",), "frames published to the frames topic", ("camera",)
    ),
    Series(
        "booth_camera_frames_dropped_total", "counter", ("camera",), "frames dropped before publishing", ("camera",)
    ),
    Series("booth_pose_frames_total", "counter", ("processors",), "frames the pose stage estimated"),
    Series("booth_pose_latency_seconds", "histogram", ("processors",), "pose inference time per frame"),
    Series("booth_capture_to_pose_seconds", "histogram", ("processors",), "capture wall time to pose published"),
    Series("booth_smooth_poses_total", "counter", ("processors",), "smoothed poses published"),
    Series(
        "booth_pose_people_dropped_total",
        "counter",
        ("processors",),
        "people found beyond pose_max_people and not carried",
        ("backend",),
    ),
    Series(
        "booth_pose_cpu_seconds_total",
        "counter",
        ("processors",),
        "CPU seconds a pose worker spent per step (decode, inference, tracking, smoothing)",
        ("step",),
    ),
    Series(
        "booth_pose_decoded_frames_total",
        "counter",
        ("processors",),
        "frames the pose stage decoded, by JPEG DCT reduction (1 = whole)",
        ("reduction",),
    ),
    Series(
        "booth_pose_inference_restarts_total",
        "counter",
        ("processors",),
        "times a pose worker's inference process died and was started again",
    ),
    Series("booth_tracks_started_total", "counter", ("processors",), "identity tracks started (a new person)"),
    Series("booth_tracks_ended_total", "counter", ("processors",), "identity tracks ended (a person gone)"),
    Series(
        "booth_consumer_lag",
        "gauge",
        ("processors", "assembler", "trainer", "console"),
        "records behind the partition's end",
        ("group", "topic", "partition"),
    ),
    Series(
        "booth_trainer_sessions_total",
        "counter",
        ("trainer",),
        "sessions the trainer finished: rendered, or failed with a reason",
        ("outcome",),
    ),
    Series("booth_assembler_samples_total", "counter", ("assembler",), "dataset samples written to object storage"),
    Series(
        "booth_deadletters_total",
        "counter",
        ("processors", "assembler", "trainer"),
        "messages sent to the dead-letter topic",
        ("stage",),
    ),
    Series(
        "booth_consumer_log_resets_total",
        "counter",
        ("processors", "assembler", "trainer", "console"),
        "partitions found beyond the broker's log end (it lost its log) and read again from its start",
        ("group", "topic"),
    ),
    Series(
        "booth_preview_skipped_total",
        "counter",
        ("console",),
        "records the console preview passed over to show the newest frame",
        ("topic",),
    ),
    Series("booth_training_step", "gauge", ("trainer",), "current fine-tuning step", ("session",)),
    Series("booth_training_loss", "gauge", ("trainer",), "latest value of each training loss", ("session", "loss")),
    Series("booth_training_eta_seconds", "gauge", ("trainer",), "estimated seconds until training ends", ("session",)),
    Series("booth_replay_messages_total", "counter", ("replay",), "recorded messages replayed into topics", ("topic",)),
)

EXPECTED_SERIES: dict[str, Series] = {s.name: s for s in _ALL}

# The counters `booth status` turns into per-stage rates, stage name -> counter.
STAGE_COUNTERS: dict[str, str] = {
    "camera": "booth_camera_frames_sent_total",
    "pose": "booth_pose_frames_total",
    "smooth": "booth_smooth_poses_total",
    "assembler": "booth_assembler_samples_total",
}


def scraped_names(series: Series) -> tuple[str, ...]:
    """The sample names a scrape of this series shows."""
    if series.kind == "histogram":
        return tuple(series.name + suffix for suffix in ("_bucket", "_sum", "_count"))
    return (series.name,)


def known_sample_names() -> set[str]:
    return {name for s in EXPECTED_SERIES.values() for name in scraped_names(s)}


# booth_consumer_lag is set by several components (the Faust worker, the assembler, the trainer), so
# it is registered once here: a process that runs two of them (tests, a demo) must not register it twice.
_LAG = EXPECTED_SERIES["booth_consumer_lag"]
CONSUMER_LAG = Gauge(_LAG.name, _LAG.help, list(_LAG.labels))
_RESETS = EXPECTED_SERIES["booth_consumer_log_resets_total"]
LOG_RESETS = Counter(_RESETS.name.removesuffix("_total"), _RESETS.help, list(_RESETS.labels))
_lag_reported: dict[str, set[tuple[str, int]]] = {}


def set_consumer_lag(group: str, lags: Mapping[tuple[str, int], int]) -> None:
    """Publish a consumer group's lag per (topic, partition). Partitions the group reported before
    but not now (revoked in a rebalance) are removed, so no stale lag lingers on the dashboard."""
    for topic, partition in _lag_reported.get(group, set()) - set(lags):
        CONSUMER_LAG.remove(group, topic, str(partition))
    for (topic, partition), lag in lags.items():
        CONSUMER_LAG.labels(group, topic, str(partition)).set(lag)
    _lag_reported[group] = set(lags)
