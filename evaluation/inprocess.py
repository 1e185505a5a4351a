"""The live system in one process, for the evaluation: detector + tracker over every camera.

Cameras are interleaved by capture time (frame ``i`` of every camera before
frame ``i + 1`` of any), exactly as the per-camera topics deliver them to the
stages; finished tracklets come out in the order the trackers finish them.
Trackers keep crops as in the live system (their vectors and, on a network
with a greyscale camera, their greyscale vectors) but without the JPEG bytes.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from evaluation.analysis import analyzer_config, embedded_share
from evaluation.mtmc_scoring import Sample, Scenario, read_frames


def live_tracklets(
    scn: Scenario, max_frames: int | None = None, appearance: str = "on-demand"
) -> tuple[list[Sample], dict]:
    """Run detector and tracker cores over the scenario; the tracklets in finish order.

    ``appearance`` (:data:`evaluation.precompute.APPEARANCE_MODES`): which boxes the
    detector embeds; the share of boxes embedded is reported.
    """
    from detector.analyzer import Analyzer
    from tracker.core import CameraTracker

    analyzer = Analyzer.from_config(analyzer_config(appearance))
    carried: list[np.ndarray] = []
    trackers = {c: CameraTracker(c) for c in scn.cameras}
    readers = {c: read_frames(Path(scn.video(c))) for c in scn.cameras}
    samples: list[Sample] = []

    def collect(finished: list) -> None:
        for t in finished:
            boxes = t.boxes_array()
            frames = [scn.frame_of(ts) for ts in t.frame_ts_ns]
            samples.append(
                Sample(
                    t,
                    None,
                    {f: np.asarray(b, np.float64) for f, b in zip(frames, boxes, strict=True)},
                )
            )

    t0 = time.perf_counter()
    n = 0
    active = set(scn.cameras)
    while active and (max_frames is None or n < max_frames):
        ts = scn.ts(n)
        for cam in scn.cameras:
            if cam not in active:
                continue
            frame = next(readers[cam], None)
            if frame is None:
                active.discard(cam)
                collect(trackers[cam].close().finished)
                continue
            fa = analyzer.analyze(cam, frame)
            carried.append(fa.carried)
            trackers[cam].set_colour(
                fa.greyscale, fa.embeddings_grey if fa.embeddings_grey.size else None
            )
            # crops are kept as in the live system (their vectors, greyscale ones too), without JPEGs
            res = trackers[cam].step(
                ts,
                n,
                fa.boxes_xyxy,
                fa.scores,
                fa.embeddings,
                fa.sharpness,
                [b""] * len(fa),
                carried=fa.carried,
            )
            collect(res.finished)
        n += 1
    for cam in active:
        collect(trackers[cam].close().finished)
    elapsed = time.perf_counter() - t0
    return samples, {
        "frames_per_camera": n,
        "appearance": appearance,
        "crops_embedded_share": embedded_share(carried),
        "pipeline_fps": round(n * len(scn.cameras) / max(elapsed, 1e-9), 1),
    }
