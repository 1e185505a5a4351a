"""Appearance vectors as (N, D) float32 rows."""

from __future__ import annotations

import numpy as np

_NORM_EPS = 1e-12


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows of (N, D) divided by their L2 norm (zero rows stay zero)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, _NORM_EPS)).astype(np.float32, copy=False)
