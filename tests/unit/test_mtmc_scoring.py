"""Known answers for the scorers every accuracy floor relies on (no servers).

Each scenario is a few boxes built by hand; the expected precision, recall,
F1 and IDF1 are worked out in the comments from the definitions, so a change
to a scorer that moves a figure fails here before it moves a floor.

* link scores: pairs of tracklets on different cameras; a pair is a true link
  when both have the same GT identity, a predicted link when both have the same
  global id (unlabelled tracklets linked to anything are false links);
* IDF1: 2·IDTP / (GT boxes + system boxes) over every camera's frames, IDTP the
  best one-to-one pairing of GT identities with global ids.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from common.boxes import box_iou
from evaluation.live_scoring import align_offset, join_offset_by_picture, score_live
from evaluation.mtmc_scoring import Sample, Scenario, label_live, link_scores, mtmc_idf1
from reid.topology import Topology
from schemas.messages import Frame, Tracklet, pack_f32

W, H = 10.0, 20.0
"""Every box here is 10 x 20 px; people stand 100 px apart, so only a box on them overlaps."""


def xyxy(x: float) -> np.ndarray:
    return np.array([x, 0.0, x + W, H])


def tracklet(cam: str, tid: str) -> Tracklet:
    return Tracklet(camera_id=cam, tracklet_id=tid, track_id=1, ts_start_ns=0, ts_end_ns=1)


def sample(cam: str, tid: str, x: float, frames: range, gt: str | None = None) -> Sample:
    """A system tracklet standing at ``x`` in ``frames`` (0-based)."""
    return Sample(tracklet(cam, tid), gt, {f: xyxy(x) for f in frames})


def scenario(gt: dict[str, list[tuple[int, float, range]]], frames: int = 10) -> Scenario:
    """GT per camera: (person id, x, 0-based frames); person p is identity "P<p>"."""
    rows = {
        cam: np.array(
            [[f + 1, pid, x, 0.0, W, H, 1, -1, 1] for pid, x, fs in people for f in fs], float
        ).reshape(-1, 9)
        for cam, people in gt.items()
    }
    ids = {pid: f"P{pid}" for people in gt.values() for pid, _, _ in people}
    return Scenario(Path("."), 7.0, 0, frames, list(gt), Topology.open_world(), ids, rows)


# --- link_scores ---------------------------------------------------------------------------

# Person A on cameras c1, c2, c3; B on c1, c2; C on c3 only. Six tracklets, 15 pairs of which
# 3 share a camera (a1-b1, a2-b2, a3-c3): 12 cross-camera pairs, 4 true links
# (a1-a2, a1-a3, a2-a3, b1-b2).
PEOPLE = {"a1": ("c1", "A"), "a2": ("c2", "A"), "a3": ("c3", "A"), "b1": ("c1", "B"),
          "b2": ("c2", "B"), "c3": ("c3", "C")}  # fmt: skip


def people_samples() -> list[Sample]:
    return [Sample(tracklet(cam, tid), gt) for tid, (cam, gt) in PEOPLE.items()]


def scores(predicted: dict[str, str], samples: list[Sample] | None = None) -> dict[str, float]:
    return link_scores(people_samples() if samples is None else samples, predicted)


def test_perfect_links_score_one() -> None:
    s = scores({tid: gt for tid, (_, gt) in PEOPLE.items()})
    assert (s["link_precision"], s["link_recall"], s["link_f1"]) == (1.0, 1.0, 1.0)
    assert (s["true_links"], s["false_links"], s["missed_links"]) == (4, 0, 0)


def test_everyone_merged_keeps_recall_and_loses_precision() -> None:
    """All 12 cross-camera pairs linked, 4 true: P = 4/12, R = 1, F1 = 2PR/(P+R) = 0.5."""
    s = scores(dict.fromkeys(PEOPLE, "g"))
    assert (s["true_links"], s["false_links"], s["missed_links"]) == (4, 8, 0)
    assert (s["link_precision"], s["link_recall"], s["link_f1"]) == (0.3333, 1.0, 0.5)


def test_everyone_split_has_no_recall() -> None:
    """No link predicted: recall 0, and precision 0 too (no links is no evidence of skill)."""
    s = scores({tid: tid for tid in PEOPLE})
    assert (s["true_links"], s["false_links"], s["missed_links"]) == (0, 0, 4)
    assert (s["link_precision"], s["link_recall"], s["link_f1"]) == (0.0, 0.0, 0.0)


def test_a_known_mix() -> None:
    """x = {a1, a2}: a1-a2 true. y = {a3, b1, b2, c3}: b1-b2 true; a3-b1, a3-b2, b1-c3,
    b2-c3 false (a3-c3 share a camera, not a pair). Missed: a1-a3, a2-a3.
    P = 2/6, R = 2/4, F1 = 2·(1/3)(1/2)/(5/6) = 0.4."""
    pred = {"a1": "x", "a2": "x", "a3": "y", "b1": "y", "b2": "y", "c3": "y"}
    s = scores(pred)
    assert (s["true_links"], s["false_links"], s["missed_links"]) == (2, 4, 2)
    assert (s["link_precision"], s["link_recall"], s["link_f1"]) == (0.3333, 0.5, 0.4)


def test_same_camera_links_and_unlabelled_tracklets() -> None:
    """Linking a1 with b1 (same camera) is no cross-camera pair: perfect scores stay. A
    tracklet with no GT identity (a false track) linked to anyone is a false link."""
    pred = {tid: gt for tid, (_, gt) in PEOPLE.items()} | {"b1": "A"}
    s = scores(pred)
    # b1 now shares A's id: b1-a2 and b1-a3 are false links, b1-b2 is missed
    assert (s["true_links"], s["false_links"], s["missed_links"]) == (3, 2, 1)
    junk = [*people_samples(), Sample(tracklet("c2", "j"), None)]
    pred = {tid: gt for tid, (_, gt) in PEOPLE.items()} | {"j": "A"}
    s = scores(pred, junk)
    assert (s["true_links"], s["false_links"], s["missed_links"]) == (4, 2, 0)  # j-a1, j-a3
    assert s["link_precision"] == 0.6667


@pytest.mark.parametrize(
    "samples",
    [[], [Sample(tracklet("c1", "a"), "A"), Sample(tracklet("c1", "b"), "A")]],
    ids=["no tracklets", "one camera"],
)
def test_no_cross_camera_pair_scores_zero(samples: list[Sample]) -> None:
    s = link_scores(samples, dict.fromkeys([x.tracklet.tracklet_id for x in samples], "g"))
    assert s == {"link_precision": 0.0, "link_recall": 0.0, "link_f1": 0.0, "true_links": 0,
                 "false_links": 0, "missed_links": 0}  # fmt: skip


# --- label_live ----------------------------------------------------------------------------

TWO = {"a": [(1, 0.0, range(10)), (2, 100.0, range(10))]}


def test_label_live_takes_the_overlapping_identity_at_iou_half() -> None:
    """A box shifted by dx has IoU (10 - dx)/(10 + dx): 7/13 = 0.54 at dx 3 (matches),
    6/14 = 0.43 at dx 4 (does not)."""
    scn = scenario(TWO)
    s = [sample("a", "on", 0, range(10)), sample("a", "b", 103, range(10)),
         sample("a", "off", 104, range(10)), sample("a", "nowhere", 300, range(10))]  # fmt: skip
    label_live(scn, s)
    assert [x.gt_identity for x in s] == ["P1", "P2", None, None]


def test_label_live_needs_a_majority_of_the_boxes() -> None:
    """6 of 10 boxes on P1 -> P1; 4 on P1, 3 on P2, 3 on nobody -> None (plurality is not
    enough); boxes in frames with no GT count against it."""
    scn = scenario(TWO)
    six = Sample(tracklet("a", "six"), None,
                 {f: xyxy(0 if f < 6 else 100) for f in range(10)})  # fmt: skip
    four = Sample(tracklet("a", "four"), None,
                  {f: xyxy(0 if f < 4 else 100 if f < 7 else 300) for f in range(10)})  # fmt: skip
    late = Sample(tracklet("a", "late"), None, {f: xyxy(0) for f in range(6, 16)})  # 4 of 10
    half = Sample(tracklet("a", "half"), None, {f: xyxy(0) for f in range(5, 15)})  # 5 of 10
    label_live(scn, [six, four, late, half])
    assert [six.gt_identity, four.gt_identity, late.gt_identity] == ["P1", None, None]
    assert half.gt_identity == "P1"  # exactly half is enough


def test_label_live_names_people_missing_from_the_identities() -> None:
    scn = scenario(TWO)
    del scn.identities[2]
    s = [sample("a", "t", 100, range(10))]
    label_live(scn, s)
    assert s[0].gt_identity == "pets2"


def test_label_live_leaves_a_camera_without_ground_truth_unlabelled() -> None:
    """Regression: label_live looked the tracklet's camera up in the scenario's GT with [],
    so a live camera the scenario lacks (score_live aligns such cameras on purpose) raised
    KeyError and the whole run went unscored."""
    s = [sample("a", "t", 0, range(10)), sample("elsewhere", "u", 0, range(10))]
    label_live(scenario(TWO), s)
    assert [x.gt_identity for x in s] == ["P1", None]


# --- mtmc_idf1 -----------------------------------------------------------------------------

# A on camera a (frames 0-9, x 0) and camera b (frames 0-9, x 0); B on camera a only (frames
# 0-5, x 100). GT boxes: 10 + 6 + 10 = 26.
AB = {"a": [(1, 0.0, range(10)), (2, 100.0, range(6))], "b": [(1, 0.0, range(10))]}


def ab_samples() -> list[Sample]:
    return [sample("a", "aA", 0, range(10)), sample("a", "aB", 100, range(6)),
            sample("b", "bA", 0, range(10))]  # fmt: skip


def test_idf1_perfect_is_one() -> None:
    assert mtmc_idf1(scenario(AB), ab_samples(), {"aA": "x", "bA": "x", "aB": "y"}) == 1.0


def test_idf1_everyone_split() -> None:
    """Three ids for two people: P1 pairs with aA or bA (10), P2 with aB (6).
    IDTP 16, IDF1 = 32 / (26 + 26) = 0.6154."""
    assert mtmc_idf1(scenario(AB), ab_samples(), {"aA": "x", "bA": "z", "aB": "y"}) == 0.6154


def test_idf1_everyone_merged() -> None:
    """One id for both: P1 pairs with it (20 boxes), P2 with nothing. IDF1 = 40/52 = 0.7692."""
    assert mtmc_idf1(scenario(AB), ab_samples(), dict.fromkeys(["aA", "bA", "aB"], "x")) == 0.7692


def test_idf1_counts_missed_and_false_boxes() -> None:
    """bA tracked 5 frames of 10: IDTP 21, system boxes 21, IDF1 = 42/47 = 0.8936. A false
    track (10 boxes on nobody) with the perfect ids: IDF1 = 52/(26 + 36) = 0.8387."""
    s = ab_samples()
    s[2] = sample("b", "bA", 0, range(5))
    assert mtmc_idf1(scenario(AB), s, {"aA": "x", "bA": "x", "aB": "y"}) == 0.8936
    s = [*ab_samples(), sample("a", "junk", 300, range(10))]
    pred = {"aA": "x", "bA": "x", "aB": "y", "junk": "j"}
    assert mtmc_idf1(scenario(AB), s, pred) == 0.8387


def test_idf1_one_camera_and_nothing_tracked() -> None:
    one = {"a": AB["a"]}
    assert mtmc_idf1(scenario(one), ab_samples()[:2], {"aA": "x", "aB": "y"}) == 1.0
    assert mtmc_idf1(scenario(AB), [], {}) == 0.0
    assert mtmc_idf1(scenario({"a": []}), [], {}) == 0.0


def test_idf1_counts_two_boxes_of_one_id_in_a_frame_as_one_true_and_one_false() -> None:
    """Regression: mtmc_idf1 handed motmetrics one hypothesis id per global id, and
    motmetrics counts an id's *frames*, not its boxes, while counting every overlapping
    box as a match: two tracklets on one person in the same frames, linked into one
    global id, scored IDF1 1.0 instead of 0.8387.

    aA and its duplicate aA2 (IoU 0.82 with P1) both in id x: IDTP 26, system boxes 36,
    IDF1 = 52 / 62 = 0.8387."""
    s = [*ab_samples(), sample("a", "aA2", 1, range(10))]
    pred = {"aA": "x", "aA2": "x", "bA": "x", "aB": "y"}
    assert mtmc_idf1(scenario(AB), s, pred) == 0.8387


def test_idf1_agrees_with_motmetrics_when_ids_are_unique_per_frame() -> None:
    """On random scenes with one box per id per frame the score equals motmetrics' IDF1."""
    import motmetrics as mm

    rng = np.random.default_rng(7)
    for _ in range(5):
        gt = {c: [(p, 100.0 * p, range(rng.integers(0, 5), rng.integers(5, 12))) for p in
                  rng.choice(6, size=3, replace=False)] for c in ("a", "b")}  # fmt: skip
        scn = scenario(gt, frames=12)
        samples, pred = [], {}
        for cam, people in gt.items():
            for p, x, fs in people:
                tid = f"{cam}{p}"
                samples.append(sample(cam, tid, x + rng.integers(0, 5), fs))
                pred[tid] = f"g{rng.integers(0, 4)}" if rng.random() < 0.5 else f"u{tid}"
        # (two tracklets of one camera with one id would break the premise)
        for cam in gt:
            ids = [pred[s.tracklet.tracklet_id] for s in samples if s.tracklet.camera_id == cam]
            for s in samples:
                if s.tracklet.camera_id == cam and ids.count(pred[s.tracklet.tracklet_id]) > 1:
                    pred[s.tracklet.tracklet_id] = f"u{s.tracklet.tracklet_id}"
        acc = mm.MOTAccumulator(auto_id=False)
        num: dict[str, int] = {}
        for ci, cam in enumerate(gt):
            for f in range(12):
                g = [(p, xyxy(x)) for p, x, fs in gt[cam] if f in fs]
                h = [(pred[s.tracklet.tracklet_id], s.boxes[f]) for s in samples
                     if s.tracklet.camera_id == cam and f in s.boxes]  # fmt: skip
                gb = np.array([b for _, b in g]).reshape(-1, 4)
                hb = np.array([b for _, b in h]).reshape(-1, 4)
                d = 1.0 - box_iou(gb, hb) if len(gb) and len(hb) else np.zeros((len(g), len(h)))
                d = np.where(d > 0.5, np.nan, d)
                hids = [num.setdefault(i, len(num) + 1) for i, _ in h]  # motmetrics: numbers
                acc.update([int(p) for p, _ in g], hids, d, frameid=ci * 100 + f)
        want = mm.metrics.create().compute(acc, metrics=["idf1"])["idf1"].iloc[0]
        assert mtmc_idf1(scn, samples, pred) == round(float(want), 4)


