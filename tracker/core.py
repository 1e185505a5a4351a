"""The per-camera tracker: Deep SORT with ByteTrack's second association.

One :class:`CameraTracker` per camera. Each :meth:`CameraTracker.step` takes
one frame's detections as arrays and returns the tracks matched in that frame
and the tracklets that finished. Per frame:

1. **Predict** every track to the frame's capture time (Kalman, time in seconds).
2. **Appearance stage.** Confirmed tracks against confident detections
   (score >= ``high_score``): cosine distance to the track's gallery (or its
   smoothed vector), pairs the Mahalanobis gate rejects forbidden, assigned
   by Deep SORT's matching cascade (tracks seen more recently choose first)
   or in one global assignment.
3. **IoU stage.** Tentative tracks and tracks missed only briefly
   (``iou_max_lost_s``) against the confident detections left, by box overlap.
4. **Low-score stage** (ByteTrack). Confirmed tracks still unmatched and
   missed only briefly against the doubtful detections (``low_score`` <=
   score < ``high_score``), by overlap: occluded people keep their track.
5. **Lifecycle.** Tentative tracks that miss a frame die silently; confirmed
   tracks not matched for ``lost_track_s`` are deleted and become tracklets;
   confident detections nobody took start tentative tracks, confirmed after
   ``confirm_hits`` matches.

Time comes only from the messages (``ts_ns``), track ids from the
:class:`IdCounter` passed in, so the same input always gives the same output.
Nothing here imports Kafka, Redis or Prometheus.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from common.boxes import box_iou
from common.units import NS_PER_S
from schemas.messages import Crop, Detections, Tracklet, pack_f32, unpack_f32
from tracker import kalman
from tracker.kalman import CHI2_95_2DOF, CHI2_95_4DOF, KalmanParams
from tracker.matching import INFEASIBLE, assign, cascade_assign, covered_fraction
from tracker.track import CropCandidate, Gallery, StaticSpots, Track, TrackState

# Detection-crop quality: the embedder's input height (OSNet: 256×128). A crop
# at least this tall loses no detail when resized, so taller is no better.
CROP_FULL_DETAIL_HEIGHT_PX = 256.0
# Variance of the Laplacian at which a crop counts as half sharp; ~100 is the
# customary blur threshold for that measure on 8-bit images.
SHARPNESS_HALF_POINT = 100.0

FRAME_CLOCK_HISTORY = 15
"""Stamp differences whose median is :class:`FrameClock`'s rough interval."""

FRAME_CLOCK_MIN_SAMPLES = 5
"""Differences the rough interval needs."""

FRAME_CLOCK_SPAN = 256
"""Frames over which :class:`FrameClock` measures a camera's long-run interval."""

FRAME_CLOCK_MIN_SPAN = 32
"""Whole intervals the long-run interval needs before elapsed times are counted in
frames (20 ms of jitter at each end then moves it by under 0.1 %)."""

FRAME_CLOCK_DROP = 1.75
"""A stamp difference of at least this many rough intervals counts as dropped frames
(the nearest whole number of intervals); a shorter one is one frame, however jittered."""

FRAME_CLOCK_MAX_GAP = 10
"""A stamp difference of more intervals than this restarts the long-run interval."""

FRAME_CLOCK_LIMIT_SLACK = 0.25
"""A limit admits ``floor(limit / interval + this)`` frames: a limit that is a whole
number of frames stays one although the learnt interval is off by a little."""


