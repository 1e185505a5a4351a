"""The ReID stage over the real Kafka and Redis: matches published keyed by global id,
restart keeps global ids, a replayed tracklet publishes nothing."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest
import redis

from reid.engine import Engine, EngineParams
from reid.linker import LinkerParams
from reid.qdrant_store import open_store
from reid.service import ReidStage, redis_global_ids
from schemas.codec import encode
from schemas.messages import Tracklet
from schemas.topics import MATCHES, TRACKLETS, Topic
from service.kafka import run_stage
from service.settings import KafkaSettings
from tests.integration.kafka_helpers import consume_all, create_topics, produce
from tests.unit.test_reid_store import DIM, topo, tracklet

pytestmark = pytest.mark.integration


def make_engine(data: Path, redis_url: str, key: str) -> Engine:
    eng = Engine(open_store("edge", data / "store", DIM), topo(), EngineParams(linker=LinkerParams()),
                 redis_global_ids(redis.Redis.from_url(redis_url), key), data / "thumbs")  # fmt: skip
    eng.restore()
    return eng


async def run_until(stage: ReidStage, bootstrap: str, group: str, done, topic: str) -> None:  # type: ignore[no-untyped-def]
    # A tracklets topic of this test alone: the shared one holds every earlier
    # test's tracklets, which a new group would have to work through first.
    stage.input = Topic(topic, Tracklet, "msgpack", "camera_id")
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_stage(stage, KafkaSettings(bootstrap_servers=bootstrap), group, stop)
    )
    try:
        await done()
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


async def test_stage_publishes_matches_and_restarts_with_the_same_ids(
    tmp_path: Path, kafka_bootstrap: str, redis_url: str
) -> None:
    tag = uuid.uuid4().hex[:6]
    cams = {c: f"{c}-{tag}" for c in ("a", "b", "c")}
    key = f"crosscam:test:gid:{tag}"
    tracklets_topic = f"{TRACKLETS.name}.it-{tag}"
    # One partition: the stage sees the sightings in the order they happened (keys
    # are cameras, and across partitions Kafka keeps no order).
    await create_topics(kafka_bootstrap, tracklets_topic, partitions=1)

    def mine(records: list) -> list[dict]:  # type: ignore[type-arg]
        docs = [json.loads(r.value) for r in records]
        # The matches topic is shared with every other test of the session: events
        # are this test's when they name its cameras (no merge is expected here).
        return [d for d in docs if d.get("camera_id", "").endswith(tag)]

    # cameras named per test run: the topology knows a/b/c, so rename through a local topology
    from reid.topology import Topology
    from schemas.cameras import Camera, CamerasFile, Link

    t = Topology(CamerasFile(cameras=[Camera(id=v) for v in cams.values()],
                             links=[Link(a=cams["a"], b=cams["b"]), Link(a=cams["b"], b=cams["c"])]))  # fmt: skip
    first = [
        tracklet(cams["a"], 1, 0, 10, 1),
        tracklet(cams["b"], 2, 12, 20, 1),
        tracklet(cams["c"], 3, 22, 30, 7),
    ]

    eng = make_engine(tmp_path, redis_url, key)
    eng.topology = t
    eng.linker.topology = t
    group = f"it-reid-{tag}"
    await produce(
        kafka_bootstrap, tracklets_topic, [(x.camera_id.encode(), encode(x)) for x in first]
    )

    async def three() -> None:
        await consume_all(
            kafka_bootstrap, MATCHES.name, lambda rs: len(mine(rs)) >= 3, timeout_s=90
        )

    await run_until(ReidStage(eng), kafka_bootstrap, group, three, tracklets_topic)
    eng.store.close()
    events = mine(
        await consume_all(kafka_bootstrap, MATCHES.name, lambda rs: len(mine(rs)) >= 3, 30)
    )
    kinds = {(e["camera_id"], e["kind"]) for e in events}
    assert kinds == {(cams["a"], "new_identity"), (cams["b"], "link"), (cams["c"], "new_identity")}
    link = next(e for e in events if e["kind"] == "link")
    first_gid = link["global_id"]
    assert link["matched"][0]["tracklet_id"] == first[0].tracklet_id

    # restart: a new engine over the same store; replay + one new sighting of person 1
    eng2 = make_engine(tmp_path, redis_url, key)
    eng2.topology = t
    eng2.linker.topology = t
    later = tracklet(cams["c"], 4, 40, 50, 1)
    await produce(
        kafka_bootstrap,
        tracklets_topic,
        [(x.camera_id.encode(), encode(x)) for x in [*first, later]],
    )

    async def four() -> None:
        await consume_all(
            kafka_bootstrap, MATCHES.name, lambda rs: len(mine(rs)) >= 4, timeout_s=90
        )

    await run_until(ReidStage(eng2), kafka_bootstrap, group, four, tracklets_topic)
    events = mine(
        await consume_all(kafka_bootstrap, MATCHES.name, lambda rs: len(mine(rs)) >= 4, 30)
    )
    assert len(events) == 4  # the replayed three published nothing new
    # Matches are keyed by global id, so they spread over partitions: read order
    # across partitions is not publication order. Find the new sighting's event.
    newest = next(e for e in events if e.get("tracklet_id") == later.tracklet_id)
    assert newest["kind"] == "link" and newest["global_id"] == first_gid
    records = await consume_all(kafka_bootstrap, MATCHES.name, lambda rs: len(mine(rs)) >= 4, 30)
    keyed = [r for r in records if json.loads(r.value).get("tracklet_id") == later.tracklet_id]
    assert keyed[0].key == first_gid.encode()
    eng2.store.close()
