"""The consume → handle → produce → commit loop every Kafka stage runs.

Delivery is at-least-once: an offset is committed only after everything the
batch produced has been acknowledged by the broker; a crash before that
replays the batch, and downstream absorbs the repeat (deterministic ids).
Undecodable messages, and messages the stage rejects, go to the dead-letter
topic with the reason and the original bytes; the stage goes on.

The stage's ``handle`` is ordinary blocking code (ONNX, OpenCV, Redis): it runs
in a worker thread so the event loop keeps Kafka heartbeats going.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import CommitFailedError, KafkaError, TopicAlreadyExistsError

from schemas.codec import DecodeError, decode, encode
from schemas.messages import DeadLetter
from schemas.topics import DEADLETTER, TOPICS, Topic
from service import metrics
from service.kafka_security import client_kwargs, topic_configs
from service.settings import KafkaSettings

log = logging.getLogger(__name__)

DEFAULT_PARTITIONS = 4


@dataclass(frozen=True, slots=True)
class Record:
    """One consumed message, decoded."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    message: Any
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class Output:
    """One message to produce."""

    topic: str
    key: bytes | None
    value: bytes

    @classmethod
    def of(cls, topic: Topic, key: str | None, message: msgspec.Struct) -> Output:
        return cls(topic.name, key.encode() if key is not None else None, encode(message))


@runtime_checkable
class Stage(Protocol):
    """What :func:`run_stage` needs of a stage. Optional hooks: ``on_assign``,
    ``on_revoke`` (after the in-flight batch is committed: save state),
    ``after_commit`` (periodic checkpoints: never ahead of produced output)."""

    name: str
    input: Topic

    def handle(self, records: list[Record]) -> list[Output]: ...


def dead_letter(stage_name: str, record: Record | Any, reason: str) -> Output:
    """A dead-letter output for ``record`` (a :class:`Record` or an aiokafka record)."""
    msg = DeadLetter(
        stage=stage_name,
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        reason=reason[:2000],
        key=record.key,
        value=record.value or b"",
        ts_ns=time.time_ns(),
    )
    return Output(DEADLETTER.name, stage_name.encode(), encode(msg))


def producer_config(settings: KafkaSettings, role: str) -> dict[str, Any]:
    return {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": f"{settings.client_id}-{role}",
        "acks": "all",
        "linger_ms": settings.produce_linger_ms,
        "max_request_size": settings.max_message_bytes,
        "request_timeout_ms": 15_000,
        "retry_backoff_ms": 200,
        **client_kwargs(settings),
    }


async def start_with_retry(
    client: Any, what: str, stop: asyncio.Event | None, cap_s: float
) -> None:
    """``await client.start()`` until the broker answers (exponential backoff, jitter)."""
    delay = 0.2
    while True:
        try:
            await client.start()
            return
        except KafkaError as exc:
            if stop is not None and stop.is_set():
                raise
            log.warning(
                "kafka_unreachable",
                extra={"client": what, "error": repr(exc), "retry_s": round(delay, 2)},
            )
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, cap_s)


async def ensure_topics(
    settings: KafkaSettings,
    topics: Iterable[str],
    partitions: int | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Create ``topics`` if missing (idempotent), so consumers never race auto-creation."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers,
        client_id=f"{settings.client_id}-admin",
        **client_kwargs(settings),
    )
    await start_with_retry(admin, "admin", stop, settings.reconnect_backoff_max_s)
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if missing:
            new = [
                NewTopic(
                    t,
                    num_partitions=partitions or settings.partitions,
                    replication_factor=settings.replication_factor,
                    topic_configs=topic_configs(settings, t),
                )
                for t in missing
            ]
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(new)
    finally:
        await admin.close()


async def produce_all(
    producer: AIOKafkaProducer,
    outputs: list[Output],
    stage: str,
    stop: asyncio.Event | None,
    cap_s: float,
) -> None:
    """Send every output and wait for all acknowledgements; retry the lot on broker errors.

    Retrying the whole lot may duplicate some messages: that is the
    at-least-once contract, and downstream ids are deterministic.
    """
    delay = 0.2
    while True:
        try:
            futures = [await producer.send(o.topic, value=o.value, key=o.key) for o in outputs]
            await asyncio.gather(*futures)
            for o in outputs:
                metrics.MESSAGES_OUT.labels(stage, o.topic).inc()
                if o.topic == DEADLETTER.name:
                    metrics.DEAD_LETTERS.labels(stage).inc()
            return
        except KafkaError as exc:
            metrics.KAFKA_ERRORS.labels(stage, "produce").inc()
            if stop is not None and stop.is_set() and delay >= cap_s:
                raise
            log.warning(
                "produce_failed",
                extra={"stage": stage, "error": repr(exc), "retry_s": round(delay, 2)},
            )
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, cap_s)


