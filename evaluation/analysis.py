"""Which analyzer an evaluation runs: the shared models, appearance on demand or every box.

Light on imports (no model runtimes), so command-line set-up can use it.
"""

from __future__ import annotations

import argparse

import numpy as np

from detector.config import AnalyzerConfig, AppearanceConfig, RuntimeConfig
from service.assets import models_dir

APPEARANCE_MODES = ("on-demand", "every-box")
PRECISIONS = ("f32", "auto", "bf16")


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
        "keeps it when it is faster and agrees with f32 at start)",
    )


def analyzer_config(appearance: str = "on-demand", precision: str | None = None) -> AnalyzerConfig:
    """The analyzer an evaluation runs: the shared models, appearance and the embedder's
    precision as asked."""
    return AnalyzerConfig(
        models_dir=models_dir(),
        appearance=AppearanceConfig(on_demand=appearance == "on-demand"),
        runtime=runtime_config(precision),
    )


def runtime_config(precision: str | None = None) -> RuntimeConfig:
    """The default runtime settings, with the embedder's ``precision`` when given."""
    return RuntimeConfig() if precision is None else RuntimeConfig(embedder_precision=precision)


def embedded_share(carried: list[np.ndarray]) -> float:
    """Share of boxes whose vector was embedded (not carried), over (N_i,) carried flags."""
    boxes = sum(len(c) for c in carried)
    return round(1.0 - sum(int(c.sum()) for c in carried) / max(boxes, 1), 3)
