"""``crosscam eval mtmc --perturb``: the thinned copies it links are what it says."""

from __future__ import annotations

import numpy as np

from evaluation.mtmc import PERTURB_KEEP, thinned
from evaluation.mtmc_scoring import Sample
from schemas.messages import Crop, Tracklet, pack_f32, unpack_f32

DIM = 8


def _sample(tid: str, n: int, crops: int = 4) -> Sample:
    rng = np.random.default_rng(sum(tid.encode()))
    vectors = rng.normal(size=(n + crops, DIM)).astype(np.float32)
    cs = [Crop(seq=k, ts_capture_ns=0, box_xyxy=[0, 0, 1, 2], score=0.9, quality=1.0,
               jpeg=b"img", embedding=pack_f32(vectors[n + k])) for k in range(crops)]  # fmt: skip
    t = Tracklet(camera_id="a", tracklet_id=tid, track_id=1, ts_start_ns=0, ts_end_ns=1,
                 embeddings=pack_f32(vectors[:n]) if n else b"", embedding_dim=DIM if n else 0,
                 crops=cs)  # fmt: skip
    return Sample(t, "p1", {0: np.zeros(4)})


def _vectors(s: Sample) -> np.ndarray:
    t = s.tracklet
    frames = unpack_f32(t.embeddings, t.embedding_dim) if t.embedding_dim else np.zeros((0, DIM))
    crops = [np.frombuffer(c.embedding, "<f4") for c in t.crops if c.embedding]
    return np.concatenate([frames.reshape(-1, DIM), np.reshape(crops, (-1, DIM))])


def test_thinning_keeps_about_the_share_repeatably_and_never_empties() -> None:
    samples = [_sample(f"a:{k}:0", 36) for k in range(50)]
    samples += [_sample("a:single:0", 1, crops=0), _sample("a:crops-only:0", 0, crops=1)]
    first, again, other = thinned(samples, 0), thinned(samples, 0), thinned(samples, 1)
    kept = sum(len(_vectors(s)) for s in first[:50]) / (50 * 40)
    assert abs(kept - PERTURB_KEEP) < 0.03
    assert all(len(_vectors(s)) >= 1 for s in first)
    assert all(np.array_equal(_vectors(a), _vectors(b)) for a, b in zip(first, again, strict=True))
    assert any(
        not np.array_equal(_vectors(a), _vectors(b)) for a, b in zip(first, other, strict=True)
    )
    for orig, thin in zip(samples, first, strict=True):
        assert [c.jpeg for c in thin.tracklet.crops] == [c.jpeg for c in orig.tracklet.crops]
        assert thin.gt_identity == orig.gt_identity and thin.boxes is orig.boxes
        rows = {v.tobytes() for v in _vectors(orig)}
        assert {v.tobytes() for v in _vectors(thin)} <= rows  # a subset, nothing new
    assert len(_vectors(samples[0])) == 40  # the originals are not changed
    assert any(  # crops' vectors are thinned too (a crop keeps its image)
        sum(1 for c in s.tracklet.crops if c.embedding) < 4 for s in first[:50]
    )
