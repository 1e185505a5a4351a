"""The consume → handle → produce → commit loop every Kafka stage runs.

Delivery is at-least-once: an offset is committed only after everything the
batch produced has been acknowledged by the broker; a crash before that
replays the batch, and downstream absorbs the repeat (deterministic ids).
Undecodable messages, and messages the stage rejects, go to the dead-letter
topic with the reason and the original bytes; the stage goes on.

No output is lost when ``handle`` fails part-way (see :mod:`service.delivery`):
a stateful stage applies records one by one and hands back the outputs of the
records it applied before the failure; the loop publishes them, retries the
failed record with backoff when the fault is transient (a dependency
unreachable), else dead-letters it, and goes on with the next record. A dead
letter too large for the broker is stored truncated, with the original size
and SHA-256; it never wedges the stage.

The stage's ``handle`` is ordinary blocking code (ONNX, OpenCV, Redis): it runs
in a worker thread so the event loop keeps Kafka heartbeats going.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import logging
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    CommitFailedError,
    KafkaError,
    MessageSizeTooLargeError,
    RecordTooLargeError,
    TopicAlreadyExistsError,
)

from common.backoff import Backoff
from schemas.codec import DecodeError, decode, encode
from schemas.messages import DeadLetter
from schemas.topics import DEADLETTER, TOPICS, Topic
from service import metrics
from service.delivery import PartialBatch, is_transient
from service.kafka_security import client_kwargs, topic_configs
from service.settings import KafkaSettings

log = logging.getLogger(__name__)

DEFAULT_PARTITIONS = 4
# Bytes a DeadLetter adds around the original value (names, reason <= 2000, digest).
_DEAD_LETTER_OVERHEAD = 4096
# A dead letter the broker refused is retried with at most this much of the value.
_DEAD_LETTER_FALLBACK_BYTES = 256 * 1024
_TOO_LARGE = (MessageSizeTooLargeError, RecordTooLargeError)


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
    ``after_commit`` (periodic checkpoints: never ahead of produced output).

    A stage that keeps state across records must apply them one by one with
    :func:`service.delivery.apply_each`, so a failure at one record keeps the
    outputs of those before it (:func:`handle_batch`)."""

    name: str
    input: Topic

    def handle(self, records: list[Record]) -> list[Output]: ...


class EarlySender:
    """Sends outputs a stage hands over mid-batch (from its handling thread), right away.

    A stage that declares ``streams_outputs = True`` gets one as ``stage.emit``
    while a batch is handled and may call ``emit(outputs)`` with outputs it
    will not return; the rest of the batch's outputs are returned as usual.
    They are sent on the event loop as they come; :meth:`settle` waits for
    every acknowledgement before the batch's offsets are committed, so the
    at-least-once contract is the same, and a downstream stage sees a
    record's output as soon as it exists instead of when the whole batch is done.
    """

    def __init__(self, producer: AIOKafkaProducer, loop: asyncio.AbstractEventLoop) -> None:
        self.producer = producer
        self.loop = loop
        self._sent: list[tuple[list[Output], concurrent.futures.Future[list[KafkaError | None]]]]
        self._sent = []

    def __call__(self, outputs: list[Output]) -> None:
        if outputs:
            fut = asyncio.run_coroutine_threadsafe(_send_all(self.producer, outputs), self.loop)
            self._sent.append((list(outputs), fut))

    async def settle(self, stage: str) -> list[Output]:
        """Wait for everything sent; the outputs that were not acknowledged (to send again)."""
        failed: list[Output] = []
        for outputs, fut in self._sent:
            try:
                errors = await asyncio.wrap_future(fut)
            except Exception as exc:  # noqa: BLE001 - whatever went wrong, send them again
                log.warning("early_send_failed", extra={"stage": stage, "error": repr(exc)})
                failed.extend(outputs)
                continue
            for o, err in zip(outputs, errors, strict=True):
                if err is None:
                    metrics.MESSAGES_OUT.labels(stage, o.topic).inc()
                else:
                    failed.append(o)
        self._sent.clear()
        return failed


def dead_letter(stage_name: str, record: Record | Any, reason: str) -> Output:
    """A dead-letter output for ``record`` (a :class:`Record` or an aiokafka record).

    The original bytes are kept whole here, with their size and SHA-256;
    :func:`produce_all` truncates them if the broker cannot take them.
    """
    value = record.value or b""
    msg = DeadLetter(
        stage=stage_name,
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        reason=reason[:2000],
        key=record.key,
        value=value,
        ts_ns=time.time_ns(),
        value_size=len(value),
        value_sha256=hashlib.sha256(value).hexdigest(),
    )
    return Output(DEADLETTER.name, stage_name.encode(), encode(msg))


