"""Sampling a camera's frames down to the analysis frame rate, by capture time."""

from __future__ import annotations

from common.units import NS_PER_S

# A frame up to this fraction of a period early still counts as due. Live
# cameras deliver with jitter: a 7 fps camera analysed at 7 fps must keep every
# frame even when one arrives 35 ms early. Raising it tolerates more jitter but
# lets a burst after a stall through faster (kept frames may come as close as
# 1 - fraction of a period). Arrival time is the capture time of a live frame;
# stream timestamps would remove the trade-off.
DUE_TOLERANCE_FRACTION = 0.25


class FrameSampler:
    """Keeps a frame when it is due at ``analysis_fps``, judged by capture time.

    Capture time, not arrival order, decides, so a file (whose time comes from
    its frame rate) samples the same frames on every run. When frames arrive
    late (the stream stalled, or a burst after a reconnect), the schedule
    restarts from the frame kept, rather than keeping a run of catch-up frames.

    ``analysis_fps``: frames per second kept; 0 keeps every frame. Raising it
    gives the tracker more frames (smoother tracks) at proportionally more
    detector work and bandwidth.
    """

    def __init__(self, analysis_fps: float) -> None:
        if analysis_fps < 0:
            raise ValueError(f"analysis_fps must be >= 0, got {analysis_fps}")
        self.analysis_fps = analysis_fps
        self._period_ns = NS_PER_S / analysis_fps if analysis_fps > 0 else 0.0
        self._next_due_ns: float | None = None

    def due(self, ts_capture_ns: int) -> bool:
        """True if the frame captured at ``ts_capture_ns`` should be analysed."""
        if self._period_ns == 0.0:
            return True
        if self._next_due_ns is None:
            self._next_due_ns = ts_capture_ns + self._period_ns
            return True
        if ts_capture_ns + self._period_ns * DUE_TOLERANCE_FRACTION < self._next_due_ns:
            return False
        self._next_due_ns += self._period_ns
        if self._next_due_ns <= ts_capture_ns:  # fell behind by a whole period: restart
            self._next_due_ns = ts_capture_ns + self._period_ns
        return True

    def reset(self) -> None:
        """Forget the schedule (a new stream starts)."""
        self._next_due_ns = None
