"""``crosscam replay --to kafka``: every frame of vtest.avi, numbered, timed, then eos."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import redis

from tests.integration.test_ingest_live import FrameTail, unique, until

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CROSSCAM = str(Path(sys.executable).with_name("crosscam"))
PETS_FRAMES = 795
PETS_FILE_FPS = 10.0
REPLAY_DEADLINE_S = 60.0
START_NS = 1_700_000_000_000_000_000


async def test_replay_to_kafka_publishes_every_frame_then_eos(
    pets_video: Path, kafka_bootstrap: str, redis_url: str
) -> None:
    camera, topic = unique("replay"), f"crosscam.test.{unique('frames')}.v1"
    tail = await FrameTail(kafka_bootstrap, topic).start()
    try:
        proc = subprocess.run(
            [
                CROSSCAM,
                "replay",
                str(pets_video),
                "--camera-id",
                camera,
                "--to",
                "kafka",
                "--speed",
                "max",
                "--topic",
                topic,
                "--start-ns",
                str(START_NS),
                "--bootstrap-servers",
                kafka_bootstrap,
                "--redis-url",
                redis_url,
            ],
            capture_output=True,
            cwd=REPO,
            timeout=REPLAY_DEADLINE_S,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr.decode()[-3000:]
        summary = json.loads(proc.stdout.decode().strip().splitlines()[-1])
        assert summary["frames_published"] == PETS_FRAMES and summary["eos"] is True
        assert summary["last_seq"] == PETS_FRAMES
        await until(lambda: len(tail.frames) >= PETS_FRAMES + 1, 20, "every frame consumed")
        frames = tail.frames
        assert len(frames) == PETS_FRAMES + 1
        assert [f.seq for f in frames] == list(range(PETS_FRAMES + 1))
        step_ns = round(1e9 / PETS_FILE_FPS)
        assert [f.ts_capture_ns for f in frames] == [
            START_NS + i * step_ns for i in range(PETS_FRAMES + 1)
        ]
        assert not any(f.eos for f in frames[:-1])
        eos = frames[-1]
        assert eos.eos and eos.jpeg == b"" and eos.camera_id == camera
        assert all((f.width, f.height) == (640, 480) and f.jpeg for f in frames[:-1])
    finally:
        await tail.stop()


async def test_replay_claim_check_puts_jpegs_in_redis_with_a_ttl(
    pets_video: Path, kafka_bootstrap: str, redis_url: str
) -> None:
    camera, topic = unique("claim"), f"crosscam.test.{unique('frames')}.v1"
    tail = await FrameTail(kafka_bootstrap, topic).start()
    client = redis.Redis.from_url(redis_url)
    try:
        proc = subprocess.run(
            [
                CROSSCAM,
                "replay",
                str(pets_video),
                "--camera-id",
                camera,
                "--to",
                "kafka",
                "--analysis-fps",
                "1",
                "--claim-check",
                "--topic",
                topic,
                "--bootstrap-servers",
                kafka_bootstrap,
                "--redis-url",
                redis_url,
            ],
            capture_output=True,
            cwd=REPO,
            timeout=REPLAY_DEADLINE_S,
            check=False,
            env={**os.environ, "CROSSCAM_INGEST__CLAIM_CHECK_TTL_S": "60"},
        )
        assert proc.returncode == 0, proc.stderr.decode()[-3000:]
        summary = json.loads(proc.stdout.decode().strip().splitlines()[-1])
        n = summary["frames_published"]
        assert n == 80  # 795 frames at 10 fps sampled to 1 fps by file time
        await until(lambda: len(tail.frames) >= n + 1, 20, "every frame consumed")
        frames = tail.frames[:-1]
        assert all(
            f.jpeg == b"" and f.jpeg_ref == f"crosscam:frame:{camera}:{f.seq}" for f in frames
        )
        jpeg = client.get(frames[5].jpeg_ref)
        assert jpeg is not None and 0 < client.ttl(frames[5].jpeg_ref) <= 60
        img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert img.shape == (frames[5].height, frames[5].width, 3)
    finally:
        client.delete(*[f.jpeg_ref for f in tail.frames if f.jpeg_ref] or ["-"])
        client.close()
        await tail.stop()
