"""The consume loop loses no output when things fail, against the real broker:
a failing record mid-batch, a dependency down then back, dead letters and
outputs too large for the broker, a partition revoked mid-batch."""

from __future__ import annotations

import hashlib
import re
import time

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from schemas import DeadLetter, Frame, decode, encode
from schemas.topics import DEADLETTER
from tests.integration.kafka_helpers import (
    committed,
    consume_all,
    create_topics,
    produce,
    run,
    unique,
    wait_for,
)
from tests.integration.test_service_loop import _follow, _peek, _seqs, _start, _stop

pytestmark = pytest.mark.integration


def _frame(seq: int, camera: str = "cam", jpeg: bytes = b"") -> tuple[bytes, bytes]:
    """Keyed by "cam" whatever the camera id, so every frame lands on one partition in order."""
    return b"cam", encode(Frame(camera_id=camera, seq=seq, ts_capture_ns=10**18 + seq, jpeg=jpeg))


def _dead_letters(
    bootstrap: str, topic: str, count: int, timeout_s: float = 30
) -> list[DeadLetter]:
    """The dead letters about ``topic`` (waits for ``count`` of them, or the timeout)."""

    def mine(rs: list) -> list[DeadLetter]:
        return [d for d in (decode(DeadLetter, r.value) for r in rs) if d.topic == topic]

    recs = run(
        consume_all(bootstrap, DEADLETTER.name, lambda rs: len(mine(rs)) >= count, timeout_s)
    )
    return mine(recs)


