"""The tracker stage: per-camera Deep SORT style tracking (detections -> tracklets).

Modules, one idea each:

* :mod:`tracker.kalman` — batched constant-velocity Kalman filter on (cx, cy, aspect, height).
* :mod:`tracker.matching` — cost matrices (IoU, cosine, Mahalanobis gate) and assignment.
* :mod:`tracker.track` — one track's state, its appearance gallery and its best crops.
* :mod:`tracker.core` — :class:`~tracker.core.CameraTracker`, the per-camera tracker.
* :mod:`tracker.state` — compact serialisation of a camera's tracker state.
* :mod:`tracker.state_store` — that state in Redis.
* :mod:`tracker.service` — ``crosscam tracker``, the Kafka stage.
* :mod:`evaluation.mot`, :mod:`bench.tracker` — ``crosscam eval mot``, ``crosscam bench tracker``.

This package imports nothing heavy at import time, so ``crosscam bench tracker``
can pin the maths libraries to one thread before numpy loads.
"""
