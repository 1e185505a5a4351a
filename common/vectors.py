"""Appearance vectors as (N, D) float32 rows."""

from __future__ import annotations

import numpy as np

_NORM_EPS = 1e-12


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows of (N, D) (or one (D,) vector) divided by their L2 norm, as float32.

    Zero rows stay zero. The division happens in float32, the precision every
    stored and published appearance vector has.
    """
    v = np.asarray(vectors, dtype=np.float32)
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), _NORM_EPS)
