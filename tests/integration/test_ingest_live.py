"""``crosscam ingest`` as a real process against a real RTSP server, Kafka and Redis.

Each test publishes vtest.avi on an RTSP server under a unique camera id,
runs ingest into a unique topic, and reads the frames back with aiokafka and
the camera status from Redis. Waits are deadlines on conditions, never sleeps.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
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
# The status task writes a change of state within a poll (0.2 s) plus a Redis round
# trip; frames can reach Kafka first (FFmpeg hands over its probe buffer in a burst).
STATUS_DEADLINE_S = 5.0
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
        self,
        tmp: Path,
        camera: str,
        url: str,
        topic: str,
        bootstrap: str,
        redis_url: str,
        env_extra: dict[str, str] | None = None,
    ) -> None:
        self.log = tmp / f"ingest-{camera}.log"
        env = dict(os.environ, CROSSCAM_LOG_LEVEL="INFO", **(env_extra or {}))
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
        await until(
            lambda: (
                status(redis_client, camera).get("state") == "online"
                and int(status(redis_client, camera).get("frames_published", 0)) > 0
            ),
            STATUS_DEADLINE_S,
            "status online with frames published",
            ingest,
        )
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
        await until(
            lambda: status(redis_client, camera).get("state") == "online",
            STATUS_DEADLINE_S,
            "status online",
            ingest,
        )
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


class JitterProxy:
    """A TCP proxy that delays what the server sends by a random 0..``max_delay_s`` per
    chunk, in order: a camera behind a jittery network (RTSP interleaved over TCP)."""

    def __init__(self, upstream_port: int, max_delay_s: float, seed: int = 0) -> None:
        self.upstream_port = upstream_port
        self.max_delay_s = max_delay_s
        self.rng = random.Random(seed)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> JitterProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        down: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        for coro in (
            self._pipe(reader, up_writer),
            self._delay(up_reader, down),
            self._release(down, writer),
        ):
            task = asyncio.create_task(coro)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            dst.close()

    async def _delay(
        self, src: asyncio.StreamReader, out: asyncio.Queue[tuple[float, bytes]]
    ) -> None:
        """Each chunk is due a random delay after it was read (reading never waits)."""
        loop = asyncio.get_running_loop()
        try:
            while data := await src.read(65536):
                await out.put((loop.time() + self.rng.uniform(0, self.max_delay_s), data))
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            await out.put((0.0, b""))

    async def _release(
        self, inq: asyncio.Queue[tuple[float, bytes]], dst: asyncio.StreamWriter
    ) -> None:
        """Write the chunks in order, each at its due time (or after the one before)."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                due, data = await inq.get()
                if not data:
                    break
                await asyncio.sleep(max(0.0, due - loop.time()))
                dst.write(data)
                await dst.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            dst.close()

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._server is not None:
            self._server.close()


def step_residuals(frames: list[Frame], times: list[int], period_ns: float) -> np.ndarray:
    """Per consecutive pair: the time step minus the nominal one for its index step (ms)."""
    idx = np.array([f.source_index for f in frames], dtype=np.float64)
    t = np.array(times, dtype=np.float64)
    return (np.diff(t) - np.diff(idx) * period_ns) / 1e6


async def test_live_frames_carry_stream_clock_times_with_jitter_far_below_arrival(
    tmp_path: Path,
    rtsp_server: RtspServer,
    pets_video: Path,
    kafka_bootstrap: str,
    redis_url: str,
) -> None:
    """Through a network that delays each chunk by 0..80 ms, the frames' capture times
    (the stream's clock) step by the camera's period, while their arrival times do not;
    every frame of the unsampled camera has its source index, consecutive."""
    camera, topic = unique("clock"), f"crosscam.test.{unique('frames')}.v1"
    rtsp_server.publish(camera, pets_video)
    proxy = await JitterProxy(rtsp_server.port, max_delay_s=0.08).start()
    url = f"rtsp://127.0.0.1:{proxy.port}/{camera}"
    tail = await FrameTail(kafka_bootstrap, topic).start()
    ingest = Ingest(
        tmp_path,
        camera,
        url,
        topic,
        kafka_bootstrap,
        redis_url,
        env_extra={"CROSSCAM_INGEST__ANALYSIS_FPS": "0"},
    )
    try:
        await until(lambda: len(tail.frames) >= 120, 60, "120 frames", ingest)
        rc, summary = ingest.terminate()
        assert rc == 0, ingest.log_tail()
        await until(lambda: len(tail.frames) >= summary["frames_published"], 10, "all frames")
    except BaseException:
        print(ingest.log_tail())
        raise
    finally:
        ingest.kill()
        await tail.stop()
        await proxy.stop()
    frames = tail.frames
    assert_gap_free_and_rising(frames)
    assert all(f.source_index >= 0 and f.ts_arrival_ns > 0 for f in frames)
    assert all(f.pts_ns > 0 for f in frames[3:])  # OpenCV has none for the first one or two
    assert summary["stream_clock"]["sessions"] == 1, summary
    idx = [f.source_index for f in frames]
    assert all(b > a for a, b in zip(idx, idx[1:], strict=False)), idx
    # unsampled: every frame ingest captured has its own index, one after the other
    # (those it did not publish were counted as dropped; the server may skip a few)
    assert 0 <= idx[-1] - idx[0] + 1 - summary["frames_captured"] <= 3, (idx, summary)
    # FFmpeg's catch-up burst after its probe was held back and timed on the stream's
    # clock too: judged from the first frames on
    steady = frames[1:]
    period_ns = 1e9 / 10  # vtest.avi plays at 10 fps
    # the index is the stream clock's frame count: pts / period, up to a constant
    drift = [round(f.pts_ns / period_ns) - f.source_index for f in steady]
    assert max(drift) - min(drift) <= 1, drift
    capture = step_residuals(steady, [f.ts_capture_ns for f in steady], period_ns)
    arrival = step_residuals(steady, [f.ts_arrival_ns for f in steady], period_ns)
    print(
        f"jitter of capture-time steps {capture.std():.2f} ms, of arrival steps "
        f"{arrival.std():.2f} ms, over {len(steady)} frames; summary {summary['stream_clock']}"
    )
    assert arrival.std() > 10.0  # the network really jittered
    assert capture.std() < arrival.std() / 4
