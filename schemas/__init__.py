"""Message contracts shared by every stage (see schemas/README.md for the wire format)."""

from schemas.ids import InvalidId, frame_key, parse_frame_key, validate_id
from schemas.messages import (
    Claim,
    Coverage,
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
)

__all__ = [
    "Claim",
    "Coverage",
    "DatasetReady",
    "DeadLetter",
    "Frame",
    "InvalidId",
    "Message",
    "Person",
    "PoseEstimate",
    "Rendition",
    "SchemaError",
    "SessionEvent",
    "SmoothedPose",
    "TrainingProgress",
    "decode",
    "frame_key",
    "parse_frame_key",
    "validate_id",
]
