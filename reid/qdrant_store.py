"""The Qdrant adapters of :class:`reid.store.VectorStore`, and the store's lock.

* :class:`EdgeStore` — qdrant-edge, Qdrant's engine embedded in this process
  (the default: fast filtered search, on disk, one process only).
* :class:`ClientStore` — qdrant-client: a Qdrant server by URL, or its local mode.
* :class:`LockedStore` — one lock around any store, for the ReID service whose
  Kafka worker and HTTP API share it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from common.units import NS_PER_S
from reid.store import (
    COLLECTION,
    SCROLL_PAGE,
    Hit,
    Scope,
    StoredTracklet,
    VectorStore,
    point_id,
)


class EdgeStore:
    """Qdrant's engine embedded in process (qdrant-edge-py), one shard on disk."""

    kind = "edge"

    def __init__(self, path: Path, dim: int) -> None:
        import qdrant_edge as qe

        self._qe = qe
        self.dim = dim
        path.mkdir(parents=True, exist_ok=True)
        config = qe.EdgeConfig(vectors=qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine))
        if any(path.iterdir()):
            self.shard = qe.EdgeShard.load(str(path), config)
        else:
            self.shard = qe.EdgeShard.create(str(path), config)
            for name, schema in (
                ("camera", qe.PayloadSchemaType.Keyword),
                ("global_id", qe.PayloadSchemaType.Keyword),
                ("tracklet_id", qe.PayloadSchemaType.Keyword),
                ("ts_start_s", qe.PayloadSchemaType.Float),
                ("ts_end_s", qe.PayloadSchemaType.Float),
            ):
                self.shard.update(qe.UpdateOperation.create_field_index(name, schema))

    def _filter(self, scope: Scope) -> Any:
        qe = self._qe
        must: list[Any] = []
        if scope.cameras is not None:
            must.append(qe.FieldCondition("camera", match=qe.MatchAny(any=sorted(scope.cameras))))
        if scope.global_ids is not None:
            must.append(
                qe.FieldCondition("global_id", match=qe.MatchAny(any=sorted(scope.global_ids)))
            )
        if scope.ts_from_ns is not None:
            must.append(
                qe.FieldCondition("ts_end_s", range=qe.RangeFloat(gte=scope.ts_from_ns / NS_PER_S))
            )
        if scope.ts_to_ns is not None:
            must.append(
                qe.FieldCondition("ts_start_s", range=qe.RangeFloat(lte=scope.ts_to_ns / NS_PER_S))
            )
        must_not = []
        if scope.exclude_global_ids:
            must_not.append(
                qe.FieldCondition(
                    "global_id", match=qe.MatchAny(any=sorted(scope.exclude_global_ids))
                )
            )
        if not must and not must_not:
            return None
        return qe.Filter(must=must or None, must_not=must_not or None)

    def upsert(self, tracklets: Sequence[StoredTracklet]) -> None:
        """Store or replace tracklets (see :class:`reid.store.VectorStore`)."""
        qe = self._qe
        points = [
            qe.Point(
                point_id(t.tracklet_id), np.asarray(t.vector, np.float32).tolist(), t.payload()
            )
            for t in tracklets
        ]
        if points:
            self.shard.update(qe.UpdateOperation.upsert_points(points))

    def search(
        self, vector: np.ndarray, scope: Scope, limit: int, max_distance: float | None = None
    ) -> list[Hit]:
        """Nearest stored tracklets within ``scope`` (see :class:`reid.store.VectorStore`)."""
        qe = self._qe
        req = qe.QueryRequest(
            limit=limit,
            query=qe.Query.Nearest(np.asarray(vector, np.float32).tolist()),
            filter=self._filter(scope),
            with_payload=True,
            score_threshold=None if max_distance is None else 1.0 - max_distance,
        )
        return [
            Hit(StoredTracklet.from_payload(p.payload), 1.0 - float(p.score))
            for p in self.shard.query(req)
        ]

    def get(self, tracklet_ids: Sequence[str], with_vectors: bool = False) -> list[StoredTracklet]:
        """Stored tracklets by id (see :class:`reid.store.VectorStore`)."""
        if not tracklet_ids:
            return []
        recs = self.shard.retrieve(
            [point_id(t) for t in tracklet_ids], with_payload=True, with_vector=with_vectors
        )
        return [
            StoredTracklet.from_payload(r.payload, r.vector if with_vectors else None) for r in recs
        ]

    def set_global_ids(self, assignment: dict[str, str]) -> None:
        """Write new global ids onto stored tracklets."""
        qe = self._qe
        for tid, gid in assignment.items():
            self.shard.update(qe.UpdateOperation.set_payload([point_id(tid)], {"global_id": gid}))

    def scroll(self, scope: Scope, with_vectors: bool = False) -> Iterator[StoredTracklet]:
        """Every stored tracklet within ``scope``."""
        qe = self._qe
        offset = None
        while True:
            recs, offset = self.shard.scroll(
                qe.ScrollRequest(
                    offset=offset,
                    limit=SCROLL_PAGE,
                    filter=self._filter(scope),
                    with_payload=True,
                    with_vector=with_vectors,
                )  # fmt: skip
            )
            for r in recs:
                yield StoredTracklet.from_payload(r.payload, r.vector if with_vectors else None)
            if offset is None:
                return

    def count(self) -> int:
        """Number of stored tracklets."""
        return int(self.shard.count(self._qe.CountRequest(exact=True)))

    def close(self) -> None:
        """Flush and close the store."""
        self.shard.flush()
        self.shard.close()


