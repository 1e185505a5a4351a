"""Configuration of the detector core: which backends, which models, which providers.

Strict (unknown keys are errors), every field has a default, a description and
bounds. ``type`` picks the backend (pydantic discriminated unions). Model
properties come from the zoo (:mod:`detector.zoo`) or from a ``custom`` spec
for a model the user brings.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from detector.zoo import DETECTOR_ZOO, EMBEDDER_ZOO, DetectorModelSpec, EmbedderModelSpec

# ONNX Runtime's own names, in the order we prefer them.
PROVIDER_NAMES: dict[str, str] = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}

# Intra-op threads when not configured: half the cores (the detector and the
# embedder run side by side, see ``RuntimeConfig.overlap_models``), up to this
# many. Beyond ~4 threads the small models here stop getting faster and only
# steal cores from the JPEG decode/encode around them.
_DEFAULT_MAX_INTRA_OP_THREADS = 4


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. a container's cpuset)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def default_intra_op_threads() -> int:
    """Half the usable cores, at least 1, at most 4 (1 on the 2-core CI machine).

    Measured on this 2-core machine (README, *Capacity*): the two models one thread
    each, side by side, analyse a backlog at 35 ms of CPU a frame and 23 ms of wall
    time; one after the other on two threads each, 45 ms of CPU and 25 ms of wall
    time (the threads of one operator wait on each other).
    """
    return max(1, min(usable_cores() // 2, _DEFAULT_MAX_INTRA_OP_THREADS))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


Provider = Literal["tensorrt", "cuda", "cpu"]
PROVIDER_ORDER: tuple[Provider, ...] = ("tensorrt", "cuda", "cpu")
"""Fastest first; the first one the installed ONNX Runtime offers is used."""


class MotionGateConfig(_Strict):
    """``[detector.motion_gate]``: skip analysing frames in which nothing moved."""

    enabled: bool = Field(
        True,
        description="a frame in which nothing moved since the camera's last analysed frame "
        "repeats that frame's detections instead of running the models",
    )
    noise_sigmas: float = Field(
        4.0, gt=0.0, le=50.0, description="a pixel changed beyond this many noise sigmas"
    )
    min_level: float = Field(
        6.0, ge=0.0, le=255.0, description="...and by at least this many grey levels"
    )
    min_changed_px: int = Field(
        6,
        ge=1,
        le=100_000,
        description="changed pixels (at quarter size, after a 2x2 opening) that make motion",
    )
    max_still_s: float = Field(
        1.0,
        gt=0.0,
        le=3600.0,
        description="analyse a camera at least this often even when nothing moves",
    )
    noise_momentum: float = Field(
        0.95, ge=0.0, lt=1.0, description="running mean of the noise level (per frame)"
    )
    max_cameras: int = Field(4096, ge=1, description="cameras remembered (least recent dropped)")


Precision = Literal["f32", "auto", "bf16"]
EmbedderPrecision = Literal["f32", "auto", "bf16", "int8"]
"""A model's arithmetic: float32, bfloat16 where native and agreeing (auto), or bfloat16."""


