"""Scoring helpers and no-loss checks of the live pipeline (no servers)."""

from __future__ import annotations

from pathlib import Path

import msgspec
import numpy as np
import pytest

from devstack import faults
from evaluation.live_scoring import align_offset, identities_from_matches
from schemas.codec import encode
from schemas.messages import DeadLetter, Detections, Frame, Match, Tracklet, pack_f32
from schemas.topics import FRAMES
from service.settings import KafkaSettings


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


# --- the no-loss checks of live runs (devstack.faults), on hand-built topics ---------------


def _topics(dets: list[Detections], dls: list[DeadLetter] | None = None) -> faults.Topics:
    return faults.Topics(detections=dets, tracklets=[], matches=[], dead_letters=dls or [])


def _det(cam: str, seq: int, eos: bool = False) -> Detections:
    return Detections(camera_id=cam, seq=seq, ts_capture_ns=seq + 1, width=1, height=1, eos=eos)


def _run(
    tmp_path: Path,
    published: dict[str, int],
    on_topic: dict[str, int],
    snapshot: dict[str, int] | None = None,
    **acc: int,
) -> dict:
    """A run's summary whose ingest logs say it published ``published`` frames per camera
    (its status snapshot, taken before the end of the pass, says ``snapshot``)."""
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    for cam, n in published.items():
        (logs / f"ingest-{cam}.log").write_text(
            f"2026-01-01T00:00:00.000Z INFO ingest.service ingest_stopped camera_id={cam} "
            f"frames_published={n} last_seq={n}\n"
        )
    counts = {"frames_unaccounted": 0, "frame_records_repeated": 0, "duplicate_detections": 0}
    return {
        "cameras": {c: {"frames_published": str(n)} for c, n in (snapshot or published).items()},
        "accounting": {**counts, **acc, "frames_on_topic_per_camera": on_topic},
        "results": {"logs": str(logs)},
    }


def test_accounting_holds_when_every_published_frame_was_detected(tmp_path: Path) -> None:
    s = _run(tmp_path, {"a": 3, "b": 2}, {"a": 3, "b": 2})
    dets = [_det("a", q) for q in range(3)] + [_det("a", 3, eos=True)]
    dets += [_det("b", 0), _det("b", 1)]
    faults.check_accounting(s, _topics(dets))


def test_accounting_catches_a_frame_lost_before_the_topic(tmp_path: Path) -> None:
    """Regression: check_accounting compared the topic with itself (each record sits in
    exactly one bucket, so the buckets always summed up) and with ingest's status snapshot,
    taken before the pass ended. Ingest published 3 frames (2 at the snapshot), the topic
    holds 2, both detected: every old check held, one frame is gone."""
    s = _run(tmp_path, {"a": 3}, {"a": 2}, snapshot={"a": 2})
    with pytest.raises(faults.LossError, match="ingest published 3"):
        faults.check_accounting(s, _topics([_det("a", 0), _det("a", 1)]))


def test_accounting_catches_a_hole_in_the_seqs(tmp_path: Path) -> None:
    s = _run(tmp_path, {"a": 3}, {"a": 3})
    with pytest.raises(faults.LossError, match=r"seqs missing \[1\]"):
        faults.check_accounting(s, _topics([_det("a", 0), _det("a", 2), _det("a", 3)]))
    # a frame dead-lettered (the record itself) is accounted for
    dl = DeadLetter(stage="detector", topic=FRAMES.name, partition=0, offset=1, reason="x",
                    value=encode(Frame(camera_id="a", seq=1, ts_capture_ns=2)))  # fmt: skip
    faults.check_accounting(s, _topics([_det("a", 0), _det("a", 2)], [dl]))


