"""Detection scoring against ground truth: precision, recall, AP at an IoU threshold.

Matching per frame is greedy by descending score (the VOC/COCO rule): a
detection takes the unmatched GT box it overlaps most, if by at least
``iou_threshold``. A detection whose best match is an *ignored* GT box counts
as neither true nor false positive (MOTChallenge's rule for conf-0 rows).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from common.boxes import box_iou


@dataclass
class FrameMatch:
    """Per-detection outcome of one frame: scores (N,), is_tp (N,) bool, counted (N,) bool."""

    scores: np.ndarray
    is_tp: np.ndarray
    counted: np.ndarray
    n_gt: int


def match_frame(
    det_xyxy: np.ndarray,
    det_scores: np.ndarray,
    gt_xyxy: np.ndarray,
    gt_ignore: np.ndarray,
    iou_threshold: float,
) -> FrameMatch:
    """Greedy score-ordered matching of (N, 4) detections to (M, 4) GT boxes."""
    n = len(det_scores)
    order = np.argsort(-det_scores, kind="stable")
    is_tp = np.zeros(n, bool)
    counted = np.ones(n, bool)
    taken = np.zeros(len(gt_xyxy), bool)
    if n and len(gt_xyxy):
        ious = box_iou(det_xyxy, gt_xyxy)
        for d in order:
            cand = np.where(taken, -1.0, ious[d])
            g = int(np.argmax(cand))
            if cand[g] >= iou_threshold:
                taken[g] = True
                if gt_ignore[g]:
                    counted[d] = False
                else:
                    is_tp[d] = True
    return FrameMatch(det_scores, is_tp, counted, int((~gt_ignore).sum()))


def average_precision(matches: list[FrameMatch]) -> float:
    """Area under the all-point interpolated precision/recall curve (VOC 2010+)."""
    scores = np.concatenate([m.scores[m.counted] for m in matches]) if matches else np.zeros(0)
    tps = np.concatenate([m.is_tp[m.counted] for m in matches]) if matches else np.zeros(0, bool)
    n_gt = sum(m.n_gt for m in matches)
    if n_gt == 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    tp_cum = np.cumsum(tps[order])
    fp_cum = np.cumsum(~tps[order])
    recall = tp_cum / n_gt
    precision = tp_cum / np.maximum(tp_cum + fp_cum, 1)
    mrec = np.concatenate(([0.0], recall, [recall[-1] if len(recall) else 0.0]))
    mpre = np.concatenate(([1.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def precision_recall(matches: list[FrameMatch], score_threshold: float) -> dict[str, float | int]:
    """Counts and precision/recall of the detections scoring at least ``score_threshold``."""
    tp = fp = 0
    for m in matches:
        keep = (m.scores >= score_threshold) & m.counted
        tp += int(m.is_tp[keep].sum())
        fp += int((~m.is_tp[keep]).sum())
    n_gt = sum(m.n_gt for m in matches)
    return {
        "tp": tp,
        "fp": fp,
        "fn": n_gt - tp,
        "gt": n_gt,
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": tp / n_gt if n_gt else 0.0,
    }
