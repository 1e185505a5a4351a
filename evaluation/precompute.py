"""Whole-video detections and appearance vectors, computed once and cached on disk.

    from evaluation.precompute import video_detections
    vd = video_detections(pets_dir() / "vtest.avi", score_min=0.3, frames=None)
    vd.boxes_xyxy[i], vd.scores[i], vd.embeddings[i], vd.sharpness[i]   # frame i (0-based)

The cache is an ``.npz`` under ``<repo>/.stack/cache/detector/`` keyed by the
video's resolved path, size and mtime, the parameters, the analyzer config and
the model checksums, so evaluations and benches of later stages do not rerun
the models. Set ``CROSSCAM_DETECTOR_CACHE`` to use another folder.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import detector
from detector.analyzer import Analyzer
from detector.config import AnalyzerConfig, HogDetectorConfig, OnnxDetectorConfig
from detector.int8 import source_fingerprint
from evaluation.video import video_fps, video_frames
from service.assets import REPO_ROOT, models_dir

log = logging.getLogger(__name__)

# Bump when the cached file's layout changes.
CACHE_FORMAT_VERSION = 3
# Modules whose code decides the cached numbers: their source is part of the
# cache key, so a change to decoding or pre-processing never serves stale results.
_CORE_MODULES = (
    "preprocess",
    "decode",
    "backends",
    "embedder",
    "analyzer",
    "appearance",
    "background",
    "runtime",
    "zoo",
)


_DETECTOR_DIR = Path(detector.__file__).resolve().parent


@functools.cache
def _core_fingerprint() -> str:
    digest = hashlib.sha256()
    for name in _CORE_MODULES:
        digest.update((_DETECTOR_DIR / f"{name}.py").read_bytes())
    return digest.hexdigest()[:16]


# Frames analysed per batch: the embedder gets all their crops in one call.
_FRAMES_PER_BATCH = 8


def default_cache_dir() -> Path:
    env = os.environ.get("CROSSCAM_DETECTOR_CACHE")
    return Path(env) if env else REPO_ROOT / ".stack" / "cache" / "detector"


@dataclass
class VideoDetections:
    """Per-frame detections of a whole video (frame i = 0-based decode index; MOT GT frame i+1).

    Each list has ``n_frames`` entries: boxes_xyxy[i] (N_i, 4) float32 frame
    pixels, scores[i] (N_i,), embeddings[i] (N_i, D) L2-normalised,
    sharpness[i] (N_i,), carried[i] (N_i,) bool (the vector was carried forward
    by appearance on demand, not embedded; all False when it is off).
    """

    video: str
    n_frames: int
    width: int
    height: int
    fps: float
    embedding_dim: int
    boxes_xyxy: list[np.ndarray]
    scores: list[np.ndarray]
    embeddings: list[np.ndarray]
    sharpness: list[np.ndarray]
    carried: list[np.ndarray] = field(default_factory=list)
    cache_path: str = ""
    from_cache: bool = False

    def __len__(self) -> int:
        return self.n_frames


def _with_score_min(config: AnalyzerConfig, score_min: float) -> AnalyzerConfig:
    det = config.detector
    if isinstance(det, OnnxDetectorConfig | HogDetectorConfig):
        det = det.model_copy(update={"score_threshold": score_min})
    return config.model_copy(update={"detector": det})


def _cache_key(video: Path, score_min: float, frames: int | None, config: AnalyzerConfig) -> str:
    st = video.stat()
    sums = []
    if isinstance(config.detector, OnnxDetectorConfig) and config.detector.configured:
        sums.append(config.detector.spec().sha256)
    if config.embedder.type == "onnx":
        sums.append(config.embedder.spec().sha256)  # type: ignore[union-attr]
    ident = {
        "v": CACHE_FORMAT_VERSION,
        "video": str(video),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "score_min": score_min,
        "frames": frames,
        # runtime (threads, providers) does not change results beyond float noise; the
        # models' precision (bfloat16) does
        "config": config.model_dump(mode="json", exclude={"runtime"}),
        "precision": [config.runtime.detector_precision, config.runtime.embedder_precision],
        "models": sums,
        "code": _core_fingerprint(),
    }
    rt = config.runtime
    if rt.embedder_precision == "int8" and rt.int8_calibration is not None:
        # the int8 copy depends on the recording it was calibrated on
        ident["int8_calibration"] = [
            source_fingerprint(rt.int8_calibration),
            rt.int8_calibration_frames,
        ]
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:32]


def _save(path: Path, vd: VideoDetections) -> None:
    offsets = np.cumsum([0] + [len(s) for s in vd.scores]).astype(np.int64)
    dim = vd.embedding_dim
    cat = lambda xs, cols: np.concatenate(xs) if xs else np.zeros((0, cols), np.float32)  # noqa: E731
    meta = {
        k: getattr(vd, k) for k in ("video", "n_frames", "width", "height", "fps", "embedding_dim")
    }
    tmp = path.with_suffix(f".tmp{os.getpid()}.npz")
    np.savez(
        tmp,
        meta=np.asarray(json.dumps(meta)),
        offsets=offsets,
        boxes=cat(vd.boxes_xyxy, 4).reshape(-1, 4),
        scores=cat(vd.scores, 0).reshape(-1),
        embeddings=cat(vd.embeddings, dim).reshape(int(offsets[-1]), dim),
        sharpness=cat(vd.sharpness, 0).reshape(-1),
        carried=cat(vd.carried, 0).reshape(-1).astype(bool),
    )
    os.replace(tmp, path)


def _load(path: Path) -> VideoDetections:
    with np.load(path) as z:
        meta = json.loads(str(z["meta"]))
        off = z["offsets"]
        split = lambda a: [a[off[i] : off[i + 1]] for i in range(len(off) - 1)]  # noqa: E731
        return VideoDetections(
            **meta,
            boxes_xyxy=split(z["boxes"]),
            scores=split(z["scores"]),
            embeddings=split(z["embeddings"]),
            sharpness=split(z["sharpness"]),
            carried=split(z["carried"]),
            cache_path=str(path),
            from_cache=True,
        )


def video_detections(
    video_path: Path | str,
    score_min: float = 0.3,
    frames: int | None = None,
    *,
    config: AnalyzerConfig | None = None,
    cache_dir: Path | None = None,
    analyzer: Analyzer | None = None,
) -> VideoDetections:
    """Detections + vectors for every frame of ``video_path`` (the first ``frames`` if given).

    Args:
        video_path: a file OpenCV can read.
        score_min: detector score threshold for this run (overrides the model's);
            lowering it gives a tracker its low-confidence boxes too.
        frames: only the first N frames (None = all).
        config: analyzer config (default AnalyzerConfig()); its detector
            threshold is replaced by ``score_min``.
        cache_dir: where the .npz cache lives (default :func:`default_cache_dir`).
        analyzer: an already-built analyzer to use on a cache miss (its config
            must be ``config``; the threshold is then the analyzer's own).
    """
    video = Path(video_path).resolve()
    config = _with_score_min(config or AnalyzerConfig(models_dir=models_dir()), score_min)
    folder = cache_dir or default_cache_dir()
    path = folder / f"{video.stem}-{_cache_key(video, score_min, frames, config)}.npz"
    if path.exists():
        try:
            vd = _load(path)
            log.info("video_detections_cache_hit", extra={"path": str(path)})
            return vd
        except (OSError, ValueError, KeyError) as exc:  # a torn or old file: recompute
            log.warning("video_detections_cache_bad", extra={"path": str(path), "error": str(exc)})
    t0 = time.perf_counter()
    an = analyzer or Analyzer.from_config(config)
    boxes, scores, embs, sharp, carried = [], [], [], [], []
    width = height = 0
    batch: list[tuple[str, np.ndarray]] = []

    def flush() -> None:
        for res in an.analyze_batch(batch):
            boxes.append(res.boxes_xyxy.copy())
            scores.append(res.scores.copy())
            embs.append(np.ascontiguousarray(res.embeddings))
            sharp.append(res.sharpness.copy())
            carried.append(
                res.carried.copy() if len(res.carried) == len(res) else np.zeros(len(res), bool)
            )
        batch.clear()

    for _, frame in video_frames(video, frames):
        height, width = frame.shape[:2]
        batch.append((video.stem, frame))
        if len(batch) >= _FRAMES_PER_BATCH:
            flush()
    if batch:
        flush()
    vd = VideoDetections(
        video=str(video),
        n_frames=len(scores),
        width=width,
        height=height,
        fps=video_fps(video),
        embedding_dim=an.embedding_dim,
        boxes_xyxy=boxes,
        scores=scores,
        embeddings=embs,
        sharpness=sharp,
        carried=carried,
        cache_path=str(path),
    )
    folder.mkdir(parents=True, exist_ok=True)
    _save(path, vd)
    log.info(
        "video_detections_computed",
        extra={
            "path": str(path),
            "frames": vd.n_frames,
            "seconds": round(time.perf_counter() - t0, 2),
        },
    )
    return vd
