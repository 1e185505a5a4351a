"""``crosscam ingest`` as a real process against a real RTSP server, Kafka and Redis.

Each test publishes vtest.avi on an RTSP server under a unique camera id,
runs ingest into a unique topic, and reads the frames back with aiokafka and
the camera status from Redis. Waits are deadlines on conditions, never sleeps.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import redis
from aiokafka import AIOKafkaConsumer

from devstack.stack import RtspServer
from schemas.codec import decode
from schemas.keys import camera_status_key
from schemas.messages import Frame
from service.kafka import ensure_topics
from service.settings import KafkaSettings

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CROSSCAM = str(Path(sys.executable).with_name("crosscam"))
READ_TIMEOUT_S = 2.0
# Worst case from a hang to the status saying so: read timeout + watchdog tick +
# status poll + Redis round trip, with room for a loaded 2-core machine.
NOTICE_MARGIN_S = 2.5
FIRST_FRAMES_DEADLINE_S = 30.0
EXIT_DEADLINE_S = 20.0


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class FrameTail:
    """Every Frame on ``topic`` from the beginning, collected in the background."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.frames: list[Frame] = []
        self._task: asyncio.Task[None] | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> FrameTail:
        await ensure_topics(KafkaSettings(bootstrap_servers=self.bootstrap), [self.topic])
        self._consumer = AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=self.bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
            fetch_max_bytes=64 * 1024 * 1024,
            max_partition_fetch_bytes=16 * 1024 * 1024,
        )
        await self._consumer.start()
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=200)
            for msgs in batches.values():
                self.frames.extend(decode(Frame, m.value) for m in msgs)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._consumer is not None:
            await self._consumer.stop()


async def until(cond: Callable[[], bool], timeout_s: float, what: str, proc: Any = None) -> float:
    """Wait for ``cond``; return the seconds it took. Fails naming ``what``."""
    start = time.monotonic()
    while not cond():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"ingest died (rc {proc.returncode}) while waiting for {what}")
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)
    return time.monotonic() - start


class Ingest:
    """A ``crosscam ingest`` process; stderr goes to a log file for post-mortems."""

    def __init__(
        self, tmp: Path, camera: str, url: str, topic: str, bootstrap: str, redis_url: str
    ) -> None:
        self.log = tmp / f"ingest-{camera}.log"
        env = dict(os.environ, CROSSCAM_LOG_LEVEL="INFO")
        self.proc = subprocess.Popen(
            [
                CROSSCAM,
                "ingest",
                "--camera-id",
                camera,
                "--source",
                url,
                "--topic",
                topic,
                "--bootstrap-servers",
                bootstrap,
                "--redis-url",
                redis_url,
                "--read-timeout-s",
                str(READ_TIMEOUT_S),
                "--open-timeout-s",
                "5",
            ],
            stdout=subprocess.PIPE,
            stderr=open(self.log, "wb"),  # noqa: SIM115 - closed with the process
            cwd=REPO,
            env=env,
        )

    def poll(self) -> int | None:
        return self.proc.poll()

    def terminate(self) -> tuple[int, dict[str, Any]]:
        """SIGTERM; the exit code and the JSON summary it printed."""
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=EXIT_DEADLINE_S)
        lines = [ln for ln in out.decode().splitlines() if ln.startswith("{")]
        return self.proc.returncode, json.loads(lines[-1]) if lines else {}

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


def status(client: redis.Redis, camera: str) -> dict[str, str]:
    return client.hgetall(camera_status_key(camera))  # type: ignore[return-value]


def assert_gap_free_and_rising(frames: list[Frame]) -> None:
    seqs = [f.seq for f in frames]
    assert seqs == list(range(len(frames))), f"sequence has gaps or repeats: {seqs[:50]}"
    ts = [f.ts_capture_ns for f in frames]
    assert all(b > a for a, b in zip(ts, ts[1:], strict=False)), "capture times do not rise"


async def run_with(
    tmp_path: Path,
    server: RtspServer,
    pets_video: Path,
    kafka_bootstrap: str,
    redis_url: str,
    body: Callable[[Ingest, FrameTail, str], Awaitable[None]],
) -> None:
    camera, topic = unique("itest"), f"crosscam.test.{unique('frames')}.v1"
    url = server.publish(camera, pets_video)
    tail = await FrameTail(kafka_bootstrap, topic).start()
    ingest = Ingest(tmp_path, camera, url, topic, kafka_bootstrap, redis_url)
    try:
        await body(ingest, tail, camera)
    except BaseException:
        print(ingest.log_tail())
        raise
    finally:
        ingest.kill()
        await tail.stop()


