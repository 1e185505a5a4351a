"""Decoding raw detector outputs into person boxes, and non-maximum suppression.

Two layouts (``DetectorModelSpec.layout``):

* ``yolox``: (A, 5 + C) per image — cx, cy, log-w, log-h offsets on a grid per
  stride, objectness, C class scores (already sigmoid-ed in the export).
  Score = objectness x person-class score.
* ``yolov8``: (4 + C, A) per image (Ultralytics YOLOv8/v11 export) — cx, cy, w,
  h already in input pixels, C class scores, no objectness. Score = person score.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from common.boxes import box_iou
from detector.zoo import DetectorModelSpec


@cache
def yolox_grid(
    input_hw: tuple[int, int], strides: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Grid cell origins (A, 2) float32 and their strides (A, 1) float32, in YOLOX's order."""
    grids, expanded = [], []
    in_h, in_w = input_hw
    for stride in strides:
        hs, ws = in_h // stride, in_w // stride
        yv, xv = np.meshgrid(np.arange(hs), np.arange(ws), indexing="ij")
        grid = np.stack((xv, yv), axis=2).reshape(-1, 2)
        grids.append(grid)
        expanded.append(np.full((grid.shape[0], 1), stride))
    return (
        np.concatenate(grids).astype(np.float32),
        np.concatenate(expanded).astype(np.float32),
    )


def decode_yolox(raw: np.ndarray, spec: DetectorModelSpec) -> tuple[np.ndarray, np.ndarray]:
    """Person boxes from one image's YOLOX output.

    Args:
        raw: (A, 5 + C) float32 head output for one image.
        spec: gives input size, strides, class count, person class and threshold.

    Returns:
        boxes_xyxy (K, 4) float32 in network-input pixels and scores (K,) float32,
        for anchors scoring at least ``spec.score_threshold`` (before NMS).
    """
    expected = 5 + spec.num_classes
    if raw.ndim != 2 or raw.shape[1] != expected:
        raise ValueError(f"yolox output shape {raw.shape}, expected (A, {expected})")
    grid, strides = yolox_grid(spec.input_hw, spec.strides)
    if raw.shape[0] != grid.shape[0]:
        raise ValueError(
            f"yolox output has {raw.shape[0]} anchors; input {spec.input_hw} with strides "
            f"{spec.strides} gives {grid.shape[0]}"
        )
    scores = raw[:, 4] * raw[:, 5 + spec.person_class_id]
    keep = np.flatnonzero(scores >= spec.score_threshold)
    sel = raw[keep]
    centre = (sel[:, 0:2] + grid[keep]) * strides[keep]
    size = np.exp(sel[:, 2:4]) * strides[keep]
    boxes = np.concatenate((centre - size / 2, centre + size / 2), axis=1).astype(np.float32)
    return boxes, scores[keep].astype(np.float32)


def decode_yolov8(raw: np.ndarray, spec: DetectorModelSpec) -> tuple[np.ndarray, np.ndarray]:
    """Person boxes from one image's YOLOv8/v11-style output.

    Args:
        raw: (4 + C, A) float32 (Ultralytics' layout); (A, 4 + C) is accepted too.
        spec: class count, person class and threshold.

    Returns:
        boxes_xyxy (K, 4) float32 in network-input pixels, scores (K,) float32.
    """
    expected = 4 + spec.num_classes
    if raw.ndim != 2 or expected not in raw.shape:
        raise ValueError(f"yolov8 output shape {raw.shape}, expected ({expected}, A)")
    rows = raw.T if raw.shape[0] == expected and raw.shape[1] != expected else raw
    scores = rows[:, 4 + spec.person_class_id]
    keep = np.flatnonzero(scores >= spec.score_threshold)
    sel = rows[keep]
    centre, size = sel[:, 0:2], sel[:, 2:4]
    boxes = np.concatenate((centre - size / 2, centre + size / 2), axis=1).astype(np.float32)
    return boxes, scores[keep].astype(np.float32)


def nms(
    boxes_xyxy: np.ndarray, scores: np.ndarray, iou_threshold: float, max_keep: int
) -> np.ndarray:
    """Greedy non-maximum suppression; indices (K,) of kept boxes, best score first."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size and len(keep) < max_keep:
        i = int(order[0])
        keep.append(i)
        if order.size == 1:
            break
        ious = box_iou(boxes_xyxy[i : i + 1], boxes_xyxy[order[1:]])[0]
        order = order[1:][ious <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def decode(raw: np.ndarray, spec: DetectorModelSpec) -> tuple[np.ndarray, np.ndarray]:
    """Decode one image's output by ``spec.layout`` then NMS.

    Returns boxes_xyxy (K, 4) float32 in network-input pixels and scores (K,),
    best first, K <= spec.max_detections.
    """
    if spec.layout == "yolox":
        boxes, scores = decode_yolox(raw, spec)
    else:
        boxes, scores = decode_yolov8(raw, spec)
    keep = nms(boxes, scores, spec.nms_iou, spec.max_detections)
    return boxes[keep], scores[keep]
