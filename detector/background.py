"""Per-camera background subtraction that greys out a crop's background before embedding.

Each camera gets its own OpenCV MOG2 (or KNN) subtractor fed with every frame
of that camera in order (the model needs the history). The foreground mask is
computed on a downscaled frame (cheap) and sampled back at crop resolution.
"""

from __future__ import annotations

from collections import OrderedDict

import cv2
import numpy as np

from detector.config import BackgroundConfig
from detector.preprocess import clip_boxes_int

# Foreground masks are dilated by this many (downscaled) pixels so that a
# person's thin edges (arms, feet) survive the subtractor's noise filtering.
_DILATE_PX = 2
# MOG2/KNN mark shadows with 127 and foreground with 255; shadows count as background.
_FOREGROUND_LEVEL = 200


class BackgroundMasker:
    """One subtractor per camera, least-recently-used cameras dropped beyond ``max_cameras``.

    ``fill_bgr`` is what background pixels become: the embedder's mean colour,
    so they normalise to ~0 input.
    """

    def __init__(self, config: BackgroundConfig, fill_bgr: tuple[int, int, int]) -> None:
        self.config = config
        self.fill_bgr = np.asarray(fill_bgr, dtype=np.uint8)
        self._subtractors: OrderedDict[str, cv2.BackgroundSubtractor] = OrderedDict()
        self._kernel = cv2.getStructuringElement(
            cv2.MORPH_ELLIPSE, (2 * _DILATE_PX + 1, 2 * _DILATE_PX + 1)
        )

    def __len__(self) -> int:
        return len(self._subtractors)

    def _subtractor(self, camera_id: str) -> cv2.BackgroundSubtractor:
        sub = self._subtractors.get(camera_id)
        if sub is None:
            cfg = self.config
            if cfg.method == "mog2":
                sub = cv2.createBackgroundSubtractorMOG2(
                    history=cfg.history, varThreshold=cfg.var_threshold, detectShadows=True
                )
            else:
                sub = cv2.createBackgroundSubtractorKNN(history=cfg.history, detectShadows=True)
            self._subtractors[camera_id] = sub
            while len(self._subtractors) > cfg.max_cameras:
                self._subtractors.popitem(last=False)
        else:
            self._subtractors.move_to_end(camera_id)
        return sub

    def reset(self, camera_id: str) -> None:
        """Forget a camera's background model (a new stream)."""
        self._subtractors.pop(camera_id, None)

    def foreground(self, camera_id: str, frame_bgr: np.ndarray) -> np.ndarray:
        """Update the camera's model with ``frame_bgr`` (H, W, 3); return its (h, w) bool mask.

        The mask is at the downscaled resolution (``config.downscale``).
        """
        small = frame_bgr
        if self.config.downscale != 1.0:
            small = cv2.resize(
                frame_bgr,
                None,
                fx=self.config.downscale,
                fy=self.config.downscale,
                interpolation=cv2.INTER_AREA,
            )
        raw = self._subtractor(camera_id).apply(small)
        fg = (raw >= _FOREGROUND_LEVEL).astype(np.uint8)
        return np.asarray(cv2.dilate(fg, self._kernel), dtype=bool)

    def mask_crops(
        self,
        foreground: np.ndarray,
        frame_hw: tuple[int, int],
        boxes_xyxy: np.ndarray,
        crops: list[np.ndarray],
    ) -> list[np.ndarray]:
        """Copies of ``crops`` with background pixels set to ``fill_bgr``.

        Args:
            foreground: (h, w) bool mask from :meth:`foreground` for this frame.
            frame_hw: the full frame's (H, W).
            boxes_xyxy: (N, 4) boxes the crops were cut from.
            crops: N (hc, wc, 3) uint8 crops.

        A crop with less than ``min_foreground_fraction`` foreground (a person
        standing still fades into the background) is returned unmasked.
        """
        out = []
        boxes = clip_boxes_int(boxes_xyxy, frame_hw)
        mh, mw = foreground.shape
        sy, sx = mh / frame_hw[0], mw / frame_hw[1]
        for (x1, y1, _x2, _y2), crop in zip(boxes, crops, strict=True):
            ch, cw = crop.shape[:2]
            ys = np.clip(((np.arange(ch) + y1 + 0.5) * sy).astype(np.int32), 0, mh - 1)
            xs = np.clip(((np.arange(cw) + x1 + 0.5) * sx).astype(np.int32), 0, mw - 1)
            fg = foreground[ys[:, None], xs[None, :]]
            if fg.mean() < self.config.min_foreground_fraction:
                out.append(crop)
                continue
            masked = crop.copy()
            masked[~fg] = self.fill_bgr
            out.append(masked)
        return out
