"""``crosscam eval mot``: single-camera tracking quality on a MOTChallenge sequence, with the peer.

Runs the detector and embedder over the video (cached by
:func:`evaluation.precompute.video_detections`), feeds every frame to our
:class:`tracker.core.CameraTracker` and the identical detections and vectors
to the peer, deep-sort-realtime (``DeepSort(embedder=None, nn_budget=100)``,
otherwise its defaults; the peer only gets the boxes at or above
``--peer-score``, as it has no second association), writes both as
MOTChallenge result files, and scores them with TrackEval (the HOTA authors'
evaluator, MOT15 mode: ground-truth rows with conf 0 are removed, as the
MOTChallenge tools do). Time stamps come from the frame index at the
sequence's frame rate (seqinfo.ini), not the container's.

A box is reported for a track in a frame when the track is confirmed and was
matched in that frame; the box is the matched detection's, for both trackers.
"""

from __future__ import annotations

import argparse
import configparser
import contextlib
import dataclasses
import json
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from common.units import NS_PER_S
from evaluation.analysis import add_appearance_argument, analyzer_config, embedded_share
from service.assets import REPO_ROOT, pets_dir
from tracker.core import CameraTracker, TrackerParams

log = logging.getLogger(__name__)

# An arbitrary fixed epoch for the replayed sequence's capture times (2009-01-01,
# the year PETS09 was filmed), so runs are reproducible.
EVAL_EPOCH_NS = 1_230_768_000 * NS_PER_S
DEFAULT_FPS = 7.0  # PETS09-S2L1's seqinfo.ini
PEER_NN_BUDGET = 100

# One MOTChallenge result row per (frame, track): frame (1-based), id, left, top, width, height.
Rows = list[tuple[int, int, float, float, float, float]]


def sequence_info(gt_path: Path) -> tuple[str, float | None]:
    """(sequence name, frame rate) from the ``seqinfo.ini`` beside ``gt_path`` (or one folder up)."""
    for folder in (gt_path.parent, gt_path.parent.parent):
        ini = folder / "seqinfo.ini"
        if ini.exists():
            cp = configparser.ConfigParser()
            cp.read(ini)
            seq = cp["Sequence"]
            return seq.get("name", folder.name), float(seq.get("frameRate", DEFAULT_FPS))
    return gt_path.parent.name, None


def frame_ts_ns(index: int, fps: float) -> int:
    """Capture time of 0-based frame ``index`` at ``fps``."""
    return EVAL_EPOCH_NS + round(index * NS_PER_S / fps)


def run_ours(
    vd: Any, fps: float, params: TrackerParams, camera_id: str = "eval", frames: int | None = None
) -> tuple[Rows, dict[str, Any]]:
    """Track every frame of ``vd`` (a :class:`evaluation.precompute.VideoDetections`)."""
    tracker = CameraTracker(camera_id, params)
    rows: Rows = []
    n = vd.n_frames if frames is None else min(frames, vd.n_frames)
    finished = 0
    dropped: dict[str, int] = {}
    t0 = time.perf_counter()
    for i in range(n):
        res = tracker.step(
            frame_ts_ns(i, fps),
            i,
            vd.boxes_xyxy[i],
            vd.scores[i],
            vd.embeddings[i],
            vd.sharpness[i],
            carried=vd.carried[i] if vd.carried else None,
            frame_size=(vd.width, vd.height),
        )
        for v in res.tracks:
            if v.confirmed:
                x1, y1, x2, y2 = v.box_xyxy
                rows.append((i + 1, v.track_id, x1, y1, x2 - x1, y2 - y1))
        finished += len(res.finished)
        for k, c in res.dropped.items():
            dropped[k] = dropped.get(k, 0) + c
    end = tracker.close()
    finished += len(end.finished)
    for k, c in end.dropped.items():
        dropped[k] = dropped.get(k, 0) + c
    seconds = time.perf_counter() - t0
    return rows, {"seconds": round(seconds, 3), "tracklets": finished, "tracklets_dropped": dropped}


