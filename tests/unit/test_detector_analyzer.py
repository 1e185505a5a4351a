"""The analysis API the tracker evaluation calls: real YOLOX-nano + OSNet on real PETS09 frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from common.boxes import box_iou
from detector.analyzer import Analyzer, AnalyzerConfig, FrameAnalysis
from evaluation.groundtruth import load_mot_gt
from evaluation.precompute import video_detections
from evaluation.video import video_frames
from service.assets import models_dir, pets_dir

VIDEO = pets_dir() / "vtest.avi"
GT = pets_dir() / "gt.txt"
# A frame with several people spread over the scene, some close together.
KNOWN_FRAME = 100
EVERY_BOX = AnalyzerConfig(appearance={"on_demand": False}, models_dir=models_dir())


@pytest.fixture(scope="module")
def analyzer() -> Analyzer:
    # Every box embedded: these tests are about the models and batching
    # (appearance on demand has its own, tests/unit/test_detector_appearance.py).
    return Analyzer.from_config(EVERY_BOX)


@pytest.fixture(scope="module")
def frames() -> dict[int, np.ndarray]:
    return {i: f for i, f in video_frames(VIDEO, KNOWN_FRAME + 1) if i in (0, 1, 2, KNOWN_FRAME)}


def test_boxes_on_known_frame_match_ground_truth(
    analyzer: Analyzer, frames: dict[int, np.ndarray]
) -> None:
    res = analyzer.analyze("pets", frames[KNOWN_FRAME])
    gt_boxes, _, ignore = load_mot_gt(GT).frame(KNOWN_FRAME)
    wanted = gt_boxes[~ignore]
    assert len(wanted) >= 4
    found = (box_iou(wanted, res.boxes_xyxy).max(axis=1) >= 0.5).sum() if len(res) else 0
    assert found / len(wanted) >= 0.75, (found, len(wanted))


def test_analysis_fields_are_consistent(analyzer: Analyzer, frames: dict[int, np.ndarray]) -> None:
    frame = frames[KNOWN_FRAME]
    res = analyzer.analyze("pets", frame)
    n = len(res)
    assert n > 0
    assert res.boxes_xyxy.shape == (n, 4) and res.boxes_xyxy.dtype == np.float32
    assert res.scores.shape == (n,) and np.all(np.diff(res.scores) <= 0), "best first"
    assert res.scores.min() >= 0.3
    assert res.embeddings.shape == (n, 512) and res.embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(res.embeddings, axis=1), 1.0, atol=1e-5)
    assert res.sharpness.shape == (n,) and np.all(res.sharpness > 0)
    h, w = frame.shape[:2]
    assert np.all(res.boxes_xyxy[:, [0, 2]] <= w) and np.all(res.boxes_xyxy >= 0)
    assert np.all(res.boxes_xyxy[:, [1, 3]] <= h)
    for crop, (x1, y1, x2, y2) in zip(res.crops, res.boxes_xyxy, strict=True):
        assert abs(crop.shape[0] - (y2 - y1)) <= 2 and abs(crop.shape[1] - (x2 - x1)) <= 2


def test_batch_equals_single_frames(analyzer: Analyzer, frames: dict[int, np.ndarray]) -> None:
    items = [("a", frames[0]), ("b", frames[KNOWN_FRAME]), ("a", frames[1])]
    batch = analyzer.analyze_batch(items)
    assert [r.camera_id for r in batch] == ["a", "b", "a"]
    for (cam, frame), got in zip(items, batch, strict=True):
        one: FrameAnalysis = analyzer.analyze(cam, frame)
        np.testing.assert_allclose(got.boxes_xyxy, one.boxes_xyxy, atol=1e-3)
        np.testing.assert_allclose(got.embeddings, one.embeddings, atol=1e-4)
    assert analyzer.last_timing.frames == 1


def test_same_person_in_consecutive_frames_is_closest(
    analyzer: Analyzer, frames: dict[int, np.ndarray]
) -> None:
    """Appearance vectors are meaningful: each person's nearest vector a frame later is theirs."""
    r0, r1 = analyzer.analyze_batch([("pets", frames[0]), ("pets", frames[1])])
    ious = box_iou(r0.boxes_xyxy, r1.boxes_xyxy)
    same = ious.argmax(axis=1)
    sims = r0.embeddings @ r1.embeddings.T
    confident = ious.max(axis=1) > 0.7
    assert confident.sum() >= 2
    assert np.all(sims.argmax(axis=1)[confident] == same[confident])


