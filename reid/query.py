"""Re-identify queries (for the gallery): ranked candidates for a tracklet or an identity.

Given a tracklet (its stored vector) or an identity (the vectors of its
tracklets), rank the stored tracklets of other identities within a set of
cameras or a map area and a time window. The store ranks (filtered top-k);
for an identity, each candidate keeps its best distance to any of the
identity's tracklets, and candidates are also grouped by their identity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reid.store import Scope, VectorStore
from reid.topology import Topology

MAX_QUERY_TRACKLETS = 32
"""An identity query searches with at most this many of its tracklets (the latest):
bounds the work of one query whatever the identity's history."""


@dataclass(frozen=True)
class ReidQuery:
    """What to look for and where.

    Exactly one of ``tracklet_id`` / ``global_id``. ``cameras`` and ``area``
    (x_min, y_min, x_max, y_max on the cameras file's map) restrict where;
    both given = cameras in both. ``ts_from_ns``/``ts_to_ns``: candidates
    overlapping that window.
    """

    tracklet_id: str = ""
    global_id: str = ""
    cameras: frozenset[str] | None = None
    area: tuple[float, float, float, float] | None = None
    ts_from_ns: int | None = None
    ts_to_ns: int | None = None
    limit: int = 20


@dataclass(frozen=True)
class Candidate:
    """One ranked tracklet: where and when, its identity and its distance to the query."""

    tracklet_id: str
    camera_id: str
    ts_start_ns: int
    ts_end_ns: int
    global_id: str
    distance: float
    thumbnail_ref: str


def reidentify(store: VectorStore, topology: Topology, q: ReidQuery) -> list[Candidate]:
    """Ranked candidates (closest first), excluding the query's own identity.

    Raises:
        KeyError: the tracklet or identity is not stored.
        ValueError: neither or both of tracklet_id / global_id given.
    """
    if bool(q.tracklet_id) == bool(q.global_id):
        raise ValueError("give exactly one of tracklet_id or global_id")
    if q.tracklet_id:
        found = store.get([q.tracklet_id], with_vectors=True)
        if not found:
            raise KeyError(q.tracklet_id)
        sources = found
        own = found[0].global_id
    else:
        sources = sorted(store.scroll(Scope(global_ids=frozenset([q.global_id])), with_vectors=True),
                         key=lambda t: t.ts_end_ns)[-MAX_QUERY_TRACKLETS:]  # fmt: skip
        if not sources:
            raise KeyError(q.global_id)
        own = q.global_id
    cams = q.cameras
    if q.area is not None:
        in_area = frozenset(topology.cameras_in_area(*q.area))
        cams = in_area if cams is None else cams & in_area
    scope = Scope(
        cameras=cams,
        ts_from_ns=q.ts_from_ns,
        ts_to_ns=q.ts_to_ns,
        exclude_global_ids=frozenset([own]) if own else None,
    )
    best: dict[str, Candidate] = {}
    for src in sources:
        if src.vector is None:
            continue
        for h in store.search(src.vector, scope, limit=q.limit):
            t = h.tracklet
            if t.tracklet_id == src.tracklet_id:
                continue
            old = best.get(t.tracklet_id)
            if old is None or h.distance < old.distance:
                best[t.tracklet_id] = Candidate(t.tracklet_id, t.camera_id, t.ts_start_ns, t.ts_end_ns,
                                                t.global_id, round(h.distance, 5), t.thumbnail_ref)  # fmt: skip
    return sorted(best.values(), key=lambda c: (c.distance, c.tracklet_id))[: q.limit]


def by_identity(candidates: list[Candidate]) -> list[dict]:
    """Candidates grouped by identity, best identity first (its closest tracklet's distance)."""
    groups: dict[str, list[Candidate]] = {}
    for c in candidates:
        groups.setdefault(c.global_id, []).append(c)
    return [
        {"global_id": g, "distance": cs[0].distance, "tracklets": [c.tracklet_id for c in cs]}
        for g, cs in sorted(groups.items(), key=lambda kv: kv[1][0].distance)
    ]


def by_example(
    store: VectorStore, topology: Topology, vector: np.ndarray, q: ReidQuery
) -> list[Candidate]:
    """Stored tracklets closest to an example's vector (a searched photo), closest first,
    within ``q``'s cameras, map area and time window (its ids are ignored)."""
    cams = q.cameras
    if q.area is not None:
        in_area = frozenset(topology.cameras_in_area(*q.area))
        cams = in_area if cams is None else cams & in_area
    scope = Scope(cameras=cams, ts_from_ns=q.ts_from_ns, ts_to_ns=q.ts_to_ns)
    return [
        Candidate(
            h.tracklet.tracklet_id,
            h.tracklet.camera_id,
            h.tracklet.ts_start_ns,
            h.tracklet.ts_end_ns,
            h.tracklet.global_id,
            round(h.distance, 5),
            h.tracklet.thumbnail_ref,
        )  # fmt: skip
        for h in store.search(vector, scope, limit=q.limit)
    ]
