"""``crosscam bench tracker``: tracker core frames per second, with the peer, on one core.

Runs :class:`tracker.core.CameraTracker` alone over precomputed PETS09-S2L1
detections and vectors (:func:`evaluation.precompute.video_detections`, cached)
and, in the same run on the same frames, the peer deep-sort-realtime
(``DeepSort(embedder=None, nn_budget=100)``, fed the boxes at or above
``--peer-score`` as in ``crosscam eval mot``). Maths libraries are pinned to
one thread (``OMP_NUM_THREADS=1`` and friends) before numpy loads; when numpy
was already loaded, the command re-runs itself in a fresh interpreter.

Then it loops the video for ``--stream-s`` seconds of stream time (an hour by
default) with a fresh crop ``bytes`` object per box, as decoded messages
would bring, and reports resident memory after the first pass and at the end.
"""

from __future__ import annotations

import os
import sys

_THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "BLIS_NUM_THREADS",
)
_PINNED_BEFORE_NUMPY = "numpy" not in sys.modules
if _PINNED_BEFORE_NUMPY:
    for _var in _THREAD_VARS:
        os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from evaluation.mot import DEFAULT_FPS, PEER_NN_BUDGET, frame_ts_ns, peer_inputs  # noqa: E402
from service.assets import pets_dir  # noqa: E402
from tracker.core import CameraTracker, TrackerParams  # noqa: E402

# Size of the stand-in crop per box: a 64×128 person crop at JPEG quality ~90
# is about this big. Its content is never decoded by the tracker.
CROP_BYTES = 4096


def rss_mib() -> float:
    """Resident set size of this process, MiB (Linux /proc)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _time_ours(vd: Any, params: TrackerParams, fps: float, crops: list[list[bytes]]) -> float:
    tracker = CameraTracker("bench", params)
    t0 = time.perf_counter()
    for i in range(vd.n_frames):
        tracker.step(
            frame_ts_ns(i, fps),
            i,
            vd.boxes_xyxy[i],
            vd.scores[i],
            vd.embeddings[i],
            vd.sharpness[i],
            crops[i],
            frame_size=(vd.width, vd.height),
        )
    tracker.close()
    return time.perf_counter() - t0


def _time_peer(vd: Any, peer_score: float) -> float:
    from deep_sort_realtime.deepsort_tracker import DeepSort

    inputs = [
        peer_inputs(vd.boxes_xyxy[i], vd.scores[i], vd.embeddings[i], peer_score)
        for i in range(vd.n_frames)
    ]
    peer = DeepSort(embedder=None, nn_budget=PEER_NN_BUDGET)
    t0 = time.perf_counter()
    for raw, embeds in inputs:
        peer.update_tracks(raw, embeds=embeds)
    return time.perf_counter() - t0


def _memory_run(vd: Any, params: TrackerParams, fps: float, stream_s: float) -> dict[str, Any]:
    """Loop the video for ``stream_s`` seconds of stream time; RSS after pass 1 and at the end."""
    tracker = CameraTracker("bench-memory", params)
    total = int(stream_s * fps)
    rss_after_first = rss_mib()
    tracks_max = 0
    tracklets = 0
    t0 = time.perf_counter()
    for k in range(total):
        i = k % vd.n_frames
        n = len(vd.scores[i])
        res = tracker.step(
            frame_ts_ns(k, fps),
            k,
            vd.boxes_xyxy[i],
            vd.scores[i],
            vd.embeddings[i],
            vd.sharpness[i],
            [bytes(CROP_BYTES) for _ in range(n)],
            frame_size=(vd.width, vd.height),
        )
        tracklets += len(res.finished)
        tracks_max = max(tracks_max, len(tracker.tracks))
        if k == vd.n_frames - 1:
            rss_after_first = rss_mib()
    tracklets += len(tracker.close().finished)
    return {
        "stream_s": round(total / fps, 1),
        "frames": total,
        "loops": round(total / vd.n_frames, 2),
        "rss_mib_after_first_pass": round(rss_after_first, 1),
        "rss_mib_end": round(rss_mib(), 1),
        "tracks_alive_max": tracks_max,
        "tracklets": tracklets,
        "wall_s": round(time.perf_counter() - t0, 2),
    }


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--video", type=Path, default=pets_dir() / "vtest.avi")
    parser.add_argument("--json", action="store_true", help="one-line JSON (default: indented)")
    parser.add_argument(
        "--score-min", type=float, default=0.1, help="detector threshold of the cached detections"
    )
    parser.add_argument(
        "--peer-score", type=float, default=0.5, help="the peer gets boxes at or above this"
    )
    parser.add_argument(
        "--fps", type=float, default=DEFAULT_FPS, help="stream frame rate for time stamps"
    )
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed passes over the video; the median counts"
    )
    parser.add_argument(
        "--stream-s", type=float, default=3600.0, help="stream time of the memory run (0: skip)"
    )
    parser.add_argument("--no-peer", action="store_true")


def main(args: argparse.Namespace) -> int:
    if not _PINNED_BEFORE_NUMPY:  # numpy already loaded with its own thread pools: start clean
        env = {**os.environ, **dict.fromkeys(_THREAD_VARS, "1")}
        return subprocess.call([sys.executable, "-m", "crosscam.cli", *sys.argv[1:]], env=env)
    from evaluation.precompute import video_detections

    vd = video_detections(args.video, score_min=args.score_min)
    params = TrackerParams()
    crops = [[bytes(CROP_BYTES)] * len(s) for s in vd.scores]
    _time_ours(vd, params, args.fps, crops)  # warm-up
    ours = [_time_ours(vd, params, args.fps, crops) for _ in range(args.repeats)]
    ours_s = statistics.median(ours)
    report: dict[str, Any] = {
        "frames": vd.n_frames,
        "boxes_per_frame": round(float(np.mean([len(s) for s in vd.scores])), 2),
        "boxes_per_frame_at_high_score": round(
            float(np.mean([(s >= params.high_score).sum() for s in vd.scores])), 2
        ),
        "frames_per_s": round(vd.n_frames / ours_s, 1),
        "ms_per_frame": round(1000.0 * ours_s / vd.n_frames, 3),
        "repeats": args.repeats,
        "threads": {v: os.environ.get(v) for v in _THREAD_VARS},
        "crops": f"{CROP_BYTES}-byte stand-in per box (crop choice included, no JPEG work)",
    }
    if not args.no_peer:
        peer_s = statistics.median(
            _time_peer(vd, args.peer_score) for _ in range(max(1, args.repeats // 2))
        )
        report["peer"] = "deep-sort-realtime DeepSort(embedder=None, nn_budget=100)"
        report["peer_frames_per_s"] = round(vd.n_frames / peer_s, 1)
        report["speedup_vs_peer"] = round(peer_s / ours_s, 2)
    if args.stream_s > 0:
        report["memory"] = _memory_run(vd, params, args.fps, args.stream_s)
    print(json.dumps(report) if args.json else json.dumps(report, indent=2))
    return 0
