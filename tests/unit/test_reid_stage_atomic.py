"""The ReID stage links a tracklet whole or not at all: a fault mid-link puts the
linker back, so the retried tracklet is linked again (not skipped as a replay)."""

from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from reid.engine import Processed
from reid.linker import Linker, LinkerParams, Neighbour, Sighting
from reid.service import ReidStage, snapshot_attributes
from reid.topology import Topology
from schemas import Tracklet, encode
from service.delivery import PartialBatch
from service.kafka import Record

NS = 10**9


def _sighting(i: int) -> Sighting:
    v = np.zeros(8, np.float32)
    v[i % 8] = 1.0
    return Sighting(f"c:{i}:0", "c", i * NS, i * NS + NS, v)


class FlakyEngine:
    """Links with a real :class:`Linker`; the store write after the link fails once."""

    def __init__(self) -> None:
        ids = itertools.count(1)
        self.linker = Linker(Topology.open_world(), LinkerParams(), lambda: f"g{next(ids)}")
        self.store = SimpleNamespace(count=lambda: 0)
        self.fail_next_write = False

    def process(self, t: Tracklet) -> Processed:
        if self.linker.global_id(t.tracklet_id) is not None:
            return Processed(events=[], assigned={}, skipped="replay")
        res = self.linker.add(_sighting(t.track_id), list[Neighbour]())
        if self.fail_next_write:
            self.fail_next_write = False
            raise ConnectionError("qdrant unreachable")
        return Processed(events=res.events, assigned=res.assigned)


def _record(i: int) -> Record:
    t = Tracklet(camera_id="c", tracklet_id=f"c:{i}:0", track_id=i, ts_start_ns=i * NS,
                 ts_end_ns=i * NS + NS)  # fmt: skip
    return Record("tracklets", 0, i, b"c", encode(t), t, 0)


def test_fault_mid_link_restores_the_linker_and_the_retry_publishes_its_events() -> None:
    engine: Any = FlakyEngine()
    stage = ReidStage(engine)
    first = stage.handle([_record(0), _record(1)])
    engine.fail_next_write = True
    with pytest.raises(PartialBatch) as failed:
        stage.handle([_record(2), _record(3)])
    assert failed.value.index == 0 and failed.value.outputs == []
    assert engine.linker.global_id("c:2:0") is None  # no trace of the failed tracklet
    assert engine.linker.live_count() == 2
    retried = stage.handle([_record(2), _record(3)])
    assert first and len(retried) >= 2  # both tracklets' events went out on the retry
    assert engine.linker.global_id("c:2:0") is not None


def test_snapshot_copies_containers_so_later_changes_do_not_leak_in() -> None:
    class Box:
        def __init__(self) -> None:
            self.d: dict[str, dict[str, float]] = {"a": {"b": 1.0}}
            self.n = 1

    box = Box()
    snap = snapshot_attributes(box)
    box.d["a"]["c"] = 2.0
    box.d["x"] = {}
    box.n = 2
    vars(box).update(snap)
    assert box.d == {"a": {"b": 1.0}} and box.n == 1
