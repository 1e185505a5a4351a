"""Prometheus endpoint per process, and the metrics every Kafka stage shares.

Names follow ``crosscam_<stage>_<what>_<unit>``; labels are stage, camera,
topic or partition, never a track or a person (unbounded cardinality).
Stage-specific metrics live in the stage's own package.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import Collector

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


class DiskCollector(Collector):
    """Free and total bytes of the filesystems holding ``paths``, read at each scrape."""

    def __init__(self, paths: list[str]) -> None:
        self.paths = [str(Path(p).resolve()) for p in paths]
        self._warned: set[str] = set()

    def collect(self) -> list[GaugeMetricFamily]:  # type: ignore[override]
        """One sample per readable path; an unreadable one is left out (and logged)."""
        free = GaugeMetricFamily(
            "crosscam_disk_free_bytes",
            "Bytes free to this process on the path's filesystem",
            labels=["path"],
        )
        size = GaugeMetricFamily(
            "crosscam_disk_size_bytes", "Size of the path's filesystem", labels=["path"]
        )
        for path in self.paths:
            try:
                st = os.statvfs(path)
            except OSError as exc:
                if path not in self._warned:  # once, not at every scrape
                    self._warned.add(path)
                    log.warning("disk_stat_failed", extra={"path": path, "error": repr(exc)})
                continue
            free.add_metric([path], st.f_bavail * st.f_frsize)
            size.add_metric([path], st.f_blocks * st.f_frsize)
        return [free, size]


MAX_CAMERA_LABELS = 512
"""Distinct camera ids a process labels its metrics with; later ones share ``_other``.

Camera ids arrive from the bus: a producer inventing ids must not grow the
number of Prometheus series without bound (each costs memory in every
scraper). A site larger than this raises it with ``CROSSCAM_MAX_CAMERA_LABELS``."""

_camera_labels: set[str] = set()
_camera_labels_lock = threading.Lock()


def camera_label(camera_id: str) -> str:
    """The label value for ``camera_id``: itself for the first cameras seen, else ``_other``."""
    if camera_id in _camera_labels:
        return camera_id
    limit = int(os.environ.get("CROSSCAM_MAX_CAMERA_LABELS", MAX_CAMERA_LABELS))
    with _camera_labels_lock:
        if len(_camera_labels) >= limit:
            return "_other"
        _camera_labels.add(camera_id)
    return camera_id


HEALTH_STALL_S = 300.0
"""``/healthz`` fails when a stage has consumer lag but has handled no batch for this long."""


class Progress:
    """Whether the Kafka loop still makes progress, judged from its own metrics.

    Read at each ``/healthz`` request (Kubernetes probes every few seconds): the
    loop is stalled when records wait (lag > 0) and the count of handled batches
    has not moved for ``stall_s``. A process without a Kafka loop (ingest, the
    gallery) has no lag and is healthy while it serves.
    """

    def __init__(
        self, stall_s: float = HEALTH_STALL_S, clock: Callable[[], float] = time.monotonic
    ):
        self.stall_s = stall_s
        self.clock = clock
        self._batches = -1.0
        self._moved_at = clock()
        self._lock = threading.Lock()

    def check(self, lag: float, batches: float) -> tuple[bool, str]:
        """(healthy, reason) given the current total lag and handled-batch count."""
        with self._lock:
            now = self.clock()
            if batches != self._batches:
                self._batches, self._moved_at = batches, now
            idle = now - self._moved_at
        if lag > 0 and idle > self.stall_s:
            return False, f"stalled: {lag:.0f} messages waiting, no batch handled for {idle:.0f} s"
        return True, "ok"


def _sample_sum(name: str) -> float:
    return sum(s.value for m in REGISTRY.collect() for s in m.samples if s.name == name)


def _app(progress: Progress) -> Callable[..., Iterable[bytes]]:
    metrics_app = make_wsgi_app(REGISTRY)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/healthz":
            ok, reason = progress.check(
                _sample_sum("crosscam_stage_consumer_lag_messages"),
                _sample_sum("crosscam_stage_batch_seconds_count"),
            )
            start_response(
                "200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")]
            )
            return [reason.encode() + b"\n"]
        return metrics_app(environ, start_response)  # type: ignore[no-any-return]

    return app


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
        """Scrapes and probes are not worth a log line each."""


_disks: DiskCollector | None = None


def _watch_disks(paths: list[str]) -> None:
    """Register the disk collector once per process; later calls add their paths."""
    global _disks
    if _disks is None:
        _disks = DiskCollector([])
        REGISTRY.register(_disks)
    _disks.paths += [p for p in DiskCollector(paths).paths if p not in _disks.paths]


def start_metrics_server(settings: MetricsSettings, name: str = "crosscam") -> int:
    """Serve ``/metrics`` and ``/healthz`` for this process; returns the bound port (0 = disabled).

    With ``port = 0`` a free port is chosen. When ``CROSSCAM_METRICS_TARGETS_DIR``
    is set the endpoint is registered there as a Prometheus file-SD target, so
    the local Prometheus scrapes every stage without a fixed port plan.
    """
    if not settings.enabled:
        return 0
    _watch_disks(settings.disk_paths)
    server = make_server(
        settings.host, settings.port, _app(Progress()), ThreadingWSGIServer, _QuietHandler
    )
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
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
