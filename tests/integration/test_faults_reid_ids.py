"""Regression: ReID global ids stay unique when Redis loses its counter.

Bug (found by ``test_faults.py::test_redis_restart_and_camera_drop``): the ReID
stage took global ids from a bare ``INCR`` on a Redis key, and the local
Redis runs without persistence. After a Redis restart mid-stream the counter
started from 0 again and the next new person was given ``g1`` — an identity
already in use — so the matches topic merged two different people. Now the
counter never goes back below the highest id this process gave out, nor the
highest id in the store at start (a Redis restart while ReID was down).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
import redis

from reid.qdrant_store import open_store
from reid.service import highest_global_id, redis_global_ids
from reid.store import StoredTracklet

pytestmark = pytest.mark.integration


def test_ids_do_not_repeat_after_the_counter_is_lost(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    key = f"crosscam:test:gid:{uuid.uuid4().hex}"
    try:
        next_id = redis_global_ids(client, key)
        assert [next_id(), next_id(), next_id()] == ["g1", "g2", "g3"]
        client.delete(key)  # what a Redis restart without persistence does
        assert next_id() == "g4"
        # and a second replica on the same key never hands out a number twice
        other = redis_global_ids(client, key)
        assert [other(), next_id()] == ["g5", "g6"]
    finally:
        client.delete(key)
        client.close()


def test_floor_from_the_store_at_start(redis_url: str, tmp_path: Path) -> None:
    """ReID restarted after Redis lost the counter: ids continue after the store's highest."""
    store = open_store("edge", tmp_path / "store", 4)
    try:
        assert highest_global_id(store) == 0
        store.upsert(
            [
                StoredTracklet(
                    tracklet_id=f"cam0:{i}:{i}",
                    camera_id="cam0",
                    ts_start_ns=i,
                    ts_end_ns=i + 1,
                    global_id=gid,
                    vector=np.eye(4, dtype=np.float32)[i % 4],
                )
                for i, gid in enumerate(["g2", "g17", "g9"])
            ]
        )
        assert highest_global_id(store) == 17
        client = redis.Redis.from_url(redis_url)
        key = f"crosscam:test:gid:{uuid.uuid4().hex}"
        try:
            assert redis_global_ids(client, key, floor=highest_global_id(store))() == "g18"
        finally:
            client.delete(key)
            client.close()
    finally:
        store.close()
