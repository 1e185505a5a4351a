"""An int8 copy of the appearance model, calibrated on people from a recording of the site.

Static post-training quantisation, as ONNX Runtime's tooling does it: weights
int8 per output channel (symmetric), activations uint8 with ranges measured
(min/max) on real person crops, written as QuantizeLinear/DequantizeLinear
pairs (QDQ) that both engines fuse into integer kernels (OpenVINO on a CPU
with VNNI runs OSNet x0.25 about 1.8 times as fast as float32, measured in
the README's *Runtimes*). Ranges come from activations, so the crops must be
people as the cameras see them: ``[detector.runtime] int8_calibration`` names
a recording (a video file, or a folder of images), the detector finds the
people in evenly spaced frames of it, and their crops calibrate. Half of them
(every other batch) are held out: the copy is used only if its vectors agree
with float32's on those (mean cosine >= ``int8_min_cosine``), else the stage
falls back to float32 and says why.

The copy is written once per (model file, recording, frames) under the temp
folder, like the dynamic-batch edit, and never committed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from detector.runtime import EDITED_MODELS_DIR

log = logging.getLogger(__name__)

# Crops per calibration batch (a frame's worth of people).
CALIBRATION_BATCH = 8
# Opset of the quantised graph: per-channel DequantizeLinear needs 13.
_QDQ_OPSET = 13
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


class CalibrationError(ValueError):
    """The calibration recording is missing, unreadable or shows no people."""


@dataclass(frozen=True)
class Int8Report:
    """How an int8 copy was made and how well it agrees with float32."""

    path: Path
    crops: int  # crops found in the recording
    held_out: int  # crops the agreement was measured on
    mean_cosine: float
    min_cosine: float


def calibration_frames(source: Path, frames: int) -> list[np.ndarray]:
    """Up to ``frames`` BGR frames evenly spaced through a video file or an image folder.

    Raises:
        CalibrationError: nothing readable there.
    """
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
        step = max(1, len(files) // max(frames, 1))
        out = [img for p in files[::step][:frames] if (img := cv2.imread(str(p))) is not None]
    elif source.is_file():
        cap = cv2.VideoCapture(str(source))
        try:
            total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            step = max(1, total // max(frames, 1)) if total > 0 else 1
            out = []
            index = 0
            while len(out) < frames and cap.grab():  # skipped frames are not converted
                if index % step == 0:
                    ok, frame = cap.retrieve()
                    if ok:
                        out.append(frame)
                index += 1
        finally:
            cap.release()
    else:
        raise CalibrationError(f"int8 calibration recording {source} does not exist")
    if not out:
        raise CalibrationError(f"int8 calibration recording {source}: no frame could be read")
    return out


def source_fingerprint(source: Path) -> dict:
    """What identifies a recording for the cache: its path, size and mtime (a folder: its files')."""
    files = sorted(source.iterdir()) if source.is_dir() else [source]
    return {
        "path": str(source.resolve()),
        "files": [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files if p.is_file()],
    }


def quantised_copy(
    model: Path,
    crops: Sequence[np.ndarray],
    prepare: Callable[[Sequence[np.ndarray]], np.ndarray],
    *,
    key: dict,
) -> Path:
    """An int8 (QDQ) copy of ``model`` calibrated on ``crops`` (every other batch of them).

    ``prepare`` turns crops into the model's input tensor. ``key`` says what the
    calibration came from; with the model file's size and mtime it names the
    cached copy.
    """
    batches = _batches(crops)
    if not batches:
        raise CalibrationError("int8 calibration: no person crops")
    st = model.stat()
    ident = json.dumps({"model": [str(model), st.st_size, st.st_mtime_ns], **key}, sort_keys=True)
    digest = hashlib.sha256(ident.encode()).hexdigest()[:16]
    out = EDITED_MODELS_DIR / f"{model.stem}-int8-{digest}.onnx"
    if out.exists():
        return out
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    out.parent.mkdir(parents=True, exist_ok=True)
    graph = onnx.load(str(model))
    opset = max((o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset < _QDQ_OPSET:
        graph = version_converter.convert_version(graph, _QDQ_OPSET)
    float_copy = out.with_suffix(f".f32.tmp{os.getpid()}")
    onnx.save(graph, str(float_copy))
    input_name = graph.graph.input[0].name
    tensors = [prepare(b) for b in batches[::2]]

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(tensors)

        def get_next(self) -> dict | None:
            x = next(self._it, None)
            return None if x is None else {input_name: x}

    tmp = out.with_suffix(f".tmp{os.getpid()}")
    try:
        quantize_static(
            str(float_copy),
            str(tmp),
            _Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )
        os.replace(tmp, out)
    finally:
        for p in (float_copy, tmp):
            p.unlink(missing_ok=True)
    log.info(
        "model_quantised_int8",
        extra={
            "source": str(model),
            "quantised": str(out),
            "calibration_crops": sum(map(len, batches[::2])),
        },
    )
    return out


def held_out(crops: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The crops :func:`quantised_copy` did not calibrate on (every other batch)."""
    return [c for b in _batches(crops)[1::2] for c in b]


def _batches(crops: Sequence[np.ndarray]) -> list[list[np.ndarray]]:
    return [list(crops[i : i + CALIBRATION_BATCH]) for i in range(0, len(crops), CALIBRATION_BATCH)]
