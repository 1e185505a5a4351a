"""Frames to Kafka: a bounded outbox and a sender that numbers frames gap-free.

A frame gets its sequence number only when it leaves the outbox for Kafka,
and keeps it through any retries, so what the camera published is numbered
0, 1, 2, ... with no gap even when the outbox dropped frames while the broker
was down (those were never published, so they never got a number).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from common.backoff import Backoff
from schemas.codec import encode
from schemas.keys import claim_check_key
from schemas.messages import Frame
from service import metrics

log = logging.getLogger(__name__)

STAGE = "ingest"
# First retry delay after a failed Kafka send or claim-check write; doubles up to the cap.
RETRY_INITIAL_S = 0.2
# Random spread (±) of each retry delay, so cameras that lost the broker together
# do not all retry in the same instant.
RETRY_JITTER = 0.5


@dataclass(frozen=True, slots=True)
class PendingFrame:
    """An encoded frame waiting for its sequence number (or the end-of-stream mark)."""

    ts_capture_ns: int
    width: int = 0
    height: int = 0
    jpeg: bytes = b""
    eos: bool = False
    source_index: int = -1
    pts_ns: int = -1
    ts_arrival_ns: int = 0


class Outbox:
    """Bounded FIFO between capture and the sender.

    ``offer`` (live cameras) drops the *oldest* waiting frame when full, so
    after an outage the newest frames go out; ``put`` (files) waits instead.
    ``capacity``: frames kept; more rides out longer broker outages for more memory.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._items: deque[PendingFrame] = deque()
        self._cond = asyncio.Condition()
        self._closed = False
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items)

    async def offer(self, item: PendingFrame) -> int:
        """Append ``item``; returns how many old frames were dropped to make room (0 or 1)."""
        async with self._cond:
            if self._closed:
                raise RuntimeError("outbox closed")
            dropped = 0
            while len(self._items) >= self.capacity:
                self._items.popleft()
                dropped += 1
            self._items.append(item)
            self.dropped += dropped
            self._cond.notify_all()
            return dropped

    async def put(self, item: PendingFrame) -> None:
        """Append ``item`` once there is room (back-pressure)."""
        async with self._cond:
            await self._cond.wait_for(lambda: len(self._items) < self.capacity or self._closed)
            if self._closed:
                raise RuntimeError("outbox closed")
            self._items.append(item)
            self._cond.notify_all()

    async def take_batch(self, max_items: int) -> list[PendingFrame] | None:
        """Up to ``max_items`` frames, waiting for at least one; None once closed and empty."""
        async with self._cond:
            await self._cond.wait_for(lambda: bool(self._items) or self._closed)
            if not self._items:
                return None
            batch = [self._items.popleft() for _ in range(min(max_items, len(self._items)))]
            self._cond.notify_all()
            return batch

    async def close(self) -> None:
        """No more frames: the sender drains what is left, then stops."""
        async with self._cond:
            self._closed = True
            self._cond.notify_all()


