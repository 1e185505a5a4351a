"""Linker core: constraints, transit rules, merges, splits, replays, bounded memory."""

from __future__ import annotations

from itertools import count

import numpy as np
import pytest

from common.units import NS_PER_S
from reid.linker import Linker, LinkerParams, Sighting
from reid.topology import Topology
from schemas.cameras import Camera, CamerasFile, Link

DIM = 16


def unit(seed: int, noise: float = 0.0, base: int | None = None) -> np.ndarray:
    """A unit vector: person ``base`` (or ``seed``) plus a little noise seeded by ``seed``."""
    rng = np.random.default_rng(seed)
    v = np.random.default_rng(1000 + (seed if base is None else base)).normal(size=DIM)
    v = v / np.linalg.norm(v) + noise * rng.normal(size=DIM) / np.sqrt(DIM)
    return (v / np.linalg.norm(v)).astype(np.float32)


def sight(tid: str, cam: str, t0: float, t1: float, vec: np.ndarray) -> Sighting:
    return Sighting(tid, cam, int(t0 * NS_PER_S), int(t1 * NS_PER_S), vec)


def chain(window_s: float = 120.0, min_s: float = 1.0, max_s: float = 20.0) -> Topology:
    cams = [Camera(id=c) for c in ("a", "b", "c", "far")]
    links = [
        Link(a="a", b="b", min_transit_s=min_s, max_transit_s=max_s),
        Link(a="b", b="c", min_transit_s=min_s, max_transit_s=max_s),
    ]
    return Topology(CamerasFile(window_s=window_s, cameras=cams, links=links))


def make(topology: Topology | None = None, **kw: float) -> Linker:
    ids = count(1)
    return Linker(topology or Topology.open_world(), LinkerParams(**kw), lambda: f"g{next(ids)}")  # type: ignore[arg-type]


def test_overlapping_tracklets_on_one_camera_are_never_linked() -> None:
    """Same look, same camera, overlapping in time: two people, two identities."""
    lk = make(link_same_camera=True, same_camera_link_distance=0.5)
    v = unit(1)
    lk.add_live(sight("t1", "a", 0, 10, v))
    r = lk.add_live(sight("t2", "a", 5, 15, v))
    assert r.events[0].kind == "new_identity"
    assert lk.global_id("t1") != lk.global_id("t2")
    lk.add_live(sight("t3", "a", 16, 20, v))  # same camera, after t2: a re-entry, linked
    assert lk.global_id("t3") in (lk.global_id("t1"), lk.global_id("t2"))


def test_identical_vectors_link_across_cameras_when_times_allow() -> None:
    lk = make(chain())
    lk.add_live(sight("t1", "a", 0, 10, unit(1)))
    r = lk.add_live(sight("t2", "b", 13, 20, unit(2, 0.1, base=1)))
    assert r.events[0].kind == "link"
    assert r.events[0].matched[0].tracklet_id == "t1"
    assert lk.global_id("t1") == lk.global_id("t2")


@pytest.mark.parametrize(
    ("gap_s", "linked"),
    [(0.5, False), (1.5, True), (19.0, True), (25.0, False)],
)
def test_transit_time_bounds_are_honoured(gap_s: float, linked: bool) -> None:
    """a-b allows 1-20 s: faster than the minimum or slower than the maximum is no link."""
    lk = make(chain(min_s=1.0, max_s=20.0), overlap_tolerance_s=0.0)
    lk.add_live(sight("t1", "a", 0, 10, unit(1)))
    lk.add_live(sight("t2", "b", 10 + gap_s, 30, unit(1)))
    assert (lk.global_id("t1") == lk.global_id("t2")) is linked


def test_unconnected_cameras_are_never_linked() -> None:
    lk = make(chain())
    lk.add_live(sight("t1", "a", 0, 10, unit(1)))
    lk.add_live(sight("t2", "far", 15, 20, unit(1)))
    assert lk.global_id("t1") != lk.global_id("t2")


def test_no_topology_any_camera_within_the_window() -> None:
    lk = make(Topology.open_world(window_s=60))
    lk.add_live(sight("t1", "a", 0, 10, unit(1)))
    lk.add_live(sight("t2", "far", 15, 20, unit(1)))
    lk.add_live(sight("t3", "b", 100, 110, unit(1)))  # 80 s after t2: outside the window
    assert lk.global_id("t1") == lk.global_id("t2") != lk.global_id("t3")


