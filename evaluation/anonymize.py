"""``crosscam eval anonymize``: how much of every ground-truth person the anonymizer hides.

Runs :mod:`crosscam.anonymize` over a MOTChallenge video and compares each
output frame with the ground truth (rows with conf > 0; GT frame N = video
frame N-1). Definitions:

* **obscured** — at least ``COVERED_MIN`` (90 %) of the GT box's pixels (clipped
  to the frame) lie in the obscure mask, i.e. were replaced by pixelation,
  blur or the flat head patch. ``obscured_share`` is the share of GT boxes
  obscured; ``head_obscured_share`` the same for the box's top 20 % (where
  the face is).
* ``obscured_share_detections_only`` counts only the detections' padded
  boxes: the gap to ``obscured_share`` is what the tracker's predictions add.
* ``detail_kept_median`` / ``detail_kept_p95`` — a pixel check independent of
  the mask: over GT heads, the correlation of the output's Laplacian with the
  original's (:func:`detail_kept`; 0 = none of the original detail left,
  1 = untouched).
* ``mean_area_obscured`` — mean share of each frame obscured, so covering the
  whole frame cannot pass for a good score.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from crosscam.anonymize import (
    AnonymizedFrame,
    AnonymizeParams,
    Anonymizer,
    analyzer_function,
    anonymize_video,
)
from evaluation.groundtruth import load_mot_gt
from service.assets import pets_dir

COVERED_MIN = 0.9
"""A GT box counts as obscured when at least this share of its pixels is masked."""
HEAD_FRACTION = 0.2
"""Top share of a GT box taken as its head region."""


def covered_share(mask: np.ndarray, box_xyxy: np.ndarray) -> float | None:
    """Share of the box's pixels (clipped to the mask) that are True; None for an empty box."""
    h, w = mask.shape
    x1, y1 = max(0, int(np.floor(box_xyxy[0]))), max(0, int(np.floor(box_xyxy[1])))
    x2, y2 = min(w, int(np.ceil(box_xyxy[2]))), min(h, int(np.ceil(box_xyxy[3])))
    if x2 <= x1 or y2 <= y1:
        return None
    return float(mask[y1:y2, x1:x2].mean())


def head_box(box_xyxy: np.ndarray) -> np.ndarray:
    """The top ``HEAD_FRACTION`` of a box."""
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    return np.array([x1, y1, x2, y1 + (y2 - y1) * HEAD_FRACTION])


def detail_kept(original: np.ndarray, output: np.ndarray, box_xyxy: np.ndarray) -> float | None:
    """How much of the original's fine detail inside the box survives in ``output``, in [0, 1].

    The correlation of the two pictures' Laplacians (edges, texture: what
    makes a face recognisable), clipped at 0: 1 = untouched, 0 = none of the
    original detail left. Edges the obscuring adds (block borders) do not
    correlate with the original's and do not count. None for a flat or tiny box.
    """
    h, w = original.shape[:2]
    x1, y1 = max(0, int(box_xyxy[0])), max(0, int(box_xyxy[1]))
    x2, y2 = min(w, int(np.ceil(box_xyxy[2]))), min(h, int(np.ceil(box_xyxy[3])))
    if x2 - x1 < 3 or y2 - y1 < 3:
        return None

    def lap(img: np.ndarray) -> np.ndarray:
        grey = cv2.cvtColor(img[y1:y2, x1:x2], cv2.COLOR_BGR2GRAY)
        return cv2.Laplacian(grey, cv2.CV_64F).ravel()

    a, b = lap(original), lap(output)
    a, b = a - a.mean(), b - b.mean()
    norm = float(np.sqrt((a * a).sum() * (b * b).sum()))
    if float((a * a).mean()) < 1.0:
        return None
    return max(0.0, float((a * b).sum()) / norm) if norm > 0 else 0.0


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 4) if values else None


class Scorer:
    """Accumulates per-frame comparisons with the ground truth."""

    def __init__(self, gt_path: Path) -> None:
        self.gt = load_mot_gt(gt_path)
        self.boxes = self.obscured = self.obscured_det = self.heads_obscured = 0
        self.details: list[float] = []

    def __call__(self, index: int, original: np.ndarray, res: AnonymizedFrame) -> None:
        boxes, _, ignore = self.gt.frame(index)
        det_mask = np.zeros_like(res.mask)
        for x1, y1, x2, y2 in res.boxes_xyxy[: res.detections].tolist():
            det_mask[y1:y2, x1:x2] = True
        for box in boxes[~ignore]:
            share = covered_share(res.mask, box)
            if share is None:
                continue
            self.boxes += 1
            self.obscured += share >= COVERED_MIN
            self.obscured_det += (covered_share(det_mask, box) or 0.0) >= COVERED_MIN
            self.heads_obscured += (covered_share(res.mask, head_box(box)) or 0.0) >= COVERED_MIN
            ratio = detail_kept(original, res.frame, head_box(box))
            if ratio is not None:
                self.details.append(ratio)

    def summary(self) -> dict[str, Any]:
        n = max(self.boxes, 1)
        return {
            "gt_boxes": self.boxes,
            "obscured_share": round(self.obscured / n, 4),
            "head_obscured_share": round(self.heads_obscured / n, 4),
            "obscured_share_detections_only": round(self.obscured_det / n, 4),
            "detail_kept_median": _pct(self.details, 50),
            "detail_kept_p95": _pct(self.details, 95),
            "covered_min": COVERED_MIN,
        }


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--video", type=Path, default=pets_dir() / "vtest.avi")
    parser.add_argument("--gt", type=Path, default=pets_dir() / "gt.txt")
    parser.add_argument("--out", type=Path, default=None, help="also write the anonymised video")
    parser.add_argument("--blur", action="store_true", help="blur instead of pixelate")
    parser.add_argument("--frames", type=int, default=None, help="only the first N frames")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def main(args: argparse.Namespace) -> int:
    params = AnonymizeParams(method="blur" if args.blur else "pixelate", draw_ids=True)
    try:
        scorer = Scorer(args.gt)
        anon = Anonymizer(analyzer_function(params.min_score), params)
        run = anonymize_video(args.video, args.out, anon, args.frames, on_frame=scorer)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    run["ids"] = len(run["ids"])  # how many pseudonyms were drawn, not which
    out = {"video": str(args.video), "method": params.method, **scorer.summary(), **run}
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:32s} {v}")
    return 0
