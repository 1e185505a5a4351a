"""Reading frames from an RTSP camera or a video file: timeouts, watchdog, reconnects.

No Kafka, Redis, Prometheus or asyncio here: :class:`FrameSource` runs two
kinds of threads and hands frames over through a one-slot buffer.

* A *session* thread owns one ``cv2.VideoCapture``: it opens it (bounded by
  the open timeout), then grabs frames, decodes only those the sampler wants,
  and puts them in the slot. A live camera's slot keeps only the newest
  frame: a slow consumer makes the *old* frame go (counted as ``behind``),
  never the new one. A file's slot blocks instead (lossless, deterministic).
  A live frame's time is the stream's own clock (:class:`StreamClock`); a
  session's first frames, which come in a burst, are held until frames come
  at the stream's pace, then timed together and handed over.
* The *supervisor* thread watches the session. If no frame arrived within
  the read timeout — even while OpenCV's ``grab()`` is stuck inside FFmpeg —
  the session is abandoned (its thread releases the capture whenever its
  call returns; we never touch a capture from two threads) and a new one is
  opened after an exponential backoff with jitter. A file ends at its end.

The capture is made by an ``opener`` (``open_ffmpeg`` by default), so tests
drive every failure with fakes.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar

import cv2
import numpy as np

from common.backoff import Backoff
from common.units import NS_PER_S
from ingest.rate import RateMeter
from ingest.sampler import FrameSampler

log = logging.getLogger(__name__)

# How often the supervisor looks at a session (watchdog resolution).
WATCH_INTERVAL_S = 0.05
# Extra time over OpenCV's own open timeout before the supervisor gives up on
# an open that FFmpeg does not interrupt (it should never be needed).
OPEN_GRACE_S = 2.0
# A file whose header gives no usable frame rate is timed at this rate.
FALLBACK_FILE_FPS = 25.0
# Consecutive frames that grab but will not decode before the stream is
# treated as broken and reopened (a single bad frame is only counted).
MAX_CONSECUTIVE_BAD_FRAMES = 50
# FFmpeg's own read timeout is this many times ours. The watchdog decides that a
# stream hung; FFmpeg's interrupt only frees the abandoned thread later. (After
# its interrupt, OpenCV's grab() may still return True with a stale frame, so
# it must not be the judge.)
FFMPEG_READ_TIMEOUT_FACTOR = 2.0
# How long stop() waits for the supervisor thread.
STOP_JOIN_TIMEOUT_S = 5.0
# Stream clock: the smallest step between two capture times of one camera.
MIN_STEP_NS = 1_000_000
# Frames in a row without a usable presentation time that are timed one nominal
# period after the previous one; after that, arrival time stands in (counted).
MAX_EXTRAPOLATED_FRAMES = 3
# A presentation time this far behind the previous one is a new stream (the
# camera restarted its clock): the clock re-anchors.
MAX_PTS_BACKSTEP_NS = NS_PER_S
# Arrival lagging the stream clock by more than this over a whole drift window
# means the camera's clock runs slow against ours: the anchor moves up by it.
MAX_LAG_NS = 2 * NS_PER_S
DRIFT_WINDOW_NS = 10 * NS_PER_S

# A live session's first frames are held (decoded) until they come at the stream's
# pace, at most this many; then handed over waiting at most BURST_HANDOFF_S in all.
MAX_BURST_FRAMES = 32
MAX_BURST_BYTES = 128 * 1024 * 1024
BURST_HANDOFF_S = 2.0
# A stream claiming more frames per second than this has no usable nominal rate.
MAX_NOMINAL_FPS = 240.0

T = TypeVar("T")


def _finite(value: Any, default: float = 0.0) -> float:
    """``value`` as a float, or ``default`` if it is not a finite number."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        return default
    return out if math.isfinite(out) else default


