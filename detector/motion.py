"""Motion gating: a frame in which nothing moved since the camera's last analysed frame is
not analysed again (as NVRs do); its detections repeat that frame's.

Per camera, each frame's JPEG is decoded at a quarter of its size, in grey
(``IMREAD_REDUCED_GRAYSCALE_4``: the JPEG's DCT scaling, a fraction of a full
decode), blurred, and compared with the **last analysed** frame, not the
previous one, so slow movement adds up until it counts. A pixel has changed
when it differs by more than ``noise_sigmas`` times the camera's own noise
level, learnt online (a running mean of the robust spread, 1.4826 x median
absolute difference, of consecutive frames: people cover a small share of a
frame, so the median sees the sensor and compression noise) and never less
than ``min_level`` grey levels. Isolated changed pixels are noise: the mask is
opened with a 2x2 square, and the frame has moved when at least
``min_changed_px`` pixels (at quarter size, about a tenth of a small person)
remain. Nothing here is tuned to one scene: the threshold follows each
camera's noise.

A frame is always analysed when the camera has no analysed frame yet, when
its size changed, and when ``max_still_s`` has passed since its last analysed
frame (standing people are looked at again, the tracker's clocks see fresh
boxes). The tracker needs no change: a still frame's message carries the same
boxes, with every vector flagged ``carried`` (matched with, never kept in a
gallery) and no crop images, and ``still`` set.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import cv2
import numpy as np

from detector.config import MotionGateConfig

# Robust standard deviation of Gaussian noise from the median absolute deviation.
_MAD_TO_SIGMA = 1.4826
_KERNEL = np.ones((2, 2), np.uint8)


@dataclass
class _Camera:
    reference: np.ndarray  # blurred quarter-size grey of the last analysed frame
    previous: np.ndarray  # same, of the last frame seen (for the noise level)
    analysed_ns: int
    sigma: float | None = None


@dataclass(frozen=True)
class GateDecision:
    """Whether to analyse a frame, and why (``reason`` is a bounded metric label)."""

    analyse: bool
    reason: str  # first | resized | moved | refresh | still | undecodable
    changed_px: int = 0


def small_grey(jpeg: bytes) -> np.ndarray | None:
    """The JPEG decoded at a quarter of its size in grey and blurred (3x3), or None."""
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_4)
    if img is None or img.size == 0:
        return None
    return cv2.GaussianBlur(img, (3, 3), 0)


class MotionGate:
    """Per camera: did anything move since the last analysed frame? Frames in order."""

    def __init__(self, config: MotionGateConfig | None = None) -> None:
        self.config = config or MotionGateConfig()
        self._cameras: OrderedDict[str, _Camera] = OrderedDict()

    def reset(self, camera_id: str) -> None:
        """Forget the camera (its stream ended): its next frame is analysed."""
        self._cameras.pop(camera_id, None)

    def noise_sigma(self, camera_id: str) -> float | None:
        """The camera's learnt noise level (grey levels), None before two frames."""
        cam = self._cameras.get(camera_id)
        return None if cam is None else cam.sigma

    def decide(self, camera_id: str, jpeg: bytes, ts_ns: int) -> GateDecision:
        """Whether the frame must be analysed. The caller then analyses it, or repeats the
        camera's last analysed frame's detections."""
        small = small_grey(jpeg)
        if small is None:  # the full decode will say what is wrong with it
            return GateDecision(True, "undecodable")
        cfg = self.config
        cam = self._cameras.get(camera_id)
        if cam is None or cam.reference.shape != small.shape:
            self._cameras[camera_id] = _Camera(small, small, ts_ns)
            self._cameras.move_to_end(camera_id)
            while len(self._cameras) > cfg.max_cameras:
                self._cameras.popitem(last=False)
            return GateDecision(True, "first" if cam is None else "resized")
        self._cameras.move_to_end(camera_id)
        step = cv2.absdiff(small, cam.previous)
        frame_sigma = _MAD_TO_SIGMA * float(np.median(step))
        if cam.sigma is None:
            cam.sigma = frame_sigma
        else:
            cam.sigma = cfg.noise_momentum * cam.sigma + (1 - cfg.noise_momentum) * frame_sigma
        cam.previous = small
        threshold = max(cfg.min_level, cfg.noise_sigmas * cam.sigma)
        changed = (cv2.absdiff(small, cam.reference) > threshold).astype(np.uint8)
        changed_px = int(cv2.morphologyEx(changed, cv2.MORPH_OPEN, _KERNEL).sum())
        elapsed_ns = ts_ns - cam.analysed_ns
        if changed_px >= cfg.min_changed_px:
            reason = "moved"
        elif elapsed_ns < 0 or elapsed_ns >= cfg.max_still_s * 1e9:
            reason = "refresh"
        else:
            return GateDecision(False, "still", changed_px)
        cam.reference = small
        cam.analysed_ns = ts_ns
        return GateDecision(True, reason, changed_px)
