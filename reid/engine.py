"""One tracklet in, identities out: aggregation + store + linker, without Kafka.

The service wraps this; the evaluation and tests drive it directly. The store
is passed in (any :class:`reid.store.VectorStore`), as are the global id
source and the thumbnails folder.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common.units import NS_PER_S
from reid.aggregate import AggregationParams, aggregate, grey_vectors, tracklet_vectors
from reid.corrections import Constraints
from reid.linker import Linker, LinkerParams, LinkResult, Neighbour, Sighting
from reid.store import Scope, StoredTracklet, VectorStore
from reid.topology import Topology
from schemas.messages import Tracklet

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class EngineParams:
    """Aggregation and linking settings together."""

    linker: LinkerParams = field(default_factory=LinkerParams)
    aggregation: AggregationParams = field(default_factory=AggregationParams)


@dataclass
class Processed(LinkResult):
    """A :class:`LinkResult` plus how long the store search took and whether it was skipped."""

    search_seconds: float = 0.0
    skipped: str = ""


def thumbnail_ref(tracklet: Tracklet) -> str:
    """Where a tracklet's best crop lives under the thumbnails folder (relative path)."""
    return f"{_UNSAFE.sub('_', tracklet.camera_id)}/{_UNSAFE.sub('_', tracklet.tracklet_id)}.jpg"


class Engine:
    """Links tracklets through a vector store and a :class:`Linker`.

    Args:
        store: where tracklet vectors and identities are kept.
        topology: cameras and transit times.
        params: aggregation and linking settings.
        new_global_id: fresh global ids (a counter; Redis INCR in the service).
        thumbnails_dir: where best crops are written (None: not written).
        constraints: operators' corrections the linker keeps (:mod:`reid.corrections`).
    """

    def __init__(
        self,
        store: VectorStore,
        topology: Topology,
        params: EngineParams,
        new_global_id: Callable[[], str],
        thumbnails_dir: Path | None,
        constraints: Constraints | None = None,
    ) -> None:
        self.store = store
        self.topology = topology
        self.params = params
        self.new_global_id = new_global_id
        self.linker = Linker(topology, params.linker, new_global_id, constraints)
        self.thumbnails_dir = thumbnails_dir
        self.plan_track: Callable[[Tracklet], list[list[float]]] | None = None
        """Set by the service when a site plan exists: a tracklet's plan trajectory."""

    def restore(self) -> int:
        """After a restart: the newest window of stored tracklets becomes the linker's live window.

        Tracklets within ``window_s`` of the newest stored one rejoin the
        linker live, with their vectors and global ids (see
        :meth:`reid.linker.Linker.restore`), so a restarted stage revisits
        them as if it had never stopped and never renumbers people. Greyscale
        vectors are not stored: a restored tracklet is compared in colour.
        Returns how many were restored.
        """
        latest = max((t.ts_end_ns for t in self.store.scroll(Scope())), default=None)
        if latest is None:
            return 0
        horizon = latest - int(self.params.linker.revisit_window_s * NS_PER_S)
        held = [
            (
                Sighting(
                    tracklet_id=t.tracklet_id,
                    camera_id=t.camera_id,
                    ts_start_ns=t.ts_start_ns,
                    ts_end_ns=t.ts_end_ns,
                    mean=np.asarray(t.vector, np.float32),
                    shots=np.zeros((0, 0), np.float32) if t.shots is None else t.shots,
                    thumbnail_ref=t.thumbnail_ref,
                ),
                t.global_id,
            )
            for t in self.store.scroll(Scope(ts_from_ns=horizon), with_vectors=True)
            if t.global_id and t.vector is not None
        ]
        return self.linker.restore(held)

    def _save_thumbnail(self, tracklet: Tracklet) -> str:
        crops = [c for c in tracklet.crops if c.jpeg]
        if not crops:
            return ""
        ref = thumbnail_ref(tracklet)
        if self.thumbnails_dir is not None:
            best = max(crops, key=lambda c: c.quality)
            path = self.thumbnails_dir / ref
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(best.jpeg)
            tmp.replace(path)
        return ref

    def process(self, tracklet: Tracklet) -> Processed:
        """Aggregate, search, link, upsert; the events to publish.

        A tracklet already held by the linker or already stored with an
        identity (a replay) changes nothing and yields no events.
        """
        tid = tracklet.tracklet_id
        if self.linker.global_id(tid) is not None:
            return Processed(events=[], assigned={}, skipped="replay")
        stored = self.store.get([tid])
        if stored and stored[0].global_id:
            s0 = stored[0]
            self.linker.add_anchor(tid, s0.camera_id, s0.ts_start_ns, s0.ts_end_ns, s0.global_id)
            return Processed(events=[], assigned={}, skipped="replay")
        vectors, quality = tracklet_vectors(tracklet, self.params.aggregation)
        if vectors.size == 0:
            return Processed(events=[], assigned={}, skipped="no_vectors")
        agg = aggregate(vectors, quality, self.params.aggregation)
        gv, gq = grey_vectors(tracklet)
        grey_mean = (
            aggregate(gv, gq, self.params.aggregation).mean
            if gv.size and gv.shape[1] == agg.mean.size
            else None
        )
        sighting = Sighting(
            tracklet_id=tid,
            camera_id=tracklet.camera_id,
            ts_start_ns=tracklet.ts_start_ns,
            ts_end_ns=tracklet.ts_end_ns,
            mean=agg.mean,
            shots=agg.shots,
            thumbnail_ref=self._save_thumbnail(tracklet),
            grey_mean=grey_mean,
            greyscale=tracklet.greyscale,
        )
        scope = self.linker.scope(sighting)
        t0 = time.perf_counter()
        hits = self.store.search(
            agg.mean,
            Scope(cameras=scope.cameras, ts_from_ns=scope.ts_from_ns, ts_to_ns=scope.ts_to_ns),
            limit=scope.limit,
            max_distance=scope.max_distance,
        )
        search_s = time.perf_counter() - t0
        neighbours = [
            Neighbour(
                h.tracklet.tracklet_id,
                h.tracklet.camera_id,
                h.tracklet.ts_start_ns,
                h.tracklet.ts_end_ns,
                h.tracklet.global_id,
                h.distance,
            )  # fmt: skip
            for h in hits
            if h.tracklet.tracklet_id != tid
        ]
        result = self.linker.add(sighting, neighbours)
        gid = self.linker.global_id(tid) or ""
        self.store.upsert(
            [
                StoredTracklet(
                    tracklet_id=tid,
                    camera_id=tracklet.camera_id,
                    ts_start_ns=tracklet.ts_start_ns,
                    ts_end_ns=tracklet.ts_end_ns,
                    global_id=gid,
                    vector=agg.mean,
                    shots=agg.shots,
                    thumbnail_ref=sighting.thumbnail_ref,
                    neighbours={n.tracklet_id: n.distance for n in neighbours},
                    plan_track=self.plan_track(tracklet) if self.plan_track else [],
                )
            ]
        )
        others = {t: g for t, g in result.assigned.items() if t != tid}
        if others:
            self.store.set_global_ids(others)
        return Processed(events=result.events, assigned=result.assigned, search_seconds=search_s)

    def identities(self, tracklet_ids: Sequence[str]) -> dict[str, str]:
        """Current global id of each tracklet (linker first, then the store)."""
        out = {t: g for t in tracklet_ids if (g := self.linker.global_id(t)) is not None}
        missing = [t for t in tracklet_ids if t not in out]
        for s in self.store.get(missing):
            out[s.tracklet_id] = s.global_id
        return out
