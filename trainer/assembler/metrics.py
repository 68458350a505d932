"""The assembler's Prometheus series (booth_deadletters_total lives in infra.deadletters), and the
consumer lag of kafka-python consumers (the assembler's and the trainer's)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from infra.metrics_names import set_consumer_lag

SAMPLES = Counter("booth_assembler_samples_total", "Dataset samples written to object storage", ["camera"])
BYTES = Counter("booth_assembler_bytes_total", "Bytes the assembler wrote to object storage")
REJECTED = Counter("booth_assembler_rejected_total", "Frames and messages that gave no sample", ["reason"])
DATASET_READY_SECONDS = Histogram(
    "booth_dataset_ready_seconds", "From a session's end event to its DatasetReady",
    buckets=(0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 60, 120, 300),
)


def report_consumer_lag(consumer, group: str) -> None:
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
