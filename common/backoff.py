"""Exponential backoff with jitter, as a pure function and a small stateful helper."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


def backoff_delay_s(
    attempt: int,
    initial_s: float,
    max_s: float,
    jitter: float,
    rand: float,
) -> float:
    """Seconds to wait before reconnect ``attempt`` (0 = first retry).

    The nominal delay doubles per attempt from ``initial_s`` and is capped at
    ``max_s``; it is then spread by ``jitter`` (a fraction: 0.5 means anywhere
    in ±50 %) using ``rand`` in [0, 1), so many cameras that lost the same
    server do not all come back in the same instant. The result never exceeds
    ``max_s`` and is never negative.
    """
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt}")
    if not 0.0 <= jitter <= 1.0:
        raise ValueError(f"jitter must be in [0, 1], got {jitter}")
    # 2**attempt overflows a float past ~1024; anything past 64 is capped anyway.
    nominal = min(max_s, initial_s * (2.0 ** min(attempt, 64)))
    spread = nominal * (1.0 + jitter * (2.0 * rand - 1.0))
    return max(0.0, min(max_s, spread))


@dataclass
class Backoff:
    """Attempt counter around :func:`backoff_delay_s`; ``reset()`` after a success.

    ``initial_s``: first delay; raising it is gentler on a failing server but
    slower to recover from a blip. ``max_s``: the cap; raising it lowers load
    during a long outage but lengthens the worst-case time to notice recovery.
    ``jitter``: fraction of random spread.
    """

    initial_s: float = 0.5
    max_s: float = 30.0
    jitter: float = 0.5
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next_delay_s(self) -> float:
        """The delay for the next retry; advances the attempt counter."""
        delay = backoff_delay_s(
            self.attempt, self.initial_s, self.max_s, self.jitter, self.rng.random()
        )
        self.attempt += 1
        return delay

    def reset(self) -> None:
        """Back to the initial delay (the connection worked)."""
        self.attempt = 0
