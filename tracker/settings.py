"""Settings of ``crosscam tracker`` (section ``[tracker]``).

Every tracking parameter is a field of :class:`tracker.core.TrackerParams`,
written there once (default, bounds, description); :class:`TrackerSettings`
inherits them, so ``[tracker] high_score = 0.7`` and
``CROSSCAM_TRACKER__HIGH_SCORE=0.7`` set the core's ``high_score``, and adds
only the service's own keys (checkpointing).
"""

from __future__ import annotations

from pydantic import ConfigDict, Field

from service.settings import KafkaSettings, MetricsSettings, RedisSettings, StrictModel
from tracker.core import TrackerParams


class TrackerSettings(TrackerParams, StrictModel):
    """The tracker's knobs (inherited from :class:`tracker.core.TrackerParams`, which
    says what raising each trades) and the service's checkpointing."""

    model_config = ConfigDict(frozen=False)

    checkpoint_interval_s: float = Field(
        1.0,
        gt=0.0,
        le=3600.0,
        description="a camera's state is saved at most this often after a commit (and always on revoke); "
        "shorter loses fewer frames of state to a crash, costs more Redis writes",
    )
    state_key_prefix: str = Field(
        "crosscam:tracker:state:", min_length=1, description="Redis key prefix of camera states"
    )
    state_ttl_s: int = Field(
        7 * 24 * 3600,
        ge=60,
        description="a saved state expires this long after its last write (a camera gone for good)",
    )

    def params(self) -> TrackerParams:
        """The core's parameters: these settings' :class:`TrackerParams` fields."""
        return TrackerParams(**{name: getattr(self, name) for name in TrackerParams.model_fields})


class TrackerSettingsRoot(StrictModel):
    """Every section the tracker service reads."""

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    tracker: TrackerSettings = Field(default_factory=TrackerSettings)
