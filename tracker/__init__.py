"""The tracker stage: per-camera Deep SORT style tracking (detections -> tracklets).

Pure core, one idea per module:

* :mod:`tracker.kalman` — batched constant-velocity Kalman filter on (cx, cy, aspect, height).
* :mod:`tracker.matching` — cost matrices (cosine, occlusion) and assignment; box IoU
  comes from :mod:`common.boxes`.
* :mod:`tracker.track` — one track's state, its appearance gallery and its best crops.
* :mod:`tracker.core` — :class:`~tracker.core.TrackerParams` and
  :class:`~tracker.core.CameraTracker`, the per-camera tracker.
* :mod:`tracker.state` — compact serialisation of a camera's tracker state.

Service side: :mod:`tracker.state_store` (that state in Redis),
:mod:`tracker.settings` (inherits ``TrackerParams``), :mod:`tracker.metrics`
and :mod:`tracker.service` (``crosscam tracker``, the Kafka stage).

This package imports nothing heavy at import time, so a caller can pin the
maths libraries to one thread before numpy loads.
"""
