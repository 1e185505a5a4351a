"""A camera's tracker state as compact bytes, and back.

What a replica needs to continue a camera exactly where another left it: the
id counter, the last applied frame (so replayed frames are skipped), and every
live track — Kalman mean and covariance (float64, so the continuation is
bit-identical), appearance vectors, box history and kept crops. Parameters
are not saved; they come from the replica's config.

msgpack via msgspec, arrays as raw little-endian bytes, structs as arrays
(no field names on the wire), the covariance as its upper triangle, and the
gallery as float16: it halves the biggest part of a track, and with the
default ``appearance="smoothed"`` (kept float32) matching after a restore is
still bit-identical; only the tracklet's kept vectors lose ~1e-3 (with
``appearance="gallery"`` matching sees that too). A live PETS09 track (32
recent and up to 32 sampled OSNet vectors, 5 crops of ~4 KB with their
vectors) is about 100 KB.
"""

from __future__ import annotations

import msgspec
import numpy as np

from tracker import kalman
from tracker.core import CameraTracker, IdCounter, TrackerParams
from tracker.track import CropCandidate, Gallery, Track, TrackState

STATE_VERSION = 1

_TRIU = np.triu_indices(kalman.STATE_DIM)


class StateError(ValueError):
    """Bytes that are not a tracker state this build can restore."""


class CropState(msgspec.Struct, array_like=True):
    """A kept crop in a saved tracker state."""

    quality: float
    seq: int
    ts_capture_ns: int
    box_xyxy: tuple[float, float, float, float]
    score: float
    jpeg: bytes
    embedding: bytes  # (D,) float32


class TrackSnapshot(msgspec.Struct, array_like=True):
    """One track in a saved tracker state (Kalman state, history, gallery, crops)."""

    track_id: int
    state: int
    hits: int
    missed_frames: int
    ts_start_ns: int
    ts_last_ns: int
    mean: bytes  # (8,) float64
    cov_upper: bytes  # (36,) float64, upper triangle row by row
    gallery: bytes  # (n, D) float16, oldest first
    smoothed: bytes  # (D,) float32 or empty
    hist_seqs: list[int]
    hist_ts: list[int]
    hist_boxes: bytes  # (M, 4) float32
    hist_scores: bytes  # (M,) float32
    hist_stride: int
    matches: int
    last_seq: int
    last_box: tuple[float, float, float, float]
    last_score: float
    crops: list[CropState]
    # appended later: a state saved before has none (the span restarts from ``gallery``)
    span: bytes | None = None  # (m, D) float16, oldest first
    span_stride: int = 1
    added: int = 0


class TrackerSnapshot(msgspec.Struct, array_like=True):
    """A camera's whole tracker state as saved to Redis (versioned)."""

    version: int
    camera_id: str
    next_id: int
    last_seq: int
    last_ts_ns: int | None
    frame_width: int
    frame_height: int
    embedding_dim: int
    tracks: list[TrackSnapshot]


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(TrackerSnapshot)


def _f32(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a, dtype="<f4").tobytes()


def _f16_rows(data: bytes, dim: int) -> np.ndarray:
    """(n, dim) float32 from float16 rows as saved (dim 0: no embedder, no rows)."""
    if not dim:
        return np.zeros((0, 0), np.float32)
    return np.frombuffer(data, dtype="<f2").astype(np.float32).reshape(-1, dim)