@dataclass(frozen=True, slots=True)
class Stamp:
    """A live frame's times: ``ts_capture_ns`` (wall clock, from the stream's clock
    when it has one), ``source_index`` (frame count on the stream's clock) and
    whether the time came from the stream (False: arrival time stood in)."""

    ts_capture_ns: int
    source_index: int
    from_stream: bool


class StreamClock:
    """Capture times of a live camera from its presentation times (pure; one per camera).

    ``capture = anchor + pts``, where the anchor is the smallest ``arrival - pts``
    seen in this session: the least-delayed frame defines it, so network,
    decoder and scheduling delays of the others drop out, and no frame is
    stamped later than it arrived. (FFmpeg's pts of an RTSP stream is its RTP
    time from the stream's start.) The source
    index is the frame count on the stream's clock: the first frame with a
    pts continues the count, later ones add ``(pts - its pts) / period``.

    :meth:`new_session` re-anchors (a reconnect, or a pts that jumped back);
    times and indexes keep rising per camera across sessions. A frame without
    a usable pts is timed one nominal period after the last (up to
    ``MAX_EXTRAPOLATED_FRAMES`` in a row), else by its arrival time (counted
    in ``arrival_fallbacks``, logged once). A camera clock slower than ours
    would lag ever more: when every frame of a ``DRIFT_WINDOW_NS`` lagged by
    over ``MAX_LAG_NS``, the anchor moves up (``drift_reanchors``).
    """

    def __init__(self) -> None:
        self._started = False
        self._offset: int | None = None
        self._first_pts = 0
        self._base_index = 0
        self._last_pts: int | None = None
        self._invalid_run = 0
        self._window_start_pts = 0
        self._window_min_lag: int | None = None
        self.last_ts = 0
        self.last_index = -1
        self.sessions = 0
        self.arrival_fallbacks = 0
        self.drift_reanchors = 0
        self._warned = False
        self._floor: int | None = None

    def stamp_burst(self, frames: list[tuple[int | None, int]], period_ns: int) -> list[Stamp]:
        """Time frames held back together (FFmpeg's catch-up burst at a stream's start):
        the least-delayed of them all anchors every one, so each gets its place on the
        stream's clock. Frames before the burst's first pts are put one period apart
        before it."""
        first = next((i for i, (p, _) in enumerate(frames) if p is not None), None)
        if first is not None and period_ns > 0 and self._offset is None:
            p0 = frames[first][0]
            assert p0 is not None
            lead = [(p0 - (first - i) * period_ns, a) for i, (_, a) in enumerate(frames[:first])]
            frames = lead + frames[first:]
        lows = [a - p for p, a in frames if p is not None]
        self._floor = min(lows) if lows else None
        try:
            return [self.stamp(p, a, period_ns) for p, a in frames]
        finally:
            self._floor = None

    def new_session(self) -> None:
        """Forget the anchor: the next frame starts a new stream clock."""
        self._started = False
        self._offset = None
        self._last_pts = None
        self._invalid_run = 0

    def stamp(self, pts_ns: int | None, arrival_ns: int, period_ns: int) -> Stamp:
        """Time one frame: its pts (None if the stream gave none), its arrival, the
        nominal frame period (0 if unknown)."""
        pts = pts_ns
        if pts is not None and self._last_pts is not None:
            if pts < self._last_pts - MAX_PTS_BACKSTEP_NS:
                self.new_session()
        if not self._started:
            self._start(arrival_ns, period_ns)
        if self._offset is None:
            if pts is None:  # no pts yet in this session
                return self._by_arrival(arrival_ns)
            self._anchor(pts, arrival_ns)
        assert self._last_pts is not None
        if pts is None or pts <= self._last_pts:
            self._invalid_run += 1
            if period_ns <= 0 or self._invalid_run > MAX_EXTRAPOLATED_FRAMES:
                return self._by_arrival(arrival_ns)
            pts = self._last_pts + period_ns
        else:
            self._invalid_run = 0
        return self._by_pts(pts, arrival_ns, period_ns)

    def _start(self, arrival_ns: int, period_ns: int) -> None:
        """A session's first frame: its index goes on after the frames the gap since
        the last one would have held."""
        self._started = True
        self.sessions += 1
        if self.last_ts and period_ns > 0:
            skipped = round(max(0, arrival_ns - self.last_ts) / period_ns)
            self.last_index += max(0, skipped - 1)

    def _anchor(self, pts: int, arrival_ns: int) -> None:
        """The session's first frame with a pts: the clock's origin."""
        self._first_pts = pts
        self._base_index = self.last_index + 1
        self._offset = arrival_ns - pts
        self._last_pts = pts - 1
        self._window_start_pts, self._window_min_lag = pts, None

    def _by_pts(self, pts: int, arrival_ns: int, period_ns: int) -> Stamp:
        assert self._offset is not None
        self._offset = min(self._offset, arrival_ns - pts)
        if self._floor is not None:
            self._offset = min(self._offset, self._floor)
        self._track_drift(pts, arrival_ns - (self._offset + pts))
        self._last_pts = pts
        ts = max(self._offset + pts, self.last_ts + MIN_STEP_NS)
        if period_ns > 0:
            index = self._base_index + round((pts - self._first_pts) / period_ns)
        else:
            index = self.last_index + 1
        return self._emit(ts, index, from_stream=True)

    def _track_drift(self, pts: int, lag: int) -> None:
        """Move the anchor up when the whole last window lagged by over ``MAX_LAG_NS``."""
        assert self._offset is not None
        low = lag if self._window_min_lag is None else min(self._window_min_lag, lag)
        self._window_min_lag = low
        if pts - self._window_start_pts < DRIFT_WINDOW_NS:
            return
        if low > MAX_LAG_NS:
            self._offset += low
            self.drift_reanchors += 1
            log.warning("stream_clock_drift", extra={"lag_s": round(low / NS_PER_S, 3)})
        self._window_start_pts, self._window_min_lag = pts, None

    def _by_arrival(self, arrival_ns: int) -> Stamp:
        self.arrival_fallbacks += 1
        if not self._warned:
            self._warned = True
            log.warning("stream_clock_fallback", extra={"reason": "no usable pts: arrival time"})
        ts = max(arrival_ns, self.last_ts + MIN_STEP_NS)
        return self._emit(ts, self.last_index + 1, from_stream=False)

    def _emit(self, ts: int, index: int, from_stream: bool) -> Stamp:
        index = max(index, self.last_index + 1)
        self.last_ts, self.last_index = ts, index
        return Stamp(ts_capture_ns=ts, source_index=index, from_stream=from_stream)


