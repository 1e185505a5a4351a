"""The audit trail: append-only in a Redis stream, published on ``crosscam.audit.v1``.

Writers (the web servers, ``crosscam tokens``) only append to the stream
``crosscam:audit``: one XADD, synchronous, before the answer goes out, so an
answer is never given without its record. A publisher task in each web server
copies the stream to Kafka in order, from a cursor kept in Redis
(``crosscam:audit:published``): at-least-once (a crash between send and
cursor update repeats a few events; ``audit_id`` tells repeats apart), and
events written while Kafka or every server was down are published later. A
Redis lock makes one publisher active at a time.

Stream ids are milliseconds since the epoch, so a time window
(``GET /api/audit?since=&until=``) is a range read, never a scan of the trail.
Nothing here trims or deletes the stream (retention is a separate, audited job).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

import msgspec
import redis
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer

from schemas.codec import DecodeError, decode, encode
from schemas.keys import AUDIT_PUBLISHED_KEY, AUDIT_PUBLISHER_LOCK_KEY, AUDIT_STREAM_KEY
from schemas.messages import AuditEvent
from schemas.topics import AUDIT
from service.kafka import ensure_topics, producer_config
from service.settings import KafkaSettings

log = logging.getLogger(__name__)

FIELD = "event"
MAX_QUERY = 1000
"""Most events one audit query returns."""
QUERY_PAGE = 500
MAX_SCANNED = 100_000
"""Most stream entries one filtered query reads before answering with a cursor to go on."""
PUBLISH_BATCH = 200
LOCK_TTL_MS = 5000
IDLE_S = 0.2
NS_PER_MS = 1_000_000


class AuditLog:
    """Append and read the audit stream. ``client`` must decode responses."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def record(self, event: AuditEvent) -> str:
        """Append ``event``; its stream id (also its ``audit_id``)."""
        return str(self.client.xadd(AUDIT_STREAM_KEY, {FIELD: encode(event)}))

    def query(
        self,
        since_ns: int | None = None,
        until_ns: int | None = None,
        who: str | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> tuple[list[AuditEvent], str | None]:
        """Events in the window (oldest first), optionally of one ``who``; and a cursor.

        The cursor (a stream id) is non-None when more may follow: pass it as
        ``after`` to go on.
        """
        start = f"({after}" if after else (str(since_ns // NS_PER_MS) if since_ns else "-")
        end = str(until_ns // NS_PER_MS) if until_ns is not None else "+"
        out: list[AuditEvent] = []
        scanned = 0
        while len(out) < limit and scanned < MAX_SCANNED:
            rows: Any = self.client.xrange(AUDIT_STREAM_KEY, start, end, count=QUERY_PAGE)
            for sid, fields in rows:
                scanned += 1
                event = _event(str(sid), fields)
                if event is None or (who is not None and event.who != who):
                    continue
                if since_ns is not None and event.ts_ns < since_ns:
                    continue
                if until_ns is not None and event.ts_ns > until_ns:
                    continue
                out.append(event)
                if len(out) == limit:
                    return out, event.audit_id
            if len(rows) < QUERY_PAGE:
                return out, None
            start = f"({rows[-1][0]}"
        return out, start[1:]


def _event(sid: Any, fields: Any) -> AuditEvent | None:
    try:
        event = decode(AuditEvent, str(fields.get(FIELD, "")).encode())
    except DecodeError:
        log.warning("audit_entry_unreadable", extra={"audit_id": sid})
        return None
    return msgspec.structs.replace(event, audit_id=sid)


@dataclass
class AuditPublisher:
    """Copies the audit stream to Kafka, in order, from the cursor kept in Redis."""

    redis_url: str
    kafka: KafkaSettings

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until ``stop`` is set; Kafka or Redis being down only delays events."""
        client = aioredis.Redis.from_url(self.redis_url, decode_responses=True)
        me = secrets.token_hex(8)
        producer: AIOKafkaProducer | None = None
        try:
            while not stop.is_set():
                try:
                    if await self._leader(client, me):
                        if producer is None:
                            producer = await self._producer()
                        if await self._publish_batch(client, producer):
                            continue
                except Exception as exc:  # keep going: the stream keeps what is unsent
                    log.warning("audit_publish_failed", extra={"error": repr(exc)})
                    if producer is not None:
                        with contextlib.suppress(Exception):
                            await producer.stop()
                        producer = None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), IDLE_S)
        finally:
            if producer is not None:
                with contextlib.suppress(Exception):
                    await producer.stop()
            with contextlib.suppress(Exception):
                if await client.get(AUDIT_PUBLISHER_LOCK_KEY) == me:
                    await client.delete(AUDIT_PUBLISHER_LOCK_KEY)
            await client.aclose()

    async def _leader(self, client: aioredis.Redis, me: str) -> bool:
        if await client.set(AUDIT_PUBLISHER_LOCK_KEY, me, nx=True, px=LOCK_TTL_MS):
            return True
        if await client.get(AUDIT_PUBLISHER_LOCK_KEY) == me:
            await client.pexpire(AUDIT_PUBLISHER_LOCK_KEY, LOCK_TTL_MS)
            return True
        return False

    async def _producer(self) -> AIOKafkaProducer:
        await asyncio.wait_for(ensure_topics(self.kafka, [AUDIT.name]), 30)
        producer = AIOKafkaProducer(**producer_config(self.kafka, "audit"))
        await asyncio.wait_for(producer.start(), 30)
        return producer

    async def _publish_batch(self, client: aioredis.Redis, producer: AIOKafkaProducer) -> bool:
        """Publish the next batch after the cursor; True when there was one."""
        cursor: Any = await client.get(AUDIT_PUBLISHED_KEY)
        start = f"({cursor}" if cursor else "-"
        rows: Any = await client.xrange(AUDIT_STREAM_KEY, start, "+", count=PUBLISH_BATCH)
        if not rows:
            return False
        sends = []
        for sid, fields in rows:
            event = _event(sid, fields)
            if event is not None:
                sends.append(await producer.send(AUDIT.name, encode(event), key=event.who.encode()))
        for fut in sends:
            await asyncio.wait_for(fut, 30)
        await client.set(AUDIT_PUBLISHED_KEY, rows[-1][0])
        return True


def now_ns() -> int:
    """Wall-clock time for an audit event (ns since the epoch)."""
    return time.time_ns()