def dumps(tracker: CameraTracker) -> bytes:
    """The tracker's whole state as bytes (see the module docstring)."""
    tracks = []
    for i, t in enumerate(tracker.tracks):
        g = t.gallery
        tracks.append(
            TrackSnapshot(
                track_id=t.track_id,
                state=int(t.state),
                hits=t.hits,
                missed_frames=t.missed_frames,
                ts_start_ns=t.ts_start_ns,
                ts_last_ns=t.ts_last_ns,
                mean=np.ascontiguousarray(tracker.mean[i], dtype="<f8").tobytes(),
                cov_upper=np.ascontiguousarray(tracker.cov[i][_TRIU], dtype="<f8").tobytes(),
                gallery=np.ascontiguousarray(g.vectors(), dtype="<f2").tobytes(),
                smoothed=b"" if g.smoothed is None else _f32(g.smoothed),
                hist_seqs=list(t.hist_seqs),
                hist_ts=list(t.hist_ts),
                hist_boxes=_f32(np.asarray(t.hist_boxes, dtype=np.float32).reshape(-1, 4)),
                hist_scores=_f32(np.asarray(t.hist_scores, dtype=np.float32)),
                hist_stride=t.hist_stride,
                matches=t.matches,
                last_seq=t.last_seq,
                last_box=t.last_box,
                last_score=t.last_score,
                crops=[
                    CropState(
                        c.quality,
                        c.seq,
                        c.ts_capture_ns,
                        c.box_xyxy,
                        c.score,
                        c.jpeg,
                        _f32(c.embedding),
                    )
                    for c in t.crops
                ],
                span=np.ascontiguousarray(g.span_vectors(), dtype="<f2").tobytes(),
                span_stride=g.span_stride,
                added=g.added,
            )
        )
    snap = TrackerSnapshot(
        version=STATE_VERSION,
        camera_id=tracker.camera_id,
        next_id=tracker.ids.next_id,
        last_seq=tracker.last_seq,
        last_ts_ns=tracker.last_ts_ns,
        frame_width=tracker.frame_width,
        frame_height=tracker.frame_height,
        embedding_dim=tracker.embedding_dim,
        tracks=tracks,
    )
    return _encoder.encode(snap)


def loads(data: bytes, params: TrackerParams | None = None) -> CameraTracker:
    """A tracker restored from :func:`dumps` bytes, with ``params`` (default: the defaults).

    Raises:
        StateError: broken bytes or a state version this build does not know.
    """
    try:
        snap = _decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise StateError(f"invalid tracker state: {exc}") from exc
    if snap.version != STATE_VERSION:
        raise StateError(
            f"tracker state version {snap.version} not supported (want {STATE_VERSION})"
        )
    p = params or TrackerParams()
    tracker = CameraTracker(snap.camera_id, p, IdCounter(snap.next_id))
    tracker.last_seq = snap.last_seq
    tracker.last_ts_ns = snap.last_ts_ns
    tracker.frame_width = snap.frame_width
    tracker.frame_height = snap.frame_height
    tracker.embedding_dim = snap.embedding_dim
    dim = snap.embedding_dim
    n = len(snap.tracks)
    mean = np.zeros((n, kalman.STATE_DIM))
    cov = np.zeros((n, kalman.STATE_DIM, kalman.STATE_DIM))
    for i, s in enumerate(snap.tracks):
        mean[i] = np.frombuffer(s.mean, dtype="<f8")
        upper = np.frombuffer(s.cov_upper, dtype="<f8")
        cov[i][_TRIU] = upper
        cov[i].T[_TRIU] = upper
        gallery = Gallery(p.gallery_size, dim, p.smoothing_momentum)
        gallery.restore(
            _f16_rows(s.gallery, dim),
            np.frombuffer(s.smoothed, dtype="<f4") if s.smoothed else None,
            None if s.span is None else _f16_rows(s.span, dim),
            s.span_stride,
            s.added,
        )
        t = Track(s.track_id, s.ts_start_ns, gallery)
        t.state = TrackState(s.state)
        t.hits = s.hits
        t.missed_frames = s.missed_frames
        t.ts_last_ns = s.ts_last_ns
        t.hist_seqs = list(s.hist_seqs)
        t.hist_ts = list(s.hist_ts)
        boxes = np.frombuffer(s.hist_boxes, dtype="<f4").reshape(-1, 4)
        t.hist_boxes = [(float(b[0]), float(b[1]), float(b[2]), float(b[3])) for b in boxes]
        t.hist_scores = [float(v) for v in np.frombuffer(s.hist_scores, dtype="<f4")]
        t.hist_stride = s.hist_stride
        t.matches = s.matches
        t.last_seq = s.last_seq
        t.last_box = tuple(s.last_box)  # type: ignore[assignment]
        t.last_score = s.last_score
        t.crops = [
            CropCandidate(
                c.quality,
                c.seq,
                c.ts_capture_ns,
                tuple(c.box_xyxy),  # type: ignore[arg-type]
                c.score,
                c.jpeg,
                np.frombuffer(c.embedding, dtype="<f4").copy(),
            )
            for c in s.crops
        ]
        tracker.tracks.append(t)
    tracker.mean, tracker.cov = mean, cov
    return tracker
