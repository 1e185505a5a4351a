"""Model files: SHA-256 checks at start, clear errors, the checksum cache; HOG fallback."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from common.boxes import box_iou
from detector import checksum
from detector.analyzer import Analyzer
from detector.backends import HogDetector, build_detector
from detector.checksum import ModelFileError, sha256_file, verify_model_file
from detector.config import (
    AnalyzerConfig,
    HogDetectorConfig,
    NoEmbedderConfig,
    OnnxDetectorConfig,
    OnnxEmbedderConfig,
    RuntimeConfig,
)
from detector.zoo import DETECTOR_ZOO, EMBEDDER_ZOO
from evaluation.groundtruth import load_mot_gt
from evaluation.video import video_frames
from service.assets import model_path, models_dir, pets_dir

YOLOX = model_path("yolox_nano.onnx")
OSNET = model_path("osnet_x0_25_msmt17.onnx")


def test_zoo_checksums_match_shared_models() -> None:
    assert verify_model_file(YOLOX, DETECTOR_ZOO["yolox_nano"].sha256) == YOLOX.resolve()
    assert verify_model_file(OSNET, EMBEDDER_ZOO["osnet_x0_25_msmt17"].sha256) == OSNET.resolve()


def test_missing_detector_model_fails_at_start(tmp_path: Path) -> None:
    config = AnalyzerConfig(detector=OnnxDetectorConfig(path=tmp_path / "nowhere.onnx"))
    with pytest.raises(ModelFileError, match=r"not found: .*nowhere\.onnx"):
        Analyzer.from_config(config)


def test_checksum_mismatch_names_both_hashes(tmp_path: Path) -> None:
    """The embedder file given as the detector: wrong file, caught before any frame."""
    wrong = tmp_path / "yolox_nano.onnx"
    shutil.copy(OSNET, wrong)
    config = AnalyzerConfig(detector=OnnxDetectorConfig(path=wrong))
    with pytest.raises(ModelFileError) as err:
        Analyzer.from_config(config)
    msg = str(err.value)
    assert "checksum mismatch" in msg and DETECTOR_ZOO["yolox_nano"].sha256 in msg
    assert EMBEDDER_ZOO["osnet_x0_25_msmt17"].sha256 in msg


def test_embedder_checksum_checked_too(tmp_path: Path) -> None:
    wrong = tmp_path / "osnet.onnx"
    shutil.copy(YOLOX, wrong)
    with pytest.raises(ModelFileError, match="embedder model checksum mismatch"):
        Analyzer.from_config(
            AnalyzerConfig(embedder=OnnxEmbedderConfig(path=wrong), models_dir=models_dir())
        )


def test_hash_cached_by_path_mtime_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "m.onnx"
    f.write_bytes(b"abc")
    first = sha256_file(f)
    calls = []
    real_sha = checksum.hashlib.sha256
    monkeypatch.setattr(checksum.hashlib, "sha256", lambda *a: calls.append(1) or real_sha(*a))
    assert sha256_file(f) == first and calls == [], "second call served from the cache"
    f.write_bytes(b"abcd")  # new size (and mtime): hashed again
    assert sha256_file(f) != first and calls == [1]


def test_unknown_zoo_model_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="unknown detector model"):
        OnnxDetectorConfig(model="yolo_nonexistent")
    with pytest.raises(ValueError, match="extra"):
        OnnxDetectorConfig.model_validate({"type": "onnx", "treshold": 0.3})


def test_no_detector_configured_falls_back_to_hog(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="detector.backends")
    det, reason = build_detector(None, RuntimeConfig())
    assert isinstance(det, HogDetector)
    assert "no detector model configured" in reason
    assert any(getattr(r, "reason", "") == reason for r in caplog.records)


def test_hog_finds_people_on_a_real_frame() -> None:
    frame_index = 100
    frame = next(
        f for i, f in video_frames(pets_dir() / "vtest.avi", frame_index + 1) if i == frame_index
    )
    analyzer = Analyzer.from_config(
        AnalyzerConfig(detector=HogDetectorConfig(), embedder=NoEmbedderConfig())
    )
    res = analyzer.analyze("pets", frame)
    assert len(res) >= 1 and res.embeddings.shape == (len(res), 0)
    gt, _, ignore = load_mot_gt(pets_dir() / "gt.txt").frame(frame_index)
    matched = (box_iou(res.boxes_xyxy, gt[~ignore]).max(axis=1) >= 0.5).sum()
    assert matched >= 2, (len(res), matched)
    assert np.all((res.scores > 0) & (res.scores < 1))
