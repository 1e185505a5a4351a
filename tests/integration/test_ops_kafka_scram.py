"""Kafka security settings against a real broker with a SASL/SCRAM listener.

A private broker (its own state dir and ports; the session's stack is left alone)
runs with ``stack up --kafka-sasl``'s listener. Through it, with only
``KafkaSettings`` (security_protocol, sasl_*), the shared stage loop does its whole
job: the admin client creates the topics, the consumer reads, the producer writes
results and a dead letter, and offsets are committed. A wrong password and a
plaintext client are refused by the same listener.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import replace

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError
from pydantic import SecretStr

from devstack import stack as stack_mod
from devstack.stack import StackConfig
from schemas import DeadLetter, Frame, decode, encode
from schemas.topics import DEADLETTER
from service.kafka import producer_config, run_stage
from service.kafka_security import client_kwargs
from service.settings import KafkaSettings
from tests.integration.loop_stage import CopyStage
from tests.stack_fixtures import free_port, private_stack_config, server_state_dir

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def scram_broker() -> Iterator[StackConfig]:
    with server_state_dir("kafka-scram") as state:
        cfg = replace(private_stack_config(state), kafka_sasl_port=free_port())
        try:
            stack_mod.kafka_start(cfg)  # inside: a broker that started stops whatever follows
            yield cfg
        finally:
            stack_mod.kafka_stop(cfg)


def scram_settings(cfg: StackConfig, password: str | None = None) -> KafkaSettings:
    return KafkaSettings(
        bootstrap_servers=f"{cfg.host}:{cfg.kafka_sasl_port}",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username=cfg.kafka_sasl_user,
        sasl_password=SecretStr(password or cfg.kafka_sasl_password),
        reconnect_backoff_max_s=1.0,
    )


async def _read(
    settings: KafkaSettings, topic: str, n: int, timeout_s: float = 60.0
) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **client_kwargs(settings),
    )
    await consumer.start()
    out: list[bytes] = []
    try:
        async with asyncio.timeout(timeout_s):
            while len(out) < n:
                batch = await consumer.getmany(timeout_ms=500)
                out += [r.value for recs in batch.values() for r in recs if r.value is not None]
    finally:
        await consumer.stop()
    return out


async def _stage_round_trip(settings: KafkaSettings) -> tuple[list[bytes], list[bytes]]:
    stage = CopyStage("ops-scram-in", "ops-scram-out", delay_s=0.0)
    stop = asyncio.Event()
    task = asyncio.create_task(run_stage(stage, settings, "ops-scram", stop, partitions=1))
    producer = AIOKafkaProducer(**producer_config(settings, "ops-scram-test"))
    await producer.start()
    try:
        for i, cam in enumerate(["cam0", "cam0", "reject"]):
            frame = Frame(camera_id=cam, seq=i, ts_capture_ns=10**18 + i)
            await producer.send_and_wait("ops-scram-in", encode(frame), key=cam.encode())
    finally:
        await producer.stop()
    try:
        copied = await _read(settings, "ops-scram-out", 2)
        dead = await _read(settings, DEADLETTER.name, 1)
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
    return copied, dead


def test_stage_loop_runs_through_scram(scram_broker: StackConfig) -> None:
    copied, dead = asyncio.run(_stage_round_trip(scram_settings(scram_broker)))
    assert sorted(decode(Frame, v).seq for v in copied) == [0, 1]
    letter = decode(DeadLetter, dead[0])
    assert letter.stage == "loop-test" and decode(Frame, letter.value).camera_id == "reject"


async def _start_producer(**kwargs: object) -> None:
    producer = AIOKafkaProducer(**{"request_timeout_ms": 5000, **kwargs})  # type: ignore[arg-type]
    try:
        await asyncio.wait_for(producer.start(), 30)
        await asyncio.wait_for(producer.send_and_wait("ops-scram-in", b"x"), 15)
    finally:
        with contextlib.suppress(Exception):
            await producer.stop()


def test_wrong_password_is_refused(
    scram_broker: StackConfig, caplog: pytest.LogCaptureFixture
) -> None:
    settings = scram_settings(scram_broker, password="not-the-password")
    good = scram_settings(scram_broker)
    asyncio.run(_start_producer(**producer_config(good, "ops-scram-good")))  # the listener is up
    with pytest.raises(KafkaError):
        asyncio.run(_start_producer(**producer_config(settings, "ops-scram-bad")))
    # the broker's answer, as aiokafka reports it: refused, not unreachable
    assert "SaslAuthenticationFailed" in caplog.text
    assert "invalid credentials with SASL mechanism SCRAM-SHA-512" in caplog.text


def test_plaintext_client_gets_nothing_from_the_sasl_listener(scram_broker: StackConfig) -> None:
    bootstrap = f"{scram_broker.host}:{scram_broker.kafka_sasl_port}"
    good = scram_settings(scram_broker)
    asyncio.run(_start_producer(**producer_config(good, "ops-scram-good")))  # the listener is up
    with pytest.raises((KafkaError, TimeoutError)):
        asyncio.run(_start_producer(bootstrap_servers=bootstrap))


def test_settings_refuse_sasl_without_credentials() -> None:
    with pytest.raises(ValueError, match="needs sasl_username and sasl_password"):
        KafkaSettings(security_protocol="SASL_SSL", sasl_username="crosscam")