# --- qdrant-client (local mode or server) --------------------------------------------------


class ClientStore:
    """A collection through qdrant-client: local mode (``path``) or a server (``url``)."""

    def __init__(
        self, dim: int, path: Path | None = None, url: str | None = None, api_key: str | None = None
    ) -> None:
        from qdrant_client import QdrantClient, models

        self.m = models
        self.dim = dim
        self.kind = "server" if url else "local"
        self.client = (
            QdrantClient(url=url, api_key=api_key) if url else QdrantClient(path=str(path))
        )
        if not self.client.collection_exists(COLLECTION):
            self.client.create_collection(
                COLLECTION,
                vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE),
            )
            for name, schema in (
                ("camera", models.PayloadSchemaType.KEYWORD),
                ("global_id", models.PayloadSchemaType.KEYWORD),
                ("tracklet_id", models.PayloadSchemaType.KEYWORD),
                ("ts_start_s", models.PayloadSchemaType.FLOAT),
                ("ts_end_s", models.PayloadSchemaType.FLOAT),
            ):
                if self.kind == "server":
                    self.client.create_payload_index(COLLECTION, name, schema)

    def _filter(self, scope: Scope) -> Any:
        m = self.m
        must: list[Any] = []
        if scope.cameras is not None:
            must.append(m.FieldCondition(key="camera", match=m.MatchAny(any=sorted(scope.cameras))))
        if scope.global_ids is not None:
            must.append(
                m.FieldCondition(key="global_id", match=m.MatchAny(any=sorted(scope.global_ids)))
            )
        if scope.ts_from_ns is not None:
            must.append(
                m.FieldCondition(key="ts_end_s", range=m.Range(gte=scope.ts_from_ns / NS_PER_S))
            )
        if scope.ts_to_ns is not None:
            must.append(
                m.FieldCondition(key="ts_start_s", range=m.Range(lte=scope.ts_to_ns / NS_PER_S))
            )
        must_not: list[Any] = []
        if scope.exclude_global_ids:
            must_not.append(
                m.FieldCondition(
                    key="global_id", match=m.MatchAny(any=sorted(scope.exclude_global_ids))
                )
            )
        if not must and not must_not:
            return None
        return m.Filter(must=must or None, must_not=must_not or None)

    def upsert(self, tracklets: Sequence[StoredTracklet]) -> None:
        """Store or replace tracklets (see :class:`reid.store.VectorStore`)."""
        if tracklets:
            self.client.upsert(
                COLLECTION,
                points=[
                    self.m.PointStruct(
                        id=point_id(t.tracklet_id),
                        vector=np.asarray(t.vector).tolist(),
                        payload=t.payload(),
                    )
                    for t in tracklets
                ],
            )

    def search(
        self, vector: np.ndarray, scope: Scope, limit: int, max_distance: float | None = None
    ) -> list[Hit]:
        """Nearest stored tracklets within ``scope`` (see :class:`reid.store.VectorStore`)."""
        res = self.client.query_points(
            COLLECTION,
            query=np.asarray(vector, np.float32).tolist(),
            query_filter=self._filter(scope),
            limit=limit,
            with_payload=True,
            score_threshold=None if max_distance is None else 1.0 - max_distance,
        )
        return [
            Hit(StoredTracklet.from_payload(p.payload or {}), 1.0 - float(p.score))
            for p in res.points
        ]

    def get(self, tracklet_ids: Sequence[str], with_vectors: bool = False) -> list[StoredTracklet]:
        """Stored tracklets by id (see :class:`reid.store.VectorStore`)."""
        if not tracklet_ids:
            return []
        recs = self.client.retrieve(COLLECTION, [point_id(t) for t in tracklet_ids], with_payload=True,
                                    with_vectors=with_vectors)  # fmt: skip
        return [
            StoredTracklet.from_payload(r.payload or {}, r.vector if with_vectors else None)
            for r in recs
        ]  # type: ignore[arg-type]

    def set_global_ids(self, assignment: dict[str, str]) -> None:
        """Write new global ids onto stored tracklets."""
        for tid, gid in assignment.items():
            self.client.set_payload(COLLECTION, payload={"global_id": gid}, points=[point_id(tid)])

    def scroll(self, scope: Scope, with_vectors: bool = False) -> Iterator[StoredTracklet]:
        """Every stored tracklet within ``scope``."""
        offset = None
        while True:
            recs, offset = self.client.scroll(COLLECTION, scroll_filter=self._filter(scope), limit=SCROLL_PAGE,
                                              offset=offset, with_payload=True, with_vectors=with_vectors)  # fmt: skip
            for r in recs:
                yield StoredTracklet.from_payload(
                    r.payload or {}, r.vector if with_vectors else None
                )  # type: ignore[arg-type]
            if offset is None:
                return

    def count(self) -> int:
        """Number of stored tracklets."""
        return int(self.client.count(COLLECTION, exact=True).count)

    def close(self) -> None:
        """Flush and close the store."""
        self.client.close()


