"""The consume loop's failure handling, without Kafka: what a failing batch publishes,
what is retried, what is dead-lettered, when on_revoke runs (service.kafka, service.delivery)."""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

import pytest
import redis
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError

from common.backoff import Backoff
from crosscam.deadletters import parse_since
from schemas import DeadLetter, Frame, decode, encode
from schemas.topics import DEADLETTER, Topic
from service.delivery import PartialBatch, TransientError, apply_each, is_transient
from service.kafka import (
    EarlySender,
    Output,
    Record,
    _Rebalance,
    commit_offsets,
    dead_letter,
    handle_batch,
    shrink_dead_letter,
)

IN = Topic("t-in", Frame, "msgpack", "camera_id")


def _records(n: int, offset0: int = 0, partition: int = 0) -> list[Record]:
    out = []
    for i in range(n):
        f = Frame(camera_id="cam", seq=offset0 + i, ts_capture_ns=1)
        out.append(Record("t-in", partition, offset0 + i, b"cam", encode(f), f, 0))
    return out


class Replaying:
    """Applies records one by one and skips replays, like the tracker; ``fail`` maps
    offset -> exceptions to raise, one per attempt."""

    name = "unit"
    input = IN

    def __init__(self, fail: dict[int, list[BaseException]], stateful: bool = True) -> None:
        self.fail, self.stateful = fail, stateful
        self.applied: set[int] = set()
        self.calls = 0

    def handle(self, records: list[Record]) -> list[Output]:
        self.calls += 1
        if self.stateful:
            return apply_each(records, self._one)
        return [o for r in records for o in self._one(r)]

    def _one(self, rec: Record) -> list[Output]:
        errors = self.fail.get(rec.offset)
        if errors:
            raise errors.pop(0)
        if self.stateful:
            if rec.offset in self.applied:
                return []
            self.applied.add(rec.offset)
        return [Output("t-out", rec.key, str(rec.offset).encode())]


def _published(outputs: list[Output]) -> list[int]:
    return [int(o.value) for o in outputs if o.topic == "t-out"]


def _dead(outputs: list[Output]) -> list[DeadLetter]:
    return [decode(DeadLetter, o.value) for o in outputs if o.topic == DEADLETTER.name]


FAST = Backoff(initial_s=0.001, max_s=0.002)


@pytest.mark.parametrize("k", [0, 3, 7])
def test_failure_at_record_k_publishes_every_other_record_once(k: int) -> None:
    stage = Replaying({k: [ValueError("bug")]})
    got = handle_batch(stage, _records(8), backoff=FAST)
    assert _published(got.outputs) == [i for i in range(8) if i != k]
    assert [d.offset for d in _dead(got.outputs)] == [k]
    assert got.unfinished == []


def test_transient_fault_is_retried_until_it_clears_never_dead_lettered() -> None:
    stage = Replaying({4: [ConnectionError("down"), redis.ConnectionError("down"), TimeoutError()]})
    got = handle_batch(stage, _records(8), backoff=FAST)
    assert _published(got.outputs) == list(range(8))
    assert _dead(got.outputs) == []


def test_stop_during_a_transient_fault_leaves_the_rest_unfinished() -> None:
    stage = Replaying({2: [TransientError("down")] * 1000})
    calls = iter(range(10**6))
    got = handle_batch(stage, _records(5), stopping=lambda: next(calls) > 3, backoff=FAST)
    assert _published(got.outputs) == [0, 1]
    assert [r.offset for r in got.unfinished] == [2, 3, 4]
    assert _dead(got.outputs) == []


def test_stateless_stage_failing_batch_is_rerun_singly() -> None:
    stage = Replaying({5: [ValueError("bad")] * 2}, stateful=False)  # a bug: fails every time
    got = handle_batch(stage, _records(8), backoff=FAST)
    assert sorted(_published(got.outputs)) == [i for i in range(8) if i != 5]
    assert [d.offset for d in _dead(got.outputs)] == [5]


def test_stateless_stage_transient_fault_retries_the_whole_batch() -> None:
    stage = Replaying({0: [redis.TimeoutError("slow")]}, stateful=False)
    got = handle_batch(stage, _records(4), backoff=FAST)
    assert _published(got.outputs) == [0, 1, 2, 3] and stage.calls == 2


def test_is_transient_walks_the_cause_chain_and_keeps_bugs_permanent() -> None:
    try:
        try:
            raise ConnectionRefusedError("qdrant")
        except OSError as inner:
            raise RuntimeError("wrapped by a client library") from inner
    except RuntimeError as exc:
        wrapped = exc
    assert is_transient(wrapped)
    assert is_transient(redis.ConnectionError()) and is_transient(TransientError())
    assert not is_transient(ValueError()) and not is_transient(redis.ResponseError("WRONGTYPE"))
    assert not is_transient(PartialBatch(0, [], ValueError()))


def test_oversized_dead_letter_is_cut_with_its_size_and_digest() -> None:
    value = bytes(range(256)) * 2000
    rec = Record("t-in", 3, 17, b"cam", value, None, 0)
    small = shrink_dead_letter(dead_letter("unit", rec, "why"), 100_000)
    assert len(small.value) <= 100_000
    d = decode(DeadLetter, small.value)
    assert d.truncated and d.value_size == len(value) and value.startswith(d.value)
    assert d.value_sha256 == hashlib.sha256(value).hexdigest() and (d.partition, d.offset) == (
        3,
        17,
    )
    fits = dead_letter("unit", rec, "why")
    assert shrink_dead_letter(fits, 10**7) is fits


