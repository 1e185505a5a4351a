"""Appearance on demand: embed only the boxes whose association may need appearance.

The tracker needs a person's appearance when motion and overlap cannot tell
who is who: a new person, people close together or crossing, a box that jumped.
A box that continues exactly one box of the camera's previous frame, with no
other box near either of them, is associated by IoU alone; it carries that
box's vector forward instead of running the appearance model again.

Per camera (frames of a camera must come in order, which the detector stage's
partitioning by camera gives), a box is **embedded** unless all of these hold:

* its best IoU with the previous frame's boxes is at least ``match_iou``, and
  they are each other's best match;
* no other box of the previous frame overlaps it, and no other box of this
  frame overlaps it or that previous box (IoU > 0): an unambiguous pair;
* the carried vector was embedded fewer than ``refresh_frames`` frames ago
  (the tracker's appearance gallery keeps learning a person's changing pose);
* its crop is not better than every crop embedded along its chain so far
  (quality as the tracker ranks the crops a tracklet keeps: score × height up
  to ``full_detail_height_px`` × sharpness / (sharpness + ``sharpness_half_point``)),
  so the crops a tracklet keeps carry their own vectors. ``better_ratio`` (1.0)
  asks for that many times better: 1.1, 1.25 and 1.5 embed 82, 80 and 79 % as
  many crops as 1.0 on PETS09 (4.5 → 3.7 a frame) and linked better on the long
  standard cut (link F1 0.783 against 0.771), but a tracklet's best crops then
  carry older crops' vectors, and on short live runs (a cold site: absolute
  thresholds) link recall fell (0.56 and 0.69 against 0.81 in the end-to-end
  test's 200-frame replay), so it stays 1.0.

After a gap (a dropped frame, a restart) boxes no longer overlap and are embedded.

A carried vector is flagged (``FrameAnalysis.carried``, ``Detections.carried``):
the tracker matches with it but keeps only embedded vectors in a track's
matching gallery (no copies crowding out other looks). The tracklet's
whole-life sample counts it as the frame it stands for (``TrackerParams.
span_counts_carried``), so the sample is even in time, as with every box
embedded, instead of crowding where many boxes were embedded.
On by default (``[detector.appearance] on_demand``); the README's *Evaluation*
has what it does to ``eval mot`` and ``eval mtmc`` and to the detector's CPU.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from common.boxes import box_iou
from detector.config import AppearanceConfig


@dataclass(frozen=True)
class EmbedPlan:
    """For each of a frame's N boxes: embed it, or carry box ``parent`` of the previous frame."""

    embed: np.ndarray  # (N,) bool
    parent: np.ndarray  # (N,) intp index into the previous frame's boxes, -1 when embedded
    frame_index: int  # the camera's frame counter this plan belongs to


@dataclass
class _Camera:
    boxes: np.ndarray  # (M, 4) the last planned frame's boxes
    age: np.ndarray  # (M,) frames since each box's vector was embedded
    best_quality: np.ndarray  # (M,) best crop quality embedded along each box's chain
    vectors: np.ndarray | None = None  # (M', D) the last resolved frame's vectors
    planned: int = 0  # frames planned
    resolved: int = 0  # frames resolved


def crop_quality(
    boxes_xyxy: np.ndarray, scores: np.ndarray, sharpness: np.ndarray, config: AppearanceConfig
) -> np.ndarray:
    """(N,) how good each crop is for re-identification (the tracker's ranking, no occlusion)."""
    heights = boxes_xyxy[:, 3] - boxes_xyxy[:, 1]
    s = np.maximum(sharpness.astype(np.float64), 0.0)
    size = np.minimum(heights / config.full_detail_height_px, 1.0)
    return scores.astype(np.float64) * size * s / (s + config.sharpness_half_point)


