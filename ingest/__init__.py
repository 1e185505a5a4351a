"""Ingest: one process per camera, from RTSP or a file to the frames topic.

Pure core (no Kafka, Redis, Prometheus or asyncio): :mod:`ingest.capture`
(reading with timeouts, a watchdog and reconnects), :mod:`ingest.sampler`
(analysis frame rate), :mod:`ingest.encode` (resize + JPEG),
:mod:`ingest.backoff` and :mod:`ingest.rate`. The thin services are
:mod:`ingest.service` (``crosscam ingest``), :mod:`devstack.replay`
(``crosscam replay``) and :mod:`bench.ingest` (``crosscam bench ingest``).
"""