def _handle_safely(stage: Stage, records: list[Record]) -> list[Output]:
    """Handle the batch; if it raises, handle record by record and dead-letter the failures."""
    try:
        return stage.handle(records)
    except Exception as exc:  # noqa: BLE001 - one bad record must not stop the stage
        log.warning("batch_failed_retrying_singly", extra={"stage": stage.name, "error": repr(exc)})
    outputs: list[Output] = []
    for rec in records:
        try:
            outputs.extend(stage.handle([rec]))
        except Exception as exc:  # noqa: BLE001
            log.exception(
                "record_failed",
                extra={
                    "stage": stage.name,
                    "topic": rec.topic,
                    "partition": rec.partition,
                    "offset": rec.offset,
                },
            )
            outputs.append(dead_letter(stage.name, rec, f"{type(exc).__name__}: {exc}"))
    return outputs


def _capture_ns(message: Any) -> int | None:
    for attr in ("ts_capture_ns", "ts_end_ns"):
        value = getattr(message, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Calls the stage's hooks; revocation waits for the in-flight batch to be committed."""

    def __init__(self, stage: Stage, busy: asyncio.Lock, wait_s: float) -> None:
        self.stage, self.busy, self.wait_s = stage, busy, wait_s

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        parts = sorted(tp.partition for tp in revoked)
        hook = getattr(self.stage, "on_revoke", None)
        if not parts or hook is None:
            return
        try:
            await asyncio.wait_for(self.busy.acquire(), self.wait_s)
        except TimeoutError:
            log.warning("revoke_while_busy", extra={"stage": self.stage.name})
            await asyncio.to_thread(hook, parts)
            return
        try:
            await asyncio.to_thread(hook, parts)
        finally:
            self.busy.release()
        log.info("partitions_revoked", extra={"stage": self.stage.name, "partitions": parts})

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        parts = sorted(tp.partition for tp in assigned)
        hook = getattr(self.stage, "on_assign", None)
        if hook is not None:
            await asyncio.to_thread(hook, parts)
        log.info("partitions_assigned", extra={"stage": self.stage.name, "partitions": parts})


async def run_stage(
    stage: Stage,
    settings: KafkaSettings,
    group_id: str | None = None,
    stop: asyncio.Event | None = None,
    partitions: int | None = None,
) -> None:
    """Run ``stage`` as a member of consumer group ``group_id`` until ``stop`` is set.

    Each batch: poll → decode (undecodable → dead letter) → ``handle`` in a
    thread → produce and await every ack → commit ``offset + 1`` per partition
    → ``after_commit``. On stop: the batch in hand is finished, produced and
    committed, then ``on_revoke`` runs for every owned partition and the
    clients close. Broker outages are retried with capped exponential backoff.
    """
    stop = stop or asyncio.Event()
    group_id = group_id or f"crosscam-{stage.name}"
    out_topics = [t for t in TOPICS if t != stage.input.name]
    await ensure_topics(settings, [stage.input.name, *out_topics], partitions, stop)

    busy = asyncio.Lock()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        group_id=group_id,
        client_id=f"{settings.client_id}-{stage.name}",
        enable_auto_commit=False,
        auto_offset_reset=settings.auto_offset_reset,
        max_partition_fetch_bytes=settings.max_message_bytes,
        fetch_max_bytes=max(settings.max_message_bytes, 52_428_800),
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=max(settings.session_timeout_ms // 4, 500),
        max_poll_interval_ms=300_000,
        retry_backoff_ms=200,
        **client_kwargs(settings),
    )
    producer = AIOKafkaProducer(**producer_config(settings, stage.name))
    cap = settings.reconnect_backoff_max_s
    await start_with_retry(producer, "producer", stop, cap)
    consumer.subscribe(
        [stage.input.name], listener=_Rebalance(stage, busy, settings.session_timeout_ms / 2000)
    )
    await start_with_retry(consumer, "consumer", stop, cap)
    log.info(
        "stage_started", extra={"stage": stage.name, "group": group_id, "topic": stage.input.name}
    )
    after_commit = getattr(stage, "after_commit", None)
    try:
        while not stop.is_set():
            try:
                batches = await _poll_batch(consumer, settings)
            except KafkaError as exc:
                metrics.KAFKA_ERRORS.labels(stage.name, "fetch").inc()
                log.warning("fetch_failed", extra={"stage": stage.name, "error": repr(exc)})
                await asyncio.sleep(0.5)
                continue
            if not batches:
                continue
            async with busy:
                await _process_batch(stage, consumer, producer, batches, stop, cap)
            if after_commit is not None:
                await asyncio.to_thread(after_commit, sorted(tp.partition for tp in batches))
    finally:
        owned = sorted(tp.partition for tp in consumer.assignment())
        hook = getattr(stage, "on_revoke", None)
        if hook is not None and owned:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(hook, owned)
        with contextlib.suppress(Exception):
            await producer.stop()
        with contextlib.suppress(Exception):
            await consumer.stop()
        log.info("stage_stopped", extra={"stage": stage.name})


async def _poll_batch(
    consumer: AIOKafkaConsumer, settings: KafkaSettings
) -> dict[TopicPartition, list[Any]]:
    """Up to ``max_batch_records`` records, waiting at most ``batch_wait_ms`` after the
    first one for more (``N`` frames or ``T`` milliseconds, whichever first)."""
    batches: dict[TopicPartition, list[Any]] = await consumer.getmany(
        timeout_ms=settings.poll_timeout_ms, max_records=settings.max_batch_records
    )
    if not batches or settings.batch_wait_ms <= 0:
        return batches
    deadline = time.monotonic() + settings.batch_wait_ms / 1000
    count = sum(len(v) for v in batches.values())
    while count < settings.max_batch_records:
        left_ms = int((deadline - time.monotonic()) * 1000)
        if left_ms <= 0:
            break
        more = await consumer.getmany(
            timeout_ms=left_ms, max_records=settings.max_batch_records - count
        )
        for tp, msgs in more.items():
            batches.setdefault(tp, []).extend(msgs)
            count += len(msgs)
    return batches


async def _process_batch(
    stage: Stage,
    consumer: AIOKafkaConsumer,
    producer: AIOKafkaProducer,
    batches: dict[TopicPartition, list[Any]],
    stop: asyncio.Event,
    cap: float,
) -> None:
    outputs: list[Output] = []
    records: list[Record] = []
    msg_type = stage.input.message_type
    for _tp, msgs in batches.items():
        for m in msgs:
            camera = m.key.decode(errors="replace") if m.key else ""
            metrics.MESSAGES_IN.labels(stage.name, camera).inc()
            try:
                decoded = decode(msg_type, m.value)
            except DecodeError as exc:
                log.warning(
                    "dead_letter",
                    extra={
                        "stage": stage.name,
                        "offset": m.offset,
                        "partition": m.partition,
                        "reason": str(exc),
                    },
                )
                outputs.append(dead_letter(stage.name, m, str(exc)))
                continue
            records.append(
                Record(m.topic, m.partition, m.offset, m.key, m.value, decoded, m.timestamp)
            )
    if records:
        t0 = time.perf_counter()
        outputs.extend(await asyncio.to_thread(_handle_safely, stage, records))
        metrics.BATCH_SECONDS.labels(stage.name).observe(time.perf_counter() - t0)
        metrics.BATCH_RECORDS.labels(stage.name).observe(len(records))
        now = time.time_ns()
        for rec in records:
            ts = _capture_ns(rec.message)
            if ts is not None:
                metrics.CAPTURE_LATENCY.labels(stage.name).observe(max(0, now - ts) / 1e9)
    if outputs:
        await produce_all(producer, outputs, stage.name, stop, cap)
    offsets = {tp: msgs[-1].offset + 1 for tp, msgs in batches.items()}
    try:
        await consumer.commit(offsets)
    except (CommitFailedError, KafkaError) as exc:
        # The partitions moved to another replica mid-batch: it re-reads from the
        # last committed offset; our outputs are already acknowledged, so the
        # repeat is absorbed downstream by deterministic ids.
        metrics.KAFKA_ERRORS.labels(stage.name, "commit").inc()
        log.warning("commit_failed", extra={"stage": stage.name, "error": repr(exc)})
    for tp in batches:
        hw = consumer.highwater(tp)
        if hw is not None:
            metrics.CONSUMER_LAG.labels(stage.name, str(tp.partition)).set(max(0, hw - offsets[tp]))


def install_stop_signals(stop: asyncio.Event) -> None:
    """SIGTERM and SIGINT set ``stop``: the stage finishes its batch, commits and exits."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