class RuntimeConfig(_Strict):
    """ONNX Runtime session options shared by the detector and the embedder."""

    providers: list[Provider] = Field(
        default_factory=lambda: list(PROVIDER_ORDER),
        min_length=1,
        description="execution providers in order of preference; those not installed are skipped",
    )
    intra_op_threads: int = Field(
        default_factory=default_intra_op_threads,
        ge=1,
        le=256,
        description="threads one ONNX Runtime operator may use (CPU provider); raising it "
        "speeds one inference until the cores run out, then steals them from JPEG work",
    )
    overlap_models: bool = Field(
        True,
        description="with a detector that runs frame by frame (a fixed batch of 1, as the "
        "YOLOX-nano export), detect a batch's next frames in a worker thread while embedding "
        "the crops of those already detected; false runs them one after the other",
    )
    inter_op_threads: int = Field(
        1, ge=1, le=64, description="threads running independent graph branches (sequential=1)"
    )
    engine: Literal["auto", "onnxruntime", "openvino"] = Field(
        "auto",
        description="what runs the models: 'auto' times every engine and setting available "
        "here at start and keeps the fastest, per model",
    )
    graph_optimization: Literal["auto", "basic", "extended", "all"] = Field(
        "auto",
        description="ONNX Runtime graph optimisation level; 'auto' times 'extended' and 'all' "
        "('all' adds layout transformations that slow some models on some CPUs)",
    )
    openvino_devices: list[str] = Field(
        default_factory=lambda: ["GPU", "CPU"],
        description="OpenVINO devices 'auto' may time (those present); [] = never OpenVINO",
    )
    detector_precision: Precision = Field(
        "f32",
        description="the detector's arithmetic on OpenVINO (see embedder_precision); float32 by "
        "default: in bfloat16 YOLOX-nano's boxes and scores moved enough to change tracklets "
        "(measured in the README)",
    )
    embedder_precision: EmbedderPrecision = Field(
        "auto",
        description="the appearance model's arithmetic on OpenVINO: 'f32' never reduces it; "
        "'auto' on a CPU with AMX also times a bfloat16 candidate and keeps it only if its "
        "output agrees with float32 at start (cosine >= reduced_precision_min_cosine) and it is "
        "the fastest (without AMX, where bfloat16 gained 8 %, a timing under load flipped the "
        "choice, so it is not timed); 'bf16' runs OpenVINO in bfloat16 wherever native (AMX or "
        "AVX512-BF16). ONNX Runtime always runs float32 there. 'int8' runs a copy of the model "
        "quantised at start (int8 weights, uint8 activations), calibrated on the people of "
        "int8_calibration, on whichever engine times fastest; opt-in, since its vectors move "
        "more than bfloat16's (measured in the README)",
    )
    int8_calibration: Path | None = Field(
        None,
        description="embedder_precision 'int8': a recording of the site's cameras (a video "
        "file or a folder of images) whose people calibrate the quantisation's ranges",
    )
    int8_calibration_frames: int = Field(
        60, ge=2, le=10_000, description="frames of int8_calibration searched for people"
    )
    int8_min_cosine: float = Field(
        0.98,
        ge=0.0,
        le=1.0,
        description="embedder_precision 'int8': least mean cosine between the int8 copy's "
        "vectors and float32's on held-out calibration crops; below it the stage runs float32 "
        "and logs why",
    )
    reduced_precision_min_cosine: float = Field(
        0.995,
        ge=0.0,
        le=1.0,
        description="precision 'auto': least cosine between a bfloat16 candidate's output "
        "and float32's on the start-up input for the candidate to be kept",
    )
    reduced_precision_min_speedup: float = Field(
        1.2,
        ge=1.0,
        le=10.0,
        description="precision 'auto': a bfloat16 candidate is chosen only when it runs at "
        "least this many times faster than the fastest float32 one; a near tie (an "
        "AVX512-BF16 CPU without AMX: 8 % faster) keeps float32, so the choice does not "
        "flip between runs with timing noise and no accuracy is given up for little",
    )
    auto_timing_s: float = Field(
        1.0,
        ge=0.0,
        le=60.0,
        description="time budget of the start-up timing per model (at least 3 rounds run)",
    )

    @model_validator(mode="after")
    def _int8_calibrated(self) -> RuntimeConfig:
        if self.embedder_precision == "int8" and self.int8_calibration is None:
            raise ValueError(
                "embedder_precision 'int8' needs int8_calibration: a recording of the site's "
                "cameras (video file or image folder) whose people calibrate the int8 ranges"
            )
        return self