def test_commit_offsets_stop_at_the_first_unfinished_record_per_partition() -> None:
    a, b = TopicPartition("t-in", 0), TopicPartition("t-in", 1)

    class M:
        def __init__(self, offset: int) -> None:
            self.offset = offset

    batches: dict[TopicPartition, list[Any]] = {a: [M(10), M(11), M(12)], b: [M(5), M(6)]}
    unfinished = _records(2, offset0=11, partition=0) + _records(1, offset0=5, partition=1)
    assert commit_offsets(batches, []) == {a: 13, b: 7}
    assert commit_offsets(batches, unfinished) == {a: 11}  # b: nothing handled, no commit


class Hooks:
    name = "unit"
    input = IN

    def __init__(self, events: list[str], in_batch: list[bool]) -> None:
        self.events, self.in_batch = events, in_batch

    def on_revoke(self, parts: list[int]) -> None:
        self.events.append(f"revoke {parts} in_batch={self.in_batch[0]}")

    def on_assign(self, parts: list[int]) -> None:
        self.events.append(f"assign {parts}")


async def test_revoke_during_a_long_batch_is_checkpointed_after_the_batch_not_during() -> None:
    events: list[str] = []
    in_batch = [True]
    busy = asyncio.Lock()
    listener = _Rebalance(Hooks(events, in_batch), busy, wait_s=0.05)
    await busy.acquire()  # a batch is running

    async def finish_batch() -> None:
        await asyncio.sleep(0.3)
        in_batch[0] = False
        events.append("batch committed")
        busy.release()

    done = asyncio.ensure_future(finish_batch())
    await listener.on_partitions_revoked({TopicPartition("t", 0), TopicPartition("t", 1)})
    assert events == []  # gave up waiting, and did not checkpoint mid-batch
    await listener.on_partitions_assigned({TopicPartition("t", 1)})
    await done
    assert events == ["batch committed", "revoke [0, 1] in_batch=False", "assign [1]"]


async def test_revoke_between_batches_checkpoints_at_once() -> None:
    events: list[str] = []
    listener = _Rebalance(Hooks(events, [False]), asyncio.Lock(), wait_s=0.05)
    await listener.on_partitions_revoked({TopicPartition("t", 2)})
    assert events == ["revoke [2] in_batch=False"]
    await listener.run_deferred()
    assert events == ["revoke [2] in_batch=False"]  # nothing left over, nothing twice


def test_since_takes_an_iso_time_or_an_age() -> None:
    now = time.time_ns()
    assert parse_since("30m", now) == now - 30 * 60 * 10**9
    assert parse_since("1970-01-01T00:00:10") == 10 * 10**9
    assert parse_since("1970-01-01T01:00:10+01:00") == 10 * 10**9
    with pytest.raises(Exception, match="ISO-8601"):
        parse_since("yesterday")


def test_refused_dead_letter_is_cut_further_and_a_hopeless_one_dropped() -> None:
    from aiokafka.errors import MessageSizeTooLargeError

    from service.kafka import _after_too_large

    big = dead_letter("unit", Record("t-in", 0, 1, b"k", b"x" * 1_000_000, None, 0), "why")
    cut = _after_too_large("unit", big, MessageSizeTooLargeError())
    assert cut is not None and len(cut.value) < len(big.value) // 2
    assert decode(DeadLetter, cut.value).value_size == 1_000_000
    tiny = dead_letter("unit", Record("t-in", 0, 1, b"k", b"x", None, 0), "why")
    assert _after_too_large("unit", tiny, MessageSizeTooLargeError()) is None  # never a wedge
    out = Output("t-out", b"k", b"y" * 10)
    refused = _after_too_large("unit", out, MessageSizeTooLargeError())
    assert refused is not None and refused.topic == DEADLETTER.name
    d = decode(DeadLetter, refused.value)
    assert (d.topic, d.partition, d.value, d.key) == ("t-out", -1, b"y" * 10, b"k")


class _FlakyProducer:
    """``send`` acknowledges every output except those whose value is in ``refuse``."""

    def __init__(self, refuse: set[bytes]) -> None:
        self.refuse = refuse
        self.sent: list[bytes] = []

    async def send(self, topic: str, value: bytes, key: bytes | None) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.sent.append(value)
        if value in self.refuse:
            fut.set_exception(KafkaConnectionError("broker gone"))
        else:
            fut.set_result(None)
        return fut


async def test_outputs_sent_mid_batch_are_awaited_and_the_refused_come_back() -> None:
    """A streaming stage's early outputs leave from the handling thread at once; settle()
    waits for every acknowledgement and hands back the refused ones to send again."""
    producer = _FlakyProducer(refuse={b"2"})
    sender = EarlySender(producer, asyncio.get_running_loop())  # type: ignore[arg-type]
    outs = [Output("t-out", b"cam", str(i).encode()) for i in range(4)]

    def handling_thread() -> None:
        sender(outs[:2])
        time.sleep(0.05)
        sender(outs[2:])
        sender([])

    await asyncio.to_thread(handling_thread)
    failed = await sender.settle("unit")
    assert producer.sent == [b"0", b"1", b"2", b"3"]  # in the order handed over
    assert failed == [outs[2]]
    assert await sender.settle("unit") == []  # nothing twice