def run_peer(
    vd: Any, peer_score: float, frames: int | None = None, kalman_boxes: bool = False
) -> tuple[Rows, dict[str, Any]]:
    """deep-sort-realtime on the same detections (those scoring at least ``peer_score``)."""
    from deep_sort_realtime.deepsort_tracker import DeepSort

    peer = DeepSort(embedder=None, nn_budget=PEER_NN_BUDGET)
    rows: Rows = []
    n = vd.n_frames if frames is None else min(frames, vd.n_frames)
    t0 = time.perf_counter()
    for i in range(n):
        raw, embeds = peer_inputs(vd.boxes_xyxy[i], vd.scores[i], vd.embeddings[i], peer_score)
        for t in peer.update_tracks(raw, embeds=embeds):
            if t.is_confirmed() and t.time_since_update == 0:
                x1, y1, x2, y2 = (float(v) for v in t.to_ltrb(orig=not kalman_boxes))
                rows.append((i + 1, int(t.track_id), x1, y1, x2 - x1, y2 - y1))
    return rows, {"seconds": round(time.perf_counter() - t0, 3)}


def peer_inputs(
    boxes_xyxy: np.ndarray, scores: np.ndarray, embeddings: np.ndarray, peer_score: float
) -> tuple[list[tuple[list[float], float, str]], list[np.ndarray]]:
    """The peer's ``raw_detections`` ([left, top, w, h], score, class) and ``embeds`` for one frame."""
    keep = np.flatnonzero(scores >= peer_score)
    raw = []
    for k in keep:
        x1, y1, x2, y2 = (float(v) for v in boxes_xyxy[k])
        raw.append(([x1, y1, x2 - x1, y2 - y1], float(scores[k]), "person"))
    return raw, [embeddings[k] for k in keep]


def write_mot(path: Path, rows: Rows) -> None:
    """MOTChallenge result file: frame, id, left, top, width, height, conf, -1, -1, -1."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for fr, tid, x, y, w, h in sorted(rows):
            f.write(f"{fr},{tid},{x:.2f},{y:.2f},{w:.2f},{h:.2f},1,-1,-1,-1\n")


def score_mot(
    gt_path: Path, results: dict[str, Path], n_frames: int, seq_name: str
) -> dict[str, dict[str, float]]:
    """TrackEval's HOTA, CLEAR and Identity metrics of each result file, MOT15 rules.

    Returns ``{tracker: {idf1, idp, idr, mota, motp, hota, deta, assa, id_switches, ...}}``.
    """
    with tempfile.TemporaryDirectory(prefix="crosscam-eval-") as tmp:
        root = Path(tmp)
        _write_trackeval_tree(root, gt_path, results, n_frames, seq_name)
        out = _run_trackeval(root, list(results), n_frames, seq_name)
    return {
        name: _score_row(out["MotChallenge2DBox"][name][seq_name]["pedestrian"], res)
        for name, res in results.items()
    }


def _write_trackeval_tree(
    root: Path, gt_path: Path, results: dict[str, Path], n_frames: int, seq_name: str
) -> None:
    """TrackEval's folder layout: the GT cut to ``n_frames`` and each result file."""
    gt_dir = root / "gt" / seq_name / "gt"
    gt_dir.mkdir(parents=True)
    with gt_path.open() as src, (gt_dir / "gt.txt").open("w") as dst:
        for line in src:
            if line.strip() and int(float(line.split(",")[0])) <= n_frames:
                dst.write(line)
    for name, res in results.items():
        d = root / "trackers" / name / "data"
        d.mkdir(parents=True)
        (d / f"{seq_name}.txt").write_bytes(res.read_bytes())


