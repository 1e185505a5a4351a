"""``crosscam eval detect``: detector precision / recall / AP50 against MOTChallenge ground truth.

    crosscam eval detect --video ../shared/data/PETS09-S2L1/vtest.avi \\
        --gt ../shared/data/PETS09-S2L1/gt.txt --json [--frames 200]

Precision and recall are at the model's score threshold (zoo: 0.3); AP50 is
the area under the precision/recall curve of every box down to
``AP_SCORE_FLOOR``. GT rows with conf 0 are ignored (a detection matching one
is neither a true nor a false positive). GT frame N is video frame N-1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from detector.config import AnalyzerConfig, HogDetectorConfig, NoEmbedderConfig, OnnxDetectorConfig
from evaluation.detection_scoring import (
    FrameMatch,
    average_precision,
    match_frame,
    precision_recall,
)
from evaluation.groundtruth import load_mot_gt
from evaluation.precompute import video_detections
from service.assets import models_dir, pets_dir

# Boxes down to this score feed the AP curve. COCO keeps everything above
# 0.001; below 0.01 YOLOX-nano adds only boxes that do not move AP50 here.
AP_SCORE_FLOOR = 0.01


def evaluate_detector(
    video: Path,
    gt_path: Path,
    *,
    frames: int | None = None,
    iou_threshold: float = 0.5,
    detector: str = "onnx",
    score_threshold: float | None = None,
) -> dict:
    """Match every frame's detections to GT and score them; a JSON-ready dict."""
    det_cfg = HogDetectorConfig() if detector == "hog" else OnnxDetectorConfig()
    if isinstance(det_cfg, OnnxDetectorConfig):
        spec = det_cfg.spec()
        default_threshold = spec.score_threshold
    else:
        default_threshold = det_cfg.score_threshold
    operating: float = score_threshold if score_threshold is not None else default_threshold
    config = AnalyzerConfig(detector=det_cfg, embedder=NoEmbedderConfig(), models_dir=models_dir())
    vd = video_detections(video, score_min=AP_SCORE_FLOOR, frames=frames, config=config)
    gt = load_mot_gt(gt_path)
    matches: list[FrameMatch] = []
    matches_all_rows: list[FrameMatch] = []
    ignored_rows = 0
    for i in range(vd.n_frames):
        boxes, _, ignore = gt.frame(i)
        ignored_rows += int(ignore.sum())
        matches.append(match_frame(vd.boxes_xyxy[i], vd.scores[i], boxes, ignore, iou_threshold))
        matches_all_rows.append(
            match_frame(vd.boxes_xyxy[i], vd.scores[i], boxes, np.zeros_like(ignore), iou_threshold)
        )
    pr = precision_recall(matches, operating)
    pr_all = precision_recall(matches_all_rows, operating)
    matched_ignored = sum(int((~m.counted & (m.scores >= operating)).sum()) for m in matches)
    report = {
        "video": str(video),
        "gt": str(gt_path),
        "frames": vd.n_frames,
        "detector": "opencv:hog" if detector == "hog" else f"onnx:{spec.filename}",
        "iou_threshold": iou_threshold,
        "score_threshold": operating,
        "precision": round(float(pr["precision"]), 4),
        "recall": round(float(pr["recall"]), 4),
        "ap50" if iou_threshold == 0.5 else f"ap{round(iou_threshold * 100)}": round(
            average_precision(matches), 4
        ),
        "tp": pr["tp"],
        "fp": pr["fp"],
        "fn": pr["fn"],
        "gt_boxes": pr["gt"],
        "gt_rows_ignored": ignored_rows,
        "detections_on_ignored_gt": matched_ignored,
        "ap_score_floor": AP_SCORE_FLOOR,
        "matching": "greedy by score, IoU >= threshold; conf-0 GT rows ignored",
        # The same detections scored with conf-0 rows counted as people: the rule
        # behind the "plain decode" reference figures (P 0.74 / R 0.86, 200 frames).
        "conf0_rows_as_people": {
            "precision": round(float(pr_all["precision"]), 4),
            "recall": round(float(pr_all["recall"]), 4),
            "ap50" if iou_threshold == 0.5 else f"ap{round(iou_threshold * 100)}": round(
                average_precision(matches_all_rows), 4
            ),
        },
        "detections_cache": vd.cache_path,
    }
    if detector != "hog":
        report["nms_iou"] = spec.nms_iou
    return report


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--video", type=Path, default=pets_dir() / "vtest.avi")
    parser.add_argument("--gt", type=Path, default=pets_dir() / "gt.txt")
    parser.add_argument("--frames", type=int, default=None, help="only the first N frames")
    parser.add_argument("--iou", type=float, default=0.5, help="IoU for a true positive")
    parser.add_argument(
        "--score-threshold", type=float, default=None, help="operating point (default: the model's)"
    )
    parser.add_argument("--detector", choices=("onnx", "hog"), default="onnx")
    parser.add_argument("--json", action="store_true", help="print one JSON document")


def main(args: argparse.Namespace) -> int:
    report = evaluate_detector(
        args.video,
        args.gt,
        frames=args.frames,
        iou_threshold=args.iou,
        detector=args.detector,
        score_threshold=args.score_threshold,
    )
    if args.json:
        json.dump(report, sys.stdout)
        sys.stdout.write("\n")
    else:
        for key, value in report.items():
            print(f"{key:>26}: {value}")
    return 0
