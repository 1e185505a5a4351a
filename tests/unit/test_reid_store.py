"""The embedded Qdrant store (qdrant-edge, real engine), the engine over it, re-identify queries."""

from __future__ import annotations

from itertools import count
from pathlib import Path

import numpy as np
import pytest

from common.units import NS_PER_S
from reid.engine import Engine, EngineParams
from reid.linker import LinkerParams
from reid.qdrant_store import EdgeStore, open_store
from reid.query import ReidQuery, reidentify
from reid.store import Scope, StoredTracklet, point_id
from reid.topology import Topology
from schemas.cameras import Camera, CamerasFile, Link, Location
from schemas.messages import Crop, Tracklet, pack_f32

DIM = 32


def vec(person: int, noise: float, seed: int) -> np.ndarray:
    v = np.random.default_rng(person).normal(size=DIM)
    v = v / np.linalg.norm(v) + noise * np.random.default_rng(10_000 + seed).normal(
        size=DIM
    ) / np.sqrt(DIM)
    return (v / np.linalg.norm(v)).astype(np.float32)


def tracklet(cam: str, tid: int, t0: float, t1: float, person: int) -> Tracklet:
    crops = [
        Crop(seq=i, ts_capture_ns=int(t0 * NS_PER_S), box_xyxy=[0, 0, 10, 20], score=0.9, quality=1.0 + i,
             jpeg=b"\xff\xd8fakejpeg" if i == 0 else b"", embedding=pack_f32(vec(person, 0.1, tid * 10 + i)))
        for i in range(4)
    ]  # fmt: skip
    return Tracklet(camera_id=cam, tracklet_id=f"{cam}:{tid}:{int(t0 * NS_PER_S)}", track_id=tid,
                    ts_start_ns=int(t0 * NS_PER_S), ts_end_ns=int(t1 * NS_PER_S), crops=crops)  # fmt: skip


def topo() -> Topology:
    cams = [
        Camera(id=c, location=Location(x=float(i) * 100, y=0.0))
        for i, c in enumerate(("a", "b", "c"))
    ]
    links = [
        Link(a="a", b="b", min_transit_s=0, max_transit_s=30),
        Link(a="b", b="c", min_transit_s=0, max_transit_s=30),
    ]
    return Topology(CamerasFile(cameras=cams, links=links))


def engine(path: Path, thumbs: Path | None = None) -> Engine:
    ids = count(1)
    return Engine(open_store("edge", path, DIM), topo(), EngineParams(linker=LinkerParams(link_distance=0.3)),
                  lambda: f"g{next(ids)}", thumbs)  # fmt: skip


SCRIPT = [
    ("a", 1, 0, 10, 1),
    ("b", 2, 12, 20, 1),
    ("c", 3, 22, 30, 1),
    ("a", 4, 5, 15, 2),
    ("b", 5, 18, 25, 2),
]


def test_point_id_is_deterministic() -> None:
    assert point_id("cam0:1:5") == point_id("cam0:1:5") != point_id("cam0:1:6")


def test_replaying_the_same_tracklets_leaves_store_and_identities_unchanged(tmp_path: Path) -> None:
    eng = engine(tmp_path / "s", tmp_path / "thumbs")
    tracklets = [tracklet(*row) for row in SCRIPT]
    for t in tracklets:
        eng.process(t)
    ids = [t.tracklet_id for t in tracklets]
    before = eng.identities(ids)
    assert eng.store.count() == len(tracklets)
    assert before[ids[0]] == before[ids[1]] == before[ids[2]] != before[ids[3]]
    replay = [eng.process(t) for t in tracklets]
    assert all(r.events == [] for r in replay)
    assert eng.store.count() == len(tracklets)
    assert eng.identities(ids) == before
    stored = {s.tracklet_id: s.global_id for s in eng.store.scroll(Scope())}
    assert stored == before
    assert (tmp_path / "thumbs" / "a" / "a_1_0.jpg").read_bytes().startswith(b"\xff\xd8")
    eng.store.close()


