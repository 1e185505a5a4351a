"""``crosscam bench pipeline`` end to end, short: one camera, a few seconds.

Not a capacity measurement (that is the command itself, on a quiet machine);
this proves every figure the bench reports is measured from the run: frames
reach Kafka at the camera's rate, every stage's CPU is read, latencies come
from the topics, and the result says whether the pipeline kept up.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from bench import pipeline as bench_pipeline
from devstack.stack import StackConfig

pytestmark = pytest.mark.e2e

FPS = 10.0
SECONDS = 8.0
RATE_TOLERANCE = 0.3
"""The camera's measured rate may differ this much from FPS over a window this short."""


def test_bench_reports_measured_figures(stack: StackConfig, tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    bench_pipeline.configure(parser)
    args = parser.parse_args(
        ["--cameras", "1", "--fps", str(FPS), "--seconds", str(SECONDS), "--json",
         "--out", str(tmp_path)]
    )  # fmt: skip
    result = bench_pipeline.run_bench(args)
    print(json.dumps(result))
    assert isinstance(result["kept_up"], bool)
    assert abs(result["frames_published_per_s"] - FPS) <= RATE_TOLERANCE * FPS, result
    assert result["frames_consumed"]["detector"] > 0
    assert set(result["cpu_per_stage"]) == {"ingest", "detector", "tracker", "reid"}
    for stage in ("ingest", "detector", "tracker"):
        assert result["cpu_per_stage"][stage]["cpu_ms_per_frame"] > 0, result["cpu_per_stage"]
    det = result["latency"]["capture_to_detections"]
    assert det["n"] > 0 and 0 < det["p50_s"] <= det["p99_s"], det
    slices = result["latency"]["capture_to_detections_p99_by_slice"]
    assert slices and all(p > 0 for p in slices if p is not None), slices
    assert result["kafka"]["frames_bytes_per_s_per_camera"] > 0
    assert result["detector_wall_ms_per_frame"]["inference:detector"] > 0
    assert set(result["lag"]["max"]) == {"detector", "tracker", "reid"}
    assert not any(result["restarts"].values()), result["restarts"]
