"""Validated settings from a TOML file and the environment.

One TOML file may hold every stage's section; a service reads the sections its
model declares. Unknown top-level sections and unknown keys inside a section
are errors (a typo never silently falls back to a default). Environment
variables override the file: ``CROSSCAM_<SECTION>__<KEY>=value`` (the value is
read as JSON when it parses, e.g. ``8``, ``true``, ``[1, 2]``, else as a string).
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

KNOWN_SECTIONS = frozenset(
    {
        "kafka",
        "redis",
        "metrics",
        "qdrant",
        "ingest",
        "detector",
        "tracker",
        "reid",
        "gallery",
        "web",
        "run",
        "log",
    }
)
ENV_PREFIX = "CROSSCAM_"

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base of every settings model: unknown keys are an error."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


def default_kafka_bootstrap() -> str:
    """``$CROSSCAM_KAFKA_BOOTSTRAP``, else the local stack's broker (``$CROSSCAM_KAFKA_PORT``, 19092)."""
    port = os.environ.get("CROSSCAM_KAFKA_PORT", "19092")
    return os.environ.get("CROSSCAM_KAFKA_BOOTSTRAP", f"127.0.0.1:{port}")


def default_redis_url() -> str:
    """``$CROSSCAM_REDIS_URL``, else the local stack's Redis (``$CROSSCAM_REDIS_PORT``, 16379)."""
    port = os.environ.get("CROSSCAM_REDIS_PORT", "16379")
    return os.environ.get("CROSSCAM_REDIS_URL", f"redis://127.0.0.1:{port}/0")


class KafkaSettings(StrictModel):
    """How a stage reaches Kafka and how it batches."""

    bootstrap_servers: str = Field(
        default_factory=default_kafka_bootstrap,
        description="host:port[,host:port] of the brokers",
    )
    client_id: str = Field("crosscam", description="prefix of the Kafka client id")
    max_batch_records: int = Field(
        16,
        ge=1,
        le=10_000,
        description="records handled per batch; more amortises commits, adds latency",
    )
    poll_timeout_ms: int = Field(
        200, ge=1, le=60_000, description="how long one poll waits for records"
    )
    fetch_max_wait_ms: int = Field(
        50,
        ge=1,
        le=60_000,
        description="longest the broker holds a fetch that found no new records. The "
        "consumer has one fetch in flight per broker and does not fetch a partition whose "
        "records it still holds, so with Kafka's 500 ms a fetch parked on quiet partitions "
        "delayed the busy ones by up to that long",
    )
    batch_wait_ms: int = Field(
        0,
        ge=0,
        le=10_000,
        description="after the first record, wait up to this long to fill the batch (GPU "
        "detectors: fuller batches across cameras, at the cost of this much latency)",
    )
    max_message_bytes: int = Field(
        16 * 1024 * 1024,
        ge=1024,
        description="largest message produced or fetched (frames are JPEGs)",
    )
    session_timeout_ms: int = Field(
        10_000, ge=1_000, description="a replica silent this long loses its partitions to others"
    )
    auto_offset_reset: str = Field("earliest", pattern="^(earliest|latest)$")
    produce_linger_ms: int = Field(5, ge=0, le=1_000, description="producer batching delay")
    reconnect_backoff_max_s: float = Field(
        10.0, gt=0, description="cap of the exponential backoff when the broker is unreachable"
    )
    # --- security (README "Kafka security"); PLAINTEXT is for a local stack only ---
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="SASL_SSL in production: SCRAM login over TLS"
    )
    sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = Field(
        "SCRAM-SHA-512", description="with a SASL_* protocol"
    )
    sasl_username: str = Field("", description="with a SASL_* protocol")
    sasl_password: SecretStr = Field(
        SecretStr(""), description="with a SASL_* protocol (never logged; from a secret)"
    )
    ssl_cafile: Path | None = Field(
        None, description="CA bundle that signed the brokers' certificates (else the system's)"
    )
    ssl_certfile: Path | None = Field(None, description="client certificate (mutual TLS)")
    ssl_keyfile: Path | None = Field(None, description="client certificate's key (mutual TLS)")
    ssl_check_hostname: bool = Field(True, description="check the broker's name in its certificate")
    # --- topics created by the stages (existing topics are left as they are) ---
    partitions: int = Field(
        4,
        ge=1,
        le=10_000,
        description="partitions of each topic: the most replicas a stage can use",
    )
    replication_factor: int = Field(
        1, ge=1, le=16, description="copies of each partition (3 on a production cluster)"
    )
    min_insync_replicas: int = Field(
        1, ge=1, le=16, description="acks=all waits for this many copies (2 with 3 replicas)"
    )
    retention_ms: dict[str, int] = Field(
        default_factory=dict,
        description="retention.ms per topic name, over crosscam's short defaults "
        "(schemas.retention: frames/detections 1 h, tracklets 1 day, matches 30 days, "
        "dead letters 7 days, audit 365 days); other topics keep the broker's default",
    )

    @model_validator(mode="after")
    def _security_complete(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL") and not (
            self.sasl_username and self.sasl_password.get_secret_value()
        ):
            raise ValueError(
                f"security_protocol={self.security_protocol} needs sasl_username and sasl_password"
            )
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("ssl_certfile and ssl_keyfile go together (mutual TLS)")
        if self.min_insync_replicas > self.replication_factor:
            raise ValueError("min_insync_replicas cannot exceed replication_factor")
        return self


