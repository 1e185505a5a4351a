"""``crosscam retention run``: enforce the retention limits, and the ReID service's background job.

Two kinds of limit:

* **Kafka topics** — ``retention.ms`` of each crosscam topic that exists is
  set to its limit (:data:`schemas.retention.TOPIC_RETENTION_MS`, or the
  ``[retention]`` settings) through the admin client; Kafka deletes older
  segments itself.
* **The store** — tracklets (vectors, payloads) and thumbnails that ended
  longer ago than ``store_days`` are deleted (:mod:`reid.retention`); an
  identity disappears with its last tracklet.

Each pass counts what it removed (``crosscam_reid_retention_removed_total``
by kind, and a ``retention_pass`` log line). Claim-check frames in Redis
expire by their own TTL (``ingest.claim_check_ttl_s``, 300 s by default).

The embedded store opens in one process only: while ``crosscam reid`` runs,
run the job inside it (:func:`start_background`); the command is for a
stopped service or a Qdrant server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from prometheus_client import Counter

from reid.qdrant_store import open_store
from reid.retention import RetentionPolicy, RetentionReport, apply, plan
from reid.settings import ReidSettingsRoot, RetentionSettings
from reid.store import VectorStore
from service.cli import add_stage_arguments, load_stage_settings
from service.metrics import start_metrics_server
from service.settings import KafkaSettings

log = logging.getLogger(__name__)

REMOVED = Counter(
    "crosscam_reid_retention_removed_total",
    "Items the retention job deleted because they were past their limit",
    ["kind"],
)


def open_configured_store(settings: ReidSettingsRoot) -> VectorStore:
    """The ReID stage's store, as ``crosscam reid`` opens it."""
    q = settings.qdrant
    kind = "server" if q.url else q.embedded
    return open_store(kind, settings.reid.data_dir / f"qdrant-{kind}", settings.reid.dim,
                      url=q.url or None, api_key=q.api_key or None)  # fmt: skip


# --- Kafka ---------------------------------------------------------------------------------


async def _admin(kafka: KafkaSettings) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=kafka.bootstrap_servers, client_id=f"{kafka.client_id}-retention"
    )
    await admin.start()
    return admin


async def set_topic_retention(kafka: KafkaSettings, retention_ms: dict[str, int]) -> dict[str, int]:
    """Set ``retention.ms`` on each listed topic that exists; what was set.

    Raises:
        RuntimeError: the broker refused a change.
    """
    admin = await _admin(kafka)
    try:
        existing = set(await admin.list_topics())
        todo = {t: ms for t, ms in retention_ms.items() if t in existing}
        if not todo:
            return {}
        resources = [
            ConfigResource(ConfigResourceType.TOPIC, t, configs={"retention.ms": str(ms)})
            for t, ms in todo.items()
        ]
        for resp in await admin.alter_configs(resources):
            for error_code, error_message, *_rest, name in resp.resources:
                if error_code:
                    raise RuntimeError(f"retention.ms of {name}: {error_message} ({error_code})")
        return todo
    finally:
        await admin.close()


async def topic_retention(kafka: KafkaSettings, topics: list[str]) -> dict[str, int]:
    """The broker's current ``retention.ms`` of each topic (existing ones only)."""
    admin = await _admin(kafka)
    try:
        existing = set(await admin.list_topics())
        names = [t for t in topics if t in existing]
        if not names:
            return {}
        out: dict[str, int] = {}
        resources = [ConfigResource(ConfigResourceType.TOPIC, t) for t in names]
        for resp in await admin.describe_configs(resources):
            for _code, _msg, _type, name, entries in resp.resources:
                for entry in entries:
                    if entry[0] == "retention.ms":
                        out[name] = int(entry[1])
        return out
    finally:
        await admin.close()


# --- the store -----------------------------------------------------------------------------