def shrink_dead_letter(out: Output, max_bytes: int) -> Output:
    """``out`` (a dead letter) with its value cut so the message fits ``max_bytes``.

    Keeps ``value_size`` and ``value_sha256`` of the original bytes and sets
    ``truncated``; an output that already fits is returned as it is.
    """
    if len(out.value) <= max_bytes:
        return out
    msg = decode(DeadLetter, out.value)
    keep = max(0, max_bytes - _DEAD_LETTER_OVERHEAD - len(msg.key or b""))
    if not msg.value_sha256:
        msg.value_size, msg.value_sha256 = len(msg.value), hashlib.sha256(msg.value).hexdigest()
    msg.value, msg.truncated = msg.value[:keep], True
    return Output(out.topic, out.key, encode(msg))


def refused_output(stage_name: str, out: Output, error: BaseException) -> Output:
    """A dead letter for an output the broker refused as too large (``partition`` = -1)."""
    fake = Record(out.topic, -1, -1, out.key, out.value, None, 0)
    return dead_letter(stage_name, fake, f"output refused by the broker: {error!r}")


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
    backoff = Backoff(initial_s=0.2, max_s=cap_s)
    while True:
        try:
            await client.start()
            return
        except KafkaError as exc:
            if stop is not None and stop.is_set():
                raise
            delay = backoff.next_delay_s()
            log.warning(
                "kafka_unreachable",
                extra={"client": what, "error": repr(exc), "retry_s": round(delay, 2)},
            )
            await asyncio.sleep(delay)


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


async def _send_all(producer: AIOKafkaProducer, outputs: list[Output]) -> list[KafkaError | None]:
    """Send every output, wait for every acknowledgement: the error of each (None = acked)."""
    errors: list[KafkaError | None] = [None] * len(outputs)
    sent: list[tuple[int, Any]] = []
    for i, o in enumerate(outputs):
        try:
            sent.append((i, await producer.send(o.topic, value=o.value, key=o.key)))
        except KafkaError as exc:  # too large for max_request_size, or no metadata
            errors[i] = exc
    for i, fut in sent:
        try:
            await fut
        except KafkaError as exc:
            errors[i] = exc
    return errors


