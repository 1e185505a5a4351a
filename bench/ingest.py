"""``crosscam bench ingest [--json]``: ingest's CPU cost and bandwidth on the sample video.

Decodes PETS09-S2L1's vtest.avi, samples it to the analysis frame rate by
file time and resizes + encodes JPEG at the configured (default) analysis
settings — the same core ``crosscam ingest`` runs, without Kafka. Reports
frames per second of the whole path and of encoding alone, mean bytes per
frame, and bytes per second per camera at the analysis frame rate: what one
camera puts on the frames topic (inline) or into Redis (claim-check).
``--widths`` adds the same numbers at other analysis widths for comparison.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from common.units import NS_PER_S
from ingest.encode import FrameEncoder
from ingest.sampler import FrameSampler
from ingest.settings import IngestSettings
from service.assets import pets_dir

# Kafka's default largest message (broker message.max.bytes, ~1 MB): a frame
# far below it can travel inline without touching topic settings.
KAFKA_DEFAULT_MAX_MESSAGE_BYTES = 1_048_588


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--video", type=Path, help="video file (default: PETS09-S2L1 vtest.avi)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--analysis-fps", type=float, help="override the default analysis fps")
    parser.add_argument("--analysis-width", type=int, help="override the default width")
    parser.add_argument("--jpeg-quality", type=int, help="override the default JPEG quality")
    parser.add_argument(
        "--widths", type=int, nargs="*", default=[], help="also measure these analysis widths"
    )


def _decode_sampled(video: Path, analysis_fps: float) -> tuple[list[np.ndarray], int, float, float]:
    """(kept frames, decoded count, decode seconds, file fps)."""
    cap = cv2.VideoCapture(str(video), cv2.CAP_FFMPEG)
    if not cap.isOpened():
        raise FileNotFoundError(f"cannot open {video}")
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0) or 25.0
    sampler = FrameSampler(analysis_fps)
    kept: list[np.ndarray] = []
    n = 0
    t0 = time.perf_counter()
    try:
        while cap.grab():
            if sampler.due(round(n * NS_PER_S / fps)):
                ok, img = cap.retrieve()
                if ok:
                    kept.append(img)
            n += 1
    finally:
        cap.release()
    return kept, n, time.perf_counter() - t0, fps


def _encode_all(frames: list[np.ndarray], width: int, quality: int, fps: float) -> dict[str, Any]:
    enc = FrameEncoder(width, quality)
    sizes: list[int] = []
    t0 = time.perf_counter()
    for img in frames:
        sizes.append(len(enc.encode(img).jpeg))
    seconds = time.perf_counter() - t0
    h, w = frames[0].shape[:2]
    out_w, out_h = (width, round(h * width / w)) if w > width else (w, h)
    mean = statistics.fmean(sizes)
    return {
        "analysis_width": width,
        "size": f"{out_w}x{out_h}",
        "jpeg_quality": quality,
        "encode_ms_per_frame": round(1000 * seconds / len(frames), 2),
        "encode_frames_per_second": round(len(frames) / seconds, 1),
        "mean_bytes_per_frame": round(mean),
        "max_bytes_per_frame": max(sizes),
        "bytes_per_second_per_camera": round(mean * fps),
        "encode_seconds": seconds,
    }


def run_bench(video: Path, cfg: IngestSettings, widths: list[int]) -> dict[str, Any]:
    frames, decoded, decode_s, file_fps = _decode_sampled(video, cfg.analysis_fps)
    if not frames:
        raise ValueError(f"{video}: no frames decoded")
    rate = cfg.analysis_fps if cfg.analysis_fps > 0 else file_fps
    main = _encode_all(frames, cfg.analysis_width, cfg.jpeg_quality, rate)
    total_s = decode_s + main.pop("encode_seconds")
    result: dict[str, Any] = {
        "video": str(video),
        "source_size": f"{frames[0].shape[1]}x{frames[0].shape[0]}",
        "file_fps": file_fps,
        "frames_decoded": decoded,
        "frames_analysed": len(frames),
        "analysis_fps": cfg.analysis_fps,
        **main,
        "frames_per_second": round(len(frames) / total_s, 1),
        "decode_frames_per_second": round(decoded / decode_s, 1),
        "cameras_per_core_at_analysis_fps": round(len(frames) / total_s / rate, 1),
        "inline_fits_default_kafka_message": main["max_bytes_per_frame"]
        < KAFKA_DEFAULT_MAX_MESSAGE_BYTES,
    }
    if widths:
        result["by_width"] = []
        for w in widths:
            row = _encode_all(frames, w, cfg.jpeg_quality, rate)
            row.pop("encode_seconds")
            result["by_width"].append(row)
    return result


def main(args: argparse.Namespace) -> int:
    overrides = {
        k: v
        for k, v in {
            "analysis_fps": args.analysis_fps,
            "analysis_width": args.analysis_width,
            "jpeg_quality": args.jpeg_quality,
        }.items()
        if v is not None
    }
    cfg = IngestSettings(**overrides)
    video = args.video or pets_dir() / "vtest.avi"
    result = run_bench(video, cfg, args.widths)
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        for key, value in result.items():
            print(f"{key:>36}: {value}")
    return 0
