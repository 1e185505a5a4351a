"""Where the test and demo assets live (models, the PETS09 video).

The project never ships model weights or videos. They are read from a folder
named by ``CROSSCAM_SHARED`` (default: ``../shared`` beside the repository, which
is where CI and the developers' machines have them).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def shared_dir() -> Path:
    """The assets folder: ``$CROSSCAM_SHARED`` or ``<repo>/../shared``."""
    env = os.environ.get("CROSSCAM_SHARED")
    return Path(env).expanduser().resolve() if env else (REPO_ROOT.parent / "shared").resolve()


def models_dir() -> Path:
    """The models folder of the assets (``<shared>/models``)."""
    return shared_dir() / "models"


def model_path(filename: str) -> Path:
    """A model file in the assets folder, e.g. ``model_path("yolox_nano.onnx")``."""
    return shared_dir() / "models" / filename


def pets_dir() -> Path:
    """The PETS09-S2L1 sequence folder (``vtest.avi``, ``gt.txt``, ``seqinfo.ini``)."""
    return shared_dir() / "data" / "PETS09-S2L1"
