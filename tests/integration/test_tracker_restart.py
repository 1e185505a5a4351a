"""The restart check: PETS09 through the tracker service, SIGKILLed halfway, taken over by a new replica.

Detections of PETS09-S2L1 (YOLOX-nano + OSNet, cached) are produced to the
real Kafka at twice the sequence's rate. Replica A (``crosscam tracker``) is
killed with SIGKILL when half the frames are out; replica B, same consumer
group, takes the partition over, restores the camera's state from the real
Redis and goes on. The tracklets on the topic (deduplicated by tracklet id,
as downstream does) are scored with TrackEval against the same core run
uninterrupted in-process. Prints both IDF1 figures as JSON; the drop must be
at most 0.01 and the restarted IDF1 at least 0.76.

Run: ``pytest -s -m integration tests/integration/test_tracker_restart.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from evaluation.mot import Rows, frame_ts_ns, score_mot, write_mot
from schemas.codec import decode, encode
from schemas.messages import Detections, Tracklet, pack_f32
from schemas.topics import DETECTIONS, TRACKLETS
from service.assets import REPO_ROOT, pets_dir
from service.kafka import ensure_topics
from service.settings import KafkaSettings
from tracker.core import CameraTracker, TrackerParams

pytestmark = pytest.mark.integration

SEQ_FPS = 7.0
# Produce at twice the sequence's own rate: the test takes about a minute and
# the replicas still see a live-like stream (checkpoints interleave with frames).
PACE_FPS = 14.0
CHECKPOINT_INTERVAL_S = 0.5
SESSION_TIMEOUT_MS = 6000  # how soon the dead replica's partition is handed over
MAX_IDF1_DROP = 0.01
"""measured: drop 0.0014 (README: 0.8341 uninterrupted, 0.8327 restarted), 0.0019 (this
branch, 0.8153 / 0.8134, load 12); bound = worst + 0.008. A checkpoint every 0.5 s loses at most a few frames of state; a restore that failed
(every track new) costs far more."""
MIN_IDF1_RESTARTED = 0.76
"""measured: 0.8327 (README), 0.8134 (this branch), floor = worst - 0.05. Catches the tracker itself getting
worse, which a drop measured against its own uninterrupted run cannot."""


def _messages(camera: str) -> list[Detections]:
    from evaluation.precompute import video_detections

    vd = video_detections(pets_dir() / "vtest.avi", score_min=0.1)
    out = []
    for i in range(vd.n_frames):
        out.append(
            Detections(
                camera_id=camera,
                seq=i,
                ts_capture_ns=frame_ts_ns(i, SEQ_FPS),
                width=vd.width,
                height=vd.height,
                boxes_xyxy=pack_f32(vd.boxes_xyxy[i]),
                scores=pack_f32(vd.scores[i]),
                embeddings=pack_f32(vd.embeddings[i]),
                embedding_dim=vd.embedding_dim,
                sharpness=pack_f32(vd.sharpness[i]),
            )
        )
    n = vd.n_frames
    out.append(
        Detections(
            camera_id=camera,
            seq=n,
            ts_capture_ns=frame_ts_ns(n, SEQ_FPS),
            width=vd.width,
            height=vd.height,
            eos=True,
        )
    )
    return out


def _rows(tracklets: list[Tracklet]) -> Rows:
    rows: Rows = []
    for t in tracklets:
        for seq, (x1, y1, x2, y2) in zip(t.frame_seqs, t.boxes_array().tolist(), strict=True):
            rows.append((seq + 1, t.track_id, x1, y1, x2 - x1, y2 - y1))
    return rows


def _uninterrupted(messages: list[Detections]) -> list[Tracklet]:
    tracker = CameraTracker(messages[0].camera_id, TrackerParams())
    out: list[Tracklet] = []
    for msg in messages:
        out.extend(tracker.step_detections(msg).finished)
    return out


def _start_replica(
    kafka: str, redis: str, group: str, key_prefix: str, log_path: Path
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CROSSCAM_TRACKER__CHECKPOINT_INTERVAL_S": str(CHECKPOINT_INTERVAL_S),
        "CROSSCAM_TRACKER__STATE_KEY_PREFIX": key_prefix,
        "CROSSCAM_KAFKA__SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS),
    }
    cmd = [
        sys.executable,
        "-m",
        "crosscam.cli",
        "tracker",
        "--bootstrap-servers",
        kafka,
        "--redis-url",
        redis,
        "--group-id",
        group,
        "--metrics-port",
        "0",
    ]
    return subprocess.Popen(
        cmd, env=env, cwd=REPO_ROOT, stdout=log_path.open("wb"), stderr=subprocess.STDOUT
    )


async def _end_offsets(kafka: str, topic: str) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [
            TopicPartition(topic, p)
            for p in sorted(
                consumer.partitions_for_topic(topic) or await _partitions(consumer, topic)
            )
        ]
        return dict(await consumer.end_offsets(parts))
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()  # noqa: SLF001 - aiokafka has no public metadata refresh
    return consumer.partitions_for_topic(topic) or set()


async def _commit_group_at(kafka: str, group: str, offsets: dict[TopicPartition, int]) -> None:
    """Start the new group at the topic's current end: it reads only this test's messages."""
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit(offsets)
    finally:
        await consumer.stop()


async def _committed(kafka: str, group: str, tp: TopicPartition) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return int(await consumer.committed(tp) or 0)
    finally:
        await consumer.stop()


async def _tracklets(kafka: str, start: dict[TopicPartition, int], camera: str) -> list[Tracklet]:
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(start))
        end = await consumer.end_offsets(list(start))
        for tp, off in start.items():
            consumer.seek(tp, off)
        latest: dict[str, Tracklet] = {}
        while [tp for tp in start if await consumer.position(tp) < end[tp]]:
            for msgs in (await consumer.getmany(timeout_ms=1000)).values():
                for m in msgs:
                    if m.key == camera.encode():
                        t = decode(Tracklet, m.value)
                        latest[t.tracklet_id] = t  # a replayed tracklet overwrites, as downstream
        return list(latest.values())
    finally:
        await consumer.stop()


def _idf1(gt: Path, tracklets: list[Tracklet], n_frames: int, folder: Path, name: str) -> float:
    path = folder / name / "PETS09-S2L1.txt"
    write_mot(path, _rows(tracklets))
    return score_mot(gt, {name: path}, n_frames, "PETS09-S2L1")[name]["idf1"]


async def test_sigkill_halfway_keeps_idf1(kafka_bootstrap: str, redis_url: str) -> None:
    camera = f"pets-restart-{uuid.uuid4().hex[:8]}"
    group = f"crosscam-tracker-restart-{uuid.uuid4().hex[:8]}"
    key_prefix = f"crosscam:test:{uuid.uuid4().hex[:8]}:tracker:state:"
    messages = _messages(camera)
    n_frames = len(messages) - 1
    half = n_frames // 2

    await ensure_topics(
        KafkaSettings(bootstrap_servers=kafka_bootstrap), [DETECTIONS.name, TRACKLETS.name]
    )
    det_end = await _end_offsets(kafka_bootstrap, DETECTIONS.name)
    await _commit_group_at(kafka_bootstrap, group, det_end)
    tracklets_start = await _end_offsets(kafka_bootstrap, TRACKLETS.name)

    logs = Path(tempfile.mkdtemp(prefix="crosscam-restart-"))
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, acks="all", max_request_size=16 * 1024 * 1024
    )
    await producer.start()
    a = _start_replica(kafka_bootstrap, redis_url, group, key_prefix, logs / "a.log")
    b: subprocess.Popen[bytes] | None = None
    try:
        t0 = time.monotonic()
        tp = None
        for i, msg in enumerate(messages):
            if i == half:
                await asyncio.sleep(1.0 / PACE_FPS)
                a.send_signal(signal.SIGKILL)
                a.wait(timeout=30)
                b = _start_replica(kafka_bootstrap, redis_url, group, key_prefix, logs / "b.log")
            meta = await producer.send_and_wait(DETECTIONS.name, encode(msg), key=camera.encode())
            tp = TopicPartition(meta.topic, meta.partition)
            await asyncio.sleep(max(0.0, t0 + (i + 1) / PACE_FPS - time.monotonic()))
        assert tp is not None and b is not None
        end = (await _end_offsets(kafka_bootstrap, DETECTIONS.name))[tp]
        deadline = time.monotonic() + 120
        while await _committed(kafka_bootstrap, group, tp) < end:
            assert b.poll() is None, (logs / "b.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "replica B did not finish the stream"
            await asyncio.sleep(0.5)
        b.send_signal(signal.SIGTERM)
        assert b.wait(timeout=60) == 0, (logs / "b.log").read_text()[-3000:]
    finally:
        await producer.stop()
        for p in (a, b):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()

    restarted = await _tracklets(kafka_bootstrap, tracklets_start, camera)
    reference = _uninterrupted(messages)
    gt = pets_dir() / "gt.txt"
    idf1_ref = _idf1(gt, reference, n_frames, logs, "uninterrupted")
    idf1_restart = _idf1(gt, restarted, n_frames, logs, "restarted")
    spanning = [
        t.track_id for t in restarted if t.frame_seqs[0] < half - 5 and t.frame_seqs[-1] > half + 5
    ]
    report = {
        "idf1_uninterrupted": idf1_ref,
        "idf1_restarted": idf1_restart,
        "idf1_drop": round(idf1_ref - idf1_restart, 4),
        "tracklets_uninterrupted": len(reference),
        "tracklets_restarted": len(restarted),
        "tracks_spanning_the_kill": len(spanning),
        "killed_at_frame": half,
        "checkpoint_interval_s": CHECKPOINT_INTERVAL_S,
        "pace_fps": PACE_FPS,
    }
    print(json.dumps(report))
    assert "restored" in (logs / "b.log").read_text()  # B continued A's state, not a fresh one
    assert spanning, "no track kept its id across the kill"
    assert idf1_ref - idf1_restart <= MAX_IDF1_DROP, report
    assert idf1_restart >= MIN_IDF1_RESTARTED, report
