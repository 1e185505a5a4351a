"""Bounded memory: galleries, crops, box histories and the tracker itself stay capped on long streams."""

from __future__ import annotations

import numpy as np

from evaluation.synthetic import Walker, frame_detections, looks, ts
from tracker import state
from tracker.core import CameraTracker, TrackerParams
from tracker.track import Gallery


def test_gallery_keeps_at_most_its_capacity_newest_first_out() -> None:
    g = Gallery(capacity=8, dim=4, momentum=0.9)
    vecs = np.eye(4, dtype=np.float32)
    for i in range(1000):
        g.add(vecs[i % 4])
    assert len(g) == 8 and g.vectors().shape == (8, 4)
    np.testing.assert_array_equal(g.vectors()[-1], vecs[999 % 4])  # newest last
    assert abs(float(np.linalg.norm(g.smoothed)) - 1.0) < 1e-5


def test_a_person_standing_for_an_hour_stays_bounded() -> None:
    """One track matched for an hour at 1 fps (3,600 frames): history, gallery, crops and state capped."""
    # a synthetic box with 1 px jitter is as still as a sign post: static suppression off here
    params = TrackerParams(
        max_history_frames=256, gallery_size=16, crops_per_tracklet=4, static_min_s=float("inf")
    )
    w = Walker((300.0, 400.0), (0.0, 0.0), 150.0, looks(1)[0])
    tracker = CameraTracker("cam", params)
    rng = np.random.default_rng(0)
    fps = 1.0
    frames = 3600
    sizes = []
    for f in range(frames):
        boxes, scores, embs, _ = frame_detections([w], 0, rng)  # standing still
        tracker.step(ts(f, fps), f, boxes, scores, embs, None, [b"x" * 100])
        if f in (frames // 4, frames - 1):
            sizes.append(len(state.dumps(tracker)))
    (t,) = tracker.tracks
    assert len(t.hist_seqs) <= params.max_history_frames
    assert len(t.gallery) == params.gallery_size and len(t.crops) <= params.crops_per_tracklet
    assert sizes[1] <= sizes[0] * 1.1  # the state did not grow over the last three quarters
    (tracklet,) = tracker.close().finished
    assert tracklet.frame_seqs[0] == 0 and tracklet.frame_seqs[-1] == frames - 1  # whole span kept
    assert len(tracklet.frame_seqs) <= params.max_history_frames + 1


def test_people_coming_and_going_do_not_accumulate_tracks() -> None:
    """A new person every 2 s, each visible 6 s, for 10 minutes: live tracks stay few."""
    lk = looks(16, seed=9)
    tracker = CameraTracker("cam", TrackerParams())
    rng = np.random.default_rng(1)
    fps, duration_s, every_s, visible_s = 7, 600, 2, 6
    walkers = [
        Walker(
            (50.0, 300.0 + 10 * (k % 5)),
            (100.0, 0.0),
            120.0,
            lk[k % 16],
            visible=(k * every_s * fps, (k * every_s + visible_s) * fps),
        )
        for k in range(duration_s // every_s)
    ]
    most = 0
    finished = 0
    for f in range(duration_s * fps):
        active = [w for w in walkers if w.visible[0] <= f < w.visible[1]]
        boxes, scores, embs, _ = frame_detections(active, f, rng)
        for i, w in enumerate(active):  # each person enters at x = 50 when they appear
            dt = (f - w.visible[0]) / fps
            boxes[i] = np.float32(
                [50 + 100 * dt - 24, w.start_xy[1] - 120, 50 + 100 * dt + 24, w.start_xy[1]]
            )
        res = tracker.step(ts(f, fps), f, boxes, scores, embs)
        finished += len(res.finished)
        most = max(most, len(tracker.tracks))
    assert most <= visible_s // every_s + 3
    assert finished >= len(walkers) - 5
