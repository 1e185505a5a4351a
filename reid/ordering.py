"""Publication order of match events (``Match.order_ns``).

The matches topic is keyed by global id, so one linking step's events (a link,
then the merge that folds two identities into one) can land on different
partitions, and a subscriber reading several partitions sees them in any
order. Each event is stamped, as it is published, with a wall-clock time that
strictly increases within the process, so subscribers can put them back in
order (``evaluation.live_scoring.identities_from_matches`` does).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

import msgspec

from schemas.messages import Match

_lock = threading.Lock()
_last_ns = 0


def next_order_ns() -> int:
    """Now (ns), or one more than the last value handed out, whichever is larger."""
    global _last_ns
    with _lock:
        _last_ns = max(_last_ns + 1, time.time_ns())
        return _last_ns


def in_order(events: Iterable[Match]) -> list[Match]:
    """``events`` stamped with increasing ``order_ns``, in the order given."""
    return [msgspec.structs.replace(e, order_ns=next_order_ns()) for e in events]
