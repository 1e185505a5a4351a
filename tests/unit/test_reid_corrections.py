"""Operators' corrections as linking constraints: the linker never re-links what a person split,
keeps what a person merged, and the constraints survive a round trip through their records."""

from __future__ import annotations

from itertools import count

import numpy as np
import pytest

from common.units import NS_PER_S
from reid.corrections import Constraints, Member, parse_record, plan_merge, plan_split
from reid.linker import Linker, LinkerParams, Sighting
from reid.topology import Topology

E = np.eye(8, dtype=np.float32)


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


def _s(tid: str, cam: str, t0: float, v: np.ndarray) -> Sighting:
    return Sighting(tid, cam, int(t0 * NS_PER_S), int((t0 + 10) * NS_PER_S), _unit(v))


def _linker(constraints: Constraints | None = None) -> Linker:
    ids = count(1)
    return Linker(Topology.open_world(), LinkerParams(link_distance=0.35), lambda: f"g{next(ids)}",
                  constraints)  # fmt: skip


def _bridge(lk: Linker) -> None:
    """t1 (a) and t3 (c) look alike enough only through t2 (b), which joins them."""
    lk.add_live(_s("t1", "a", 0, E[0]))
    lk.add_live(_s("t3", "c", 40, E[1]))
    lk.add_live(_s("t2", "b", 15, E[0] + E[1]))


def test_without_corrections_the_bridge_merges_everyone() -> None:
    lk = _linker()
    _bridge(lk)
    assert len({lk.global_id(t) for t in ("t1", "t2", "t3")}) == 1  # the test can fail below


def test_a_split_is_never_relinked_by_later_evidence() -> None:
    c = Constraints()
    lk = _linker(c)
    lk.add_live(_s("t1", "a", 0, E[0]))
    lk.add_live(_s("t2", "b", 15, E[0] + 0.2 * E[1]))
    assert lk.global_id("t1") == lk.global_id("t2") == "g1"
    members = [Member("t1", "a", 0, 10), Member("t2", "b", 15, 25)]
    fix = plan_split(c, "g1", members, ["t2"], lambda: "g9", 123)
    lk.relabel(fix.assigned)
    assert fix.assigned == {"t2": "g9"} and c.cannot_link("t1", "t2")
    ev = fix.events[0]
    assert (ev.kind, ev.by, ev.global_id, ev.merged_ids, ev.tracklet_id) == (
        "split", "operator", "g9", ["g1"], "t2")  # fmt: skip
    # new sightings close to both reopen the component: t1 and t2 stay apart
    lk.add_live(_s("t4", "c", 40, E[0] + 0.1 * E[1]))
    lk.add_live(_s("t5", "d", 60, E[0]))
    assert lk.global_id("t1") != lk.global_id("t2")
    assert lk.global_id("t2") == "g9"


def test_a_merge_holds_through_reclustering() -> None:
    c = Constraints()
    lk = _linker(c)
    lk.add_live(_s("t1", "a", 0, E[0]))
    lk.add_live(_s("t3", "c", 40, E[1]))
    assert lk.global_id("t1") != lk.global_id("t3")
    groups = {"g1": [Member("t1", "a", 0, 10)], "g2": [Member("t3", "c", 40, 50)]}
    fix = plan_merge(c, "g1", groups, 5)
    lk.relabel(fix.assigned)
    assert fix.events[0].kind == "merge" and fix.events[0].merged_ids == ["g2"]
    assert fix.events[0].by == "operator"
    # x looks like t3 but overlaps t1 on camera a; y bridges all three. Evidence alone
    # now puts t1 and t3 apart (x-t3 join first, then t1 cannot join them); the merge holds.
    lk.add_live(_s("x", "a", 2, E[1]))
    lk.add_live(_s("y", "b", 20, E[0] + E[1]))
    assert lk.global_id("t1") == lk.global_id("t3") == "g1"
    assert lk.global_id("x") != "g1"


def test_a_merge_undoes_an_earlier_split_and_the_records_round_trip() -> None:
    c = Constraints()
    members = [Member("t1", "a", 0, 1), Member("t2", "b", 2, 3), Member("t3", "c", 4, 5)]
    plan_split(c, "g1", members, ["t2", "t3"], lambda: "g2", 0)
    assert c.cannot_link("t1", "t3") and c.must_groups(["t2", "t3"]) == [["t2", "t3"]]
    again = Constraints.from_records(c.records())
    assert again.records() == c.records() and len(again) == 3
    plan_merge(c, "g1", {"g1": members[:1], "g2": members[1:]}, 0)
    assert not c.cannot_link("t1", "t2") and not c.cannot_link("t1", "t3")
    assert c.must_groups(["t1", "t2", "t3"]) == [["t1", "t2", "t3"]]
    assert parse_record("must\tx\ty") == ("must", "x", "y")
    with pytest.raises(ValueError):
        parse_record("maybe\tx\ty")


def test_bad_corrections_are_refused_without_taking_an_id() -> None:
    c = Constraints()
    members = [Member("t1", "a", 0, 1), Member("t2", "b", 2, 3)]
    taken: list[str] = []

    def new_id() -> str:
        taken.append("g9")
        return "g9"

    with pytest.raises(KeyError):
        plan_split(c, "g1", members, ["t7"], new_id, 0)
    with pytest.raises(ValueError):
        plan_split(c, "g1", members, ["t1", "t2"], new_id, 0)  # nothing would stay
    with pytest.raises(ValueError):
        plan_split(c, "g1", members, ["t2", "t2"], new_id, 0)
    with pytest.raises(ValueError):
        plan_merge(c, "g1", {"g1": members}, 0)
    with pytest.raises(KeyError):
        plan_merge(c, "g1", {"g1": members, "g2": []}, 0)
    assert taken == [] and len(c) == 0
