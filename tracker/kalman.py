"""Constant-velocity Kalman filter on (cx, cy, aspect, height), batched over tracks.

The filter is only the maths: it holds no track state (``predict(mean, cov, dt)
-> (mean, cov)``), like nwojke/deep_sort's ``KalmanFilter``. Differences:

* **Time in seconds.** Velocities are per second and the process noise grows
  with the time step (a random walk: variance proportional to ``dt``), so the
  same parameters hold at 7 fps and at 30 fps, and a dropped frame simply means
  a longer step.
* **Batched.** Every function takes ``T`` tracks at once as ``(T, 8)`` means and
  ``(T, 8, 8)`` covariances. filterpy's ``KalmanFilter`` objects cost tens of
  microseconds per call each; one numpy call for all tracks keeps the whole
  tracker near a millisecond per frame. ``tests/unit/test_tracker_kalman.py``
  checks every step against ``filterpy.kalman.predict``/``update``.

State ``x = (cx, cy, a, h, vcx, vcy, va, vh)``: box centre and height in pixels,
aspect = width / height, velocities per second. Noise scales with the box
height, as in Deep SORT, so a near (tall) person may move more pixels than a
far one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STATE_DIM = 8
MEASURE_DIM = 4

# 0.95 quantile of the chi-square distribution with 4 (cx, cy, a, h) and 2 (cx,
# cy) degrees of freedom: a detection farther than this (squared Mahalanobis
# distance) from a track's predicted box is, at 95 % confidence, not its person.
CHI2_95_4DOF = 9.4877
CHI2_95_2DOF = 5.9915


@dataclass(frozen=True)
class KalmanParams:
    """Noise model, in fractions of the box height and in seconds.

    Defaults are Deep SORT's per-frame weights (position 1/20, velocity 1/160
    of the height per frame) turned into per-second rates at 7 fps, PETS09's
    rate: ``sqrt(7) / 20 = 0.13`` and ``sqrt(7) * 7 / 160 = 0.12``, then
    checked on PETS09-S2L1 with ``crosscam eval mot``.
    """

    process_position_std: float = 0.13
    """Std of unmodelled box motion over one second (random walk), fraction of
    the height. Raising it follows abrupt stops and turns better but widens
    the gate, so neighbours are more easily swapped."""

    process_velocity_std: float = 0.12
    """Std of the change of velocity over one second, fraction of the height
    per second. Raising it lets the velocity adapt faster (walkers that turn)
    at the price of noisier extrapolation through occlusions."""

    process_aspect_std: float = 0.05
    """Std of aspect-ratio change over one second (aspect is width/height)."""

    measurement_std: float = 1.0 / 20.0
    """Std of a detection's centre and height error, fraction of the height
    (Deep SORT's 1/20). Raising it trusts detections less: smoother boxes,
    slower response."""

    measurement_aspect_std: float = 0.1
    """Std of a detection's aspect-ratio error (Deep SORT's 1e-1)."""

    initial_velocity_std: float = 0.44
    """Std of the unknown velocity of a new track, fraction of the height per
    second (Deep SORT's 10/160 of the height per frame, at 7 fps)."""

    score_scaled_noise: bool = True
    """Scale a detection's measurement noise by ``1 - score`` (StrongSORT's
    NSA Kalman): confident boxes pull the state harder than doubtful ones."""


def xyxy_to_xyah(boxes_xyxy: np.ndarray) -> np.ndarray:
    """(N, 4) x1, y1, x2, y2 -> (N, 4) cx, cy, aspect (w/h), h."""
    b = np.asarray(boxes_xyxy, dtype=np.float64)
    w = b[:, 2] - b[:, 0]
    h = np.maximum(b[:, 3] - b[:, 1], 1e-6)
    out = np.empty((len(b), 4), dtype=np.float64)
    out[:, 0] = b[:, 0] + 0.5 * w
    out[:, 1] = b[:, 1] + 0.5 * h
    out[:, 2] = w / h
    out[:, 3] = h
    return out


def xyah_to_xyxy(xyah: np.ndarray) -> np.ndarray:
    """(N, >=4) cx, cy, aspect, h (extra columns ignored) -> (N, 4) x1, y1, x2, y2."""
    x = np.asarray(xyah, dtype=np.float64)
    h = x[:, 3]
    w = x[:, 2] * h
    out = np.empty((len(x), 4), dtype=np.float64)
    out[:, 0] = x[:, 0] - 0.5 * w
    out[:, 1] = x[:, 1] - 0.5 * h
    out[:, 2] = x[:, 0] + 0.5 * w
    out[:, 3] = x[:, 1] + 0.5 * h
    return out


def transition_matrix(dt_s: float) -> np.ndarray:
    """(8, 8) constant-velocity transition F for a step of ``dt_s`` seconds."""
    f = np.eye(STATE_DIM)
    f[:MEASURE_DIM, MEASURE_DIM:] = dt_s * np.eye(MEASURE_DIM)
    return f


def process_noise(params: KalmanParams, heights: np.ndarray, dt_s: float) -> np.ndarray:
    """(T, 8) diagonal of the process noise Q for a step of ``dt_s`` seconds.

    ``heights`` (T,) are the tracks' current box heights in pixels.
    """
    h = np.asarray(heights, dtype=np.float64)
    std = np.empty((len(h), STATE_DIM))
    std[:, 0] = std[:, 1] = std[:, 3] = params.process_position_std * h
    std[:, 2] = params.process_aspect_std
    std[:, 4] = std[:, 5] = std[:, 7] = params.process_velocity_std * h
    std[:, 6] = params.process_aspect_std
    return std * std * dt_s


def measurement_noise(
    params: KalmanParams, heights: np.ndarray, scores: np.ndarray | None = None
) -> np.ndarray:
    """(T, 4) diagonal of the measurement noise R.

    ``heights`` (T,) box heights in pixels; ``scores`` (T,) detection scores,
    used when ``params.score_scaled_noise`` (None: unscaled).
    """
    h = np.asarray(heights, dtype=np.float64)
    std = np.empty((len(h), MEASURE_DIM))
    std[:, 0] = std[:, 1] = std[:, 3] = params.measurement_std * h
    std[:, 2] = params.measurement_aspect_std
    var = std * std
    if scores is not None and params.score_scaled_noise:
        var *= (1.0 - np.clip(np.asarray(scores, dtype=np.float64), 0.0, 0.99))[:, None]
    return var


def initiate(params: KalmanParams, xyah: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """New tracks from (N, 4) measurements: (N, 8) means, (N, 8, 8) covariances.

    Velocity starts at zero with ``initial_velocity_std``; position uncertainty
    is twice the measurement noise, as in Deep SORT.
    """
    z = np.asarray(xyah, dtype=np.float64)
    n = len(z)
    mean = np.zeros((n, STATE_DIM))
    mean[:, :MEASURE_DIM] = z
    h = z[:, 3]
    std = np.empty((n, STATE_DIM))
    std[:, 0] = std[:, 1] = std[:, 3] = 2.0 * params.measurement_std * h
    std[:, 2] = params.measurement_aspect_std
    std[:, 4] = std[:, 5] = std[:, 7] = params.initial_velocity_std * h
    std[:, 6] = params.process_aspect_std
    cov = np.zeros((n, STATE_DIM, STATE_DIM))
    idx = np.arange(STATE_DIM)
    cov[:, idx, idx] = std * std
    return mean, cov


def predict(
    params: KalmanParams, mean: np.ndarray, cov: np.ndarray, dt_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """Advance (T, 8) means and (T, 8, 8) covariances by ``dt_s`` seconds.

    Returns new arrays: ``mean' = F mean``, ``cov' = F cov F^T + Q(dt)``.
    """
    if len(mean) == 0:
        return mean.copy(), cov.copy()
    f = transition_matrix(dt_s)
    new_mean = mean @ f.T
    new_cov = f @ cov @ f.T
    # add the diagonal Q through a flat view: every 9th entry of an 8x8 block
    new_cov.reshape(len(mean), STATE_DIM * STATE_DIM)[:, :: STATE_DIM + 1] += process_noise(
        params, mean[:, 3], dt_s
    )
    return new_mean, new_cov


def project(
    params: KalmanParams, mean: np.ndarray, cov: np.ndarray, scores: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Measurement-space (T, 4) means and (T, 4, 4) innovation covariances S = H P H^T + R."""
    r = measurement_noise(params, mean[:, 3], scores)
    s = cov[:, :MEASURE_DIM, :MEASURE_DIM].copy()
    idx = np.arange(MEASURE_DIM)
    s[:, idx, idx] += r
    return mean[:, :MEASURE_DIM].copy(), s


def update(
    params: KalmanParams,
    mean: np.ndarray,
    cov: np.ndarray,
    xyah: np.ndarray,
    scores: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Correct (K, 8) means / (K, 8, 8) covariances with (K, 4) measurements, pairwise.

    ``scores`` (K,) scale the measurement noise when ``params.score_scaled_noise``.
    Returns new arrays.
    """
    if len(mean) == 0:
        return mean.copy(), cov.copy()
    z_mean, s = project(params, mean, cov, scores)
    pht = cov[:, :, :MEASURE_DIM]  # (K, 8, 4) = P H^T
    # K = P H^T S^-1, solved as S K^T = H P (S symmetric).
    gain = np.linalg.solve(s, np.transpose(pht, (0, 2, 1))).transpose(0, 2, 1)
    innovation = np.asarray(xyah, dtype=np.float64) - z_mean
    new_mean = mean + np.einsum("kij,kj->ki", gain, innovation)
    new_cov = cov - np.einsum("kij,kjl,kml->kim", gain, s, gain)
    return new_mean, new_cov


def gating_distance(
    params: KalmanParams,
    mean: np.ndarray,
    cov: np.ndarray,
    xyah: np.ndarray,
    only_position: bool = False,
) -> np.ndarray:
    """(T, N) squared Mahalanobis distances of N measurements (N, 4) from T tracks.

    With ``only_position`` only (cx, cy) count (compare with ``CHI2_95_2DOF``).
    """
    z_mean, s = project(params, mean, cov)
    d = np.asarray(xyah, dtype=np.float64)[None, :, :] - z_mean[:, None, :]  # (T, N, 4)
    if only_position:
        d = d[:, :, :2]
        s = s[:, :2, :2]
    s_inv = np.linalg.inv(s)
    return np.einsum("tni,tij,tnj->tn", d, s_inv, d)
