"""Prometheus endpoint per process, and the metrics every Kafka stage shares.

Names follow ``crosscam_<stage>_<what>_<unit>``; labels are stage, camera,
topic or partition, never a track or a person (unbounded cardinality).
Stage-specific metrics live in the stage's own package.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from service.settings import MetricsSettings

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

MESSAGES_IN = Counter(
    "crosscam_stage_messages_in_total", "Messages consumed by a stage", ["stage", "camera"]
)
MESSAGES_OUT = Counter(
    "crosscam_stage_messages_out_total",
    "Messages produced by a stage (acknowledged)",
    ["stage", "topic"],
)
DEAD_LETTERS = Counter(
    "crosscam_stage_dead_letters_total", "Messages a stage sent to the dead-letter topic", ["stage"]
)
BATCH_SECONDS = Histogram(
    "crosscam_stage_batch_seconds",
    "Time to handle one consumed batch (excluding produce)",
    ["stage"],
)
BATCH_RECORDS = Histogram(
    "crosscam_stage_batch_records",
    "Records per consumed batch",
    ["stage"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
CAPTURE_LATENCY = Histogram(
    "crosscam_stage_capture_latency_seconds",
    "From camera capture time (carried in the message) to this stage having handled it",
    ["stage"],
    buckets=LATENCY_BUCKETS,
)
CONSUMER_LAG = Gauge(
    "crosscam_stage_consumer_lag_messages",
    "High-water mark minus consumed position",
    ["stage", "partition"],
)
KAFKA_ERRORS = Counter(
    "crosscam_stage_kafka_errors_total", "Broker errors met (retried)", ["stage", "operation"]
)


def start_metrics_server(settings: MetricsSettings, name: str = "crosscam") -> int:
    """Serve ``/metrics`` for this process; returns the bound port (0 = disabled).

    With ``port = 0`` a free port is chosen. When ``CROSSCAM_METRICS_TARGETS_DIR``
    is set the endpoint is registered there as a Prometheus file-SD target, so
    the local Prometheus scrapes every stage without a fixed port plan.
    """
    if not settings.enabled:
        return 0
    server, _thread = start_http_server(settings.port, addr=settings.host)
    port = int(server.server_port)
    log.info(
        "metrics_serving", extra={"url": f"http://{settings.host}:{port}/metrics", "service": name}
    )
    targets = os.environ.get("CROSSCAM_METRICS_TARGETS_DIR")
    if targets:
        # One file per endpoint: a restarted process on the same port replaces its entry.
        path = Path(targets) / f"{name}-{port}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps([{"targets": [f"{settings.host}:{port}"], "labels": {"process": name}}])
        )
    return port