# --- align_offset / score_live ---------------------------------------------------------------


def test_align_offset_reports_the_share_of_boxes_that_agree() -> None:
    """Frame f shows one person at x = 20 f. Seen from seq 0 with offset 3, plus one box per
    seq on nobody: half the boxes agree."""
    gt = {f: xyxy(20.0 * f)[None, :] for f in range(10)}
    seen = {s: np.stack([xyxy(20.0 * (s + 3)), xyxy(5000.0)]) for s in range(7)}
    assert align_offset(seen, gt, 10) == (3, 0.5)
    assert align_offset({}, gt, 10) == (0, 0.0)


def write_scenario(root: Path, gt: dict[str, list[tuple[int, int, float]]], frames: int) -> None:
    """A scenario folder as ``crosscam scenario`` writes it; GT rows (frame 0-based, person, x)."""
    (root / "gt").mkdir(parents=True)
    meta = {"fps": 7.0, "t0_ns": 0, "frames": frames, "views": [{"camera_id": c} for c in gt]}
    (root / "scenario.json").write_text(json.dumps(meta))
    people = {p for rows in gt.values() for _, p, _ in rows}
    (root / "identities.json").write_text(json.dumps({str(p): f"P{p}" for p in people}))
    (root / "cameras.toml").write_text(
        "window_s = 120.0\n" + "".join(f'[[cameras]]\nid = "{c}"\n' for c in gt)
    )
    for cam, rows in gt.items():
        lines = [f"{f + 1},{p},{x},0,{W},{H},1,-1,1" for f, p, x in rows]
        (root / "gt" / f"{cam}.txt").write_text("\n".join(lines) + "\n")


