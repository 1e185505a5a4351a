"""What a failing record means to the consume loop: transient or not, and how far a batch got.

Two notions the loop (:mod:`service.kafka`) and the stages share:

* **Transient faults** — a dependency that is unreachable for a while (Redis,
  Qdrant, the claim-check store): :class:`TransientError` and the builtin
  ``ConnectionError``/``TimeoutError``, Redis connection/timeout errors and
  HTTP transport errors, anywhere in the exception's cause chain. The loop
  retries such a record with backoff; it is never dead-lettered and its
  offset is never committed before it has been handled.
* **Partial batches** — a stage that keeps state (the tracker's tracks, the
  ReID linker) applies a batch record by record with :func:`apply_each`. When
  record ``k`` raises, records ``0..k-1`` are applied *and their outputs are
  kept* in a :class:`PartialBatch`, so the loop publishes them; record ``k``
  is retried (transient) or dead-lettered, and the loop goes on from ``k+1``.
  A record retried after a transient fault must have left no state behind
  when it raised: the ReID stage puts its linker back from a snapshot; the
  tracker meets Redis only when it opens a camera, before it applies the
  frame, and checks a frame's arrays before applying it (a bug raising in
  the middle of a frame can leave that one frame half-applied; the frame is
  dead-lettered). A stage whose ``handle`` raises anything else is taken to
  be stateless for the batch (the detector): the loop may re-run its records.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import redis

R = TypeVar("R")
O = TypeVar("O")  # noqa: E741


class TransientError(Exception):
    """A dependency is unreachable for now: retry the record later, never dead-letter it."""


_TRANSIENT: tuple[type[BaseException], ...] = (
    TransientError,
    ConnectionError,
    TimeoutError,
    redis.ConnectionError,
    redis.TimeoutError,
    redis.BusyLoadingError,
)
# Redis errors that are about the request, not the connection: retrying cannot help.
_REDIS_PERMANENT: tuple[type[BaseException], ...] = (
    redis.ResponseError,
    redis.DataError,
    redis.AuthenticationError,
)


def _transport_errors() -> tuple[type[BaseException], ...]:
    try:
        import httpx  # what qdrant_client talks HTTP through

        return (httpx.TransportError,)
    except ImportError:  # pragma: no cover - httpx comes with qdrant-client
        return ()


_TRANSIENT += _transport_errors()


def is_transient(exc: BaseException) -> bool:
    """True when ``exc`` (or an exception in its cause/context chain) is a transient fault.

    Qdrant's client wraps connection errors in its own exception types; the
    chain walk finds the transport error underneath.
    """
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, redis.RedisError) and not isinstance(cur, _REDIS_PERMANENT):
            return True
        if isinstance(cur, _TRANSIENT):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


class PartialBatch(Exception):
    """``handle`` failed at ``records[index]``; ``outputs`` are those of ``records[:index]``.

    Records before ``index`` are applied and their outputs must be published;
    ``records[index]`` left no state behind; records after it were not touched.
    """

    def __init__(self, index: int, outputs: list[object], cause: BaseException) -> None:
        super().__init__(f"record {index} failed: {cause!r}")
        self.index = index
        self.outputs = outputs
        self.cause = cause


def apply_each(records: Sequence[R], apply: Callable[[R], list[O]]) -> list[O]:
    """``apply`` every record in order and concatenate the outputs.

    If record ``k`` raises, raise :class:`PartialBatch` carrying the outputs of
    records ``0..k-1`` (the ones already applied), so none of them is lost.
    """
    outputs: list[O] = []
    for i, rec in enumerate(records):
        try:
            got = apply(rec)
        except Exception as exc:
            raise PartialBatch(i, list(outputs), exc) from exc
        outputs.extend(got)
    return outputs
