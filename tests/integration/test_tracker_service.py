"""The tracker stage against the real Redis: checkpoint on revoke, restore on first sight, same ids."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from evaluation.synthetic import DIM, Walker, frame_detections, looks, ts
from schemas.codec import decode, encode
from schemas.messages import Detections, Tracklet, pack_f32
from schemas.topics import DETECTIONS, TRACKLETS
from service.kafka import Record
from tracker.core import TrackerParams
from tracker.service import TrackerStage
from tracker.state_store import RedisStateStore

pytestmark = pytest.mark.integration


def _records(camera: str, frames: range, partition: int = 3) -> list[Record]:
    lk = looks(2, seed=4)
    walkers = [
        Walker((100.0, 400.0), (60.0, 0.0), 120.0, lk[0], visible=(0, 30)),
        Walker((600.0, 300.0), (-30.0, 0.0), 90.0, lk[1]),
    ]
    rng = np.random.default_rng(0)
    out = []
    for f in range(frames.stop):
        boxes, scores, embs, _ = frame_detections(walkers, f, rng)
        if f < frames.start:
            continue
        msg = Detections(
            camera_id=camera,
            seq=f,
            ts_capture_ns=ts(f),
            width=768,
            height=576,
            boxes_xyxy=pack_f32(boxes),
            scores=pack_f32(scores),
            embeddings=pack_f32(embs),
            embedding_dim=DIM,
        )
        value = encode(msg)
        out.append(
            Record(
                DETECTIONS.name, partition, f, camera.encode(), value, decode(Detections, value), 0
            )
        )
    return out


def test_revoked_camera_continues_on_another_replica(redis_url: str) -> None:
    camera = f"it-tracker-{uuid.uuid4().hex[:8]}"
    store = RedisStateStore.from_url(redis_url, ttl_s=600)
    try:
        params = TrackerParams()
        a = TrackerStage(params, store, checkpoint_interval_s=3600)
        a.handle(_records(camera, range(0, 20)))
        ids_a = sorted(t.track_id for t in a.trackers[camera].tracks)
        a.on_revoke([3])
        a.on_assign([0, 1])
        assert camera not in a.trackers  # dropped: partition 3 went elsewhere

        b = TrackerStage(params, store, checkpoint_interval_s=3600)
        assert b.handle(_records(camera, range(15, 20))) == []  # replayed frames: skipped
        assert sorted(t.track_id for t in b.trackers[camera].tracks) == ids_a
        out_b = b.handle(_records(camera, range(20, 60)))

        single = TrackerStage(params, None)  # the uninterrupted reference
        out_ref = single.handle(_records(camera, range(0, 60)))
        tl_b = [decode(Tracklet, o.value) for o in out_b]
        tl_ref = [decode(Tracklet, o.value) for o in out_ref]
        assert tl_b and [t.tracklet_id for t in tl_b] == [t.tracklet_id for t in tl_ref]
        assert [t.frame_seqs for t in tl_b] == [t.frame_seqs for t in tl_ref]
        assert all(o.topic == TRACKLETS.name and o.key == camera.encode() for o in out_b)
    finally:
        store.delete(camera)
        store.close()


def test_periodic_checkpoint_only_after_the_interval(redis_url: str) -> None:
    camera = f"it-tracker-{uuid.uuid4().hex[:8]}"
    store = RedisStateStore.from_url(redis_url, ttl_s=600)
    now = [100.0]
    try:
        stage = TrackerStage(
            TrackerParams(), store, checkpoint_interval_s=2.0, clock=lambda: now[0]
        )
        stage.handle(_records(camera, range(0, 5)))
        stage.after_commit([3])
        assert store.load(camera) is None  # opened at t=100: not due yet
        now[0] += 2.5
        stage.after_commit([3])
        saved = store.load(camera)
        assert saved is not None and store.client.ttl(store.key(camera)) > 0
        stage.after_commit([3])  # nothing new: no rewrite needed
        assert store.load(camera) == saved
    finally:
        store.delete(camera)
        store.close()


def test_bad_arrays_are_dead_lettered_without_touching_state(redis_url: str) -> None:
    camera = f"it-tracker-{uuid.uuid4().hex[:8]}"
    stage = TrackerStage(TrackerParams(), None)
    good = _records(camera, range(0, 3))
    bad_msg = Detections(
        camera_id=camera,
        seq=3,
        ts_capture_ns=ts(3),
        width=1,
        height=1,
        boxes_xyxy=b"\0" * 12,
        scores=pack_f32(np.ones(1)),
    )
    bad = Record(DETECTIONS.name, 3, 3, camera.encode(), encode(bad_msg), bad_msg, 0)
    out = stage.handle([*good, bad])
    assert [o.topic for o in out] == ["crosscam.deadletter.v1"]
    assert stage.trackers[camera].last_seq == 2
