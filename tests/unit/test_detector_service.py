"""Service start-up: settings, clear model errors before any Kafka, provider choice and metric."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import onnxruntime as ort
import pytest
from prometheus_client import REGISTRY
from pydantic import ValidationError

from crosscam.cli import main as cli_main
from detector.analyzer import Analyzer
from detector.backends import HogDetector
from detector.config import AnalyzerConfig, RuntimeConfig
from detector.embedder import NullEmbedder
from detector.runtime import choose_providers
from detector.service import export_provider_metrics
from detector.settings import DetectorSettingsRoot
from service.assets import models_dir
from service.settings import load_settings


@pytest.fixture
def root_logging() -> Iterator[None]:
    """The service's setup_logging replaces the root handlers: put them back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_missing_model_stops_the_service_at_start(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], root_logging: None
) -> None:
    cfg = tmp_path / "detector.toml"
    cfg.write_text(
        f'[kafka]\nbootstrap_servers = "127.0.0.1:1"\n[detector.model]\npath = "{tmp_path / "gone.onnx"}"\n'
    )
    # Port 1 has no broker: returning 2 proves the model check ran before any Kafka call.
    assert cli_main(["detector", "--config", str(cfg), "--metrics-port", "0"]) == 2
    err = capfd.readouterr().err  # the service installs its own log handler on stderr
    assert "model_error" in err and "not found" in err and "gone.onnx" in err


def test_settings_from_toml_no_model_means_hog(tmp_path: Path) -> None:
    cfg = tmp_path / "detector.toml"
    cfg.write_text(
        '[detector]\nmax_batch_frames = 4\n[detector.model]\ntype = "onnx"\nmodel = ""\n'
        '[detector.embedder]\ntype = "none"\n[detector.runtime]\nintra_op_threads = 1\n'
    )
    settings = load_settings(DetectorSettingsRoot, cfg)
    assert settings.detector.max_batch_frames == 4
    analyzer = Analyzer.from_config(settings.detector.analyzer_config(models_dir()))
    assert isinstance(analyzer.detector, HogDetector) and isinstance(
        analyzer.embedder, NullEmbedder
    )
    assert "no detector model configured" in analyzer.detector_reason


def test_unknown_keys_and_bad_types_are_errors(tmp_path: Path) -> None:
    cfg = tmp_path / "detector.toml"
    cfg.write_text('[detector.model]\ntype = "yolo9000"\n')
    with pytest.raises(ValidationError):
        load_settings(DetectorSettingsRoot, cfg)
    cfg.write_text("[detector]\nmax_batch_frame = 4\n")
    with pytest.raises(ValidationError, match="max_batch_frame"):
        load_settings(DetectorSettingsRoot, cfg)


def test_env_overrides_detector_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CROSSCAM_DETECTOR__MAX_BATCH_FRAMES", "16")
    monkeypatch.setenv("CROSSCAM_DETECTOR__RUNTIME", '{"intra_op_threads": 3}')
    s = load_settings(DetectorSettingsRoot, None)
    assert s.detector.max_batch_frames == 16 and s.detector.runtime.intra_op_threads == 3


def test_provider_preference_skips_what_is_not_installed() -> None:
    available = set(ort.get_available_providers())
    chosen = choose_providers(RuntimeConfig(providers=["tensorrt", "cuda", "cpu"]))
    expected = [
        p
        for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
        if p in available
    ]
    assert chosen == expected and chosen[-1] == "CPUExecutionProvider"
    if "CUDAExecutionProvider" in available:
        assert choose_providers(RuntimeConfig(providers=["cuda"])) == ["CUDAExecutionProvider"]
    else:
        with pytest.raises(RuntimeError, match="none of the configured providers"):
            choose_providers(RuntimeConfig(providers=["cuda"]))


def test_provider_is_logged_and_exported() -> None:
    analyzer = Analyzer.from_config(AnalyzerConfig(models_dir=models_dir()))
    export_provider_metrics(analyzer)
    provider = analyzer.detector.provider
    # the `auto` runtime times ONNX Runtime and OpenVINO and keeps the faster: either may win
    assert provider in ort.get_available_providers() or provider.startswith("OpenVINO:"), provider
    value = REGISTRY.get_sample_value(
        "crosscam_detector_provider_info",
        {"model": "detector", "backend": analyzer.detector.name, "provider": provider},
    )
    assert value == 1.0
