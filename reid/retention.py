"""Retention of what the ReID stage keeps: which tracklets and thumbnails are past their limit.

A pure core (no Kafka, Redis or Prometheus): given a :class:`reid.store.VectorStore`
and the thumbnails folder, :func:`plan` lists what is older than the limit
and :func:`apply` removes it. A tracklet is expired when it *ended* more than
``max_age_s`` before ``now_ns``; its point (vector, shots, payload) and its
thumbnail go together. An identity has no record of its own: it is the
global id on its tracklets, so it is gone when its last tracklet expires
(the public match topic keeps only ids, under its own topic retention).
Thumbnail files older than the limit that no stored tracklet references
(left by a crash between the file write and the upsert, or by a tracklet
deleted without its file) go too; a file a kept tracklet references never does.

Time: capture times of the tracklets (``ts_end_ns``) and file modification
times are compared with the same ``now_ns`` (wall clock, ns).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from reid.store import Scope, VectorStore

NS_PER_S = 1_000_000_000
DAY_S = 86_400

THUMBNAIL_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class RetentionPolicy:
    """How long the store keeps tracklets (vectors, payloads, thumbnails)."""

    max_age_s: float = 30 * DAY_S
    """Tracklets that ended longer ago than this are deleted with their thumbnails."""


@dataclass
class RetentionPlan:
    """What one retention pass removes."""

    cutoff_ns: int
    tracklet_ids: list[str] = field(default_factory=list)
    thumbnails: list[Path] = field(default_factory=list)
    """Resolved paths inside the thumbnails folder (tracklets' and orphans)."""


@dataclass(frozen=True)
class RetentionReport:
    """Counts of one pass (``dry_run``: counted, nothing removed)."""

    cutoff_ns: int
    tracklets: int
    thumbnails: int
    dry_run: bool


def inside(root: Path, ref: str) -> Path | None:
    """``root / ref`` resolved, or None when it would leave ``root`` (``..``, absolute, symlink)."""
    if not ref:
        return None
    base = root.resolve()
    path = (base / ref).resolve()
    return path if path != base and path.is_relative_to(base) else None


def expired_tracklets(store: VectorStore, cutoff_ns: int) -> list[tuple[str, str]]:
    """(tracklet id, thumbnail ref) of every stored tracklet that ended before ``cutoff_ns``.

    The store filters on the start time (indexed); the end time is checked here.
    """
    return [
        (t.tracklet_id, t.thumbnail_ref)
        for t in store.scroll(Scope(ts_to_ns=cutoff_ns))
        if t.ts_end_ns < cutoff_ns
    ]


def old_files(folder: Path, cutoff_ns: int) -> Iterable[Path]:
    """Thumbnail files under ``folder`` last modified before ``cutoff_ns`` (symlinks skipped)."""
    if not folder.is_dir():
        return
    for path in folder.rglob("*"):
        if path.suffix.lower() in THUMBNAIL_SUFFIXES and not path.is_symlink() and path.is_file():
            if path.stat().st_mtime_ns < cutoff_ns:
                yield path.resolve()


def plan(
    store: VectorStore, thumbnails_dir: Path | None, policy: RetentionPolicy, now_ns: int
) -> RetentionPlan:
    """Everything past ``policy``'s limit at ``now_ns``: tracklets, their thumbnails, orphans."""
    cutoff = now_ns - int(policy.max_age_s * NS_PER_S)
    expired = expired_tracklets(store, cutoff)
    out = RetentionPlan(cutoff, [tid for tid, _ in expired])
    if thumbnails_dir is None:
        return out
    files = {p for _, ref in expired if (p := inside(thumbnails_dir, ref)) is not None}
    kept = {t.thumbnail_ref for t in store.scroll(Scope())} - {ref for _, ref in expired}
    referenced = {p for ref in kept if (p := inside(thumbnails_dir, ref)) is not None}
    files |= {p for p in old_files(thumbnails_dir, cutoff) if p not in referenced}
    out.thumbnails = sorted(files)
    return out


def apply(store: VectorStore, p: RetentionPlan, dry_run: bool = False) -> RetentionReport:
    """Remove what ``p`` lists (points first, then files); the counts removed."""
    removed_files = 0
    if not dry_run:
        store.delete(p.tracklet_ids)
        for path in p.thumbnails:
            try:
                path.unlink()
                removed_files += 1
            except FileNotFoundError:
                pass
    else:
        removed_files = len(p.thumbnails)
    return RetentionReport(p.cutoff_ns, len(p.tracklet_ids), removed_files, dry_run)
