"""Record topics to an MCAP file and replay them, to debug a session away from the live booth.

The file layout is documented in tools/replay/layout.py.
"""

from tools.replay.layout import KafkaRecord, RecordingError, RecordingInfo, iter_records, read_info
from tools.replay.record import RecordSummary, record
from tools.replay.replay import ReplayError, ReplaySummary, parse_topic_map, replay
from tools.replay.sessions import belongs_to, rewrite_key, rewrite_value, session_of

__all__ = [
    "KafkaRecord",
    "RecordSummary",
    "RecordingError",
    "RecordingInfo",
    "ReplayError",
    "ReplaySummary",
    "belongs_to",
    "iter_records",
    "parse_topic_map",
    "read_info",
    "record",
    "replay",
    "rewrite_key",
    "rewrite_value",
    "session_of",
]