def open_store(
    kind: str, path: Path | None, dim: int, url: str | None = None, api_key: str | None = None
) -> VectorStore:
    """A store by kind: ``edge`` or ``local`` (embedded, at ``path``) or ``server`` (``url``)."""
    if kind == "edge":
        if path is None:
            raise ValueError("the embedded store needs a path")
        return EdgeStore(path, dim)
    if kind == "local":
        if path is None:
            raise ValueError("the local-mode store needs a path")
        return ClientStore(dim, path=path)
    if kind == "server":
        if not url:
            raise ValueError("the server store needs a URL")
        return ClientStore(dim, url=url, api_key=api_key)
    raise ValueError(f"unknown store kind {kind!r} (edge, local, server)")


class LockedStore:
    """A store shared by threads (the stage's worker and the API's): one call at a time.

    The embedded engines open in one process and are not documented as safe
    for concurrent calls, so every call takes the lock. ``scroll`` is drained
    into a list under the lock.
    """

    def __init__(self, inner: VectorStore) -> None:

        self.inner = inner
        self.kind = inner.kind
        self._lock = threading.RLock()

    def upsert(self, tracklets: Sequence[StoredTracklet]) -> None:
        """Store or replace tracklets, under the lock."""
        with self._lock:
            self.inner.upsert(tracklets)

    def search(
        self, vector: np.ndarray, scope: Scope, limit: int, max_distance: float | None = None
    ) -> list[Hit]:
        """Nearest stored tracklets within ``scope``, under the lock."""
        with self._lock:
            return self.inner.search(vector, scope, limit, max_distance)

    def get(self, tracklet_ids: Sequence[str], with_vectors: bool = False) -> list[StoredTracklet]:
        """Stored tracklets by id, under the lock."""
        with self._lock:
            return self.inner.get(tracklet_ids, with_vectors)

    def set_global_ids(self, assignment: dict[str, str]) -> None:
        """Write new global ids onto stored tracklets, under the lock."""
        with self._lock:
            self.inner.set_global_ids(assignment)

    def scroll(self, scope: Scope, with_vectors: bool = False) -> Iterator[StoredTracklet]:
        """Every stored tracklet within ``scope``, under the lock."""
        with self._lock:
            items = list(self.inner.scroll(scope, with_vectors))
        return iter(items)

    def count(self) -> int:
        """Number of stored tracklets, under the lock."""
        with self._lock:
            return self.inner.count()

    def close(self) -> None:
        """Flush and close the store, under the lock."""
        with self._lock:
            self.inner.close()
