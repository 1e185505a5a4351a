"""Person detectors behind one protocol: ONNX models (YOLOX / YOLOv8 layouts) and OpenCV HOG.

Build one with :func:`build_detector`; it checks the model file's SHA-256,
opens the model with the fastest runtime here (:func:`detector.runtime.open_fastest`:
ONNX Runtime or OpenVINO, timed at start), checks the input size against the
spec and runs a warm-up inference, so a wrong or missing model fails at start,
never at the first frame. Pre- and post-processing are the same whatever runtime
runs the graph.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from detector.checksum import resolve_model_path, verify_model_file
from detector.config import (
    DetectorBackendConfig,
    HogDetectorConfig,
    OnnxDetectorConfig,
    RuntimeConfig,
)
from detector.decode import decode, nms
from detector.preprocess import image_like_noise, letterbox, write_chw
from detector.runtime import Runner, open_fastest, static_batch_size, with_dynamic_batch
from detector.zoo import DetectorModelSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FrameBoxes:
    """One frame's people: boxes_xyxy (N, 4) float32 in frame pixels, scores (N,) float32."""

    boxes_xyxy: np.ndarray
    scores: np.ndarray


class Detector(Protocol):
    """A person detector. ``detect_batch`` keeps the order of its input."""

    name: str
    provider: str
    last_inference_seconds: float

    def detect_batch(self, frames_bgr: Sequence[np.ndarray]) -> list[FrameBoxes]:
        """Boxes for each (H, W, 3) uint8 BGR frame."""
        ...

    def warmup(self) -> None:
        """One inference on a blank frame (allocations, lazy kernels, shape checks)."""
        ...


def _empty() -> FrameBoxes:
    return FrameBoxes(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32))


class OnnxDetector:
    """YOLOX- or YOLOv8-layout detector run by ONNX Runtime or OpenVINO.

    A model with a fixed batch dimension of 1 (the YOLOX-nano export) is run
    once per frame; a dynamic one gets the whole batch in one call.
    """

    def __init__(self, path: Path, spec: DetectorModelSpec, runtime: RuntimeConfig) -> None:
        self.spec = spec
        self.runner, self.choice = open_fastest(
            path,
            runtime,
            what=spec.filename,
            make_input=self._timing_input,
            precision=runtime.detector_precision,
        )
        self.info = self.runner.info
        self.name = f"onnx:{spec.filename}"
        self.provider = self.info.provider
        self.fixed_batch = static_batch_size(self.info)
        if self.fixed_batch not in (None, 1):
            raise ValueError(
                f"{path}: fixed batch size {self.fixed_batch} not supported (1 or dynamic)"
            )
        shape = self.info.input_shape
        if len(shape) != 4:
            raise ValueError(f"{path}: input shape {shape}, expected N x 3 x H x W")
        model_hw = (shape[2], shape[3])
        if all(isinstance(d, int) for d in model_hw) and model_hw != spec.input_hw:
            raise ValueError(
                f"{path}: model input is {model_hw[0]}x{model_hw[1]}, spec says "
                f"{spec.input_hw[0]}x{spec.input_hw[1]}"
            )
        self.last_inference_seconds = 0.0

    def _timing_input(self, runner: Runner) -> np.ndarray:
        """An image-like 640x480 frame, letterboxed: the start-up timing's input (batch 1) and
        the reduced-precision agreement check's."""
        return self.prepare(image_like_noise(1, (480, 640)))[0]

    def prepare(self, frames_bgr: Sequence[np.ndarray]) -> tuple[np.ndarray, list]:
        """Letterbox + normalise frames into an (B, 3, h, w) float32 tensor and placements."""
        h, w = self.spec.input_hw
        tensor = np.empty((len(frames_bgr), 3, h, w), dtype=np.float32)
        placements = []
        for i, frame in enumerate(frames_bgr):
            canvas, lb = letterbox(
                frame,
                self.spec.input_hw,
                placement=self.spec.letterbox,
                pad_value=self.spec.pad_value,
            )
            write_chw(
                canvas,
                tensor[i],
                channel_order=self.spec.channel_order,
                pixel_scale=self.spec.pixel_scale,
                mean=self.spec.mean,
                std=self.spec.std,
            )
            placements.append(lb)
        return tensor, placements

    def infer(self, tensor: np.ndarray) -> np.ndarray:
        """Raw outputs (B, ...) for a prepared (B, 3, h, w) tensor; loops when batch is fixed at 1."""
        if self.fixed_batch == 1 and tensor.shape[0] != 1:
            return np.concatenate([self.runner.run(tensor[i : i + 1]) for i in range(len(tensor))])
        return self.runner.run(tensor)

    def detect_batch(self, frames_bgr: Sequence[np.ndarray]) -> list[FrameBoxes]:
        """Person boxes of each BGR frame, in one batched inference."""
        if not frames_bgr:
            return []
        tensor, placements = self.prepare(frames_bgr)
        t0 = time.perf_counter()
        raw = self.infer(tensor)
        self.last_inference_seconds = time.perf_counter() - t0
        results = []
        for i, frame in enumerate(frames_bgr):
            boxes, scores = decode(raw[i], self.spec)
            results.append(FrameBoxes(placements[i].to_frame(boxes, frame.shape[:2]), scores))
        return results

    def warmup(self) -> None:
        """One inference on a blank input, so the first real frame pays no start-up cost."""
        h, w = self.spec.input_hw
        self.detect_batch([np.full((h, w, 3), self.spec.pad_value, np.uint8)])


