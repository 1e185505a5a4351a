"""Prometheus metrics of the ingest stage (``crosscam_ingest_<what>_<unit>``, by camera)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from ingest.capture import DropReason, SourceObserver, SourceState

FRAMES_CAPTURED = Counter(
    "crosscam_ingest_frames_captured_total", "Frames received from the camera", ["camera"]
)
FRAMES_SAMPLED_OUT = Counter(
    "crosscam_ingest_frames_sampled_out_total",
    "Frames not due at the analysis frame rate (by design, not a loss)",
    ["camera"],
)
FRAMES_PUBLISHED = Counter(
    "crosscam_ingest_frames_published_total", "Frames acknowledged by Kafka", ["camera"]
)
FRAMES_DROPPED = Counter(
    "crosscam_ingest_frames_dropped_total",
    "Frames lost: behind (a newer frame replaced it), bad_frame (would not decode or "
    "encode), backlog (publish queue full while Kafka was slow or down)",
    ["camera", "reason"],
)
RECONNECTS = Counter(
    "crosscam_ingest_reconnects_total", "Open attempts after the first", ["camera"]
)
ENCODE_SECONDS = Histogram(
    "crosscam_ingest_encode_seconds",
    "Resize + JPEG encode time per frame",
    ["camera"],
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
)
FRAME_BYTES = Histogram(
    "crosscam_ingest_frame_bytes",
    "JPEG bytes per published frame",
    ["camera"],
    buckets=(8e3, 16e3, 32e3, 64e3, 128e3, 256e3, 512e3, 1e6, 2e6, 4e6),
)
CAMERA_ONLINE = Gauge(
    "crosscam_ingest_camera_online", "1 while frames flow from the camera", ["camera"]
)
STATUS_WRITE_ERRORS = Counter(
    "crosscam_ingest_status_write_errors_total",
    "Failed writes of the camera status to Redis",
    ["camera"],
)


class PrometheusObserver(SourceObserver):
    """Feeds a :class:`~ingest.capture.FrameSource`'s events into the metrics above."""

    def __init__(self, camera_id: str) -> None:
        self.camera_id = camera_id
        self._captured = FRAMES_CAPTURED.labels(camera_id)
        self._sampled_out = FRAMES_SAMPLED_OUT.labels(camera_id)
        self._reconnects = RECONNECTS.labels(camera_id)
        self._online = CAMERA_ONLINE.labels(camera_id)
        self._online.set(0)

    def on_captured(self) -> None:
        """A frame was read from the source."""
        self._captured.inc()

    def on_sampled_out(self) -> None:
        """A frame was skipped to hold the analysis rate."""
        self._sampled_out.inc()

    def on_dropped(self, reason: DropReason) -> None:
        """A frame was dropped, for ``reason``."""
        FRAMES_DROPPED.labels(self.camera_id, str(reason)).inc()

    def on_reconnect(self) -> None:
        """The source is being reopened."""
        self._reconnects.inc()

    def on_state(self, state: SourceState) -> None:
        """The connection state changed: the camera-online gauge follows."""
        self._online.set(1 if state == SourceState.ONLINE else 0)
