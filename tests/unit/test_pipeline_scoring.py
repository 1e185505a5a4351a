"""Scoring helpers of the live pipeline (no servers)."""

from __future__ import annotations

import numpy as np

from evaluation.live_scoring import align_offset, identities_from_matches
from schemas.messages import Match


def test_align_offset_finds_the_shift_of_a_camera_joined_part_way() -> None:
    rng = np.random.default_rng(3)
    n_frames = 60
    gt = {}
    for f in range(n_frames):
        x = rng.uniform(0, 500, size=(3, 1))
        y = rng.uniform(0, 300, size=(3, 1))
        gt[f] = np.hstack([x, y, x + 40, y + 100])
    shift = 17
    # the system saw frames 17..59 then (wrapped) nothing: seq s shows frame s + 17
    seen = {s: gt[(s + shift) % n_frames] + 1.0 for s in range(n_frames - shift)}
    off, agree = align_offset(seen, gt, n_frames)
    assert off == shift and agree == 1.0


def test_identities_follow_links_merges_and_splits() -> None:
    events = [
        Match(kind="new_identity", global_id="g1", tracklet_id="a:1:0"),
        Match(kind="new_identity", global_id="g2", tracklet_id="b:1:5"),
        Match(kind="link", global_id="g1", tracklet_id="c:1:9"),
        Match(kind="merge", global_id="g1", merged_ids=["g2"]),
        Match(kind="split", global_id="g3", tracklet_id="c:1:9", merged_ids=["g1"]),
    ]
    assert identities_from_matches(events) == {"a:1:0": "g1", "b:1:5": "g1", "c:1:9": "g3"}
