"""``/healthz`` and the disk gauges every process serves beside ``/metrics``."""

from __future__ import annotations

import urllib.error
import urllib.request

from prometheus_client import CollectorRegistry, generate_latest

from service.metrics import DiskCollector, Progress, start_metrics_server
from service.settings import MetricsSettings


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_progress_fails_only_when_records_wait_and_no_batch_moves() -> None:
    clock = Clock()
    p = Progress(stall_s=60, clock=clock)
    assert p.check(lag=0, batches=5) == (True, "ok")
    clock.t = 1000  # idle for long, but nothing waits: healthy
    assert p.check(lag=0, batches=5)[0]
    clock.t = 1030
    assert p.check(lag=40, batches=6)[0]  # a batch moved: progress
    clock.t = 1080
    assert p.check(lag=40, batches=6)[0]  # 50 s without a batch: not yet
    clock.t = 1100
    ok, reason = p.check(lag=40, batches=6)
    assert not ok and "40 messages waiting" in reason


def test_disk_collector_reports_free_and_size_and_skips_a_missing_path(tmp_path) -> None:  # type: ignore[no-untyped-def]
    registry = CollectorRegistry()
    registry.register(DiskCollector([str(tmp_path), str(tmp_path / "gone")]))
    free = registry.get_sample_value("crosscam_disk_free_bytes", {"path": str(tmp_path)})
    size = registry.get_sample_value("crosscam_disk_size_bytes", {"path": str(tmp_path)})
    assert free is not None and size is not None and 0 < free <= size
    assert "gone" not in generate_latest(registry).decode()


def test_metrics_server_answers_healthz_and_metrics() -> None:
    port = start_metrics_server(MetricsSettings(port=0, disk_paths=["."]))
    base = f"http://127.0.0.1:{port}"
    with urllib.request.urlopen(base + "/healthz", timeout=5) as r:
        assert r.status == 200 and r.read() == b"ok\n"
    with urllib.request.urlopen(base + "/metrics", timeout=5) as r:
        body = r.read().decode()
    assert "crosscam_disk_free_bytes{" in body
    try:
        urllib.request.urlopen(base + "/metrics", timeout=5).close()
    except urllib.error.URLError as exc:  # pragma: no cover - a second scrape must work too
        raise AssertionError(exc) from exc