def live(cam: str, tid: str, xs: dict[int, float]) -> Tracklet:
    """A live tracklet: ingest's seqs -> boxes."""
    seqs = sorted(xs)
    boxes = np.stack([xyxy(xs[s]) for s in seqs]).astype(np.float32)
    return Tracklet(camera_id=cam, tracklet_id=tid, track_id=1, ts_start_ns=0, ts_end_ns=1,
                    frame_seqs=seqs, boxes_xyxy=pack_f32(boxes))  # fmt: skip


def test_score_live_aligns_each_camera_then_scores(tmp_path: Path) -> None:
    """P1 walks x = 20 f on camera a and x = 200 + 20 f on camera b (frames 0-9), P2 stands
    at x = 600 on camera a. Camera a joined at frame 2 (seq s shows frame s + 2), camera b
    at frame 5, wrapping (seq s shows frame (s + 5) % 10). The system follows both people;
    P1's two tracklets are linked, P2's is missing from the matches (so unlinked).
    Offsets 2 and 5, every box agrees; one true link, none false or missed: P = R = 1.
    GT boxes 30, system boxes 8 + 8 + 10 = 26, all agreeing: IDF1 = 52/56 = 0.9286."""
    walk = {"a": 0.0, "b": 200.0}
    gt = {c: [(f, 1, base + 20.0 * f) for f in range(10)] for c, base in walk.items()}
    gt["a"] += [(f, 2, 600.0) for f in range(10)]
    write_scenario(tmp_path, gt, frames=10)
    ts = [
        live("a", "a1", {s: 20.0 * (s + 2) for s in range(8)}),
        live("a", "a2", dict.fromkeys(range(8), 600.0)),
        live("b", "b1", {s: 200 + 20.0 * ((s + 5) % 10) for s in range(10)}),
    ]
    out = score_live(tmp_path, ts, {"a1": "g", "b1": "g"})
    assert out["alignment"]["a"] == {"seq_to_frame_offset": 2, "boxes_matching_gt": 1.0}
    assert out["alignment"]["b"] == {"seq_to_frame_offset": 5, "boxes_matching_gt": 1.0}
    assert (out["true_links"], out["false_links"], out["missed_links"]) == (1, 0, 0)
    assert (out["link_precision"], out["link_recall"], out["idf1"]) == (1.0, 1.0, 0.9286)
    assert (out["identities"], out["gt_identities_seen"], out["tracklets"]) == (2, 2, 3)