class OnnxDetectorConfig(_Strict):
    """A YOLOX- or YOLOv8-layout person detector run by ONNX Runtime."""

    type: Literal["onnx"] = "onnx"
    model: str = Field(
        "yolox_nano",
        description="zoo name (detector.zoo.DETECTOR_ZOO); ignored when custom is set; "
        "empty = no model configured -> OpenCV HOG fallback",
    )
    custom: DetectorModelSpec | None = Field(
        None, description="full description of a model not in the zoo"
    )
    path: Path | None = Field(
        None, description="model file; default: the spec's filename in the models folder"
    )
    score_threshold: float | None = Field(
        None, ge=0.0, le=1.0, description="override of the spec's score threshold"
    )
    nms_iou: float | None = Field(
        None, gt=0.0, le=1.0, description="override of the spec's NMS IoU"
    )
    dynamic_batch: bool = Field(
        False,
        description="make a batch-1 export's batch dimension dynamic at load (graph edit, needs "
        "the onnx package) so a batch of frames runs in one call; off: on 2 CPU cores it did "
        "not pay (`crosscam bench models`), on a GPU it may",
    )

    @model_validator(mode="after")
    def _known_model(self) -> OnnxDetectorConfig:
        if self.custom is None and self.model and self.model not in DETECTOR_ZOO:
            raise ValueError(
                f"unknown detector model {self.model!r}; zoo has {sorted(DETECTOR_ZOO)}, "
                "or give a custom spec"
            )
        return self

    @property
    def configured(self) -> bool:
        """Whether a model is named at all (a custom spec or a zoo name)."""
        return self.custom is not None or bool(self.model)

    def spec(self) -> DetectorModelSpec:
        """The model spec with this config's threshold overrides applied."""
        if not self.configured:
            raise ValueError("no detector model configured")
        base = self.custom or DETECTOR_ZOO[self.model]
        updates: dict[str, float] = {}
        if self.score_threshold is not None:
            updates["score_threshold"] = self.score_threshold
        if self.nms_iou is not None:
            updates["nms_iou"] = self.nms_iou
        return base.model_copy(update=updates) if updates else base


class HogDetectorConfig(_Strict):
    """OpenCV's built-in HOG + linear SVM people detector (no model file needed).

    Its window is 64x128 px, so people smaller than that are only found after
    upscaling the frame (``upscale``); it is the fallback, much slower and
    weaker than a CNN.
    """

    type: Literal["hog"] = "hog"
    upscale: float = Field(
        1.5,
        ge=1.0,
        le=4.0,
        description="resize factor before detection; raising it finds smaller people, "
        "costs upscale^2 time",
    )
    win_stride: int = Field(8, ge=4, le=32, description="window step in pixels; smaller = slower")
    scale_step: float = Field(1.05, gt=1.0, le=2.0, description="image pyramid step")
    hit_threshold: float = Field(0.0, description="SVM margin a window must exceed")
    score_threshold: float = Field(
        0.3, ge=0.0, le=1.0, description="keep boxes whose squashed SVM score is at least this"
    )
    nms_iou: float = Field(0.45, gt=0.0, le=1.0)


def _type_or(default: str) -> Callable[[Any], str | None]:
    """Discriminator reading ``type``, ``default`` when a config table leaves it out."""

    def pick(value: Any) -> str | None:
        if isinstance(value, dict):
            return str(value.get("type", default))
        return getattr(value, "type", None)

    return pick


DetectorBackendConfig = Annotated[
    Annotated[OnnxDetectorConfig, Tag("onnx")] | Annotated[HogDetectorConfig, Tag("hog")],
    Discriminator(_type_or("onnx")),
]


class OnnxEmbedderConfig(_Strict):
    """An appearance (ReID) model run by ONNX Runtime on person crops."""

    type: Literal["onnx"] = "onnx"
    model: str = Field("osnet_x0_25_msmt17", description="zoo name (detector.zoo.EMBEDDER_ZOO)")
    custom: EmbedderModelSpec | None = None
    path: Path | None = None
    max_batch: int = Field(
        32,
        ge=1,
        le=1024,
        description="crops per inference call; raising it amortises call overhead, costs memory",
    )

    @model_validator(mode="after")
    def _known_model(self) -> OnnxEmbedderConfig:
        if self.custom is None and self.model not in EMBEDDER_ZOO:
            raise ValueError(
                f"unknown embedder model {self.model!r}; zoo has {sorted(EMBEDDER_ZOO)}"
            )
        return self

    def spec(self) -> EmbedderModelSpec:
        """The model's spec: the custom one if given, else the zoo entry."""
        return self.custom or EMBEDDER_ZOO[self.model]