def _unambiguous_parents(boxes: np.ndarray, prev: np.ndarray, match_iou: float) -> np.ndarray:
    """(N,) index of the previous box each box unambiguously continues, else -1."""
    parent = np.full(len(boxes), -1, dtype=np.intp)
    if not len(boxes) or not len(prev):
        return parent
    iou = box_iou(boxes, prev)  # (N, M)
    here = box_iou(boxes, boxes)
    np.fill_diagonal(here, 0.0)
    touching_prev = (iou > 0).sum(axis=1)  # previous boxes overlapping each box
    touching_cur = (iou > 0).sum(axis=0)  # boxes overlapping each previous box
    best = iou.argmax(axis=1)
    for i, j in enumerate(best):
        if (
            iou[i, j] >= match_iou
            and touching_prev[i] == 1
            and touching_cur[j] == 1
            and not (here[i] > 0).any()
        ):
            parent[i] = j
    return parent


class AppearanceGate:
    """Decides per box whether to run the appearance model, and carries vectors forward.

    Use :meth:`plan` for a camera's frames in order, embed the boxes the plans
    ask for, then :meth:`resolve` the same frames in the same order.
    """

    def __init__(self, config: AppearanceConfig) -> None:
        self.config = config
        self._cameras: OrderedDict[str, _Camera] = OrderedDict()

    def reset(self, camera_id: str) -> None:
        """Forget a camera (its stream ended): its next frame is embedded whole."""
        self._cameras.pop(camera_id, None)

    def plan(
        self, camera_id: str, boxes_xyxy: np.ndarray, scores: np.ndarray, sharpness: np.ndarray
    ) -> EmbedPlan:
        """Which of a frame's boxes to embed; remembers the boxes for the camera's next frame."""
        cfg = self.config
        n = len(boxes_xyxy)
        quality = crop_quality(boxes_xyxy, scores, sharpness, cfg)
        st = self._cameras.get(camera_id)
        if not cfg.on_demand or st is None:
            parent = np.full(n, -1, dtype=np.intp)
        else:
            parent = _unambiguous_parents(boxes_xyxy, st.boxes, cfg.match_iou)
            has = parent >= 0
            stale = np.zeros(n, dtype=bool)
            better = np.zeros(n, dtype=bool)
            stale[has] = st.age[parent[has]] + 1 >= cfg.refresh_frames
            better[has] = quality[has] > cfg.better_ratio * st.best_quality[parent[has]]
            parent[stale | better] = -1
        embed = parent < 0
        age = np.zeros(n, dtype=np.int64)
        best_q = quality.copy()
        if st is not None and (~embed).any():
            age[~embed] = st.age[parent[~embed]] + 1
            best_q[~embed] = st.best_quality[parent[~embed]]
        if st is None:
            st = _Camera(boxes_xyxy, age, best_q)
            self._cameras[camera_id] = st
            self._bound()
        else:
            st.boxes, st.age, st.best_quality = boxes_xyxy, age, best_q
            self._cameras.move_to_end(camera_id)
        st.planned += 1
        return EmbedPlan(embed, parent, st.planned)

    def resolve(self, camera_id: str, plan: EmbedPlan, fresh: np.ndarray) -> np.ndarray:
        """(N, D) vectors of a planned frame: ``fresh`` for the embedded boxes, carried for the rest.

        Raises:
            RuntimeError: the frame is not the camera's next planned one.
        """
        st = self._cameras.get(camera_id)
        if st is None or plan.frame_index != st.resolved + 1:
            raise RuntimeError(f"{camera_id}: frames resolved out of order with their plans")
        out = np.empty((len(plan.embed), fresh.shape[1]), dtype=np.float32)
        out[plan.embed] = fresh
        carried = ~plan.embed
        if carried.any():
            if st.vectors is None or st.vectors.shape[1] != fresh.shape[1]:
                raise RuntimeError(f"{camera_id}: no vectors to carry forward")
            out[carried] = st.vectors[plan.parent[carried]]
        st.vectors = out
        st.resolved += 1
        return out

    def _bound(self) -> None:
        while len(self._cameras) > self.config.max_cameras:
            self._cameras.popitem(last=False)
