"""Retention and erasure against the real Kafka and Redis: topic retention.ms is set on the
broker, an erased identity's Redis keys go and an ``erased`` event reaches the match topic."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import redis

from reid.erasure_job import erase_everywhere, erase_redis_keys, publish_erased
from reid.qdrant_store import open_store
from reid.retention_job import set_topic_retention, topic_retention
from schemas.keys import identity_key
from schemas.topics import MATCHES
from service.settings import KafkaSettings
from tests.integration.kafka_helpers import consume_all, create_topics, unique

pytestmark = pytest.mark.integration


async def test_topic_retention_is_set_on_the_broker(kafka_bootstrap: str) -> None:
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    short, long_ = unique("it-retention-short"), unique("it-retention-long")
    await create_topics(kafka_bootstrap, short, long_)
    before = await topic_retention(kafka, [short, long_])
    assert before[short] == before[long_] != 3_600_000  # the broker's default (a week)

    wanted = {short: 3_600_000, long_: 30 * 86_400_000, unique("it-missing"): 1}
    applied = await set_topic_retention(kafka, wanted)

    assert applied == {short: 3_600_000, long_: 30 * 86_400_000}  # a missing topic is not created
    assert await topic_retention(kafka, [short, long_]) == applied


def test_erasure_deletes_the_identitys_redis_keys_only(redis_url: str, tmp_path: Path) -> None:
    client = redis.Redis.from_url(redis_url)
    gid, other = f"g{uuid.uuid4().int % 10**9}", f"g{uuid.uuid4().int % 10**9}x"
    keys = [identity_key(gid), identity_key(gid) + ":route", identity_key(gid) + ":thumbs:1"]
    for k in keys:
        client.set(k, b"data about the person", ex=600)
    client.set(identity_key(gid + "0"), b"someone else", ex=600)  # a prefix, not the same id
    client.set(identity_key(other), b"someone else", ex=600)
    store = open_store("edge", tmp_path / "store", 8)

    report = erase_everywhere(store, tmp_path / "thumbs", gid, redis_client=client)

    assert report.redis_keys == 3
    assert not any(client.exists(k) for k in keys)
    assert client.exists(identity_key(gid + "0")) and client.exists(identity_key(other))
    assert erase_redis_keys(client, gid) == 0  # idempotent
    client.delete(identity_key(gid + "0"), identity_key(other))
    store.close()


async def test_erased_event_reaches_the_match_topic(kafka_bootstrap: str) -> None:
    gid = f"g-it-{uuid.uuid4().hex[:8]}"
    await publish_erased(KafkaSettings(bootstrap_servers=kafka_bootstrap), gid)
    records = await consume_all(
        kafka_bootstrap, MATCHES.name, lambda rs: any(r.key == gid.encode() for r in rs)
    )
    mine = [json.loads(r.value) for r in records if r.key == gid.encode()]
    assert mine and mine[-1]["kind"] == "erased" and mine[-1]["global_id"] == gid


def test_erased_tracklets_are_remembered_until_the_topic_forgets_them(
    redis_url: str, tmp_path: Path
) -> None:
    from reid.erasure_job import erased_tracklets, remember_erased
    from schemas.keys import ERASED_TRACKLETS_KEY
    from tests.unit.test_reid_store import engine, tracklet

    client = redis.Redis.from_url(redis_url)
    eng = engine(tmp_path / "store", tmp_path / "thumbs")
    tag = uuid.uuid4().hex[:6]
    t1, t2 = tracklet(f"a{tag}", 1, 0, 10, 1), tracklet(f"a{tag}", 2, 30, 40, 2)
    eng.process(t1)
    eng.process(t2)
    gid = eng.identities([t1.tracklet_id])[t1.tracklet_id]
    erase_everywhere(eng.store, tmp_path / "thumbs", gid, linker=eng.linker, redis_client=client)
    assert erased_tracklets(client, [t1.tracklet_id, t2.tracklet_id]) == {t1.tracklet_id}
    # entries expire with the tracklets topic's retention
    old = f"old-{tag}"
    remember_erased(client, [old], keep_s=10, now_s=1_000)
    assert erased_tracklets(client, [old]) == {old}
    remember_erased(client, [], now_s=2_000_000_000)  # any later pass prunes expired entries
    assert erased_tracklets(client, [old, t1.tracklet_id]) == set()
    client.zrem(ERASED_TRACKLETS_KEY, t1.tracklet_id)
