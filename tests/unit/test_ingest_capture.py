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
    DRIFT_WINDOW_NS,
    MAX_CONSECUTIVE_BAD_FRAMES,
    MAX_LAG_NS,
    CapturedFrame,
    DropReason,
    FrameSource,
    SourceObserver,
    SourceState,
    Stamp,
    StreamClock,
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
        pts_step_ms: float = 0.0,
    ) -> None:
        self.frames = frames
        self.interval_s = interval_s
        self.hang_after = hang_after
        self.bad = bad or set()
        self.opened = opened
        self.fps = fps
        self.pts_step_ms = pts_step_ms
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
        if prop == cv2.CAP_PROP_POS_MSEC:
            return max(self.i, 0) * self.pts_step_ms
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


# --- stream clock ------------------------------------------------------------------------------

MS = 1_000_000
PERIOD = 100 * MS  # a 10 fps camera


def stamps(clock: StreamClock, frames: list[tuple[int | None, int]]) -> list[Stamp]:
    return [clock.stamp(pts, arrival, PERIOD) for pts, arrival in frames]


def test_stream_clock_times_frames_by_pts_not_by_jittery_arrival() -> None:
    rng = np.random.default_rng(0)
    t0 = 1_000 * NS
    # arrival = capture + a delay of 5..80 ms that changes frame to frame
    frames = [
        ((i + 1) * PERIOD, t0 + i * PERIOD + int(rng.integers(5, 80)) * MS) for i in range(200)
    ]
    got = stamps(StreamClock(), frames)
    ts = np.array([s.ts_capture_ns for s in got])
    arrivals = np.array([a for _, a in frames])
    assert np.std(np.diff(arrivals)) > 15 * MS
    # the least-delayed frame sets the anchor: after it, spacing is exact
    settled = int(np.argmin(arrivals - np.arange(200) * PERIOD))
    assert set(np.diff(ts[settled:]).tolist()) == {PERIOD}
    assert all(s.ts_capture_ns <= a for s, (_, a) in zip(got, frames, strict=True))
    assert [s.source_index for s in got] == list(range(200))
    assert all(s.from_stream for s in got)


def test_stream_clock_counts_from_the_first_real_pts_as_opencv_reports_them() -> None:
    """OpenCV over RTSP: the first two frames have no pts, the third one period; all
    arrive in a burst after FFmpeg's probe, then at the camera's pace. Stamped one by one,
    the frames before the first pts go by arrival."""
    pts: list[int | None] = [None, None] + [k * PERIOD for k in range(1, 40)]
    arrival = [3 * NS + k * 5 * MS for k in range(20)] + [
        3 * NS + (k - 20) * PERIOD + 150 * MS for k in range(20, 41)
    ]
    got = stamps(StreamClock(), list(zip(pts, arrival, strict=True)))
    assert [s.source_index for s in got] == list(range(41))
    assert [s.from_stream for s in got] == [False, False] + [True] * 39
    ts = [s.ts_capture_ns for s in got]
    assert set(np.diff(ts[21:]).tolist()) == {PERIOD}


def test_stream_clock_times_a_held_burst_wholly_on_the_streams_clock() -> None:
    """The same burst held back and stamped together: the least-delayed frame of the burst
    anchors all of it, and the frames before the first pts go one period apart before it."""
    pts: list[int | None] = [None, None] + [k * PERIOD for k in range(1, 23)]
    arrival = [3 * NS + k * 5 * MS for k in range(20)] + [
        3 * NS + (k - 20) * PERIOD + 150 * MS for k in range(20, 24)
    ]
    clock = StreamClock()
    got = clock.stamp_burst(list(zip(pts, arrival, strict=True)), PERIOD)
    assert [s.source_index for s in got] == list(range(24))
    assert set(np.diff([s.ts_capture_ns for s in got]).tolist()) == {PERIOD}
    assert all(s.ts_capture_ns <= a for s, a in zip(got, arrival, strict=True))
    assert clock.arrival_fallbacks == 0
    after = clock.stamp(22 * PERIOD, arrival[-1] + PERIOD + 9 * MS, PERIOD)
    assert after.ts_capture_ns == got[-1].ts_capture_ns + PERIOD and after.source_index == 24


def test_stream_clock_is_rising_when_the_anchor_moves_down() -> None:
    # the first frame came late (FFmpeg's probe), the next ones in a catch-up burst
    frames = [(0, 5_000 * MS)] + [(i * PERIOD, 5_000 * MS + i * 4 * MS) for i in range(1, 30)]
    frames += [(i * PERIOD, 2_500 * MS + i * PERIOD) for i in range(30, 60)]
    got = stamps(StreamClock(), frames)
    ts = [s.ts_capture_ns for s in got]
    assert all(b > a for a, b in zip(ts, ts[1:], strict=False))
    assert all(t <= a for t, (_, a) in zip(ts, frames, strict=True))  # never in the future
    assert set(np.diff(ts[31:]).tolist()) == {PERIOD}  # exact once the burst is over
    assert [s.source_index for s in got] == list(range(60))


