"""Record topics to an MCAP file and replay them, to debug a session away from the live booth.

The file layout is documented in infra/replay/layout.py.
"""

from infra.replay.layout import KafkaRecord, RecordingError, RecordingInfo, iter_records, read_info
from infra.replay.record import RecordSummary, record
from infra.replay.replay import ReplayError, ReplaySummary, parse_topic_map, replay
from infra.replay.sessions import belongs_to, rewrite_key, rewrite_value, session_of

__all__ = [
    "KafkaRecord", "RecordSummary", "RecordingError", "RecordingInfo", "ReplayError", "ReplaySummary",
    "belongs_to", "iter_records", "parse_topic_map", "read_info", "record", "replay", "rewrite_key",
    "rewrite_value", "session_of",
]
