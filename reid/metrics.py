"""The ReID stage's own Prometheus metrics (labelled by camera, never by person)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

TRACKLETS_IN = Counter("crosscam_reid_tracklets_in_total", "Tracklets consumed", ["camera"])
TRACKLETS_SKIPPED = Counter(
    "crosscam_reid_tracklets_skipped_total",
    "Tracklets not linked (replay, no vectors)",
    ["camera", "reason"],
)
LINKS = Counter(
    "crosscam_reid_links_total", "Tracklets that joined an existing identity", ["camera"]
)
NEW_IDENTITIES = Counter(
    "crosscam_reid_new_identities_total", "Tracklets that started an identity", ["camera"]
)
MERGES = Counter("crosscam_reid_merges_total", "Identities merged into another")
SPLITS = Counter("crosscam_reid_splits_total", "Tracklets a revisit moved to another identity")
SEARCH_SECONDS = Histogram(
    "crosscam_reid_search_seconds",
    "Vector store search per tracklet",
    ["camera"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
)
STORE_POINTS = Gauge("crosscam_reid_store_points", "Tracklets in the vector store")
LIVE_TRACKLETS = Gauge("crosscam_reid_live_tracklets", "Tracklets in the linker's revisit window")
