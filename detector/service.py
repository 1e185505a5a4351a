"""``crosscam detector``: the detector stage (frames -> detections), thin around the core.

A consumer group on the frames topic: each batch (frames of every camera this
replica owns, as many as arrived while the previous batch ran, up to
``kafka.max_batch_records``) is analysed in calls of ``max_batch_frames``;
Detections go out keyed by camera id. Models are checked (SHA-256) and warmed
up before the first poll: a wrong or missing model stops the process at start
with exit code 2.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import redis
from pydantic import ValidationError

from detector import metrics as m
from detector.analyzer import Analyzer
from detector.checksum import ModelFileError
from detector.core import FrameProcessor
from detector.settings import DetectorSettingsRoot
from detector.stage import DetectorStage, FetchJpegs
from service.kafka import install_stop_signals, run_stage
from service.logs import setup_logging
from service.metrics import start_metrics_server
from service.settings import load_settings

log = logging.getLogger(__name__)

# First wait before retrying a failed Redis call; doubled on each retry.
_REDIS_RETRY_FIRST_S = 0.1


def redis_fetcher(url: str, retries: int) -> tuple[FetchJpegs, redis.Redis]:
    """A claim-check fetcher (one MGET per batch) with bounded retries on Redis errors."""
    client = redis.Redis.from_url(url, socket_timeout=5.0, socket_connect_timeout=5.0)

    def fetch(keys: Sequence[str]) -> list[bytes | None]:
        delay = _REDIS_RETRY_FIRST_S
        for attempt in range(retries + 1):
            try:
                return list(client.mget(list(keys)))
            except redis.RedisError as exc:
                if attempt == retries:
                    raise
                log.warning("claim_check_retry", extra={"error": repr(exc), "retry_s": delay})
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    return fetch, client


def export_provider_metrics(analyzer: Analyzer) -> None:
    m.PROVIDER.labels("detector", analyzer.detector.name, analyzer.detector.provider).set(1)
    m.PROVIDER.labels("embedder", analyzer.embedder.name, analyzer.embedder.provider).set(1)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="TOML settings (sections kafka, redis, metrics, detector)",
    )
    parser.add_argument(
        "--bootstrap-servers", default=None, help="Kafka host:port (overrides the config)"
    )
    parser.add_argument("--redis-url", default=None, help="redis:// URL for claim-check frames")
    parser.add_argument(
        "--group-id", default="crosscam-detector", help="consumer group of the replicas"
    )
    parser.add_argument(
        "--metrics-port", type=int, default=None, help="Prometheus port (0 = any free)"
    )
    parser.add_argument("--log-level", default="INFO")


def main(args: argparse.Namespace) -> int:
    setup_logging(args.log_level)
    try:
        settings = load_settings(
            DetectorSettingsRoot,
            args.config,
            kafka={"bootstrap_servers": args.bootstrap_servers},
            redis={"url": args.redis_url},
            metrics={"port": args.metrics_port},
        )
    except (ValidationError, ValueError, OSError) as exc:
        log.error("bad_settings", extra={"error": str(exc)})
        return 2
    cfg = settings.detector
    try:
        analyzer = Analyzer.from_config(cfg.analyzer_config())
    except (ModelFileError, ValueError) as exc:
        log.error("model_error", extra={"error": str(exc)})
        return 2
    log.info(
        "detector_ready",
        extra={
            "detector": analyzer.detector.name,
            "detector_provider": analyzer.detector.provider,
            "why": analyzer.detector_reason,
            "embedder": analyzer.embedder.name,
            "embedder_provider": analyzer.embedder.provider,
            "background_masking": cfg.background.enabled,
            "max_batch_frames": cfg.max_batch_frames,
        },
    )
    fetch, client = redis_fetcher(settings.redis.url, cfg.claim_check_retries)
    stage = DetectorStage(FrameProcessor(analyzer, cfg.crops, cfg.max_batch_frames), fetch)
    start_metrics_server(settings.metrics, name="detector")
    export_provider_metrics(analyzer)

    async def go() -> None:
        stop = asyncio.Event()
        install_stop_signals(stop)
        await run_stage(stage, settings.kafka, args.group_id, stop)

    try:
        asyncio.run(go())
    finally:
        client.close()
    return 0
