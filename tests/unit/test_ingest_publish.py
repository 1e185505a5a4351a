"""Outbox bounds and FramePublisher numbering, retries, eos and claim-check (fake broker)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError

from ingest.capture import SourceState, SourceStats
from ingest.publish import FramePublisher, Outbox, PendingFrame
from ingest.settings import IngestSettings, IngestSettingsRoot
from ingest.status import status_fields
from schemas.codec import decode
from schemas.keys import camera_status_key, claim_check_key
from schemas.messages import Frame
from service.settings import load_settings


class FakeProducer:
    """Acknowledges sends, failing the send calls numbered in ``fail_calls`` (from 0)."""

    def __init__(self, fail_calls: set[int] | None = None) -> None:
        self.fail_calls = fail_calls or set()
        self.acked: list[tuple[str, bytes | None, bytes]] = []
        self.attempts = 0

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> asyncio.Future[Any]:
        call = self.attempts
        self.attempts += 1
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if call in self.fail_calls:
            fut.set_exception(KafkaConnectionError("broker down"))
        else:
            self.acked.append((topic, key, value))
            fut.set_result(None)
        return fut


def pending(i: int) -> PendingFrame:
    return PendingFrame(ts_capture_ns=1_000 + i, width=4, height=3, jpeg=bytes([i % 256]) * 10)


async def test_outbox_offer_drops_oldest_and_stays_bounded() -> None:
    box = Outbox(3)
    dropped = [await box.offer(pending(i)) for i in range(10)]
    assert dropped == [0, 0, 0] + [1] * 7 and box.dropped == 7 and len(box) == 3
    batch = await box.take_batch(10)
    assert batch is not None and [p.ts_capture_ns for p in batch] == [1_007, 1_008, 1_009]


async def test_outbox_put_waits_for_room_and_close_drains() -> None:
    box = Outbox(2)
    await box.put(pending(0))
    await box.put(pending(1))
    third = asyncio.create_task(box.put(pending(2)))
    await asyncio.sleep(0.05)
    assert not third.done() and len(box) == 2  # back-pressure, nothing dropped
    assert [p.ts_capture_ns for p in await box.take_batch(1) or []] == [1_000]
    await asyncio.wait_for(third, 1.0)
    await box.close()
    assert len(await box.take_batch(10) or []) == 2
    assert await box.take_batch(10) is None
    with pytest.raises(RuntimeError):
        await box.offer(pending(3))


async def test_publisher_numbers_gap_free_and_keeps_numbers_across_retries() -> None:
    # the broker fails mid-lot: frame 0 acked, 1-3 not; then the retry fails too
    producer = FakeProducer(fail_calls={1, 2, 3, 4, 5, 6})
    pub = FramePublisher(producer, "t", "cam1", "rtsp://x/cam1", max_in_flight=4, retry_cap_s=0.01)
    box = Outbox(100)
    for i in range(10):
        await box.offer(pending(i))
    await box.put(PendingFrame(ts_capture_ns=2_000, eos=True))
    await box.close()
    await asyncio.wait_for(pub.run(box), 5.0)
    frames = [decode(Frame, v) for _t, _k, v in producer.acked]
    assert [f.seq for f in frames] == list(range(11))  # no gap, no repeat once acked
    assert producer.attempts == 11 + 6  # only unacknowledged frames were sent again
    assert all(k == b"cam1" for _t, k, _v in producer.acked)
    assert frames[-1].eos and frames[-1].jpeg == b"" and frames[-1].seq == 10
    assert [f.ts_capture_ns for f in frames[:10]] == [1_000 + i for i in range(10)]
    assert frames[3].jpeg == bytes([3]) * 10 and frames[3].source == "rtsp://x/cam1"
    assert pub.published == 11 and pub.eos_sent


async def test_frames_dropped_from_the_outbox_never_get_a_number() -> None:
    producer = FakeProducer()
    pub = FramePublisher(producer, "t", "cam1", "", max_in_flight=2)
    box = Outbox(2)
    for i in range(6):  # 4 dropped while "the broker was down"
        await box.offer(pending(i))
    await box.close()
    await pub.run(box)
    frames = [decode(Frame, v) for _t, _k, v in producer.acked]
    assert [(f.seq, f.ts_capture_ns) for f in frames] == [(0, 1_004), (1, 1_005)]


async def test_claim_check_puts_jpeg_in_the_store_and_a_key_in_the_frame() -> None:
    store: dict[str, bytes] = {}
    failures = [1]

    async def put(key: str, jpeg: bytes) -> None:
        if failures[0]:
            failures[0] -= 1
            raise ConnectionError("redis restarting")
        store[key] = jpeg

    producer = FakeProducer()
    pub = FramePublisher(producer, "t", "cam9", "", claim_store=put, retry_cap_s=0.01)
    await pub.send([pending(7), PendingFrame(ts_capture_ns=9, eos=True)])
    frames = [decode(Frame, v) for _t, _k, v in producer.acked]
    assert frames[0].jpeg == b"" and frames[0].jpeg_ref == claim_check_key("cam9", 0)
    assert store == {"crosscam:frame:cam9:0": bytes([7]) * 10}
    assert frames[1].eos and frames[1].jpeg_ref == ""


def test_settings_defaults_bounds_and_unknown_keys(tmp_path: Any) -> None:
    s = IngestSettings()
    assert (s.analysis_fps, s.analysis_width, s.jpeg_quality, s.claim_check) == (
        7.0,
        640,
        85,
        False,
    )
    with pytest.raises(ValueError):
        IngestSettings(jpeg_quality=0)
    with pytest.raises(ValueError):
        IngestSettings(analysis_widht=640)  # type: ignore[call-arg]
    cfg = tmp_path / "c.toml"
    cfg.write_text("[ingest]\nanalysis_fps = 5.0\nread_timeout_s = 2.0\n")
    root = load_settings(
        IngestSettingsRoot, cfg, ingest={"read_timeout_s": 3.0, "jpeg_quality": None}
    )
    assert (root.ingest.analysis_fps, root.ingest.read_timeout_s, root.ingest.jpeg_quality) == (
        5.0,
        3.0,
        85,
    )


def test_status_fields() -> None:
    stats = SourceStats(SourceState.ONLINE, 10, 3, 1, 0, 2, 123, 9.87654, "")
    f = status_fields(
        stats,
        source="rtsp://h/c",
        frames_published=6,
        frames_dropped=1,
        fps_published=6.9,
        now_ns=5,
        frames_dropped_backlog=1,
    )
    assert f["frames_dropped"] == "1" and f["frames_dropped_backlog"] == "1"
    assert camera_status_key("cam1") == "crosscam:camera:cam1"
    assert f["state"] == "online" and f["fps_measured"] == "9.88" and f["reconnects"] == "2"
    assert f["frames_published"] == "6" and f["last_frame_ns"] == "123" and f["updated_ns"] == "5"
    assert (
        status_fields(
            stats,
            source="",
            frames_published=0,
            frames_dropped=0,
            fps_published=0,
            now_ns=0,
            state="offline",
        )["state"]
        == "offline"
    )
