"""Message contracts: versioned types, topic names and the one codec.

Internal topics carry msgpack (msgspec); the public ``matches`` topic carries
JSON described by a published JSON Schema (``crosscam schemas export DIR``).
"""

from schemas.codec import DecodeError, decode, encode
from schemas.messages import (
    CAMERA_ID_PATTERN,
    SCHEMA_VERSION,
    AuditEvent,
    Crop,
    DeadLetter,
    Detections,
    Frame,
    Match,
    MatchedTracklet,
    Tracklet,
)
from schemas.topics import TOPICS, Topic

__all__ = [
    "CAMERA_ID_PATTERN",
    "SCHEMA_VERSION",
    "AuditEvent",
    "TOPICS",
    "Crop",
    "DeadLetter",
    "DecodeError",
    "Detections",
    "Frame",
    "Match",
    "MatchedTracklet",
    "Topic",
    "Tracklet",
    "decode",
    "encode",
]