def _after_too_large(stage: str, out: Output, error: KafkaError) -> Output | None:
    """What to send instead of ``out``, which the broker refused as too large."""
    if out.topic != DEADLETTER.name:
        log.error(
            "output_too_large", extra={"stage": stage, "topic": out.topic, "bytes": len(out.value)}
        )
        return shrink_dead_letter(refused_output(stage, out, error), _DEAD_LETTER_FALLBACK_BYTES)
    budget = min(_DEAD_LETTER_FALLBACK_BYTES, len(out.value) // 2)
    smaller = shrink_dead_letter(out, max(budget, _DEAD_LETTER_OVERHEAD))
    if len(smaller.value) >= len(out.value):  # nothing left to cut: drop it rather than wedge
        log.error("dead_letter_dropped", extra={"stage": stage, "error": repr(error)})
        return None
    return smaller


async def produce_all(
    producer: AIOKafkaProducer,
    outputs: list[Output],
    stage: str,
    stop: asyncio.Event | None,
    cap_s: float,
    max_bytes: int | None = None,
) -> None:
    """Send every output and wait for all acknowledgements; retry failed ones on broker errors.

    A retried send may duplicate a message: that is the at-least-once
    contract, and downstream ids are deterministic. Dead letters over
    ``max_bytes`` are truncated before sending; a message the broker refuses
    as too large is never retried as it is: a dead letter is cut further, any
    other output becomes a (truncated) dead letter.
    """
    backoff = Backoff(initial_s=0.2, max_s=cap_s)
    pending = [
        shrink_dead_letter(o, max_bytes) if max_bytes and o.topic == DEADLETTER.name else o
        for o in outputs
    ]
    while pending:
        errors = await _send_all(producer, pending)
        retry: list[Output] = []
        transient: KafkaError | None = None
        for o, err in zip(pending, errors, strict=True):
            if err is None:
                metrics.MESSAGES_OUT.labels(stage, o.topic).inc()
                if o.topic == DEADLETTER.name:
                    metrics.DEAD_LETTERS.labels(stage).inc()
            elif isinstance(err, _TOO_LARGE):
                metrics.KAFKA_ERRORS.labels(stage, "too_large").inc()
                instead = _after_too_large(stage, o, err)
                retry.extend([instead] if instead is not None else [])
            else:
                retry.append(o)
                transient = err
        pending = retry
        if transient is None:
            continue
        metrics.KAFKA_ERRORS.labels(stage, "produce").inc()
        delay = backoff.next_delay_s()
        if stop is not None and stop.is_set() and delay >= cap_s:
            raise transient
        log.warning(
            "produce_failed",
            extra={"stage": stage, "error": repr(transient), "retry_s": round(delay, 2)},
        )
        await asyncio.sleep(delay)


@dataclass
class Handled:
    """What :func:`handle_batch` did: the outputs, and the records it did not get to.

    ``unfinished`` is empty unless the loop was stopped while waiting out a
    transient fault; their offsets must not be committed.
    """

    outputs: list[Output]
    unfinished: list[Record] = field(default_factory=list)


def _wait_out(backoff: Backoff, stopping: Callable[[], bool]) -> bool:
    """Sleep the next backoff delay in short slices; False as soon as ``stopping()``."""
    deadline = time.monotonic() + backoff.next_delay_s()
    while time.monotonic() < deadline:
        if stopping():
            return False
        time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
    return not stopping()


def _record_failed(stage: Stage, rec: Record, exc: BaseException, transient: bool) -> None:
    where = {"stage": stage.name, "topic": rec.topic, "partition": rec.partition,
             "offset": rec.offset, "error": repr(exc)}  # fmt: skip
    if transient:
        log.warning("record_transient_fault_retrying", extra=where)
    else:
        log.error("record_failed", extra=where, exc_info=exc)


def handle_batch(
    stage: Stage,
    records: list[Record],
    stopping: Callable[[], bool] = lambda: False,
    backoff: Backoff | None = None,
) -> Handled:
    """Handle the batch so that no output is lost and nothing fails silently.

    * ``handle`` succeeds: its outputs.
    * It raises :class:`~service.delivery.PartialBatch` at record ``k``: the
      outputs of records ``0..k-1`` are kept (those records are applied and
      would be skipped as replays if run again); record ``k`` is retried or
      dead-lettered; handling goes on from ``k+1``.
    * It raises anything else: the stage is stateless for the batch; a
      transient fault retries the whole batch, any other fault re-runs the
      records one by one to find the culprit(s).

    A transient fault (:func:`~service.delivery.is_transient`) is retried with
    ``backoff`` until it clears or ``stopping()``; then the records not yet
    handled come back in ``unfinished``. Any other fault dead-letters the record.
    """
    backoff = backoff or Backoff(initial_s=0.2, max_s=10.0)
    outputs: list[Output] = []
    pending, singly = list(records), False
    while pending:
        chunk = pending[:1] if singly else pending
        try:
            outputs.extend(stage.handle(chunk))
            pending = pending[len(chunk) :]
            backoff.reset()
            continue
        except PartialBatch as pb:
            outputs.extend(pb.outputs)  # type: ignore[arg-type]
            pending, cause = pending[pb.index :], pb.cause
            if pb.index:
                backoff.reset()
        except Exception as exc:  # noqa: BLE001 - one bad record must not stop the stage
            if len(chunk) > 1 and not is_transient(exc):
                log.warning(
                    "batch_failed_retrying_singly", extra={"stage": stage.name, "error": repr(exc)}
                )
                singly = True
                continue
            cause = exc
        transient = is_transient(cause)
        _record_failed(stage, pending[0], cause, transient)
        if transient:
            if not _wait_out(backoff, stopping):
                return Handled(outputs, pending)
            continue
        outputs.append(dead_letter(stage.name, pending[0], f"{type(cause).__name__}: {cause}"))
        pending = pending[1:]
    return Handled(outputs)


def _capture_ns(message: Any) -> int | None:
    for attr in ("ts_capture_ns", "ts_end_ns"):
        value = getattr(message, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Calls the stage's hooks, never while a batch is in flight (no torn checkpoint).

    Revocation waits up to ``wait_s`` for the in-flight batch to be produced
    and committed, then runs ``on_revoke``. If the batch is still running, the
    revoked partitions are remembered and ``on_revoke`` runs for them once the
    batch is over: first thing in ``on_partitions_assigned`` (which waits for
    the batch), or after the batch in :func:`run_stage`, whichever comes first.
    """

    def __init__(self, stage: Stage, busy: asyncio.Lock, wait_s: float) -> None:
        self.stage, self.busy, self.wait_s = stage, busy, wait_s
        self.deferred: set[int] = set()

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        parts = sorted(tp.partition for tp in revoked)
        for part in parts:  # a gauge left behind would show lag this replica no longer has
            with contextlib.suppress(KeyError):
                metrics.CONSUMER_LAG.remove(self.stage.name, str(part))
        if not parts or getattr(self.stage, "on_revoke", None) is None:
            return
        try:
            await asyncio.wait_for(self.busy.acquire(), self.wait_s)
        except TimeoutError:
            self.deferred.update(parts)
            log.warning(
                "revoke_while_busy_deferred", extra={"stage": self.stage.name, "partitions": parts}
            )
            return
        try:
            self.deferred.update(parts)
            await self.run_deferred()
        finally:
            self.busy.release()
        log.info("partitions_revoked", extra={"stage": self.stage.name, "partitions": parts})

    async def run_deferred(self) -> None:
        """``on_revoke`` for partitions revoked during a batch (call with ``busy`` held)."""
        hook = getattr(self.stage, "on_revoke", None)
        parts, self.deferred = sorted(self.deferred), set()
        if parts and hook is not None:
            await asyncio.to_thread(hook, parts)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        parts = sorted(tp.partition for tp in assigned)
        hook = getattr(self.stage, "on_assign", None)
        async with self.busy:
            await self.run_deferred()
            if hook is not None:
                await asyncio.to_thread(hook, parts)
        log.info("partitions_assigned", extra={"stage": self.stage.name, "partitions": parts})


def _overlaps_commits(stage: Stage) -> bool:
    """Whether the loop may handle the next batch while the previous one is committed.

    Only for a stage that asks (``overlap_commits = True``) and keeps no
    checkpointed state: no ``after_commit``, ``on_revoke`` or ``on_assign`` hook,
    which must never see the next batch half applied.
    """
    hooks = ("after_commit", "on_revoke", "on_assign")
    return bool(getattr(stage, "overlap_commits", False)) and not any(
        getattr(stage, h, None) is not None for h in hooks
    )


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
    clients close. Broker outages are retried with capped exponential backoff;
    so are transient faults of the stage's dependencies (see :func:`handle_batch`).
    A partition revoked mid-batch is checkpointed (``on_revoke``) after the
    batch, never during it. A stage without checkpoints may ask for
    ``overlap_commits``: the next batch is then polled and handled while the
    previous batch's last acknowledgements and its commit are awaited (the
    loop's broker round trips no longer leave the stage idle); a batch's
    commit still follows all of its acks, and commits stay in order.
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
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
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
    listener = _Rebalance(stage, busy, settings.session_timeout_ms / 2000)
    consumer.subscribe([stage.input.name], listener=listener)
    await start_with_retry(consumer, "consumer", stop, cap)
    log.info(
        "stage_started", extra={"stage": stage.name, "group": group_id, "topic": stage.input.name}
    )
    after_commit = getattr(stage, "after_commit", None)
    overlap = _overlaps_commits(stage)
    finishing: asyncio.Task[list[int]] | None = None
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
            if overlap:
                # This batch is handled while the previous one's last acks and commit
                # complete; commits stay in order and each follows its batch's acks.
                handled = await _handle_batch(stage, producer, batches, stop, settings)
                if finishing is not None:
                    await finishing
                finishing = asyncio.create_task(
                    _produce_and_commit(
                        stage, consumer, producer, batches, handled, stop, settings
                    )
                )
                continue
            async with busy:
                done = await _process_batch(stage, consumer, producer, batches, stop, settings)
                await listener.run_deferred()
                mine = {tp.partition for tp in consumer.assignment()}
                done = [p for p in done if p in mine]
                if after_commit is not None and done:
                    await asyncio.to_thread(after_commit, done)
    finally:
        if finishing is not None:
            await finishing  # the last batch is produced and committed before the clients close
        with contextlib.suppress(Exception):
            await listener.run_deferred()  # revoked mid-batch, not yet checkpointed
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


def _decode_batch(
    stage: Stage, batches: dict[TopicPartition, list[Any]]
) -> tuple[list[Record], list[Output]]:
    """The decodable records, and dead letters for the others."""
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
                log.warning("dead_letter", extra={"stage": stage.name, "offset": m.offset,
                                                  "partition": m.partition, "reason": str(exc)})  # fmt: skip
                outputs.append(dead_letter(stage.name, m, str(exc)))
                continue
            records.append(
                Record(m.topic, m.partition, m.offset, m.key, m.value, decoded, m.timestamp)
            )
    return records, outputs


def commit_offsets(
    batches: dict[TopicPartition, list[Any]], unfinished: list[Record]
) -> dict[TopicPartition, int]:
    """Per partition: the offset after the batch, or the first record not handled."""
    offsets: dict[TopicPartition, int] = {}
    for tp, msgs in batches.items():
        left = [r.offset for r in unfinished if r.partition == tp.partition and r.topic == tp.topic]
        offset = min(left) if left else msgs[-1].offset + 1
        if offset > msgs[0].offset:
            offsets[tp] = offset
    return offsets


async def _handle_batch(
    stage: Stage,
    producer: AIOKafkaProducer,
    batches: dict[TopicPartition, list[Any]],
    stop: asyncio.Event,
    settings: KafkaSettings,
) -> Handled:
    """Decode and handle one batch: the outputs still to produce, and the unfinished records.

    A streaming stage's early outputs are acknowledged here already (those the
    broker refused come back among the outputs, to be sent again)."""
    records, outputs = _decode_batch(stage, batches)
    if not records:
        return Handled(outputs)
    t0 = time.perf_counter()
    backoff = Backoff(initial_s=0.2, max_s=settings.reconnect_backoff_max_s)
    early = None
    if getattr(stage, "streams_outputs", False):
        early = EarlySender(producer, asyncio.get_running_loop())
        stage.emit = early  # type: ignore[attr-defined]
    try:
        handled = await asyncio.to_thread(handle_batch, stage, records, stop.is_set, backoff)
    finally:
        if early is not None:
            stage.emit = None  # type: ignore[attr-defined]
            # sent again with the rest (a repeat is absorbed downstream)
            outputs.extend(await early.settle(stage.name))
    outputs.extend(handled.outputs)
    metrics.BATCH_SECONDS.labels(stage.name).observe(time.perf_counter() - t0)
    metrics.BATCH_RECORDS.labels(stage.name).observe(len(records))
    now = time.time_ns()
    for rec in records:
        ts = _capture_ns(rec.message)
        if ts is not None:
            metrics.CAPTURE_LATENCY.labels(stage.name).observe(max(0, now - ts) / 1e9)
    return Handled(outputs, handled.unfinished)


async def _produce_and_commit(
    stage: Stage,
    consumer: AIOKafkaConsumer,
    producer: AIOKafkaProducer,
    batches: dict[TopicPartition, list[Any]],
    handled: Handled,
    stop: asyncio.Event,
    settings: KafkaSettings,
) -> list[int]:
    """Produce a handled batch's outputs, await every ack, then commit; the partitions it
    fully handled."""
    if handled.outputs:
        await produce_all(
            producer,
            handled.outputs,
            stage.name,
            stop,
            settings.reconnect_backoff_max_s,
            settings.max_message_bytes,
        )
    offsets = commit_offsets(batches, handled.unfinished)
    try:
        if offsets:
            await consumer.commit(offsets)
    except (CommitFailedError, KafkaError) as exc:
        # The partitions moved to another replica mid-batch: it re-reads from the
        # last committed offset; our outputs are already acknowledged, so the
        # repeat is absorbed downstream by deterministic ids.
        metrics.KAFKA_ERRORS.labels(stage.name, "commit").inc()
        log.warning("commit_failed", extra={"stage": stage.name, "error": repr(exc)})
    for tp, offset in offsets.items():
        hw = consumer.highwater(tp)
        if hw is not None:
            metrics.CONSUMER_LAG.labels(stage.name, str(tp.partition)).set(max(0, hw - offset))
    return sorted({tp.partition for tp in batches} - {r.partition for r in handled.unfinished})


async def _process_batch(
    stage: Stage,
    consumer: AIOKafkaConsumer,
    producer: AIOKafkaProducer,
    batches: dict[TopicPartition, list[Any]],
    stop: asyncio.Event,
    settings: KafkaSettings,
) -> list[int]:
    """Decode, handle, produce, commit one batch; the partitions it fully handled."""
    handled = await _handle_batch(stage, producer, batches, stop, settings)
    return await _produce_and_commit(stage, consumer, producer, batches, handled, stop, settings)


def install_stop_signals(stop: asyncio.Event) -> None:
    """SIGTERM and SIGINT set ``stop``: the stage finishes its batch, commits and exits."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
