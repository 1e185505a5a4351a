"""A site plan: per camera, the homography from image pixels to plan coordinates.

Pure (OpenCV and numpy only). An admin gives, per camera, four or more image
points with the plan points they show (ground-plane landmarks: floor corners,
door sills). :func:`fit_homography` fits the plane-to-plane homography
(``cv2.findHomography``, least squares over all pairs) and refuses sets that
cannot define one: fewer than four pairs, three image (or plan) points on one
line, a singular result, or a fit whose pairs land far from their plan points.
Then a tracked person's foot point (the bottom centre of the box) maps to the
plan: :func:`plan_track` turns a tracklet's boxes into its plan trajectory.
Plan coordinates are the plan image's pixels, or longitude/latitude for a
geographic plan: the maths is the same.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

MIN_PAIRS = 4
MAX_PAIRS = 64
MAX_TRACK_POINTS = 64
"""A tracklet's plan trajectory keeps at most this many points (evenly spaced)."""
MAX_REL_ERROR = 0.05
"""Largest mean reprojection error of the pairs, as a share of the plan points' extent."""


class BadHomography(ValueError):
    """The point pairs cannot define an image-to-plan homography (why in the message)."""


def _collinear_triple(pts: np.ndarray, tol: float) -> bool:
    n = len(pts)
    for i in range(n):
        for j in range(i + 1, n):
            for k in range(j + 1, n):
                a, b, c = pts[i], pts[j], pts[k]
                area = abs((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]))
                if area <= tol:
                    return True
    return False


def _all_collinear(pts: np.ndarray) -> bool:
    """True when every point lies near one line (no homography can be fitted)."""
    centred = pts - pts.mean(axis=0)
    s = np.linalg.svd(centred, compute_uv=False)
    return bool(s[-1] <= 1e-6 * max(s[0], 1e-12))


def fit_homography(
    image_pts: Sequence[Sequence[float]], plan_pts: Sequence[Sequence[float]]
) -> np.ndarray:
    """The 3x3 homography taking image points to plan points (BadHomography when it cannot)."""
    img = np.asarray(image_pts, np.float64)
    plan = np.asarray(plan_pts, np.float64)
    if img.ndim != 2 or plan.ndim != 2 or img.shape[1:] != (2,) or plan.shape[1:] != (2,):
        raise BadHomography("points must be [x, y] pairs")
    if len(img) != len(plan):
        raise BadHomography("as many image points as plan points")
    if not MIN_PAIRS <= len(img) <= MAX_PAIRS:
        raise BadHomography(f"give {MIN_PAIRS} to {MAX_PAIRS} point pairs")
    if not (np.isfinite(img).all() and np.isfinite(plan).all()):
        raise BadHomography("points must be finite numbers")
    for name, pts in (("image", img), ("plan", plan)):
        extent = float(np.ptp(pts, axis=0).max())
        if extent <= 0 or _all_collinear(pts):
            raise BadHomography(f"the {name} points lie on one line")
        if len(pts) == MIN_PAIRS and _collinear_triple(pts, 1e-3 * extent * extent):
            raise BadHomography(f"three of the four {name} points lie on one line")
    h, _ = cv2.findHomography(img, plan, 0)
    if h is None or not np.isfinite(h).all() or abs(np.linalg.det(h)) < 1e-12:
        raise BadHomography("no homography fits these points")
    err = np.linalg.norm(project(h, img) - plan, axis=1).mean()
    scale = float(np.ptp(plan, axis=0).max())
    if not math.isfinite(err) or err > MAX_REL_ERROR * scale:
        raise BadHomography(f"the pairs disagree: mean error {err:.3g} on a plan {scale:.3g} wide")
    return h / h[2, 2]


def project(h: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """(N, 2) image points through homography ``h`` onto the plan."""
    p = np.asarray(pts, np.float64).reshape(-1, 1, 2)
    if len(p) == 0:
        return np.zeros((0, 2))
    return cv2.perspectiveTransform(p, np.asarray(h, np.float64)).reshape(-1, 2)


def foot_points(boxes_xyxy: np.ndarray) -> np.ndarray:
    """(N, 2) bottom centres of (N, 4) boxes: where a standing person touches the ground."""
    b = np.asarray(boxes_xyxy, np.float64).reshape(-1, 4)
    return np.stack([(b[:, 0] + b[:, 2]) / 2.0, b[:, 3]], axis=1)


def plan_track(h: np.ndarray, boxes_xyxy: np.ndarray, ts_ns: Sequence[int]) -> list[list[float]]:
    """A tracklet's plan trajectory: ``[t_ns, x, y]`` rows, at most MAX_TRACK_POINTS, in time order."""
    n = min(len(ts_ns), len(np.asarray(boxes_xyxy).reshape(-1, 4)))
    if n == 0:
        return []
    idx = np.unique(np.linspace(0, n - 1, min(n, MAX_TRACK_POINTS)).round().astype(int))
    pts = project(h, foot_points(np.asarray(boxes_xyxy).reshape(-1, 4)[idx]))
    rows = [
        [int(ts_ns[i]), round(float(x), 3), round(float(y), 3)]
        for i, (x, y) in zip(idx, pts, strict=True)
    ]
    return [r for r in rows if math.isfinite(r[1]) and math.isfinite(r[2])]
