"""Frames in, Detections out: the detector stage's pure core (no Kafka, Redis or Prometheus).

:class:`FrameProcessor` decodes each frame's JPEG, runs the analyzer over the
frames in chunks of ``max_batch_frames`` (crops of a whole chunk embedded in
one call), and builds one :class:`schemas.Detections` per frame, in input
order. End-of-stream frames pass through as ``eos`` Detections and reset the
camera's background model. A frame whose JPEG cannot be decoded comes back as
:class:`Rejected` with the reason (the service dead-letters it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import cv2
import msgspec
import numpy as np

from detector.analyzer import Analyzer, FrameAnalysis
from detector.config import CropConfig
from detector.motion import MotionGate
from schemas.messages import Detections, Frame, pack_f32

JPEG_SOI = b"\xff\xd8"  # start-of-image marker
JPEG_EOI = b"\xff\xd9"  # end-of-image marker: a JPEG cut short lacks it


@dataclass(frozen=True)
class Rejected:
    """A frame that cannot be analysed, and why (``kind`` is a bounded metric label)."""

    kind: str
    reason: str


@dataclass
class BatchStats:
    """What the last :meth:`FrameProcessor.process` call did and where its time went (seconds)."""

    frames: int = 0  # analysed
    still: int = 0  # not analysed: nothing moved (motion gating), detections repeated
    gate: float = 0.0
    eos: int = 0
    rejected: int = 0
    chunks: list[int] = field(default_factory=list)
    boxes: int = 0
    crops_embedded: int = 0  # boxes the appearance model ran on (the rest carried a vector)
    decode: float = 0.0
    analyze: float = 0.0
    detector_inference: float = 0.0
    embedder_inference: float = 0.0
    crops_encode: float = 0.0
    total: float = 0.0


MAX_FRAME_PIXELS = 8192 * 8192
"""Largest frame decoded (64 Mpx, 192 MB as BGR): a header claiming more is refused before
decoding, so one hostile message cannot exhaust memory."""
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the JPEG's start-of-frame header, without decoding; None if absent."""
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _SOF_MARKERS:
            return int.from_bytes(data[i + 7 : i + 9]), int.from_bytes(data[i + 5 : i + 7])
        i += 2 + int.from_bytes(data[i + 2 : i + 4])
    return None


def decode_jpeg(data: bytes, max_pixels: int = MAX_FRAME_PIXELS) -> np.ndarray | Rejected:
    """(H, W, 3) uint8 BGR image, or why the bytes are not a whole JPEG (or too big to decode)."""
    rejected = check_jpeg(data, max_pixels)
    return rejected if rejected is not None else _decode_checked(data)


