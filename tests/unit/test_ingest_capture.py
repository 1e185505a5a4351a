"""FrameSource against scripted fake captures: drops, hangs, reconnects, bad frames, files."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
import pytest

from common.backoff import Backoff
from ingest.capture import (
    MAX_CONSECUTIVE_BAD_FRAMES,
    CapturedFrame,
    DropReason,
    FrameSource,
    SourceObserver,
    SourceState,
)
from ingest.sampler import FrameSampler

NS = 1_000_000_000
DEADLINE_S = 5.0
LIVE = "rtsp://fake/cam"
FILE = "/videos/fake.avi"  # the fake opener never touches the disk


def wait_for(cond: Callable[[], bool], timeout_s: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        time.sleep(0.01)


class FakeCapture:
    """Frames whose pixel [0, 0, 0] holds their index; scripted failures.

    ``frames``: how many before grab() fails (None: endless). ``interval_s``:
    delay per grab. ``hang_after``: grab() blocks (until released) after that
    many frames. ``bad``: indices whose retrieve() fails.
    """

    def __init__(
        self,
        frames: int | None = None,
        interval_s: float = 0.0,
        hang_after: int | None = None,
        bad: set[int] | None = None,
        opened: bool = True,
        fps: float = 10.0,
    ) -> None:
        self.frames = frames
        self.interval_s = interval_s
        self.hang_after = hang_after
        self.bad = bad or set()
        self.opened = opened
        self.fps = fps
        self.i = -1
        self.released = threading.Event()
        self.unhang = threading.Event()

    def isOpened(self) -> bool:  # noqa: N802
        return self.opened

    def grab(self) -> bool:
        if self.hang_after is not None and self.i + 1 >= self.hang_after:
            self.unhang.wait(30)
            return False
        if self.frames is not None and self.i + 1 >= self.frames:
            return False
        if self.interval_s:
            time.sleep(self.interval_s)
        self.i += 1
        return True

    def retrieve(self) -> tuple[bool, Any]:
        if self.i in self.bad:
            return False, None
        img = np.zeros((4, 6, 3), np.uint8)
        img[0, 0, 0] = self.i % 256
        return True, img

    def get(self, prop: int) -> float:
        return self.fps if prop == cv2.CAP_PROP_FPS else 0.0

    def release(self) -> None:
        self.released.set()


class Opener:
    """Hands out the scripted captures in order (the last one repeats)."""

    def __init__(self, *caps: FakeCapture) -> None:
        self.caps = list(caps)
        self.opened: list[FakeCapture] = []

    def __call__(self, _source: str) -> FakeCapture:
        cap = self.caps.pop(0) if len(self.caps) > 1 else self.caps[0]
        self.opened.append(cap)
        return cap


class Recorder(SourceObserver):
    def __init__(self) -> None:
        self.states: list[SourceState] = []
        self.drops: list[DropReason] = []
        self.reconnects = 0

    def on_state(self, state: SourceState) -> None:
        self.states.append(state)

    def on_dropped(self, reason: DropReason) -> None:
        self.drops.append(reason)

    def on_reconnect(self) -> None:
        self.reconnects += 1


def fast_backoff() -> Backoff:
    return Backoff(initial_s=0.01, max_s=0.05, jitter=0.0)


def make(source: str, opener: Opener, **kw: Any) -> tuple[FrameSource, Recorder]:
    rec = Recorder()
    kw.setdefault("sampler", FrameSampler(0))
    src = FrameSource(source, opener=opener, backoff=fast_backoff(), observer=rec, **kw)
    return src, rec


def drain(src: FrameSource, timeout_s: float = DEADLINE_S) -> list[CapturedFrame]:
    out: list[CapturedFrame] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        f = src.take(0.05)
        if f is not None:
            out.append(f)
        elif src.finished:
            return out
    raise AssertionError("source did not finish")


def test_file_is_lossless_and_timed_by_its_frame_rate() -> None:
    src, rec = make(FILE, Opener(FakeCapture(frames=25, fps=10.0)), file_start_ns=1000 * NS)
    src.start()
    frames = []
    while len(frames) < 25:
        f = src.take(DEADLINE_S)
        assert f is not None
        frames.append(f)
        time.sleep(0.002)  # a slow consumer must not lose frames of a file
    assert drain(src) == []
    assert [f.source_index for f in frames] == list(range(25))
    assert [int(f.image[0, 0, 0]) for f in frames] == list(range(25))
    assert [f.ts_capture_ns for f in frames] == [1000 * NS + i * NS // 10 for i in range(25)]
    assert src.stats().state == SourceState.ENDED and rec.drops == []


def test_file_sampling_is_deterministic() -> None:
    def run() -> list[int]:
        src, _ = make(
            FILE,
            Opener(FakeCapture(frames=30, fps=10.0)),
            sampler=FrameSampler(7.0),
            file_start_ns=0,
        )
        src.start()
        return [f.source_index for f in drain(src)]

    first = run()
    assert len(first) == 21 and first == run()


def test_file_loop_goes_on_with_rising_time() -> None:
    src, rec = make(
        FILE,
        Opener(
            FakeCapture(frames=5, fps=10.0), FakeCapture(frames=5, fps=10.0), FakeCapture(frames=5)
        ),
        file_start_ns=0,
        loop_file=True,
    )
    src.start()
    got = [src.take(DEADLINE_S) for _ in range(12)]
    src.stop()
    ts = [f.ts_capture_ns for f in got if f is not None]
    assert len(ts) == 12 and ts == sorted(ts) and len(set(ts)) == 12
    assert rec.reconnects == 0  # starting the file again is not a reconnect


def test_slow_consumer_drops_old_frames_not_new_ones() -> None:
    src, rec = make(LIVE, Opener(FakeCapture(frames=None, interval_s=0.002)))
    src.start()
    wait_for(lambda: src.stats().captured >= 50)
    newest_before = src.stats().captured - 1
    frame = src.take(1.0)
    src.stop()
    assert frame is not None
    # what the consumer gets is the newest frame, and the skipped ones are counted
    assert frame.source_index >= newest_before
    assert src.stats().dropped_behind >= 40
    assert rec.drops.count(DropReason.BEHIND) == src.stats().dropped_behind


def test_hung_stream_is_abandoned_within_read_timeout_and_reopened() -> None:
    hung = FakeCapture(frames=None, interval_s=0.01, hang_after=5)
    healthy = FakeCapture(frames=None, interval_s=0.01)
    opener = Opener(hung, healthy)
    src, rec = make(LIVE, opener, read_timeout_s=0.3)
    src.start()
    wait_for(lambda: src.stats().captured >= 5)
    t_hang = time.monotonic()
    wait_for(lambda: src.stats().state == SourceState.OFFLINE)
    noticed_s = time.monotonic() - t_hang
    assert noticed_s < 0.3 + 0.3  # read timeout + watch margin
    wait_for(lambda: src.stats().state == SourceState.ONLINE and src.stats().reconnects == 1)
    assert "no frame for" in src.stats().error
    hung.unhang.set()  # FFmpeg's own timeout fires: the abandoned thread releases its capture
    wait_for(hung.released.is_set)
    assert src.stop()
    assert healthy.released.is_set()
    assert rec.states[:3] == [SourceState.ONLINE, SourceState.OFFLINE, SourceState.ONLINE]


def test_dropped_stream_reconnects_with_backoff_until_it_opens() -> None:
    opener = Opener(
        FakeCapture(frames=3),
        FakeCapture(opened=False),
        FakeCapture(opened=False),
        FakeCapture(frames=None, interval_s=0.01),
    )
    src, rec = make(LIVE, opener)
    src.start()
    wait_for(lambda: src.stats().reconnects >= 3 and src.stats().state == SourceState.ONLINE)
    src.stop()
    assert rec.reconnects == src.stats().reconnects == 3
    assert SourceState.OFFLINE in rec.states


def test_first_open_failing_stays_connecting_until_a_frame() -> None:
    src, rec = make(
        LIVE, Opener(FakeCapture(opened=False), FakeCapture(frames=None, interval_s=0.01))
    )
    src.start()
    wait_for(lambda: src.stats().state == SourceState.ONLINE)
    src.stop()
    assert rec.states[0] == SourceState.ONLINE  # never "offline": it was never online before


def test_bad_frames_are_counted_and_skipped() -> None:
    src, rec = make(FILE, Opener(FakeCapture(frames=10, bad={2, 5})), file_start_ns=0)
    src.start()
    idx = [int(f.image[0, 0, 0]) for f in drain(src)]
    assert idx == [0, 1, 3, 4, 6, 7, 8, 9]
    assert src.stats().bad_frames == 2 and rec.drops == [DropReason.BAD_FRAME] * 2


def test_a_stream_of_only_bad_frames_is_reopened() -> None:
    many = set(range(MAX_CONSECUTIVE_BAD_FRAMES + 10))
    src, _ = make(
        LIVE, Opener(FakeCapture(frames=None, bad=many), FakeCapture(frames=None, interval_s=0.01))
    )
    src.start()
    wait_for(lambda: src.stats().reconnects == 1 and src.take(0.05) is not None)
    src.stop()
    assert src.stats().bad_frames >= MAX_CONSECUTIVE_BAD_FRAMES


def test_opener_raising_does_not_kill_the_source() -> None:
    calls = []

    def opener(source: str) -> FakeCapture:
        calls.append(source)
        if len(calls) < 3:
            raise RuntimeError("boom")
        return FakeCapture(frames=None, interval_s=0.01)

    src = FrameSource(LIVE, FrameSampler(0), opener, backoff=fast_backoff())
    src.start()
    wait_for(lambda: src.stats().state == SourceState.ONLINE)
    src.stop()
    assert len(calls) == 3


def test_stop_ends_a_live_source() -> None:
    src, _ = make(LIVE, Opener(FakeCapture(frames=None, interval_s=0.01)))
    src.start()
    wait_for(lambda: src.stats().captured > 0)
    assert src.stop()
    wait_for(lambda: src.finished or src.take(0) is None)
    assert src.stats().state == SourceState.ENDED


@pytest.mark.parametrize("fps", [0.0, float("nan")])
def test_file_without_frame_rate_gets_the_fallback(fps: float) -> None:
    src, _ = make(FILE, Opener(FakeCapture(frames=3, fps=fps)), file_start_ns=0)
    src.start()
    ts = [f.ts_capture_ns for f in drain(src)]
    assert ts == [0, NS // 25, 2 * NS // 25]