def test_video_detections_cached(tmp_path: Path, analyzer: Analyzer) -> None:
    first = video_detections(
        VIDEO, score_min=0.3, frames=3, config=EVERY_BOX, cache_dir=tmp_path, analyzer=analyzer
    )
    assert (
        not first.from_cache and first.n_frames == 3 and (first.width, first.height) == (768, 576)
    )
    assert len(list(tmp_path.glob("*.npz"))) == 1
    again = video_detections(VIDEO, score_min=0.3, frames=3, config=EVERY_BOX, cache_dir=tmp_path)
    assert again.from_cache
    for a, b in zip(
        first.embeddings + first.boxes_xyxy, again.embeddings + again.boxes_xyxy, strict=True
    ):
        np.testing.assert_array_equal(a, b)
    lower = video_detections(
        VIDEO, score_min=0.1, frames=3, config=EVERY_BOX, cache_dir=tmp_path, analyzer=None
    )
    assert not lower.from_cache, "a different threshold is a different cache entry"
    assert sum(map(len, lower.scores)) >= sum(map(len, first.scores))


def test_greyscale_camera_is_detected_and_colour_crops_are_embedded_grey(
    frames: dict[int, np.ndarray],
) -> None:
    """A greyscale camera beside a colour one: flagged, and the colour camera's crops get grey vectors."""
    import cv2

    from detector.greyscale import grey_crops

    fresh = Analyzer.from_config(AnalyzerConfig(models_dir=models_dir()))
    colour = frames[KNOWN_FRAME]
    grey = cv2.cvtColor(cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    alone = fresh.analyze("day", colour)  # no greyscale camera yet: nothing extra
    assert not alone.greyscale and alone.embeddings_grey.size == 0
    res_grey, res_colour = fresh.analyze_batch([("night", grey), ("day", colour)])
    assert res_grey.greyscale and not res_colour.greyscale
    assert res_grey.embeddings_grey.size == 0  # a grey camera's own vectors are already grey
    assert res_colour.embeddings_grey.shape == res_colour.embeddings.shape
    expected = fresh.embedder.embed(grey_crops(res_colour.crops))
    assert np.allclose(res_colour.embeddings_grey, expected, atol=1e-4)
    # like with like: the grey camera's person is closer to the colour crop's grey vector
    d_grey = 1 - float(res_grey.embeddings[0] @ res_colour.embeddings_grey[0])
    d_colour = 1 - float(res_grey.embeddings[0] @ res_colour.embeddings[0])
    assert d_grey < d_colour


def _runs(overlap: bool) -> Analyzer:
    # float32 pinned: both analysers must run the same engine. With precision 'auto' on an
    # AVX512-BF16 CPU without AMX (bfloat16 only ~8 % faster) one analyser chose bfloat16
    # and the other float32 by their start-up timing, and the vectors differed by 0.026
    return Analyzer.from_config(
        AnalyzerConfig(
            models_dir=models_dir(),
            runtime={"overlap_models": overlap, "embedder_precision": "f32"},
        )
    )


def test_detect_ahead_gives_the_serial_results() -> None:
    """Detector and embedder side by side (appearance on demand, two cameras interleaved)
    give exactly what one after the other gives: boxes, vectors, carried flags, counts."""
    clips = [f for _, f in video_frames(VIDEO, 12)]
    items = [(cam, f) for f in clips for cam in ("a", "b")]
    side, serial = _runs(True), _runs(False)
    assert side.overlap and not serial.overlap
    got, want = [], []
    for k in range(0, len(items), 8):
        got += side.analyze_batch(items[k : k + 8])
        want += serial.analyze_batch(items[k : k + 8])
        assert side.last_timing.crops == serial.last_timing.crops
        assert side.last_timing.detector_inference > 0 and side.last_timing.embedder_inference > 0
    assert sum(int(r.carried.sum()) for r in got) > 0, "on demand carried some vectors"
    for g, w in zip(got, want, strict=True):
        assert g.camera_id == w.camera_id
        np.testing.assert_allclose(g.boxes_xyxy, w.boxes_xyxy, atol=1e-3)
        np.testing.assert_array_equal(g.carried, w.carried)
        np.testing.assert_allclose(g.embeddings, w.embeddings, atol=1e-4)
    side.close()


def test_detect_ahead_failure_leaves_nothing_half_done() -> None:
    """The embedder failing mid-batch: the error surfaces once, and the next batch analyses
    from a clean state (without the reset its plans would be out of step and it would raise)."""
    side = _runs(True)
    clips = [("a", f) for _, f in video_frames(VIDEO, 6)]
    real = side.embedder.embed
    calls = {"n": 0}

    def failing(crops: list[np.ndarray]) -> np.ndarray:
        calls["n"] += 1
        raise RuntimeError("embedder down")

    side.embedder.embed = failing  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="embedder down"):
        side.analyze_batch(clips)
    assert calls["n"] == 1
    side.embedder.embed = real  # type: ignore[method-assign]
    again = side.analyze_batch(clips)
    fresh = _runs(False).analyze_batch(clips)
    for g, w in zip(again, fresh, strict=True):
        np.testing.assert_array_equal(g.carried, w.carried)
        np.testing.assert_allclose(g.embeddings, w.embeddings, atol=1e-4)
    side.close()
