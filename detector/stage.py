"""The detector's :class:`service.kafka.Stage`: frames topic -> detections topic.

Thin around :class:`detector.core.FrameProcessor`: fetches claim-check JPEGs
(``jpeg_ref``) from Redis in one MGET per batch, turns rejections into
dead letters, records metrics, keys every output by camera id.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from detector import metrics as m
from detector.core import FrameProcessor, Rejected
from schemas.messages import Detections, Frame
from schemas.topics import DETECTIONS, FRAMES, Topic
from service.kafka import Output, Record, dead_letter
from service.metrics import camera_label

log = logging.getLogger(__name__)

# Fetches claim-check JPEGs: keys -> bytes (None where the key is gone).
FetchJpegs = Callable[[Sequence[str]], list[bytes | None]]


class DetectorStage:
    """Consumes Frame records, produces Detections keyed by camera id.

    Args:
        processor: the pure core.
        fetch_jpegs: claim-check fetcher (Redis MGET); None = inline JPEGs only
            (a frame with a ``jpeg_ref`` is then dead-lettered).
        input_topic, output_topic: the frames and detections topics (tests use
            private ones).
    """

    name = "detector"
    input = FRAMES
    streams_outputs = True
    overlap_commits = True  # no checkpointed state: the next batch may start before the commit
    emit: Callable[[list[Output]], None] | None = None
    """Set by the stage runner while a batch is handled: a frame's detections are sent as
    soon as they (and those of every record before it) are ready, not at the batch's end."""

    def __init__(
        self,
        processor: FrameProcessor,
        fetch_jpegs: FetchJpegs | None = None,
        *,
        input_topic: Topic = FRAMES,
        output_topic: Topic = DETECTIONS,
    ) -> None:
        self.processor = processor
        self.fetch_jpegs = fetch_jpegs
        self.input = input_topic
        self.output = output_topic

    def _claim_checks(self, frames: list[Frame]) -> dict[str, bytes | None]:
        refs = sorted({f.jpeg_ref for f in frames if f.jpeg_ref and not f.jpeg and not f.eos})
        if not refs:
            return {}
        if self.fetch_jpegs is None:
            return dict.fromkeys(refs)
        t0 = time.perf_counter()
        values = self.fetch_jpegs(refs)
        m.STAGE_SECONDS.labels("claim_check").observe(time.perf_counter() - t0)
        return dict(zip(refs, values, strict=True))

    def handle(self, records: list[Record]) -> list[Output]:
        t0 = time.perf_counter()
        frames: list[Frame] = [r.message for r in records]
        fetched = self._claim_checks(frames)
        outputs: list[Output | None] = [None] * len(records)
        items: list[tuple[Frame, bytes]] = []
        positions: list[int] = []
        for i, (rec, frame) in enumerate(zip(records, frames, strict=True)):
            data = frame.jpeg
            if not frame.eos and not data and frame.jpeg_ref:
                got = fetched.get(frame.jpeg_ref)
                if got is None:
                    why = "claim-check key missing or expired" if self.fetch_jpegs else "no Redis"
                    outputs[i] = self._reject(
                        rec, frame, Rejected("claim_check_missing", f"{why}: {frame.jpeg_ref}")
                    )
                    continue
                data = got
            items.append((frame, data))
            positions.append(i)
        sent = [False] * len(records)
        cursor = 0
        emit = self.emit

        def settle(j: int, res: Detections | Rejected) -> None:
            nonlocal cursor
            i = positions[j]
            rec, frame = records[i], frames[i]
            if isinstance(res, Rejected):
                outputs[i] = self._reject(rec, frame, res)
            else:
                outputs[i] = Output.of(self.output, frame.camera_id, res)
                if not res.eos:
                    self._observe(res)
            if emit is None:
                return
            # In record order, so a camera's detections keep their order on its partition;
            # dead letters go to another topic and leave with the batch.
            ready: list[Output] = []
            while cursor < len(outputs) and (out := outputs[cursor]) is not None:
                if out.topic == self.output.name:
                    ready.append(out)
                    sent[cursor] = True
                cursor += 1
            if ready:
                emit(ready)

        self.processor.process(items, settle)
        self._observe_batch(time.perf_counter() - t0)
        return [o for o, done in zip(outputs, sent, strict=True) if o is not None and not done]

    def _reject(self, rec: Record, frame: Frame, rejected: Rejected) -> Output:
        m.REJECTED.labels(camera_label(frame.camera_id), rejected.kind).inc()
        log.warning(
            "frame_rejected",
            extra={
                "camera": frame.camera_id,
                "seq": frame.seq,
                "kind": rejected.kind,
                "reason": rejected.reason,
            },
        )
        return dead_letter(self.name, rec, f"{rejected.kind}: {rejected.reason}")

    def _observe(self, det: Detections) -> None:
        m.FRAMES.labels(camera_label(det.camera_id)).inc()
        # inc(0) too: a camera that never stood still still has its (zero) series
        m.FRAMES_STILL.labels(camera_label(det.camera_id)).inc(1 if det.still else 0)
        m.BOXES_PER_FRAME.labels(camera_label(det.camera_id)).observe(len(det.scores) // 4)

    def _observe_batch(self, seconds: float) -> None:
        st = self.processor.last_stats
        for chunk in st.chunks:
            m.BATCH_FRAMES.observe(chunk)
        if st.chunks:
            m.INFERENCE_SECONDS.labels("detector").observe(st.detector_inference)
            m.INFERENCE_SECONDS.labels("embedder").observe(st.embedder_inference)
        m.CROPS_EMBEDDED.inc(st.crops_embedded)
        m.STAGE_SECONDS.labels("decode").observe(st.decode)
        m.STAGE_SECONDS.labels("motion_gate").observe(st.gate)
        m.STAGE_SECONDS.labels("analyze").observe(st.analyze)
        m.STAGE_SECONDS.labels("crops").observe(st.crops_encode)
        if st.frames and seconds > 0:
            m.FRAMES_PER_SECOND.set(st.frames / seconds)