class Capture(Protocol):
    """The part of ``cv2.VideoCapture`` a session uses."""

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        """True once the source is open (OpenCV's name)."""

    def grab(self) -> bool:
        """Grab the next frame without decoding it; False at the end or on an error."""

    def retrieve(self) -> tuple[bool, Any]:
        """Decode the grabbed frame: ``(ok, BGR image)``."""

    def get(self, prop_id: int) -> float:
        """A capture property (``cv2.CAP_PROP_*``), e.g. the file's frame rate."""

    def release(self) -> None:
        """Close the source."""


Opener = Callable[[str], Capture]


def is_file_source(source: str) -> bool:
    """A local path or ``file://`` URL (finite, timed by its frame rate), not a stream."""
    return source.startswith("file://") or "://" not in source


def redact(source: str) -> str:
    """The source with any ``user:password@`` removed (safe for logs and messages)."""
    scheme, sep, rest = source.partition("://")
    if not sep:
        return source
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = authority.rsplit("@", 1)[1]
    return f"{scheme}{sep}{authority}{slash}{path}"


def ffmpeg_opener(
    open_timeout_s: float, read_timeout_s: float, rtsp_transport: str = "tcp"
) -> Opener:
    """An opener for ``cv2.VideoCapture`` (FFmpeg backend) with both timeouts set.

    RTSP goes over ``rtsp_transport`` (TCP by default: no lost UDP packets
    smearing frames); FFmpeg reads that option from the environment at open.
    """

    def open_capture(source: str) -> Capture:
        if not is_file_source(source):
            os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = f"rtsp_transport;{rtsp_transport}"
        path = source.removeprefix("file://")
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            int(open_timeout_s * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            int(read_timeout_s * FFMPEG_READ_TIMEOUT_FACTOR * 1000),
        ]
        return cv2.VideoCapture(path, cv2.CAP_FFMPEG, params)  # type: ignore[return-value]

    return open_capture


