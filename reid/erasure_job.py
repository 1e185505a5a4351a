"""``crosscam erase --global-id G``: erase one identity everywhere crosscam keeps it.

:func:`erase_everywhere` is what both the command and the admin endpoint
(``DELETE /api/identities/<gid>``) call: the store's points and thumbnails
and the linker's state (:func:`reid.erasure.erase_identity`), the identity's
Redis keys (``crosscam:identity:<gid>`` and ``…:<gid>:*``, see
:mod:`schemas.keys`), a record of its tracklet ids for as long as the
tracklets topic keeps them (:func:`erased_tracklets`: the ReID stage skips
those, so a replay cannot bring the identity back), then an ``erased`` event
on the match topic so subscribers erase their copies. Idempotent: a second call removes nothing
and publishes the event again (harmless; it reaches a subscriber that missed
the first). Prints a JSON report.

The embedded store opens in one process only: while ``crosscam reid`` runs,
erase through its admin endpoint; the command is for a stopped service or a
Qdrant server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

import redis
from aiokafka import AIOKafkaProducer
from prometheus_client import Counter

from reid.erasure import ErasureReport, check_global_id, erase_identity
from reid.linker import Linker
from reid.ordering import next_order_ns
from reid.retention_job import open_configured_store
from reid.settings import ReidSettingsRoot
from reid.store import VectorStore
from schemas.codec import encode
from schemas.keys import ERASED_TRACKLETS_KEY, identity_key
from schemas.messages import Match
from schemas.retention import TOPIC_RETENTION_MS
from schemas.topics import MATCHES, TRACKLETS
from service.cli import add_stage_arguments, load_stage_settings
from service.kafka import ensure_topics
from service.settings import KafkaSettings

log = logging.getLogger(__name__)

ERASED = Counter("crosscam_reid_erasures_total", "Identities erased on request")


def erase_redis_keys(client: redis.Redis, global_id: str) -> int:
    """Delete the identity's Redis keys (exact key and ``<key>:*``); how many."""
    check_global_id(global_id)
    key = identity_key(global_id)
    keys = [key, *client.scan_iter(match=f"{key}:*", count=500)]
    return int(client.delete(*keys))  # type: ignore[arg-type]


def remember_erased(
    client: redis.Redis,
    tracklet_ids: list[str],
    keep_s: float = TOPIC_RETENTION_MS[TRACKLETS.name] / 1000,
    now_s: float | None = None,
) -> None:
    """Record erased tracklet ids for ``keep_s`` (the tracklets topic's retention: as long as
    a replay could bring them back)."""
    now = time.time() if now_s is None else now_s
    if tracklet_ids:
        client.zadd(ERASED_TRACKLETS_KEY, dict.fromkeys(tracklet_ids, now + keep_s))
    client.zremrangebyscore(ERASED_TRACKLETS_KEY, "-inf", now)


def erased_tracklets(client: redis.Redis, tracklet_ids: list[str]) -> set[str]:
    """Which of ``tracklet_ids`` belong to an erased identity (the ReID stage skips them)."""
    if not tracklet_ids:
        return set()
    scores = client.zmscore(ERASED_TRACKLETS_KEY, tracklet_ids)
    return {t for t, s in zip(tracklet_ids, scores, strict=True) if s is not None}


def erased_event(global_id: str) -> Match:
    """The public ``erased`` event of an identity."""
    return Match(
        kind="erased", global_id=global_id, ts_emitted_ns=time.time_ns(), order_ns=next_order_ns()
    )


async def publish_erased(kafka: KafkaSettings, global_id: str) -> None:
    """Send the ``erased`` event to the match topic (keyed by global id) and wait for the ack."""
    await ensure_topics(kafka, [MATCHES.name])
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka.bootstrap_servers, client_id=f"{kafka.client_id}-erase", acks="all"
    )
    await producer.start()
    try:
        await producer.send_and_wait(
            MATCHES.name, value=encode(erased_event(global_id)), key=global_id.encode()
        )
    finally:
        await producer.stop()


def erase_everywhere(
    store: VectorStore,
    thumbnails_dir: Path | None,
    global_id: str,
    *,
    linker: Linker | None = None,
    redis_client: redis.Redis | None = None,
    publish: Callable[[Match], None] | None = None,
) -> ErasureReport:
    """Erase ``global_id`` from the store, thumbnails, linker, Redis; then publish ``erased``.

    Raises:
        ValueError: ``global_id`` is malformed.
    """
    report = erase_identity(store, thumbnails_dir, global_id, linker)
    if redis_client is not None:
        report.redis_keys = erase_redis_keys(redis_client, global_id)
        remember_erased(redis_client, report.tracklets)
    if publish is not None:
        publish(erased_event(global_id))
    ERASED.inc()
    log.info("identity_erased", extra=report.as_dict())
    return report


def configure(parser: argparse.ArgumentParser) -> None:
    add_stage_arguments(parser, "crosscam-erase", "kafka, redis, qdrant, reid")
    parser.add_argument("--global-id", required=True, help="the identity to erase, e.g. g12")
    parser.add_argument("--data-dir", type=Path, default=None, help="store and thumbnails folder")
    parser.add_argument("--qdrant-url", default=None, help="Qdrant server URL (default: embedded)")
    parser.add_argument("--no-kafka", action="store_true", help="do not publish the erased event")


def main(args: argparse.Namespace) -> int:
    try:
        check_global_id(args.global_id)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    settings = load_stage_settings(ReidSettingsRoot, args, qdrant={"url": args.qdrant_url},
                                   reid={"data_dir": args.data_dir})  # fmt: skip
    if settings is None:
        return 2
    store = open_configured_store(settings)
    client = redis.Redis.from_url(settings.redis.url)
    try:
        report = erase_everywhere(store, settings.reid.data_dir / "thumbnails", args.global_id,
                                  redis_client=client)  # fmt: skip
        if not args.no_kafka:
            asyncio.run(publish_erased(settings.kafka, args.global_id))
    finally:
        store.close()
        client.close()
    print(json.dumps({**report.as_dict(), "published": not args.no_kafka}))
    return 0
