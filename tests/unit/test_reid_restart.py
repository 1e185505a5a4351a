"""A ReID stage restarted mid-run links as if it had never stopped (the live window is rebuilt)."""

from __future__ import annotations

from itertools import count
from pathlib import Path

import numpy as np

from reid.calibration import CalibrationParams
from reid.engine import Engine, EngineParams
from reid.linker import Linker, LinkerParams
from reid.qdrant_store import open_store
from schemas.messages import Crop, Tracklet, pack_f32
from tests.unit.test_reid_calibration import link_scores, two_cameras, walk_through

DIM = 64
PARAMS = LinkerParams(  # the calibration tests' scene, cross-camera only; small: warm after 30
    link_same_camera=False, calibration=CalibrationParams(min_pair_samples=30)
)


def test_linker_restored_from_its_live_window_ends_as_the_uninterrupted_one() -> None:
    run = walk_through(60, camera_b_bias=1.0, seed=1)
    ids = count(1)
    whole = Linker(two_cameras(), PARAMS, lambda: f"g{next(ids)}")
    for s, _ in run:
        whole.add_live(s)
    ids2 = count(1)
    first = Linker(two_cameras(), PARAMS, lambda: f"g{next(ids2)}")
    half = len(run) // 2
    for s, _ in run[:half]:
        first.add_live(s)
    held = [(s, first.global_id(s.tracklet_id) or "") for s, _ in run[:half]]
    restarted = Linker(two_cameras(), PARAMS, lambda: f"g{next(ids2)}")
    assert restarted.restore(held) == half
    assert all(restarted.global_id(s.tracklet_id) == g for s, g in held)  # ids kept
    for s, _ in run[half:]:
        restarted.add_live(s)
    f1 = [
        2 * p * r / (p + r) if p + r else 0.0
        for p, r in (link_scores(lk, run) for lk in (whole, restarted))
    ]
    assert f1[0] > 0.7
    assert abs(f1[0] - f1[1]) <= 0.02


def _tracklet(s_id: str, cam: str, t0: int, t1: int, v: np.ndarray) -> Tracklet:
    crops = [Crop(seq=0, ts_capture_ns=t0, box_xyxy=[0, 0, 10, 20], score=0.9, quality=1.0,
                  embedding=pack_f32(v))]  # fmt: skip
    return Tracklet(camera_id=cam, tracklet_id=s_id, track_id=int(s_id[1:]), ts_start_ns=t0,
                    ts_end_ns=t1, crops=crops)  # fmt: skip


def test_engine_restarted_on_its_store_rebuilds_the_window(tmp_path: Path) -> None:
    """Killed after half the tracklets: a new engine on the same store restores them live."""
    run = walk_through(30, camera_b_bias=1.0, seed=8)
    msgs = [
        _tracklet(s.tracklet_id, s.camera_id, s.ts_start_ns, s.ts_end_ns, s.mean) for s, _ in run
    ]
    ids = count(1)

    def engine(path: Path) -> Engine:
        return Engine(open_store("edge", path, DIM), two_cameras(), EngineParams(linker=PARAMS),
                      lambda: f"g{next(ids)}", None)  # fmt: skip

    whole = engine(tmp_path / "whole")
    for m in msgs:
        whole.process(m)
    first = engine(tmp_path / "restart")
    half = len(msgs) // 2
    for m in msgs[:half]:
        first.process(m)
    before = first.identities([m.tracklet_id for m in msgs[:half]])
    first.store.close()
    second = engine(tmp_path / "restart")
    assert second.restore() == half
    assert second.linker.live_count() == half
    for m in msgs[half:]:
        second.process(m)
    all_ids = [m.tracklet_id for m in msgs]
    got = [e.identities(all_ids) for e in (whole, second)]
    people = {s.tracklet_id: p for s, p in run}

    def f1(pred: dict[str, str]) -> float:
        tp = fp = fn = 0
        for i, a in enumerate(all_ids):
            for b in all_ids[i + 1 :]:
                if a[0] == b[0]:
                    continue
                same, truth = pred[a] == pred[b], people[a] == people[b]
                tp, fp, fn = (
                    tp + (same and truth),
                    fp + (same and not truth),
                    fn + (truth and not same),
                )
        return 2 * tp / (2 * tp + fp + fn) if tp else 0.0

    assert f1(got[0]) > 0.8
    assert abs(f1(got[0]) - f1(got[1])) <= 0.02
    kept = second.identities(list(before))
    assert sum(kept[t] == g for t, g in before.items()) >= 0.8 * len(before)
