"""Scoring used by eval detect / eval reid, on hand-made cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.appearance_scoring import pair_auc, rank1
from evaluation.detection_scoring import average_precision, match_frame, precision_recall
from evaluation.groundtruth import load_mot_gt
from service.assets import pets_dir

GT = np.asarray([[0, 0, 10, 20], [50, 0, 60, 20], [100, 0, 110, 20]], np.float32)


def test_detection_on_ignored_gt_is_neither_tp_nor_fp() -> None:
    ignore = np.asarray([False, False, True])
    dets = np.asarray(
        [[0, 0, 10, 20], [1, 0, 11, 20], [100, 0, 110, 20], [200, 0, 210, 20]], np.float32
    )
    scores = np.asarray([0.9, 0.8, 0.7, 0.6], np.float32)
    m = match_frame(dets, scores, GT, ignore, 0.5)
    assert m.is_tp.tolist() == [True, False, False, False]  # second box: duplicate of the first
    assert m.counted.tolist() == [True, True, False, True]
    pr = precision_recall([m], 0.0)
    assert (pr["tp"], pr["fp"], pr["fn"], pr["gt"]) == (1, 2, 1, 2)
    assert precision_recall([m], 0.85)["fp"] == 0


def test_average_precision_known_curve() -> None:
    ignore = np.zeros(3, bool)
    # Ranked: TP, FP, TP; third GT never found -> AP = 1/3 * 1 + 1/3 * 2/3.
    dets = np.asarray([[0, 0, 10, 20], [300, 0, 310, 20], [50, 0, 60, 20]], np.float32)
    m = match_frame(dets, np.asarray([0.9, 0.8, 0.7], np.float32), GT, ignore, 0.5)
    assert average_precision([m]) == pytest.approx(1 / 3 + (1 / 3) * (2 / 3))


def test_pair_auc_and_rank1_known_values() -> None:
    a, b = np.asarray([1.0, 0.0]), np.asarray([0.0, 1.0])
    tilt = np.asarray([0.8, 0.6])
    vectors = np.stack([a, tilt, b, b])
    ids = np.asarray([1, 1, 2, 2])
    auc, n_pos, n_neg = pair_auc(vectors, ids)
    # positives: (a, tilt) 0.8 and (b, b) 1.0; negatives: 0, 0, 0.6, 0.6
    assert (n_pos, n_neg) == (2, 4) and auc == pytest.approx(1.0)
    frames = np.asarray([0, 20, 40, 60])
    r1, n = rank1(vectors, ids, frames, exclude_within=19)
    assert n == 4 and r1 == pytest.approx(1.0)
    # Excluding everything within 30 frames: crop 0's gallery is frames 40, 60 (id 2 only):
    # skipped; crop 1 (frame 20) sees only frame 60 (id 2): skipped; crops 2, 3 see id 1 only.
    r1, n = rank1(vectors, ids, frames, exclude_within=30)
    assert n == 0


def test_mot_gt_frames_are_zero_based_and_conf0_ignored() -> None:
    gt = load_mot_gt(pets_dir() / "gt.txt")
    boxes, ids, ignore = gt.frame(0)  # MOT frame 1
    assert len(boxes) == 3 and sorted(ids.tolist()) == [9, 15, 19]
    np.testing.assert_allclose(boxes[ids == 9][0], [499, 158, 499 + 31.03, 158 + 75.17], atol=1e-3)
    assert sum(int(gt.frame(i)[2].sum()) for i in range(795)) == 174
