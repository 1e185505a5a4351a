"""A tracklet's appearance vector from its crops' vectors.

Drop the outliers (crops far from the tracklet's medoid: occlusions, a box on
the wrong person, a half-visible person at the view edge), weight the rest by
crop quality, average, normalise. Keep a few of the best per-crop vectors
("shots") for multi-shot matching.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from common.vectors import l2_normalise
from schemas.messages import Tracklet, unpack_f32

_EPS = 1e-12


class AggregationParams(BaseModel):
    """How a tracklet's crop vectors become one vector: the one definition of each
    setting's default, bounds and description (the attribute docstring);
    ``crosscam reid``'s settings inherit these fields."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    outlier_mad_factor: float = Field(3.0, gt=0.0)
    """A crop is an outlier when its distance to the medoid exceeds the median
    distance plus this many median absolute deviations. Raising it keeps more
    crops (fewer false drops, more contamination from occluded or wrong crops)."""

    min_outlier_distance: float = Field(0.2, ge=0.0, le=2.0)
    """A crop closer to the medoid than this cosine distance is never an outlier,
    however tight the rest are (OSNet vectors of one person on one camera lie
    within about 0.1-0.2 of each other). Raising it drops fewer crops."""

    max_shots: int = Field(8, ge=0, le=1000)
    """Per-crop vectors kept for multi-shot matching (highest quality first);
    raising it costs memory and payload size per tracklet."""

    frame_vector_quality: float = Field(0.5, ge=0.0, le=1.0)
    """Quality given to per-frame vectors (the tracklet's ``embeddings``), which
    carry no quality of their own, relative to the ``crops``' quality values
    scaled to [0, 1]."""


@dataclass(frozen=True)
class TrackletVector:
    """The aggregate: ``mean`` (D,) unit vector, ``shots`` (K, D) unit vectors, ``kept`` (N,) mask."""

    mean: np.ndarray
    shots: np.ndarray
    kept: np.ndarray


def aggregate(
    vectors: np.ndarray, quality: np.ndarray, params: AggregationParams | None = None
) -> TrackletVector:
    """Robust quality-weighted mean of a tracklet's crop vectors.

    Args:
        vectors: (N, D) appearance vectors, N ≥ 1 (any norm; normalised here).
        quality: (N,) non-negative crop quality (higher = better; all equal is fine).
        params: outlier and shot settings.
    """
    p = params or AggregationParams()
    v = l2_normalise(vectors)
    if v.ndim != 2 or v.shape[0] == 0:
        raise ValueError("aggregate needs at least one vector")
    q = np.clip(np.asarray(quality, dtype=np.float64).reshape(-1), 0.0, None)
    if q.shape[0] != v.shape[0]:
        raise ValueError(f"{v.shape[0]} vectors but {q.shape[0]} quality values")
    dist = 1.0 - v @ v.T
    medoid = int(np.argmin(dist.sum(axis=1)))
    d = dist[medoid]
    med = float(np.median(d))
    mad = float(np.median(np.abs(d - med)))
    cutoff = max(med + p.outlier_mad_factor * mad, p.min_outlier_distance)
    kept = d <= cutoff
    w = q[kept] + _EPS if q[kept].sum() > 0 else np.ones(int(kept.sum()))
    mean = (v[kept] * w[:, None]).sum(axis=0)
    idx = np.flatnonzero(kept)
    order = idx[np.argsort(-q[kept], kind="stable")][: p.max_shots]
    return TrackletVector(mean=l2_normalise(mean), shots=v[order], kept=kept)


def tracklet_vectors(
    tracklet: Tracklet, params: AggregationParams | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) vectors and (N,) quality of a tracklet: its crops', then its per-frame vectors.

    Crop quality values are scaled to [0, 1] by the largest one; per-frame
    vectors get ``params.frame_vector_quality``. Empty (0, 0) when it has none.
    """
    p = params or AggregationParams()
    vecs: list[np.ndarray] = []
    qual: list[float] = []
    crops = [c for c in tracklet.crops if c.embedding]
    top = max((c.quality for c in crops), default=0.0)
    for c in crops:
        vecs.append(np.frombuffer(c.embedding, dtype="<f4"))
        qual.append(c.quality / top if top > 0 else 1.0)
    if tracklet.embedding_dim and tracklet.embeddings:
        frame_vecs = unpack_f32(tracklet.embeddings, tracklet.embedding_dim)
        vecs.extend(frame_vecs)
        qual.extend([p.frame_vector_quality] * len(frame_vecs))
    if not vecs:
        return np.zeros((0, 0), np.float32), np.zeros(0)
    dims = {len(x) for x in vecs}
    if len(dims) != 1:
        raise ValueError(f"tracklet {tracklet.tracklet_id} mixes vector sizes {sorted(dims)}")
    return np.stack(vecs).astype(np.float32), np.asarray(qual)


def grey_vectors(tracklet: Tracklet) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) vectors of the tracklet's crops made grey and (N,) quality; empty (0, 0) when none.

    Only crops carry greyscale vectors (the detector computes them on colour
    frames so greyscale cameras compare like with like).
    """
    crops = [c for c in tracklet.crops if c.embedding_grey]
    if not crops:
        return np.zeros((0, 0), np.float32), np.zeros(0)
    top = max(c.quality for c in crops)
    vecs = [np.frombuffer(c.embedding_grey, dtype="<f4") for c in crops]
    if len({len(v) for v in vecs}) != 1:
        raise ValueError(f"tracklet {tracklet.tracklet_id} mixes greyscale vector sizes")
    qual = [c.quality / top if top > 0 else 1.0 for c in crops]
    return np.stack(vecs).astype(np.float32), np.asarray(qual)
