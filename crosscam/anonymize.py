"""``crosscam anonymize``: a pseudonymised copy of a video, every person obscured.

Frame by frame, the detector (:class:`detector.analyzer.Analyzer`) finds
people and the tracker core (:class:`tracker.core.CameraTracker`) follows
them. Every box is padded and obscured:

* the body is pixelated (blocks of at least ``MIN_BLOCK_PX``, larger for
  larger boxes) or blurred (a Gaussian whose kernel grows with the box);
* the head region (the top ``head_fraction`` of the padded box) is always
  filled with its mean colour, so no face survives however large it is.

Where the detector misses someone for a moment, the tracker's Kalman
prediction of each confirmed track that was not matched in this frame
(missed for at most ``max_gap_s``) is obscured as well, padded twice as much
for the uncertainty; for matched tracks the tracker's filtered box is
obscured besides the detection, as it keeps the full extent of a person the
detector sees only partly (occlusion). With ``--ids`` each track gets a pseudonym drawn above
its box: a short hash of the track id with a salt drawn at random per run (so
pseudonyms never link two runs), or, with ``--store DIR``, the global id of the
nearest identity in a ReID store (the ids the rest of crosscam shows).

    crosscam anonymize --video in.avi --out out.mp4 [--blur|--pixelate] [--ids]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from evaluation.video import video_fps as container_fps
from evaluation.video import video_frames
from tracker import kalman
from tracker.core import CameraTracker, TrackerParams
from tracker.track import TrackState

log = logging.getLogger(__name__)

NS_PER_S = 1_000_000_000
MIN_BLOCK_PX = 8
"""Smallest pixelation block: at 8 px a face of up to ~24 px (3 blocks) is a few flat squares."""
BLOCKS_ACROSS_BODY = 6
"""A body box is pixelated into about this many blocks across its narrow side (or more)."""
DEFAULT_FPS = 7.0

Method = Literal["pixelate", "blur"]


@dataclass(frozen=True)
class AnonymizeParams:
    """How people are obscured.

    ``pad`` (fraction of the box's width/height added on each side) trades
    how much background is lost against cover for loose boxes and motion;
    ``max_gap_s`` is how long a missed person stays covered by the tracker's
    prediction (longer covers longer misses, but the prediction drifts).
    """

    method: Method = "pixelate"
    pad: float = 0.2
    head_fraction: float = 0.25
    max_gap_s: float = 1.0
    min_score: float = TrackerParams().low_score
    """Detections at or above this score are obscured (privacy first: the
    tracker's lowest usable score, not the detector's reporting threshold)."""
    draw_ids: bool = False


@dataclass
class AnonymizedFrame:
    """One output frame and what was obscured in it."""

    frame: np.ndarray
    """(H, W, 3) uint8 BGR, people obscured."""
    mask: np.ndarray
    """(H, W) bool, True where pixels were obscured."""
    boxes_xyxy: np.ndarray
    """(M, 4) int32 padded boxes obscured: detections, then the tracker's boxes of
    matched tracks, then its predictions of tracks missed in this frame."""
    detections: int = 0
    """How many of the boxes (the first ones) are detections."""
    predicted: int = 0
    """How many (the last ones) are predictions of missed people."""
    labels: dict[int, str] = field(default_factory=dict)
    """Track id → pseudonym drawn in this frame."""


# --- pixels --------------------------------------------------------------------------------


def padded_boxes(boxes_xyxy: np.ndarray, pad: float, width: int, height: int) -> np.ndarray:
    """(N, 4) int32 boxes grown by ``pad`` × their size on each side, clipped to the frame."""
    b = np.asarray(boxes_xyxy, np.float64).reshape(-1, 4)
    w = (b[:, 2] - b[:, 0])[:, None]
    h = (b[:, 3] - b[:, 1])[:, None]
    grown = b + np.hstack((-w, -h, w, h)) * pad
    out = np.empty_like(grown)
    out[:, [0, 2]] = np.clip(np.round(grown[:, [0, 2]]), 0, width)
    out[:, [1, 3]] = np.clip(np.round(grown[:, [1, 3]]), 0, height)
    return out.astype(np.int32)


def pixelate(region: np.ndarray, block_px: int) -> np.ndarray:
    """``region`` as squares of ``block_px`` (each the mean of its pixels)."""
    h, w = region.shape[:2]
    small = cv2.resize(
        region, (max(1, w // block_px), max(1, h // block_px)), interpolation=cv2.INTER_AREA
    )
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


def blur(region: np.ndarray) -> np.ndarray:
    """A Gaussian blur whose kernel is half the region's narrow side (at least 9 px)."""
    k = max(9, min(region.shape[:2]) // 2) | 1
    return cv2.GaussianBlur(region, (k, k), k / 3.0)


def obscure(
    frame: np.ndarray, boxes: np.ndarray, method: Method, head_fraction: float
) -> np.ndarray:
    """Obscure ``boxes`` ((N, 4) int pixel boxes) of ``frame`` in place; the (H, W) bool mask.

    Bodies are pixelated or blurred; the head region (top ``head_fraction``)
    becomes one flat patch of its mean colour.
    """
    mask = np.zeros(frame.shape[:2], dtype=bool)
    for x1, y1, x2, y2 in boxes.tolist():
        if x2 - x1 < 1 or y2 - y1 < 1:
            continue
        region = frame[y1:y2, x1:x2]
        if method == "pixelate":
            block = max(MIN_BLOCK_PX, min(x2 - x1, y2 - y1) // BLOCKS_ACROSS_BODY)
            region[:] = pixelate(region, block)
        else:
            region[:] = blur(region)
        head_y2 = y1 + max(1, round((y2 - y1) * head_fraction))
        head = frame[y1:head_y2, x1:x2]
        head[:] = head.reshape(-1, 3).mean(axis=0).astype(np.uint8)
        mask[y1:y2, x1:x2] = True
    return mask


def draw_label(frame: np.ndarray, box: tuple[int, int, int, int], text: str) -> None:
    """``text`` on a dark band just above the box (inside the frame)."""
    x1, y1 = box[0], box[1]
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
    top = max(0, y1 - th - base - 2)
    cv2.rectangle(frame, (x1, top), (x1 + tw + 4, top + th + base + 2), (0, 0, 0), -1)
    cv2.putText(frame, text, (x1 + 2, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                (255, 255, 255), 1, cv2.LINE_AA)  # fmt: skip


# --- pseudonyms ----------------------------------------------------------------------------


def pseudonym(track_id: int, salt: bytes) -> str:
    """A short stable pseudonym of a track within one run: ``p`` + 6 hex digits of a keyed hash."""
    return "p" + hashlib.blake2s(str(track_id).encode(), key=salt, digest_size=3).hexdigest()


Labeler = Callable[[int, "np.ndarray | None"], str]
"""(track id, the track's smoothed appearance vector or None) → the label to draw."""


def salted_labeler(salt: bytes | None = None) -> Labeler:
    """Per-run pseudonyms of track ids (random salt unless one is given)."""
    key = salt or secrets.token_bytes(16)
    return lambda track_id, _vector: pseudonym(track_id, key)


# --- frames --------------------------------------------------------------------------------


class Anonymizer:
    """Detector + tracker + obscuring, one frame at a time, for one video.

    Args:
        analyze: frame → (boxes_xyxy (N, 4), scores (N,), embeddings (N, D)), e.g.
            :func:`analyzer_function`.
        params: how to obscure.
        labeler: the label of a track (used with ``params.draw_ids``).
        tracker_params: the tracker's knobs (defaults: the stage's).
    """

    def __init__(
        self,
        analyze: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]],
        params: AnonymizeParams | None = None,
        labeler: Labeler | None = None,
        tracker_params: TrackerParams | None = None,
    ) -> None:
        self.analyze = analyze
        self.params = params or AnonymizeParams()
        self.labeler = labeler or salted_labeler()
        self.tracker = CameraTracker("anonymize", tracker_params)
        self._labels: dict[int, str] = {}

    def track_boxes(
        self, ts_ns: int, matched: set[int]
    ) -> tuple[list[tuple[int, np.ndarray]], list[tuple[int, np.ndarray]]]:
        """(coasting, matched): (track id, (4,) Kalman box) of confirmed tracks.

        Coasting: not matched in this frame, missed for at most ``max_gap_s``
        (the prediction to this frame). Matched: the filtered box, which keeps
        a person's full extent when the detection saw only part of them.
        """
        coasting, held = [], []
        limit_ns = self.params.max_gap_s * NS_PER_S
        for i, t in enumerate(self.tracker.tracks):
            if t.state != TrackState.CONFIRMED:
                continue
            box = kalman.xyah_to_xyxy(self.tracker.mean[i : i + 1])[0]
            if t.track_id in matched:
                held.append((t.track_id, box))
            elif ts_ns - t.ts_last_ns <= limit_ns:
                coasting.append((t.track_id, box))
        return coasting, held

    def label(self, track_id: int) -> str:
        """The track's label, asked of the labeler once per track."""
        if track_id not in self._labels:
            t = next((t for t in self.tracker.tracks if t.track_id == track_id), None)
            self._labels[track_id] = self.labeler(track_id, t.gallery.smoothed if t else None)
        return self._labels[track_id]

    def process(self, index: int, frame: np.ndarray, ts_ns: int) -> AnonymizedFrame:
        """Obscure every person in (H, W, 3) uint8 BGR ``frame`` (not modified); the result."""
        p = self.params
        h, w = frame.shape[:2]
        boxes, scores, emb = self.analyze(frame)
        res = self.tracker.step(ts_ns, index, boxes, scores, emb if emb.size else None)
        keep = scores >= p.min_score
        det_boxes = padded_boxes(boxes[keep], p.pad, w, h)
        matched = {v.track_id for v in res.tracks}
        coast, held = self.track_boxes(ts_ns, matched)
        as_array = lambda items: np.array([b for _, b in items]).reshape(-1, 4)  # noqa: E731
        pred = padded_boxes(as_array(coast), 2 * p.pad, w, h)
        kept = padded_boxes(as_array(held), p.pad, w, h)
        all_boxes = np.concatenate([det_boxes, kept, pred]).astype(np.int32)
        out = frame.copy()
        mask = obscure(out, all_boxes, p.method, p.head_fraction)
        labels: dict[int, str] = {}
        if p.draw_ids:
            shown = [(v.track_id, padded_boxes(np.array([v.box_xyxy]), p.pad, w, h)[0])
                     for v in res.tracks if v.confirmed]  # fmt: skip
            shown += [(tid, b) for (tid, _), b in zip(coast, pred, strict=True)]
            for tid, b in shown:
                labels[tid] = self.label(tid)
                draw_label(out, tuple(int(v) for v in b), labels[tid])  # type: ignore[arg-type]
        return AnonymizedFrame(out, mask, all_boxes, len(det_boxes), len(pred), labels)


def analyzer_function(
    score_min: float, with_embedder: bool = True
) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The stage's detector (and embedder) from the shared models, as a frame → arrays function.

    Raises:
        detector.checksum.ModelFileError: a model file is missing or has the wrong SHA-256.
    """
    from detector.analyzer import Analyzer
    from detector.config import AnalyzerConfig, NoEmbedderConfig, OnnxDetectorConfig
    from service.assets import models_dir

    config = AnalyzerConfig(
        models_dir=models_dir(), detector=OnnxDetectorConfig(score_threshold=score_min)
    )
    if not with_embedder:
        config = config.model_copy(update={"embedder": NoEmbedderConfig()})
    analyzer = Analyzer.from_config(config)

    def analyze(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        r = analyzer.analyze("anonymize", frame)
        return r.boxes_xyxy, r.scores, r.embeddings

    return analyze


def open_writer(path: Path, fps: float, width: int, height: int) -> cv2.VideoWriter:
    """A video writer for ``path`` (``.avi``: MJPG, otherwise mp4v).

    Raises:
        ValueError: OpenCV cannot write that file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fourcc = cv2.VideoWriter_fourcc(  # type: ignore[attr-defined]
        *("MJPG" if path.suffix.lower() == ".avi" else "mp4v")
    )
    writer = cv2.VideoWriter(str(path), fourcc, fps, (width, height))
    if not writer.isOpened():
        raise ValueError(f"OpenCV cannot write video {path} (use .mp4 or .avi)")
    return writer


def anonymize_video(
    video: Path,
    out: Path | None,
    anonymizer: Anonymizer,
    frames: int | None = None,
    on_frame: Callable[[int, np.ndarray, AnonymizedFrame], None] | None = None,
) -> dict[str, Any]:
    """Anonymize ``video`` into ``out`` (None: nothing written); summary figures and the ids drawn.

    ``on_frame(index, original, result)`` is called for each frame (the evaluation uses it).
    """
    fps = container_fps(video) or DEFAULT_FPS
    writer = None
    n = predicted = 0
    area = 0.0
    labels: set[str] = set()
    t0 = time.perf_counter()
    try:
        for i, frame in video_frames(video, frames):
            res = anonymizer.process(i, frame, round(i * NS_PER_S / fps))
            if out is not None:
                writer = writer or open_writer(out, fps, frame.shape[1], frame.shape[0])
                writer.write(res.frame)
            if on_frame is not None:
                on_frame(i, frame, res)
            n += 1
            predicted += res.predicted
            labels.update(res.labels.values())
            area += float(res.mask.mean())
    finally:
        if writer is not None:
            writer.release()
    seconds = time.perf_counter() - t0
    return {
        "frames": n,
        "seconds": round(seconds, 3),
        "fps": round(n / seconds, 2) if seconds > 0 else 0.0,
        "predicted_boxes": predicted,
        "mean_area_obscured": round(area / max(n, 1), 4),
        "ids": sorted(labels),
    }


# --- store ids -----------------------------------------------------------------------------


def store_labeler(store: object, max_distance: float, fallback: Labeler) -> Labeler:
    """Labels from a ReID store: the global id of the nearest stored tracklet within
    ``max_distance`` (cosine) of the track's appearance vector, else ``fallback``'s pseudonym.

    ``store`` is a :class:`reid.store.VectorStore`; an erased identity has no
    vectors left, so it can never be drawn again.
    """
    from reid.store import Scope, VectorStore

    vs: VectorStore = store  # type: ignore[assignment]

    def label(track_id: int, vector: np.ndarray | None) -> str:
        if vector is not None:
            hits = vs.search(vector, Scope(), limit=1, max_distance=max_distance)
            if hits and hits[0].tracklet.global_id:
                return hits[0].tracklet.global_id
        return fallback(track_id, vector)

    return label


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--video", type=Path, required=True, help="input video file")
    parser.add_argument("--out", type=Path, required=True, help="output video (.mp4 or .avi)")
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--pixelate", dest="method", action="store_const", const="pixelate",
                     help="pixelate people (default)")  # fmt: skip
    how.add_argument("--blur", dest="method", action="store_const", const="blur",
                     help="blur people")  # fmt: skip
    parser.set_defaults(method="pixelate")
    parser.add_argument("--ids", action="store_true", help="draw a pseudonymous id per person")
    parser.add_argument("--store", type=Path, default=None,
                        help="ReID data folder (reid.data_dir): label people with its global ids")  # fmt: skip
    parser.add_argument("--store-kind", default="edge", choices=("edge", "local"),
                        help="embedded store engine of --store")  # fmt: skip
    parser.add_argument("--dim", type=int, default=512, help="vector size of --store (reid.dim)")
    parser.add_argument("--pad", type=float, default=AnonymizeParams.pad,
                        help="box padding, fraction of its size per side")  # fmt: skip
    parser.add_argument("--max-gap-s", type=float, default=AnonymizeParams.max_gap_s,
                        help="cover missed people by the tracker's prediction this long")  # fmt: skip
    parser.add_argument("--frames", type=int, default=None, help="only the first N frames")


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    if not args.video.is_file():
        print(f"error: video not found: {args.video}", file=sys.stderr)
        return 2
    if not 0 <= args.pad <= 1 or args.max_gap_s < 0:
        print("error: --pad must be in [0, 1] and --max-gap-s >= 0", file=sys.stderr)
        return 2
    params = AnonymizeParams(method=args.method, pad=args.pad, max_gap_s=args.max_gap_s,
                             draw_ids=args.ids or args.store is not None)  # fmt: skip
    store = None
    labeler = salted_labeler()
    if args.store is not None:
        from reid.linker import LinkerParams
        from reid.qdrant_store import open_store

        folder = args.store / f"qdrant-{args.store_kind}"
        if not folder.is_dir():
            print(f"error: no {args.store_kind} store under {args.store}", file=sys.stderr)
            return 2
        store = open_store(args.store_kind, folder, dim=args.dim)
        labeler = store_labeler(store, LinkerParams().link_distance, labeler)
    try:
        anon = Anonymizer(analyzer_function(params.min_score), params, labeler)
        summary = anonymize_video(args.video, args.out, anon, args.frames)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if store is not None:
            store.close()
    print(json.dumps({"out": str(args.out), **summary}))
    return 0