def _run_trackeval(root: Path, trackers: list[str], n_frames: int, seq_name: str) -> Any:
    """TrackEval over the tree under ``root`` (MOT15, IoU 0.5), its chatter sent to stderr."""
    with contextlib.redirect_stdout(sys.stderr):  # it prints on import and while it works
        import trackeval

    eval_cfg = trackeval.Evaluator.get_default_eval_config()
    eval_cfg.update(
        USE_PARALLEL=False,
        PRINT_RESULTS=False,
        PRINT_CONFIG=False,
        TIME_PROGRESS=False,
        OUTPUT_SUMMARY=False,
        OUTPUT_DETAILED=False,
        PLOT_CURVES=False,
        OUTPUT_EMPTY_CLASSES=False,
        LOG_ON_ERROR=None,
    )
    ds_cfg = trackeval.datasets.MotChallenge2DBox.get_default_dataset_config()
    ds_cfg.update(
        GT_FOLDER=str(root / "gt"),
        TRACKERS_FOLDER=str(root / "trackers"),
        TRACKERS_TO_EVAL=trackers,
        BENCHMARK="MOT15",
        SKIP_SPLIT_FOL=True,
        SEQ_INFO={seq_name: n_frames},
        PRINT_CONFIG=False,
    )
    metrics_cfg = {
        "METRICS": ["HOTA", "CLEAR", "Identity"],
        "THRESHOLD": 0.5,
        "PRINT_CONFIG": False,
    }
    metrics = [
        trackeval.metrics.HOTA(metrics_cfg),
        trackeval.metrics.CLEAR(metrics_cfg),
        trackeval.metrics.Identity(metrics_cfg),
    ]
    with contextlib.redirect_stdout(sys.stderr):  # keep stdout for the JSON
        out, _ = trackeval.Evaluator(eval_cfg).evaluate(
            [trackeval.datasets.MotChallenge2DBox(ds_cfg)], metrics
        )
    return out


def _score_row(r: dict[str, Any], result_path: Path) -> dict[str, float]:
    """The figures we report from one tracker's TrackEval result."""
    hota, clear, ident = r["HOTA"], r["CLEAR"], r["Identity"]
    return {
        "idf1": round(float(ident["IDF1"]), 4),
        "idp": round(float(ident["IDP"]), 4),
        "idr": round(float(ident["IDR"]), 4),
        "mota": round(float(clear["MOTA"]), 4),
        "motp": round(float(clear["MOTP"]), 4),
        "hota": round(float(np.mean(hota["HOTA"])), 4),
        "deta": round(float(np.mean(hota["DetA"])), 4),
        "assa": round(float(np.mean(hota["AssA"])), 4),
        "id_switches": int(clear["IDSW"]),
        "fragmentations": int(clear["Frag"]),
        "false_positives": int(clear["CLR_FP"]),
        "misses": int(clear["CLR_FN"]),
        "mostly_tracked": int(clear["MT"]),
        "track_ids": len({row.split(",")[1] for row in result_path.read_text().splitlines()}),
    }


def params_with(overrides: Sequence[str], base: TrackerParams | None = None) -> TrackerParams:
    """``TrackerParams`` with ``name=value`` overrides (``kalman.name=value`` for the filter).

    Values are checked against the parameters' bounds; a bad name or value ends
    the command with a message naming it.
    """
    values = dict(base or TrackerParams())
    kalman: dict[str, Any] = {}
    for item in overrides:
        key, _, raw = item.partition("=")
        name = key.removeprefix("kalman.")
        target: Any = values["kalman"] if key.startswith("kalman.") else TrackerParams()
        if name == "kalman" or not hasattr(target, name):
            raise SystemExit(f"unknown tracker parameter {key!r}")
        (kalman if key.startswith("kalman.") else values)[name] = _parse_like(
            getattr(target, name), raw
        )
    if kalman:
        values["kalman"] = dataclasses.replace(values["kalman"], **kalman)
    try:
        return TrackerParams(**values)
    except ValidationError as exc:
        raise SystemExit(f"bad tracker parameter: {exc}") from exc


