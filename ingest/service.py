"""The ingest service: FrameSource → encode → Outbox → Kafka, status in Redis.

Thin async wrapper around the pure core. Blocking work (OpenCV read and
encode) runs in threads, so the producer and the Redis client keep working.
Kafka being down never stops capture: frames wait in the bounded outbox
(oldest dropped, counted) and the producer retries; Redis being down only
costs status writes. SIGTERM stops reading, flushes, writes the status
``offline`` and returns 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from common.backoff import Backoff
from common.units import NS_PER_S
from ingest import metrics as m
from ingest.capture import CapturedFrame, FrameSource, SourceState, ffmpeg_opener, redact
from ingest.encode import FrameEncoder
from ingest.publish import FramePublisher, Outbox, PendingFrame
from ingest.rate import RateMeter
from ingest.sampler import FrameSampler
from ingest.settings import IngestSettingsRoot
from ingest.status import StatusWriter, redis_client, status_fields
from schemas.messages import Frame
from service.kafka import ensure_topics, producer_config, start_with_retry

log = logging.getLogger(__name__)

# How long one wait for a frame lasts before the loop looks at stop/end again.
TAKE_POLL_S = 0.2
# How often the status task looks for a change of state.
STATUS_POLL_S = 0.2


@dataclass
class IngestRun:
    """What to ingest and how; ``speed_realtime`` paces a file at its own rate."""

    camera_id: str
    source: str
    settings: IngestSettingsRoot
    topic: str
    file_start_ns: int | None = None
    speed_realtime: bool = False
    send_eos: bool = True
    eos_on_stop: bool = False
    """Live source: on SIGTERM, end the stream with an eos frame so the tracker closes
    this camera's tracks now (a camera taken down on purpose), instead of holding
    them until frames come back."""
    loop_file: bool = False
    started_mono: float = field(default_factory=time.monotonic)


class IngestService:
    """One camera's ingest, in steps.

    Build: the constructor makes every part (source, encoder, outbox, publisher,
    status writer, producer) and connects nothing. :meth:`run` then starts the
    source, the status task (:meth:`_status_loop`) and the sender task
    (:meth:`_send`: topic, producer start, publish with retries); pumps frames
    from the source into the outbox (:meth:`_pump`); ends the stream and
    flushes (:meth:`_finish`); and always shuts down (:meth:`_shutdown`: final
    status, producer and Redis closed).
    """

    def __init__(self, run: IngestRun, stop: asyncio.Event) -> None:
        self.run_spec = run
        self.stop = stop
        self.cfg = cfg = run.settings.ingest
        self.camera = run.camera_id
        self.source_label = redact(run.source)
        self.source = FrameSource(
            run.source,
            sampler=FrameSampler(cfg.analysis_fps),
            opener=ffmpeg_opener(cfg.open_timeout_s, cfg.read_timeout_s, cfg.rtsp_transport),
            open_timeout_s=cfg.open_timeout_s,
            read_timeout_s=cfg.read_timeout_s,
            backoff=Backoff(cfg.backoff_initial_s, cfg.backoff_max_s, cfg.backoff_jitter),
            file_start_ns=run.file_start_ns,
            observer=m.PrometheusObserver(self.camera),
            fps_window_s=cfg.fps_window_s,
            loop_file=run.loop_file,
        )
        self.encoder = FrameEncoder(cfg.analysis_width, cfg.jpeg_quality)
        self.outbox = Outbox(cfg.publish_queue_frames)
        self.backlog_dropped = 0
        self.bad_encodes = 0
        self.last_ts = 0
        self._first_ts: int | None = None
        self._pace_start = 0.0
        self.published_rate = RateMeter(window_s=cfg.fps_window_s)
        self._published_metric = m.FRAMES_PUBLISHED.labels(self.camera)
        self._bytes_metric = m.FRAME_BYTES.labels(self.camera)
        self._encode_metric = m.ENCODE_SECONDS.labels(self.camera)
        self.redis = redis_client(run.settings.redis.url)
        self.status = StatusWriter(
            self.redis, self.camera, cfg.status_ttl_s, m.STATUS_WRITE_ERRORS.labels(self.camera).inc
        )
        self.producer = AIOKafkaProducer(
            **producer_config(run.settings.kafka, f"ingest-{self.camera}")
        )
        self.publisher = FramePublisher(
            self.producer,
            run.topic,
            self.camera,
            self.source_label,
            max_in_flight=cfg.max_in_flight,
            retry_cap_s=run.settings.kafka.reconnect_backoff_max_s,
            claim_store=self._claim_store if cfg.claim_check else None,
            on_published=self._on_published,
        )

    async def _claim_store(self, key: str, jpeg: bytes) -> None:
        """Claim-check mode: the JPEG goes to Redis with a TTL, the key into the message."""
        await self.redis.set(key, jpeg, ex=self.cfg.claim_check_ttl_s)

    def _on_published(self, frames: list[Frame]) -> None:
        """After each acknowledged batch: count the frames, their bytes and the rate."""
        now = time.monotonic_ns()
        for f in frames:
            if f.eos:
                continue
            self._published_metric.inc()
            self._bytes_metric.observe(len(f.jpeg))
            self.published_rate.add(now)

    def _status_fields(self, state: str | None = None) -> dict[str, str]:
        """The camera status hash (``state`` overrides the source's own)."""
        stats = self.source.stats()
        return status_fields(
            stats,
            source=self.source_label,
            frames_published=self.publisher.published - int(self.publisher.eos_sent),
            frames_dropped=self.backlog_dropped
            + self.bad_encodes
            + stats.dropped_behind
            + stats.bad_frames,
            frames_dropped_backlog=self.backlog_dropped,
            fps_published=self.published_rate.rate(time.monotonic_ns()),
            now_ns=time.time_ns(),
            state=state,
        )

    async def _status_loop(self) -> None:
        """Write the status on every change of state and at least every ``status_interval_s``."""
        last_state: SourceState | None = None
        last_write = 0.0
        while True:
            state = self.source.stats().state
            now = time.monotonic()
            if state != last_state or now - last_write >= self.cfg.status_interval_s:
                if state != SourceState.ENDED:  # the final write comes after the flush
                    await self.status.write(self._status_fields())
                last_state, last_write = state, now
            await asyncio.sleep(STATUS_POLL_S)

    async def _send(self) -> None:
        """Create the topic, start the producer (both retried until ``stop``), then
        send what the outbox holds until it is closed and empty."""
        if not await ensure_topics_with_stop(self.run_spec, self.stop):
            return
        try:
            await start_with_retry(
                self.producer,
                f"ingest-{self.camera}",
                self.stop,
                self.run_spec.settings.kafka.reconnect_backoff_max_s,
            )
        except KafkaError:
            if self.stop.is_set():
                return
            raise
        await self.publisher.run(self.outbox)

    async def run(self) -> dict[str, Any]:
        """Ingest until ``stop`` (or a file's end); returns a summary."""
        started = time.monotonic()
        await self.status.write(self._status_fields(state=str(SourceState.CONNECTING)))
        self.source.start()
        status_task = asyncio.create_task(self._status_loop(), name="ingest-status")
        sender_task = asyncio.create_task(self._send(), name="ingest-sender")
        stop_wait = asyncio.create_task(self.stop.wait())
        self._pace_start = time.monotonic()
        log.info(
            "ingest_started",
            extra={
                "camera": self.camera,
                "source": self.source_label,
                "topic": self.run_spec.topic,
            },
        )
        try:
            await self._pump(sender_task, stop_wait)
            await self._finish(sender_task)
        finally:
            await self._shutdown(status_task, sender_task, stop_wait)
        summary = self.summary(time.monotonic() - started)
        log.info(
            "ingest_stopped", extra={k: v for k, v in summary.items() if not isinstance(v, dict)}
        )
        return summary

    async def _pump(self, sender_task: asyncio.Task[None], stop_wait: asyncio.Task[Any]) -> None:
        """Source → encode → outbox until ``stop`` or the source's end."""
        while not self.stop.is_set():
            if sender_task.done():  # it only ends by raising here: surface the error
                sender_task.result()
            frame = await asyncio.to_thread(self.source.take, TAKE_POLL_S)
            if frame is None:
                if self.source.finished:
                    return
                continue
            pending = await self._encode(frame)
            if pending is None:
                continue
            self.last_ts = frame.ts_capture_ns
            if not await self._enqueue(pending, stop_wait):
                return

    async def _encode(self, frame: CapturedFrame) -> PendingFrame | None:
        """The frame as a JPEG waiting for its number (with its source index and stream
        times); None (counted) if it cannot be encoded."""
        try:
            t0 = time.perf_counter()
            encoded = await asyncio.to_thread(self.encoder.encode, frame.image)
            self._encode_metric.observe(time.perf_counter() - t0)
        except Exception as exc:  # noqa: BLE001 - one bad frame never stops a camera
            self.bad_encodes += 1
            m.FRAMES_DROPPED.labels(self.camera, "bad_frame").inc()
            log.warning("encode_failed", extra={"camera": self.camera, "error": repr(exc)})
            return None
        return PendingFrame(
            frame.ts_capture_ns,
            encoded.width,
            encoded.height,
            encoded.jpeg,
            source_index=frame.source_index,
            pts_ns=frame.pts_ns,
            ts_arrival_ns=frame.ts_arrival_ns,
        )

    async def _enqueue(self, pending: PendingFrame, stop_wait: asyncio.Task[Any]) -> bool:
        """Into the outbox. A file waits for room (paced if asked: nothing is lost); a live
        camera never waits (the oldest frames are dropped, counted). False if ``stop`` came
        first while waiting."""
        if not self.source.is_file:
            dropped = await self.outbox.offer(pending)
            if dropped:
                self.backlog_dropped += dropped
                m.FRAMES_DROPPED.labels(self.camera, "backlog").inc(dropped)
            return True
        if self.run_spec.speed_realtime:
            await self._pace(pending.ts_capture_ns)
        put = asyncio.create_task(self.outbox.put(pending))
        await asyncio.wait({put, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        if not put.done():
            put.cancel()
            return False
        return True

    async def _pace(self, ts_capture_ns: int) -> None:
        """Sleep until this frame is due, replaying a file at its own rate."""
        if self._first_ts is None:
            self._first_ts = ts_capture_ns
        due = self._pace_start + (ts_capture_ns - self._first_ts) / NS_PER_S
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    async def _finish(self, sender_task: asyncio.Task[None]) -> None:
        """Stop the source, end the stream (eos) where asked, close the outbox and flush it
        (a file's end waits for every frame; a stop waits at most ``shutdown_flush_timeout_s``)."""
        ended = self.source.finished and not self.stop.is_set()
        await asyncio.to_thread(self.source.stop)
        if ended and self.source.is_file and self.run_spec.send_eos:
            step = round(NS_PER_S / (self.source.file_fps or 1.0))
            eos_ts = self.last_ts + step if self.last_ts else time.time_ns()
            await self.outbox.put(PendingFrame(eos_ts, eos=True))
        elif self.stop.is_set() and self.run_spec.eos_on_stop and not self.source.is_file:
            await self.outbox.put(PendingFrame(max(time.time_ns(), self.last_ts + 1), eos=True))
        await self.outbox.close()
        flush_timeout = None if ended else self.cfg.shutdown_flush_timeout_s
        try:
            await asyncio.wait_for(asyncio.shield(sender_task), flush_timeout)
        except TimeoutError:
            log.warning("flush_timeout", extra={"camera": self.camera, "unsent": len(self.outbox)})
            sender_task.cancel()

    async def _shutdown(self, *tasks: asyncio.Task[Any]) -> None:
        """Stop the source and the tasks, write the final status, close Kafka and Redis."""
        if not self.source.finished:
            await asyncio.to_thread(self.source.stop)
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        final_state = "ended" if self.source.is_file and not self.stop.is_set() else "offline"
        await self.status.write(self._status_fields(state=final_state))
        m.CAMERA_ONLINE.labels(self.camera).set(0)
        with contextlib.suppress(Exception):
            await self.producer.stop()
        with contextlib.suppress(Exception):
            await self.redis.aclose()

    def summary(self, elapsed: float) -> dict[str, Any]:
        """What was read, published and dropped, for the log and the caller."""
        stats = self.source.stats()
        frames = self.publisher.published - int(self.publisher.eos_sent)
        return {
            "camera_id": self.camera,
            "source": self.source_label,
            "topic": self.run_spec.topic,
            "frames_published": frames,
            "eos": self.publisher.eos_sent,
            "last_seq": self.publisher.next_seq - 1,
            "frames_captured": stats.captured,
            "frames_sampled_out": stats.sampled_out,
            "frames_dropped": {
                "behind": stats.dropped_behind,
                "bad_frame": stats.bad_frames + self.bad_encodes,
                "backlog": self.backlog_dropped,
            },
            "reconnects": stats.reconnects,
            "stream_clock": {
                "sessions": self.source.clock.sessions,
                "arrival_fallbacks": self.source.clock.arrival_fallbacks,
                "drift_reanchors": self.source.clock.drift_reanchors,
            },
            "seconds": round(elapsed, 3),
            "frames_per_second": round(frames / elapsed, 2) if elapsed > 0 else 0.0,
            "mean_bytes_per_frame": round(self.publisher.published_bytes / frames) if frames else 0,
            "claim_check": self.cfg.claim_check,
        }


async def run_ingest(run: IngestRun, stop: asyncio.Event) -> dict[str, Any]:
    """Ingest until ``stop`` (or a file's end); returns a summary (see :class:`IngestService`)."""
    return await IngestService(run, stop).run()


async def ensure_topics_with_stop(run: IngestRun, stop: asyncio.Event) -> bool:
    """Create the frames topic if missing; False if ``stop`` came first."""
    task = asyncio.create_task(ensure_topics(run.settings.kafka, [run.topic]))
    waiter = asyncio.create_task(stop.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return False
    task.result()
    return True
