"""Prometheus metrics of the tracker stage (labelled by camera, never by track)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

UPDATE_BUCKETS = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1)
CHECKPOINT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)

ACTIVE_TRACKS = Gauge(
    "crosscam_tracker_active_tracks", "Live tracks (tentative and confirmed) per camera", ["camera"]
)
TRACKLETS_EMITTED = Counter(
    "crosscam_tracker_tracklets_emitted_total", "Finished tracklets produced", ["camera", "reason"]
)
TRACKLETS_DROPPED = Counter(
    "crosscam_tracker_tracklets_dropped_total",
    "Finished tracks dropped as too short or too poor",
    ["camera", "reason"],
)
UPDATE_SECONDS = Histogram(
    "crosscam_tracker_update_seconds",
    "Tracker core time for one frame",
    ["camera"],
    buckets=UPDATE_BUCKETS,
)
DUPLICATE_FRAMES = Counter(
    "crosscam_tracker_duplicate_frames_total",
    "Frames skipped because the state had already applied them",
    ["camera"],
)
CHECKPOINT_SECONDS = Histogram(
    "crosscam_tracker_checkpoint_seconds",
    "Time to serialise and save one camera's state",
    ["camera"],
    buckets=CHECKPOINT_BUCKETS,
)
CHECKPOINT_BYTES = Gauge(
    "crosscam_tracker_checkpoint_bytes", "Size of the camera's last saved state", ["camera"]
)
CHECKPOINT_ERRORS = Counter(
    "crosscam_tracker_checkpoint_errors_total",
    "Failed state saves or loads",
    ["camera", "operation"],
)
RESTORES = Counter(
    "crosscam_tracker_restores_total",
    "Cameras first seen by this process, by outcome",
    ["camera", "outcome"],
)
