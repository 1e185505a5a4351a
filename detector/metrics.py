"""The detector stage's own Prometheus metrics (the loop's generic ones live in service.metrics).

Labels are camera, model role or provider: bounded sets, never a track or a person.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from detector.runtime import RuntimeChoice

INFERENCE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56)

INFERENCE_SECONDS = Histogram(
    "crosscam_detector_inference_seconds",
    "ONNX Runtime (or HOG) time of one analyzer call, per model role",
    ["model"],
    buckets=INFERENCE_BUCKETS,
)
BATCH_FRAMES = Histogram(
    "crosscam_detector_batch_frames",
    "Frames per analyzer call (frames of several cameras batched together)",
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
BOXES_PER_FRAME = Histogram(
    "crosscam_detector_boxes_per_frame",
    "People found in one frame",
    ["camera"],
    buckets=(0, 1, 2, 4, 8, 16, 32, 64, 128),
)
FRAMES = Counter(
    "crosscam_detector_frames_total",
    "Frames whose detections went out, analysed or still (rate() = frames per second)",
    ["camera"],
)
FRAMES_STILL = Counter(
    "crosscam_detector_frames_still_total",
    "Frames not analysed because nothing moved since the camera's last analysed frame "
    "(motion gating); their detections repeat that frame's",
    ["camera"],
)
FRAMES_PER_SECOND = Gauge(
    "crosscam_detector_frames_per_second",
    "Frames analysed per second of handling time, over the last batch",
)
CROPS_EMBEDDED = Counter(
    "crosscam_detector_crops_embedded_total",
    "Boxes the appearance model ran on; the others carried the vector of the box they "
    "continue (appearance on demand). Divide by the boxes for the share embedded",
)
REJECTED = Counter(
    "crosscam_detector_rejected_frames_total",
    "Frames dead-lettered by the detector (corrupt JPEG, claim-check key gone)",
    ["camera", "reason"],
)
PROVIDER = Gauge(
    "crosscam_detector_provider_info",
    "1 for the backend and execution provider each model runs on",
    ["model", "backend", "provider"],
)
STAGE_SECONDS = Histogram(
    "crosscam_detector_stage_seconds",
    "Time of one batch in the detector, by part (decode, analyze, crops, claim_check)",
    ["part"],
    buckets=INFERENCE_BUCKETS,
)
RUNTIME_MS = Gauge(
    "crosscam_detector_runtime_ms_per_item",
    "Start-up timing of each runtime candidate (engine:device:settings), ms per frame or crop",
    ["model", "candidate"],
)
RUNTIME_CHOSEN = Gauge(
    "crosscam_detector_runtime_chosen",
    "1 for the runtime candidate (engine:device:settings) chosen for each model role",
    ["model", "candidate"],
)


def export_runtime_choice(role: str, choice: RuntimeChoice | None) -> None:
    """Export which runtime runs model ``role`` ("detector"/"embedder") and the timings behind it."""
    if choice is None:
        return
    RUNTIME_CHOSEN.labels(role, choice.chosen).set(1)
    for candidate, ms in choice.ms_per_item.items():
        RUNTIME_MS.labels(role, candidate).set(ms)
