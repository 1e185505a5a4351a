"""Settings of ``crosscam reid`` (sections ``[reid]`` and ``[qdrant]``).

The linking and aggregation parameters are written once, in the cores
(:class:`reid.linker.LinkerParams`, :class:`reid.aggregate.AggregationParams`);
:class:`ReidSettings` inherits them, so ``[reid] link_distance = 0.3`` and
``CROSSCAM_REID__LINK_DISTANCE=0.3`` set the core's ``link_distance``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import ConfigDict, Field

from reid.aggregate import AggregationParams
from reid.engine import EngineParams
from reid.linker import LinkerParams
from reid.retention import DAY_S, RetentionPolicy
from schemas.retention import AUDIT_TOPIC, DAY_MS, HOUR_MS
from schemas.topics import DEADLETTER, DETECTIONS, FRAMES, MATCHES, PSEUDONYMISED_FRAMES, TRACKLETS
from service.settings import KafkaSettings, MetricsSettings, RedisSettings, StrictModel


class QdrantSettings(StrictModel):
    """Which Qdrant: a server when ``url`` is set, else the embedded one on disk."""

    url: str = Field(
        "", description="Qdrant server URL (e.g. http://qdrant:6333); empty = embedded"
    )
    api_key: str = Field("", description="API key of the Qdrant server, if it needs one")
    embedded: Literal["edge", "local"] = Field(
        "edge",
        description="embedded engine: qdrant-edge (Qdrant's engine in process; measured faster) "
        "or qdrant-client local mode",
    )


class ReidSettings(LinkerParams, AggregationParams, StrictModel):
    """The ReID stage's knobs: the linking and aggregation parameters (inherited from
    :class:`reid.linker.LinkerParams` and :class:`reid.aggregate.AggregationParams`,
    which say what each trades) and the service's own keys."""

    model_config = ConfigDict(frozen=False)

    cameras_file: Path | None = Field(
        None, description="cameras TOML (topology); none = any camera within window_s"
    )
    window_s: float = Field(120.0, gt=0, description="with no cameras file: longest gap linked")
    data_dir: Path = Field(Path("var/reid"), description="embedded store and thumbnails live here")
    dim: int = Field(512, ge=1, le=4096, description="appearance vector size (OSNet: 512)")
    api_host: str = Field("127.0.0.1", description="address of the query API")
    api_port: int = Field(
        8765, ge=0, le=65535, description="port of the query API (0 = any free port)"
    )
    camera_registry: bool = Field(
        False,
        description="cameras from the Redis camera registry (seeded from cameras_file once), "
        "changed at runtime through the API; off: the cameras file alone",
    )
    embedder_model: Path | None = Field(
        None, description="appearance model for search by example (default: the assets' OSNet)"
    )
    global_id_key: str = Field(
        "crosscam:reid:next_global_id", description="Redis counter of global ids"
    )

    def engine_params(self) -> EngineParams:
        """The core's parameters: these settings' linker and aggregation fields."""
        return EngineParams(
            linker=LinkerParams(**{k: getattr(self, k) for k in LinkerParams.model_fields}),
            aggregation=AggregationParams(
                **{k: getattr(self, k) for k in AggregationParams.model_fields}
            ),
        )


class RetentionSettings(StrictModel):
    """Retention limits (section ``[retention]``); short by default."""

    frames_hours: float = Field(
        1.0, gt=0, description="frames topics, raw and pseudonymised (pictures of people)"
    )
    detections_hours: float = Field(1.0, gt=0, description="detections topic (crops)")
    tracklets_hours: float = Field(24.0, gt=0, description="tracklets topic (crops, vectors)")
    matches_days: float = Field(30.0, gt=0, description="public match events (ids only)")
    deadletter_days: float = Field(7.0, gt=0, description="dead letters (failing messages)")
    audit_days: float = Field(365.0, gt=0, description="audit trail topic")
    store_days: float = Field(
        30.0, gt=0, description="tracklets, vectors, thumbnails and so identities in the store"
    )
    interval_s: float = Field(3600.0, ge=10, description="seconds between two store passes")

    def topic_retention_ms(self) -> dict[str, int]:
        """``retention.ms`` per topic name."""
        return {
            FRAMES.name: round(self.frames_hours * HOUR_MS),
            PSEUDONYMISED_FRAMES.name: round(self.frames_hours * HOUR_MS),
            DETECTIONS.name: round(self.detections_hours * HOUR_MS),
            TRACKLETS.name: round(self.tracklets_hours * HOUR_MS),
            MATCHES.name: round(self.matches_days * DAY_MS),
            DEADLETTER.name: round(self.deadletter_days * DAY_MS),
            AUDIT_TOPIC: round(self.audit_days * DAY_MS),
        }

    def policy(self) -> RetentionPolicy:
        return RetentionPolicy(max_age_s=self.store_days * DAY_S)


class ReidSettingsRoot(StrictModel):
    """Every section the ReID service reads."""

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    qdrant: QdrantSettings = Field(default_factory=QdrantSettings)
    reid: ReidSettings = Field(default_factory=ReidSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
