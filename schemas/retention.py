"""How long each topic keeps its messages (Kafka ``retention.ms``): short by default.

Frames, detections and pseudonymised frames are pictures of people: kept only as long as a stage
may lag behind (one hour). Tracklets carry crops and vectors: a day, for a
ReID replay after an outage. The public match events carry ids only: 30 days.
The audit trail is kept a year (a site's regulator may ask who looked at
whom). Dead letters keep the failing message for an operator to replay: a week.

``topic_configs(name)`` is what a topic is created or altered with.
"""

from __future__ import annotations

from schemas.topics import DEADLETTER, DETECTIONS, FRAMES, MATCHES, PSEUDONYMISED_FRAMES, TRACKLETS

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS

AUDIT_TOPIC = "crosscam.audit.v1"
"""The audit trail's topic (its message type is defined with the audit trail)."""

TOPIC_RETENTION_MS: dict[str, int] = {
    FRAMES.name: 1 * HOUR_MS,
    DETECTIONS.name: 1 * HOUR_MS,
    PSEUDONYMISED_FRAMES.name: 1 * HOUR_MS,
    TRACKLETS.name: 1 * DAY_MS,
    MATCHES.name: 30 * DAY_MS,
    DEADLETTER.name: 7 * DAY_MS,
    AUDIT_TOPIC: 365 * DAY_MS,
}
"""Default ``retention.ms`` per topic."""


def topic_configs(name: str, retention_ms: dict[str, int] | None = None) -> dict[str, str]:
    """Kafka topic configs for retention of topic ``name`` ({} for a topic with no limit set)."""
    ms = (retention_ms or TOPIC_RETENTION_MS).get(name)
    return {} if ms is None else {"retention.ms": str(ms)}
