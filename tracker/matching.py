"""Cost matrices and assignment, vectorised: no per-pair Python loops.

Every cost here is a distance in [0, ∞) where lower is better; an entry above
the stage's limit means "may not match". Rows are tracks, columns detections.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

# Cost given to forbidden pairs before the assignment; anything above every
# stage's limit works, and a finite value keeps linear_sum_assignment feasible.
INFEASIBLE = 1e5

EMPTY_PAIRS = np.zeros((0, 2), dtype=np.intp)


def covered_fraction(boxes_xyxy: np.ndarray) -> np.ndarray:
    """(N,) fraction of each box's area covered by a box in front of it.

    "In front" means its bottom edge is lower in the image (the person stands
    closer to a camera looking down at the ground), the usual ground-plane
    occlusion cue. The largest single overlap counts, which is exact for one
    occluder and a lower bound for several.
    """
    b = np.asarray(boxes_xyxy, dtype=np.float64)
    n = len(b)
    if n < 2:
        return np.zeros(n)
    iw = np.minimum(b[:, None, 2], b[None, :, 2]) - np.maximum(b[:, None, 0], b[None, :, 0])
    ih = np.minimum(b[:, None, 3], b[None, :, 3]) - np.maximum(b[:, None, 1], b[None, :, 1])
    inter = np.clip(iw, 0.0, None) * np.clip(ih, 0.0, None)
    in_front = b[None, :, 3] > b[:, None, 3]  # [i, j]: j is in front of i
    inter = np.where(in_front, inter, 0.0)
    area = np.maximum((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), 1e-9)
    return np.clip(inter.max(axis=1) / area, 0.0, 1.0)


def cosine_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(A, B) cosine distance 1 - a·b of L2-normalised rows of (A, D) and (B, D)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    return 1.0 - np.asarray(a, dtype=np.float32) @ np.asarray(b, dtype=np.float32).T


def assign(cost: np.ndarray, max_cost: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minimum-cost one-to-one assignment, keeping only pairs with cost <= ``max_cost``.

    Args:
        cost: (R, C) costs; entries above ``max_cost`` are forbidden.
        max_cost: the largest cost a kept pair may have.

    Returns:
        ``(pairs (K, 2) row/col indices, unmatched rows, unmatched cols)``,
        pairs sorted by row.
    """
    n_rows, n_cols = cost.shape
    if n_rows == 0 or n_cols == 0:
        return EMPTY_PAIRS, np.arange(n_rows), np.arange(n_cols)
    c = np.where(cost > max_cost, INFEASIBLE, cost)
    rows, cols = linear_sum_assignment(c)
    keep = c[rows, cols] <= max_cost
    rows, cols = rows[keep], cols[keep]
    pairs = np.stack([rows, cols], axis=1) if len(rows) else EMPTY_PAIRS
    row_free = np.ones(n_rows, dtype=bool)
    row_free[rows] = False
    col_free = np.ones(n_cols, dtype=bool)
    col_free[cols] = False
    return pairs, np.flatnonzero(row_free), np.flatnonzero(col_free)


def cascade_assign(
    cost: np.ndarray, max_cost: float, track_levels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Deep SORT's matching cascade: tracks seen more recently choose first.

    Tracks are grouped by ``track_levels`` (R,) — frames since last matched —
    and each group, most recent first, is assigned among the detections the
    groups before it left, so a long-lost track (whose predicted position is
    vague) cannot take a detection from one that was just there.

    Returns the same as :func:`assign`.
    """
    n_rows, n_cols = cost.shape
    if n_rows == 0 or n_cols == 0:
        return EMPTY_PAIRS, np.arange(n_rows), np.arange(n_cols)
    if track_levels.min() == track_levels.max():  # one level: a plain assignment
        return assign(cost, max_cost)
    free_cols = np.arange(n_cols)
    found: list[np.ndarray] = []
    for level in np.unique(track_levels):
        if len(free_cols) == 0:
            break
        rows = np.flatnonzero(track_levels == level)
        pairs, _, unmatched_cols = assign(cost[np.ix_(rows, free_cols)], max_cost)
        if len(pairs):
            found.append(np.stack([rows[pairs[:, 0]], free_cols[pairs[:, 1]]], axis=1))
        free_cols = free_cols[unmatched_cols]
    pairs = np.concatenate(found) if found else EMPTY_PAIRS
    if len(pairs):
        pairs = pairs[np.argsort(pairs[:, 0], kind="stable")]
    row_free = np.ones(n_rows, dtype=bool)
    row_free[pairs[:, 0]] = False
    return pairs, np.flatnonzero(row_free), free_cols
