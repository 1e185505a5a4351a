"""`crosscam bench models`: every runtime × model × batch, on real PETS09 frames and crops."""

from __future__ import annotations

import argparse

import onnxruntime as ort
import pytest

from bench import models
from detector.config import RuntimeConfig
from detector.runtime import candidates


def test_table_covers_every_runtime_and_model() -> None:
    runtime = RuntimeConfig(openvino_devices=["CPU"], intra_op_threads=2)
    report = models.bench(runtime, [1, 2], seconds=0.0)
    cands = {c.label for c in candidates(runtime, "both")}  # bfloat16 too wherever native
    rows = report["rows"]
    assert {r["candidate"] for r in rows} == cands and not report["failed"]
    for cand in cands:
        mine = {(r["model"], r["batch"]) for r in rows if r["candidate"] == cand}
        # the export is fixed at batch 1; the edited graph and OSNet take any batch
        assert mine == {
            ("yolox_nano", 1),
            ("yolox_nano:dynamic_batch", 1),
            ("yolox_nano:dynamic_batch", 2),
            ("osnet_x0_25", 1),
            ("osnet_x0_25", 2),
            (models.INT8_MODEL, 1),
            (models.INT8_MODEL, 2),
        }
    assert all(r["calls"] >= 3 and r["ms_per_item_median"] > 0 for r in rows)
    emb = report["fastest"]["embedder"]
    assert emb["ms_per_item_median"] == min(
        r["ms_per_item_median"] for r in rows if r["model"] == "osnet_x0_25"
    )
    assert report["crops_per_frame"] > 2, "PETS09 frames hold several people"
    frame_ms = (
        report["fastest"]["detector"]["ms_per_item_median"]
        + report["crops_per_frame"] * emb["ms_per_item_median"]
    )
    assert report["cameras_at_10fps"] == pytest.approx(100 / frame_ms, rel=0.02)
    q = report["fastest"]["embedder_int8"]  # the int8 copy, estimated on its own
    assert q["model"] == models.INT8_MODEL and q["ms_per_item_median"] == min(
        r["ms_per_item_median"] for r in rows if r["model"] == models.INT8_MODEL
    )
    q_ms = (
        report["fastest"]["detector"]["ms_per_item_median"]
        + report["crops_per_frame"] * (q["ms_per_item_median"])
    )
    assert report["cameras_at_10fps_int8_appearance"] == pytest.approx(100 / q_ms, rel=0.02)
    assert len(report["load_average"]["start"]) == 3


def test_a_missing_gpu_provider_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    args = argparse.Namespace(
        provider="cuda",
        threads=None,
        batches=[1],
        seconds=0.0,
        out=None,
        json=True,
        precision="auto",
        int8=True,
    )
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has CUDA: the GPU run is deploy/gpu-check.sh's")
    assert models.main(args) == 2
    assert "cuda" in capsys.readouterr().err