def test_stream_clock_reanchors_on_a_new_session_and_continues_the_index() -> None:
    clock = StreamClock()
    first = stamps(clock, [(i * PERIOD, 10 * NS + i * PERIOD) for i in range(10)])
    clock.new_session()  # reconnect: the new stream's pts start again at 0, 3 s later
    second = stamps(clock, [(i * PERIOD, 13 * NS + i * PERIOD) for i in range(10)])
    assert second[0].ts_capture_ns == 13 * NS  # anchored at the new session's arrival
    assert second[0].source_index == first[-1].source_index + 21  # ~3 s of frames missed
    assert [s.source_index for s in second] == list(range(30, 40))
    assert clock.sessions == 2


def test_stream_clock_reanchors_when_pts_jump_back_without_a_reconnect() -> None:
    clock = StreamClock()
    stamps(clock, [(50 * NS + i * PERIOD, 10 * NS + i * PERIOD) for i in range(10)])
    after = stamps(clock, [(i * PERIOD, 11 * NS + i * PERIOD) for i in range(5)])
    assert clock.sessions == 2
    assert [s.ts_capture_ns for s in after] == [11 * NS + i * PERIOD for i in range(5)]


def test_stream_clock_never_goes_back_across_sessions() -> None:
    clock = StreamClock()
    a = stamps(clock, [(i * PERIOD, 10 * NS + i * PERIOD) for i in range(10)])
    clock.new_session()
    # the new session's first frame claims an arrival before the last stamp (clock step)
    b = stamps(clock, [(0, 10 * NS)])
    assert b[0].ts_capture_ns > a[-1].ts_capture_ns
    assert b[0].source_index > a[-1].source_index


def test_stream_clock_extrapolates_a_few_missing_pts_then_falls_back_to_arrival() -> None:
    clock = StreamClock()
    stamps(clock, [((i + 1) * PERIOD, 10 * NS + i * PERIOD) for i in range(5)])
    # pts stuck (FFmpeg reports the same position): a few are extrapolated
    stuck = stamps(clock, [(5 * PERIOD, 10 * NS + i * PERIOD + 7 * MS) for i in range(5, 12)])
    ts = [s.ts_capture_ns for s in stuck]
    assert ts[:3] == [10 * NS + i * PERIOD for i in range(5, 8)]
    assert [s.from_stream for s in stuck] == [True] * 3 + [False] * 4
    assert ts[3:] == [10 * NS + i * PERIOD + 7 * MS for i in range(8, 12)]  # arrival times
    assert clock.arrival_fallbacks == 4
    assert [s.source_index for s in stuck] == list(range(5, 12))
    # pts come back: the stream clock takes over again, still rising
    back = clock.stamp(13 * PERIOD, 10 * NS + 12 * PERIOD + 30 * MS, PERIOD)
    assert back.from_stream and back.ts_capture_ns > ts[-1]


def test_stream_clock_without_pts_or_rate_uses_arrival_and_counts() -> None:
    clock = StreamClock()
    got = [clock.stamp(None, 10 * NS + i * 37 * MS, 0) for i in range(5)]
    assert [s.ts_capture_ns for s in got] == [10 * NS + i * 37 * MS for i in range(5)]
    assert [s.source_index for s in got] == list(range(5))
    assert clock.arrival_fallbacks == 5


def test_stream_clock_follows_a_camera_clock_that_runs_slow() -> None:
    clock = StreamClock()
    # the camera's 100 ms are 103 ms of ours: arrival drifts 3% behind its pts
    frames = [(i * PERIOD, 10 * NS + i * 103 * MS) for i in range(2000)]
    got = stamps(clock, frames)
    assert clock.drift_reanchors >= 2
    lags = [a - s.ts_capture_ns for s, (_, a) in zip(got, frames, strict=True)]
    # bounded by the allowed lag plus two windows' drift, not 6 s and growing
    assert 0 <= min(lags) and max(lags) <= MAX_LAG_NS + 2 * DRIFT_WINDOW_NS * 3 // 100
    ts = [s.ts_capture_ns for s in got]
    assert all(b > a for a, b in zip(ts, ts[1:], strict=False))


def test_live_source_times_frames_by_the_streams_clock() -> None:
    # a 50 fps camera; sleep() only ever overshoots, so arrivals lag their pts by a
    # varying delay that the stream clock must not show
    cap = FakeCapture(frames=None, interval_s=0.02, fps=50.0, pts_step_ms=20.0)
    src, _ = make(LIVE, Opener(cap))
    src.start()
    got: list[CapturedFrame] = []
    while len(got) < 5:
        f = src.take(DEADLINE_S)
        assert f is not None
        got.append(f)
    src.stop()
    assert [f.pts_ns for f in got] == [f.source_index * 20 * MS or -1 for f in got]
    ts = [f.ts_capture_ns for f in got]
    timed = [f for f in got if f.pts_ns > 0]  # the first frame (pts 0: none) goes by arrival
    steps = [(b.ts_capture_ns - a.ts_capture_ns) / (b.source_index - a.source_index)
             for a, b in zip(timed, timed[1:], strict=False)]  # fmt: skip
    assert all(s == 20 * MS for s in steps), steps
    assert all(f.ts_arrival_ns > 0 for f in got) and ts == sorted(ts)
