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
from ingest.capture import FrameSource, SourceState, ffmpeg_opener, redact
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


class _Counts:
    def __init__(self) -> None:
        self.backlog_dropped = 0
        self.bad_encodes = 0


async def _pace(run: IngestRun, ts_capture_ns: int, first_ts: list[int], start_mono: float) -> None:
    if not first_ts:
        first_ts.append(ts_capture_ns)
    due = start_mono + (ts_capture_ns - first_ts[0]) / NS_PER_S
    delay = due - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


async def run_ingest(run: IngestRun, stop: asyncio.Event) -> dict[str, Any]:
    """Ingest until ``stop`` (or a file's end); returns a summary."""
    cfg = run.settings.ingest
    camera = run.camera_id
    source_label = redact(run.source)
    observer = m.PrometheusObserver(camera)
    source = FrameSource(
        run.source,
        sampler=FrameSampler(cfg.analysis_fps),
        opener=ffmpeg_opener(cfg.open_timeout_s, cfg.read_timeout_s, cfg.rtsp_transport),
        open_timeout_s=cfg.open_timeout_s,
        read_timeout_s=cfg.read_timeout_s,
        backoff=Backoff(cfg.backoff_initial_s, cfg.backoff_max_s, cfg.backoff_jitter),
        file_start_ns=run.file_start_ns,
        observer=observer,
        fps_window_s=cfg.fps_window_s,
        loop_file=run.loop_file,
    )
    encoder = FrameEncoder(cfg.analysis_width, cfg.jpeg_quality)
    outbox = Outbox(cfg.publish_queue_frames)
    counts = _Counts()
    published_rate = RateMeter(window_s=cfg.fps_window_s)
    published_metric = m.FRAMES_PUBLISHED.labels(camera)
    bytes_metric = m.FRAME_BYTES.labels(camera)
    encode_metric = m.ENCODE_SECONDS.labels(camera)

    def on_published(frames: list[Frame]) -> None:
        now = time.monotonic_ns()
        for f in frames:
            if f.eos:
                continue
            published_metric.inc()
            bytes_metric.observe(len(f.jpeg))
            published_rate.add(now)

    redis = redis_client(run.settings.redis.url)
    status = StatusWriter(redis, camera, cfg.status_ttl_s, m.STATUS_WRITE_ERRORS.labels(camera).inc)
    producer = AIOKafkaProducer(**producer_config(run.settings.kafka, f"ingest-{camera}"))
    claim_store = None
    if cfg.claim_check:
        ttl = cfg.claim_check_ttl_s

        async def claim_store(key: str, jpeg: bytes) -> None:
            await redis.set(key, jpeg, ex=ttl)

    publisher = FramePublisher(
        producer,
        run.topic,
        camera,
        source_label,
        max_in_flight=cfg.max_in_flight,
        retry_cap_s=run.settings.kafka.reconnect_backoff_max_s,
        claim_store=claim_store,
        on_published=on_published,
    )

    def fields(state: str | None = None) -> dict[str, str]:
        return status_fields(
            source.stats(),
            source=source_label,
            frames_published=publisher.published - int(publisher.eos_sent),
            frames_dropped=counts.backlog_dropped
            + counts.bad_encodes
            + source.stats().dropped_behind
            + source.stats().bad_frames,
            fps_published=published_rate.rate(time.monotonic_ns()),
            now_ns=time.time_ns(),
            state=state,
        )

    async def status_loop() -> None:
        last_state: SourceState | None = None
        last_write = 0.0
        while True:
            state = source.stats().state
            now = time.monotonic()
            if state != last_state or now - last_write >= cfg.status_interval_s:
                if state != SourceState.ENDED:  # the final write comes after the flush
                    await status.write(fields())
                last_state, last_write = state, now
            await asyncio.sleep(STATUS_POLL_S)

    async def sender() -> None:
        if not await ensure_topics_with_stop(run, stop):
            return
        try:
            await start_with_retry(
                producer, f"ingest-{camera}", stop, run.settings.kafka.reconnect_backoff_max_s
            )
        except KafkaError:
            if stop.is_set():
                return
            raise
        await publisher.run(outbox)

    started = time.monotonic()
    await status.write(fields(state=str(SourceState.CONNECTING)))
    source.start()
    status_task = asyncio.create_task(status_loop(), name="ingest-status")
    sender_task = asyncio.create_task(sender(), name="ingest-sender")
    stop_wait = asyncio.create_task(stop.wait())
    first_ts: list[int] = []
    pace_start = time.monotonic()
    log.info("ingest_started", extra={"camera": camera, "source": source_label, "topic": run.topic})
    last_ts = 0
    try:
        while not stop.is_set():
            if sender_task.done():  # it only ends by raising here: surface the error
                sender_task.result()
            frame = await asyncio.to_thread(source.take, TAKE_POLL_S)
            if frame is None:
                if source.finished:
                    break
                continue
            try:
                t0 = time.perf_counter()
                encoded = await asyncio.to_thread(encoder.encode, frame.image)
                encode_metric.observe(time.perf_counter() - t0)
            except Exception as exc:  # noqa: BLE001 - one bad frame never stops a camera
                counts.bad_encodes += 1
                m.FRAMES_DROPPED.labels(camera, "bad_frame").inc()
                log.warning("encode_failed", extra={"camera": camera, "error": repr(exc)})
                continue
            pending = PendingFrame(frame.ts_capture_ns, encoded.width, encoded.height, encoded.jpeg)
            last_ts = frame.ts_capture_ns
            if source.is_file:
                if run.speed_realtime:
                    await _pace(run, frame.ts_capture_ns, first_ts, pace_start)
                put = asyncio.create_task(outbox.put(pending))
                await asyncio.wait({put, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
                if not put.done():
                    put.cancel()
                    break
            else:
                dropped = await outbox.offer(pending)
                if dropped:
                    counts.backlog_dropped += dropped
                    m.FRAMES_DROPPED.labels(camera, "backlog").inc(dropped)
        ended = source.finished and not stop.is_set()
        await asyncio.to_thread(source.stop)
        if ended and source.is_file and run.send_eos:
            eos_ts = (
                last_ts + round(NS_PER_S / (source.file_fps or 1.0)) if last_ts else time.time_ns()
            )
            await outbox.put(PendingFrame(eos_ts, eos=True))
        elif stop.is_set() and run.eos_on_stop and not source.is_file:
            await outbox.put(PendingFrame(max(time.time_ns(), last_ts + 1), eos=True))
        await outbox.close()
        flush_timeout = None if ended else cfg.shutdown_flush_timeout_s
        try:
            await asyncio.wait_for(asyncio.shield(sender_task), flush_timeout)
        except TimeoutError:
            log.warning("flush_timeout", extra={"camera": camera, "unsent": len(outbox)})
            sender_task.cancel()
    finally:
        if not source.finished:
            await asyncio.to_thread(source.stop)
        for task in (status_task, sender_task, stop_wait):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        final_state = "ended" if source.is_file and not stop.is_set() else "offline"
        await status.write(fields(state=final_state))
        m.CAMERA_ONLINE.labels(camera).set(0)
        with contextlib.suppress(Exception):
            await producer.stop()
        with contextlib.suppress(Exception):
            await redis.aclose()
    elapsed = time.monotonic() - started
    stats = source.stats()
    frames = publisher.published - int(publisher.eos_sent)
    summary = {
        "camera_id": camera,
        "source": source_label,
        "topic": run.topic,
        "frames_published": frames,
        "eos": publisher.eos_sent,
        "last_seq": publisher.next_seq - 1,
        "frames_captured": stats.captured,
        "frames_sampled_out": stats.sampled_out,
        "frames_dropped": {
            "behind": stats.dropped_behind,
            "bad_frame": stats.bad_frames + counts.bad_encodes,
            "backlog": counts.backlog_dropped,
        },
        "reconnects": stats.reconnects,
        "seconds": round(elapsed, 3),
        "frames_per_second": round(frames / elapsed, 2) if elapsed > 0 else 0.0,
        "mean_bytes_per_frame": round(publisher.published_bytes / frames) if frames else 0,
        "claim_check": cfg.claim_check,
    }
    log.info("ingest_stopped", extra={k: v for k, v in summary.items() if not isinstance(v, dict)})
    return summary


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
