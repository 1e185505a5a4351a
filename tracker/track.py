"""One track's state: lifecycle, appearance gallery, box history and best crops.

Everything a track accumulates is bounded: the gallery is a ring buffer of at
most ``gallery_size`` vectors plus as many sampled evenly over the track's
life, the best crops at most ``crops_per_tracklet``,
and the box history at most ``max_history_frames`` entries (when full it keeps
every other entry and from then on records every second match, so a person
who stands in view for an hour still spans the whole hour at a coarser step).
The Kalman means and covariances are not here: the tracker keeps them for all
its tracks in two arrays, so :mod:`tracker.kalman` advances them in one call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np


class TrackState(IntEnum):
    """Lifecycle: tentative until confirmed by repeated matches; deleted when lost too long."""

    TENTATIVE = 1
    CONFIRMED = 2
    DELETED = 3


@dataclass(slots=True)
class CropCandidate:
    """One kept image of a track, with what it was chosen by."""

    quality: float
    seq: int
    ts_capture_ns: int
    box_xyxy: tuple[float, float, float, float]
    score: float
    jpeg: bytes
    embedding: np.ndarray  # (D,) float32; (0,) without an embedder
    embedding_grey: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))


class Gallery:
    """A track's appearance vectors: the last ``capacity`` (a ring buffer, for matching),
    an even sample of its whole life (for the tracklet), and their running mean.

    ``vectors()`` is ``(n, D)`` float32 with n <= capacity, the last vectors
    added (Deep SORT's ``nn_budget``): what ``appearance="gallery"`` matching
    compares a detection with. ``span_vectors()`` is ``(m, D)``, m <= capacity,
    vectors spaced evenly over every one added: vectors 0, s, 2s, … with a
    stride s that doubles (keeping every other sample) each time the sample is
    full, as the box history does. A tracklet carries the span, not the last
    vectors: those are the person's way out of view (often cut by the frame's
    border, turned away), while cross-camera matching needs how they looked
    throughout. ``smoothed`` is the exponential moving average (L2-normalised,
    StrongSORT's EMA feature) of every vector ever added, ``(D,)`` float32, or
    None before the first.
    """

    __slots__ = (
        "capacity",
        "momentum",
        "_buf",
        "_n",
        "_pos",
        "smoothed",
        "_span",
        "_span_n",
        "span_stride",
        "added",
    )

    def __init__(self, capacity: int, dim: int, momentum: float) -> None:
        self.capacity = capacity
        self.momentum = momentum
        self._buf = np.zeros((capacity, dim), dtype=np.float32)
        self._n = 0
        self._pos = 0
        self.smoothed: np.ndarray | None = None
        self._span = np.zeros((capacity, dim), dtype=np.float32)
        self._span_n = 0
        self.span_stride = 1
        self.added = 0  # vectors ever offered to the span (added, or carried: add_to_span)

    def __len__(self) -> int:
        return self._n

    @property
    def dim(self) -> int:
        """Length of the vectors this gallery holds."""
        return self._buf.shape[1]

    def add(self, vector: np.ndarray) -> None:
        """Append one (D,) L2-normalised vector, overwriting the oldest when full."""
        self._buf[self._pos] = vector
        self._pos = (self._pos + 1) % self.capacity
        self._n = min(self._n + 1, self.capacity)
        self.add_to_span(vector)
        if self.smoothed is None:
            self.smoothed = np.array(vector, dtype=np.float32)
        else:
            s = self.smoothed  # updated in place: nobody else holds it
            s *= self.momentum
            s += (1.0 - self.momentum) * vector
            s /= max(math.sqrt(float(s @ s)), 1e-12)

    def add_to_span(self, vector: np.ndarray) -> None:
        """Offer one (D,) vector to the whole-life sample only: a frame whose vector was
        carried forward (appearance on demand) still counts as a frame of the track's
        life, so the sample stays even in time, as it is when every box is embedded."""
        if self.added % self.span_stride == 0:
            if self._span_n >= self.capacity:  # full: keep every other, sample half as often
                kept = self._span[: self._span_n : 2]
                self._span_n = len(kept)
                self._span[: self._span_n] = kept
                self.span_stride *= 2
            if self.added % self.span_stride == 0:
                self._span[self._span_n] = vector
                self._span_n += 1
        self.added += 1

    def vectors(self) -> np.ndarray:
        """(n, D) the kept vectors, oldest first."""
        if self._n < self.capacity:
            return self._buf[: self._n]
        return np.roll(self._buf, -self._pos, axis=0)

    def span_vectors(self) -> np.ndarray:
        """(m, D) vectors sampled evenly over the track's whole life, oldest first."""
        return self._span[: self._span_n]

    def restore(
        self,
        vectors: np.ndarray,
        smoothed: np.ndarray | None,
        span: np.ndarray | None = None,
        span_stride: int = 1,
        added: int = 0,
    ) -> None:
        """Refill from (n, D) vectors (oldest first), a smoothed (D,) vector and the
        span sample with its stride and count (without them, as a state saved before
        the span existed: the span restarts from the last vectors)."""
        n = min(len(vectors), self.capacity)
        self._buf[:n] = vectors[len(vectors) - n :]
        self._n = n
        self._pos = n % self.capacity
        self.smoothed = None if smoothed is None else np.array(smoothed, dtype=np.float32)
        if span is None:
            span, span_stride, added = self._buf[:n], 1, n
        m = min(len(span), self.capacity)
        self._span[:m] = span[len(span) - m :]
        self._span_n = m
        self.span_stride = span_stride
        self.added = added


class Track:
    """One person on one camera, as the tracker believes it.

    ``missed_frames`` counts frames since the last match (Deep SORT's ``time_since_update``), ``ts_last_ns`` is that match's
    capture time.
    """

    __slots__ = (
        "track_id",
        "state",
        "hits",
        "missed_frames",
        "ts_start_ns",
        "ts_last_ns",
        "gallery",
        "hist_seqs",
        "hist_ts",
        "hist_boxes",
        "hist_scores",
        "hist_stride",
        "matches",
        "last_seq",
        "last_box",
        "last_score",
        "crops",
    )

    def __init__(
        self,
        track_id: int,
        ts_start_ns: int,
        gallery: Gallery,
    ) -> None:
        self.track_id = track_id
        self.state = TrackState.TENTATIVE
        self.hits = 0
        self.missed_frames = 0
        self.ts_start_ns = ts_start_ns
        self.ts_last_ns = ts_start_ns
        self.gallery = gallery
        self.hist_seqs: list[int] = []
        self.hist_ts: list[int] = []
        self.hist_boxes: list[tuple[float, float, float, float]] = []
        self.hist_scores: list[float] = []
        self.hist_stride = 1
        self.matches = 0
        self.last_seq = -1
        self.last_box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
        self.last_score = 0.0
        self.crops: list[CropCandidate] = []

    @property
    def confirmed(self) -> bool:
        """True once the track has had ``confirm_hits`` matches."""
        return self.state == TrackState.CONFIRMED

    def record(
        self,
        seq: int,
        ts_ns: int,
        box_xyxy: tuple[float, float, float, float],
        score: float,
        max_history_frames: int,
    ) -> None:
        """Note a match in the box history (bounded; see the module docstring)."""
        self.hits += 1
        self.missed_frames = 0
        self.ts_last_ns = ts_ns
        self.last_seq = seq
        self.last_box = box_xyxy
        self.last_score = score
        if self.matches % self.hist_stride == 0:
            if len(self.hist_seqs) >= max_history_frames:
                for lst in (self.hist_seqs, self.hist_ts, self.hist_boxes, self.hist_scores):
                    del lst[1::2]
                self.hist_stride *= 2
            if self.matches % self.hist_stride == 0:
                self.hist_seqs.append(seq)
                self.hist_ts.append(ts_ns)
                self.hist_boxes.append(box_xyxy)
                self.hist_scores.append(score)
        self.matches += 1

    def history(self) -> tuple[list[int], list[int], np.ndarray, np.ndarray]:
        """(seqs, ts_ns, boxes (M, 4) float32, scores (M,) float32), always ending at the last match."""
        seqs, ts, boxes, scores = self.hist_seqs, self.hist_ts, self.hist_boxes, self.hist_scores
        if not seqs or seqs[-1] != self.last_seq:
            seqs = [*seqs, self.last_seq]
            ts = [*ts, self.ts_last_ns]
            boxes = [*boxes, self.last_box]
            scores = [*scores, self.last_score]
        return (
            list(seqs),
            list(ts),
            np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
            np.asarray(scores, dtype=np.float32),
        )

    def may_keep_crop(self, quality: float, max_crops: int) -> bool:
        """Cheap pre-check of :meth:`offer_crop`: False when a crop of ``quality`` is surely not kept."""
        return len(self.crops) < max_crops or quality > min(c.quality for c in self.crops)

    def offer_crop(self, crop: CropCandidate, max_crops: int, min_gap_ns: int) -> None:
        """Keep ``crop`` if it is among the best ``max_crops`` at least ``min_gap_ns`` apart.

        A candidate closer in time than ``min_gap_ns`` to kept crops replaces
        them only if it beats all of them, so the kept images spread over the
        track instead of being near-copies from consecutive frames.
        """
        if max_crops <= 0:
            return
        near = [abs(c.ts_capture_ns - crop.ts_capture_ns) < min_gap_ns for c in self.crops]
        if any(near):
            if crop.quality > max(c.quality for c, n in zip(self.crops, near, strict=True) if n):
                self.crops = [c for c, n in zip(self.crops, near, strict=True) if not n]
                self.crops.append(crop)
            return
        if len(self.crops) < max_crops:
            self.crops.append(crop)
            return
        worst = min(range(len(self.crops)), key=lambda i: self.crops[i].quality)
        if crop.quality > self.crops[worst].quality:
            self.crops[worst] = crop


STATIC_SPOT_IOU = 0.5
"""A still track's median box this close (IoU) to a known still spot is the same object."""

MAX_STATIC_SPOTS = 64
"""Still spots remembered per camera (the oldest are forgotten first)."""


def drift(boxes_xyxy: np.ndarray) -> float:
    """How far a track's box centre strays over its life, in box heights.

    The 95th percentile of the centre's distance from its median position,
    over the median box height: a walking person covers several heights, a
    person standing still sways by about a tenth (0.09-0.12 measured on the
    PETS cut's stillest people), a sign post only jitters.
    """
    b = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    if len(b) == 0:
        return math.inf
    centre = np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2], axis=1)
    height = max(float(np.median(b[:, 3] - b[:, 1])), 1.0)
    spread = np.linalg.norm(centre - np.median(centre, axis=0), axis=1)
    return float(np.percentile(spread, 95)) / height


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(x2 - x1, 0.0) * max(y2 - y1, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


class StaticSpots:
    """Places on one camera where a 'person' never moves: a sign post, a statue, a coat rack.

    A detector that takes such a thing for a person finds it in frame after
    frame, often as a run of short tracks (the track breaks when the score
    dips). Each finished track that did not move (:func:`drift` at most
    ``max_drift``) adds its life to the still spot at its median box; once a
    spot has been still for ``min_still_s`` in total, tracks there that do
    not move are suppressed before they become tracklets. A person who walks
    through the spot moves, so is never suppressed.
    """

    def __init__(self, max_drift: float, min_still_s: float) -> None:
        self.max_drift = max_drift
        self.min_still_s = min_still_s
        self._spots: list[tuple[np.ndarray, float]] = []  # (median box, seconds still)

    def still(self, boxes_xyxy: np.ndarray, life_s: float) -> bool:
        """Count a finished track; True when it is a still object to suppress."""
        b = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
        if len(b) == 0 or drift(b) > self.max_drift:
            return False
        box = np.median(b, axis=0)
        for i, (spot, seconds) in enumerate(self._spots):
            if _iou(spot, box) >= STATIC_SPOT_IOU:
                self._spots[i] = (spot, seconds + life_s)
                return seconds + life_s >= self.min_still_s
        self._spots.append((box, life_s))
        del self._spots[:-MAX_STATIC_SPOTS]
        return life_s >= self.min_still_s
