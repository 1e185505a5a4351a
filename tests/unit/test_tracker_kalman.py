"""The batched Kalman filter: hand-worked values and filterpy as the reference."""

from __future__ import annotations

import numpy as np
import pytest
from filterpy.kalman import predict as fp_predict
from filterpy.kalman import update as fp_update

from tracker import kalman
from tracker.kalman import CHI2_95_4DOF, KalmanParams

PARAMS = KalmanParams(
    process_position_std=0.1,
    process_velocity_std=0.2,
    process_aspect_std=0.05,
    measurement_std=0.05,
    measurement_aspect_std=0.1,
    score_scaled_noise=False,
)


def test_predict_and_update_match_hand_worked_values() -> None:
    """cx and vcx of a 100 px tall box, identity covariance, half a second.

    predict: cx = 100 + 0.5 * 10 = 105; P[cx,cx] = 1 + 0.5² + (0.1·100)²·0.5
    = 51.25; P[cx,vcx] = 0.5; P[vcx,vcx] = 1 + (0.2·100)²·0.5 = 201.
    update with cx = 106, R = (0.05·100)² = 25: S = 76.25,
    cx = 105 + 51.25/76.25, vcx = 10 + 0.5/76.25, P[cx,cx] = 51.25·25/76.25.
    """
    mean = np.array([[100.0, 50.0, 0.5, 100.0, 10.0, 0.0, 0.0, 0.0]])
    cov = np.eye(8)[None]
    m, p = kalman.predict(PARAMS, mean, cov, 0.5)
    assert m[0, 0] == pytest.approx(105.0)
    assert m[0, 1] == pytest.approx(50.0)
    assert p[0, 0, 0] == pytest.approx(51.25)
    assert p[0, 0, 4] == pytest.approx(0.5)
    assert p[0, 4, 4] == pytest.approx(201.0)
    assert p[0, 2, 2] == pytest.approx(1.25 + 0.05**2 * 0.5)

    m2, p2 = kalman.update(PARAMS, m, p, np.array([[106.0, 50.0, 0.5, 100.0]]))
    assert m2[0, 0] == pytest.approx(105.0 + 51.25 / 76.25)
    assert m2[0, 4] == pytest.approx(10.0 + 0.5 / 76.25)
    assert p2[0, 0, 0] == pytest.approx(51.25 * 25.0 / 76.25)
    assert m2[0, 1] == pytest.approx(50.0)  # y unchanged: zero innovation


def _random_state(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    mean = np.column_stack(
        [
            rng.uniform(0, 700, n),
            rng.uniform(0, 500, n),
            rng.uniform(0.3, 0.6, n),
            rng.uniform(40, 200, n),
            rng.normal(0, 30, (n, 4)),
        ]
    )
    a = rng.normal(0, 1, (n, 8, 8))
    cov = a @ a.transpose(0, 2, 1) + 8 * np.eye(8)
    return mean, cov


@pytest.mark.parametrize("dt_s", [1 / 30, 1 / 7, 1.3])
def test_batched_predict_update_equal_filterpy(dt_s: float) -> None:
    rng = np.random.default_rng(7)
    params = KalmanParams()  # score-scaled noise on: checked with scores below
    mean, cov = _random_state(rng, 5)
    m, p = kalman.predict(params, mean, cov, dt_s)
    f = kalman.transition_matrix(dt_s)
    q = kalman.process_noise(params, mean[:, 3], dt_s)
    for i in range(5):
        x_ref, p_ref = fp_predict(mean[i], cov[i], F=f, Q=np.diag(q[i]))
        np.testing.assert_allclose(m[i], x_ref, rtol=1e-10)
        np.testing.assert_allclose(p[i], p_ref, rtol=1e-10, atol=1e-9)

    z = kalman.xyxy_to_xyah(kalman.xyah_to_xyxy(m) + rng.normal(0, 3, (5, 4)))
    scores = rng.uniform(0.1, 0.95, 5)
    m2, p2 = kalman.update(params, m, p, z, scores)
    h = np.hstack([np.eye(4), np.zeros((4, 4))])
    r = kalman.measurement_noise(params, m[:, 3], scores)
    for i in range(5):
        x_ref, p_ref = fp_update(m[i], p[i], z[i], R=np.diag(r[i]), H=h)
        np.testing.assert_allclose(m2[i], x_ref, rtol=1e-9)
        np.testing.assert_allclose(p2[i], p_ref, rtol=1e-7, atol=1e-7)


def test_gating_distance_is_mahalanobis() -> None:
    rng = np.random.default_rng(3)
    mean, cov = _random_state(rng, 3)
    z = rng.uniform(0, 300, (4, 4))
    d = kalman.gating_distance(PARAMS, mean, cov, z)
    z_mean, s = kalman.project(PARAMS, mean, cov)
    for t in range(3):
        for n in range(4):
            diff = z[n] - z_mean[t]
            assert d[t, n] == pytest.approx(diff @ np.linalg.inv(s[t]) @ diff, rel=1e-9)


def test_gate_rejects_impossible_jump_and_keeps_a_step() -> None:
    """A walker 7 fps later 5 px on is inside the gate; 300 px on is not."""
    params = KalmanParams()
    mean, cov = kalman.initiate(params, np.array([[200.0, 300.0, 0.4, 100.0]]))
    for _ in range(10):  # a settled track standing still
        mean, cov = kalman.predict(params, mean, cov, 1 / 7)
        mean, cov = kalman.update(
            params, mean, cov, np.array([[200.0, 300.0, 0.4, 100.0]]), np.array([0.9])
        )
    mean, cov = kalman.predict(params, mean, cov, 1 / 7)
    d = kalman.gating_distance(
        params, mean, cov, np.array([[205.0, 300.0, 0.4, 100.0], [500.0, 300.0, 0.4, 100.0]])
    )
    assert d[0, 0] < CHI2_95_4DOF < d[0, 1]


def test_box_format_round_trip() -> None:
    boxes = np.array([[10.0, 20.0, 50.0, 120.0], [0.0, 0.0, 1.0, 2.0]])
    xyah = kalman.xyxy_to_xyah(boxes)
    np.testing.assert_allclose(xyah[0], [30.0, 70.0, 0.4, 100.0])
    np.testing.assert_allclose(kalman.xyah_to_xyxy(xyah), boxes)
