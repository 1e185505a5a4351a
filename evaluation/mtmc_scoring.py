"""Multi-camera ground truth and the scorers every linking figure relies on.

A :class:`Scenario` is a folder written by ``crosscam scenario pets``; a
:class:`Sample` is one tracklet with its per-frame boxes and (once labelled)
its ground-truth identity. :func:`link_scores` and :func:`mtmc_idf1` score a
prediction (tracklet id -> global id) against that ground truth; the offline
evaluation (``crosscam eval mtmc``), the demo and the pipeline tests all use them.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import msgspec
import numpy as np
from scipy.optimize import linear_sum_assignment

from common.boxes import box_iou
from common.units import NS_PER_S
from evaluation.scenario import frame_ts_ns
from reid.topology import Topology
from schemas.codec import decode, encode
from schemas.messages import Crop, Tracklet, pack_f32

log = logging.getLogger(__name__)

GT_MAX_FRAME_GAP = 3
"""A GT id's boxes in one view split into two tracklets at a gap longer than this
many frames (the person left the view or was fully occluded)."""

GT_CROPS_PER_TRACKLET = 16
"""Crops embedded per GT tracklet, spread evenly over it (a tracker keeps about as many)."""

MIN_GT_TRACKLET_FRAMES = 3
"""GT tracklets shorter than this are dropped (a tracker would not confirm them either)."""

MATCH_IOU = 0.5
"""A system box takes a GT box's identity at this IoU or more (MOT convention)."""


@dataclass
class Scenario:
    """A scenario folder's contents."""

    root: Path
    fps: float
    t0_ns: int
    frames: int
    cameras: list[str]
    topology: Topology
    identities: dict[int, str]
    gt: dict[str, np.ndarray]  # camera -> rows (frame 1-based, id, x, y, w, h, ...)

    @classmethod
    def load(cls, root: Path) -> Scenario:
        meta = json.loads((root / "scenario.json").read_text())
        cams = [v["camera_id"] for v in meta["views"]]
        gt = {c: np.loadtxt(root / "gt" / f"{c}.txt", delimiter=",", ndmin=2) for c in cams}
        ids = {int(k): v for k, v in json.loads((root / "identities.json").read_text()).items()}
        return cls(
            root,
            meta["fps"],
            meta["t0_ns"],
            meta["frames"],
            cams,
            Topology.load(root / "cameras.toml"),
            ids,
            gt,
        )

    def ts(self, frame_index: int) -> int:
        return frame_ts_ns(frame_index, self.fps, self.t0_ns)

    def video(self, camera_id: str) -> Path:
        return Path(self.topology.source_path(camera_id))

    def frame_of(self, ts_ns: int) -> int:
        """0-based frame index of a capture time."""
        return int(round((ts_ns - self.t0_ns) * self.fps / NS_PER_S))


@dataclass
class Sample:
    """A tracklet under evaluation: the message, its GT identity, its boxes by frame."""

    tracklet: Tracklet
    gt_identity: str | None
    boxes: dict[int, np.ndarray] = field(default_factory=dict)  # frame index -> xyxy


