"""``crosscam anonymize-live``: a pseudonymised live frame topic, opt-in per camera.

A consumer group (``crosscam-anonymize``) on ``crosscam.frames.v1``. Frames of
the cameras named with ``--cameras`` go through one
:class:`crosscam.anonymize.Anonymizer` per camera (detector + tracker, every
person obscured, the tracker covering short detection gaps) and come out on
``crosscam.frames.pseudonymised.v1`` as a :class:`schemas.messages.Frame` of
the same camera, ``seq`` and ``ts_capture_ns``, with the obscured image as an
inline JPEG. Frames of other cameras are skipped: the output is opt-in.

Claim-check frames (``jpeg_ref``) are read from Redis; a frame whose image is
gone or corrupt is dead-lettered. An end-of-stream frame is passed on and
resets that camera's tracker, as does a capture time that goes backwards (a
restarted camera). With ``--ids`` a pseudonym (a salted hash of the track id,
a fresh salt per camera and run) is drawn above each person.

    crosscam anonymize-live --cameras cam1,cam2 [--ids] [--blur]
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable

import cv2
import numpy as np
from pydantic import Field

from crosscam.anonymize import AnonymizeParams, Anonymizer, analyzer_function, salted_labeler
from detector.core import Rejected, decode_jpeg
from detector.stage import FetchJpegs
from schemas.messages import Frame
from schemas.topics import FRAMES, PSEUDONYMISED_FRAMES
from service.delivery import apply_each
from service.kafka import Output, Record, dead_letter
from service.settings import KafkaSettings, MetricsSettings, RedisSettings, StrictModel

log = logging.getLogger(__name__)

JPEG_QUALITY = 85
Analyze = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


class LiveSettings(StrictModel):
    """The sections ``anonymize-live`` reads: kafka, redis, metrics."""

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)


class AnonymizeLiveStage:
    """Frames of the configured cameras in → obscured frames out (a :class:`service.kafka.Stage`).

    Args:
        cameras: the camera ids that get a pseudonymised output (others are skipped).
        analyze: frame → (boxes, scores, embeddings), shared by every camera.
        params: how to obscure.
        fetch_jpegs: claim-check fetcher (Redis MGET); None = inline JPEGs only.
    """

    name = "anonymize"
    input = FRAMES

    def __init__(
        self,
        cameras: set[str],
        analyze: Analyze,
        params: AnonymizeParams | None = None,
        fetch_jpegs: FetchJpegs | None = None,
    ) -> None:
        self.cameras = cameras
        self.analyze = analyze
        self.params = params or AnonymizeParams()
        self.fetch_jpegs = fetch_jpegs
        self.anonymizers: dict[str, Anonymizer] = {}
        self._last_ts: dict[str, int] = {}

    def handle(self, records: list[Record]) -> list[Output]:
        """One output (or dead letter) per frame of a configured camera, in order."""
        return apply_each(records, self._one)

    def anonymizer(self, frame: Frame) -> Anonymizer:
        """The camera's anonymizer; a fresh one at a capture time that went backwards."""
        last = self._last_ts.get(frame.camera_id)
        went_back = last is not None and frame.ts_capture_ns < last
        if frame.camera_id not in self.anonymizers or went_back:
            self.anonymizers[frame.camera_id] = Anonymizer(
                self.analyze, self.params, salted_labeler()
            )
        self._last_ts[frame.camera_id] = frame.ts_capture_ns
        return self.anonymizers[frame.camera_id]

    def _jpeg(self, frame: Frame) -> bytes | None:
        if frame.jpeg or not frame.jpeg_ref or self.fetch_jpegs is None:
            return frame.jpeg
        return self.fetch_jpegs([frame.jpeg_ref])[0]

    def _one(self, rec: Record) -> list[Output]:
        frame: Frame = rec.message
        if frame.camera_id not in self.cameras:
            return []
        if frame.eos:
            self.anonymizers.pop(frame.camera_id, None)
            self._last_ts.pop(frame.camera_id, None)
            return [Output.of(PSEUDONYMISED_FRAMES, frame.camera_id, frame)]
        data = self._jpeg(frame)
        image = decode_jpeg(data or b"")
        if isinstance(image, Rejected):
            gone = frame.jpeg_ref and not data
            why = "claim-check key missing or expired" if gone else image.reason
            return [dead_letter(self.name, rec, f"{image.kind}: {why}")]
        res = self.anonymizer(frame).process(frame.seq, image, frame.ts_capture_ns)
        ok, buf = cv2.imencode(".jpg", res.frame, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            return [dead_letter(self.name, rec, "could not encode the obscured frame")]
        out = Frame(camera_id=frame.camera_id, seq=frame.seq, ts_capture_ns=frame.ts_capture_ns,
                    width=image.shape[1], height=image.shape[0], jpeg=buf.tobytes(),
                    source=frame.source)  # fmt: skip
        return [Output.of(PSEUDONYMISED_FRAMES, frame.camera_id, out)]


def configure(parser: argparse.ArgumentParser) -> None:
    from service.cli import add_stage_arguments

    add_stage_arguments(parser, "crosscam-anonymize", "kafka, redis, metrics",
                        "redis:// URL for claim-check frames")  # fmt: skip
    parser.add_argument("--cameras", required=True,
                        help="comma-separated camera ids that get a pseudonymised output")  # fmt: skip
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--pixelate", dest="method", action="store_const", const="pixelate",
                     help="pixelate people (default)")  # fmt: skip
    how.add_argument("--blur", dest="method", action="store_const", const="blur",
                     help="blur people")  # fmt: skip
    parser.set_defaults(method="pixelate")
    parser.add_argument("--ids", action="store_true",
                        help="draw a pseudonym per person (also runs the appearance model)")  # fmt: skip


def main(args: argparse.Namespace) -> int:
    from detector.checksum import ModelFileError
    from detector.service import redis_fetcher
    from service.cli import load_stage_settings, serve_stage
    from service.metrics import start_metrics_server

    settings = load_stage_settings(LiveSettings, args)
    if settings is None:
        return 2
    cameras = {c.strip() for c in args.cameras.split(",") if c.strip()}
    if not cameras:
        log.error("bad_arguments", extra={"error": "--cameras names no camera"})
        return 2
    params = AnonymizeParams(method=args.method, draw_ids=args.ids)
    try:
        analyze = analyzer_function(params.min_score, with_embedder=args.ids)
    except (ModelFileError, ValueError) as exc:
        log.error("model_error", extra={"error": str(exc)})
        return 2
    fetch, client = redis_fetcher(settings.redis.url, 3)
    stage = AnonymizeLiveStage(cameras, analyze, params, fetch)
    start_metrics_server(settings.metrics, name="anonymize")
    log.info("anonymize_live_ready", extra={"cameras": sorted(cameras), "ids": args.ids})
    try:
        serve_stage(stage, settings.kafka, args.group_id)
    finally:
        client.close()
    return 0
