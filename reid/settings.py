"""Settings of ``crosscam reid`` (sections ``[reid]`` and ``[qdrant]``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from reid.aggregate import AggregationParams
from reid.calibration import CalibrationParams
from reid.engine import EngineParams
from reid.linker import LinkerParams
from service.settings import KafkaSettings, MetricsSettings, RedisSettings, StrictModel

_L = LinkerParams()
_A = AggregationParams()
_C = CalibrationParams()


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


class ReidSettings(StrictModel):
    """The ReID stage's knobs (see :class:`reid.linker.LinkerParams` for what each trades)."""

    cameras_file: Path | None = Field(
        None, description="cameras TOML (topology); none = any camera within window_s"
    )
    window_s: float = Field(120.0, gt=0, description="with no cameras file: longest gap linked")
    data_dir: Path = Field(Path("var/reid"), description="embedded store and thumbnails live here")
    dim: int = Field(512, ge=1, le=4096, description="appearance vector size (OSNet: 512)")
    link_distance: float = Field(
        _L.link_distance,
        gt=0,
        le=2,
        description="largest cosine distance of a link on a camera pair not yet calibrated",
    )
    shot_weight: float = Field(
        _L.shot_weight, ge=0, le=1, description="share of multi-shot distance"
    )
    overlap_tolerance_s: float = Field(_L.overlap_tolerance_s, ge=0, le=10)
    revisit_window_s: float = Field(
        _L.window_s, gt=0, description="decisions this recent are revisited"
    )
    max_live_tracklets: int = Field(_L.max_live_tracklets, ge=10, le=1_000_000)
    max_anchors: int = Field(_L.max_anchors, ge=10, le=10_000_000)
    search_limit: int = Field(_L.search_limit, ge=1, le=1000)
    link_same_camera: bool = Field(
        _L.link_same_camera, description="link tracklets of one camera directly"
    )
    same_camera_link_distance: float = Field(_L.same_camera_link_distance, ge=0, le=2)
    calibrate: bool = Field(
        _C.enabled,
        description="calibrate links per camera pair from the traffic (off: link_distance everywhere)",
    )
    link_z: float = Field(
        _C.z_link,
        lt=0,
        ge=-10,
        description="calibrated link: stranger sigmas below the camera pair's stranger median",
    )
    calibration_min_pairs: int = Field(
        _C.min_pair_samples,
        ge=5,
        le=100_000,
        description="allowed-pair distances a camera pair needs before it is calibrated",
    )
    outlier_mad_factor: float = Field(_A.outlier_mad_factor, gt=0)
    api_host: str = Field("127.0.0.1", description="address of the query API")
    api_port: int = Field(
        8765, ge=0, le=65535, description="port of the query API (0 = any free port)"
    )
    global_id_key: str = Field(
        "crosscam:reid:next_global_id", description="Redis counter of global ids"
    )

    def engine_params(self) -> EngineParams:
        return EngineParams(
            linker=LinkerParams(
                link_distance=self.link_distance,
                shot_weight=self.shot_weight,
                overlap_tolerance_s=self.overlap_tolerance_s,
                window_s=self.revisit_window_s,
                max_live_tracklets=self.max_live_tracklets,
                max_anchors=self.max_anchors,
                search_limit=self.search_limit,
                link_same_camera=self.link_same_camera,
                same_camera_link_distance=self.same_camera_link_distance,
                calibration=CalibrationParams(
                    enabled=self.calibrate,
                    z_link=self.link_z,
                    min_pair_samples=self.calibration_min_pairs,
                ),
            ),
            aggregation=AggregationParams(outlier_mad_factor=self.outlier_mad_factor),
        )


class ReidSettingsRoot(StrictModel):
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    qdrant: QdrantSettings = Field(default_factory=QdrantSettings)
    reid: ReidSettings = Field(default_factory=ReidSettings)
