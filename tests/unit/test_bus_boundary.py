"""Input from the bus is hostile: caps and NaN/inf checks dead-letter instead of crashing."""

from __future__ import annotations

import numpy as np
import pytest

from reid.service import check_tracklet
from schemas.messages import Crop, Detections, Tracklet, pack_f32
from service import metrics
from tracker.service import MAX_BOXES_PER_FRAME, check_detections


def detections(n: int, dim: int = 4, bad: str = "") -> Detections:
    boxes = np.tile(np.array([[0, 0, 10, 20]], np.float32), (n, 1))
    scores = np.full(n, 0.9, np.float32)
    emb = np.ones((n, dim), np.float32)
    if bad == "nan-embedding":
        emb[0, 0] = np.nan
    if bad == "inf-score":
        scores[0] = np.inf
    return Detections(camera_id="cam1", seq=1, ts_capture_ns=1, width=64, height=64,
                      boxes_xyxy=pack_f32(boxes), scores=pack_f32(scores),
                      embeddings=pack_f32(emb), embedding_dim=dim)  # fmt: skip


def test_a_sane_frame_passes() -> None:
    assert check_detections(detections(3)) is None


@pytest.mark.parametrize(("bad", "why"), [("nan-embedding", "embeddings"), ("inf-score", "scores")])
def test_nan_and_inf_are_refused(bad: str, why: str) -> None:
    problem = check_detections(detections(2, bad=bad))
    assert problem is not None and why in problem and "not finite" in problem


def test_too_many_boxes_are_refused() -> None:
    assert check_detections(detections(MAX_BOXES_PER_FRAME)) is None
    problem = check_detections(detections(MAX_BOXES_PER_FRAME + 1, dim=1))
    assert problem is not None and "cap" in problem


def test_a_tracklet_with_an_infinite_vector_is_refused() -> None:
    good = pack_f32(np.ones(8, np.float32))
    bad = pack_f32(np.array([1, np.inf, 0, 0, 0, 0, 0, 0], np.float32))

    def tracklet(vec: bytes) -> Tracklet:
        crop = Crop(seq=0, ts_capture_ns=1, box_xyxy=[0, 0, 1, 1], score=1.0, quality=1.0,
                    jpeg=b"", embedding=vec)  # fmt: skip
        return Tracklet(camera_id="cam1", tracklet_id="cam1:1:1", track_id=1, ts_start_ns=1,
                        ts_end_ns=2, crops=[crop])  # fmt: skip

    assert check_tracklet(tracklet(good)) is None
    problem = check_tracklet(tracklet(bad))
    assert problem is not None and "not finite" in problem


def test_camera_labels_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "_camera_labels", set())
    monkeypatch.setenv("CROSSCAM_MAX_CAMERA_LABELS", "3")
    seen = [metrics.camera_label(f"cam{i}") for i in range(10)]
    assert seen[:3] == ["cam0", "cam1", "cam2"] and set(seen[3:]) == {"_other"}
    assert metrics.camera_label("cam1") == "cam1"  # a known camera keeps its label