def run_once(
    store: VectorStore,
    thumbnails_dir: Path | None,
    policy: RetentionPolicy,
    dry_run: bool = False,
    now_ns: int | None = None,
) -> RetentionReport:
    """One store pass: delete what is past ``policy``; counted in the metric and the log."""
    now = time.time_ns() if now_ns is None else now_ns
    report = apply(store, plan(store, thumbnails_dir, policy, now), dry_run)
    if not dry_run:
        REMOVED.labels("tracklets").inc(report.tracklets)
        REMOVED.labels("thumbnails").inc(report.thumbnails)
    log.info(
        "retention_pass",
        extra={
            "tracklets": report.tracklets,
            "thumbnails": report.thumbnails,
            "cutoff_ns": report.cutoff_ns,
            "dry_run": dry_run,
            "max_age_s": policy.max_age_s,
        },
    )
    return report


def topic_limits(settings: RetentionSettings, kafka: KafkaSettings) -> dict[str, int]:
    """``retention.ms`` per topic: ``[retention]``, with ``kafka.retention_ms`` entries winning.

    One rule everywhere: topics are created with the same limits
    (:func:`service.kafka_security.topic_configs`), so the job never undoes an
    explicit per-topic setting.
    """
    return {**settings.topic_retention_ms(), **kafka.retention_ms}


def start_background(
    store: VectorStore,
    thumbnails_dir: Path | None,
    settings: RetentionSettings,
    kafka: KafkaSettings | None,
    stop: threading.Event,
) -> threading.Thread:
    """A daemon thread: topic retention once (if ``kafka``), then a store pass every interval.

    For the ReID service, whose store is shared (pass its locked store).
    """

    def loop() -> None:
        if kafka is not None:
            try:
                asyncio.run(set_topic_retention(kafka, topic_limits(settings, kafka)))
            except Exception as exc:  # noqa: BLE001 — the stage keeps running; logged loudly
                log.error("retention_topics_failed", extra={"error": repr(exc)})
        while not stop.is_set():
            try:
                run_once(store, thumbnails_dir, settings.policy())
            except Exception as exc:  # noqa: BLE001
                log.error("retention_pass_failed", extra={"error": repr(exc)})
            stop.wait(settings.interval_s)

    thread = threading.Thread(target=loop, name="retention", daemon=True)
    thread.start()
    return thread


# --- the command ---------------------------------------------------------------------------


def configure(parser: argparse.ArgumentParser) -> None:
    add_stage_arguments(parser, "crosscam-retention", "kafka, qdrant, reid, retention")
    parser.add_argument("--data-dir", type=Path, default=None, help="store and thumbnails folder")
    parser.add_argument("--qdrant-url", default=None, help="Qdrant server URL (default: embedded)")
    parser.add_argument("--once", action="store_true", help="one pass, then exit")
    parser.add_argument("--dry-run", action="store_true", help="count only; change nothing")
    parser.add_argument("--no-topics", action="store_true", help="leave Kafka topics alone")


def main(args: argparse.Namespace) -> int:
    settings = load_stage_settings(ReidSettingsRoot, args, qdrant={"url": args.qdrant_url},
                                   reid={"data_dir": args.data_dir})  # fmt: skip
    if settings is None:
        return 2
    r = settings.retention
    store = open_configured_store(settings)
    thumbs = settings.reid.data_dir / "thumbnails"
    if not (args.once or args.dry_run):
        start_metrics_server(settings.metrics, name="retention")
    try:
        while True:
            out: dict[str, Any] = {}
            if not args.no_topics:
                wanted = topic_limits(r, settings.kafka)
                out["topics"] = (wanted if args.dry_run else
                                 asyncio.run(set_topic_retention(settings.kafka, wanted)))  # fmt: skip
            rep = run_once(store, thumbs, r.policy(), args.dry_run)
            out.update(tracklets=rep.tracklets, thumbnails=rep.thumbnails, dry_run=rep.dry_run,
                       cutoff_ns=rep.cutoff_ns)  # fmt: skip
            print(json.dumps(out), flush=True)
            if args.once or args.dry_run:
                return 0
            time.sleep(r.interval_s)
    finally:
        store.close()
