"""Appearance on demand: which boxes are embedded, and what carried vectors are worth."""

from __future__ import annotations

import numpy as np
import pytest

from detector.analyzer import Analyzer
from detector.appearance import AppearanceGate
from detector.config import AnalyzerConfig, AppearanceConfig
from evaluation.video import video_frames
from service.assets import models_dir, pets_dir

# Two people far apart, 160 px tall.
APART = np.array([[100, 100, 160, 260], [400, 100, 460, 260]], np.float32)
SCORES = np.array([0.9, 0.9], np.float32)
SHARP = np.array([200.0, 200.0], np.float32)


def _step(gate: AppearanceGate, boxes: np.ndarray, scores: np.ndarray = SCORES) -> np.ndarray:
    plan = gate.plan("cam", boxes, scores[: len(boxes)], SHARP[: len(boxes)])
    fresh = np.eye(len(boxes), 4, dtype=np.float32)[plan.embed]
    gate.resolve("cam", plan, fresh)
    return plan.embed


def test_first_frame_is_embedded_then_unambiguous_continuations_carry() -> None:
    gate = AppearanceGate(AppearanceConfig(on_demand=True))
    assert _step(gate, APART).all()
    assert not _step(gate, APART + [3, 1, 3, 1]).any()


def test_carried_vector_is_the_parent_box_s() -> None:
    gate = AppearanceGate(AppearanceConfig(on_demand=True))
    plan = gate.plan("cam", APART, SCORES, SHARP)
    first = gate.resolve("cam", plan, np.array([[1, 0], [0, 1]], np.float32))
    swapped = APART[::-1] + 2  # same people, listed in the other order
    plan = gate.plan("cam", swapped, SCORES, SHARP)
    assert not plan.embed.any() and plan.parent.tolist() == [1, 0]
    got = gate.resolve("cam", plan, np.zeros((0, 2), np.float32))
    np.testing.assert_array_equal(got, first[::-1])


def test_people_touching_are_embedded() -> None:
    gate = AppearanceGate(AppearanceConfig(on_demand=True))
    close = np.array([[100, 100, 160, 260], [150, 100, 210, 260]], np.float32)
    _step(gate, close)
    assert _step(gate, close + 1).all()


def test_a_box_that_jumped_is_embedded() -> None:
    gate = AppearanceGate(AppearanceConfig(on_demand=True))
    _step(gate, APART)
    moved = APART.copy()
    moved[0] += [45, 0, 45, 0]  # IoU with its old place < 0.5
    assert _step(gate, moved).tolist() == [True, False]


def test_vectors_are_refreshed_every_n_frames() -> None:
    gate = AppearanceGate(AppearanceConfig(on_demand=True, refresh_frames=3))
    embedded = [bool(_step(gate, APART + k)[0]) for k in range(7)]
    assert embedded == [True, False, False, True, False, False, True]


def test_a_better_crop_is_embedded() -> None:
    gate = AppearanceGate(AppearanceConfig(on_demand=True, better_ratio=1.1))
    _step(gate, APART)
    slightly = np.array([0.95, 0.9], np.float32)  # 5.6 % better: a near-tie, carried
    assert not _step(gate, APART + 1, slightly).any()
    better = np.array([1.0, 0.9], np.float32)  # 11 % better than the chain's best
    assert _step(gate, APART + 2, better).tolist() == [True, False]
    assert not _step(gate, APART + 3, better).any(), "no better than the chain's best now"
    every = AppearanceGate(AppearanceConfig(on_demand=True))  # the default: any better crop
    _step(every, APART)
    assert _step(every, APART + 1, slightly).tolist() == [True, False]


def test_off_reset_and_order_checks() -> None:
    assert AppearanceConfig().on_demand  # the default
    off = AppearanceGate(AppearanceConfig(on_demand=False))  # every box embedded
    _step(off, APART)
    assert _step(off, APART + 1).all()
    gate = AppearanceGate(AppearanceConfig(on_demand=True))
    _step(gate, APART)
    gate.reset("cam")
    assert _step(gate, APART + 1).all()
    plan = gate.plan("cam", APART, SCORES, SHARP)
    gate.plan("cam", APART, SCORES, SHARP)
    with pytest.raises(RuntimeError, match="out of order"):
        gate.resolve("other", plan, np.zeros((0, 4), np.float32))


@pytest.fixture(scope="module")
def pets_frames() -> list[np.ndarray]:
    return [f for i, f in video_frames(pets_dir() / "vtest.avi", 100) if i >= 70]


