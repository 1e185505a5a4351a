"""KafkaSettings' security fields → aiokafka client arguments, and topic configs."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest
from pydantic import SecretStr

from service.kafka_security import client_kwargs, topic_configs
from service.settings import KafkaSettings, load_settings


def test_plaintext_adds_nothing() -> None:
    assert client_kwargs(KafkaSettings(bootstrap_servers="k:9092")) == {}


def test_sasl_plaintext_carries_mechanism_and_credentials() -> None:
    s = KafkaSettings(
        security_protocol="SASL_PLAINTEXT",
        sasl_username="crosscam",
        sasl_password=SecretStr("s3cret"),
    )
    assert client_kwargs(s) == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "crosscam",
        "sasl_plain_password": "s3cret",
    }
    assert "s3cret" not in repr(s), "the password must never appear in logs"


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    exe = shutil.which("openssl")
    assert exe, "openssl is missing"
    out = tmp_path_factory.mktemp("ca")
    subprocess.run(
        [exe, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test-ca",
         "-keyout", str(out / "ca.key"), "-out", str(out / "ca.crt")],
        check=True, capture_output=True,
    )  # fmt: skip
    return out / "ca.crt"


def test_sasl_ssl_verifies_the_broker_against_the_given_ca(ca_file: Path) -> None:
    s = KafkaSettings(
        security_protocol="SASL_SSL",
        sasl_username="crosscam",
        sasl_password=SecretStr("s3cret"),
        ssl_cafile=ca_file,
    )
    kw = client_kwargs(s)
    ctx = kw["ssl_context"]
    assert kw["security_protocol"] == "SASL_SSL" and kw["sasl_plain_username"] == "crosscam"
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert [c["subject"] for c in ctx.get_ca_certs()] == [((("commonName", "test-ca"),),)]


def test_ssl_with_a_missing_ca_file_fails_clearly(tmp_path: Path) -> None:
    s = KafkaSettings(security_protocol="SSL", ssl_cafile=tmp_path / "nope.crt")
    with pytest.raises(FileNotFoundError):
        client_kwargs(s)


def test_incomplete_security_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="needs sasl_username and sasl_password"):
        KafkaSettings(security_protocol="SASL_SSL")
    with pytest.raises(ValueError, match="go together"):
        KafkaSettings(security_protocol="SSL", ssl_certfile=Path("c.pem"))
    with pytest.raises(ValueError, match="cannot exceed"):
        KafkaSettings(replication_factor=1, min_insync_replicas=2)


def test_topic_configs_carry_isr_size_and_per_topic_retention() -> None:
    s = KafkaSettings(
        replication_factor=3, min_insync_replicas=2, retention_ms={"crosscam.frames.v1": 600_000}
    )
    assert topic_configs(s, "crosscam.frames.v1") == {
        "max.message.bytes": str(s.max_message_bytes),
        "min.insync.replicas": "2",
        "retention.ms": "600000",  # the setting wins over the default
    }
    # unlisted crosscam topics keep crosscam's short defaults (schemas.retention)
    assert topic_configs(s, "crosscam.matches.v1")["retention.ms"] == str(30 * 24 * 3_600_000)
    assert "retention.ms" not in topic_configs(s, "someone.elses.topic")


def test_security_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import BaseModel

    class Root(BaseModel):
        kafka: KafkaSettings = KafkaSettings()

    monkeypatch.setenv("CROSSCAM_KAFKA__SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("CROSSCAM_KAFKA__SASL_USERNAME", "crosscam")
    monkeypatch.setenv("CROSSCAM_KAFKA__SASL_PASSWORD", "from-a-secret")
    monkeypatch.setenv("CROSSCAM_KAFKA__RETENTION_MS", '{"crosscam.frames.v1": 21600000}')
    kafka = load_settings(Root).kafka
    assert kafka.sasl_password.get_secret_value() == "from-a-secret"
    assert kafka.retention_ms == {"crosscam.frames.v1": 21600000}
