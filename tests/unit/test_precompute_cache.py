"""The whole-video detection cache keeps every per-box array, the carried flags included."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from evaluation.precompute import VideoDetections, _load, _save


def test_cache_round_trip_keeps_carried_flags(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    counts = [3, 0, 2]
    dim = 4
    vd = VideoDetections(
        video="v.avi",
        n_frames=len(counts),
        width=640,
        height=480,
        fps=7.0,
        embedding_dim=dim,
        boxes_xyxy=[rng.random((n, 4), dtype=np.float32) for n in counts],
        scores=[rng.random(n, dtype=np.float32) for n in counts],
        embeddings=[rng.random((n, dim), dtype=np.float32) for n in counts],
        sharpness=[rng.random(n, dtype=np.float32) for n in counts],
        carried=[np.array([False, True, True]), np.zeros(0, bool), np.array([True, False])],
    )
    path = tmp_path / "cache.npz"
    _save(path, vd)
    got = _load(path)
    assert got.from_cache and got.n_frames == 3 and got.embedding_dim == dim
    for name in ("boxes_xyxy", "scores", "embeddings", "sharpness", "carried"):
        for a, b in zip(getattr(vd, name), getattr(got, name), strict=True):
            np.testing.assert_array_equal(a, b)
    assert got.carried[0].dtype == bool
