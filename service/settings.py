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
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

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