def test_one_person_is_not_in_two_places_at_once() -> None:
    """t2 (cam b) and t3 (cam c) overlap in time: they cannot both join t1's identity."""
    lk = make(chain(min_s=0.0))
    lk.add_live(sight("t1", "a", 0, 10, unit(1)))
    lk.add_live(sight("t2", "b", 12, 20, unit(2, 0.05, base=1)))
    lk.add_live(sight("t3", "c", 14, 22, unit(3, 0.2, base=1)))
    assert lk.global_id("t1") == lk.global_id("t2")
    assert lk.global_id("t3") != lk.global_id("t1")


def test_bridging_tracklet_merges_two_identities_and_says_so() -> None:
    """a and c are too far apart in look to link directly; b resembles both and joins them."""
    lk = make(chain(), link_distance=0.35)
    va, vc = np.eye(DIM, dtype=np.float32)[:2]  # distance 1 apart
    vb = (va + vc) / np.linalg.norm(va + vc)  # 0.29 from each
    assert 1 - va @ vc > 0.35 and 1 - va @ vb < 0.35 and 1 - vc @ vb < 0.35
    lk.add_live(sight("t1", "a", 0, 10, va))
    lk.add_live(sight("t3", "c", 40, 50, vc))  # a -> c: transit 2-40 s, 30 s gap fits
    assert lk.global_id("t1") != lk.global_id("t3")
    r = lk.add_live(sight("t2", "b", 15, 25, vb))
    kinds = [e.kind for e in r.events]
    assert kinds[0] == "link"
    merges = [e for e in r.events if e.kind == "merge"]
    assert len(merges) == 1
    assert merges[0].global_id == "g1" and merges[0].merged_ids == ["g2"]
    assert lk.global_id("t1") == lk.global_id("t2") == lk.global_id("t3") == "g1"


def test_better_evidence_splits_an_earlier_link() -> None:
    """t2 first joins t1 (the only candidate); t3 arrives, is t2's near twin and conflicts
    with t1 (overlap on camera a), so the revisit moves t2 out of t1's identity."""
    lk = make(chain(min_s=0.0), link_distance=0.4)
    base = unit(1)
    lk.add_live(sight("t1", "a", 0, 10, base))
    t2 = unit(7, 0.0, base=7)
    mixed = (base + 0.9 * t2) / np.linalg.norm(base + 0.9 * t2)
    lk.add_live(sight("t2", "b", 12, 20, mixed))
    assert lk.global_id("t2") == lk.global_id("t1")
    r = lk.add_live(sight("t3", "a", 5, 11, mixed))  # overlaps t1 on camera a
    assert any(e.kind == "split" and e.tracklet_id == "t2" for e in r.events)
    assert lk.global_id("t2") == lk.global_id("t3") != lk.global_id("t1")


def test_replayed_tracklet_changes_nothing() -> None:
    lk = make(chain())
    s1 = sight("t1", "a", 0, 10, unit(1))
    s2 = sight("t2", "b", 12, 20, unit(1))
    lk.add_live(s1)
    lk.add_live(s2)
    before = lk.identities()
    assert lk.add_live(s1).events == [] and lk.add_live(s2).events == []
    assert lk.identities() == before


def test_live_window_and_anchors_are_bounded() -> None:
    lk = make(
        Topology.open_world(window_s=30), revisit_window_s=30, max_live_tracklets=10, max_anchors=25
    )
    for i in range(200):
        lk.add_live(sight(f"t{i}", f"c{i % 3}", i * 2.0, i * 2.0 + 1, unit(i)))
        assert lk.live_count() <= 10
        assert lk.anchor_count() <= 25
    assert len(lk.identities()) <= 35


def test_frozen_identity_keeps_its_id_when_a_new_tracklet_joins() -> None:
    """A tracklet older than the window is an anchor: a new one joins its identity."""
    lk = make(Topology.open_world(window_s=100), revisit_window_s=5)
    lk.add_live(sight("t1", "a", 0, 10, unit(1)))
    lk.add_live(sight("x", "c", 20, 30, unit(9)))  # moves the window on: t1 frozen
    assert lk.anchor_count() == 1
    from reid.linker import Neighbour

    r = lk.add(
        sight("t2", "b", 40, 50, unit(1)), [Neighbour("t1", "a", 0, 10 * NS_PER_S, "g1", 0.01)]
    )
    assert r.events[0].kind == "link" and lk.global_id("t2") == "g1"
