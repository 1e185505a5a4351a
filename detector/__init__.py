"""The detector stage: people boxes and one appearance vector per box.

Pure core (no Kafka, Redis, Prometheus or asyncio):

* :mod:`detector.zoo` — the models we know, as data (input size, layout, mean/std,
  thresholds, checksum).
* :mod:`detector.checksum` — SHA-256 checks of model files, cached by (path, mtime, size).
* :mod:`detector.config` — strict pydantic configuration; ``type`` picks the backend.
* :mod:`detector.runtime` — model runtimes (ONNX Runtime, OpenVINO; float32, or bfloat16
  where native) and the timed `auto` choice.
* :mod:`detector.preprocess`, :mod:`detector.decode` — letterbox, YOLOX / YOLOv8 decoding, NMS.
* :mod:`detector.backends` — the ``Detector`` protocol, ONNX and HOG backends.
* :mod:`detector.embedder` — the ``Embedder`` protocol and the ONNX appearance embedder.
* :mod:`detector.background` — per-camera background subtraction (MOG2 / KNN).
* :mod:`detector.motion` — motion gating: frames in which nothing moved are not analysed.
* :mod:`detector.analyzer` — detector + embedder for one frame or a batch.
* :mod:`detector.core` — frames in, :class:`schemas.Detections` out.

Service side: :mod:`detector.stage` (frames -> detections over Kafka),
:mod:`detector.service` (``crosscam detector``), :mod:`detector.settings`,
:mod:`detector.metrics`.
"""
