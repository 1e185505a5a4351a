"""The live system in one process, for the evaluation: detector + tracker over every camera.

Cameras are interleaved by capture time (frame ``i`` of every camera before
frame ``i + 1`` of any), exactly as the per-camera topics deliver them to the
stages; finished tracklets come out in the order the trackers finish them.
Trackers keep crops as in the live system (their vectors and, on a network
with a greyscale camera, their greyscale vectors) but without the JPEG bytes.
Each frame makes the bus's round trip first (ingest's resize and JPEG at its
default settings, then the detector's decode), so the detector sees the
pictures the live system's detector sees, and a live run (``crosscam demo``,
which serves the scenario's own H.264 files as cameras) can be compared with
this one tracklet for tracklet.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from evaluation.analysis import (
    analyzer_config,
    embedded_share,
    embedder_facts,
    scenario_int8_calibration,
)
from evaluation.mtmc_scoring import Sample, Scenario, read_frames


def live_tracklets(
    scn: Scenario,
    max_frames: int | None = None,
    appearance: str = "on-demand",
    precision: str | None = None,
    motion_gate: bool = True,
) -> tuple[list[Sample], dict]:
    """Run detector and tracker cores over the scenario; the tracklets in finish order.

    ``appearance`` (:data:`evaluation.precompute.APPEARANCE_MODES`): which boxes the
    detector embeds; the share of boxes embedded is reported.
    """
    from detector.analyzer import Analyzer, FrameAnalysis
    from detector.core import decode_jpeg
    from detector.motion import MotionGate
    from detector.settings import DetectorSettings
    from ingest.encode import FrameEncoder
    from ingest.settings import IngestSettings
    from tracker.core import CameraTracker

    bus = IngestSettings()
    encoder = FrameEncoder(bus.analysis_width, bus.jpeg_quality)

    def as_on_the_bus(frame: np.ndarray) -> tuple[bytes, np.ndarray]:
        jpeg = encoder.encode(frame).jpeg
        image = decode_jpeg(jpeg)
        if not isinstance(image, np.ndarray):
            raise ValueError(f"a scenario frame did not survive the bus: {image.reason}")
        return jpeg, image

    # As the detector stage does: a frame in which nothing moved since the camera's last
    # analysed frame repeats that frame's boxes and vectors (all carried, no crops).
    gate = MotionGate(DetectorSettings().motion_gate) if motion_gate else None
    last: dict[str, FrameAnalysis] = {}
    still = 0

    calibration = scenario_int8_calibration(scn, precision)
    analyzer = Analyzer.from_config(analyzer_config(appearance, precision, calibration))
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
            jpeg, image = as_on_the_bus(frame)
            if gate is not None and not gate.decide(cam, jpeg, ts).analyse and cam in last:
                fa = dataclasses.replace(last[cam], carried=np.ones(len(last[cam]), bool))
                still += 1
            else:
                fa = last[cam] = analyzer.analyze(cam, image)
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
                [b""] * len(fa) if fa is last[cam] else None,
                carried=fa.carried,
                frame_size=(image.shape[1], image.shape[0]),
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
        "motion_gate": motion_gate,
        "frames_still_share": round(still / max(len(carried), 1), 4),
        "pipeline_fps": round(n * len(scn.cameras) / max(elapsed, 1e-9), 1),
        "embedder": embedder_facts(analyzer.embedder),
    }
