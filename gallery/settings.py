"""Settings of ``crosscam gallery`` (section ``[gallery]`` of the settings file, plus ``[redis]``
(tokens, camera status) and ``[web]`` (hosts, CORS, limits: :class:`service.web.WebSettings`))."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from service.settings import KafkaSettings, MetricsSettings, RedisSettings, StrictModel
from service.web import WebSettings

DEFAULT_PORT = 8080
DEFAULT_REID_API = "http://127.0.0.1:8700"


class GalleryConfig(StrictModel):
    """Where the gallery listens and what it talks to."""

    host: str = Field("127.0.0.1", description="address the web server binds")
    port: int = Field(DEFAULT_PORT, ge=0, le=65535, description="web server port (0: a free one)")
    reid_api: str = Field(
        DEFAULT_REID_API,
        pattern=r"^https?://",
        description="base URL of the ReID service's HTTP API; /api/* is proxied there",
    )
    cameras: Path | None = Field(
        None, description="cameras file (TOML) for the map; without it the ReID API's cameras"
    )
    refresh_s: float = Field(
        5.0,
        ge=1.0,
        le=300.0,
        description="how often open pages poll for new identities and camera status; "
        "lower is livelier and costs the ReID API more queries",
    )
    upstream_timeout_s: float = Field(
        10.0,
        gt=0.0,
        le=120.0,
        description="longest wait for one ReID API answer before the page is told it failed",
    )
    status_cache_s: float = Field(
        1.0,
        ge=0.0,
        le=60.0,
        description="camera status read from Redis is reused this long (many open pages, one read)",
    )
    redis_timeout_s: float = Field(
        0.5,
        gt=0.0,
        le=10.0,
        description="connect/read timeout to Redis; past it the status shows 'unknown'",
    )


class GallerySettings(StrictModel):
    """Everything ``crosscam gallery`` reads from the settings file and the environment."""

    gallery: GalleryConfig = Field(default_factory=GalleryConfig)  # type: ignore[arg-type]
    redis: RedisSettings = Field(default_factory=RedisSettings)  # type: ignore[arg-type]
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)  # type: ignore[arg-type]
    web: WebSettings = Field(default_factory=WebSettings)  # type: ignore[arg-type]
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)  # type: ignore[arg-type]
