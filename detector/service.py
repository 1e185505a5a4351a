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
import logging
import time
from collections.abc import Sequence

import redis

from common.backoff import Backoff
from detector import metrics as m
from detector.analyzer import Analyzer
from detector.checksum import ModelFileError
from detector.core import FrameProcessor
from detector.motion import MotionGate
from detector.settings import DetectorSettingsRoot
from detector.stage import DetectorStage, FetchJpegs
from service.assets import models_dir
from service.cli import add_stage_arguments, load_stage_settings, serve_stage
from service.metrics import start_metrics_server

log = logging.getLogger(__name__)

# First wait before retrying a failed Redis call; doubled on each retry, capped, with jitter.
_REDIS_RETRY_FIRST_S = 0.1
_REDIS_RETRY_MAX_S = 2.0


def redis_fetcher(url: str, retries: int) -> tuple[FetchJpegs, redis.Redis]:
    """A claim-check fetcher (one MGET per batch) with bounded retries on Redis errors."""
    client = redis.Redis.from_url(url, socket_timeout=5.0, socket_connect_timeout=5.0)

    def fetch(keys: Sequence[str]) -> list[bytes | None]:
        backoff = Backoff(initial_s=_REDIS_RETRY_FIRST_S, max_s=_REDIS_RETRY_MAX_S)
        for attempt in range(retries + 1):
            try:
                return [
                    v if isinstance(v, bytes) or v is None else v.encode()
                    for v in client.mget(list(keys))
                ]
            except redis.RedisError as exc:
                if attempt == retries:
                    raise
                delay = backoff.next_delay_s()
                log.warning("claim_check_retry", extra={"error": repr(exc), "retry_s": delay})
                time.sleep(delay)
        raise AssertionError("unreachable")

    return fetch, client


def export_provider_metrics(analyzer: Analyzer) -> None:
    m.PROVIDER.labels("detector", analyzer.detector.name, analyzer.detector.provider).set(1)
    m.PROVIDER.labels("embedder", analyzer.embedder.name, analyzer.embedder.provider).set(1)
    for role, model in (("detector", analyzer.detector), ("embedder", analyzer.embedder)):
        m.export_runtime_choice(role, getattr(model, "choice", None))


def configure(parser: argparse.ArgumentParser) -> None:
    add_stage_arguments(
        parser,
        "crosscam-detector",
        "kafka, redis, metrics, detector",
        "redis:// URL for claim-check frames",
    )


def main(args: argparse.Namespace) -> int:
    settings = load_stage_settings(DetectorSettingsRoot, args)
    if settings is None:
        return 2
    cfg = settings.detector
    try:
        analyzer = Analyzer.from_config(cfg.analyzer_config(models_dir()))
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
            "motion_gate": cfg.motion_gate.enabled,
        },
    )
    fetch, client = redis_fetcher(settings.redis.url, cfg.claim_check_retries)
    gate = MotionGate(cfg.motion_gate) if cfg.motion_gate.enabled else None
    processor = FrameProcessor(analyzer, cfg.crops, cfg.max_batch_frames, motion_gate=gate)
    stage = DetectorStage(processor, fetch)
    start_metrics_server(settings.metrics, name="detector")
    export_provider_metrics(analyzer)

    try:
        serve_stage(stage, settings.kafka, args.group_id)
    finally:
        client.close()
    return 0