async def _create_topic(bootstrap: str, name: str, max_message_bytes: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        config = {"max.message.bytes": str(max_message_bytes)}
        await admin.create_topics([NewTopic(name, 1, 1, topic_configs=config)])
    finally:
        await admin.close()


def test_failure_at_record_k_keeps_every_output_of_the_records_before_it(
    kafka_bootstrap: str,
) -> None:
    """A stateful stage (skips replays, like the tracker) fails at record k of one batch:
    records 0..k-1 keep their outputs, record k is dead-lettered, k+1.. go on."""
    n, k = 10, 5
    t_in, t_out, group = unique("t-in"), unique("t-out"), unique("g")
    items = [_frame(i, "poison" if i == k else "cam") for i in range(n)]
    run(create_topics(kafka_bootstrap, t_in, t_out))
    run(produce(kafka_bootstrap, t_in, items))
    proc = _start(kafka_bootstrap, t_in, t_out, group, 0.0, batch=16, batch_wait_ms=2000,
                  extra=("--stateful",))  # fmt: skip
    _follow(proc)
    try:
        wait_for(lambda: run(committed(kafka_bootstrap, group, t_in)) == n, 60, "commit of all")
        out = run(consume_all(kafka_bootstrap, t_out, lambda rs: False, timeout_s=3))
        dls = _dead_letters(kafka_bootstrap, t_in, 1)
    finally:
        log = _stop(proc)
    assert f"batch records={n}" in log, log  # the failure happened inside one batch
    assert sorted(_seqs(out)) == [i for i in range(n) if i != k]  # zero lost, none twice
    assert [(d.offset, d.stage) for d in dls] == [(k, "loop-test")]
    assert "ValueError: poison frame seq=5" in dls[0].reason
    assert dls[0].value == items[k][1] and dls[0].key == b"cam"


def test_transient_fault_is_retried_with_backoff_not_dead_lettered(kafka_bootstrap: str) -> None:
    n, k, failures = 8, 3, 3
    t_in, t_out, group = unique("t-in"), unique("t-out"), unique("g")
    run(create_topics(kafka_bootstrap, t_in, t_out))
    run(produce(kafka_bootstrap, t_in, [_frame(i, "flaky" if i == k else "cam") for i in range(n)]))
    proc = _start(kafka_bootstrap, t_in, t_out, group, 0.0, batch=16, batch_wait_ms=1000,
                  extra=("--stateful", "--flaky", str(failures)))  # fmt: skip
    _follow(proc)
    try:
        out = run(consume_all(kafka_bootstrap, t_out, lambda rs: len(rs) >= n, timeout_s=60))
        wait_for(lambda: run(committed(kafka_bootstrap, group, t_in)) == n, 30, "commit of all")
        dls = _dead_letters(kafka_bootstrap, t_in, 1, timeout_s=3)
    finally:
        log = _stop(proc)
    assert sorted(_seqs(out)) == list(range(n))
    assert dls == []
    assert log.count("record_transient_fault_retrying") == failures, log


def test_stop_during_a_transient_fault_commits_only_the_records_handled(
    kafka_bootstrap: str,
) -> None:
    """SIGTERM while a dependency is down: the records before the stuck one are
    published and committed, the stuck one is not; a restart finishes the job."""
    n, k = 8, 3
    t_in, t_out, group = unique("t-in"), unique("t-out"), unique("g")
    run(create_topics(kafka_bootstrap, t_in, t_out))
    run(produce(kafka_bootstrap, t_in, [_frame(i, "flaky" if i == k else "cam") for i in range(n)]))
    proc = _start(kafka_bootstrap, t_in, t_out, group, 0.0, batch=16, batch_wait_ms=1000,
                  extra=("--stateful", "--flaky", "100000"))  # fmt: skip
    _follow(proc)
    wait_for(lambda: "record_transient_fault_retrying" in _peek(proc), 60, "the fault")
    log = _stop(proc)
    assert proc.returncode == 0, log
    assert run(committed(kafka_bootstrap, group, t_in)) == k
    assert sorted(_seqs(run(consume_all(kafka_bootstrap, t_out, lambda rs: False, 3)))) == [0, 1, 2]
    proc = _start(kafka_bootstrap, t_in, t_out, group, 0.0, extra=("--stateful",))
    try:
        out = run(consume_all(kafka_bootstrap, t_out, lambda rs: len(rs) >= n, timeout_s=60))
        wait_for(lambda: run(committed(kafka_bootstrap, group, t_in)) == n, 30, "commit of all")
    finally:
        _stop(proc)
    assert sorted(_seqs(out)) == list(range(n))
    assert _dead_letters(kafka_bootstrap, t_in, 1, timeout_s=3) == []


def test_dead_letter_over_the_message_limit_is_stored_truncated_with_size_and_digest(
    kafka_bootstrap: str,
) -> None:
    limit = 200_000
    t_in, t_out, group = unique("t-in"), unique("t-out"), unique("g")
    garbage = b"\xc1" * 300_000  # 0xc1 is never valid msgpack: undecodable, dead-lettered
    run(create_topics(kafka_bootstrap, t_in, t_out))
    run(produce(kafka_bootstrap, t_in, [(b"cam", garbage), _frame(0)]))
    proc = _start(kafka_bootstrap, t_in, t_out, group, 0.0,
                  extra=("--max-message-bytes", str(limit)))  # fmt: skip
    try:
        out = run(consume_all(kafka_bootstrap, t_out, lambda rs: len(rs) >= 1, timeout_s=60))
        wait_for(lambda: run(committed(kafka_bootstrap, group, t_in)) == 2, 30, "commit of both")
        raw = run(
            consume_all(
                kafka_bootstrap,
                DEADLETTER.name,
                lambda rs: any(decode(DeadLetter, r.value).topic == t_in for r in rs),
                30,
            )
        )
    finally:
        _stop(proc)
    assert _seqs(out) == [0]  # the stage went on past it
    (rec,) = [r for r in raw if decode(DeadLetter, r.value).topic == t_in]
    dl = decode(DeadLetter, rec.value)
    assert len(rec.value) <= limit
    assert dl.truncated and dl.offset == 0
    assert dl.value_size == len(garbage)
    assert dl.value_sha256 == hashlib.sha256(garbage).hexdigest()
    assert 0 < len(dl.value) < len(garbage) and garbage.startswith(dl.value)


def test_output_the_broker_refuses_as_too_large_is_dead_lettered_and_the_stage_goes_on(
    kafka_bootstrap: str,
) -> None:
    t_in, t_out, group = unique("t-in"), unique("t-out"), unique("g")
    run(create_topics(kafka_bootstrap, t_in))
    run(_create_topic(kafka_bootstrap, t_out, max_message_bytes=50_000))
    big = _frame(0, jpeg=b"\xff" * 100_000)
    run(produce(kafka_bootstrap, t_in, [big, _frame(1)]))
    proc = _start(kafka_bootstrap, t_in, t_out, group, 0.0)
    try:
        out = run(consume_all(kafka_bootstrap, t_out, lambda rs: len(rs) >= 1, timeout_s=60))
        wait_for(lambda: run(committed(kafka_bootstrap, group, t_in)) == 2, 30, "commit of both")
        dls = _dead_letters(kafka_bootstrap, t_out, 1)
    finally:
        _stop(proc)
    assert _seqs(out) == [1]
    assert len(dls) == 1 and dls[0].partition == -1
    assert "MessageSizeTooLarge" in dls[0].reason
    assert dls[0].value == big[1] and not dls[0].truncated


async def _produce_to_partitions(bootstrap: str, topic: str, n: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(n):
            await producer.send_and_wait(topic, value=_frame(i)[1], key=b"cam", partition=i % 2)
    finally:
        await producer.stop()


def test_partition_revoked_mid_batch_is_checkpointed_after_the_batch(
    kafka_bootstrap: str,
) -> None:
    """A second replica joins while the first is in a slow batch: the first one's
    ``on_revoke`` (its checkpoint) never runs while a batch is in flight."""
    n = 16
    t_in, t_out, group = unique("t-in"), unique("t-out"), unique("g")
    run(create_topics(kafka_bootstrap, t_in, partitions=2))
    run(create_topics(kafka_bootstrap, t_out))
    run(_produce_to_partitions(kafka_bootstrap, t_in, n))
    # The broker's least session timeout (6 s): a revoke waits 3 s for the batch, then defers.
    slow = ("--session-timeout-ms", "6000")
    a = _start(kafka_bootstrap, t_in, t_out, group, 1.0, batch=8, extra=slow)
    _follow(a)
    b = None
    try:
        wait_for(lambda: "batch records=" in _peek(a), 60, "the first replica's first batch")
        time.sleep(0.5)  # well inside A's 8 s batch
        b = _start(kafka_bootstrap, t_in, t_out, group, 0.0, batch=8, extra=slow)
        _follow(b)
        wait_for(lambda: "on_revoke" in _peek(a), 60, "the rebalance to reach the first replica")
        out = run(
            consume_all(kafka_bootstrap, t_out, lambda rs: set(_seqs(rs)) >= set(range(n)), 90)
        )
    finally:
        log_b = _stop(b) if b is not None else ""
        log_a = _stop(a)
    revokes = re.findall(r"on_revoke partitions=\[[\d, ]*\] in_batch=(\w+)", log_a + log_b)
    assert revokes and set(revokes) == {"False"}, log_a
    assert "revoke_while_busy_deferred" in log_a, log_a  # the revoke did land mid-batch
    assert set(_seqs(out)) == set(range(n))  # at-least-once across the move