class LatestSlot(Generic[T]):
    """A one-item hand-off between a producer thread and a consumer.

    ``put_latest`` replaces an item not yet taken (the caller counts it as
    dropped); ``put_wait`` waits until the slot is free instead. Capacity is
    one by construction: memory never grows with a slow consumer.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._closed = False

    def put_latest(self, item: T) -> bool:
        """Store ``item``; True if it replaced one nobody took."""
        with self._cond:
            replaced = self._item is not None
            self._item = item
            self._cond.notify_all()
            return replaced

    def put_wait(self, item: T, timeout_s: float | None = None) -> bool:
        """Store ``item`` once the slot is free; False on timeout or close."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._item is None or self._closed, timeout_s):
                return False
            if self._closed:
                return False
            self._item = item
            self._cond.notify_all()
            return True

    def take(self, timeout_s: float | None = None) -> T | None:
        """The item, waiting up to ``timeout_s``; None if none came (or closed and empty)."""
        with self._cond:
            self._cond.wait_for(lambda: self._item is not None or self._closed, timeout_s)
            item, self._item = self._item, None
            self._cond.notify_all()
            return item

    def close(self) -> None:
        """Wake every waiter; later puts are refused, a held item can still be taken."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed


@dataclass(frozen=True, slots=True)
class CapturedFrame:
    """One decoded frame the sampler kept.

    ``image``: (H, W, 3) uint8 BGR. ``ts_capture_ns``: the stream's clock
    anchored to the wall clock (live, see :class:`StreamClock`) or start +
    index / file fps (file). ``source_index``: a file's decode index, or a
    live camera's frame count on its own clock. ``pts_ns``: the stream's
    presentation time (-1: none). ``ts_arrival_ns``: wall clock when grabbed.
    """

    image: np.ndarray
    ts_capture_ns: int
    source_index: int
    pts_ns: int = -1
    ts_arrival_ns: int = 0


class SourceState(StrEnum):
    """``connecting`` before the first frame ever; ``online`` while frames flow;
    ``offline`` after a loss, while reconnecting; ``ended`` at a file's end or stop."""

    CONNECTING = "connecting"
    ONLINE = "online"
    OFFLINE = "offline"
    ENDED = "ended"


class DropReason(StrEnum):
    """Why a captured frame was not handed on (a label of the dropped-frames metric)."""

    BEHIND = "behind"  # a newer frame replaced it before the consumer took it
    BAD_FRAME = "bad_frame"  # grabbed but would not decode


class SourceObserver:
    """Callbacks from the source's threads (metrics); every method is a no-op here.

    Called from worker threads: implementations must be thread-safe and quick.
    """

    def on_captured(self) -> None:
        """A frame came from the camera (before sampling)."""

    def on_sampled_out(self) -> None:
        """A frame was not due at the analysis frame rate."""

    def on_dropped(self, reason: DropReason) -> None:
        """A frame was lost (see :class:`DropReason`)."""

    def on_reconnect(self) -> None:
        """A new open attempt after the first."""

    def on_state(self, state: SourceState) -> None:
        """The source's state changed."""