class FramePublisher:
    """Numbers frames and sends them to Kafka, retrying until acknowledged.

    Args:
        producer: a started aiokafka producer.
        topic: the frames topic.
        camera_id: the message key, so one camera stays in one partition, in order.
        source: what the frames came from (credentials removed), carried in each frame.
        max_in_flight: frames sent before awaiting their acknowledgements.
        retry_cap_s: cap of the retry backoff when the broker fails.
        claim_store: ``async (key, jpeg) -> None`` storing a JPEG (claim-check
            mode), or None to carry JPEGs inline.
        on_published: ``(frames, jpeg_bytes)`` after each acknowledged batch.
        first_seq: the first sequence number.
    """

    def __init__(
        self,
        producer: AIOKafkaProducer | Any,
        topic: str,
        camera_id: str,
        source: str,
        max_in_flight: int = 8,
        retry_cap_s: float = 10.0,
        claim_store: Callable[[str, bytes], Any] | None = None,
        on_published: Callable[[list[Frame]], None] | None = None,
        first_seq: int = 0,
    ) -> None:
        self.producer = producer
        self.topic = topic
        self.camera_id = camera_id
        self.source = source
        self.max_in_flight = max_in_flight
        self.retry_cap_s = retry_cap_s
        self.claim_store = claim_store
        self.on_published = on_published
        self.next_seq = first_seq
        self.published = 0
        self.published_bytes = 0
        self.eos_sent = False
        self._key = camera_id.encode()
        self.retry_initial_s = min(RETRY_INITIAL_S, retry_cap_s)

    def _retry_backoff(self) -> Backoff:
        """A fresh delay sequence for one send or claim-check write that keeps failing."""
        return Backoff(self.retry_initial_s, self.retry_cap_s, RETRY_JITTER)

    def _number(self, pending: PendingFrame) -> Frame:
        seq = self.next_seq
        self.next_seq += 1
        if pending.eos:
            return Frame(
                camera_id=self.camera_id,
                seq=seq,
                ts_capture_ns=pending.ts_capture_ns,
                eos=True,
                source=self.source,
            )
        return Frame(
            camera_id=self.camera_id,
            seq=seq,
            ts_capture_ns=pending.ts_capture_ns,
            width=pending.width,
            height=pending.height,
            jpeg=pending.jpeg,
            source=self.source,
            source_index=pending.source_index,
            pts_ns=pending.pts_ns,
            ts_arrival_ns=pending.ts_arrival_ns,
        )

    async def _store_claims(self, frames: list[Frame]) -> list[Frame]:
        assert self.claim_store is not None
        out: list[Frame] = []
        for frame in frames:
            if frame.eos:
                out.append(frame)
                continue
            key = claim_check_key(self.camera_id, frame.seq)
            backoff = self._retry_backoff()
            while True:
                try:
                    await self.claim_store(key, frame.jpeg)
                    break
                except Exception as exc:  # noqa: BLE001 - Redis down: retry, keep the number
                    delay = backoff.next_delay_s()
                    log.warning(
                        "claim_check_failed",
                        extra={"key": key, "error": repr(exc), "retry_s": round(delay, 2)},
                    )
                    await asyncio.sleep(delay)
            out.append(msgspec.structs.replace(frame, jpeg=b"", jpeg_ref=key))
        return out

    async def send(self, batch: list[PendingFrame]) -> list[Frame]:
        """Number ``batch``, send it and wait for every acknowledgement (retrying)."""
        frames = [self._number(p) for p in batch]
        wire = await self._store_claims(frames) if self.claim_store is not None else frames
        await self._produce_in_order([encode(f) for f in wire])
        self.published += len(frames)
        self.published_bytes += sum(len(f.jpeg) for f in frames)
        self.eos_sent = self.eos_sent or any(f.eos for f in frames)
        if self.on_published is not None:
            self.on_published(frames)
        return frames

    async def _produce_in_order(self, values: list[bytes]) -> None:
        """Send ``values`` and await every ack; after a broker error resend from the
        first unacknowledged one (the acknowledged prefix is not repeated).

        A message after the first failure may have been stored too, so a
        consumer can see a repeated ``seq`` after an outage (at-least-once):
        it keeps the first and skips ``seq`` it has passed.
        """
        backoff = self._retry_backoff()
        start = 0
        while start < len(values):
            futures = []
            try:
                for value in values[start:]:
                    futures.append(await self.producer.send(self.topic, value=value, key=self._key))
            except KafkaError as exc:
                error: BaseException | None = exc
            else:
                error = None
            results = await asyncio.gather(*futures, return_exceptions=True)
            acked = 0
            for result in results:
                if isinstance(result, BaseException):
                    error = error or result
                    break
                acked += 1
            start += acked
            if start >= len(values):
                return
            if error is not None and not isinstance(error, KafkaError):
                raise error
            metrics.KAFKA_ERRORS.labels(STAGE, "produce").inc()
            delay = backoff.next_delay_s()
            log.warning(
                "produce_failed",
                extra={
                    "topic": self.topic,
                    "unacked": len(values) - start,
                    "error": repr(error),
                    "retry_s": round(delay, 2),
                },
            )
            await asyncio.sleep(delay)

    async def run(self, outbox: Outbox) -> None:
        """Send what the outbox holds until it is closed and empty."""
        while (batch := await outbox.take_batch(self.max_in_flight)) is not None:
            await self.send(batch)