def _decode_checked(data: bytes) -> np.ndarray | Rejected:
    """Decode bytes that passed :func:`check_jpeg`."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        return Rejected("corrupt_jpeg", "JPEG could not be decoded")
    return image


def check_jpeg(data: bytes, max_pixels: int = MAX_FRAME_PIXELS) -> Rejected | None:
    """Why the bytes are not a whole JPEG of an acceptable size, from its markers and header
    alone (no decoding); None when they pass."""
    if not data:
        return Rejected("empty_image", "frame has no JPEG bytes")
    if not data.startswith(JPEG_SOI):
        return Rejected("corrupt_jpeg", "not a JPEG (no start-of-image marker)")
    if JPEG_EOI not in data[-64:]:
        return Rejected("corrupt_jpeg", "truncated JPEG (no end-of-image marker)")
    size = jpeg_size(data)
    if size is None:
        return Rejected("corrupt_jpeg", "JPEG has no frame header")
    if size[0] * size[1] > max_pixels:
        return Rejected("too_large", f"JPEG of {size[0]}x{size[1]} is over {max_pixels} pixels")
    return None


def encode_crop(crop_bgr: np.ndarray, config: CropConfig) -> bytes:
    """A small JPEG of ``crop_bgr`` (h, w, 3): longest side at most ``config.jpeg_max_side``."""
    h, w = crop_bgr.shape[:2]
    longest = max(h, w)
    if longest > config.jpeg_max_side:
        scale = config.jpeg_max_side / longest
        crop_bgr = cv2.resize(
            crop_bgr,
            (max(1, round(w * scale)), max(1, round(h * scale))),
            interpolation=cv2.INTER_AREA,
        )
    ok, buf = cv2.imencode(".jpg", crop_bgr, [cv2.IMWRITE_JPEG_QUALITY, config.jpeg_quality])
    if not ok:  # pragma: no cover - OpenCV fails only on empty images, which crops never are
        raise RuntimeError("JPEG encoding of a crop failed")
    return buf.tobytes()


def to_detections(
    frame: Frame, res: FrameAnalysis, crops_jpeg: list[bytes], now_ns: int
) -> Detections:
    """The Detections message of one analysed frame (boxes in the decoded image's pixels)."""
    h, w = res.frame_hw
    return Detections(
        camera_id=frame.camera_id,
        seq=frame.seq,
        ts_capture_ns=frame.ts_capture_ns,
        width=w,
        height=h,
        boxes_xyxy=pack_f32(res.boxes_xyxy.reshape(-1, 4)),
        scores=pack_f32(res.scores),
        embeddings=pack_f32(res.embeddings) if res.embeddings.shape[1] else b"",
        embedding_dim=int(res.embeddings.shape[1]),
        sharpness=pack_f32(res.sharpness),
        crops_jpeg=crops_jpeg,
        ts_detected_ns=now_ns,
        embeddings_grey=pack_f32(res.embeddings_grey) if res.embeddings_grey.size else b"",
        greyscale=res.greyscale,
        carried=res.carried.astype(np.uint8).tobytes() if res.carried.any() else b"",
    )


def repeat_still(last: Detections, frame: Frame, now_ns: int) -> Detections:
    """A still frame's Detections: ``last`` (the camera's last analysed frame's) repeated,
    every vector carried, no crop images."""
    n = len(last.scores) // 4
    return msgspec.structs.replace(
        last,
        seq=frame.seq,
        ts_capture_ns=frame.ts_capture_ns,
        crops_jpeg=[],
        ts_detected_ns=now_ns,
        carried=b"\x01" * n if n and last.embedding_dim else b"",
        still=True,
    )


class FrameProcessor:
    """Turns frames (with their JPEG bytes) into Detections, batched.

    Args:
        analyzer: detector + embedder.
        crops: size and quality of the per-box crop JPEGs in the message.
        max_batch_frames: frames per analyzer call; raising it embeds more crops
            per ONNX call (cheaper per crop on a GPU) but holds more decoded
            frames in memory at once (768x576 BGR = 1.3 MB each).
        now_ns: wall clock for ``ts_detected_ns`` (tests pin it).
        motion_gate: skips frames in which nothing moved since the camera's last
            analysed frame (:mod:`detector.motion`); None analyses every frame.
    """

    def __init__(
        self,
        analyzer: Analyzer,
        crops: CropConfig | None = None,
        max_batch_frames: int = 8,
        now_ns: Callable[[], int] = time.time_ns,
        motion_gate: MotionGate | None = None,
    ) -> None:
        if max_batch_frames < 1:
            raise ValueError("max_batch_frames must be at least 1")
        self.analyzer = analyzer
        self.crops = crops or CropConfig()
        self.max_batch_frames = max_batch_frames
        self.now_ns = now_ns
        self.motion_gate = motion_gate
        self.last_stats = BatchStats()
        self._last: dict[str, Detections] = {}  # each camera's last analysed frame's

    def _remember(self, det: Detections) -> None:
        if self.motion_gate is not None:
            self._last[det.camera_id] = det

    def _forget(self, camera_id: str) -> None:
        self._last.pop(camera_id, None)
        if self.motion_gate is not None:
            self.motion_gate.reset(camera_id)

    def process(
        self,
        items: Sequence[tuple[Frame, bytes]],
        on_result: Callable[[int, Detections | Rejected], None] | None = None,
    ) -> list[Detections | Rejected]:
        """One result per (frame, JPEG bytes), in order. ``eos`` frames need no bytes.

        ``on_result(i, result)`` is called as soon as item ``i``'s result is
        known (analysed frames as the analyzer finishes each one; not always in
        item order: a broken frame is known before the frames queued ahead of it).
        """
        t0 = time.perf_counter()
        stats = BatchStats()
        results: list[Detections | Rejected | None] = [None] * len(items)
        pending: list[tuple[int, Frame, np.ndarray]] = []

        def settle(index: int, result: Detections | Rejected) -> None:
            results[index] = result
            if on_result is not None:
                on_result(index, result)

        def flush() -> None:
            if not pending:
                return
            ta = time.perf_counter()
            encode_s = 0.0

            def finished(k: int, res: FrameAnalysis) -> None:
                nonlocal encode_s
                te = time.perf_counter()
                index, frame, _ = pending[k]
                jpegs = [encode_crop(c, self.crops) for c in res.crops]
                stats.boxes += len(res)
                encode_s += time.perf_counter() - te
                det = to_detections(frame, res, jpegs, self.now_ns())
                self._remember(det)
                settle(index, det)

            self.analyzer.analyze_batch([(f.camera_id, img) for _, f, img in pending], finished)
            timing = self.analyzer.last_timing
            stats.analyze += time.perf_counter() - ta - encode_s
            stats.detector_inference += timing.detector_inference
            stats.embedder_inference += timing.embedder_inference
            stats.crops_embedded += timing.crops
            stats.chunks.append(len(pending))
            stats.crops_encode += encode_s
            pending.clear()

        for index, (frame, data) in enumerate(items):
            if frame.eos:
                # Frames before it must be analysed first: the camera's order matters
                # to its background model, which the end of stream resets.
                flush()
                self.analyzer.reset_camera(frame.camera_id)
                self._forget(frame.camera_id)
                settle(
                    index,
                    Detections(
                        camera_id=frame.camera_id,
                        seq=frame.seq,
                        ts_capture_ns=frame.ts_capture_ns,
                        width=frame.width,
                        height=frame.height,
                        eos=True,
                        ts_detected_ns=self.now_ns(),
                    ),
                )
                stats.eos += 1
                continue
            # the headers are checked once: a broken frame is rejected, never gated
            rejected = check_jpeg(data)
            if self.motion_gate is not None and rejected is None:
                tg = time.perf_counter()
                decision = self.motion_gate.decide(frame.camera_id, data, frame.ts_capture_ns)
                stats.gate += time.perf_counter() - tg
                if not decision.analyse:
                    if any(f.camera_id == frame.camera_id for _, f, _ in pending):
                        flush()  # the frame it repeats is still being analysed
                    last = self._last.get(frame.camera_id)
                    if last is not None:
                        settle(index, repeat_still(last, frame, self.now_ns()))
                        stats.still += 1
                        continue
            td = time.perf_counter()
            image = rejected if rejected is not None else _decode_checked(data)
            stats.decode += time.perf_counter() - td
            if isinstance(image, Rejected):
                settle(index, image)
                stats.rejected += 1
                continue
            pending.append((index, frame, image))
            stats.frames += 1
            if len(pending) >= self.max_batch_frames:
                flush()
        flush()
        stats.total = time.perf_counter() - t0
        self.last_stats = stats
        return [r for r in results if r is not None]