@dataclass(frozen=True, slots=True)
class SourceStats:
    """A snapshot of the source, for the camera status."""

    state: SourceState
    captured: int
    sampled_out: int
    dropped_behind: int
    bad_frames: int
    reconnects: int
    last_frame_ns: int
    fps_measured: float
    error: str


class _Session(threading.Thread):
    """One open capture and its reading loop (daemon: a hung FFmpeg call cannot block exit)."""

    def __init__(self, owner: FrameSource, generation: int) -> None:
        super().__init__(name=f"ingest-capture-{generation}", daemon=True)
        self.owner = owner
        self.generation = generation
        self.opened = threading.Event()
        self.done = threading.Event()
        self.abandoned = threading.Event()
        self.eof = False
        self.error = ""
        self.last_frame_mono = time.monotonic()

    def abandon(self) -> None:
        self.abandoned.set()

    def run(self) -> None:
        cap: Capture | None = None
        try:
            cap = self.owner.opener(self.owner.source)
            if not cap.isOpened():
                self.error = "open failed"
                return
            if self.abandoned.is_set():
                return
            self.owner._on_open(cap)
            self.last_frame_mono = time.monotonic()
            self.opened.set()
            bad_run = 0
            read_timeout_s = self.owner.read_timeout_s
            while not self.abandoned.is_set():
                t0 = time.monotonic()
                if not cap.grab():
                    self.owner._flush_burst(self)
                    self.eof = True
                    self.error = "end of stream" if self.owner.is_file else "read failed"
                    return
                took = time.monotonic() - t0
                if self.abandoned.is_set():
                    return
                if not self.owner.is_file and took > read_timeout_s:
                    # FFmpeg gave up waiting and handed back what it had: a hang
                    self.error = f"read blocked {took:.1f} s (read timeout {read_timeout_s:.1f} s)"
                    return
                self.last_frame_mono = time.monotonic()
                if self.owner._on_grab(self, cap):
                    bad_run = 0
                else:
                    bad_run += 1
                    if bad_run >= MAX_CONSECUTIVE_BAD_FRAMES:
                        self.error = f"{bad_run} frames in a row would not decode"
                        return
        except Exception as exc:  # noqa: BLE001 - a broken capture ends this session only
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            if cap is not None:
                try:
                    cap.release()
                except Exception:  # noqa: BLE001
                    log.debug("release_failed", exc_info=True)
            self.done.set()


