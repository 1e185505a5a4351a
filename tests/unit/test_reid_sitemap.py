"""Image-to-plan homographies: a known one is recovered, point sets that cannot define one are
refused, and a tracklet's foot points land where the homography puts them."""

from __future__ import annotations

import numpy as np
import pytest

from reid.sitemap import (
    MAX_TRACK_POINTS,
    BadHomography,
    fit_homography,
    foot_points,
    plan_track,
    project,
)

H_TRUE = np.array([[0.5, 0.1, 10.0], [0.02, 0.8, 5.0], [0.0001, 0.0005, 1.0]])
IMAGE = [[0, 0], [640, 0], [640, 480], [0, 480], [320, 300]]


def test_a_known_homography_is_recovered_from_its_pairs() -> None:
    plan = project(H_TRUE, np.array(IMAGE, float))
    h = fit_homography(IMAGE, plan.tolist())
    assert np.allclose(h, H_TRUE / H_TRUE[2, 2], atol=1e-6)
    probe = np.array([[100.0, 200.0], [500.0, 50.0]])
    assert np.allclose(project(h, probe), project(H_TRUE, probe), atol=1e-6)


@pytest.mark.parametrize(
    ("image", "plan", "why"),
    [
        (IMAGE[:3], IMAGE[:3], "4 to"),
        (IMAGE, IMAGE[:4], "as many"),
        ([[0, 0], [1, 1], [2, 2], [3, 3]], [[0, 0], [1, 0], [1, 1], [0, 1]], "one line"),
        ([[0, 0], [10, 0], [20, 0], [5, 9]], [[0, 0], [1, 0], [1, 1], [0, 1]], "three of the four"),
        ([[0, 0], [1, 0], [1, float("nan")], [0, 1]], [[0, 0], [1, 0], [1, 1], [0, 1]], "finite"),
        ([[0, 0], [640, 0], [640, 480], [0, 480], [320, 240]],
         [[0, 0], [64, 0], [64, 48], [0, 48], [60, 2]], "disagree"),  # one pair contradicts the rest
        ([[0, 0, 0]] * 4, [[0, 0]] * 4, "pairs"),
    ],
)  # fmt: skip
def test_point_sets_that_cannot_define_a_homography_are_refused(image, plan, why) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BadHomography, match=why):
        fit_homography(image, plan)


def test_a_tracklets_foot_points_go_to_the_plan_in_time_order() -> None:
    boxes = np.array([[100, 50, 140, 210], [110, 60, 150, 220], [120, 70, 160, 230]], np.float32)
    ts = [10, 20, 30]
    track = plan_track(H_TRUE, boxes, ts)
    assert [r[0] for r in track] == ts
    want = project(H_TRUE, foot_points(boxes))
    assert np.allclose([r[1:] for r in track], want, atol=1e-3)
    assert foot_points(boxes)[0].tolist() == [120.0, 210.0]
    long = plan_track(H_TRUE, np.repeat(boxes[:1], 500, axis=0), list(range(500)))
    assert len(long) == MAX_TRACK_POINTS and long[0][0] == 0 and long[-1][0] == 499
    assert plan_track(H_TRUE, np.zeros((0, 4)), []) == []
