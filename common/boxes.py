"""Boxes as (N, 4) arrays of ``x1, y1, x2, y2`` pixels."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

_UNION_EPS = 1e-12


def box_iou(a_xyxy: ArrayLike, b_xyxy: ArrayLike, dtype: DTypeLike = np.float32) -> np.ndarray:
    """Pairwise IoU of (N, 4) and (M, 4) boxes -> (N, M) of ``dtype``.

    Computed in ``dtype`` (float32 by default, the detector's precision; the
    tracker and the scorers ask for float64). Empty inputs of any shape give an
    (N, M) array of zeros; pairs whose union is empty have IoU 0.
    """
    a = np.asarray(a_xyxy, dtype=dtype).reshape(-1, 4)[:, None, :]
    b = np.asarray(b_xyxy, dtype=dtype).reshape(-1, 4)[None, :, :]
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    iou = np.where(union > 0, inter / np.maximum(union, _UNION_EPS), 0.0)
    return iou.astype(dtype, copy=False)
