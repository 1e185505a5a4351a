"""The models the detector stage knows, written down as data (torchreid's MODEL_ZOO habit).

Each entry says what the model expects and returns: input size, channel order,
scaling, mean/std, output layout, thresholds and the SHA-256 of the file. A
user's own model of the same interface is described by a spec of the same type
in the configuration; no model property is a constant in code.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DetectorModelSpec(_Spec):
    """What a person-detector ONNX file expects and how to decode its output."""

    filename: str = Field(description="file name inside the models folder")
    sha256: str = Field(description="SHA-256 of the file, lower-case hex", pattern="^[0-9a-f]{64}$")
    layout: Literal["yolox", "yolov8"] = Field(
        description="output layout: 'yolox' = 1xNx(5+C) raw grid outputs (cx, cy, w, h, obj, "
        "classes) needing grid/stride decoding; 'yolov8' = 1x(4+C)xN decoded boxes, no objectness"
    )
    input_hw: tuple[int, int] = Field(description="network input height, width in pixels")
    channel_order: Literal["bgr", "rgb"] = "bgr"
    pixel_scale: float = Field(
        1.0, gt=0, description="multiplier applied to 0-255 pixels (1/255 for 0-1 inputs)"
    )
    mean: tuple[float, float, float] = Field(
        (0.0, 0.0, 0.0), description="subtracted after scaling, in channel_order"
    )
    std: tuple[float, float, float] = Field(
        (1.0, 1.0, 1.0), description="divided after mean, in channel_order"
    )
    letterbox: Literal["top_left", "center"] = Field(
        "top_left", description="where the resized image sits in the padded input"
    )
    pad_value: int = Field(114, ge=0, le=255, description="grey level of the letterbox padding")
    strides: tuple[int, ...] = Field((8, 16, 32), description="feature-map strides (yolox only)")
    num_classes: int = Field(80, ge=1)
    person_class_id: int = Field(0, ge=0)
    score_threshold: float = Field(
        0.3,
        ge=0.0,
        le=1.0,
        description="keep boxes scoring at least this; raising it trades recall for precision",
    )
    nms_iou: float = Field(
        0.45,
        gt=0.0,
        le=1.0,
        description="suppress a box overlapping a better one by more than this IoU; "
        "raising it keeps more boxes of people standing close together, and more duplicates",
    )
    max_detections: int = Field(
        300, ge=1, description="cap on boxes per frame after NMS (bounds the message size)"
    )


class EmbedderModelSpec(_Spec):
    """What an appearance (ReID) ONNX file expects and returns."""

    filename: str
    sha256: str = Field(pattern="^[0-9a-f]{64}$")
    input_hw: tuple[int, int] = Field(description="crop height, width fed to the network")
    channel_order: Literal["bgr", "rgb"] = "rgb"
    pixel_scale: float = Field(1.0 / 255.0, gt=0)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    output_dim: int = Field(ge=1)
    metric: Literal["cosine", "euclidean"] = Field(
        "cosine", description="distance the vectors were trained for"
    )


DETECTOR_ZOO: dict[str, DetectorModelSpec] = {
    # Megvii YOLOX-nano, COCO; public ONNX export, raw head outputs (1x3549x85).
    "yolox_nano": DetectorModelSpec(
        filename="yolox_nano.onnx",
        sha256="d39bee73564e338080378b0ad567fbb40e818b55bbfaf971de82a0267ed16b8a",
        layout="yolox",
        input_hw=(416, 416),
        channel_order="bgr",
        pixel_scale=1.0,
        letterbox="top_left",
        pad_value=114,
        strides=(8, 16, 32),
        num_classes=80,
        person_class_id=0,
        # conf 0.3 / NMS 0.45: the operating point measured in shared/README.md
        score_threshold=0.3,
        nms_iou=0.45,
    ),
}

EMBEDDER_ZOO: dict[str, EmbedderModelSpec] = {
    # torchreid OSNet x0.25 trained on MSMT17; ImageNet normalisation, 512-d.
    "osnet_x0_25_msmt17": EmbedderModelSpec(
        filename="osnet_x0_25_msmt17.onnx",
        sha256="61b2604171ef9d58d21758626f83b35a253c3d7123976523a6e03068c3c95d7b",
        input_hw=(256, 128),
        channel_order="rgb",
        pixel_scale=1.0 / 255.0,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        output_dim=512,
        metric="cosine",
    ),
}
