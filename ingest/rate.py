"""Measured frame rate over a sliding time window (bounded memory)."""

from __future__ import annotations

from collections import deque

from common.units import NS_PER_S


class RateMeter:
    """Events per second over the last ``window_s`` seconds.

    ``window_s``: longer is steadier but slower to show a change.
    ``max_events``: cap on remembered timestamps (memory bound); a rate above
    ``max_events / window_s`` reads as that ceiling.
    """

    def __init__(self, window_s: float = 5.0, max_events: int = 1024) -> None:
        if window_s <= 0 or max_events < 2:
            raise ValueError("window_s must be > 0 and max_events >= 2")
        self.window_ns = int(window_s * NS_PER_S)
        self._ts: deque[int] = deque(maxlen=max_events)

    def add(self, now_ns: int) -> None:
        """One event at ``now_ns`` (monotonic clock)."""
        self._ts.append(now_ns)

    def rate(self, now_ns: int) -> float:
        """Events per second in the window ending at ``now_ns``."""
        while self._ts and self._ts[0] < now_ns - self.window_ns:
            self._ts.popleft()
        if len(self._ts) < 2:
            return 0.0
        span = max(self._ts[-1] - self._ts[0], 1)
        return (len(self._ts) - 1) * NS_PER_S / span

    def __len__(self) -> int:
        return len(self._ts)