async def test_ingest_reads_rtsp_and_publishes_gap_free_rising_frames(
    tmp_path: Path,
    rtsp_server: RtspServer,
    pets_video: Path,
    kafka_bootstrap: str,
    redis_url: str,
    redis_client: redis.Redis,
) -> None:
    async def body(ingest: Ingest, tail: FrameTail, camera: str) -> None:
        await until(lambda: len(tail.frames) >= 30, FIRST_FRAMES_DEADLINE_S, "30 frames", ingest)
        st = status(redis_client, camera)
        assert st["state"] == "online" and int(st["frames_published"]) > 0
        assert 0 < int(redis_client.ttl(camera_status_key(camera))) <= 30
        rc, summary = ingest.terminate()
        assert rc == 0, ingest.log_tail()
        assert status(redis_client, camera)["state"] == "offline"
        await until(lambda: len(tail.frames) >= summary["frames_published"], 10, "all frames")
        frames = tail.frames
        assert len(frames) == summary["frames_published"]
        assert_gap_free_and_rising(frames)
        assert not any(f.eos for f in frames)  # a live camera never ends the stream
        f = frames[-1]
        assert (f.camera_id, f.width, f.height, f.jpeg_ref) == (camera, 640, 480, "")
        img = cv2.imdecode(np.frombuffer(f.jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert img.shape == (480, 640, 3) and float(img.std()) > 10  # a real picture
        # sampled to the 7 fps analysis rate (the server plays at 10 fps). Measured
        # over the whole run: arrival bursts (FFmpeg's catch-up after its probe)
        # bend short windows, and inflate the count of captured frames.
        span_s = (frames[-1].ts_capture_ns - frames[0].ts_capture_ns) / 1e9
        rate = (len(frames) - 1) / span_s
        assert 4.0 <= rate <= 8.5, (rate, summary)

    await run_with(tmp_path, rtsp_server, pets_video, kafka_bootstrap, redis_url, body)


async def test_server_killed_and_restarted_ingest_reconnects(
    tmp_path: Path,
    private_rtsp_server: RtspServer,
    pets_video: Path,
    kafka_bootstrap: str,
    redis_url: str,
    redis_client: redis.Redis,
) -> None:
    server = private_rtsp_server

    async def body(ingest: Ingest, tail: FrameTail, camera: str) -> None:
        await until(lambda: len(tail.frames) >= 10, FIRST_FRAMES_DEADLINE_S, "first frames", ingest)
        assert status(redis_client, camera)["state"] == "online"
        server.kill()
        await until(
            lambda: status(redis_client, camera).get("state") == "offline", 10, "offline", ingest
        )
        before = len(tail.frames)
        server.start()
        await until(
            lambda: status(redis_client, camera).get("state") == "online",
            30,
            "online again",
            ingest,
        )
        await until(lambda: len(tail.frames) >= before + 10, 20, "frames to resume", ingest)
        st = status(redis_client, camera)
        assert int(st["reconnects"]) >= 1
        assert ingest.poll() is None
        rc, _ = ingest.terminate()
        assert rc == 0, ingest.log_tail()
        assert_gap_free_and_rising(tail.frames)

    await run_with(tmp_path, server, pets_video, kafka_bootstrap, redis_url, body)


async def test_hung_server_is_noticed_within_the_read_timeout(
    tmp_path: Path,
    private_rtsp_server: RtspServer,
    pets_video: Path,
    kafka_bootstrap: str,
    redis_url: str,
    redis_client: redis.Redis,
) -> None:
    server = private_rtsp_server

    async def body(ingest: Ingest, tail: FrameTail, camera: str) -> None:
        await until(lambda: len(tail.frames) >= 10, FIRST_FRAMES_DEADLINE_S, "first frames", ingest)
        server.pause()
        try:
            took = await until(
                lambda: status(redis_client, camera).get("state") == "offline",
                READ_TIMEOUT_S + NOTICE_MARGIN_S,
                "offline after SIGSTOP",
                ingest,
            )
            assert "no frame for" in status(redis_client, camera)["last_error"]
            assert ingest.poll() is None
        finally:
            server.resume()
        print(f"hang noticed after {took:.2f} s (read timeout {READ_TIMEOUT_S} s)")
        await until(
            lambda: status(redis_client, camera).get("state") == "online",
            30,
            "online after SIGCONT",
            ingest,
        )
        rc, _ = ingest.terminate()
        assert rc == 0, ingest.log_tail()
        assert_gap_free_and_rising(tail.frames)

    await run_with(tmp_path, server, pets_video, kafka_bootstrap, redis_url, body)


async def test_redis_restart_never_stops_ingest(
    tmp_path: Path, rtsp_server: RtspServer, pets_video: Path, kafka_bootstrap: str
) -> None:
    """A private Redis goes away and comes back: frames keep flowing, status comes back."""
    from devstack import stack as stack_mod
    from tests.stack_fixtures import private_stack_config

    cfg = private_stack_config(tmp_path / "stack")
    stack_mod.redis_start(cfg)
    url = stack_mod.redis_url(cfg)
    client = redis.Redis.from_url(url, decode_responses=True)
    try:

        async def body(ingest: Ingest, tail: FrameTail, camera: str) -> None:
            await until(
                lambda: status(client, camera).get("state") == "online",
                FIRST_FRAMES_DEADLINE_S,
                "online",
                ingest,
            )
            stack_mod.redis_stop(cfg)
            stopped_ns = time.time_ns()
            before = len(tail.frames)
            await until(
                lambda: len(tail.frames) >= before + 10, 20, "frames while Redis is down", ingest
            )
            stack_mod.redis_start(cfg)
            # written after the restart, not left over from before it
            await until(
                lambda: (
                    int(status(client, camera).get("updated_ns", 0)) > stopped_ns
                    and status(client, camera)["state"] == "online"
                ),
                20,
                "status written again",
                ingest,
            )
            rc, _ = ingest.terminate()
            assert rc == 0, ingest.log_tail()
            assert_gap_free_and_rising(tail.frames)

        await run_with(tmp_path, rtsp_server, pets_video, kafka_bootstrap, url, body)
    finally:
        client.close()
        stack_mod.redis_stop(cfg)
