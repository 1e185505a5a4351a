"""Settings: strict keys, TOML + environment precedence."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.settings import KafkaSettings, MetricsSettings, StrictModel, load_settings


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