class NoEmbedderConfig(_Strict):
    """No appearance vectors (Detections carry embedding_dim = 0)."""

    type: Literal["none"] = "none"


EmbedderBackendConfig = Annotated[
    Annotated[OnnxEmbedderConfig, Tag("onnx")] | Annotated[NoEmbedderConfig, Tag("none")],
    Discriminator(_type_or("onnx")),
]


class BackgroundConfig(_Strict):
    """Per-camera background subtraction that greys out a crop's background before embedding."""

    enabled: bool = Field(
        False,
        description="off by default: on PETS09 it did not improve same/different-person AUC "
        "or rank-1 (see `crosscam eval reid`)",
    )
    method: Literal["mog2", "knn"] = "mog2"
    history: int = Field(
        200, ge=10, le=5000, description="frames the model remembers; longer = slower to adapt"
    )
    var_threshold: float = Field(
        16.0, gt=0, description="MOG2 varThreshold; raising it marks fewer pixels as foreground"
    )
    downscale: float = Field(
        0.5, gt=0.0, le=1.0, description="frame scale fed to the subtractor (cheaper when < 1)"
    )
    min_foreground_fraction: float = Field(
        0.15,
        ge=0.0,
        le=1.0,
        description="if less of a crop than this is foreground (e.g. a person standing still), "
        "the crop is embedded unmasked",
    )
    max_cameras: int = Field(
        256, ge=1, description="subtractors kept (least recently used dropped beyond this)"
    )


class AppearanceConfig(_Strict):
    """Appearance on demand: which boxes the appearance model runs on (:mod:`detector.appearance`)."""

    on_demand: bool = Field(
        True,
        description="embed only boxes whose association may need appearance (new, ambiguous, "
        "jumped, due a refresh, or a better crop than the chain's best) and carry the vector "
        "of an unambiguous IoU continuation forward, flagged as carried so the tracker keeps "
        "it out of a track's gallery. On PETS09 it embeds about half the boxes; false embeds "
        "every box",
    )
    match_iou: float = Field(
        0.5,
        gt=0.0,
        le=1.0,
        description="least IoU with the previous frame's box for a box to carry its vector; "
        "raising it embeds more boxes (fast movers, low frame rates)",
    )
    refresh_frames: int = Field(
        5,
        ge=1,
        le=1000,
        description="a carried vector is re-embedded after this many frames (1 = every frame)",
    )
    better_ratio: float = Field(
        1.0,
        ge=1.0,
        le=10.0,
        description="a box that could carry a vector is embedded anyway when its crop's "
        "quality exceeds this many times the best crop embedded along its chain (1.0: any "
        "better crop; 1.1 embeds 18 % fewer crops on PETS09 and links less on a cold "
        "site, see detector.appearance)",
    )
    full_detail_height_px: float = Field(
        256.0, gt=0, description="crop height beyond which quality stops growing (as the tracker)"
    )
    sharpness_half_point: float = Field(
        100.0,
        gt=0,
        description="Laplacian variance at which sharpness counts half (as the tracker)",
    )
    max_cameras: int = Field(4096, ge=1, description="cameras remembered (least recent dropped)")


class CropConfig(_Strict):
    """How crops are cut for the embedder and for the Detections message."""

    jpeg_max_side: int = Field(
        256, ge=16, le=2048, description="longest side of a message crop JPEG in pixels"
    )
    jpeg_quality: int = Field(85, ge=10, le=100, description="JPEG quality of message crops")


class AnalyzerConfig(_Strict):
    """Detector + embedder (+ optional background masking) for one frame or a batch."""

    detector: DetectorBackendConfig | None = Field(
        default_factory=OnnxDetectorConfig,
        description="detector backend; null = no model configured -> OpenCV HOG fallback",
    )
    embedder: EmbedderBackendConfig = Field(default_factory=OnnxEmbedderConfig)
    background: BackgroundConfig = Field(default_factory=BackgroundConfig)
    appearance: AppearanceConfig = Field(default_factory=AppearanceConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    models_dir: Path | None = Field(
        None,
        description="folder holding the zoo's model files, for models with no path of their own; "
        "the services set it from CROSSCAM_SHARED",
    )
