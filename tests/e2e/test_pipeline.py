"""The whole pipeline, live, over the real Kafka, Redis and RTSP server.

Three views cut from PETS09-S2L1 are served as looping RTSP cameras; every
stage runs as a supervised process (``crosscam run``'s specs): ingest per
camera → detector (YOLOX-nano + OSNet, ONNX Runtime) → tracker → ReID. After
one pass of the recording the cameras end their streams, the pipeline drains,
and the run is judged:

* every frame ingest says it published (its own final count) is on the frames
  topic with no hole in its seqs, and was detected or dead-lettered; none
  detected twice; the confident detections of every camera end in tracklets;
* every camera produces tracklets, every tracklet gets a global identity on
  the public matches topic, and the ReID store holds each tracklet id once;
* cross-camera links and IDF1 against the scenario's ground truth stay above
  floors set just below the worst measured run; link precision beats what
  merging every tracklet into one identity would score.

Run: ``pytest -s -m e2e tests/e2e/test_pipeline.py`` (about 2-3 minutes on 2 cores).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from crosscam.demo import LiveRun, run_live
from devstack import faults
from devstack import stack as stack_mod
from devstack.stack import StackConfig
from schemas.topics import FRAMES as FRAMES_T
from tests.stack_fixtures import live_run_on_free_ports

pytestmark = pytest.mark.e2e

CAMERAS = 3
FRAMES = 200
"""200 frames at 7 fps: ~29 s of video per camera, long enough for people to
walk from one view to the next (the scenario's links), short enough for CI."""
RUN_TIMEOUT_S = 480.0
"""The whole run (pass + drain) on a loaded 2-core runner; it takes ~2 minutes alone."""
FRAMES_TOPIC = FRAMES_T.name
METRICS_PORTS = 16
"""One metrics port per supervised process (3 ingest, detector, tracker(s), reid, gallery)."""

# Floors: each is the worst measured run less 0.05 (less a few seconds for times), so a
# real regression fails and run-to-run noise (batching, which frames ingest keeps, ~20
# cross-camera pairs, so one pair moves recall by ~0.09) does not. Provisional, from the
# runs on record: three in commit db7d48a and one on branch `scorers` (2026-12-02, load
# 15-20), each 200 frames, 3 cameras, the recording played once, shared 2-core machine.
# Re-measured on the final code (lead, 2026-12-02, load 1-4): two runs, below.
MIN_LINK_PRECISION = 0.58
"""measured: 0.69 / 0.75 / 0.69 (db7d48a), 0.636 (scorers), 0.833 / 0.790 (final code),
floor = worst - 0.05"""
MIN_LINK_RECALL = 0.58
"""measured: 0.90 / 0.82 / 0.90 (db7d48a), 0.636 (scorers), 0.938 / 0.938 (final code),
floor = worst - 0.05"""
MIN_IDF1 = 0.59
"""measured: 0.70 / 0.69 / 0.70 (db7d48a), 0.643 (scorers; the old and the fixed IDF1 agree
on that run), 0.727 / 0.741 (final code), floor = worst - 0.05"""
MIN_PRECISION_OVER_MERGED = 0.05
"""Link precision must beat, by this much, what the same tracklets score when every one
is given one identity (a linker that merges everyone fails, whatever the cut's make-up).
measured: merging everyone scores 0.072 (scorers run), 0.083 / 0.083 (final code)."""
MIN_CROSS_CAMERA_IDENTITIES = 6
"""measured: 7 / 7 / 7 (db7d48a), 7 (scorers) of the 8 people in the first 200 frames,
floor = worst - 1"""
MIN_BOXES_MATCHING_GT = {"cam0": 0.12, "cam1": 0.80, "cam2": 0.80}
"""Fraction of a camera's tracklet boxes that overlap a ground-truth box once aligned:
proves each camera's seq→frame alignment (and so the scoring) is sound.
measured: cam0 0.17-0.23, the other views 0.85-0.95 (runs before this change); cam0
0.174, cam1 0.884, cam2 0.949 (scorers); cam0 0.221, cam1 0.872, cam2 0.937 (final code,
scored by source index), floor = worst - 0.05. cam0's ground truth is
sparse in these frames (people at its edge fall under the scenario's visibility cut)."""
MIN_DETECTIONS_TRACKED = 0.92
"""Share of each camera's confident detection boxes (score ≥ the tracker's high score) that
end in a tracklet (:func:`devstack.faults.detections_tracked`).
measured: cam0 0.977, cam1 0.988, cam2 1.0 (scorers, one run); 0.977 / 0.973 / 0.998 (final
code, two runs alike), floor = worst - 0.05"""
MIN_PUBLISHED_FRACTION = 0.8
"""Ingest keeps frames at its analysis rate (7 fps); the RTSP server delivers the 7 fps
recording at ~7.4 fps with jitter; since capture times come from the stream's clock
(held first frames included) nearly every frame is kept (199 of 200 per camera measured).
measured: 173 of 200 = 0.865, floor = worst - 0.065 (it is a rate, not an accuracy)."""


def live_run(out: Path) -> LiveRun:
    """The run on free ports (metrics, ReID API, gallery), never the defaults."""
    return live_run_on_free_ports(out, METRICS_PORTS, RUN_TIMEOUT_S, cameras=CAMERAS, frames=FRAMES)


def test_frame_accounting_by_offset() -> None:
    """Poison (no frame at all) is matched to its dead letter by offset; a frame repeated
    by a producer retry is counted as repeated; a frame never detected is unaccounted."""
    from types import SimpleNamespace

    from crosscam.demo import frame_accounting
    from schemas.codec import encode
    from schemas.messages import DeadLetter, Detections, Frame

    def rec(offset: int, value: bytes) -> SimpleNamespace:
        return SimpleNamespace(partition=0, offset=offset, value=value)

    f = [encode(Frame(camera_id="c", seq=i, ts_capture_ns=i + 1, jpeg=b"x")) for i in range(3)]
    records = [rec(0, f[0]), rec(1, b"\xc1junk"), rec(2, f[1]), rec(3, f[1]), rec(4, f[2])]
    dets = [
        Detections(camera_id="c", seq=i, ts_capture_ns=i + 1, width=1, height=1) for i in (0, 1)
    ]
    dls = [DeadLetter(stage="detector", topic=FRAMES_TOPIC, partition=0, offset=1, reason="x")]
    acc = frame_accounting(records, dets, dls)
    assert acc["frame_records"] == 5
    assert acc["frames_dead_lettered"] == 1
    assert acc["frame_records_repeated"] == 1
    assert acc["frames_detected"] == 2
    assert acc["frames_unaccounted"] == 1  # seq 2: neither detected nor dead-lettered
    assert acc["frames_on_topic_per_camera"] == {"c": 3}


def test_whole_pipeline_live_replay(stack: StackConfig, tmp_path: Path) -> None:
    t0 = time.monotonic()
    s = run_live(live_run(tmp_path)).summary
    topics = faults.Topics.read(stack_mod.kafka_bootstrap(stack))
    acc = s["accuracy_vs_ground_truth"]
    print(
        json.dumps(
            {
                "test_seconds": round(time.monotonic() - t0, 1),
                **{k: s[k] for k in ("seconds", "messages", "accounting", "identities",
                                     "identities_seen_on_several_cameras", "restarts")},
                "accuracy": acc,
            }
        )
    )  # fmt: skip
    assert s["completed"], "one pass did not finish and drain before the deadline"
    assert all(n == 0 for n in s["restarts"].values()), s["restarts"]
    cams = sorted(s["cameras"])
    assert len(cams) == CAMERAS
    for cam in cams:  # the recording went through once
        published = int(s["cameras"][cam]["frames_published"])
        assert published >= MIN_PUBLISHED_FRACTION * FRAMES, s["cameras"][cam]
    faults.check_accounting(s, topics)  # fault-free: no detection may be repeated
    assert s["accounting"]["frames_dead_lettered"] == 0, s["accounting"]
    assert not topics.dead_letters, [(d.stage, d.reason) for d in topics.dead_letters]
    assert all(int(v or 0) == 0 for v in s["accounting"]["ingest_dropped"].values())
    tracklets = faults.check_tracklets_and_identities(topics, tmp_path / "reid")
    with_tracklets = {t.camera_id for t in tracklets}
    assert with_tracklets == set(cams), f"cameras without tracklets: {set(cams) - with_tracklets}"
    tracked = faults.check_detections_tracked(topics, MIN_DETECTIONS_TRACKED)
    merged = faults.merged_link_precision(s, tracklets)
    print(json.dumps({"detections_tracked": tracked, "link_precision_if_all_merged": merged}))

    for cam, al in acc["alignment"].items():
        assert al["boxes_matching_gt"] >= MIN_BOXES_MATCHING_GT[cam], (cam, al)
    assert s["identities_seen_on_several_cameras"] >= MIN_CROSS_CAMERA_IDENTITIES, s
    assert acc["link_precision"] >= MIN_LINK_PRECISION, acc
    assert acc["link_precision"] >= merged + MIN_PRECISION_OVER_MERGED, (merged, acc)
    assert acc["link_recall"] >= MIN_LINK_RECALL, acc
    assert acc["idf1"] >= MIN_IDF1, acc
