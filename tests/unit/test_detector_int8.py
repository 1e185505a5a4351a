"""The int8 appearance model: quantised at start, calibrated on a recording's people, checked.

Real models, real PETS09 frames. Calibration uses frames from the first part
of the video (written as an image folder, a recording a site would give);
agreement is then measured on people from a later part it never saw.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

import detector.int8 as int8
from detector.checksum import resolve_model_path
from detector.config import OnnxEmbedderConfig, RuntimeConfig
from detector.embedder import OnnxEmbedder, build_embedder
from detector.int8 import CalibrationError, calibration_frames
from detector.preprocess import crop_views
from detector.runtime import cosines
from evaluation.video import video_frames
from service.assets import models_dir, pets_dir

CALIBRATION_FRAMES = range(0, 300, 15)  # 20 frames of the first 300
LATER_FRAMES = range(500, 790, 29)  # 10 frames it never saw


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 300 frames of PETS09 (every 15th) as a folder of images."""
    folder = tmp_path_factory.mktemp("site-recording")
    wanted = set(CALIBRATION_FRAMES)
    for i, frame in video_frames(pets_dir() / "vtest.avi", max(wanted) + 1):
        if i in wanted:
            cv2.imwrite(str(folder / f"{i:05d}.png"), frame)
    return folder


@pytest.fixture(scope="module")
def later_people() -> tuple[list[np.ndarray], np.ndarray]:
    """Ground-truth person crops of the later frames and their identities."""
    wanted = set(LATER_FRAMES)
    frames = dict(
        (i, f) for i, f in video_frames(pets_dir() / "vtest.avi", max(wanted) + 1) if i in wanted
    )
    gt = np.loadtxt(pets_dir() / "gt.txt", delimiter=",")
    crops, ids = [], []
    for row in gt:
        frame = frames.get(int(row[0]) - 1)  # GT frame N is video frame N-1
        if frame is None:
            continue
        x, y, w, h = row[2:6]
        box = np.array([[x, y, x + w, y + h]], np.float32)
        crop = crop_views(frame, box)[0]
        if crop.size and h >= 40:
            crops.append(crop)
            ids.append(int(row[1]))
    assert len(crops) >= 40
    return crops, np.asarray(ids)


