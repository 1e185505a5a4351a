"""Settings of ``crosscam tracker`` (section ``[tracker]``), mapped onto :class:`TrackerParams`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from service.settings import KafkaSettings, MetricsSettings, RedisSettings, StrictModel
from tracker.core import TrackerParams

_D = TrackerParams()


class TrackerSettings(StrictModel):
    """The tracker's knobs (see :class:`tracker.core.TrackerParams` for what raising each trades)
    and the service's checkpointing."""

    high_score: float = Field(
        _D.high_score,
        ge=0.0,
        le=1.0,
        description="detections at or above start tracks and match by appearance",
    )
    low_score: float = Field(
        _D.low_score,
        ge=0.0,
        le=1.0,
        description="detections between this and high_score only extend tracks by overlap",
    )
    appearance: Literal["gallery", "smoothed"] = Field(
        _D.appearance, description="distance to the gallery's nearest vector or to the smoothed one"
    )
    max_appearance_distance: float = Field(
        _D.max_appearance_distance,
        gt=0.0,
        le=2.0,
        description="largest cosine distance of an appearance match",
    )
    max_iou_distance: float = Field(
        _D.max_iou_distance, gt=0.0, le=1.0, description="largest 1 - IoU of an overlap match"
    )
    lost_track_s: float = Field(
        _D.lost_track_s,
        gt=0.0,
        le=600.0,
        description="seconds unmatched before a track ends as a tracklet",
    )
    iou_max_lost_s: float = Field(
        _D.iou_max_lost_s,
        ge=0.0,
        le=60.0,
        description="tracks lost at most this long also match by overlap",
    )
    confirm_hits: int = Field(
        _D.confirm_hits, ge=1, le=100, description="matches before a track is confirmed"
    )
    gallery_size: int = Field(
        _D.gallery_size, ge=1, le=1000, description="appearance vectors kept per track"
    )
    crops_per_tracklet: int = Field(
        _D.crops_per_tracklet, ge=0, le=50, description="best crops kept per tracklet"
    )
    crop_min_gap_s: float = Field(
        _D.crop_min_gap_s, ge=0.0, le=60.0, description="kept crops are at least this far apart"
    )
    max_history_frames: int = Field(
        _D.max_history_frames,
        ge=16,
        le=1_000_000,
        description="box history entries per track before thinning",
    )
    min_tracklet_s: float = Field(
        _D.min_tracklet_s, ge=0.0, description="shorter tracklets are dropped"
    )
    min_tracklet_frames: int = Field(
        _D.min_tracklet_frames, ge=1, description="tracklets with fewer matched frames are dropped"
    )
    min_tracklet_mean_score: float = Field(
        _D.min_tracklet_mean_score,
        ge=0.0,
        le=1.0,
        description="tracklets with a lower mean score are dropped",
    )
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
        """The core's parameters (Kalman noise keeps its defaults)."""
        return TrackerParams(
            high_score=self.high_score,
            low_score=self.low_score,
            appearance=self.appearance,
            max_appearance_distance=self.max_appearance_distance,
            max_iou_distance=self.max_iou_distance,
            lost_track_s=self.lost_track_s,
            iou_max_lost_s=self.iou_max_lost_s,
            confirm_hits=self.confirm_hits,
            gallery_size=self.gallery_size,
            crops_per_tracklet=self.crops_per_tracklet,
            crop_min_gap_s=self.crop_min_gap_s,
            max_history_frames=self.max_history_frames,
            min_tracklet_s=self.min_tracklet_s,
            min_tracklet_frames=self.min_tracklet_frames,
            min_tracklet_mean_score=self.min_tracklet_mean_score,
        )


class TrackerSettingsRoot(StrictModel):
    """Every section the tracker service reads."""

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    tracker: TrackerSettings = Field(default_factory=TrackerSettings)
