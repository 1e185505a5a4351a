"""Appearance (ReID) embedders behind one protocol; the ONNX one runs OSNet-style models.

Vectors are L2-normalised float32, so cosine similarity is a dot product.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import cv2
import numpy as np

from common.vectors import l2_normalise
from detector.checksum import resolve_model_path, verify_model_file
from detector.config import EmbedderBackendConfig, NoEmbedderConfig, RuntimeConfig
from detector.int8 import (
    CALIBRATION_BATCH,
    CalibrationError,
    Int8Report,
    calibration_frames,
    held_out,
    quantised_copy,
    source_fingerprint,
)
from detector.preprocess import crop_views, image_like_noise, write_batch_chw
from detector.runtime import Runner, cosines, open_fastest, static_batch_size
from detector.zoo import EmbedderModelSpec

if TYPE_CHECKING:
    from detector.backends import Detector

log = logging.getLogger(__name__)

# Floor under a vector's norm before dividing: an all-zero output stays zero
# instead of becoming NaN.


class Embedder(Protocol):
    """Turns person crops into appearance vectors."""

    name: str
    provider: str
    dim: int
    last_inference_seconds: float

    def embed(self, crops_bgr: Sequence[np.ndarray]) -> np.ndarray:
        """(N, dim) float32 L2-normalised vectors for N BGR crops of any size."""
        ...

    def warmup(self) -> None:
        """Run once on a blank input, so the first real crop pays no start-up cost."""


# Crops per call in the start-up timing: a frame's worth of people.
_TIMING_BATCH = 8


class OnnxEmbedder:
    """ONNX appearance model (ONNX Runtime or OpenVINO): resize each crop, batch, normalise."""

    def __init__(
        self,
        path: Path,
        spec: EmbedderModelSpec,
        runtime: RuntimeConfig,
        max_batch: int,
        calibration_crops: Callable[[], list[np.ndarray]] | None = None,
    ) -> None:
        self.spec = spec
        self.max_batch = max_batch
        int8 = runtime.embedder_precision == "int8"
        self.runner, self.choice = open_fastest(
            path,
            runtime,
            what=spec.filename,
            make_input=self._timing_input,
            precision="f32" if int8 else runtime.embedder_precision,
        )
        self.int8: Int8Report | None = None
        """How the int8 copy was made and agreed (precision 'int8' only)."""
        if int8:
            if calibration_crops is None:
                raise ValueError("embedder_precision 'int8' needs calibration crops")
            self._use_int8(path, runtime, calibration_crops())
        self.info = self.runner.info
        self.name = f"onnx:{spec.filename}"
        self.provider = self.info.provider
        self.dim = spec.output_dim
        fixed = static_batch_size(self.info)
        self.max_batch = 1 if fixed == 1 else max_batch
        self.last_inference_seconds = 0.0

    def _use_int8(self, path: Path, runtime: RuntimeConfig, crops: list[np.ndarray]) -> None:
        """Quantise ``path`` on ``crops`` and run the copy if it agrees with float32 on the
        crops held out; else keep the float32 runner and say why."""
        if len(crops) < 2 * CALIBRATION_BATCH:
            raise CalibrationError(
                f"int8 calibration found {len(crops)} person crops; at least "
                f"{2 * CALIBRATION_BATCH} are needed (a recording with people in view)"
            )
        assert runtime.int8_calibration is not None  # the config's validator
        key = {
            "source": source_fingerprint(runtime.int8_calibration),
            "frames": runtime.int8_calibration_frames,
            "crops": len(crops),
        }
        q_path = quantised_copy(path, crops, self.prepare, key=key)
        q_runner, q_choice = open_fastest(
            q_path, runtime, what=f"{self.spec.filename} int8", make_input=self._timing_input
        )
        test = self.prepare(held_out(crops))
        chunks = range(0, len(test), CALIBRATION_BATCH)
        ref = np.concatenate([self.runner.run(test[i : i + CALIBRATION_BATCH]) for i in chunks])
        got = np.concatenate([q_runner.run(test[i : i + CALIBRATION_BATCH]) for i in chunks])
        cos = cosines(ref, got)
        self.int8 = Int8Report(q_path, len(crops), len(test), float(cos.mean()), float(cos.min()))
        agreed = self.int8.mean_cosine >= runtime.int8_min_cosine
        log.log(
            logging.INFO if agreed else logging.WARNING,
            "embedder_int8" if agreed else "embedder_int8_rejected",
            extra={
                "quantised": str(q_path),
                "calibration_crops": len(crops),
                "held_out": len(test),
                "mean_cosine": round(self.int8.mean_cosine, 4),
                "min_cosine": round(self.int8.min_cosine, 4),
                "int8_min_cosine": runtime.int8_min_cosine,
                "runtime": q_choice.chosen,
            },
        )
        if agreed:
            self.runner, self.choice = q_runner, q_choice

    def _timing_input(self, runner: Runner) -> np.ndarray:
        """Image-like crops, prepared, for the start-up timing (values do not change the cost)
        and the reduced-precision agreement check (they do there)."""
        n = 1 if static_batch_size(runner.info) == 1 else min(_TIMING_BATCH, self.max_batch)
        return self.prepare(image_like_noise(n, self.spec.input_hw))

    def prepare(self, crops_bgr: Sequence[np.ndarray]) -> np.ndarray:
        """(N, 3, h, w) float32 input tensor for N crops (each resized, then normalised at once)."""
        h, w = self.spec.input_hw
        resized = np.empty((len(crops_bgr), h, w, 3), dtype=np.uint8)
        for i, crop in enumerate(crops_bgr):
            # Bilinear: person crops are mostly enlarged to the model's input.
            cv2.resize(crop, (w, h), dst=resized[i], interpolation=cv2.INTER_LINEAR)
        tensor = np.empty((len(crops_bgr), 3, h, w), dtype=np.float32)
        write_batch_chw(
            resized,
            tensor,
            channel_order=self.spec.channel_order,
            pixel_scale=self.spec.pixel_scale,
            mean=self.spec.mean,
            std=self.spec.std,
        )
        return tensor

    def infer(self, tensor: np.ndarray) -> np.ndarray:
        """Raw (N, dim) outputs for a prepared tensor, in chunks of ``max_batch``."""
        outs = [
            self.runner.run(tensor[i : i + self.max_batch])
            for i in range(0, len(tensor), self.max_batch)
        ]
        return np.concatenate(outs).reshape(len(tensor), -1)

    def embed(self, crops_bgr: Sequence[np.ndarray]) -> np.ndarray:
        """(N, D) L2-normalised float32 vectors of N BGR crops."""
        if not crops_bgr:
            self.last_inference_seconds = 0.0
            return np.zeros((0, self.dim), np.float32)
        tensor = self.prepare(crops_bgr)
        t0 = time.perf_counter()
        raw = self.infer(tensor)
        self.last_inference_seconds = time.perf_counter() - t0
        if raw.shape[1] != self.dim:
            raise ValueError(f"{self.name}: output has {raw.shape[1]} dims, spec says {self.dim}")
        return l2_normalise(raw)

    def warmup(self) -> None:
        """One inference on a blank crop."""
        h, w = self.spec.input_hw
        self.embed([np.zeros((h, w, 3), np.uint8)])


class NullEmbedder:
    """No appearance model: zero-width vectors."""

    name = "none"
    provider = "none"
    dim = 0
    last_inference_seconds = 0.0

    def embed(self, crops_bgr: Sequence[np.ndarray]) -> np.ndarray:
        """(N, 0) vectors: no appearance (motion-only tracking)."""
        return np.zeros((len(crops_bgr), 0), np.float32)

    def warmup(self) -> None:
        """Nothing to warm up."""
        return None


def build_embedder(
    config: EmbedderBackendConfig,
    runtime: RuntimeConfig,
    models_dir: Path | None = None,
    detector: Detector | None = None,
) -> Embedder:
    """Build, verify (SHA-256) and warm up the configured embedder.

    With ``embedder_precision`` 'int8', ``detector`` finds the people of the
    calibration recording (the default ONNX detector is built for it when none
    is given).
    """
    if isinstance(config, NoEmbedderConfig):
        emb: Embedder = NullEmbedder()
    else:
        spec = config.spec()
        configured = resolve_model_path(config.path, spec.filename, models_dir)
        path = verify_model_file(configured, spec.sha256, what="embedder model")

        def crops() -> list[np.ndarray]:
            det = detector
            if det is None:
                from detector.backends import build_detector
                from detector.config import OnnxDetectorConfig

                det = build_detector(OnnxDetectorConfig(), runtime, models_dir)[0]
            assert runtime.int8_calibration is not None  # the config's validator
            frames = calibration_frames(runtime.int8_calibration, runtime.int8_calibration_frames)
            return [c for f in frames for c in crop_views(f, det.detect_batch([f])[0].boxes_xyxy)]

        emb = OnnxEmbedder(path, spec, runtime, config.max_batch, calibration_crops=crops)
    emb.warmup()
    log.info(
        "embedder_backend", extra={"backend": emb.name, "provider": emb.provider, "dim": emb.dim}
    )
    return emb
