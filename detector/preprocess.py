"""Image pre-processing shared by every ONNX backend: letterbox, normalise, crop.

Everything here is numpy/OpenCV only and cheap: one resize per frame, one
channel-order/normalisation pass written straight into the batch tensor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np


@dataclass(frozen=True)
class Letterbox:
    """How a frame was placed in the network input: ``input = frame * ratio + (pad_x, pad_y)``."""

    ratio: float
    pad_x: float
    pad_y: float

    def to_frame(self, boxes_xyxy: np.ndarray, frame_hw: tuple[int, int]) -> np.ndarray:
        """Map (N, 4) input-pixel boxes back to frame pixels, clipped to the frame."""
        out = boxes_xyxy.astype(np.float32, copy=True)
        out[:, [0, 2]] = (out[:, [0, 2]] - self.pad_x) / self.ratio
        out[:, [1, 3]] = (out[:, [1, 3]] - self.pad_y) / self.ratio
        h, w = frame_hw
        np.clip(out[:, 0::2], 0.0, float(w), out=out[:, 0::2])
        np.clip(out[:, 1::2], 0.0, float(h), out=out[:, 1::2])
        return out


def letterbox(
    frame_bgr: np.ndarray,
    input_hw: tuple[int, int],
    *,
    placement: Literal["top_left", "center"],
    pad_value: int,
) -> tuple[np.ndarray, Letterbox]:
    """Resize ``frame_bgr`` (H, W, 3) uint8 keeping its aspect ratio into an (h, w, 3) canvas.

    Returns the canvas (uint8, BGR) and the placement needed to map boxes back.
    YOLOX pads at the bottom/right (``top_left``); Ultralytics exports centre it.
    """
    in_h, in_w = input_hw
    h, w = frame_bgr.shape[:2]
    ratio = min(in_h / h, in_w / w)
    new_w, new_h = max(1, round(w * ratio)), max(1, round(h * ratio))
    resized = frame_bgr
    if (new_w, new_h) != (w, h):
        # Bilinear: area averaging anti-aliases better but costs ~9x more (5.6 vs 0.6 ms
        # for 768x576 -> 416x312) and gained nothing over the whole PETS09 video
        # (precision 0.775 / recall 0.909 either way).
        resized = cv2.resize(frame_bgr, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    canvas = np.full((in_h, in_w, 3), pad_value, dtype=np.uint8)
    if placement == "center":
        pad_x, pad_y = (in_w - new_w) // 2, (in_h - new_h) // 2
    else:
        pad_x, pad_y = 0, 0
    canvas[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = resized
    return canvas, Letterbox(ratio=ratio, pad_x=float(pad_x), pad_y=float(pad_y))


def write_chw(
    image_bgr: np.ndarray,
    out_chw: np.ndarray,
    *,
    channel_order: Literal["bgr", "rgb"],
    pixel_scale: float,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
) -> None:
    """Write ``image_bgr`` (h, w, 3) uint8 into ``out_chw`` (3, h, w) float32, normalised.

    ``out = (pixel * pixel_scale - mean) / std`` per channel, channels in
    ``channel_order``. Identity normalisation (scale 1, mean 0, std 1) is a cast.
    """
    src = image_bgr[:, :, ::-1] if channel_order == "rgb" else image_bgr
    np.copyto(out_chw, src.transpose(2, 0, 1), casting="unsafe")
    if pixel_scale == 1.0 and mean == (0.0, 0.0, 0.0) and std == (1.0, 1.0, 1.0):
        return
    scale = np.asarray([pixel_scale / s for s in std], dtype=np.float32)[:, None, None]
    offset = np.asarray([m / s for m, s in zip(mean, std, strict=True)], dtype=np.float32)[
        :, None, None
    ]
    out_chw *= scale
    out_chw -= offset


def write_batch_chw(
    images_bgr: np.ndarray,
    out_nchw: np.ndarray,
    *,
    channel_order: Literal["bgr", "rgb"],
    pixel_scale: float,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
) -> None:
    """Like :func:`write_chw` for a batch: (N, h, w, 3) uint8 BGR -> (N, 3, h, w) float32.

    One vectorised pass per channel over the whole batch (cheaper than N
    per-image passes for the small crops of the embedder).
    """
    for c in range(3):
        src = 2 - c if channel_order == "rgb" else c
        scale = np.float32(pixel_scale / std[c])
        offset = np.float32(mean[c] / std[c])
        np.multiply(images_bgr[..., src], scale, out=out_nchw[:, c], casting="unsafe")
        out_nchw[:, c] -= offset


def clip_boxes_int(boxes_xyxy: np.ndarray, frame_hw: tuple[int, int]) -> np.ndarray:
    """(N, 4) float boxes -> (N, 4) int32 pixel bounds inside the frame, each at least 1 px."""
    h, w = frame_hw
    b = np.empty((len(boxes_xyxy), 4), dtype=np.int32)
    if len(boxes_xyxy) == 0:
        return b
    b[:, 0] = np.clip(np.floor(boxes_xyxy[:, 0]), 0, w - 1)
    b[:, 1] = np.clip(np.floor(boxes_xyxy[:, 1]), 0, h - 1)
    b[:, 2] = np.clip(np.ceil(boxes_xyxy[:, 2]), b[:, 0] + 1, w)
    b[:, 3] = np.clip(np.ceil(boxes_xyxy[:, 3]), b[:, 1] + 1, h)
    return b


def crop_views(frame_bgr: np.ndarray, boxes_xyxy: np.ndarray) -> list[np.ndarray]:
    """Views (no copy) of ``frame_bgr`` (H, W, 3) inside each of the (N, 4) boxes."""
    b = clip_boxes_int(boxes_xyxy, frame_bgr.shape[:2])
    return [frame_bgr[y1:y2, x1:x2] for x1, y1, x2, y2 in b]


def sharpness(crop_bgr: np.ndarray) -> float:
    """Variance of the Laplacian of the grey crop: higher = sharper (and more texture)."""
    grey = cv2.cvtColor(crop_bgr, cv2.COLOR_BGR2GRAY) if crop_bgr.ndim == 3 else crop_bgr
    return float(cv2.Laplacian(grey, cv2.CV_32F).var())


def image_like_noise(
    n: int, hw: tuple[int, int], seed: int = 0, cells: int = 8
) -> list[np.ndarray]:
    """``n`` (H, W, 3) uint8 BGR images of smooth random colour (``cells`` across, cubic).

    A stand-in for real frames or crops where a model's numbers matter but no
    image is at hand (the runtime's start-up agreement check): smooth like
    photographs, unlike white noise, which is far harsher on reduced precision.
    """
    rng = np.random.default_rng(seed)
    h, w = hw
    rows = max(1, round(cells * h / max(w, 1)))
    return [
        cv2.resize(
            rng.integers(0, 256, (rows, cells, 3), dtype=np.uint8),
            (w, h),
            interpolation=cv2.INTER_CUBIC,
        )
        for _ in range(n)
    ]
