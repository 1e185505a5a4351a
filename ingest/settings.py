"""Settings of ``crosscam ingest`` and ``crosscam replay`` (section ``[ingest]``)."""

from __future__ import annotations

from pydantic import Field

from service.settings import KafkaSettings, MetricsSettings, RedisSettings, StrictModel


class IngestSettings(StrictModel):
    """How one camera is read, sampled, encoded and published.

    Defaults are measured on PETS09-S2L1 (768×576) on a 2-core CPU: see
    ``crosscam bench ingest --json``.
    """

    analysis_fps: float = Field(
        7.0,
        ge=0.0,
        le=120.0,
        description="frames per second analysed (0 = every frame); more gives smoother "
        "tracks for proportionally more detector work and bandwidth. 7 is PETS09's own rate",
    )
    analysis_width: int = Field(
        640,
        ge=32,
        le=7680,
        description="width in pixels the frame is resized to (aspect kept, never upscaled); "
        "wider gives the detector and ReID crops more detail for more bytes and encode time",
    )
    jpeg_quality: int = Field(
        85, ge=1, le=100, description="JPEG quality; higher costs bytes for fewer artefacts"
    )
    open_timeout_s: float = Field(
        10.0,
        gt=0.0,
        le=300.0,
        description="an open (RTSP handshake) taking longer fails; longer tolerates slow "
        "cameras but delays noticing a dead one",
    )
    read_timeout_s: float = Field(
        5.0,
        gt=0.0,
        le=300.0,
        description="no frame for this long means the stream hung and is reopened; longer "
        "rides out stalls but shows a dead camera online for longer",
    )
    rtsp_transport: str = Field(
        "tcp", pattern="^(tcp|udp)$", description="RTSP transport; tcp never loses packets"
    )
    backoff_initial_s: float = Field(
        0.5, gt=0.0, le=60.0, description="first reconnect delay; doubles per failed attempt"
    )
    backoff_max_s: float = Field(
        30.0,
        gt=0.0,
        le=3600.0,
        description="cap of the reconnect delay; higher is gentler on a dead server but "
        "notices its return later",
    )
    backoff_jitter: float = Field(
        0.5, ge=0.0, le=1.0, description="random spread of each delay (fraction, ±)"
    )
    publish_queue_frames: int = Field(
        64,
        ge=1,
        le=10_000,
        description="frames kept in memory while Kafka is slow or down (oldest dropped "
        "first, counted); more survives longer outages for more memory (~60 KB a frame)",
    )
    max_in_flight: int = Field(
        8,
        ge=1,
        le=1_000,
        description="frames sent before waiting for their acknowledgements; more is "
        "faster for replays, a larger repeat after a broker error",
    )
    claim_check: bool = Field(
        False,
        description="put the JPEG in Redis (key in the message) instead of inline; for "
        "high resolutions where frames would bloat Kafka",
    )
    claim_check_ttl_s: int = Field(
        300,
        ge=1,
        le=86_400,
        description="lifetime of a claim-checked JPEG in Redis; must cover the detector's "
        "worst lag, costs Redis memory",
    )
    status_ttl_s: int = Field(
        30,
        ge=2,
        le=3_600,
        description="the camera status key expires this long after the last refresh, so "
        "a dead ingest process shows as gone",
    )
    status_interval_s: float = Field(
        2.0,
        gt=0.0,
        le=600.0,
        description="how often the status is refreshed (changes of state are written at once)",
    )
    fps_window_s: float = Field(
        5.0, gt=0.0, le=600.0, description="window of the measured frame rate"
    )
    shutdown_flush_timeout_s: float = Field(
        10.0,
        gt=0.0,
        le=600.0,
        description="on SIGTERM, how long queued frames may take to be acknowledged",
    )


class IngestSettingsRoot(StrictModel):
    """Every section ingest reads."""

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