def _rank1(vectors: np.ndarray, ids: np.ndarray) -> float:
    """Share of crops whose nearest other crop shows the same person."""
    sim = vectors @ vectors.T
    np.fill_diagonal(sim, -np.inf)
    return float((ids[sim.argmax(1)] == ids).mean())


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh folder for quantised copies (not the machine-wide one), so quantisation runs."""
    folder = tmp_path_factory.mktemp("crosscam-models")
    mp = pytest.MonkeyPatch()
    mp.setattr(int8, "EDITED_MODELS_DIR", folder)
    yield folder
    mp.undo()


def _runtime(recording: Path, **update: object) -> RuntimeConfig:
    settings: dict[str, object] = {
        "embedder_precision": "int8",
        "int8_calibration": recording,
        "int8_calibration_frames": len(CALIBRATION_FRAMES),
        "auto_timing_s": 0.2,
    }
    return RuntimeConfig(**(settings | update))  # type: ignore[arg-type]


def _float() -> OnnxEmbedder:
    spec = OnnxEmbedderConfig().spec()
    path = resolve_model_path(None, spec.filename, models_dir())
    return OnnxEmbedder(path, spec, RuntimeConfig(embedder_precision="f32", auto_timing_s=0.2), 32)


@pytest.fixture(scope="module")
def quantised(cache: Path, recording: Path) -> OnnxEmbedder:
    emb = build_embedder(OnnxEmbedderConfig(), _runtime(recording), models_dir())
    assert isinstance(emb, OnnxEmbedder)
    return emb


def test_int8_copy_is_quantised_and_agrees_on_people_it_never_saw(
    quantised: OnnxEmbedder, cache: Path, later_people: tuple[list[np.ndarray], np.ndarray]
) -> None:
    import onnx

    report = quantised.int8
    assert report is not None and report.path.parent == cache
    assert report.crops >= 40 and report.held_out >= 16
    assert report.mean_cosine >= 0.98, report
    ops = {n.op_type for n in onnx.load(str(report.path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops, "a QDQ graph, not the float one"
    assert quantised.choice.model.endswith("int8"), "the stage runs the int8 copy"

    crops, ids = later_people
    got = quantised.embed(crops)
    ref = _float().embed(crops)
    cos = cosines(ref, got)
    assert cos.mean() >= 0.98 and cos.min() >= 0.94, (cos.mean(), cos.min())
    assert cos.min() < 0.9999, "int8 arithmetic moves the vectors a little, float32 would not"
    # What re-identification rests on survives: a person's nearest other crop shows the same
    # person about as often with int8 vectors as with float32's.
    print("rank-1 int8, float32:", _rank1(got, ids), _rank1(ref, ids), cos.mean(), cos.min())
    assert _rank1(got, ids) >= _rank1(ref, ids) - 0.03, (_rank1(got, ids), _rank1(ref, ids))


def test_int8_copy_is_made_once_per_recording(
    quantised: OnnxEmbedder, recording: Path, cache: Path
) -> None:
    assert quantised.int8 is not None
    before = quantised.int8.path.stat().st_mtime_ns
    again = build_embedder(OnnxEmbedderConfig(), _runtime(recording), models_dir())
    assert isinstance(again, OnnxEmbedder) and again.int8 is not None
    assert again.int8.path == quantised.int8.path
    assert again.int8.path.stat().st_mtime_ns == before, "reused, not quantised again"
    other = build_embedder(
        OnnxEmbedderConfig(), _runtime(recording, int8_calibration_frames=10), models_dir()
    )
    assert isinstance(other, OnnxEmbedder) and other.int8 is not None
    assert other.int8.path != quantised.int8.path, "another calibration, another copy"


def test_int8_that_disagrees_falls_back_to_float32(
    quantised: OnnxEmbedder, recording: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="detector.embedder"):
        emb = build_embedder(
            OnnxEmbedderConfig(), _runtime(recording, int8_min_cosine=1.0), models_dir()
        )
    assert isinstance(emb, OnnxEmbedder) and emb.int8 is not None
    assert not emb.choice.model.endswith("int8"), "float32 kept"
    assert any(r.message == "embedder_int8_rejected" for r in caplog.records)


def test_int8_needs_a_recording_with_people(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="int8_calibration"):
        RuntimeConfig(embedder_precision="int8")
    with pytest.raises(CalibrationError, match="does not exist"):
        calibration_frames(tmp_path / "missing.mp4", 10)
    empty = tmp_path / "empty"
    empty.mkdir()
    for i in range(3):  # a wall: no people
        cv2.imwrite(str(empty / f"{i}.png"), np.full((480, 640, 3), 90, np.uint8))
    with pytest.raises(CalibrationError, match="person crops"):
        build_embedder(OnnxEmbedderConfig(), _runtime(empty), models_dir())
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("no images")
    with pytest.raises(CalibrationError, match="no frame"):
        calibration_frames(tmp_path / "notes", 10)


def test_an_evaluation_calibrates_on_its_scenario_cameras(tmp_path: Path) -> None:
    """`eval mtmc --embedder-precision int8` hands the quantisation frames of every camera."""
    from evaluation.analysis import runtime_config, scenario_calibration

    videos = []
    for k, shade in enumerate((40, 200)):
        path = tmp_path / f"cam{k}.avi"
        out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
        for i in range(30):
            out.write(np.full((48, 64, 3), shade + i, np.uint8))
        out.release()
        videos.append(path)
    folder = scenario_calibration(videos, tmp_path / "cache" / "int8", per_video=5)
    files = sorted(folder.iterdir())
    assert [p.name.split("_")[0] for p in files] == ["cam0"] * 5 + ["cam1"] * 5
    frames = calibration_frames(folder, 10)
    assert len(frames) == 10 and {int(f[0, 0, 0]) < 128 for f in frames} == {True, False}
    assert scenario_calibration(videos, folder, per_video=5) == folder  # kept, not rewritten
    assert runtime_config("int8", folder).int8_calibration == folder
    assert runtime_config("auto", folder).int8_calibration is None
