"""MOTChallenge ground truth (``gt.txt``) for detector and appearance evaluations."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class GroundTruth:
    """Boxes per 0-based video frame (MOT frame N = video frame N-1).

    ``boxes_xyxy[i]`` (M_i, 4) float32, ``ids[i]`` (M_i,) int64 and
    ``ignore[i]`` (M_i,) bool — rows whose conf column is 0, which evaluation
    treats as neither to be found nor a false positive when found.
    """

    boxes_xyxy: dict[int, np.ndarray]
    ids: dict[int, np.ndarray]
    ignore: dict[int, np.ndarray]

    def frame(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(boxes (M, 4), ids (M,), ignore (M,)) of 0-based video frame ``index``."""
        if index not in self.boxes_xyxy:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros(0, bool)
        return self.boxes_xyxy[index], self.ids[index], self.ignore[index]


def load_mot_gt(path: Path) -> GroundTruth:
    """Parse ``frame, id, x, y, w, h, conf, ...`` rows (1-based frames, top-left + size)."""
    rows = np.loadtxt(path, delimiter=",", ndmin=2)
    if rows.shape[1] < 7:
        raise ValueError(
            f"{path}: expected at least 7 columns (frame,id,x,y,w,h,conf), got {rows.shape[1]}"
        )
    boxes, ids, ignore = {}, {}, {}
    frames = rows[:, 0].astype(np.int64) - 1
    for f in np.unique(frames):
        r = rows[frames == f]
        xyxy = np.stack((r[:, 2], r[:, 3], r[:, 2] + r[:, 4], r[:, 3] + r[:, 5]), axis=1)
        boxes[int(f)] = xyxy.astype(np.float32)
        ids[int(f)] = r[:, 1].astype(np.int64)
        ignore[int(f)] = r[:, 6] == 0
    return GroundTruth(boxes, ids, ignore)