def test_restart_keeps_global_ids(tmp_path: Path) -> None:
    """A new engine over the same store dir restores identities and replays change nothing."""
    eng = engine(tmp_path / "s")
    tracklets = [tracklet(*row) for row in SCRIPT]
    for t in tracklets:
        eng.process(t)
    before = eng.identities([t.tracklet_id for t in tracklets])
    eng.store.close()
    eng2 = engine(tmp_path / "s")
    assert eng2.restore() == len(tracklets)
    assert all(eng2.process(t).events == [] for t in tracklets)
    r = eng2.process(tracklet("c", 9, 40, 45, 1))  # person 1 again: joins the restored identity
    assert r.events[0].kind == "link"
    assert eng2.identities([tracklets[0].tracklet_id, "c:9:40000000000"]) == {
        tracklets[0].tracklet_id: before[tracklets[0].tracklet_id],
        "c:9:40000000000": before[tracklets[0].tracklet_id],
    }
    eng2.store.close()


def test_search_filters_by_camera_and_time(tmp_path: Path) -> None:
    store = EdgeStore(tmp_path / "s", DIM)
    store.upsert([
        StoredTracklet(f"{cam}:{i}", cam, int(t * NS_PER_S), int((t + 5) * NS_PER_S), f"g{i}", vec(1, 0.05, i))
        for i, (cam, t) in enumerate([("a", 0), ("b", 10), ("c", 20), ("a", 100), ("b", 200)])
    ])  # fmt: skip
    q = vec(1, 0.0, 99)
    assert len(store.search(q, Scope(), limit=10)) == 5
    cams = {
        h.tracklet.camera_id for h in store.search(q, Scope(cameras=frozenset({"a"})), limit=10)
    }
    assert cams == {"a"}
    hits = store.search(q, Scope(ts_from_ns=8 * NS_PER_S, ts_to_ns=30 * NS_PER_S), limit=10)
    assert sorted(h.tracklet.tracklet_id for h in hits) == ["b:1", "c:2"]
    hits = store.search(q, Scope(cameras=frozenset({"a", "b"}), ts_from_ns=50 * NS_PER_S), limit=10)
    assert sorted(h.tracklet.tracklet_id for h in hits) == ["a:3", "b:4"]
    assert all(a.distance <= b.distance for a, b in zip(hits, hits[1:], strict=False))
    store.close()


def test_reidentify_query_filters_by_cameras_area_and_time(tmp_path: Path) -> None:
    eng = engine(tmp_path / "s")
    rows = [("a", 1, 0, 10, 1), ("b", 2, 100, 110, 3), ("c", 3, 200, 210, 4), ("b", 4, 300, 310, 5)]
    for row in rows:
        eng.process(tracklet(*row))
    q = "a:1:0"
    everything = reidentify(eng.store, eng.topology, ReidQuery(tracklet_id=q))
    assert {c.camera_id for c in everything} == {"b", "c"}
    only_c = reidentify(eng.store, eng.topology, ReidQuery(tracklet_id=q, cameras=frozenset({"c"})))
    assert [c.camera_id for c in only_c] == ["c"]
    area = reidentify(
        eng.store, eng.topology, ReidQuery(tracklet_id=q, area=(50, -1, 150, 1))
    )  # camera b only
    assert {c.camera_id for c in area} == {"b"}
    timed = reidentify(
        eng.store,
        eng.topology,
        ReidQuery(tracklet_id=q, ts_from_ns=250 * NS_PER_S, ts_to_ns=400 * NS_PER_S),
    )
    assert [c.tracklet_id for c in timed] == ["b:4:300000000000"]
    gid = eng.identities([q])[q]
    by_id = reidentify(eng.store, eng.topology, ReidQuery(global_id=gid))
    assert {c.tracklet_id for c in by_id} == {c.tracklet_id for c in everything}
    with pytest.raises(KeyError):
        reidentify(eng.store, eng.topology, ReidQuery(tracklet_id="nope"))
    eng.store.close()
