"""Operators' routes against the real stack: split/merge (Redis, Kafka, the embedded store) and
search by example (the real OSNet model on real PETS crops), with their bad inputs."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import count
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
import redis

from reid.api import ReidApi, start_api
from reid.embedding import MODEL_FILE, CropEmbedder
from reid.engine import Engine, EngineParams
from reid.linker import LinkerParams
from reid.operator import Corrector, MatchPublisher, load_constraints
from reid.operator_api import OperatorApi, Searcher, operator_router
from reid.qdrant_store import open_store
from schemas.keys import CONSTRAINTS_KEY
from schemas.messages import Crop, Tracklet, pack_f32
from schemas.topics import MATCHES
from service.assets import model_path
from service.settings import KafkaSettings
from service.web import WebContext
from tests.integration.kafka_helpers import consume_all
from tests.unit.test_reid_embedding import pets_crops
from tests.unit.test_reid_store import DIM, topo, tracklet
from tests.web_helpers import Tokens, db_url, web_world

pytestmark = pytest.mark.integration

OPS_DB = 12
BODY_CAP = 256 * 1024
KAFKA_WAIT_S = 60


@dataclass
class World:
    url: str
    tokens: Tokens
    ctx: WebContext
    engine: Engine
    redis_url: str
    prefix: str

    def call(self, method: str, path: str, role: str | None, **kw: object) -> httpx.Response:
        token = self.tokens.of(role)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        headers.update(kw.pop("headers", {}))  # type: ignore[arg-type]
        return httpx.request(method, self.url + path, headers=headers, timeout=30, **kw)  # type: ignore[arg-type]


def _engine(path: Path, dim: int, prefix: str, redis_url: str | None = None) -> Engine:
    ids = count(1)
    constraints = load_constraints(redis.Redis.from_url(redis_url)) if redis_url else None
    return Engine(open_store("edge", path, dim), topo(), EngineParams(linker=LinkerParams(link_distance=0.3)),
                  lambda: f"{prefix}{next(ids)}", path.parent / "thumbs", constraints)  # fmt: skip


@pytest.fixture
def world(redis_url: str, kafka_bootstrap: str, tmp_path: Path) -> Iterator[World]:
    """The ReID API with the operator routes, over an engine with people 1 (a, b) and 2 (c)."""
    prefix = f"op{uuid.uuid4().hex[:8]}-"
    url = db_url(redis_url, OPS_DB)
    with web_world(redis_url, OPS_DB, tmp_path, max_body_bytes=BODY_CAP) as (ctx, tokens):
        eng = _engine(tmp_path / "s", DIM, prefix, url)
        for row in [("a", 1, 0, 10, 1), ("b", 2, 12, 20, 1), ("c", 3, 100, 110, 2)]:
            eng.process(tracklet(*row))
        api = ReidApi(eng.store, eng.topology, tmp_path / "thumbs")
        corrector = Corrector(eng, threading.Lock(), redis.Redis.from_url(url))
        publisher = MatchPublisher(KafkaSettings(bootstrap_servers=kafka_bootstrap))
        ctx.on_stop.append(publisher.close)
        ops = OperatorApi(api, corrector, publisher, Searcher(model_path(MODEL_FILE)))
        server, port = start_api(api, ctx, "127.0.0.1", 0, [operator_router(ops)])
        try:
            yield World(f"http://127.0.0.1:{port}", tokens, ctx, eng, url, prefix)
        finally:
            server.stop()
            eng.store.close()


def _operator_events(bootstrap: str, gid: str, n: int) -> list[dict]:
    def mine(records: list) -> list[dict]:
        docs = [json.loads(r.value) for r in records]
        return [d for d in docs if d.get("by") == "operator" and d["global_id"] == gid]

    records = asyncio.run(
        consume_all(bootstrap, MATCHES.name, lambda rs: len(mine(rs)) >= n, KAFKA_WAIT_S)
    )
    return mine(records)


def test_split_is_published_audited_persisted_and_kept(world: World, kafka_bootstrap: str) -> None:
    w, p = world, world.prefix
    g1 = w.engine.identities(["a:1:0"])["a:1:0"]
    assert w.engine.identities(["b:2:12000000000"])["b:2:12000000000"] == g1  # linked by evidence
    r = w.call(
        "POST", f"/api/identities/{g1}/split", "admin", json={"tracklet_ids": ["b:2:12000000000"]}
    )
    assert r.status_code == 200, r.text
    new = r.json()["global_id"]
    assert new.startswith(p) and new != g1 and r.json()["published"] is True
    assert w.engine.store.get(["b:2:12000000000"])[0].global_id == new
    assert w.engine.linker.global_id("b:2:12000000000") == new
    events = _operator_events(kafka_bootstrap, new, 1)
    assert [(e["kind"], e["tracklet_id"], e["merged_ids"]) for e in events] == [
        ("split", "b:2:12000000000", [g1])
    ]
    audit = [e for e in w.ctx.audit_log.query(who="ada")[0] if e.action == "identity.split"]
    assert audit and audit[0].status == 200 and new in audit[0].ids
    # persisted: a restarted service loads the same constraint
    again = load_constraints(redis.Redis.from_url(w.redis_url))
    assert again.cannot_link("a:1:0", "b:2:12000000000")
    assert redis.Redis.from_url(w.redis_url).llen(CONSTRAINTS_KEY) >= 1
    # later evidence close to both (person 1 again on c) does not bring them back together
    w.engine.process(tracklet("c", 7, 25, 30, 1))
    ids = w.engine.identities(["a:1:0", "b:2:12000000000"])
    assert ids["a:1:0"] != ids["b:2:12000000000"]


def test_merge_joins_identities_and_is_published(world: World, kafka_bootstrap: str) -> None:
    w = world
    g1 = w.engine.identities(["a:1:0"])["a:1:0"]
    g2 = w.engine.identities(["c:3:100000000000"])["c:3:100000000000"]
    assert g1 != g2
    r = w.call("POST", f"/api/identities/{g1}/merge", "admin", json={"global_ids": [g2]})
    assert r.status_code == 200, r.text
    assert r.json()["tracklets_moved"] == 1 and r.json()["published"] is True
    assert w.call("GET", f"/api/identities/{g2}", "viewer").status_code == 404
    assert "c" in w.call("GET", f"/api/identities/{g1}", "viewer").json()["cameras"]
    events = _operator_events(kafka_bootstrap, g1, 1)
    assert events[0]["kind"] == "merge" and events[0]["merged_ids"] == [g2]


def test_corrections_refuse_bad_requests(world: World) -> None:
    w = world
    g1 = w.engine.identities(["a:1:0"])["a:1:0"]
    split = f"/api/identities/{g1}/split"
    body = {"json": {"tracklet_ids": ["b:2:12000000000"]}}
    assert w.call("POST", split, None, **body).status_code == 401
    assert w.call("POST", split, "operator", **body).status_code == 403  # corrections: admin
    for bad in ({}, {"tracklet_ids": []}, {"tracklet_ids": ["<x>"]}, {"tracklet_ids": "b"},
                {"tracklet_ids": ["a:1:0", "b:2:12000000000"]},  # nothing would stay
                {"tracklet_ids": ["b:2:12000000000", "b:2:12000000000"]}):  # fmt: skip
        r = w.call("POST", split, "admin", json=bad)
        assert r.status_code == 422 and "error" in r.json(), (bad, r.text)
    r = w.call("POST", split, "admin", json={"tracklet_ids": ["c:3:100000000000"]})
    assert r.status_code == 404  # not this identity's
    assert (
        w.call("POST", f"/api/identities/{w.prefix}999/split", "admin", **body).status_code == 404
    )
    assert w.call("POST", "/api/identities/%3Cb%3E/split", "admin", **body).status_code == 422
    assert w.call("GET", split, "admin").status_code == 405
    merge = f"/api/identities/{g1}/merge"
    assert w.call("POST", merge, "admin", json={"global_ids": [g1]}).status_code == 422
    assert (
        w.call("POST", merge, "admin", json={"global_ids": [f"{w.prefix}999"]}).status_code == 404
    )
    big = {"tracklet_ids": ["x" * 255] * 1100}  # over the body cap
    assert w.call("POST", split, "admin", json=big).status_code == 413
    # nothing changed, nothing persisted
    assert w.engine.identities(["b:2:12000000000"])["b:2:12000000000"] == g1
    assert redis.Redis.from_url(w.redis_url).llen(CONSTRAINTS_KEY) == 0


@pytest.fixture
def photo_world(
    redis_url: str, tmp_path: Path
) -> Iterator[tuple[World, dict[int, list[np.ndarray]]]]:
    """512-d store of real OSNet vectors: PETS person 1 on a, 17 on b, 5 on c (one crop each)."""
    crops = pets_crops((1, 17, 5), 2)
    emb = CropEmbedder(model_path(MODEL_FILE))
    with web_world(redis_url, OPS_DB, tmp_path, max_body_bytes=BODY_CAP) as (ctx, tokens):
        eng = _engine(tmp_path / "s", 512, "px")
        for i, (cam, person) in enumerate((("a", 1), ("b", 17), ("c", 5))):
            img = crops[person][0]
            jpeg = cv2.imencode(".jpg", img)[1].tobytes()
            crop = Crop(seq=0, ts_capture_ns=0, box_xyxy=[0, 0, 10, 20], score=0.9, quality=1.0,
                        jpeg=jpeg, embedding=pack_f32(emb.embed([img])[0]))  # fmt: skip
            t0 = (i * 100) * 10**9
            eng.process(Tracklet(camera_id=cam, tracklet_id=f"{cam}:{person}:{t0}", track_id=person,
                                 ts_start_ns=t0, ts_end_ns=t0 + 10**10, crops=[crop]))  # fmt: skip
        api = ReidApi(eng.store, eng.topology, tmp_path / "thumbs")
        ops = OperatorApi(api, None, None, Searcher(model_path(MODEL_FILE)))
        server, port = start_api(api, ctx, "127.0.0.1", 0, [operator_router(ops)])
        try:
            yield World(f"http://127.0.0.1:{port}", tokens, ctx, eng, "", "px"), crops
        finally:
            server.stop()
            eng.store.close()


def test_search_by_example_ranks_the_same_person_first(photo_world) -> None:  # type: ignore[no-untyped-def]
    w, crops = photo_world
    other_view = cv2.imencode(".png", crops[17][1])[1].tobytes()  # another frame of person 17
    r = w.call(
        "POST", "/api/search", "operator", content=other_view, headers={"Content-Type": "image/png"}
    )
    assert r.status_code == 200, r.text
    cands = r.json()["candidates"]
    assert cands[0]["tracklet_id"] == "b:17:100000000000", cands
    assert cands[0]["distance"] < cands[1]["distance"]
    # within cameras and a time window
    r = w.call(
        "POST", "/api/search?cameras=a,c&since=0&until=250000000000", "operator", content=other_view
    )
    assert {c["camera_id"] for c in r.json()["candidates"]} <= {"a", "c"}
    r = w.call("POST", "/api/search?since=150000000000", "operator", content=other_view)
    assert [c["camera_id"] for c in r.json()["candidates"]] == ["c"]
    # a stored crop picked instead of an upload finds its own tracklet, nearly at distance 0
    r = w.call("POST", "/api/search?thumbnail=a/a_1_0.jpg", "operator")
    assert r.status_code == 200 and r.json()["candidates"][0]["tracklet_id"] == "a:1:0"
    assert r.json()["candidates"][0]["distance"] < 0.05  # JPEG-coded crop vs the raw one
    audit = [e for e in w.ctx.audit_log.query(who="otto")[0] if e.action == "search"]
    assert len(audit) == 4 and "b:17:100000000000" in audit[0].ids


def test_search_by_example_refuses_bad_inputs(photo_world) -> None:  # type: ignore[no-untyped-def]
    w, crops = photo_world
    jpeg = cv2.imencode(".jpg", crops[1][1])[1].tobytes()
    assert w.call("POST", "/api/search", None, content=jpeg).status_code == 401
    assert w.call("POST", "/api/search", "viewer", content=jpeg).status_code == 403
    assert w.call("POST", "/api/search", "operator").status_code == 422  # no image
    for bad in (b"GIF89a" + b"\x00" * 100, b"%PDF-1.4 not an image", jpeg[:200]):
        r = w.call(
            "POST", "/api/search", "operator", content=bad, headers={"Content-Type": "image/jpeg"}
        )
        assert r.status_code == 415 and "error" in r.json(), r.text
    assert (
        w.call("POST", "/api/search", "operator", content=b"\xff" * (BODY_CAP + 1)).status_code
        == 413
    )
    assert w.call("POST", "/api/search?thumbnail=a/../x.jpg", "operator").status_code == 404
    assert (
        w.call("POST", "/api/search?thumbnail=a/a_1_0.jpg", "operator", content=jpeg).status_code
        == 422
    )
    assert w.call("POST", "/api/search?area=1,2", "operator", content=jpeg).status_code == 422
    assert (
        w.call("POST", "/api/search?cameras=%3Cx%3E", "operator", content=jpeg).status_code == 422
    )
    assert (
        w.call("POST", "/api/search?since=5&until=1", "operator", content=jpeg).status_code == 422
    )
    assert w.call("GET", "/api/search", "operator").status_code == 405
