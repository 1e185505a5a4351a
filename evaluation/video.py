"""Reading a recorded video's frames in order (OpenCV), for evaluations and benches."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np


def video_frames(path: Path, frames: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """(0-based decode index, (H, W, 3) uint8 BGR frame), at most ``frames`` of them.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: OpenCV cannot open it.
    """
    if not path.exists():
        raise FileNotFoundError(f"video not found: {path}")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ValueError(f"OpenCV cannot open video {path}")
    try:
        index = 0
        while frames is None or index < frames:
            ok, frame = cap.read()
            if not ok:
                break
            yield index, frame
            index += 1
    finally:
        cap.release()


def video_fps(path: Path) -> float:
    """Frame rate the container declares (0.0 when unknown)."""
    cap = cv2.VideoCapture(str(path))
    try:
        return float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    finally:
        cap.release()
