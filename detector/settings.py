"""Settings of ``crosscam detector`` (section ``[detector]``).

[detector]
max_batch_frames = 8
[detector.model]          # the detector backend: type = "onnx" (default) or "hog"
type = "onnx"
model = "yolox_nano"      # "" = no model configured -> OpenCV HOG fallback
[detector.embedder]
type = "onnx"             # or "none"
[detector.runtime]
providers = ["tensorrt", "cuda", "cpu"]
intra_op_threads = 1      # default: half the cores, at most 4
overlap_models = true     # detector and embedder side by side on a backlog
[detector.background]
enabled = false
[detector.crops]
jpeg_max_side = 256
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from detector.config import (
    AnalyzerConfig,
    AppearanceConfig,
    BackgroundConfig,
    CropConfig,
    DetectorBackendConfig,
    EmbedderBackendConfig,
    MotionGateConfig,
    OnnxDetectorConfig,
    OnnxEmbedderConfig,
    RuntimeConfig,
)
from service.settings import KafkaSettings, MetricsSettings, RedisSettings, StrictModel


class DetectorSettings(StrictModel):
    """The detector stage: models, runtime, batching, message crops."""

    model: DetectorBackendConfig = Field(
        default_factory=OnnxDetectorConfig, description="person detector backend"
    )
    embedder: EmbedderBackendConfig = Field(
        default_factory=OnnxEmbedderConfig, description="appearance model"
    )
    background: BackgroundConfig = Field(default_factory=BackgroundConfig)
    appearance: AppearanceConfig = Field(default_factory=AppearanceConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    crops: CropConfig = Field(default_factory=CropConfig)
    motion_gate: MotionGateConfig = Field(default_factory=MotionGateConfig)
    max_batch_frames: int = Field(
        8,
        ge=1,
        le=256,
        description="frames per analyzer call (the Kafka batch is split into calls of this "
        "size); raising it amortises embedder calls, holds more decoded frames in memory",
    )
    claim_check_retries: int = Field(
        3, ge=0, le=20, description="Redis errors retried (with backoff) before dead-lettering"
    )

    def analyzer_config(self, models_dir: Path | None = None) -> AnalyzerConfig:
        """The core's config; ``models_dir`` holds zoo models that have no path of their own."""
        return AnalyzerConfig(
            detector=self.model,
            embedder=self.embedder,
            background=self.background,
            appearance=self.appearance,
            runtime=self.runtime,
            models_dir=models_dir,
        )


class DetectorSettingsRoot(StrictModel):
    """Everything ``crosscam detector`` reads."""

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    detector: DetectorSettings = Field(default_factory=DetectorSettings)