class FrameSource:
    """Frames of one camera or file, sampled, with reconnects; see the module doc.

    Args:
        source: RTSP/HTTP URL or a file path.
        sampler: decides which frames are analysed (by capture time).
        opener: makes the capture; :func:`ffmpeg_opener` for real sources.
        open_timeout_s: an open that takes longer fails. Raising it tolerates
            slow cameras but delays noticing a dead one.
        read_timeout_s: no frame for this long means the stream hung; it is
            abandoned and reopened. Raising it rides out stalls but keeps a
            dead camera "online" longer.
        backoff: delays between reconnect attempts.
        file_start_ns: wall time of a file's first frame (default: now), so a
            replay can be pinned to a fixed time.
        observer: callbacks for metrics.
        fps_window_s: window of the measured frame rate.
        loop_file: a file starts again at its end (time and index go on)
            instead of ending.
    """

    def __init__(
        self,
        source: str,
        sampler: FrameSampler,
        opener: Opener,
        open_timeout_s: float = 10.0,
        read_timeout_s: float = 5.0,
        backoff: Backoff | None = None,
        file_start_ns: int | None = None,
        observer: SourceObserver | None = None,
        fps_window_s: float = 5.0,
        loop_file: bool = False,
    ) -> None:
        self.source = source
        self.is_file = is_file_source(source)
        self.loop_file = loop_file
        self.sampler = sampler
        self.opener = opener
        self.open_timeout_s = open_timeout_s
        self.read_timeout_s = read_timeout_s
        self.backoff = backoff or Backoff()
        self.file_start_ns = file_start_ns
        self.observer = observer or SourceObserver()
        self.slot: LatestSlot[CapturedFrame] = LatestSlot()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._state = SourceState.CONNECTING
        self._ever_online = False
        self._generation = 0
        self._sessions: list[_Session] = []  # threads that may still hold a capture
        self._captured = 0
        self._sampled_out = 0
        self._dropped_behind = 0
        self._bad_frames = 0
        self._reconnects = 0
        self._last_frame_ns = 0
        self._error = ""
        self._index = 0
        self._file_fps = 0.0
        self._live_period_ns = 0
        self.clock = StreamClock()
        self._burst: list[_Held] | None = None
        self._rate = RateMeter(window_s=fps_window_s)
        self._thread = threading.Thread(
            target=self._supervise, name="ingest-supervisor", daemon=True
        )

    # -- consumer side --------------------------------------------------------
    def start(self) -> FrameSource:
        """Start the reader thread; returns self."""
        self._thread.start()
        return self

    def take(self, timeout_s: float) -> CapturedFrame | None:
        """The newest frame not yet taken, waiting up to ``timeout_s``."""
        return self.slot.take(timeout_s)

    @property
    def finished(self) -> bool:
        """True once no more frames will come (a file ended, or stop()) and the slot is empty."""
        return self.slot.closed and self._state == SourceState.ENDED

    def stop(self) -> bool:
        """Stop reading; frames already in the slot can still be taken.

        Waits for every capture thread to release its capture (bounded by the
        open/read timeouts, which interrupt a stuck FFmpeg call): a process
        must not exit while OpenCV is inside a call on another thread, or it
        aborts. Returns False if some thread was still stuck at the deadline.
        """
        self._stop.set()
        self.slot.close()
        with self._lock:
            sessions = list(self._sessions)
        for session in sessions:
            session.abandon()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(STOP_JOIN_TIMEOUT_S)
        longest_call_s = max(self.open_timeout_s, self.read_timeout_s * FFMPEG_READ_TIMEOUT_FACTOR)
        deadline = time.monotonic() + longest_call_s + OPEN_GRACE_S
        clean = True
        for session in sessions:
            session.join(max(0.0, deadline - time.monotonic()))
            clean = clean and not session.is_alive()
        self._set_state(SourceState.ENDED)
        return clean

    def stats(self) -> SourceStats:
        """A consistent snapshot of the counters and the connection state."""
        with self._lock:
            return SourceStats(
                state=self._state,
                captured=self._captured,
                sampled_out=self._sampled_out,
                dropped_behind=self._dropped_behind,
                bad_frames=self._bad_frames,
                reconnects=self._reconnects,
                last_frame_ns=self._last_frame_ns,
                fps_measured=self._rate.rate(time.monotonic_ns()),
                error=self._error,
            )

    # -- supervisor -----------------------------------------------------------
    def _set_state(self, state: SourceState) -> None:
        with self._lock:
            if self._state == state or self._state == SourceState.ENDED:
                return
            self._state = state
            if state == SourceState.ONLINE:
                self._ever_online = True
        log.info("camera_state", extra={"state": str(state), "source": redact(self.source)})
        self.observer.on_state(state)

    def _supervise(self) -> None:
        first = True
        while not self._stop.is_set():
            if not first:
                with self._lock:
                    self._reconnects += 1
                self.observer.on_reconnect()
            first = False
            with self._lock:
                self._generation += 1
                session = _Session(self, self._generation)
                self._sessions = [t for t in self._sessions if t.is_alive()] + [session]
            session.start()
            reason = self._watch(session)
            session.abandon()
            with self._lock:
                self._error = reason
            if self._stop.is_set():
                break
            if self.is_file:
                if not session.opened.is_set():
                    log.error("file_open_failed", extra={"source": self.source, "error": reason})
                elif self.loop_file and session.eof:
                    first = True  # starting the file again is not a reconnect
                    continue
                break
            self._set_state(SourceState.OFFLINE if self._ever_online else SourceState.CONNECTING)
            delay = self.backoff.next_delay_s()
            log.warning(
                "camera_lost",
                extra={"source": redact(self.source), "reason": reason, "retry_s": round(delay, 2)},
            )
            self._stop.wait(delay)
        self.slot.close()
        self._set_state(SourceState.ENDED)

    def _watch(self, session: _Session) -> str:
        """Wait while ``session`` is healthy; return why it is not."""
        deadline = time.monotonic() + self.open_timeout_s + OPEN_GRACE_S
        while not (session.opened.is_set() or session.done.is_set()):
            if self._stop.is_set():
                return "stopped"
            if time.monotonic() > deadline:
                return f"open took over {self.open_timeout_s + OPEN_GRACE_S:.1f} s"
            session.done.wait(WATCH_INTERVAL_S)
        if not session.opened.is_set():
            return session.error or "open failed"
        while not self._stop.is_set():
            if session.done.wait(WATCH_INTERVAL_S):
                return session.error or "stream ended"
            idle = time.monotonic() - session.last_frame_mono
            if not self.is_file and idle > self.read_timeout_s:
                return f"no frame for {idle:.1f} s (read timeout {self.read_timeout_s:.1f} s)"
        return "stopped"

    # -- session thread ---------------------------------------------------------
    def _on_open(self, cap: Capture) -> None:
        """A capture opened: a live stream's clock re-anchors; a file's clock starts
        (once, so a reopen cannot rewind it)."""
        if not self.is_file:
            fps = _finite(cap.get(cv2.CAP_PROP_FPS))
            self._live_period_ns = round(NS_PER_S / fps) if 0 < fps <= MAX_NOMINAL_FPS else 0
            self.clock.new_session()
            self._burst = []
        elif self._file_fps == 0.0:
            fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
            self._file_fps = fps if 0 < fps < float("inf") else FALLBACK_FILE_FPS
            if self.file_start_ns is None:
                self.file_start_ns = time.time_ns()

    @property
    def file_fps(self) -> float:
        """A file's frame rate (0 before it opened, or for a live source)."""
        return self._file_fps

    def _read_pts(self, cap: Capture) -> int | None:
        """The grabbed frame's presentation time (ns), None if it has none (OpenCV
        reports 0 for "none": a live stream's 0 is taken as none)."""
        ms = _finite(cap.get(cv2.CAP_PROP_POS_MSEC), -1.0)
        if ms < 0 or (ms == 0 and not self.is_file):
            return None
        return round(ms * 1_000_000)

    def _on_grab(self, session: _Session, cap: Capture) -> bool:
        """One grabbed frame: time it, sample, decode, hand over. False if it would not decode."""
        if session.generation != self._generation or session.abandoned.is_set():
            return True
        arrival = time.time_ns()
        pts = self._read_pts(cap)
        if self._burst is not None:
            return self._hold(session, cap, pts, arrival)
        if self.is_file:
            index = self._index
            self._index += 1
            start = self.file_start_ns or 0
            ts = start + round(index * NS_PER_S / (self._file_fps or FALLBACK_FILE_FPS))
        else:
            stamp = self.clock.stamp(pts, arrival, self._live_period_ns)
            ts, index = stamp.ts_capture_ns, stamp.source_index
        if not self._captured_due(ts):
            return True
        image = self._decode(cap)
        if image is None:
            return False
        frame = CapturedFrame(image, ts, index, -1 if pts is None else pts, arrival)
        self._hand_over(session, frame, wait_s=None if self.is_file else 0.0)
        return True

    def _captured_due(self, ts: int) -> bool:
        """Count a captured frame; True if the sampler wants it."""
        with self._lock:
            self._captured += 1
            self._last_frame_ns = ts
            self._rate.add(time.monotonic_ns())
        self.observer.on_captured()
        self.backoff.reset()
        self._set_state(SourceState.ONLINE)
        if self.sampler.due(ts):
            return True
        with self._lock:
            self._sampled_out += 1
        self.observer.on_sampled_out()
        return False

    def _decode(self, cap: Capture) -> np.ndarray | None:
        """The grabbed frame's image; None (counted) if it would not decode."""
        try:
            ok, image = cap.retrieve()
        except cv2.error:
            ok, image = False, None
        if not ok or image is None or getattr(image, "size", 0) == 0:
            with self._lock:
                self._bad_frames += 1
            self.observer.on_dropped(DropReason.BAD_FRAME)
            return None
        return image  # type: ignore[no-any-return]

    def _hand_over(self, session: _Session, frame: CapturedFrame, wait_s: float | None) -> None:
        """Into the slot: waiting for the consumer up to ``wait_s`` (None: as long as it
        takes, a file), then replacing a frame not taken (counted as behind)."""
        deadline = None if wait_s is None else time.monotonic() + wait_s
        while deadline is None or time.monotonic() < deadline:
            if self.slot.put_wait(frame, timeout_s=WATCH_INTERVAL_S):
                return
            if self.slot.closed or session.abandoned.is_set():
                return
            session.last_frame_mono = time.monotonic()  # waiting on the consumer is not a hang
        if self.slot.put_latest(frame):
            with self._lock:
                self._dropped_behind += 1
            self.observer.on_dropped(DropReason.BEHIND)

    def _hold(self, session: _Session, cap: Capture, pts: int | None, arrival: int) -> bool:
        """A live session's first frames wait until frames come at the stream's pace
        (FFmpeg's catch-up burst after its probe is over), so the whole burst is timed
        on the stream's clock (:meth:`StreamClock.stamp_burst`) and handed over."""
        assert self._burst is not None
        image = self._decode(cap)
        if image is None:
            return False
        self._burst.append(_Held(image, pts, arrival))
        full = len(self._burst) >= MAX_BURST_FRAMES
        if full or sum(h.image.nbytes for h in self._burst) >= MAX_BURST_BYTES:
            self._release_burst(session)
        elif self._caught_up():
            self._release_burst(session)
        return True

    def _caught_up(self) -> bool:
        """The last two held frames arrived at least half their pts step apart (or the
        stream gives no pts at all)."""
        held = self._burst or []
        if len(held) >= MAX_EXTRAPOLATED_FRAMES + 1 and all(h.pts is None for h in held):
            return True
        if len(held) < 2 or held[-1].pts is None or held[-2].pts is None:
            return False
        step = held[-1].pts - held[-2].pts
        return step > 0 and 2 * (held[-1].arrival - held[-2].arrival) >= step

    def _flush_burst(self, session: _Session) -> None:
        """The stream ended while its first frames were held: hand them over."""
        if self._burst and session.generation == self._generation:
            self._release_burst(session)

    def _release_burst(self, session: _Session) -> None:
        held, self._burst = self._burst or [], None
        pairs = [(h.pts, h.arrival) for h in held]
        stamps = self.clock.stamp_burst(pairs, self._live_period_ns)
        deadline = time.monotonic() + BURST_HANDOFF_S
        for h, st in zip(held, stamps, strict=True):
            if not self._captured_due(st.ts_capture_ns):
                continue
            pts = -1 if h.pts is None else h.pts
            frame = CapturedFrame(h.image, st.ts_capture_ns, st.source_index, pts, h.arrival)
            self._hand_over(session, frame, wait_s=max(0.0, deadline - time.monotonic()))


@dataclass(frozen=True, slots=True)
class _Held:
    """A live frame held back at a session's start, before its time is known."""

    image: np.ndarray
    pts: int | None
    arrival: int