def test_on_pets_most_boxes_carry_and_carried_vectors_stay_the_person_s(
    pets_frames: list[np.ndarray],
) -> None:
    """30 consecutive PETS09 frames (7 fps): fewer crops embedded; a carried vector is
    nearest to its own person's fresh vector among the frame's people."""
    on = Analyzer.from_config(
        AnalyzerConfig(appearance={"on_demand": True}, models_dir=models_dir())
    )
    every = Analyzer(on.detector, on.embedder)  # no gate: every box embedded
    boxes = embedded = own_nearest = 0
    cos: list[float] = []
    for frame in pets_frames:
        got = on.analyze("pets", frame)
        boxes += on.last_timing.boxes
        embedded += on.last_timing.crops
        ref = every.analyze("pets", frame)
        np.testing.assert_array_equal(got.boxes_xyxy, ref.boxes_xyxy)
        sims = got.embeddings @ ref.embeddings.T
        carried = np.flatnonzero(np.diag(sims) < 0.99999)
        cos.extend(np.diag(sims)[carried].tolist())
        own_nearest += int((sims[carried].argmax(axis=1) == carried).sum())
    assert boxes >= 150
    assert embedded / boxes <= 0.75, (embedded, boxes)
    assert len(cos) >= 0.3 * boxes
    assert own_nearest >= 0.95 * len(cos), (own_nearest, len(cos))
    assert np.median(cos) >= 0.85 and min(cos) >= 0.6, (np.median(cos), min(cos))


def test_carried_vectors_are_flagged_on_the_bus_and_kept_out_of_the_track_gallery() -> None:
    """A carried vector reaches the tracker marked; the track matches with it but its
    matching gallery holds one vector per embedded crop, while the tracklet's whole-life
    sample holds one per frame (a carried vector repeated for the frames it stands for)."""
    from detector.analyzer import FrameAnalysis
    from detector.core import to_detections
    from schemas.codec import decode, encode
    from schemas.messages import Detections, Frame
    from tracker.core import CameraTracker, TrackerParams

    gate = AppearanceGate(AppearanceConfig(on_demand=True, refresh_frames=4))
    tracker = CameraTracker("cam", TrackerParams(confirm_hits=1))
    rng = np.random.default_rng(0)
    carried_seen, fresh_seen = 0, 0
    for i in range(12):
        boxes = APART + np.float32(2 * i) * np.array([1, 0, 1, 0], np.float32)
        plan = gate.plan("cam", boxes, SCORES, SHARP)
        fresh = rng.normal(size=(int(plan.embed.sum()), 8)).astype(np.float32)
        fresh /= np.linalg.norm(fresh, axis=1, keepdims=True)
        vectors = gate.resolve("cam", plan, fresh)
        res = FrameAnalysis("cam", (480, 640), boxes, SCORES, vectors, SHARP, carried=~plan.embed)
        frame = Frame(
            camera_id="cam", seq=i, ts_capture_ns=(i + 1) * 100_000_000, width=640, height=480
        )
        msg = decode(Detections, encode(to_detections(frame, res, [], 0)))
        got = msg.carried_array()
        if plan.embed.all():
            assert got is None and msg.carried == b""  # all fresh: nothing on the wire
        else:
            np.testing.assert_array_equal(got, ~plan.embed)
        carried_seen += int((~plan.embed).sum())
        fresh_seen += int(plan.embed.sum())
        tracker.step_detections(msg)
    assert carried_seen > fresh_seen > 0
    assert len(tracker.tracks) == 2  # the carried vectors still match their people
    per_track = fresh_seen // 2
    for t in tracker.tracks:
        assert len(t.gallery) == min(per_track, t.gallery.capacity)
        # every kept vector distinct: no repeats of a carried one
        v = t.gallery.vectors()
        assert len({tuple(np.round(r, 5)) for r in v}) == len(v)
        # the whole-life sample counts every frame: a carried vector stands for the frames
        # it was carried over, so the sample is even in time (as with every box embedded)
        span = t.gallery.span_vectors()
        assert len(span) == min(12, t.gallery.capacity) > len(v)
        assert len({tuple(np.round(r, 5)) for r in span}) == len(v)
    # a malformed flag (wrong length) is ignored: every vector counts as fresh
    bad = Detections(camera_id="cam", seq=99, ts_capture_ns=1, width=1, height=1, carried=b"\x01")
    assert bad.carried_array() is None


def test_without_span_counting_the_tracklet_sample_holds_embedded_vectors_only() -> None:
    """``span_counts_carried=false``: the whole-life sample is the embedded vectors alone,
    crowded where many boxes were embedded; the default spreads it over every frame."""
    from tracker.core import CameraTracker, TrackerParams

    spans = {}
    for counts in (False, True):
        gate = AppearanceGate(AppearanceConfig(on_demand=True, refresh_frames=6))
        tracker = CameraTracker("cam", TrackerParams(confirm_hits=1, span_counts_carried=counts))
        rng = np.random.default_rng(1)
        for i in range(18):
            boxes = APART + np.float32(2 * i) * np.array([1, 0, 1, 0], np.float32)
            plan = gate.plan("cam", boxes, SCORES, SHARP)
            fresh = rng.normal(size=(int(plan.embed.sum()), 8)).astype(np.float32)
            fresh /= np.linalg.norm(fresh, axis=1, keepdims=True)
            tracker.step(
                (i + 1) * 100_000_000,
                i,
                boxes,
                SCORES,
                gate.resolve("cam", plan, fresh),
                SHARP,
                None,
                carried=~plan.embed,
            )
        spans[counts] = [len(t.gallery.span_vectors()) for t in tracker.tracks]
        if not counts:
            assert all(len(t.gallery.span_vectors()) == len(t.gallery) for t in tracker.tracks)
    assert spans[False] == [3, 3]  # frames 0, 6 and 12 embedded (refresh every 6)
    assert spans[True] == [18, 18]  # every frame, the capacity (32) not reached
