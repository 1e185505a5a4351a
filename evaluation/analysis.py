"""Which analyzer an evaluation runs: the shared models, appearance on demand or every box.

Light on imports (no model runtimes), so command-line set-up can use it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from detector.config import AnalyzerConfig, AppearanceConfig, RuntimeConfig
from service.assets import models_dir, pets_dir

APPEARANCE_MODES = ("on-demand", "every-box")
PRECISIONS = ("f32", "auto", "bf16", "int8")


def add_appearance_argument(parser: argparse.ArgumentParser) -> None:
    """``--appearance``: which boxes the detector embeds in an evaluation run."""
    parser.add_argument(
        "--appearance",
        choices=APPEARANCE_MODES,
        default="on-demand",
        help="the detector embeds only the boxes that may need appearance (the default, "
        "[detector.appearance] on_demand; the others carry a vector) or every box",
    )
    parser.add_argument(
        "--embedder-precision",
        choices=PRECISIONS,
        default=RuntimeConfig().embedder_precision,
        help="[detector.runtime] embedder_precision: the appearance model's arithmetic, "
        "f32, or bfloat16 where the CPU computes it natively ('bf16'; 'auto', the default, "
        "keeps it when it is faster and agrees with f32 at start), or 'int8' (a copy "
        "quantised at start, calibrated on the people of PETS09's video)",
    )


def analyzer_config(
    appearance: str = "on-demand", precision: str | None = None, calibration: Path | None = None
) -> AnalyzerConfig:
    """The analyzer an evaluation runs: the shared models, appearance and the embedder's
    precision as asked (``calibration``: see :func:`runtime_config`)."""
    return AnalyzerConfig(
        models_dir=models_dir(),
        appearance=AppearanceConfig(on_demand=appearance == "on-demand"),
        runtime=runtime_config(precision, calibration),
    )


def runtime_config(precision: str | None = None, calibration: Path | None = None) -> RuntimeConfig:
    """The default runtime settings, with the embedder's ``precision`` when given.

    'int8' is calibrated on ``calibration`` (footage of the cameras evaluated, as a site
    would calibrate on its own), by default PETS09's video.
    """
    if precision is None:
        return RuntimeConfig()
    if precision == "int8":
        return RuntimeConfig(
            embedder_precision="int8",
            int8_calibration=calibration or pets_dir() / "vtest.avi",
        )
    return RuntimeConfig(embedder_precision=precision)


def scenario_calibration(videos: list[Path], folder: Path, per_video: int = 20) -> Path:
    """A folder of frames evenly spaced through each of a scenario's camera videos.

    What a site would hand the int8 calibration: unlabelled footage of its own cameras.
    Written once (kept while the folder holds frames).
    """
    import cv2

    from evaluation.video import video_frames

    if folder.is_dir() and any(folder.iterdir()):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for video in videos:
        cap = cv2.VideoCapture(str(video))
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        cap.release()
        step = max(1, total // per_video)
        for i, frame in video_frames(video, step * per_video):
            if i % step == 0:
                cv2.imwrite(str(folder / f"{video.stem}_{i:06d}.png"), frame)
    return folder


def embedded_share(carried: list[np.ndarray]) -> float:
    """Share of boxes whose vector was embedded (not carried), over (N_i,) carried flags."""
    boxes = sum(len(c) for c in carried)
    return round(1.0 - sum(int(c.sum()) for c in carried) / max(boxes, 1), 3)


def embedder_facts(embedder: object) -> dict:
    """What ran the appearance model in an evaluation: runtime, and the int8 copy's agreement."""
    choice = getattr(embedder, "choice", None)
    facts: dict = {"runtime": choice.chosen if choice is not None else "none"}
    q = getattr(embedder, "int8", None)
    if q is not None:
        facts["int8"] = {
            "used": choice is not None and choice.model.endswith("int8"),
            "calibration_crops": q.crops,
            "held_out_mean_cosine": round(q.mean_cosine, 4),
            "held_out_min_cosine": round(q.min_cosine, 4),
        }
    return facts


def scenario_int8_calibration(scn: Any, precision: str | None) -> Path | None:
    """For precision 'int8', frames of a scenario's own cameras (``DIR/cache/int8_calibration``),
    as a site would calibrate on its own; else None."""
    if precision != "int8":
        return None
    videos = [Path(scn.video(c)) for c in scn.cameras]
    return scenario_calibration(videos, Path(scn.root) / "cache" / "int8_calibration")