def test_accounting_bounds_duplicate_detections(tmp_path: Path) -> None:
    """At-least-once: a repeated frame record is detected again, and each handover of the
    detector's partitions may redo one uncommitted batch; more is a bug."""
    dets = [_det("a", 0), _det("a", 1)]
    s = _run(tmp_path, {"a": 2}, {"a": 2}, duplicate_detections=1, frame_records_repeated=1)
    faults.check_accounting(s, _topics(dets))
    s = _run(tmp_path, {"a": 2}, {"a": 2}, duplicate_detections=1)
    with pytest.raises(faults.LossError, match="detected twice"):
        faults.check_accounting(s, _topics(dets))
    batch = KafkaSettings().max_batch_records
    s = _run(tmp_path, {"a": 2}, {"a": 2}, duplicate_detections=batch)
    faults.check_accounting(s, _topics(dets), redeliveries=1)


def test_accounting_needs_ingest_final_count(tmp_path: Path) -> None:
    s = _run(tmp_path, {"a": 1}, {"a": 1})
    (tmp_path / "logs" / "ingest-a.log").write_text("")
    with pytest.raises(faults.LossError, match="no final count"):
        faults.check_accounting(s, _topics([_det("a", 0)]))


def _boxes_det(cam: str, seq: int, xs: list[float], scores: list[float]) -> Detections:
    boxes = np.array([[x, 0, x + 10, 20] for x in xs], np.float32).reshape(-1, 4)
    return Detections(camera_id=cam, seq=seq, ts_capture_ns=seq + 1, width=1, height=1,
                      boxes_xyxy=pack_f32(boxes), scores=pack_f32(np.array(scores, np.float32)))  # fmt: skip


def _tracklet(cam: str, tid: str, seqs: list[int], x: float) -> Tracklet:
    boxes = np.array([[x, 0, x + 10, 20]] * len(seqs), np.float32)
    return Tracklet(camera_id=cam, tracklet_id=tid, track_id=1, ts_start_ns=0, ts_end_ns=1,
                    frame_seqs=seqs, boxes_xyxy=pack_f32(boxes))  # fmt: skip


def test_detections_tracked_counts_confident_boxes_that_end_in_tracklets() -> None:
    """4 frames, two confident people (x 0, x 100) and one weak box (0.2, not counted).
    One tracklet follows x 0 in frames 0-3, another x 100 in frames 0-1: 6 of 8 = 0.75."""
    dets = [_boxes_det("a", q, [0, 100, 200], [0.9, 0.9, 0.2]) for q in range(4)]
    topics = faults.Topics(dets, [_tracklet("a", "t1", [0, 1, 2, 3], 0),
                                  _tracklet("a", "t2", [0, 1], 100)], [], [])  # fmt: skip
    assert faults.detections_tracked(topics) == {"a": 0.75}
    assert faults.check_detections_tracked(topics, 0.7) == {"a": 0.75}
    with pytest.raises(faults.LossError, match="floor 0.8"):
        faults.check_detections_tracked(topics, 0.8)
    topics.tracklets.append(_tracklet("a", "t3", [7], 0))
    with pytest.raises(faults.LossError, match="never detected"):
        faults.check_detections_tracked(topics, 0.5)


def test_events_are_applied_in_publication_order_whatever_the_partition_order() -> None:
    """A merge read before the links it rewrites (another partition) still ends as one identity."""
    from reid.ordering import in_order
    from schemas.messages import Match

    published = in_order(
        [
            Match(kind="new_identity", global_id="g1", tracklet_id="a:1:0"),
            Match(kind="new_identity", global_id="g2", tracklet_id="b:1:5"),
            Match(kind="link", global_id="g2", tracklet_id="c:1:9"),
            Match(kind="merge", global_id="g1", merged_ids=["g2"]),
            Match(kind="split", global_id="g3", tracklet_id="c:1:9", merged_ids=["g1"]),
        ]
    )
    assert [e.order_ns for e in published] == sorted({e.order_ns for e in published})
    as_read = [published[i] for i in (3, 4, 0, 2, 1)]  # partitions interleaved differently
    want = {"a:1:0": "g1", "b:1:5": "g1", "c:1:9": "g3"}
    assert identities_from_matches(published) == want
    assert identities_from_matches(as_read) == want
    unordered = [msgspec.structs.replace(e, order_ns=0) for e in as_read]
    assert identities_from_matches(unordered) != want, "without order_ns the read order rules"
