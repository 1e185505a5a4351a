"""Erasure of one identity from what the ReID stage holds (a pure core).

:func:`erase_identity` removes, for global id ``G``:

* every stored tracklet of ``G`` — its point: vector, per-crop shots, payload;
* their thumbnails on disk (each path resolved and checked to stay inside the
  thumbnails folder; anything else is refused, not followed);
* with a :class:`reid.linker.Linker`, ``G``'s tracklets in its live window and
  its anchors, with their edges (:func:`forget_identity`), so a later
  tracklet of the same person cannot re-attach to them and starts a new
  identity.

It is idempotent: erasing an identity twice removes nothing the second time.
Redis keys and the ``erased`` event on the match topic are the service's
part (:mod:`reid.erasure_job`), as are the Kafka topics, whose messages
expire by topic retention.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from reid.linker import Linker
from reid.retention import inside
from reid.store import Scope, VectorStore

GLOBAL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
"""What a global id may look like (crosscam's are ``g<N>``); no glob or path characters."""


@dataclass
class ErasureReport:
    """What one erasure removed (all zero when there was nothing left to erase)."""

    global_id: str
    tracklets: list[str] = field(default_factory=list)
    """Tracklet ids whose points were deleted."""
    thumbnails: int = 0
    """Thumbnail files deleted."""
    thumbnails_refused: list[str] = field(default_factory=list)
    """Thumbnail refs that pointed outside the folder (left alone, reported)."""
    linker_tracklets: int = 0
    """Live sightings and anchors the linker forgot."""
    redis_keys: int = 0
    """Per-identity Redis keys deleted (filled in by the service side)."""

    @property
    def found(self) -> bool:
        return bool(self.tracklets or self.thumbnails or self.linker_tracklets or self.redis_keys)

    def as_dict(self) -> dict[str, object]:
        return {
            "global_id": self.global_id,
            "found": self.found,
            "tracklets": len(self.tracklets),
            "tracklet_ids": self.tracklets,
            "thumbnails": self.thumbnails,
            "thumbnails_refused": self.thumbnails_refused,
            "linker_tracklets": self.linker_tracklets,
            "redis_keys": self.redis_keys,
        }


def check_global_id(global_id: str) -> str:
    """``global_id`` if well formed.

    Raises:
        ValueError: empty, too long, or with characters a global id never has.
    """
    if not GLOBAL_ID.fullmatch(global_id):
        raise ValueError(f"not a global id: {global_id!r}")
    return global_id


def forget_identity(linker: Linker, global_id: str) -> list[str]:
    """Drop every tracklet of ``global_id`` from the linker's live window and anchors.

    Works on the linker's window structures (``_live``, ``_anchors``, ``_gid``,
    ``_edges``): the same bookkeeping :meth:`Linker._forget` does on eviction,
    for one identity. Returns the tracklet ids forgotten.
    """
    tids = [t for t, g in linker._gid.items() if g == global_id]
    for tid in tids:
        linker._live.pop(tid, None)
        linker._anchors.pop(tid, None)
        linker._forget(tid)
    return tids


def erase_identity(
    store: VectorStore,
    thumbnails_dir: Path | None,
    global_id: str,
    linker: Linker | None = None,
) -> ErasureReport:
    """Erase ``global_id``: points, thumbnails and (with ``linker``) the linker's state.

    Raises:
        ValueError: ``global_id`` is malformed.
    """
    check_global_id(global_id)
    report = ErasureReport(global_id)
    stored = list(store.scroll(Scope(global_ids=frozenset([global_id]))))
    report.tracklets = sorted(t.tracklet_id for t in stored)
    if linker is not None:
        report.linker_tracklets = len(forget_identity(linker, global_id))
    store.delete(report.tracklets)
    if thumbnails_dir is not None:
        for t in stored:
            if not t.thumbnail_ref:
                continue
            path = inside(thumbnails_dir, t.thumbnail_ref)
            if path is None:
                report.thumbnails_refused.append(t.thumbnail_ref)
                continue
            try:
                path.unlink()
                report.thumbnails += 1
            except FileNotFoundError:
                pass
    return report
