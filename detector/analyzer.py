"""Detector + appearance embedder for one frame or a batch of frames (the stage's pure core).

    analyzer = Analyzer.from_config(AnalyzerConfig())   # checks model SHA-256s, warms up
    res = analyzer.analyze("cam1", frame_bgr)            # FrameAnalysis
    results = analyzer.analyze_batch([("cam1", f1), ("cam2", f2)])

Crops of every frame in a batch are embedded in one batched call; with
``overlap`` on (the default) and a detector run frame by frame (the YOLOX-nano
export has a fixed batch of 1), a worker thread detects the batch's next
frames while this thread embeds the crops of those already detected, so the
two models run side by side on one thread each instead of one after the other
on several (measured in the README's *Capacity*). With
appearance on demand (``appearance.on_demand``, :mod:`detector.appearance`) only the boxes
whose association may need appearance are embedded; the others carry the
vector of the box they continue. With background masking on, every frame
(boxes or not) updates its camera's subtractor. Both keep per-camera state,
so frames of a camera must come in order.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from detector.appearance import AppearanceGate, EmbedPlan
from detector.backends import Detector, FrameBoxes, build_detector
from detector.background import BackgroundMasker
from detector.config import AnalyzerConfig, AppearanceConfig
from detector.embedder import Embedder, OnnxEmbedder, build_embedder
from detector.greyscale import GreyscaleCameras, grey_crops
from detector.preprocess import crop_views, sharpness

# Background fill when the embedder has no mean colour (no embedder): mid grey.
_NEUTRAL_GREY_BGR = (128, 128, 128)


@dataclass
class FrameAnalysis:
    """People in one frame.

    Attributes:
        camera_id: the frame's camera.
        frame_hw: (H, W) of the analysed frame.
        boxes_xyxy: (N, 4) float32 x1, y1, x2, y2 in frame pixels.
        scores: (N,) float32 detector confidence, best first.
        embeddings: (N, D) float32, L2-normalised (D = 0 without an embedder).
        sharpness: (N,) float32 variance of the Laplacian of each crop.
        crops: N BGR uint8 views into the frame (unmasked), one per box.
        greyscale: the camera's frames carry no colour (detected, see
            :mod:`detector.greyscale`).
        embeddings_grey: (N, D) vectors of the crops made grey, on a colour
            frame while some camera is greyscale; (N, 0) otherwise.
        carried: (N,) bool, True where the box carries the vector of the box it
            continues (appearance on demand) instead of one embedded for it.
    """

    camera_id: str
    frame_hw: tuple[int, int]
    boxes_xyxy: np.ndarray
    scores: np.ndarray
    embeddings: np.ndarray
    sharpness: np.ndarray
    crops: list[np.ndarray] = field(default_factory=list)
    greyscale: bool = False
    embeddings_grey: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    carried: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))

    def __len__(self) -> int:
        return len(self.scores)


@dataclass
class AnalysisTiming:
    """Seconds spent in the last ``analyze_batch`` call.

    ``detector_inference`` and ``embedder_inference`` are the ONNX Runtime
    ``session.run`` calls only; ``total`` includes pre/post-processing, crops,
    sharpness and background masking.
    """

    frames: int = 0
    boxes: int = 0
    crops: int = 0  # crops embedded (boxes minus vectors carried forward)
    detector_inference: float = 0.0
    embedder_inference: float = 0.0
    total: float = 0.0


class Analyzer:
    """Runs a :class:`~detector.backends.Detector` and an :class:`~detector.embedder.Embedder`.

    Not thread-safe (ONNX sessions are, the background models are not): use
    one per worker thread.
    """

    def __init__(
        self,
        detector: Detector,
        embedder: Embedder,
        masker: BackgroundMasker | None = None,
        *,
        detector_reason: str = "",
        gate: AppearanceGate | None = None,
        overlap: bool = False,
    ) -> None:
        self.detector = detector
        self.embedder = embedder
        self.masker = masker
        # Without a gate every box is embedded.
        self.gate = gate or AppearanceGate(AppearanceConfig(on_demand=False))
        self.detector_reason = detector_reason
        self.last_timing = AnalysisTiming()
        self.greyscale = GreyscaleCameras()
        self.overlap = overlap and getattr(detector, "fixed_batch", None) == 1
        """Detect a batch's next frames in a worker thread while embedding this frame's crops
        (only for a detector that runs frame by frame anyway)."""
        self._worker: ThreadPoolExecutor | None = None
        self._worker_lock = threading.Lock()

    @classmethod
    def from_config(cls, config: AnalyzerConfig | None = None) -> Analyzer:
        """Build from config: verify model files (SHA-256), open sessions, warm up.

        Raises:
            detector.checksum.ModelFileError: a model file is missing or has the wrong SHA-256.
        """
        config = config or AnalyzerConfig()
        detector, reason = build_detector(config.detector, config.runtime, config.models_dir)
        embedder = build_embedder(config.embedder, config.runtime, config.models_dir, detector)
        masker = None
        if config.background.enabled:
            fill = _NEUTRAL_GREY_BGR
            if isinstance(embedder, OnnxEmbedder):
                spec = embedder.spec
                mean255 = [round(m * 255) if spec.pixel_scale < 1 else round(m) for m in spec.mean]
                fill = tuple(mean255[::-1]) if spec.channel_order == "rgb" else tuple(mean255)  # type: ignore[assignment]
            masker = BackgroundMasker(config.background, fill)
        gate = AppearanceGate(config.appearance)
        return cls(
            detector,
            embedder,
            masker,
            detector_reason=reason,
            gate=gate,
            overlap=config.runtime.overlap_models,
        )

    @property
    def embedding_dim(self) -> int:
        """Length of the appearance vectors (0 without an embedder)."""
        return self.embedder.dim

    def reset_camera(self, camera_id: str) -> None:
        """Forget per-camera state (the background model): the camera's stream ended."""
        if self.masker is not None:
            self.masker.reset(camera_id)
        self.gate.reset(camera_id)
        self.greyscale.reset(camera_id)

    def _embed_grey(self, results: list[FrameAnalysis]) -> None:
        """While some camera is greyscale, colour frames' crops are embedded grey as well.

        Like with like: a greyscale camera's people are then compared with the
        colour cameras' people as a greyscale camera would see them. Costs one
        more embedding per colour crop, only on a network with a greyscale camera.
        """
        if not self.greyscale.any_greyscale() or self.embedder.dim == 0:
            return
        want: list[np.ndarray] = []
        spans: list[tuple[FrameAnalysis, int]] = []
        for res in results:
            if not res.greyscale and len(res):
                spans.append((res, len(want)))
                want.extend(res.crops)
        if not want:
            return
        vectors = self.embedder.embed(grey_crops(want))
        for res, at in spans:
            res.embeddings_grey = vectors[at : at + len(res)]

    def analyze(self, camera_id: str, frame_bgr: np.ndarray) -> FrameAnalysis:
        """People in one (H, W, 3) uint8 BGR frame."""
        return self.analyze_batch([(camera_id, frame_bgr)])[0]

    def analyze_batch(
        self,
        frames: Sequence[tuple[str, np.ndarray]],
        on_ready: Callable[[int, FrameAnalysis], None] | None = None,
    ) -> list[FrameAnalysis]:
        """People in each (camera_id, (H, W, 3) uint8 BGR frame), in input order.

        ``on_ready(i, analysis)`` is called, in order, as soon as frame ``i`` is
        complete (its boxes and vectors), before the batch's later frames are:
        its detections can go out while the rest is still being analysed.
        """
        t0 = time.perf_counter()
        if self.overlap and len(frames) > 1:
            found = self._detect_ahead([f for _, f in frames])
        else:
            boxes = self.detector.detect_batch([f for _, f in frames])
            seconds = self.detector.last_inference_seconds / max(len(boxes), 1)
            found = [_done((fb, seconds)) for fb in boxes]
        results: list[FrameAnalysis] = []
        pending: list[tuple[FrameAnalysis, EmbedPlan, list[np.ndarray]]] = []
        embed_seconds = 0.0
        crops = 0
        try:
            for i, ((camera_id, frame), fut) in enumerate(zip(frames, found, strict=True)):
                pending.append(self._plan(camera_id, frame, fut.result()[0]))
                results.append(pending[-1][0])
                if i + 1 == len(found) or not found[i + 1].done():
                    # the next frame is still being detected: embed what is planned meanwhile
                    crops += sum(len(chosen) for _, _, chosen in pending)
                    embed_seconds += self._fill_vectors(pending)
                    ready = [res for res, _, _ in pending]
                    self._embed_grey(ready)
                    if on_ready is not None:
                        for k, res in enumerate(ready, start=i + 1 - len(ready)):
                            on_ready(k, res)
                    pending = []
        except BaseException:
            # Plans not resolved would leave the cameras' state out of step: start afresh.
            for camera_id, _ in frames:
                self.gate.reset(camera_id)
            for fut in found:  # the detector is idle again before anyone else uses it
                if not fut.cancel():
                    fut.exception()
            raise
        self.last_timing = AnalysisTiming(
            frames=len(frames),
            boxes=sum(len(r) for r in results),
            crops=crops,
            detector_inference=sum(f.result()[1] for f in found),
            embedder_inference=embed_seconds,
            total=time.perf_counter() - t0,
        )
        return results

    def _detect_ahead(self, frames: list[np.ndarray]) -> list[Future[tuple[FrameBoxes, float]]]:
        """Each frame's detection, queued on the worker thread (one at a time, in order)."""
        with self._worker_lock:
            if self._worker is None:
                self._worker = ThreadPoolExecutor(1, thread_name_prefix="detect-ahead")
            worker = self._worker

        def detect(frame: np.ndarray) -> tuple[FrameBoxes, float]:
            fb = self.detector.detect_batch([frame])[0]
            return fb, self.detector.last_inference_seconds

        return [worker.submit(detect, f) for f in frames]

    def _plan(
        self, camera_id: str, frame: np.ndarray, fb: FrameBoxes
    ) -> tuple[FrameAnalysis, EmbedPlan, list[np.ndarray]]:
        """One detected frame's analysis without vectors, its embed plan and the crops to embed."""
        grey = self.greyscale.observe(camera_id, frame)
        crops = crop_views(frame, fb.boxes_xyxy)
        sharp = np.asarray([sharpness(c) for c in crops], dtype=np.float32)
        plan = self.gate.plan(camera_id, fb.boxes_xyxy, fb.scores, sharp)
        chosen = [c for c, e in zip(crops, plan.embed, strict=True) if e]
        if self.masker is not None:
            fg = self.masker.foreground(camera_id, frame)
            chosen = self.masker.mask_crops(fg, frame.shape[:2], fb.boxes_xyxy[plan.embed], chosen)
        res = FrameAnalysis(
            camera_id=camera_id,
            frame_hw=(int(frame.shape[0]), int(frame.shape[1])),
            boxes_xyxy=fb.boxes_xyxy.astype(np.float32, copy=False),
            scores=fb.scores.astype(np.float32, copy=False),
            embeddings=np.zeros((0, self.embedder.dim), np.float32),
            sharpness=sharp,
            crops=crops,
            greyscale=grey,
        )
        return res, plan, chosen

    def _fill_vectors(
        self, planned: list[tuple[FrameAnalysis, EmbedPlan, list[np.ndarray]]]
    ) -> float:
        """Embed the planned frames' crops in one call, in order; every box gets a fresh or a
        carried vector. Returns the embedder's inference seconds."""
        vectors = self.embedder.embed([c for _, _, chosen in planned for c in chosen])
        start = 0
        for res, plan, chosen in planned:
            k = len(chosen)
            res.embeddings = self.gate.resolve(res.camera_id, plan, vectors[start : start + k])
            res.carried = ~plan.embed
            start += k
        return self.embedder.last_inference_seconds

    def close(self) -> None:
        """Stop the detect-ahead worker (idempotent)."""
        with self._worker_lock:
            if self._worker is not None:
                self._worker.shutdown(wait=True)
                self._worker = None


def _done(value: tuple[FrameBoxes, float]) -> Future[tuple[FrameBoxes, float]]:
    fut: Future[tuple[FrameBoxes, float]] = Future()
    fut.set_result(value)
    return fut
