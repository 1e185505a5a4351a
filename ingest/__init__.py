"""The ingest stage: one process per camera, from RTSP or a file to the frames topic.

Pure core (no Kafka, Redis, Prometheus or asyncio):

* :mod:`ingest.capture` — reading with timeouts, a watchdog and reconnects
  (backoff from :mod:`common.backoff`).
* :mod:`ingest.sampler` — the analysis frame rate.
* :mod:`ingest.encode` — resize and JPEG.
* :mod:`ingest.rate` — measured frame rates.

Service side: :mod:`ingest.publish` (bounded outbox, gap-free numbering,
retries), :mod:`ingest.status` (the camera's status in Redis),
:mod:`ingest.service` (the per-camera service: build, pump, status,
shutdown), :mod:`ingest.settings`, :mod:`ingest.metrics` and
:mod:`ingest.cli` (``crosscam ingest``).
"""
