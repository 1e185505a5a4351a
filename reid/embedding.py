"""Search by example: one person image in, one appearance vector out (ReID side).

Stages never import each other, so the ReID service runs its own copy of the
detector's appearance model (OSNet, ONNX) for the few images operators search
with. The preprocessing is OSNet's: the crop resized (bilinear) to 256x128,
RGB, scaled to [0, 1], ImageNet mean/std, CHW; the output L2-normalised. A
test (tests/unit/test_reid_embedding.py) checks that it matches the detector's
embedder (cosine >= 0.999), so a searched photo lands in the stored vectors'
space.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from common.vectors import l2_normalise

INPUT_HW = (256, 128)
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
MODEL_FILE = "osnet_x0_25_msmt17.onnx"
MODEL_SHA256 = "61b2604171ef9d58d21758626f83b35a253c3d7123976523a6e03068c3c95d7b"
MAX_PIXELS = 25_000_000
"""Images with more pixels (read from the header, before decoding) are refused."""
MIN_SIDE = 8


class BadImage(ValueError):
    """The bytes are not an image this service accepts (why in the message)."""


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG/PNG/WebP header without decoding pixels, or None."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                return None
            marker = data[i + 1]
            length = int.from_bytes(data[i + 2 : i + 4], "big")
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                h = int.from_bytes(data[i + 5 : i + 7], "big")
                w = int.from_bytes(data[i + 7 : i + 9], "big")
                return w, h
            i += 2 + length
        return None
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return None  # sizes vary by chunk kind; decoded below, bounded by the body limit
    return None


def decode_image(data: bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """A BGR image from JPEG/PNG/WebP bytes, checked by decoding (BadImage otherwise)."""
    is_webp = data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    size = image_size(data)
    if size is None and not is_webp:
        raise BadImage("not a JPEG, PNG or WebP image")
    if size is not None and size[0] * size[1] > max_pixels:
        raise BadImage(f"image has more than {max_pixels} pixels")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise BadImage("image could not be decoded")
    if min(img.shape[:2]) < MIN_SIDE:
        raise BadImage(f"image is smaller than {MIN_SIDE} pixels on a side")
    return img


def preprocess(crops_bgr: list[np.ndarray]) -> np.ndarray:
    """(N, 3, 256, 128) float32 OSNet input for N BGR crops."""
    h, w = INPUT_HW
    out = np.empty((len(crops_bgr), 3, h, w), np.float32)
    for i, crop in enumerate(crops_bgr):
        rgb = cv2.resize(crop, (w, h), interpolation=cv2.INTER_LINEAR)[..., ::-1]
        out[i] = ((rgb.astype(np.float32) / 255.0 - MEAN) / STD).transpose(2, 0, 1)
    return out


class CropEmbedder:
    """The appearance model in this process (checked by SHA-256 when opened)."""

    def __init__(self, path: Path, threads: int = 1) -> None:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != MODEL_SHA256:
            raise ValueError(f"{path.name}: SHA-256 {digest[:12]}… is not {MODEL_FILE}'s")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def embed(self, crops_bgr: list[np.ndarray]) -> np.ndarray:
        """(N, 512) L2-normalised float32 vectors (one at a time: the model's batch may be fixed)."""
        tensor = preprocess(crops_bgr)
        rows = [
            self.session.run(None, {self.input_name: tensor[i : i + 1]})[0]
            for i in range(len(tensor))
        ]
        return l2_normalise(np.concatenate(rows).reshape(len(tensor), -1))