def _parse_like(current: Any, raw: str) -> Any:
    """``raw`` as the type of ``current`` (bool, int, float, else the string)."""
    if isinstance(current, bool):
        return raw.lower() in ("1", "true", "yes")
    if isinstance(current, int):
        return int(raw)
    if isinstance(current, float):
        return float(raw)
    return raw


def configure(parser: argparse.ArgumentParser) -> None:
    seq = pets_dir()
    parser.add_argument(
        "--video", type=Path, default=seq / "vtest.avi", help="the sequence's video"
    )
    parser.add_argument("--gt", type=Path, default=seq / "gt.txt", help="MOTChallenge gt.txt")
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object (the default prints it indented)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO_ROOT / "runs" / "eval-mot",
        help="folder for the result files",
    )
    parser.add_argument(
        "--fps",
        type=float,
        default=None,
        help="frame rate for time stamps (default: seqinfo.ini, else 7)",
    )
    parser.add_argument("--frames", type=int, default=None, help="only the first N frames")
    parser.add_argument(
        "--score-min",
        type=float,
        default=0.1,
        help="detector threshold: boxes below it are not computed (our low-score stage uses the rest)",
    )
    parser.add_argument(
        "--peer-score",
        type=float,
        default=0.5,
        help="the peer gets the boxes at or above this score",
    )
    parser.add_argument("--no-peer", action="store_true", help="skip the peer")
    parser.add_argument(
        "--peer-kalman-boxes",
        action="store_true",
        help="report the peer's Kalman boxes instead of its matched detections",
    )
    add_appearance_argument(parser)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a TrackerParams field (kalman.NAME for the filter)",
    )


def main(args: argparse.Namespace) -> int:
    from evaluation.precompute import video_detections

    logging.basicConfig(level=logging.WARNING)
    params = params_with(args.set)
    seq_name, seq_fps = sequence_info(args.gt)
    fps = args.fps or seq_fps or DEFAULT_FPS
    vd = video_detections(
        args.video,
        score_min=min(args.score_min, params.low_score, args.peer_score),
        frames=None,
        config=analyzer_config(args.appearance, args.embedder_precision),
    )
    n = vd.n_frames if args.frames is None else min(args.frames, vd.n_frames)
    rows, ours_info = run_ours(vd, fps, params, frames=n)
    ours_info["crops_embedded_share"] = embedded_share(vd.carried[:n])
    results = {"crosscam": args.out / "crosscam" / f"{seq_name}.txt"}
    write_mot(results["crosscam"], rows)
    peer_info: dict[str, Any] = {}
    if not args.no_peer:
        peer_rows, peer_info = run_peer(
            vd, args.peer_score, frames=n, kalman_boxes=args.peer_kalman_boxes
        )
        results["peer"] = args.out / "peer" / f"{seq_name}.txt"
        write_mot(results["peer"], peer_rows)
    scores = score_mot(args.gt, results, n, seq_name)
    report: dict[str, Any] = {
        "sequence": seq_name,
        "frames": n,
        "fps": fps,
        "detections_cache": vd.cache_path,
        "score_min": args.score_min,
        **scores["crosscam"],
        "tracklets": ours_info["tracklets"],
        "tracklets_dropped": ours_info["tracklets_dropped"],
        "tracker_seconds": ours_info["seconds"],
        "crops_embedded_share": ours_info["crops_embedded_share"],
        "result_file": str(results["crosscam"]),
        "evaluator": "trackeval (MOT15: gt conf 0 rows removed), IoU 0.5",
        "params": params.model_dump(mode="json"),
    }
    if "peer" in results:
        report["peer"] = {
            **scores["peer"],
            "name": "deep-sort-realtime",
            "config": f"DeepSort(embedder=None, nn_budget={PEER_NN_BUDGET}), boxes >= {args.peer_score}",
            "tracker_seconds": peer_info["seconds"],
            "result_file": str(results["peer"]),
        }
    print(json.dumps(report, sort_keys=False) if args.json else json.dumps(report, indent=2))
    return 0
