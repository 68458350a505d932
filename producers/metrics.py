"""Prometheus metrics of the camera producers, labelled by camera (served by infra.metrics.serve)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

FRAMES_CAPTURED = Counter("booth_camera_frames_captured", "Frames taken from a source into the pipeline", ["camera"])
FRAMES_SENT = Counter("booth_camera_frames_sent", "Frames handed to the Kafka producer", ["camera"])
FRAMES_ACKNOWLEDGED = Counter("booth_camera_frames_acknowledged", "Frames the broker acknowledged", ["camera"])
FRAMES_DROPPED = Counter("booth_camera_frames_dropped", "Frames dropped because the send queue was full", ["camera"])
FRAMES_FAILED = Counter("booth_camera_frames_failed", "Frames the producer could not deliver", ["camera"])
FRAMES_RECORDED = Counter(
    "booth_camera_frames_recorded", "Frames written to a spool video (--record-first)", ["camera"]
)
BYTES_SENT = Counter("booth_camera_bytes_sent", "Message bytes handed to the Kafka producer", ["camera"])
QUEUE_DEPTH = Gauge("booth_camera_queue_depth", "Frames waiting between capture and sender", ["camera"])
ENCODE_SECONDS = Histogram(
    "booth_camera_encode_seconds",
    "Resize + JPEG encode time per frame",
    ["camera"],
    buckets=(0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128),
)

# Summary field -> counter, so a count and its metric are always bumped together.
COUNTERS = {
    "captured": FRAMES_CAPTURED,
    "sent": FRAMES_SENT,
    "acknowledged": FRAMES_ACKNOWLEDGED,
    "dropped": FRAMES_DROPPED,
    "failed": FRAMES_FAILED,
    "recorded": FRAMES_RECORDED,
    "bytes_sent": BYTES_SENT,
}
