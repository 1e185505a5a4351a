"""Applying operators' corrections in the ReID service: store, linker, Redis, matches topic.

A correction (:mod:`reid.corrections`) changes stored global ids, the live
linker's ids and its constraints together, under the lock the stage holds
while it links a tracklet, so a correction never interleaves with a link.
Constraints persist in Redis (``crosscam:reid:constraints``, a list of text
records, appended in order), so a restart (or another replica at its start)
keeps them. The resulting ``split``/``merge`` events (``by: operator``) go to
the matches topic like the linker's own.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence

import redis
from aiokafka import AIOKafkaProducer

from reid.corrections import Constraints, Correction, Member, plan_merge, plan_split
from reid.engine import Engine
from reid.ordering import in_order
from reid.store import Scope
from schemas.codec import encode
from schemas.keys import CONSTRAINTS_KEY
from schemas.messages import Match
from schemas.topics import MATCHES
from service.kafka import ensure_topics, producer_config
from service.settings import KafkaSettings

log = logging.getLogger(__name__)

MAX_MEMBERS = 10_000
"""An identity with more stored tracklets than this cannot be corrected in one call."""
SEND_TIMEOUT_S = 30.0


def load_constraints(client: redis.Redis) -> Constraints:
    """The persisted constraints (empty when none)."""
    rows = client.lrange(CONSTRAINTS_KEY, 0, -1)
    return Constraints.from_records(r.decode() if isinstance(r, bytes) else r for r in rows)  # type: ignore[union-attr]


class Corrector:
    """Splits and merges identities for the API (see the module docstring).

    Args:
        engine: the stage's engine (its store and linker are changed).
        lock: held by the stage around each tracklet it links.
        client: Redis, where constraints persist.
    """

    def __init__(self, engine: Engine, lock: threading.Lock, client: redis.Redis) -> None:
        self.engine = engine
        self.lock = lock
        self.client = client

    @property
    def constraints(self) -> Constraints:
        """The linker's constraints (shared object)."""
        return self.engine.linker.constraints

    def members(self, gid: str) -> list[Member]:
        """An identity's stored tracklets, in time order (ValueError beyond MAX_MEMBERS)."""
        rows = list(self.engine.store.scroll(Scope(global_ids=frozenset([gid]))))
        if len(rows) > MAX_MEMBERS:
            raise ValueError(f"identity has more than {MAX_MEMBERS} tracklets")
        rows.sort(key=lambda t: (t.ts_start_ns, t.tracklet_id))
        return [Member(t.tracklet_id, t.camera_id, t.ts_start_ns, t.ts_end_ns) for t in rows]

    def split(self, gid: str, moved: Sequence[str]) -> Correction:
        """Move ``moved`` out of ``gid`` into a new identity (KeyError/ValueError: refused)."""
        with self.lock:
            members = self.members(gid)
            if not members:
                raise KeyError(gid)
            fix = plan_split(self.constraints, gid, members, moved, self.engine.new_global_id,
                             time.time_ns())  # fmt: skip
            self._apply(fix)
            return fix

    def merge(self, into: str, gids: Sequence[str]) -> Correction:
        """Join identities ``gids`` into ``into`` (KeyError/ValueError: refused)."""
        with self.lock:
            groups = {g: self.members(g) for g in dict.fromkeys(gids)}
            fix = plan_merge(self.constraints, into, groups, time.time_ns())
            self._apply(fix)
            return fix

    def _apply(self, fix: Correction) -> None:
        if fix.records:
            self.client.rpush(CONSTRAINTS_KEY, *fix.records)
        if fix.assigned:
            self.engine.store.set_global_ids(fix.assigned)
            self.engine.linker.relabel(fix.assigned)
        log.info("operator_correction", extra={"kind": fix.events[0].kind if fix.events else "",
                                               "tracklets": len(fix.assigned)})  # fmt: skip


class MatchPublisher:
    """Sends operators' events to the matches topic (a producer started on first use)."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self.kafka = kafka
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def send(self, events: Sequence[Match]) -> None:
        """Publish ``events`` keyed by global id, acknowledged by the brokers."""
        async with self._lock:
            if self._producer is None:
                await asyncio.wait_for(ensure_topics(self.kafka, [MATCHES.name]), SEND_TIMEOUT_S)
                producer = AIOKafkaProducer(**producer_config(self.kafka, "operator"))
                await asyncio.wait_for(producer.start(), SEND_TIMEOUT_S)
                self._producer = producer
            sends = [
                await self._producer.send(MATCHES.name, encode(e), key=e.global_id.encode())
                for e in in_order(events)
            ]
            for fut in sends:
                await asyncio.wait_for(fut, SEND_TIMEOUT_S)

    async def close(self) -> None:
        """Stop the producer."""
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
