"""The assembler's Prometheus series (booth_deadletters_total lives in infra.deadletters,
booth_consumer_lag in infra.consume)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

SAMPLES = Counter("booth_assembler_samples_total", "Dataset samples written to object storage", ["camera"])
BYTES = Counter("booth_assembler_bytes_total", "Bytes the assembler wrote to object storage")
REJECTED = Counter("booth_assembler_rejected_total", "Frames and messages that gave no sample", ["reason"])
DATASET_READY_SECONDS = Histogram(
    "booth_dataset_ready_seconds",
    "From a session's end event to its DatasetReady",
    buckets=(0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 60, 120, 300),
)
GAVE_UP = Counter(
    "booth_assembler_gave_up_total",
    "Sessions closed before the poses of their cameras' announced last frames came (--end-timeout)",
)
