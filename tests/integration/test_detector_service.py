"""The detector stage on the real broker and Redis: frames in, detections out, vectors intact.

Runs the real consume loop (service.kafka.run_stage) with the real models on
PETS09 JPEGs, inline and claim-check; a corrupt JPEG goes to the dead-letter
topic; an eos frame passes through.
"""

from __future__ import annotations

import asyncio
import uuid

import cv2
import numpy as np
import pytest
import redis

from detector.analyzer import Analyzer, AnalyzerConfig
from detector.core import FrameProcessor
from detector.service import redis_fetcher
from detector.stage import DetectorStage
from evaluation.video import video_frames
from schemas.codec import decode, encode
from schemas.messages import DeadLetter, Detections, Frame
from schemas.topics import DEADLETTER, Topic
from service.assets import models_dir, pets_dir
from service.kafka import run_stage
from service.settings import KafkaSettings
from tests.integration.kafka_helpers import consume_all, create_topics, produce, unique

pytestmark = pytest.mark.integration


def _jpegs(n: int) -> list[tuple[np.ndarray, bytes]]:
    out = []
    for _, frame in video_frames(pets_dir() / "vtest.avi", n):
        ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        out.append((frame, buf.tobytes()))
    return out


async def test_frames_to_detections_through_kafka(kafka_bootstrap: str, redis_url: str) -> None:
    t_in, t_out = unique("it-det-frames"), unique("it-det-detections")
    await create_topics(kafka_bootstrap, t_in, t_out, partitions=1)
    camera = f"it-det-{uuid.uuid4().hex[:8]}"
    shots = _jpegs(3)
    ref = f"it-detector:{uuid.uuid4().hex}"
    rc = redis.Redis.from_url(redis_url)
    rc.set(ref, shots[2][1], ex=300)
    frames = [
        Frame(camera_id=camera, seq=0, ts_capture_ns=10, width=768, height=576, jpeg=shots[0][1]),
        Frame(camera_id=camera, seq=1, ts_capture_ns=20, width=768, height=576, jpeg=shots[1][1]),
        Frame(
            camera_id=camera,
            seq=2,
            ts_capture_ns=30,
            width=768,
            height=576,
            jpeg=b"\xff\xd8 not a jpeg",
        ),
        Frame(camera_id=camera, seq=3, ts_capture_ns=40, width=768, height=576, jpeg_ref=ref),
        Frame(camera_id=camera, seq=4, ts_capture_ns=50, eos=True),
    ]
    await produce(kafka_bootstrap, t_in, [(camera.encode(), encode(f)) for f in frames])

    analyzer = Analyzer.from_config(AnalyzerConfig(models_dir=models_dir()))
    fetch, client = redis_fetcher(redis_url, retries=1)
    stage = DetectorStage(
        FrameProcessor(analyzer, max_batch_frames=2),
        fetch,
        input_topic=Topic(t_in, Frame, "msgpack", "camera_id"),
        output_topic=Topic(t_out, Detections, "msgpack", "camera_id"),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_stage(
            stage,
            KafkaSettings(bootstrap_servers=kafka_bootstrap),
            unique("it-det-group"),
            stop,
            partitions=1,
        )
    )
    try:
        out = await consume_all(kafka_bootstrap, t_out, lambda got: len(got) >= 4, timeout_s=120)
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
        client.close()
        rc.delete(ref)
        rc.close()
    dets = [decode(Detections, r.value) for r in out]
    assert [d.seq for d in dets] == [0, 1, 3, 4]
    assert all(r.key == camera.encode() for r in out)
    assert dets[-1].eos and dets[-1].ts_capture_ns == 50
    reference = Analyzer.from_config(AnalyzerConfig(models_dir=models_dir()))
    for det, (image, jpeg) in zip(dets[:3], [shots[0], shots[1], shots[2]], strict=True):
        decoded = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        want = reference.analyze(camera, decoded)
        assert len(want) >= 3 and det.embedding_dim == 512
        np.testing.assert_allclose(det.boxes_array(), want.boxes_xyxy, atol=1e-3)
        np.testing.assert_allclose(det.scores_array(), want.scores, atol=1e-5)
        np.testing.assert_allclose(det.embeddings_array(), want.embeddings, atol=1e-4)
        np.testing.assert_allclose(det.sharpness_array(), want.sharpness, rtol=1e-5)
        assert len(det.crops_jpeg) == len(want) and det.ts_detected_ns > 0
        assert (det.width, det.height) == (image.shape[1], image.shape[0])

    dead = await consume_all(
        kafka_bootstrap,
        DEADLETTER.name,
        lambda got: any(decode(DeadLetter, r.value).topic == t_in for r in got),
        timeout_s=60,
    )
    mine = [d for d in (decode(DeadLetter, r.value) for r in dead) if d.topic == t_in]
    assert len(mine) == 1 and mine[0].offset == 2 and "corrupt_jpeg" in mine[0].reason
    assert decode(Frame, mine[0].value).seq == 2, "original bytes kept for replay"
