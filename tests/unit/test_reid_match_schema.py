"""Match events the linker emits validate against the published JSON Schema."""

from __future__ import annotations

import json
from itertools import count

import jsonschema
import numpy as np

from common.units import NS_PER_S
from reid.linker import Linker, LinkerParams, Sighting
from reid.topology import Topology
from schemas.codec import encode, json_schema
from schemas.messages import Match


def test_every_event_kind_validates_against_the_match_schema() -> None:
    ids = count(1)
    lk = Linker(Topology.open_world(), LinkerParams(link_distance=0.35), lambda: f"g{next(ids)}")
    va, vc = np.eye(8, dtype=np.float32)[:2]
    vb = (va + vc) / np.linalg.norm(va + vc)
    events: list[Match] = []
    for tid, cam, t0, v in (("t1", "a", 0, va), ("t3", "c", 40, vc), ("t2", "b", 15, vb)):
        events += lk.add_live(
            Sighting(
                tid, cam, t0 * NS_PER_S, (t0 + 10) * NS_PER_S, v, thumbnail_ref=f"{cam}/{tid}.jpg"
            )
        ).events
    assert {e.kind for e in events} == {"new_identity", "link", "merge"}
    validator = jsonschema.Draft202012Validator(json_schema(Match))
    for e in events:
        doc = json.loads(encode(e))
        validator.validate(doc)
    link = next(json.loads(encode(e)) for e in events if e.kind == "link")
    assert link["matched"][0]["distance"] < 0.35 and link["thumbnail_ref"] == "b/t2.jpg"
    bad = json.loads(encode(events[0]))
    bad["kind"] = "teleport"
    assert not validator.is_valid(bad)
