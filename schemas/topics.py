"""Topic names, in one place (``crosscam.<entity>.v<N>``), and what each carries."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from schemas.messages import AuditEvent, DeadLetter, Detections, Frame, Match, Tracklet


@dataclass(frozen=True)
class Topic:
    """A topic, the message type on it, its encoding, and what its key is."""

    name: str
    message_type: type[msgspec.Struct]
    encoding: str  # "msgpack" (internal) or "json" (public)
    key: str


FRAMES = Topic("crosscam.frames.v1", Frame, "msgpack", "camera_id")
DETECTIONS = Topic("crosscam.detections.v1", Detections, "msgpack", "camera_id")
TRACKLETS = Topic("crosscam.tracklets.v1", Tracklet, "msgpack", "camera_id")
MATCHES = Topic("crosscam.matches.v1", Match, "json", "global_id")
DEADLETTER = Topic("crosscam.deadletter.v1", DeadLetter, "msgpack", "stage")
PSEUDONYMISED_FRAMES = Topic("crosscam.frames.pseudonymised.v1", Frame, "msgpack", "camera_id")
"""Frames of opted-in cameras with every person obscured (``crosscam anonymize-live``)."""
AUDIT = Topic("crosscam.audit.v1", AuditEvent, "json", "who")
"""Public: the audit trail (who asked what about whom), for a site's SIEM."""

TOPICS: dict[str, Topic] = {
    t.name: t
    for t in (FRAMES, DETECTIONS, TRACKLETS, MATCHES, DEADLETTER, AUDIT, PSEUDONYMISED_FRAMES)
}