class RedisSettings(StrictModel):
    """Where Redis is (camera status, tracker checkpoints, claim-check frames)."""

    url: str = Field(
        default_factory=default_redis_url,
        description="redis:// URL",
    )


class MetricsSettings(StrictModel):
    """The Prometheus endpoint of one process."""

    host: str = Field("127.0.0.1", description="address the /metrics endpoint binds")
    port: int = Field(0, ge=0, le=65535, description="0 picks a free port (logged and registered)")
    enabled: bool = True
    disk_paths: list[str] = Field(
        default_factory=lambda: ["."],
        description="folders whose filesystem's free and total bytes are exported "
        "(crosscam_disk_free_bytes / crosscam_disk_size_bytes, for the disk-full alert)",
    )


def _env_overrides(prefix: str = ENV_PREFIX) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, raw in os.environ.items():
        if not name.startswith(prefix) or "__" not in name:
            continue
        section, _, key = name[len(prefix) :].partition("__")
        section, key = section.lower(), key.lower()
        if section not in KNOWN_SECTIONS:
            continue
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out.setdefault(section, {})[key] = value
    return out


def read_toml(path: Path | None) -> dict[str, Any]:
    """The TOML file as a dict, with its top-level sections checked."""
    if path is None:
        return {}
    with open(path, "rb") as fh:
        data = tomllib.load(fh)
    unknown = sorted(set(data) - KNOWN_SECTIONS)
    if unknown:
        raise ValueError(f"{path}: unknown section(s) {unknown}; known: {sorted(KNOWN_SECTIONS)}")
    return data


def load_settings(model: type[M], path: Path | None = None, **overrides: Any) -> M:
    """Build ``model`` from the TOML file, then the environment, then ``overrides``.

    ``overrides`` are ``section={key: value}`` dicts (e.g. from command-line
    flags) and win over both. Sections of the file that ``model`` does not
    declare are ignored here (another stage reads them), but must be known.
    """
    data = read_toml(path)
    env = _env_overrides()
    merged: dict[str, Any] = {}
    for section in model.model_fields:
        value: dict[str, Any] = {}
        if isinstance(data.get(section), dict):
            value.update(data[section])
        value.update(env.get(section, {}))
        value.update({k: v for k, v in (overrides.get(section) or {}).items() if v is not None})
        if value:
            merged[section] = value
    return model.model_validate(merged)