class TrackerParams(BaseModel):
    """What the tracker may match, for how long, and what it keeps.

    Times are in seconds so they hold at any frame rate; counts are of
    matches (evidence), not of time. The defaults that differ from Deep SORT's
    (``high_score``, ``appearance``, ``iou_max_lost_s``, ``lost_track_s``)
    were chosen on PETS09-S2L1 with ``crosscam eval mot`` (a single sequence:
    treat them as a starting point for another camera, not as universal).

    The one definition of each parameter's default, bounds and description
    (the attribute docstring): ``crosscam tracker``'s settings
    (:class:`tracker.settings.TrackerSettings`) inherit these fields.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    kalman: KalmanParams = Field(default_factory=KalmanParams)

    high_score: float = Field(0.6, ge=0.0, le=1.0)
    """Detections at or above this score take part in appearance matching and
    may start tracks. Raising it starts fewer false tracks but drops faint people."""

    low_score: float = Field(0.1, ge=0.0, le=1.0)
    """Detections below ``high_score`` but at or above this only extend existing
    tracks by overlap (ByteTrack); below it they are ignored. Raising it lowers
    the chance of extending a track onto clutter but loses partly hidden people."""

    appearance: Literal["gallery", "smoothed"] = "smoothed"
    """Appearance distance to a track: the nearest of its gallery vectors (Deep
    SORT) or its exponentially smoothed vector (StrongSORT)."""

    max_appearance_distance: float = Field(0.3, gt=0.0, le=2.0)
    """Largest cosine distance of an appearance match. Raising it keeps ids
    through pose and light changes but lets similar-looking people swap."""

    gate_chi2: float = Field(CHI2_95_4DOF, gt=0.0)
    """Mahalanobis gate (squared distance) on the appearance stage: a detection
    outside it cannot be the track however alike it looks. Raising it allows
    bigger jumps (missed frames, sudden turns) but also more wrong matches."""

    gate_only_position: bool = False
    """Gate on the box centre only (2 dof); use ``CHI2_95_2DOF`` with it."""

    matching_cascade: bool = True
    """Deep SORT's cascade (recently seen tracks choose first) instead of one
    global assignment."""

    max_iou_distance: float = Field(0.7, gt=0.0, le=1.0)
    """IoU stage: largest ``1 - IoU`` of a match (Deep SORT's 0.7). Raising it
    lets fast movers match at low overlap but lets neighbours swap."""

    low_score_max_iou_distance: float = Field(0.5, gt=0.0, le=1.0)
    """Low-score stage: largest ``1 - IoU`` (ByteTrack's 0.5); stricter because
    a doubtful box is only trusted where the track already is."""

    iou_max_lost_s: float = Field(0.5, ge=0.0, le=60.0)
    """Confirmed tracks whose last match is at most this old also try the IoU
    and low-score stages (Deep SORT: just the previous frame). Raising it
    re-finds people after short gaps by overlap alone, which is unsafe in crowds."""

    regular_frame_clock: bool = True
    """Count elapsed times in frames of the camera's regular interval (learnt from
    its stamps, :class:`FrameClock`): the limits above and below and the motion
    prediction then do not depend on stamp jitter. Off: every stamp difference is
    taken as is, in seconds."""

    lost_track_s: float = Field(2.0, gt=0.0, le=600.0)
    """A confirmed track not matched for longer is deleted and becomes a
    tracklet. Raising it bridges longer occlusions but keeps ghosts alive that
    may grab a newcomer."""

    confirm_hits: int = Field(3, ge=1, le=100)
    """Matches a tentative track needs to be confirmed (Deep SORT's n_init).
    Raising it suppresses short false tracks but loses each track's first frames."""

    gallery_size: int = Field(32, ge=1, le=1000)
    """Appearance vectors kept per track (Deep SORT's nn_budget), the last ones
    matched: with ``appearance="gallery"`` what a detection is compared with.
    As many again, sampled evenly over the track's whole life, travel in the
    tracklet. Memory is ``2 × gallery_size × D × 4`` bytes per track (half that
    as float16 in a checkpoint); raising it remembers more looks."""

    smoothing_momentum: float = Field(0.9, ge=0.0, le=1.0)
    """Weight of the old smoothed vector when a new one arrives (StrongSORT's 0.9)."""

    gallery_max_covered: float = Field(0.3, ge=0.0, le=1.0)
    """A detection more covered than this by a box in front of it does not add
    its vector to the gallery (it shows part of someone else)."""

    span_counts_carried: bool = True
    """A frame whose vector the detector carried forward (appearance on demand) is
    offered to the tracklet's whole-life sample (not to the matching gallery), so
    the sample is even in time as with every box embedded, instead of crowding
    where many boxes were embedded (people close together, a better crop)."""

    crops_per_tracklet: int = Field(5, ge=0, le=50)
    """K best crops kept per track for the tracklet."""

    crop_min_gap_s: float = Field(0.5, ge=0.0, le=60.0)
    """Kept crops are at least this far apart in time, so they show different poses."""

    max_history_frames: int = Field(4096, ge=16, le=1_000_000)
    """Box-history entries kept per track; beyond, the history is thinned (see
    :mod:`tracker.track`). About 10 minutes at 7 fps before thinning."""

    min_tracklet_s: float = Field(0.5, ge=0.0)
    """Finished tracklets shorter than this (first to last match) are dropped."""

    min_tracklet_frames: int = Field(3, ge=1)
    """Finished tracklets with fewer matched frames than this are dropped."""

    min_tracklet_mean_score: float = Field(0.3, ge=0.0, le=1.0)
    """Finished tracklets whose mean detection score is below this are dropped."""

    static_max_drift: float = 0.05
    """A track whose box centre strays at most this many box heights (95th percentile)
    over its life did not move (see :class:`tracker.track.StaticSpots`): half the
    sway of the stillest person measured on the PETS cut (0.09)."""

    static_min_s: float = 10.0
    """Seconds a spot must have held a motionless 'person' (over one or several
    tracks) before motionless tracks there are suppressed as a thing (``static``)."""

    end_when_out_of_view: bool = True
    """A confirmed track that is missed while its predicted box centre lies outside
    the frame ends at once (a tracklet, ``lost``) instead of waiting ``lost_track_s``:
    the person walked out of view. Kept alive, such a track took the next person
    to step in at that edge and carried both in one tracklet (on the 3-camera PETS
    cut, the two tracklets that held two people longest). A person who steps straight
    back in starts a new track, which the linker joins by appearance. Needs the
    frame size (from the detections message, or ``step``'s ``frame_size``)."""


class IdCounter:
    """Hands out track ids 1, 2, 3, ...; its ``next_id`` is part of the saved state."""

    __slots__ = ("next_id",)

    def __init__(self, next_id: int = 1) -> None:
        self.next_id = next_id

    def __call__(self) -> int:
        track_id = self.next_id
        self.next_id += 1
        return track_id


@dataclass(frozen=True, slots=True)
class TrackView:
    """A track matched in the current frame."""

    track_id: int
    box_xyxy: tuple[float, float, float, float]
    """The matched detection's box."""
    score: float
    confirmed: bool
    det_index: int
    """Row of the detection in the frame's arrays."""


@dataclass
class StepResult:
    """What one frame produced."""

    tracks: list[TrackView] = field(default_factory=list)
    finished: list[Tracklet] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)
    """Tracklets dropped in this step, by reason (``short``, ``few_frames``, ``low_score``,
    ``static``: a thing that never moves, see :class:`tracker.track.StaticSpots`)."""
    duplicate: bool = False
    """The frame had been applied already (replay after a restart) and was skipped."""

    @property
    def confirmed(self) -> list[TrackView]:
        """The confirmed tracks matched in this frame."""
        return [t for t in self.tracks if t.confirmed]


@dataclass(frozen=True)
class FrameArrays:
    """One frame's detections as arrays (N boxes)."""

    boxes_xyxy: np.ndarray  # (N, 4) float32
    scores: np.ndarray  # (N,) float32
    embeddings: np.ndarray  # (N, D) float32, D = 0 without an embedder
    sharpness: np.ndarray | None  # (N,) float32, None when not measured
    crops_jpeg: Sequence[bytes] | None  # N JPEGs, None when not sent


def frame_arrays(msg: Detections) -> FrameArrays:
    """The arrays of a :class:`schemas.Detections` message (views, no copies)."""
    scores = msg.scores_array()
    n = len(scores)
    return FrameArrays(
        boxes_xyxy=msg.boxes_array().reshape(n, 4),
        scores=scores,
        embeddings=msg.embeddings_array(),
        sharpness=msg.sharpness_array() if msg.sharpness else None,
        crops_jpeg=msg.crops_jpeg if len(msg.crops_jpeg) == n else None,
    )


def crop_quality(
    boxes_xyxy: np.ndarray, scores: np.ndarray, sharpness: np.ndarray | None, covered: np.ndarray
) -> np.ndarray:
    """(N,) how good each detection's crop is for re-identification, in [0, 1].

    The product of the detector's score, the crop's height relative to
    ``CROP_FULL_DETAIL_HEIGHT_PX`` (capped at 1), its sharpness (variance of
    the Laplacian, saturating at ``SHARPNESS_HALF_POINT``; 1 when not
    measured) and the fraction not covered by a box in front of it.
    """
    heights = boxes_xyxy[:, 3] - boxes_xyxy[:, 1]
    q = scores.astype(np.float64) * np.minimum(heights / CROP_FULL_DETAIL_HEIGHT_PX, 1.0)
    if sharpness is not None:
        s = np.maximum(sharpness.astype(np.float64), 0.0)
        q *= s / (s + SHARPNESS_HALF_POINT)
    return q * (1.0 - covered)


@dataclass(frozen=True, slots=True)
class _FrameInput:
    """One frame as :meth:`CameraTracker.step` works on it (N detections)."""

    seq: int
    ts_ns: int
    boxes: np.ndarray  # (N, 4) float32 xyxy
    scores: np.ndarray  # (N,) float32
    emb: np.ndarray  # (N, D) float32, D = 0 without appearance
    xyah: np.ndarray  # (N, 4) the boxes as Kalman measurements
    covered: np.ndarray  # (N,) fraction covered by a box in front
    quality: np.ndarray | None  # (N,) crop quality, None when no crops are kept
    crops_jpeg: Sequence[bytes] | None
    carried: np.ndarray | None = None  # (N,) bool, vector carried forward (not embedded anew)


class FrameClock:
    """A camera's regular frame interval, learnt from its stamps; elapsed times read
    as whole frame intervals.

    A camera captures at a steady rate, but the stamps that reach the tracker can
    jitter (a server that stamps frames as it sends them). The tracker's limits
    (``iou_max_lost_s``, ``lost_track_s``) then fall on either side of a frame
    depending on that jitter: at 7 fps, ``lost_track_s`` = 2.0 s is exactly 14
    frames, and 20 ms of jitter split tracks of the standard cut that exact stamps
    keep whole. So elapsed times are counted in frames.

    The interval is the long-run rate: stamp span over the whole intervals in it,
    over the last :data:`FRAME_CLOCK_SPAN` frames (a stamp difference is one
    interval, or, from :data:`FRAME_CLOCK_DROP` rough median intervals up, the
    nearest whole number of them: a dropped frame counts two). Jitter barely moves it; it is used once it rests on
    :data:`FRAME_CLOCK_MIN_SPAN` intervals. An elapsed time is the nearest whole
    number of intervals (at least one); a limit admits
    ``floor(limit / interval + FRAME_CLOCK_LIMIT_SLACK)`` of them. Before the rate
    is learnt, times are compared in seconds, as before; a gap of more than
    :data:`FRAME_CLOCK_MAX_GAP` intervals (a pause, a restarted stream, a new
    rate) starts learning again. Exact stamps give the decisions they gave before.
    """

    def __init__(self) -> None:
        self._dts: deque[float] = deque(maxlen=FRAME_CLOCK_HISTORY)
        self._marks: deque[tuple[int, int]] = deque(maxlen=FRAME_CLOCK_SPAN)
        self._last_ns: int | None = None

    def _rough_s(self) -> float | None:
        if len(self._dts) < FRAME_CLOCK_MIN_SAMPLES:
            return None
        return float(np.median(self._dts))

    @property
    def interval_s(self) -> float | None:
        """The learnt interval, or None while it rests on too few frames."""
        if len(self._marks) < 2:
            return None
        (t0, k0), (t1, k1) = self._marks[0], self._marks[-1]
        if k1 - k0 < FRAME_CLOCK_MIN_SPAN:
            return None
        return (t1 - t0) / NS_PER_S / (k1 - k0)

    def frames(self, elapsed_s: float) -> int | None:
        """Whole frame intervals in ``elapsed_s`` (at least one), or None before the
        interval is learnt."""
        interval = self.interval_s
        if interval is None or interval <= 0 or elapsed_s <= 0:
            return None
        return max(1, round(elapsed_s / interval))

    def tick(self, ts_ns: int, dt_s: float) -> float:
        """Record a frame's stamp; ``dt_s``, the time since the tracker's previous
        frame, for motion prediction: whole intervals once the interval is learnt
        (as given before that, or after a restore until this clock saw two frames)."""
        last, self._last_ns = self._last_ns, ts_ns
        if last is None or ts_ns <= last:
            return dt_s
        step_s = (ts_ns - last) / NS_PER_S
        rough = self._rough_s()
        self._dts.append(step_s)
        if rough is not None and rough > 0:
            # one frame unless clearly more: jitter moves a step by a fifth of an interval
            whole = 1 if step_s < FRAME_CLOCK_DROP * rough else round(step_s / rough)
            if whole > FRAME_CLOCK_MAX_GAP:
                self._marks.clear()  # a pause or a new rate: learn it again
            else:
                if not self._marks:
                    self._marks.append((last, 0))
                self._marks.append((ts_ns, self._marks[-1][1] + whole))
        k = self.frames(dt_s)
        interval = self.interval_s
        return dt_s if k is None or interval is None else k * interval

    def within(self, elapsed_s: float, limit_s: float) -> bool:
        """Whether ``elapsed_s`` is at most ``limit_s``, counted in frames once it can be."""
        return bool(self.within_all(np.array([elapsed_s]), limit_s)[0])

    def within_all(self, elapsed_s: np.ndarray, limit_s: float) -> np.ndarray:
        """:meth:`within` of each elapsed time at once (the tracker's per-frame check)."""
        interval = self.interval_s
        if interval is None or interval <= 0:
            return elapsed_s <= limit_s
        k = np.maximum(1.0, np.rint(elapsed_s / interval))  # :meth:`frames`, vectorised
        in_frames = k <= math.floor(limit_s / interval + FRAME_CLOCK_LIMIT_SLACK)
        return np.where(elapsed_s > 0, in_frames, elapsed_s <= limit_s)


class CameraTracker:
    """Deep SORT style tracker for one camera (see the module docstring).

    Args:
        camera_id: goes into every tracklet and its id.
        params: the tracker's knobs.
        ids: the counter track ids come from (its ``next_id`` is saved with the state).
    """

    def __init__(
        self, camera_id: str, params: TrackerParams | None = None, ids: IdCounter | None = None
    ) -> None:
        self.camera_id = camera_id
        self.params = params or TrackerParams()
        self.ids = ids or IdCounter()
        self.tracks: list[Track] = []
        # Kalman state of self.tracks, row for row, kept batched: (T, 8), (T, 8, 8).
        self.mean = np.zeros((0, kalman.STATE_DIM))
        self.cov = np.zeros((0, kalman.STATE_DIM, kalman.STATE_DIM))
        self.last_seq = -1
        self.last_ts_ns: int | None = None
        self.clock = FrameClock()
        self.frame_width = 0
        self.frame_height = 0
        self.embedding_dim = 0
        self.static = StaticSpots(self.params.static_max_drift, self.params.static_min_s)
        self.greyscale = False  # the camera's frames carry no colour (the detector says)
        self._emb_grey: np.ndarray | None = None  # this frame's (N, D) greyscale-crop vectors

    # ------------------------------------------------------------------ frames

    def already_seen(self, seq: int, ts_ns: int) -> bool:
        """True for a frame this state has applied (same or older seq and time).

        A new ingest session restarts ``seq`` at 0 with later capture times;
        those frames are new, so both must be old to count as seen.
        """
        return self.last_ts_ns is not None and seq <= self.last_seq and ts_ns <= self.last_ts_ns

    def step_detections(self, msg: Detections) -> StepResult:
        """Apply one :class:`schemas.Detections` message; ``eos`` closes every track."""
        if msg.width:
            self.frame_width, self.frame_height = msg.width, msg.height
        if msg.eos:
            if self.already_seen(msg.seq, msg.ts_capture_ns):
                return StepResult(duplicate=True)
            self.last_seq, self.last_ts_ns = msg.seq, msg.ts_capture_ns
            return self.close()
        a = frame_arrays(msg)
        n, dim = len(a.scores), msg.embedding_dim
        sized = bool(dim) and len(msg.embeddings_grey) == 4 * n * dim  # else ignored, never fatal
        self.set_colour(msg.greyscale, unpack_f32(msg.embeddings_grey, dim) if sized else None)
        return self.step(
            msg.ts_capture_ns,
            msg.seq,
            a.boxes_xyxy,
            a.scores,
            a.embeddings,
            a.sharpness,
            a.crops_jpeg,
            carried=msg.carried_array(),
        )

    def set_colour(self, greyscale: bool, embeddings_grey: np.ndarray | None) -> None:
        """The next frame's colour facts: camera greyscale, (N, D) vectors of its crops made grey.

        Carried into the tracklet (``greyscale``, each kept crop's
        ``embedding_grey``) so the ReID stage can compare a greyscale camera
        like with like. Not calling it leaves both empty.
        """
        self.greyscale = greyscale
        self._emb_grey = embeddings_grey

    def step(
        self,
        ts_ns: int,
        seq: int,
        boxes_xyxy: np.ndarray,
        scores: np.ndarray,
        embeddings: np.ndarray | None = None,
        sharpness: np.ndarray | None = None,
        crops_jpeg: Sequence[bytes] | None = None,
        carried: np.ndarray | None = None,
        frame_size: tuple[int, int] | None = None,
    ) -> StepResult:
        """Apply one frame.

        Args:
            ts_ns: capture time, ns.
            seq: the camera's frame sequence number.
            boxes_xyxy: (N, 4) boxes in pixels.
            scores: (N,) detector scores.
            embeddings: (N, D) L2-normalised appearance vectors, or None / D = 0.
            sharpness: (N,) variance of the Laplacian of each crop, or None.
            crops_jpeg: N JPEG crops, or None.
            carried: (N,) bool, True where the detector carried the vector of the
                box this one continues instead of embedding its crop (appearance
                on demand); such a vector is matched with, but enters a track's
                matching gallery only while the gallery is empty, so that gallery
                holds one vector per embedded crop; the tracklet's whole-life
                sample counts it for its frame (``span_counts_carried``). None:
                all fresh.
            frame_size: (width, height) of the frame in pixels, if the caller knows
                it (``step_detections`` takes it from the message); kept until changed.
        """
        if self.already_seen(seq, ts_ns):
            return StepResult(duplicate=True)
        if frame_size is not None and frame_size[0] > 0 and frame_size[1] > 0:
            self.frame_width, self.frame_height = frame_size
        dt_s = 0.0 if self.last_ts_ns is None else max(ts_ns - self.last_ts_ns, 0) / NS_PER_S
        if self.params.regular_frame_clock:
            dt_s = self.clock.tick(ts_ns, dt_s)
        self.last_seq, self.last_ts_ns = seq, ts_ns
        frame = self._frame_input(
            ts_ns, seq, boxes_xyxy, scores, embeddings, sharpness, crops_jpeg, carried
        )
        mean, cov = self._predict(dt_s)  # 1
        det_of_track, free_high = self._associate(frame, mean, cov)  # 2-4
        matched = np.flatnonzero(det_of_track >= 0)
        if len(matched):  # Kalman update of every matched track, in one batch
            dets = det_of_track[matched]
            mean[matched], cov[matched] = kalman.update(
                self.params.kalman,
                mean[matched],
                cov[matched],
                frame.xyah[dets],
                frame.scores[dets],
            )
        result = StepResult()  # 5. lifecycle
        for i in matched:
            self._match_and_view(self.tracks[i], int(det_of_track[i]), frame, result)
        survivors, keep = self._retire_unmatched(det_of_track, ts_ns, result, mean)
        if not keep.all():
            mean, cov = mean[keep], cov[keep]
        if len(free_high):
            new_mean, new_cov = self._start_tracks(free_high, frame, survivors, result)
            mean = np.concatenate([mean, new_mean])
            cov = np.concatenate([cov, new_cov])
        self.tracks = survivors
        self.mean, self.cov = mean, cov
        return result

    # ----------------------------------------------------------- step's steps

    def _frame_input(
        self,
        ts_ns: int,
        seq: int,
        boxes_xyxy: np.ndarray,
        scores: np.ndarray,
        embeddings: np.ndarray | None,
        sharpness: np.ndarray | None,
        crops_jpeg: Sequence[bytes] | None,
        carried: np.ndarray | None = None,
    ) -> _FrameInput:
        """The frame's arrays in the tracker's dtypes, with its per-detection extras
        (box in x, y, aspect, height; fraction covered; crop quality when crops are kept)."""
        boxes = np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4)
        scores = np.asarray(scores, dtype=np.float32).reshape(-1)
        n_det = len(scores)
        if embeddings is None or embeddings.size == 0:
            emb = np.zeros((n_det, 0), dtype=np.float32)
        else:
            emb = np.asarray(embeddings, dtype=np.float32)
            if not self.embedding_dim:
                self.embedding_dim = emb.shape[1]
        covered = covered_fraction(boxes) if n_det > 1 else np.zeros(n_det)
        want_crops = crops_jpeg is not None and self.params.crops_per_tracklet > 0
        quality = crop_quality(boxes, scores, sharpness, covered) if want_crops else None
        if carried is not None:
            carried = np.asarray(carried, dtype=bool).reshape(-1)
            if len(carried) != n_det:
                carried = None  # malformed: treat every vector as fresh, never fatal
        return _FrameInput(
            seq,
            ts_ns,
            boxes,
            scores,
            emb,
            kalman.xyxy_to_xyah(boxes),
            covered,
            quality,
            crops_jpeg,
            carried,
        )

    def _predict(self, dt_s: float) -> tuple[np.ndarray, np.ndarray]:
        """1. Every track's Kalman state moved to the frame's time; each counts a missed frame
        until it is matched."""
        mean, cov = self.mean, self.cov
        if self.tracks:
            if dt_s > 0:
                mean, cov = kalman.predict(self.params.kalman, mean, cov, dt_s)
            for t in self.tracks:
                t.missed_frames += 1
        return mean, cov

    def _associate(
        self, frame: _FrameInput, mean: np.ndarray, cov: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Stages 2-4: ``(det_of_track (T,) detection row or -1, confident detections left)``."""
        p = self.params
        tracks = self.tracks
        scores = frame.scores
        high = np.flatnonzero(scores >= p.high_score)
        low = np.flatnonzero((scores >= p.low_score) & (scores < p.high_score))
        det_of_track = np.full(len(tracks), -1, dtype=np.intp)
        lost_s = np.array([(frame.ts_ns - t.ts_last_ns) / NS_PER_S for t in tracks])
        confirmed = np.array([t.state == TrackState.CONFIRMED for t in tracks], dtype=bool)
        has_emb = frame.emb.shape[1] > 0
        free_high = high
        if has_emb and len(high) and confirmed.any():
            free_high = self._match_appearance(frame, mean, cov, confirmed, high, det_of_track)
        # motion only: every live track may match by overlap
        recent = self._within(lost_s, p.iou_max_lost_s if has_emb else p.lost_track_s)
        # 3. IoU stage: tentative tracks and briefly missed ones
        cand = np.flatnonzero((det_of_track < 0) & (~confirmed | recent))
        free_high = self._match_overlap(
            frame, mean, cand, free_high, p.max_iou_distance, det_of_track
        )
        # 4. low-score stage (ByteTrack): confirmed, briefly missed tracks
        cand = np.flatnonzero((det_of_track < 0) & confirmed & recent)
        self._match_overlap(frame, mean, cand, low, p.low_score_max_iou_distance, det_of_track)
        return det_of_track, free_high

    def _match_appearance(
        self,
        frame: _FrameInput,
        mean: np.ndarray,
        cov: np.ndarray,
        confirmed: np.ndarray,
        high: np.ndarray,
        det_of_track: np.ndarray,
    ) -> np.ndarray:
        """2. Confirmed tracks against confident detections by appearance, inside the
        Mahalanobis gate; fills ``det_of_track``, returns the confident detections left."""
        p = self.params
        rows = np.flatnonzero(confirmed)
        cost = self._appearance_cost(rows, frame.emb[high])
        gate = kalman.gating_distance(
            p.kalman, mean[rows], cov[rows], frame.xyah[high], p.gate_only_position
        )
        cost[gate > p.gate_chi2] = INFEASIBLE
        if p.matching_cascade:
            levels = np.array([self.tracks[i].missed_frames for i in rows])
            pairs, _, free_cols = cascade_assign(cost, p.max_appearance_distance, levels)
        else:
            pairs, _, free_cols = assign(cost, p.max_appearance_distance)
        det_of_track[rows[pairs[:, 0]]] = high[pairs[:, 1]]
        return high[free_cols]

    def _match_overlap(
        self,
        frame: _FrameInput,
        mean: np.ndarray,
        cand: np.ndarray,
        dets: np.ndarray,
        max_iou_distance: float,
        det_of_track: np.ndarray,
    ) -> np.ndarray:
        """Tracks ``cand`` against detections ``dets`` by ``1 - IoU`` of the predicted box;
        fills ``det_of_track``, returns the detections left."""
        if not len(cand) or not len(dets):
            return dets
        pred_boxes = kalman.xyah_to_xyxy(mean[cand])
        cost = 1.0 - box_iou(pred_boxes, frame.boxes[dets], np.float64)
        pairs, _, free_cols = assign(cost, max_iou_distance)
        det_of_track[cand[pairs[:, 0]]] = dets[pairs[:, 1]]
        return dets[free_cols]

    def _match_and_view(self, t: Track, d: int, frame: _FrameInput, result: StepResult) -> None:
        """Record detection ``d`` on track ``t`` and report the track as seen this frame."""
        self._apply_match(t, d, frame)
        confirmed = t.state == TrackState.CONFIRMED
        result.tracks.append(TrackView(t.track_id, t.last_box, t.last_score, confirmed, d))

    def _within(self, elapsed_s: np.ndarray, limit_s: float) -> np.ndarray:
        """(T,) whether each elapsed time is within ``limit_s``: in whole frames of the
        camera's regular interval (:class:`FrameClock`) when the option is on."""
        if not self.params.regular_frame_clock:
            return elapsed_s <= limit_s
        return self.clock.within_all(elapsed_s, limit_s)

    def _retire_unmatched(
        self, det_of_track: np.ndarray, ts_ns: int, result: StepResult, mean: np.ndarray
    ) -> tuple[list[Track], np.ndarray]:
        """Unmatched tracks: tentative ones die, confirmed ones after ``lost_track_s``
        or once predicted out of view (``end_when_out_of_view``), becoming tracklets.
        ``mean``: the (T, 8) predicted states. Returns the surviving tracks and the
        (T,) keep mask."""
        keep = np.ones(len(self.tracks), dtype=bool)
        out = self._out_of_view(mean)
        for i in np.flatnonzero(det_of_track < 0):
            t = self.tracks[i]
            if t.state == TrackState.TENTATIVE:
                t.state = TrackState.DELETED
                keep[i] = False
            elif (
                out[i]
                or not self._within(
                    np.array([(ts_ns - t.ts_last_ns) / NS_PER_S]), self.params.lost_track_s
                )[0]
            ):
                t.state = TrackState.DELETED
                keep[i] = False
                self._finish(t, "lost", result)
        if keep.all():
            return list(self.tracks), keep
        return [t for t, k in zip(self.tracks, keep, strict=True) if k], keep

    def _out_of_view(self, mean: np.ndarray) -> np.ndarray:
        """(T,) whether each track's predicted box centre lies outside the frame (all
        False with the option off or the frame size unknown)."""
        w, h = self.frame_width, self.frame_height
        if not self.params.end_when_out_of_view or w <= 0 or h <= 0 or not len(mean):
            return np.zeros(len(mean), dtype=bool)
        x, y = mean[:, 0], mean[:, 1]  # Kalman state (x, y, a, h, ...): the box centre
        return (x < 0) | (x > w) | (y < 0) | (y > h)

    def _start_tracks(
        self, free_high: np.ndarray, frame: _FrameInput, survivors: list[Track], result: StepResult
    ) -> tuple[np.ndarray, np.ndarray]:
        """New tentative tracks from the confident detections nobody took; appended to
        ``survivors``. Returns their Kalman state (mean, cov)."""
        p = self.params
        new_mean, new_cov = kalman.initiate(p.kalman, frame.xyah[free_high])
        dim = frame.emb.shape[1]
        for d in free_high.tolist():
            t = Track(self.ids(), frame.ts_ns, Gallery(p.gallery_size, dim, p.smoothing_momentum))
            self._match_and_view(t, d, frame, result)
            survivors.append(t)
        return new_mean, new_cov

    def close(self, reason: Literal["lost", "stream_end"] = "stream_end") -> StepResult:
        """End every track (the stream ended): confirmed ones become tracklets."""
        result = StepResult()
        for t in self.tracks:
            if t.state == TrackState.CONFIRMED:
                self._finish(t, reason, result)
        self.tracks = []
        self.mean = self.mean[:0]
        self.cov = self.cov[:0]
        return result

    # ---------------------------------------------------------------- helpers

    def _appearance_cost(self, rows: np.ndarray, det_emb: np.ndarray) -> np.ndarray:
        """(len(rows), N) cosine distance from tracks ``rows`` to (N, D) detection vectors."""
        cost = np.full((len(rows), len(det_emb)), INFEASIBLE)
        if self.params.appearance == "smoothed":
            have = [k for k, i in enumerate(rows) if self.tracks[i].gallery.smoothed is not None]
            if have:
                sm = np.stack([self.tracks[rows[k]].gallery.smoothed for k in have])  # type: ignore[misc]
                cost[have] = 1.0 - sm @ det_emb.T
            return cost
        for k, i in enumerate(rows):
            g = self.tracks[i].gallery
            if len(g):
                cost[k] = 1.0 - (g.vectors() @ det_emb.T).max(axis=0)
        return cost

    def _apply_match(self, t: Track, d: int, frame: _FrameInput) -> None:
        """Record detection ``d`` on track ``t``: history, confirmation, gallery, crops."""
        p = self.params
        seq, ts_ns, boxes, scores, emb = (
            frame.seq,
            frame.ts_ns,
            frame.boxes,
            frame.scores,
            frame.emb,
        )
        covered, quality, crops_jpeg = frame.covered, frame.quality, frame.crops_jpeg
        box = (float(boxes[d, 0]), float(boxes[d, 1]), float(boxes[d, 2]), float(boxes[d, 3]))
        score = float(scores[d])
        t.record(seq, ts_ns, box, score, p.max_history_frames)
        if t.state == TrackState.TENTATIVE and t.hits >= p.confirm_hits:
            t.state = TrackState.CONFIRMED
        has_emb = emb.shape[1] > 0
        if (
            has_emb
            and scores[d] >= p.high_score
            and covered[d] <= p.gallery_max_covered
            and t.gallery.dim == emb.shape[1]
        ):
            if frame.carried is None or not frame.carried[d] or not len(t.gallery):
                t.gallery.add(emb[d])
            elif p.span_counts_carried:
                t.gallery.add_to_span(emb[d])
        q = 0.0 if quality is None else float(quality[d])
        if crops_jpeg is not None and q > 0 and t.may_keep_crop(q, p.crops_per_tracklet):
            t.offer_crop(
                CropCandidate(
                    quality=q,
                    seq=seq,
                    ts_capture_ns=ts_ns,
                    box_xyxy=box,
                    score=score,
                    jpeg=crops_jpeg[d],
                    embedding=emb[d].copy() if has_emb else np.zeros(0, dtype=np.float32),
                    embedding_grey=self._grey_row(d),
                ),
                p.crops_per_tracklet,
                int(p.crop_min_gap_s * NS_PER_S),
            )

    def _grey_row(self, d: int) -> np.ndarray:
        g = self._emb_grey
        if g is None or g.ndim != 2 or d >= len(g):
            return np.zeros(0, dtype=np.float32)
        return np.asarray(g[d], dtype=np.float32).copy()

    def _finish(self, t: Track, reason: Literal["lost", "stream_end"], result: StepResult) -> None:
        """Turn a deleted confirmed track into a tracklet, or drop it by the named thresholds."""
        p = self.params
        seqs, ts, boxes, scores = t.history()
        drop = None
        if (t.ts_last_ns - t.ts_start_ns) / NS_PER_S < p.min_tracklet_s:
            drop = "short"
        elif t.hits < p.min_tracklet_frames:
            drop = "few_frames"
        elif float(scores.mean()) < p.min_tracklet_mean_score:
            drop = "low_score"
        elif self.static.still(boxes, (t.ts_last_ns - t.ts_start_ns) / NS_PER_S):
            drop = "static"
        if drop is not None:
            result.dropped[drop] = result.dropped.get(drop, 0) + 1
            return
        result.finished.append(
            build_tracklet(
                self.camera_id,
                t,
                reason,
                seqs,
                ts,
                boxes,
                scores,
                self.frame_width,
                self.frame_height,
            )
        )
        result.finished[-1].greyscale = self.greyscale


def build_tracklet(
    camera_id: str,
    t: Track,
    reason: Literal["lost", "stream_end"],
    seqs: list[int],
    ts: list[int],
    boxes: np.ndarray,
    scores: np.ndarray,
    frame_width: int,
    frame_height: int,
) -> Tracklet:
    """A :class:`schemas.Tracklet` from a finished track and its (M,) history."""
    crops = sorted(t.crops, key=lambda c: (-c.quality, c.seq))
    vectors = t.gallery.span_vectors()  # the whole track, not its way out
    return Tracklet(
        camera_id=camera_id,
        tracklet_id=f"{camera_id}:{t.track_id}:{t.ts_start_ns}",
        track_id=t.track_id,
        ts_start_ns=t.ts_start_ns,
        ts_end_ns=t.ts_last_ns,
        frame_width=frame_width,
        frame_height=frame_height,
        frame_seqs=seqs,
        frame_ts_ns=ts,
        boxes_xyxy=pack_f32(boxes),
        box_scores=pack_f32(scores),
        crops=[
            Crop(
                seq=c.seq,
                ts_capture_ns=c.ts_capture_ns,
                box_xyxy=list(c.box_xyxy),
                score=c.score,
                quality=c.quality,
                jpeg=c.jpeg,
                embedding=pack_f32(c.embedding) if c.embedding.size else b"",
                embedding_grey=pack_f32(c.embedding_grey) if c.embedding_grey.size else b"",
            )
            for c in crops
        ],
        embeddings=pack_f32(vectors) if len(vectors) else b"",
        embedding_dim=t.gallery.dim if len(vectors) else 0,
        end_reason=reason,
    )


__all__ = [
    "CHI2_95_2DOF",
    "CHI2_95_4DOF",
    "CameraTracker",
    "FrameArrays",
    "IdCounter",
    "StepResult",
    "TrackView",
    "TrackerParams",
    "crop_quality",
    "frame_arrays",
]
