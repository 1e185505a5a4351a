"""Which cameras see no colour (IR, night mode), from their frames, and greyscale crops.

A greyscale camera cannot be compared with a colour one on colour: its
people's vectors all sit far from everyone's on the colour cameras. The
detector detects such a camera from its pixels and, on colour frames, also
embeds the crops made grey, so the ReID stage can compare like with like.

Detection: the mean absolute difference between the three channels over a
subsampled frame. A greyscale source decoded to BGR has equal channels up to
codec rounding (measured: 2.0 levels on H.264 and JPEG greyscale video, 24-46
on the colour PETS cuts, whatever their white balance); a camera is greyscale
while the median over its recent frames is under :data:`GREY_LEVELS`.
"""

from __future__ import annotations

from collections import deque

import cv2
import numpy as np

GREY_LEVELS = 6.0
"""Mean channel difference (8-bit levels) under which a frame carries no colour:
three times what codec rounding leaves on a grey source, a quarter of the least
colourful colour camera measured."""

SUBSAMPLE = 8
"""Every this-many-th pixel in each direction is looked at (cheap; colour is global)."""

RECENT_FRAMES = 15
"""Frames a camera's decision is the median over (one odd frame changes nothing)."""


def channel_difference(frame_bgr: np.ndarray) -> float:
    """Mean absolute difference between the channels of a (H, W, 3) uint8 frame, in levels."""
    if frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3:
        return 0.0
    f = frame_bgr[::SUBSAMPLE, ::SUBSAMPLE].astype(np.int16)
    b, g, r = f[..., 0], f[..., 1], f[..., 2]
    return float((np.abs(b - g) + np.abs(g - r) + np.abs(b - r)).mean() / 3.0)


class GreyscaleCameras:
    """Per camera, whether its recent frames carry colour."""

    def __init__(self, recent: int = RECENT_FRAMES, levels: float = GREY_LEVELS) -> None:
        self.levels = levels
        self._recent: dict[str, deque[float]] = {}
        self._grey: dict[str, bool] = {}

    def observe(self, camera_id: str, frame_bgr: np.ndarray) -> bool:
        """Count one frame; True when the camera is (now) greyscale."""
        q = self._recent.setdefault(camera_id, deque(maxlen=RECENT_FRAMES))
        q.append(channel_difference(frame_bgr))
        self._grey[camera_id] = float(np.median(np.fromiter(q, float, len(q)))) < self.levels
        return self._grey[camera_id]

    def is_greyscale(self, camera_id: str) -> bool:
        return self._grey.get(camera_id, False)

    def any_greyscale(self) -> bool:
        """Whether any camera seen is greyscale (then colour crops are embedded grey too)."""
        return any(self._grey.values())

    def reset(self, camera_id: str) -> None:
        self._recent.pop(camera_id, None)
        self._grey.pop(camera_id, None)


def grey_crops(crops: list[np.ndarray]) -> list[np.ndarray]:
    """The crops as a greyscale camera would see them (3-channel BGR, equal channels)."""
    return [
        cv2.cvtColor(cv2.cvtColor(c, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR) if c.size else c
        for c in crops
    ]
