"""Settings: strict keys, TOML + environment precedence."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from reid.aggregate import AggregationParams
from reid.linker import LinkerParams
from reid.settings import ReidSettings, ReidSettingsRoot
from service.settings import KafkaSettings, MetricsSettings, StrictModel, load_settings
from tracker.core import TrackerParams
from tracker.settings import TrackerSettings, TrackerSettingsRoot


class Root(StrictModel):
    kafka: KafkaSettings = KafkaSettings()
    metrics: MetricsSettings = MetricsSettings()


def test_file_then_env_then_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[kafka]\nbootstrap_servers = "a:1"\nmax_batch_records = 4\n[tracker]\nx = 1\n')
    monkeypatch.setenv("CROSSCAM_KAFKA__MAX_BATCH_RECORDS", "8")
    s = load_settings(Root, path, metrics={"port": 9100})
    assert s.kafka.bootstrap_servers == "a:1"
    assert s.kafka.max_batch_records == 8
    assert s.metrics.port == 9100


def test_unknown_key_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[kafka]\nbootstrap_server = 'typo:1'\n")
    with pytest.raises(ValidationError, match="bootstrap_server"):
        load_settings(Root, path)


def test_unknown_section_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[kafak]\nx = 1\n")
    with pytest.raises(ValueError, match="kafak"):
        load_settings(Root, path)


def test_bounds_are_enforced() -> None:
    with pytest.raises(ValidationError):
        KafkaSettings(max_batch_records=0)


def test_tracker_keys_set_the_core_params_they_are_defined_by(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The [tracker] keys users write today reach TrackerParams, bounds included."""
    path = tmp_path / "c.toml"
    path.write_text("[tracker]\nhigh_score = 0.7\nlost_track_s = 3.5\ncheckpoint_interval_s = 2\n")
    monkeypatch.setenv("CROSSCAM_TRACKER__CONFIRM_HITS", "5")
    cfg = load_settings(TrackerSettingsRoot, path).tracker
    params = cfg.params()
    assert type(params) is TrackerParams
    assert params == TrackerParams(high_score=0.7, lost_track_s=3.5, confirm_hits=5)
    assert cfg.checkpoint_interval_s == 2.0
    assert TrackerSettings().params() == TrackerParams()
    assert TrackerSettings.model_fields["high_score"].description == (
        TrackerParams.model_fields["high_score"].description
    )
    path.write_text("[tracker]\nhigh_score = 1.5\n")
    with pytest.raises(ValidationError, match="high_score"):
        load_settings(TrackerSettingsRoot, path)
    with pytest.raises(ValidationError, match="max_history_frame"):
        TrackerSettings.model_validate({"max_history_frame": 100})


def test_reid_keys_set_the_linker_and_aggregation_params(tmp_path: Path) -> None:
    """revisit_window_s is the linker's window; window_s stays the open-world gap."""
    path = tmp_path / "c.toml"
    path.write_text(
        "[reid]\nlink_distance = 0.3\nrevisit_window_s = 60\nwindow_s = 45\n"
        "outlier_mad_factor = 2.5\nmax_live_tracklets = 100\n"
    )
    cfg = load_settings(ReidSettingsRoot, path).reid
    params = cfg.engine_params()
    assert params.linker == LinkerParams(
        link_distance=0.3, revisit_window_s=60.0, max_live_tracklets=100
    )
    assert params.aggregation == AggregationParams(outlier_mad_factor=2.5)
    assert cfg.window_s == 45.0
    assert ReidSettings().engine_params().linker == LinkerParams()
    with pytest.raises(ValidationError, match="max_live_tracklets"):
        ReidSettings(max_live_tracklets=5)
