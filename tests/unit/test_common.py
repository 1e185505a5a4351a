"""The shared helpers in common/: known answers for the cases their callers rely on."""

from __future__ import annotations

import numpy as np

from common.boxes import box_iou
from common.vectors import l2_normalise


def test_box_iou_known_answers_in_the_requested_precision() -> None:
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [3, 3, 3, 3]])
    iou64 = box_iou(a, b, np.float64)
    assert iou64.dtype == np.float64 and iou64.shape == (1, 4)
    np.testing.assert_allclose(iou64, [[1.0, 50 / 150, 0.0, 0.0]], rtol=1e-12)
    assert box_iou(a, b).dtype == np.float32


def test_box_iou_of_empty_inputs_is_an_empty_matrix_of_the_right_shape() -> None:
    """The tracker and the scorers pass empty lists for frames without boxes."""
    assert box_iou(np.zeros((0, 4)), np.ones((3, 4))).shape == (0, 3)
    assert box_iou(np.asarray([]), np.ones((2, 4)), np.float64).shape == (0, 2)
    assert box_iou(np.ones((2, 4)), []).shape == (2, 0)


def test_l2_normalise_rows_and_single_vectors_keeps_zero_rows_zero() -> None:
    rows = l2_normalise(np.array([[3.0, 4.0], [0.0, 0.0]]))
    assert rows.dtype == np.float32
    np.testing.assert_allclose(rows, [[0.6, 0.8], [0.0, 0.0]], rtol=1e-6)
    np.testing.assert_allclose(l2_normalise(np.array([0.0, 2.0])), [0.0, 1.0])
