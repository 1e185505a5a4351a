"""Kafka security settings against a real broker with SASL/SCRAM listeners.

A private broker (its own state dir and ports; the session's stack is left alone)
runs with ``stack up --kafka-sasl``'s listeners: SCRAM in plain text, and SCRAM over
TLS with a certificate signed by a CA the stack made. Through each, with only
``KafkaSettings`` (security_protocol, sasl_*, ssl_cafile), the shared stage loop does
its whole job: the admin client creates the topics, the consumer reads, the producer
writes results and a dead letter, and offsets are committed. A wrong password, a
plaintext client, and a TLS client that does not trust the broker's CA are refused.
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
        cfg = replace(
            private_stack_config(state),
            kafka_sasl_port=free_port(),
            kafka_sasl_tls_port=free_port(),
        )
        try:
            stack_mod.kafka_start(cfg)  # inside: a broker that started stops whatever follows
            yield cfg
        finally:
            stack_mod.kafka_stop(cfg)


def scram_settings(
    cfg: StackConfig, password: str | None = None, protocol: str = "SASL_PLAINTEXT"
) -> KafkaSettings:
    tls = protocol == "SASL_SSL"
    port = cfg.kafka_sasl_tls_port if tls else cfg.kafka_sasl_port
    return KafkaSettings(
        bootstrap_servers=f"{cfg.host}:{port}",
        security_protocol=protocol,  # type: ignore[arg-type]
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username=cfg.kafka_sasl_user,
        sasl_password=SecretStr(password or cfg.kafka_sasl_password),
        ssl_cafile=stack_mod.kafka_tls_ca(cfg) if tls else None,
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


async def _stage_round_trip(settings: KafkaSettings, tag: str) -> tuple[list[bytes], list[bytes]]:
    stage = CopyStage(f"ops-{tag}-in", f"ops-{tag}-out", delay_s=0.0)
    stop = asyncio.Event()
    task = asyncio.create_task(run_stage(stage, settings, f"ops-{tag}", stop, partitions=1))
    producer = AIOKafkaProducer(**producer_config(settings, "ops-scram-test"))
    await producer.start()
    try:
        for i, cam in enumerate(["cam0", "cam0", "reject"]):
            frame = Frame(camera_id=cam, seq=i, ts_capture_ns=10**18 + i)
            await producer.send_and_wait(f"ops-{tag}-in", encode(frame), key=cam.encode())
    finally:
        await producer.stop()
    try:
        copied = await _read(settings, f"ops-{tag}-out", 2)
        dead = [
            v
            for v in await _read(settings, DEADLETTER.name, 1)
            if decode(DeadLetter, v).topic == f"ops-{tag}-in"
        ]
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
    return copied, dead


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_stage_loop_runs_through_scram(scram_broker: StackConfig, protocol: str) -> None:
    settings = scram_settings(scram_broker, protocol=protocol)
    copied, dead = asyncio.run(_stage_round_trip(settings, protocol.lower().replace("_", "-")))
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


def test_tls_refuses_a_broker_its_ca_did_not_sign(
    scram_broker: StackConfig, caplog: pytest.LogCaptureFixture
) -> None:
    settings = scram_settings(scram_broker, protocol="SASL_SSL").model_copy(
        update={"ssl_cafile": None}  # the system CAs: they never signed the local broker
    )
    with pytest.raises(KafkaError):
        asyncio.run(_start_producer(**producer_config(settings, "ops-tls-bad")))
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text


def test_settings_refuse_sasl_without_credentials() -> None:
    with pytest.raises(ValueError, match="needs sasl_username and sasl_password"):
        KafkaSettings(security_protocol="SASL_SSL", sasl_username="crosscam")