def read_frames(path: Path) -> Iterator[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise FileNotFoundError(path)
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                return
            yield frame
    finally:
        cap.release()


def _crop(frame: np.ndarray, xyxy: np.ndarray) -> np.ndarray | None:
    h, w = frame.shape[:2]
    x1, y1 = max(int(xyxy[0]), 0), max(int(xyxy[1]), 0)
    x2, y2 = min(int(round(xyxy[2])), w), min(int(round(xyxy[3])), h)
    if x2 - x1 < 4 or y2 - y1 < 8:
        return None
    return frame[y1:y2, x1:x2]


def gt_tracklets(
    scn: Scenario,
    embed: Callable[[list[np.ndarray]], np.ndarray],
    embed_grey: Callable[[list[np.ndarray]], np.ndarray] | None = None,
    greyscale: frozenset[str] = frozenset(),
) -> list[Sample]:
    """Tracklets from the per-camera GT, with embedded crops cut from the camera videos.

    ``greyscale``: cameras whose tracklets are marked greyscale; ``embed_grey``
    (when given) embeds the other cameras' crops made grey too, as the
    detector does on a network with a greyscale camera.
    """
    out: list[Sample] = []
    for cam in scn.cameras:
        rows = scn.gt[cam]
        runs: list[tuple[int, np.ndarray]] = []
        for pid in np.unique(rows[:, 1]).astype(int):
            r = rows[rows[:, 1] == pid]
            r = r[np.argsort(r[:, 0])]
            cuts = np.flatnonzero(np.diff(r[:, 0]) > GT_MAX_FRAME_GAP) + 1
            for part in np.split(r, cuts):
                if len(part) >= MIN_GT_TRACKLET_FRAMES:
                    runs.append((pid, part))
        want: dict[int, list[tuple[int, int]]] = {}
        for k, (_, part) in enumerate(runs):
            pick = (
                np.linspace(0, len(part) - 1, min(GT_CROPS_PER_TRACKLET, len(part)))
                .round()
                .astype(int)
            )
            for j in np.unique(pick):
                want.setdefault(int(part[j, 0]) - 1, []).append((k, j))
        crops: dict[int, list[tuple[np.ndarray, float, int, np.ndarray]]] = {}
        for idx, frame in enumerate(read_frames(scn.video(cam))):
            for k, j in want.get(idx, ()):
                row = runs[k][1][j]
                xyxy = np.array([row[2], row[3], row[2] + row[4], row[3] + row[5]], np.float32)
                c = _crop(frame, xyxy)
                if c is not None:
                    quality = float(row[8] if len(row) > 8 else 1.0) * float(row[5])
                    crops.setdefault(k, []).append((c.copy(), quality, idx, xyxy))
        for k, (pid, part) in enumerate(runs):
            cs = crops.get(k, [])
            if not cs:
                continue
            vecs = embed([c[0] for c in cs])
            greys = (
                embed_grey([c[0] for c in cs])
                if embed_grey is not None and cam not in greyscale
                else [None] * len(cs)
            )
            frames = part[:, 0].astype(int) - 1
            boxes = np.stack(
                [part[:, 2], part[:, 3], part[:, 2] + part[:, 4], part[:, 3] + part[:, 5]], 1
            )
            tid = f"{cam}:gt{pid}:{scn.ts(int(frames[0]))}"
            t = Tracklet(
                camera_id=cam,
                tracklet_id=tid,
                track_id=pid,
                ts_start_ns=scn.ts(int(frames[0])),
                ts_end_ns=scn.ts(int(frames[-1])),
                frame_seqs=frames.tolist(),
                frame_ts_ns=[scn.ts(int(f)) for f in frames],
                boxes_xyxy=pack_f32(boxes),
                crops=[
                    Crop(
                        seq=c[2],
                        ts_capture_ns=scn.ts(c[2]),
                        box_xyxy=c[3].tolist(),
                        score=1.0,
                        quality=c[1],
                        jpeg=cv2.imencode(".jpg", c[0])[1].tobytes() if i == 0 else b"",
                        embedding=pack_f32(v),
                        embedding_grey=b"" if g is None else pack_f32(g),
                    )
                    for i, (c, v, g) in enumerate(zip(cs, vecs, greys, strict=True))
                ],
                greyscale=cam in greyscale,
            )
            out.append(
                Sample(
                    t,
                    scn.identities.get(pid),
                    {int(f): b for f, b in zip(frames, boxes, strict=True)},
                )
            )
    return out


def save_samples(path: Path, samples: list[Sample], info: dict) -> None:
    """Keep a live run's tracklets (in finish order) for re-scoring."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        msgspec.msgpack.encode({"info": info, "tracklets": [encode(s.tracklet) for s in samples]})
    )


def load_samples(scn: Scenario, path: Path) -> tuple[list[Sample], dict]:
    data = msgspec.msgpack.decode(path.read_bytes())
    samples = []
    for raw in data["tracklets"]:
        t = decode(Tracklet, raw)
        frames = [scn.frame_of(ts) for ts in t.frame_ts_ns]
        samples.append(
            Sample(
                t,
                None,
                {
                    f: np.asarray(b, np.float64)
                    for f, b in zip(frames, t.boxes_array(), strict=True)
                },
            )
        )
    return samples, {**data["info"], "reused": str(path)}


# --- scoring ------------------------------------------------------------------------------


def gt_boxes(scn: Scenario, cam: str) -> dict[int, tuple[np.ndarray, list[str]]]:
    """Frame index → (GT boxes xyxy, their global identities) for one camera."""
    out: dict[int, tuple[list, list]] = {}
    for r in scn.gt[cam]:
        f = int(r[0]) - 1
        b, g = out.setdefault(f, ([], []))
        b.append([r[2], r[3], r[2] + r[4], r[3] + r[5]])
        g.append(scn.identities.get(int(r[1]), f"pets{int(r[1])}"))
    return {f: (np.asarray(b, np.float64), g) for f, (b, g) in out.items()}


def label_live(scn: Scenario, samples: list[Sample]) -> None:
    """Give each system tracklet the majority GT identity of its boxes (IoU ≥ MATCH_IOU), or None.

    A tracklet of a camera the scenario does not have gets None (no ground truth there).
    """
    gts = {c: gt_boxes(scn, c) for c in scn.cameras}
    for s in samples:
        votes: Counter[str] = Counter()
        for f, box in s.boxes.items():
            g = gts.get(s.tracklet.camera_id, {}).get(f)
            if g is None:
                continue
            iou = box_iou(box[None, :], g[0], np.float64)[0]
            j = int(np.argmax(iou))
            if iou[j] >= MATCH_IOU:
                votes[g[1][j]] += 1
        top = votes.most_common(1)
        s.gt_identity = top[0][0] if top and top[0][1] * 2 >= len(s.boxes) else None


def link_scores(samples: list[Sample], predicted: dict[str, str]) -> dict[str, float]:
    """Pairwise cross-camera link precision/recall/F1 over identities."""
    tp = fp = fn = 0
    for i, a in enumerate(samples):
        for b in samples[i + 1 :]:
            if a.tracklet.camera_id == b.tracklet.camera_id:
                continue
            same_pred = predicted[a.tracklet.tracklet_id] == predicted[b.tracklet.tracklet_id]
            same_gt = a.gt_identity is not None and a.gt_identity == b.gt_identity
            tp += same_pred and same_gt
            fp += same_pred and not same_gt
            fn += same_gt and not same_pred
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return {"link_precision": round(p, 4), "link_recall": round(r, 4), "link_f1": round(f1, 4), "true_links": tp,
            "false_links": fp, "missed_links": fn}  # fmt: skip


def mtmc_idf1(scn: Scenario, samples: list[Sample], predicted: dict[str, str]) -> float:
    """IDF1 of global ids over all cameras' frames (GT boxes vs the system's tracklet boxes).

    IDF1 = 2·IDTP / (GT boxes + system boxes), where IDTP is the most (camera, frame)
    agreements a one-to-one pairing of GT identities with global ids reaches (Ristani et
    al.); a GT box agrees with a global id when one of that id's boxes in the same camera
    and frame overlaps it at IoU ≥ :data:`MATCH_IOU`. System boxes are counted one by one,
    so a global id holding two boxes in one frame (two tracklets on one person, linked)
    pays a false positive for the second. Only the scenario's cameras and frames count;
    with no box at all the score is 0.
    """
    hyp: dict[tuple[str, int], tuple[list[str], list[np.ndarray]]] = {}
    for s in samples:
        g = predicted[s.tracklet.tracklet_id]
        for f, box in s.boxes.items():
            ids, bs = hyp.setdefault((s.tracklet.camera_id, f), ([], []))
            ids.append(g)
            bs.append(box)
    agree: Counter[tuple[str, str]] = Counter()  # (GT identity, global id) -> frames agreeing
    n_gt = n_hyp = 0
    for cam in scn.cameras:
        gts = gt_boxes(scn, cam)
        for f in range(scn.frames):
            gb, gi = gts.get(f, (np.zeros((0, 4)), []))
            hi, hb = hyp.get((cam, f), ([], []))
            n_gt, n_hyp = n_gt + len(gi), n_hyp + len(hi)
            if not gi or not hi:
                continue
            hits = box_iou(gb, np.asarray(hb, np.float64).reshape(-1, 4), np.float64) >= MATCH_IOU
            for row, gt_id in zip(hits, gi, strict=True):
                agree.update((gt_id, h) for h in {hi[j] for j in np.flatnonzero(row)})
    if not n_gt + n_hyp:
        return 0.0
    return round(2 * _best_pairing(agree) / (n_gt + n_hyp), 4)


def _best_pairing(agree: Counter[tuple[str, str]]) -> int:
    """The largest total of ``agree`` over one-to-one pairings of its keys' two sides."""
    if not agree:
        return 0
    rows = sorted({g for g, _ in agree})
    cols = sorted({h for _, h in agree})
    m = np.zeros((len(rows), len(cols)))
    ri, ci = {g: i for i, g in enumerate(rows)}, {h: j for j, h in enumerate(cols)}
    for (g, h), n in agree.items():
        m[ri[g], ci[h]] = n
    r, c = linear_sum_assignment(m, maximize=True)
    return int(m[r, c].sum())
