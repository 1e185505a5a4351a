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

from evaluation.mtmc_scoring import Sample, Scenario, read_frames
from service.assets import models_dir


def live_tracklets(
    scn: Scenario, max_frames: int | None = None, appearance_on_demand: bool = True
) -> tuple[list[Sample], dict]:
    """Run detector and tracker cores over the scenario; the tracklets in finish order.

    ``appearance_on_demand``: the detector embeds only the boxes that may need it
    (``[detector.appearance] on_demand``); the share of boxes embedded is reported.
    """
    from detector.analyzer import Analyzer
    from detector.config import AnalyzerConfig, AppearanceConfig
    from tracker.core import CameraTracker

    analyzer = Analyzer.from_config(
        AnalyzerConfig(
            models_dir=models_dir(), appearance=AppearanceConfig(on_demand=appearance_on_demand)
        )
    )
    boxes_seen = crops_embedded = 0
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
            boxes_seen += analyzer.last_timing.boxes
            crops_embedded += analyzer.last_timing.crops
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
                carried=fa.carried if fa.carried.any() else None,
            )
            collect(res.finished)
        n += 1
    for cam in active:
        collect(trackers[cam].close().finished)
    elapsed = time.perf_counter() - t0
    return samples, {
        "frames_per_camera": n,
        "appearance_on_demand": appearance_on_demand,
        "crops_embedded_share": round(crops_embedded / max(boxes_seen, 1), 3),
        "pipeline_fps": round(n * len(scn.cameras) / max(elapsed, 1e-9), 1),
    }
