"""Decoding, NMS and letterbox: the YOLOv8 layout on a tiny real ONNX graph, YOLOX on hand-made rows."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from common.boxes import box_iou
from detector.backends import OnnxDetector, build_detector
from detector.config import OnnxDetectorConfig, RuntimeConfig
from detector.decode import decode_yolox, nms, yolox_grid
from detector.preprocess import letterbox
from detector.zoo import DETECTOR_ZOO, DetectorModelSpec

NUM_CLASSES = 80
PERSON = 0
BUS = 5


def _yolov8_graph(raw: np.ndarray, input_hw: tuple[int, int], path: Path) -> None:
    """A graph whose output is ``raw`` (1, 4 + C, A) plus 0 x sum(input): a YOLOv8-layout export."""
    h, w = input_hw
    images = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, h, w])
    output = helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(raw.shape))
    nodes = [
        helper.make_node("ReduceSum", ["images", "axes"], ["total"], keepdims=0),
        helper.make_node("Mul", ["total", "zero"], ["nothing"]),
        helper.make_node("Add", ["raw", "nothing"], ["output0"]),
    ]
    inits = [
        numpy_helper.from_array(raw.astype(np.float32), "raw"),
        numpy_helper.from_array(np.asarray([1, 2, 3], np.int64), "axes"),
        numpy_helper.from_array(np.zeros(1, np.float32), "zero"),
    ]
    graph = helper.make_graph(nodes, "yolov8_stub", [images], [output], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


def _anchor(cx: float, cy: float, w: float, h: float, cls: int, score: float) -> np.ndarray:
    col = np.zeros(4 + NUM_CLASSES, np.float32)
    col[:4] = (cx, cy, w, h)
    col[4 + cls] = score
    return col


def test_yolov8_layout_decoded_from_real_onnx_graph(tmp_path: Path) -> None:
    input_hw = (64, 64)
    anchors = [
        _anchor(20, 30, 10, 20, PERSON, 0.9),  # kept
        _anchor(21, 31, 10, 20, PERSON, 0.8),  # duplicate of the first: suppressed by NMS
        _anchor(45, 40, 8, 16, PERSON, 0.25),  # below the 0.3 threshold
        _anchor(45, 25, 12, 12, BUS, 0.95),  # not a person
        _anchor(50, 35, 6, 14, PERSON, 0.6),  # kept
    ]
    raw = np.stack(anchors, axis=1)[None]  # (1, 84, 5): Ultralytics' layout
    path = tmp_path / "v8.onnx"
    _yolov8_graph(raw, input_hw, path)
    spec = DetectorModelSpec(
        filename="v8.onnx",
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        layout="yolov8",
        input_hw=input_hw,
        channel_order="rgb",
        pixel_scale=1 / 255,
        letterbox="center",
        num_classes=NUM_CLASSES,
        person_class_id=PERSON,
        score_threshold=0.3,
        nms_iou=0.45,
    )
    det, reason = build_detector(
        OnnxDetectorConfig(custom=spec, path=path), RuntimeConfig(intra_op_threads=1)
    )
    assert isinstance(det, OnnxDetector) and "yolov8" in reason
    # Frame 64 high x 128 wide: scaled by 0.5 to 32 x 64, centred -> 16 px padding on top.
    frame = np.zeros((64, 128, 3), np.uint8)
    (found,) = det.detect_batch([frame])
    np.testing.assert_allclose(found.scores, [0.9, 0.6], atol=1e-6)
    expected_input = np.asarray([[15, 20, 25, 40], [47, 28, 53, 42]], np.float32)
    expected_frame = (expected_input - [0, 16, 0, 16]) / 0.5
    np.testing.assert_allclose(found.boxes_xyxy, expected_frame, atol=1e-4)


def test_yolov8_decoder_accepts_rows_layout() -> None:
    spec = DETECTOR_ZOO["yolox_nano"].model_copy(update={"layout": "yolov8"})
    rows = np.stack(
        [_anchor(10, 10, 4, 8, PERSON, 0.7), _anchor(30, 30, 4, 8, BUS, 0.9)]
    )  # (A, 84)
    from detector.decode import decode

    boxes, scores = decode(rows, spec)
    np.testing.assert_allclose(boxes, [[8, 6, 12, 14]])
    np.testing.assert_allclose(scores, [0.7])


def test_yolox_decoding_uses_grid_and_stride() -> None:
    spec = DETECTOR_ZOO["yolox_nano"]
    grid, strides = yolox_grid(spec.input_hw, spec.strides)
    assert len(grid) == 3549 == (52 * 52 + 26 * 26 + 13 * 13)
    raw = np.zeros((3549, 85), np.float32)
    # Anchor on the stride-16 map at cell (x=3, y=2): index 52*52 + 2*26 + 3.
    i = 52 * 52 + 2 * 26 + 3
    raw[i, :4] = (0.5, 0.25, np.log(2.0), np.log(4.0))
    raw[i, 4] = 0.8  # objectness
    raw[i, 5 + PERSON] = 0.5  # -> score 0.4
    j = 10  # stride 8, would score 0.9 * 0.9 but for a bus
    raw[j, 4], raw[j, 5 + BUS] = 0.9, 0.9
    boxes, scores = decode_yolox(raw, spec)
    np.testing.assert_allclose(scores, [0.4], rtol=1e-6)
    cx, cy, w, h = (3 + 0.5) * 16, (2 + 0.25) * 16, 2 * 16, 4 * 16
    np.testing.assert_allclose(boxes, [[cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]], rtol=1e-5)


def test_yolox_rejects_output_of_another_size() -> None:
    with pytest.raises(ValueError, match="anchors"):
        decode_yolox(np.zeros((100, 85), np.float32), DETECTOR_ZOO["yolox_nano"])


def test_nms_keeps_best_of_overlapping_and_separate_boxes() -> None:
    boxes = np.asarray(
        [[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9]], np.float32
    )
    scores = np.asarray([0.5, 0.9, 0.4, 0.3], np.float32)
    keep = nms(boxes, scores, iou_threshold=0.45, max_keep=10)
    assert keep.tolist() == [1, 2]
    assert nms(boxes, scores, iou_threshold=0.45, max_keep=1).tolist() == [1]
    assert nms(boxes[:0], scores[:0], 0.45, 10).tolist() == []


def test_box_iou_known_values() -> None:
    a = np.asarray([[0, 0, 10, 10]], np.float32)
    b = np.asarray([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], np.float32)
    np.testing.assert_allclose(box_iou(a, b), [[1.0, 50 / 150, 0.0]], rtol=1e-6)


@pytest.mark.parametrize("placement", ["top_left", "center"])
def test_letterbox_maps_boxes_back(placement: str) -> None:
    frame = np.zeros((576, 768, 3), np.uint8)
    canvas, lb = letterbox(frame, (416, 416), placement=placement, pad_value=114)  # type: ignore[arg-type]
    assert canvas.shape == (416, 416, 3)
    assert lb.ratio == pytest.approx(416 / 768)
    pad_rows = canvas[:, :, 0] == 114
    assert pad_rows.sum() == 416 * (416 - 312)
    frame_box = np.asarray([[100, 200, 300, 500]], np.float32)
    in_input = frame_box * lb.ratio + [lb.pad_x, lb.pad_y, lb.pad_x, lb.pad_y]
    np.testing.assert_allclose(lb.to_frame(in_input, (576, 768)), frame_box, atol=1e-3)


def test_boxes_mapped_back_are_clipped_to_the_frame() -> None:
    """Regression: np.clip(..., out=a[:, [0, 2]]) wrote into a copy, leaving boxes outside the frame."""
    _, lb = letterbox(
        np.zeros((576, 768, 3), np.uint8), (416, 416), placement="top_left", pad_value=114
    )
    outside = np.asarray([[-20, -10, 430, 400]], np.float32)  # beyond every edge in input pixels
    np.testing.assert_allclose(lb.to_frame(outside, (576, 768)), [[0, 0, 768, 576]])
