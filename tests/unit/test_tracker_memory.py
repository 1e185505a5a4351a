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


def test_gallery_span_samples_the_whole_life_evenly() -> None:
    """The span holds vectors 0, s, 2s, ... of every vector added (s a power of two), never
    more than the capacity and at least half of it once full: the start of a track as well
    as its end, while the ring holds only the end."""
    cap = 8
    for n in (1, 5, 8, 9, 16, 17, 100, 1000):
        g = Gallery(capacity=cap, dim=1, momentum=0.9)
        for i in range(n):
            g.add(np.array([float(i)], np.float32))
        got = g.span_vectors()[:, 0].astype(int).tolist()
        s = g.span_stride
        assert got == list(range(0, n, s)), (n, s, got)
        assert len(got) <= cap and (n < cap or len(got) > cap // 2), (n, got)
        assert got[0] == 0 and got[-1] >= n - s  # from the first vector to the last stride
        assert g.vectors()[:, 0].astype(int).tolist() == list(range(max(0, n - cap), n))
        assert g.added == n


def test_a_tracklet_carries_the_whole_track_s_looks() -> None:
    """A person who turns slowly from look A to look B over 80 frames: the tracklet's vectors
    include A (its start), not only the ring's last few (all near B)."""
    from schemas.messages import unpack_f32

    a, b = np.eye(8, dtype=np.float32)[:2]
    params = TrackerParams(gallery_size=8, static_min_s=float("inf"))
    tracker = CameraTracker("cam", params)
    for f in range(80):
        w = f / 79
        v = (1 - w) * a + w * b
        box = np.array([[100.0 + 4 * f, 200.0, 150.0 + 4 * f, 320.0]], np.float32)
        emb = (v / np.linalg.norm(v))[None, :]
        tracker.step(ts(f, 10.0), f, box, np.array([0.9], np.float32), emb, None, [b"x"])
    (t,) = tracker.tracks
    assert float((t.gallery.vectors() @ a).max()) < 0.5  # the ring saw only the end
    (tracklet,) = tracker.close().finished
    vecs = unpack_f32(tracklet.embeddings, tracklet.embedding_dim)
    assert len(vecs) <= params.gallery_size
    assert float((vecs @ a).max()) > 0.99 and float((vecs @ b).max()) > 0.95


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
