"""Message contracts shared by every stage (see schemas/README.md for the wire format)."""

from schemas.ids import InvalidId, validate_id, frame_key, parse_frame_key
from schemas.messages import (
    DatasetReady,
    DeadLetter,
    Frame,
    Message,
    Person,
    PoseEstimate,
    Rendition,
    SchemaError,
    SessionEvent,
    SmoothedPose,
    TrainingProgress,
    decode,
    decode_as,
)

__all__ = [
    "DatasetReady", "DeadLetter", "Frame", "InvalidId", "Message", "Person", "PoseEstimate",
    "Rendition", "SchemaError", "SessionEvent", "SmoothedPose", "TrainingProgress", "decode",
    "decode_as", "frame_key", "parse_frame_key", "validate_id",
]
