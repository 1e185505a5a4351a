"""Tracklet vector aggregation on real OSNet vectors of real PETS crops."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from evaluation.scenario import load_pets_gt
from reid.aggregate import AggregationParams, aggregate
from service.assets import models_dir, pets_dir


@pytest.fixture(scope="module")
def person_vectors() -> dict[int, np.ndarray]:
    """OSNet vectors of 10 crops of PETS person 1 and 1 crop of person 17, from the real video."""
    from detector.config import OnnxEmbedderConfig, RuntimeConfig
    from detector.embedder import build_embedder

    gt = load_pets_gt(pets_dir() / "gt.txt")
    want = {pid: gt[gt[:, 1] == pid][:, 0].astype(int)[::10][:n] for pid, n in ((1, 10), (17, 1))}
    crops: dict[int, list[np.ndarray]] = {1: [], 17: []}
    cap = cv2.VideoCapture(str(pets_dir() / "vtest.avi"))
    idx = 0
    while any(len(crops[p]) < len(want[p]) for p in want):
        ok, frame = cap.read()
        assert ok
        idx += 1
        for pid, frames in want.items():
            if idx in frames:
                r = gt[(gt[:, 0] == idx) & (gt[:, 1] == pid)][0]
                x, y, w, h = (int(v) for v in r[2:6])
                crops[pid].append(frame[max(y, 0) : y + h, max(x, 0) : x + w].copy())
    cap.release()
    emb = build_embedder(OnnxEmbedderConfig(), RuntimeConfig(), models_dir())
    return {pid: emb.embed(cs) for pid, cs in crops.items()}


def test_planted_outlier_crop_is_dropped(person_vectors: dict[int, np.ndarray]) -> None:
    """A crop of another person (a box on the wrong person) is dropped from the mean."""
    own = person_vectors[1]
    vectors = np.vstack([own, person_vectors[17]])
    agg = aggregate(vectors, np.ones(len(vectors)))
    assert agg.kept[:-1].all()
    assert not agg.kept[-1]
    clean = own.mean(axis=0)
    clean /= np.linalg.norm(clean)
    assert float(agg.mean @ clean) > 0.999


def test_quality_weights_the_mean() -> None:
    a, b = np.eye(4, dtype=np.float32)[:2]
    agg = aggregate(
        np.stack([a, b]), np.array([3.0, 1.0]), AggregationParams(min_outlier_distance=2.0)
    )
    assert agg.mean @ a > agg.mean @ b
    assert np.isclose(np.linalg.norm(agg.mean), 1.0)


def test_shots_are_bounded_and_best_first() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=32)
    vectors = base + 0.05 * rng.normal(size=(40, 32))
    quality = np.arange(40, dtype=float)
    agg = aggregate(vectors, quality, AggregationParams(max_shots=5))
    assert agg.shots.shape == (5, 32)
    expected = vectors[39] / np.linalg.norm(vectors[39])
    assert np.allclose(agg.shots[0], expected, atol=1e-6)


def test_single_vector_is_its_own_mean() -> None:
    v = np.array([[3.0, 4.0]], np.float32)
    agg = aggregate(v, np.array([0.0]))
    assert np.allclose(agg.mean, [0.6, 0.8])
