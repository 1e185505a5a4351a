"""Ingest's pure core: backoff, sampling, encoding, rate, the one-slot buffer."""

from __future__ import annotations

import random
import threading

import cv2
import numpy as np
import pytest

from common.backoff import Backoff, backoff_delay_s
from ingest.capture import LatestSlot, is_file_source, redact
from ingest.encode import FrameEncoder, analysis_size, shrink_interpolation
from ingest.rate import RateMeter
from ingest.sampler import FrameSampler

NS = 1_000_000_000


# -- backoff ------------------------------------------------------------------
def test_backoff_doubles_and_caps_without_jitter() -> None:
    delays = [backoff_delay_s(a, 0.5, 30.0, 0.0, 0.7) for a in range(10)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]


def test_backoff_jitter_stays_within_its_band_and_the_cap() -> None:
    assert backoff_delay_s(2, 0.5, 30.0, 0.5, 0.0) == pytest.approx(1.0)  # 2.0 - 50 %
    assert backoff_delay_s(2, 0.5, 30.0, 0.5, 0.999999) == pytest.approx(3.0, rel=1e-5)
    assert backoff_delay_s(10, 0.5, 30.0, 0.5, 0.999999) <= 30.0
    assert backoff_delay_s(10_000, 0.5, 30.0, 0.5, 0.5) == 30.0  # no overflow


def test_backoff_jitter_spreads_cameras() -> None:
    b = Backoff(0.5, 30.0, 0.5, rng=random.Random(1))
    c = Backoff(0.5, 30.0, 0.5, rng=random.Random(2))
    assert [b.next_delay_s() for _ in range(4)] != [c.next_delay_s() for _ in range(4)]
    b.reset()
    assert b.attempt == 0 and 0.25 <= b.next_delay_s() <= 0.75


def test_backoff_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        backoff_delay_s(-1, 0.5, 30.0, 0.5, 0.5)
    with pytest.raises(ValueError):
        backoff_delay_s(0, 0.5, 30.0, 1.5, 0.5)


# -- sampler ------------------------------------------------------------------
def _kept(fps_in: float, fps_out: float, n: int, start: int = 1_700_000_000 * NS) -> list[int]:
    s = FrameSampler(fps_out)
    return [i for i in range(n) if s.due(start + round(i * NS / fps_in))]


def test_sampler_keeps_seven_of_ten_frames_at_7_fps() -> None:
    kept = _kept(10.0, 7.0, 100)
    assert len(kept) == 70
    assert kept[:7] == [0, 2, 3, 4, 6, 7, 9]


def test_sampler_halves_exactly_and_zero_keeps_all() -> None:
    assert _kept(10.0, 5.0, 10) == [0, 2, 4, 6, 8]
    assert _kept(25.0, 0.0, 10) == list(range(10))
    assert _kept(5.0, 10.0, 10) == list(range(10))  # slower source than analysis rate


def test_sampler_is_deterministic_by_capture_time() -> None:
    assert _kept(30.0, 7.0, 300) == _kept(30.0, 7.0, 300)


def test_sampler_restarts_after_a_stall_instead_of_catching_up() -> None:
    s = FrameSampler(5.0)
    t0 = 0
    assert s.due(t0)
    # a 10 s stall, then a burst of frames 10 ms apart: keep one, then wait a
    # period (less the jitter tolerance of 0.25 of it)
    burst = [t0 + 10 * NS + i * 10_000_000 for i in range(30)]
    kept = [t for t in burst if s.due(t)]
    assert kept == [burst[0], burst[15]]


def test_sampler_keeps_every_frame_of_a_jittery_camera_at_its_own_rate() -> None:
    """Regression: a live 7 fps RTSP camera analysed at 7 fps lost ~13 % of its
    frames, because arrival jitter made frames look a few ms early."""
    import random

    rng = random.Random(7)
    s = FrameSampler(7.0)
    period = NS / 7.0
    times = [round(i * period + rng.uniform(-0.2, 0.2) * period) for i in range(700)]
    assert sum(s.due(t) for t in times) == 700


def test_sampler_rejects_negative_fps() -> None:
    with pytest.raises(ValueError):
        FrameSampler(-1.0)


