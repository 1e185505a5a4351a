"""Tracker state survives serialisation: a restored tracker continues exactly like the original."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.synthetic import Walker, frame_detections, looks, ts
from tracker import state
from tracker.core import CameraTracker, TrackerParams


def _scene() -> list[Walker]:
    lk = looks(4, seed=1)
    return [
        Walker((100.0, 400.0), (70.0, 0.0), 120.0, lk[0], hidden=(17, 24)),
        Walker((500.0, 405.0), (-70.0, 0.0), 120.0, lk[1]),
        Walker((300.0, 250.0), (10.0, 20.0), 80.0, lk[2], visible=(5, 30)),
        Walker((50.0, 500.0), (90.0, -10.0), 160.0, lk[3], visible=(10, 60)),
    ]


def _feed(tracker: CameraTracker, frames: range, seed: int = 2) -> list[tuple]:
    rng = np.random.default_rng(seed)
    out = []
    walkers = _scene()
    for f in range(frames.stop):
        boxes, scores, embs, who = frame_detections(
            walkers, f, rng
        )  # same noise whatever the start
        if f < frames.start:
            continue
        sharp = np.full(len(who), 80.0 + f, np.float32)
        res = tracker.step(ts(f), f, boxes, scores, embs, sharp, [f"{f}:{k}".encode() for k in who])
        out.append(
            (
                res.duplicate,
                res.tracks,
                [(t.tracklet_id, t.frame_seqs, t.boxes_xyxy, t.crops) for t in res.finished],
            )
        )
    return out


def test_restored_tracker_continues_identically() -> None:
    params = TrackerParams()
    original = CameraTracker("cam-1", params)
    _feed(original, range(0, 20))
    data = state.dumps(original)
    restored = state.loads(data, params)
    assert state.dumps(restored) == data
    a = _feed(original, range(20, 70))
    b = _feed(restored, range(20, 70))
    assert a == b
    assert any(finished for _, _, finished in a)  # tracklets were emitted after the restore
    assert restored.ids.next_id == original.ids.next_id


def test_restored_tracker_skips_frames_it_has_seen() -> None:
    """A replica replays the uncommitted tail of the partition: those frames are not applied twice."""
    original = CameraTracker("cam-1", TrackerParams())
    _feed(original, range(0, 20))
    restored = state.loads(state.dumps(original))
    replay = _feed(restored, range(15, 25))
    assert [dup for dup, _, _ in replay] == [True] * 5 + [False] * 5


def test_state_is_compact() -> None:
    """Four live tracks with 16-d vectors and 2-byte-ish crops: a few kB, mostly history."""
    tracker = CameraTracker("cam-1", TrackerParams())
    _feed(tracker, range(0, 20))
    data = state.dumps(tracker)
    per_track = len(data) / len(tracker.tracks)
    print(
        {
            "tracks": len(tracker.tracks),
            "state_bytes": len(data),
            "bytes_per_track": round(per_track),
        }
    )
    assert per_track < 4000


def test_broken_or_foreign_state_is_refused() -> None:
    with pytest.raises(state.StateError):
        state.loads(b"\x93not a state")
    tracker = CameraTracker("cam-1", TrackerParams())
    snap = state._decoder.decode(state.dumps(tracker))
    snap.version = state.STATE_VERSION + 1
    with pytest.raises(state.StateError, match="version"):
        state.loads(state._encoder.encode(snap))