def test_score_live_places_boxes_by_source_index_where_frames_carry_it(tmp_path: Path) -> None:
    """P1 walks x = 20 f on camera a (frames 0-9). Ingest dropped frames 3 and 6 (a slow
    consumer), so seq s is not frame s + offset for any one offset: aligned by offset, the
    boxes after a drop land on the wrong frames. With the frames' source indexes every box
    lands on its own frame: all agree, and the box-chosen offset (the check) is 0."""
    shown = [0, 1, 2, 4, 5, 7, 8, 9]  # seq -> source frame
    write_scenario(tmp_path, {"a": [(f, 1, 20.0 * f) for f in range(10)]}, frames=10)
    t = live("a", "a1", {s: 20.0 * f for s, f in enumerate(shown)})
    frames = [
        Frame(camera_id="a", seq=s, ts_capture_ns=s, source_index=f) for s, f in enumerate(shown)
    ]
    guessed = score_live(tmp_path, [t], {}, frames=[])["alignment"]["a"]
    assert guessed["boxes_matching_gt"] < 1.0
    exact = score_live(tmp_path, [t], {}, frames=frames)
    assert exact["alignment"]["a"] == {
        "method": "source_index",
        "join_offset_by_picture": None,  # no recording in this scenario, no JPEG
        "boxes_matching_gt": 1.0,
        "check_offset_by_boxes": 0,
    }
    assert exact["gt_identities_seen"] == 1
    # a camera whose frames carry no index falls back to the offset search
    old = [Frame(camera_id="a", seq=s, ts_capture_ns=s) for s in range(8)]
    assert "seq_to_frame_offset" in score_live(tmp_path, [t], {}, frames=old)["alignment"]["a"]


def test_join_offset_is_measured_on_the_picture(tmp_path: Path) -> None:
    """A recording whose frame f shows a bright square at x = 10 f; ingest joined it 4
    frames in, so the frame it counted as index 3 is recording frame 7."""
    video = str(tmp_path / "rec.avi")
    out = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"MJPG"), 7.0, (320, 240))
    pictures = []
    for f in range(30):
        img = np.full((240, 320, 3), 40, np.uint8)
        img[80:160, 10 * f : 10 * f + 60] = 220
        pictures.append(img)
        out.write(img)
    out.release()
    seen = cv2.resize(pictures[7], (160, 120))  # ingest resizes; JPEG on the wire
    jpeg = cv2.imencode(".jpg", seen, [cv2.IMWRITE_JPEG_QUALITY, 70])[1].tobytes()
    frame = Frame(camera_id="a", seq=0, ts_capture_ns=0, source_index=3, jpeg=jpeg)
    assert join_offset_by_picture(video, frame) == 4
    assert join_offset_by_picture(video, Frame(camera_id="a", seq=0, ts_capture_ns=0)) is None