# -- encode -------------------------------------------------------------------
def test_analysis_size_keeps_aspect_and_never_upscales() -> None:
    assert analysis_size(768, 576, 640) == (640, 480)
    assert analysis_size(1920, 1080, 640) == (640, 360)
    assert analysis_size(320, 240, 640) == (320, 240)
    with pytest.raises(ValueError):
        analysis_size(0, 10, 640)


def test_encoder_resizes_and_round_trips_jpeg() -> None:
    img = np.zeros((576, 768, 3), np.uint8)
    cv2.rectangle(img, (100, 100), (300, 400), (0, 0, 255), -1)
    enc = FrameEncoder(640, 85).encode(img)
    assert (enc.width, enc.height) == (640, 480)
    back = cv2.imdecode(np.frombuffer(enc.jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert back.shape == (480, 640, 3)
    # the red box scaled by 640/768 is still red where expected
    assert back[200, 170, 2] > 200 and back[200, 170, 0] < 50


def test_a_large_shrink_averages_and_a_mild_one_is_bilinear() -> None:
    assert shrink_interpolation(768, 640) == cv2.INTER_LINEAR
    assert shrink_interpolation(1920, 640) == cv2.INTER_AREA
    # pixel noise shrunk 3x: each output pixel averages its 3x3 block (std / 3), where
    # sampling (bilinear at that ratio) would keep most of the noise (aliasing)
    noise = np.random.default_rng(0).integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    enc = FrameEncoder(640, 95).encode(noise)
    back = cv2.imdecode(np.frombuffer(enc.jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert back.shape == (360, 640, 3)
    assert float(back.std()) < 35, float(back.std())  # 74 before shrinking


def test_encoder_quality_trades_bytes() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    low = FrameEncoder(640, 30).encode(img)
    high = FrameEncoder(640, 95).encode(img)
    assert len(low.jpeg) < len(high.jpeg)


@pytest.mark.parametrize(
    "bad", [np.zeros((0, 0, 3), np.uint8), np.zeros((10, 10, 3), np.float32), "not an image"]
)
def test_encoder_rejects_bad_frames(bad: object) -> None:
    with pytest.raises(ValueError):
        FrameEncoder().encode(bad)  # type: ignore[arg-type]


# -- rate ---------------------------------------------------------------------
def test_rate_meter_measures_and_is_bounded() -> None:
    r = RateMeter(window_s=5.0, max_events=100)
    for i in range(1000):
        r.add(i * NS // 10)  # 10 per second
    assert len(r) <= 100
    assert r.rate(999 * NS // 10) == pytest.approx(10.0)
    assert r.rate(1000 * NS) == 0.0  # window passed: nothing recent


# -- slot ---------------------------------------------------------------------
def test_latest_slot_keeps_the_newest_and_reports_replacements() -> None:
    slot: LatestSlot[int] = LatestSlot()
    assert slot.put_latest(1) is False
    assert slot.put_latest(2) is True  # 1 was never taken: dropped, not queued
    assert slot.put_latest(3) is True
    assert slot.take(0) == 3
    assert slot.take(0) is None


def test_latest_slot_put_wait_blocks_until_taken_and_close_wakes() -> None:
    slot: LatestSlot[int] = LatestSlot()
    assert slot.put_wait(1, 0)
    assert slot.put_wait(2, 0.05) is False  # full: waits, times out, 1 is kept
    got: list[int | None] = []
    t = threading.Thread(target=lambda: got.append(slot.take(1.0) or slot.take(1.0)))
    assert slot.put_wait(1, 0) is False
    t.start()
    assert slot.put_wait(2, 2.0)
    t.join(2.0)
    assert got == [1]
    slot.close()
    assert slot.put_wait(3, 1.0) is False
    assert slot.take(1.0) == 2  # a held item survives close
    assert slot.take(1.0) is None


def test_source_kinds_and_redaction() -> None:
    assert is_file_source("/data/v.avi") and is_file_source("file:///data/v.avi")
    assert not is_file_source("rtsp://h:554/cam")
    assert redact("rtsp://user:secret@10.0.0.1:554/cam1") == "rtsp://10.0.0.1:554/cam1"
    assert redact("rtsp://10.0.0.1/cam1") == "rtsp://10.0.0.1/cam1"
    assert redact("/x/y.avi") == "/x/y.avi"