# HOG's SVM margin is unbounded; a logistic squash maps it into (0, 1) so that
# scores compare with CNN confidences. Margin 0 (the SVM's decision boundary)
# maps to 0.5.
def _squash_margin(margin: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-margin))).astype(np.float32)


# OpenCV's default people SVM was trained on INRIA 64x128 windows in which the
# person stands centred with a margin; trimming this fraction of the window's
# width from each side and of its height from top and bottom gives a box tight
# around the person (on PETS09 frames 50-300: 21 of 23 people at IoU 0.5,
# against 0 untrimmed).
HOG_TRIM_X_FRACTION = 0.2
HOG_TRIM_Y_FRACTION = 0.1


class HogDetector:
    """OpenCV's default HOG people detector (64x128 window), the no-model fallback."""

    def __init__(self, config: HogDetectorConfig) -> None:
        self.config = config
        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(
            np.asarray(cv2.HOGDescriptor.getDefaultPeopleDetector(), np.float32)
        )
        self.name = "opencv:hog"
        self.provider = "opencv-cpu"
        self.last_inference_seconds = 0.0

    def _detect(self, frame_bgr: np.ndarray) -> FrameBoxes:
        cfg = self.config
        img = frame_bgr
        if cfg.upscale != 1.0:
            img = cv2.resize(
                frame_bgr, None, fx=cfg.upscale, fy=cfg.upscale, interpolation=cv2.INTER_LINEAR
            )
        rects, weights = self.hog.detectMultiScale(
            img,
            hitThreshold=cfg.hit_threshold,
            winStride=(cfg.win_stride, cfg.win_stride),
            padding=(8, 8),
            scale=cfg.scale_step,
        )
        if len(rects) == 0:
            return _empty()
        xywh = np.asarray(rects, dtype=np.float32) / cfg.upscale
        x, y, w, h = xywh.T
        dx, dy = HOG_TRIM_X_FRACTION * w, HOG_TRIM_Y_FRACTION * h
        boxes = np.stack((x + dx, y + dy, x + w - dx, y + h - dy), axis=1)
        fh, fw = frame_bgr.shape[:2]
        np.clip(boxes[:, 0::2], 0, fw, out=boxes[:, 0::2])
        np.clip(boxes[:, 1::2], 0, fh, out=boxes[:, 1::2])
        scores = _squash_margin(np.asarray(weights, dtype=np.float32).reshape(-1))
        ok = scores >= cfg.score_threshold
        boxes, scores = boxes[ok], scores[ok]
        keep = nms(boxes, scores, cfg.nms_iou, max_keep=len(boxes))
        return FrameBoxes(boxes[keep], scores[keep])

    def detect_batch(self, frames_bgr: Sequence[np.ndarray]) -> list[FrameBoxes]:
        """Person boxes of each BGR frame (OpenCV HOG, frame by frame)."""
        t0 = time.perf_counter()
        out = [self._detect(f) for f in frames_bgr]
        self.last_inference_seconds = time.perf_counter() - t0
        return out

    def warmup(self) -> None:
        """One detection on a blank image."""
        self.detect_batch([np.zeros((128, 64, 3), np.uint8)])


def build_detector(
    config: DetectorBackendConfig | None, runtime: RuntimeConfig, models_dir: Path | None = None
) -> tuple[Detector, str]:
    """Build, verify and warm up the configured detector; returns it and why it was chosen.

    Raises:
        detector.checksum.ModelFileError: missing model file or checksum mismatch.
        ValueError: the model's input or output does not fit its spec.
    """
    if config is None or (isinstance(config, OnnxDetectorConfig) and not config.configured):
        reason = "no detector model configured: falling back to OpenCV's HOG people detector"
        det: Detector = HogDetector(HogDetectorConfig())
    elif isinstance(config, HogDetectorConfig):
        reason = "HOG people detector configured (type = 'hog')"
        det = HogDetector(config)
    else:
        spec = config.spec()
        path = verify_model_file(
            resolve_model_path(config.path, spec.filename, models_dir),
            spec.sha256,
            what="detector model",
        )
        if config.dynamic_batch:
            path = with_dynamic_batch(path)
        det = OnnxDetector(path, spec, runtime)
        reason = f"ONNX model {spec.filename} configured ({spec.layout} layout)"
    det.warmup()
    log.info(
        "detector_backend", extra={"backend": det.name, "provider": det.provider, "reason": reason}
    )
    return det, reason
