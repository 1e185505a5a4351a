"""Erasure of one identity: store points, thumbnails and linker state all go; the person
comes back as a new identity; an erased id is never drawn by the anonymizer again."""

from __future__ import annotations

from pathlib import Path

import pytest

from crosscam.anonymize import salted_labeler, store_labeler
from reid.erasure import check_global_id, erase_identity, forget_identity
from reid.linker import Linker, LinkerParams, Sighting
from reid.store import Scope
from schemas.codec import decode, encode, json_schema
from schemas.messages import Match
from tests.unit.test_reid_store import engine, topo, tracklet, vec


def run_script(tmp_path: Path):  # type: ignore[no-untyped-def]
    eng = engine(tmp_path / "store", tmp_path / "thumbs")
    person1 = [tracklet("a", 1, 0, 10, 1), tracklet("b", 2, 12, 20, 1)]
    person2 = [tracklet("a", 4, 5, 15, 2)]
    for t in person1 + person2:
        eng.process(t)
    return eng, person1, person2


def test_erasure_reaches_store_thumbnails_and_linker(tmp_path: Path) -> None:
    eng, person1, person2 = run_script(tmp_path)
    ids = eng.identities([t.tracklet_id for t in person1 + person2])
    gid, other = ids[person1[0].tracklet_id], ids[person2[0].tracklet_id]
    assert ids[person1[1].tracklet_id] == gid != other
    thumbs = tmp_path / "thumbs"
    assert len(list(thumbs.rglob("*.jpg"))) == 3

    report = erase_identity(eng.store, thumbs, gid, eng.linker)

    assert report.tracklets == sorted(t.tracklet_id for t in person1)
    assert report.thumbnails == 2 and report.linker_tracklets == 2
    assert not list(eng.store.scroll(Scope(global_ids=frozenset([gid]))))
    assert eng.store.get([t.tracklet_id for t in person1], with_vectors=True) == []
    assert [p.name for p in thumbs.rglob("*.jpg")] == [
        f"{person2[0].tracklet_id.replace(':', '_')}.jpg"
    ]
    assert gid not in eng.linker.identities().values()
    assert all(t.tracklet_id not in eng.linker._edges for t in person1)
    # the other person is untouched
    assert eng.identities([person2[0].tracklet_id]) == {person2[0].tracklet_id: other}
    # idempotent
    again = erase_identity(eng.store, thumbs, gid, eng.linker)
    assert not again.found and again.tracklets == []


def test_the_same_person_later_starts_a_new_identity(tmp_path: Path) -> None:
    eng, person1, _ = run_script(tmp_path)
    gid = eng.identities([person1[0].tracklet_id])[person1[0].tracklet_id]
    # control: without erasure, the next sighting of person 1 links to gid
    control, _, _ = run_script(tmp_path / "control")
    later = tracklet("c", 7, 22, 30, 1)
    control.process(later)
    assert control.identities([later.tracklet_id])[later.tracklet_id] == gid

    erase_identity(eng.store, tmp_path / "thumbs", gid, eng.linker)
    result = eng.process(later)
    new = eng.identities([later.tracklet_id])[later.tracklet_id]
    assert new != gid
    assert [e.kind for e in result.events] == ["new_identity"]


def test_forget_identity_clears_the_live_window_of_an_offline_linker() -> None:
    ids = iter(range(1, 100))
    linker = Linker(topo(), LinkerParams(link_distance=0.3), lambda: f"g{next(ids)}")

    def sighting(cam: str, t0: float, t1: float, person: int) -> Sighting:
        return Sighting(
            f"{cam}:{t0}", cam, int(t0 * 1e9), int(t1 * 1e9), vec(person, 0.05, int(t0))
        )

    linker.add_live(sighting("a", 0, 10, 1))
    linker.add_live(sighting("b", 12, 20, 1))
    gid = linker.global_id("a:0")
    assert linker.global_id("b:12") == gid
    assert sorted(forget_identity(linker, gid)) == ["a:0", "b:12"]
    linker.add_live(sighting("c", 22, 30, 1))
    assert linker.global_id("c:22") not in (None, gid)
    assert linker.live_count() == 1


def test_an_erased_id_is_never_drawn_on_anonymised_video(tmp_path: Path) -> None:
    eng, person1, _ = run_script(tmp_path)
    gid = eng.identities([person1[0].tracklet_id])[person1[0].tracklet_id]
    label = store_labeler(eng.store, 0.3, salted_labeler(b"k" * 16))
    looks_like_person1 = vec(1, 0.05, 999)
    assert label(1, looks_like_person1) == gid
    erase_identity(eng.store, tmp_path / "thumbs", gid, eng.linker)
    after = label(1, looks_like_person1)
    assert after != gid and after.startswith("p")


@pytest.mark.parametrize("bad", ["", "g1*", "../g1", "g 1", "x" * 65, "g1\n"])
def test_malformed_global_ids_are_refused(bad: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        check_global_id(bad)


def test_erased_event_round_trips_and_matches_its_json_schema() -> None:
    import json

    import jsonschema

    m = Match(kind="erased", global_id="g7", ts_emitted_ns=5)
    assert decode(Match, encode(m)) == m
    jsonschema.validate(json.loads(encode(m)), json_schema(Match))
    assert "erased" in json.dumps(json_schema(Match))
