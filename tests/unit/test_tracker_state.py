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


def test_restored_span_continues_as_uninterrupted() -> None:
    """The even sample over a track's life (what its tracklet carries) survives a restore:
    same stride and count, vectors equal to float16 rounding, and it goes on alike."""
    params = TrackerParams(gallery_size=4)  # full and strided within the scene
    original = CameraTracker("cam-1", params)
    _feed(original, range(0, 20))
    restored = state.loads(state.dumps(original), params)
    _feed(original, range(20, 40))
    _feed(restored, range(20, 40))
    pairs = list(zip(original.tracks, restored.tracks, strict=True))
    assert pairs and any(a.gallery.span_stride > 1 for a, _ in pairs)
    for a, b in pairs:
        assert (a.gallery.added, a.gallery.span_stride) == (b.gallery.added, b.gallery.span_stride)
        np.testing.assert_allclose(a.gallery.span_vectors(), b.gallery.span_vectors(), atol=2e-3)


def test_a_state_saved_before_the_span_still_restores() -> None:
    """A checkpoint written by the build before (tracks without the span's three trailing
    fields) restores: the span restarts from the saved recent vectors."""
    import msgspec

    tracker = CameraTracker("cam-1", TrackerParams())
    _feed(tracker, range(0, 20))
    raw = msgspec.msgpack.decode(state.dumps(tracker))
    for t in raw[-1]:  # tracks: drop span, span_stride, added
        del t[-3:]
    restored = state.loads(msgspec.msgpack.encode(raw))
    assert len(restored.tracks) == len(tracker.tracks)
    for a, b in zip(tracker.tracks, restored.tracks, strict=True):
        np.testing.assert_allclose(b.gallery.span_vectors(), a.gallery.vectors(), atol=2e-3)
        assert b.gallery.added == len(a.gallery)


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
