"""``crosscam bench models``: every runtime here × every model, ms per frame / crop by batch.

    crosscam bench models --json [--batches 1 8 32] [--seconds 20] [--provider cpu|cuda|tensorrt]

For the detector (YOLOX-nano as exported, batch fixed at 1, and the same graph
with its batch made dynamic at load) and the embedder (OSNet x0.25), it opens
the model with every runtime candidate :func:`detector.runtime.candidates`
offers (ONNX Runtime at each graph optimisation level, OpenVINO on each device
present) and times ``run`` on real inputs: letterboxed PETS09 frames and crops
of the people the detector finds in them. Candidates are interleaved call by
call, so load on the machine hits them alike; per cell the median and the
fastest call are kept. The load average at start and end is printed with the
table: on a shared machine the numbers move with it.

``cameras_at_10fps`` is what one process on these threads (or one GPU with
``--provider cuda``) would carry at 10 fps: 1 s / (fastest detector ms per
frame + crops per frame × fastest embedder ms per crop) / 10, inference only
(the stage adds JPEG decode, crops and messages around it: `crosscam bench detector`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from detector.backends import OnnxDetector
from detector.checksum import resolve_model_path
from detector.config import (
    PROVIDER_NAMES,
    OnnxDetectorConfig,
    OnnxEmbedderConfig,
    RuntimeConfig,
    usable_cores,
)
from detector.embedder import OnnxEmbedder, build_embedder
from detector.preprocess import crop_views
from detector.runtime import Runner, candidates, open_runner, static_batch_size, with_dynamic_batch
from evaluation.video import video_frames
from service.assets import models_dir, pets_dir

# The appearance model's int8 copy (embedder_precision 'int8'), timed beside the float one.
INT8_MODEL = "osnet_x0_25:int8"

# Frames of PETS09 used as inputs (and to count people per frame): every 10th from 40.
_FIRST_FRAME, _FRAME_STEP, _N_FRAMES = 40, 10, 16


@dataclass
class _Cell:
    model: str
    candidate: str
    batch: int
    runner: Runner
    tensor: np.ndarray
    times: list[float]


def _inputs(runtime: RuntimeConfig) -> tuple[np.ndarray, np.ndarray, float]:
    """Prepared detector frames (F, 3, h, w), embedder crops (C, 3, h, w), crops per frame."""
    wanted = {_FIRST_FRAME + _FRAME_STEP * k for k in range(_N_FRAMES)}
    frames = [f for i, f in video_frames(pets_dir() / "vtest.avi", max(wanted) + 1) if i in wanted]
    det_spec, emb_cfg = OnnxDetectorConfig().spec(), OnnxEmbedderConfig()
    pinned = runtime.model_copy(update={"engine": "onnxruntime", "graph_optimization": "extended"})
    det = OnnxDetector(resolve_model_path(None, det_spec.filename, models_dir()), det_spec, pinned)
    emb_spec = emb_cfg.spec()
    emb = OnnxEmbedder(
        resolve_model_path(None, emb_spec.filename, models_dir()), emb_spec, pinned, 32
    )
    found = det.detect_batch(frames)
    crops = [c for f, fb in zip(frames, found, strict=True) for c in crop_views(f, fb.boxes_xyxy)]
    tensor, _ = det.prepare(frames)
    return tensor, emb.prepare(crops), len(crops) / len(frames)


def _batch_of(pool: np.ndarray, b: int) -> np.ndarray:
    reps = -(-b // len(pool))
    return np.ascontiguousarray(np.concatenate([pool] * reps)[:b])


def _int8_copy(runtime: RuntimeConfig) -> Path:
    """The appearance model's int8 copy as the stage makes it, calibrated on PETS09's people."""
    spec = OnnxEmbedderConfig().spec()
    rt = runtime.model_copy(
        update={
            "embedder_precision": "int8",
            "int8_calibration": pets_dir() / "vtest.avi",
            "auto_timing_s": 0.2,
        }
    )
    emb = build_embedder(OnnxEmbedderConfig(), rt, models_dir())
    assert isinstance(emb, OnnxEmbedder) and emb.int8 is not None, spec.filename
    return emb.int8.path


def _cells(
    runtime: RuntimeConfig,
    batches: list[int],
    frames: np.ndarray,
    crops: np.ndarray,
    precision: str,
    int8: bool = True,
):
    det_src = resolve_model_path(None, OnnxDetectorConfig().spec().filename, models_dir())
    emb_src = resolve_model_path(None, OnnxEmbedderConfig().spec().filename, models_dir())
    models = [
        ("yolox_nano", det_src, frames),
        ("yolox_nano:dynamic_batch", with_dynamic_batch(det_src), frames),
        ("osnet_x0_25", emb_src, crops),
    ]
    if int8:
        models.append((INT8_MODEL, _int8_copy(runtime), crops))
    cells, failed = [], {}
    for cand in candidates(runtime, "both" if precision == "auto" else precision):
        for name, path, pool in models:
            try:
                runner = open_runner(path, runtime, cand, what=name)
            except Exception as exc:  # noqa: BLE001 - reported, the others still run
                failed[f"{name}@{cand.label}"] = f"{type(exc).__name__}: {exc}"
                continue
            fixed = static_batch_size(runner.info)
            for b in [1] if fixed == 1 else batches:
                cells.append(_Cell(name, cand.label, b, runner, _batch_of(pool, b), []))
    return cells, failed


def _time(cells: list[_Cell], seconds: float) -> None:
    for c in cells:  # untimed first call: allocation, kernel compilation
        c.runner.run(c.tensor)
    deadline = time.perf_counter() + seconds
    rounds = 0
    while rounds < 3 or (time.perf_counter() < deadline and rounds < 200):
        for c in cells:
            t0 = time.perf_counter()
            c.runner.run(c.tensor)
            c.times.append(time.perf_counter() - t0)
        rounds += 1


def _fastest(rows: list[dict[str, Any]], *models: str) -> dict[str, Any]:
    mine = [r for r in rows if r["model"] in models]
    return min(mine, key=lambda r: r["ms_per_item_median"])


def bench(
    runtime: RuntimeConfig,
    batches: list[int],
    seconds: float,
    precision: str = "auto",
    int8: bool = True,
) -> dict[str, Any]:
    """The backend × model × batch table, the fastest per model and the camera estimate.

    ``precision``: which OpenVINO arithmetic is timed ('auto': float32 and, where the CPU
    computes it natively, bfloat16, both for every model).
    """
    load_start = os.getloadavg()
    frames, crops, crops_per_frame = _inputs(runtime)
    cells, failed = _cells(runtime, batches, frames, crops, precision, int8)
    wanted = [PROVIDER_NAMES[p] for p in runtime.providers]
    if runtime.engine == "onnxruntime" and "CPUExecutionProvider" not in wanted:
        # ONNX Runtime falls back to CPU silently when CUDA/TensorRT fail to load
        off = {c.runner.info.provider for c in cells} - set(wanted)
        if off:
            raise RuntimeError(f"asked for {wanted}, sessions run on {sorted(off)}")
    _time(cells, seconds)
    rows = [
        {
            "model": c.model,
            "candidate": c.candidate,
            "batch": c.batch,
            "calls": len(c.times),
            "ms_per_item_median": round(1000 * statistics.median(c.times) / c.batch, 3),
            "ms_per_item_best": round(1000 * min(c.times) / c.batch, 3),
            "items_per_s": round(c.batch / statistics.median(c.times), 1),
            "provider": c.runner.info.provider,
        }
        for c in cells
    ]
    det = _fastest(rows, "yolox_nano", "yolox_nano:dynamic_batch")
    emb = _fastest(rows, "osnet_x0_25")
    frame_ms = det["ms_per_item_median"] + crops_per_frame * emb["ms_per_item_median"]
    report: dict[str, Any] = {
        "rows": rows,
        "failed": failed,
        "fastest": {"detector": det, "embedder": emb},
        "crops_per_frame": round(crops_per_frame, 2),
        "inference_ms_per_frame": round(frame_ms, 2),
        "cameras_at_10fps": round(1000 / frame_ms / 10, 2),
    }
    if any(r["model"] == INT8_MODEL for r in rows):
        q = _fastest(rows, INT8_MODEL)
        q_ms = det["ms_per_item_median"] + crops_per_frame * q["ms_per_item_median"]
        report["fastest"]["embedder_int8"] = q
        report["inference_ms_per_frame_int8_appearance"] = round(q_ms, 2)
        report["cameras_at_10fps_int8_appearance"] = round(1000 / q_ms / 10, 2)
    return report | {
        "intra_op_threads": runtime.intra_op_threads,
        "providers": runtime.providers,
        "usable_cores": usable_cores(),
        "load_average": {"start": load_start, "end": os.getloadavg()},
    }


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=20.0, help="timing budget in all")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads per model")
    parser.add_argument(
        "--provider",
        choices=["cpu", "cuda", "tensorrt"],
        default=None,
        help="ONNX Runtime provider only (no OpenVINO): e.g. cuda on a GPU machine; "
        "default: every runtime here",
    )
    parser.add_argument(
        "--precision",
        choices=["f32", "auto", "bf16"],
        default="auto",
        help="OpenVINO's arithmetic timed: 'auto' (the default here) float32 and, on a CPU "
        "with native bfloat16, bfloat16 too, for every model; 'f32' float32 only",
    )
    parser.add_argument(
        "--int8",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time the appearance model's int8 copy (embedder_precision 'int8', "
        "calibrated on PETS09's people; quantised once, about 20 s); off with --provider",
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    parser.add_argument("--json", action="store_true")


def _runtime(args: argparse.Namespace) -> RuntimeConfig:
    update: dict[str, Any] = {}
    if args.threads:
        update["intra_op_threads"] = args.threads
    if args.provider:
        update |= {"providers": [args.provider], "engine": "onnxruntime", "openvino_devices": []}
    return RuntimeConfig(**update)


def main(args: argparse.Namespace) -> int:
    try:
        runtime = _runtime(args)
        report = bench(
            runtime,
            sorted(set(args.batches)),
            args.seconds,
            args.precision,
            int8=args.int8 and not args.provider,
        )
    except RuntimeError as exc:  # e.g. --provider cuda without onnxruntime-gpu
        print(f"bench models: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(report) if args.json else json.dumps(report, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text, flush=True)
    return 0
