"""The vector store: tracklet vectors and payloads, behind one small interface.

Qdrant only, three ways to run it:

* ``edge`` (default) — qdrant-edge-py: Qdrant's own engine embedded in the
  process, on disk, no server. Chosen as the default by measurement
  (``crosscam bench store --json``): its filtered top-k answers in
  milliseconds where qdrant-client's local mode scans in Python.
* ``local`` — qdrant-client's local mode (``QdrantClient(path=...)``): pure
  Python, simple, slow at scale; kept for comparison and as a fallback.
* ``server`` — a Qdrant server through qdrant-client (production,
  docker-compose), when a URL is configured.

One point per tracklet. Its id is ``uuid5(tracklet_id)``, so a replayed
tracklet overwrites its earlier copy. Payload: ``tracklet_id``, ``camera``,
``ts_start_s``/``ts_end_s`` (float seconds, indexed) and the exact
``ts_start_ns``/``ts_end_ns``, ``global_id`` (indexed), ``thumbnail_ref``,
``shots`` (the per-crop vectors as base64 float16) and ``neighbours`` (the
distances computed at upsert: tracklet id → distance). Indexes on camera,
time and global id.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

POINT_NAMESPACE = uuid.UUID("6b1f3c2e-8f0e-4d8a-9a59-3c1e2f7d0a11")
"""Namespace of the uuid5 point ids (fixed forever: changing it duplicates every point)."""

COLLECTION = "crosscam_tracklets"
SCROLL_PAGE = 256
NS = 1_000_000_000


def point_id(tracklet_id: str) -> str:
    """The Qdrant point id of a tracklet: deterministic, so a replay overwrites."""
    return str(uuid.uuid5(POINT_NAMESPACE, tracklet_id))


def pack_shots(shots: np.ndarray) -> str:
    """(K, D) vectors as base64 float16 (half the bytes; cosine error ≈ 1e-3)."""
    if shots.size == 0:
        return ""
    return f"{shots.shape[1]}:" + base64.b64encode(np.asarray(shots, "<f2").tobytes()).decode()


def unpack_shots(text: str) -> np.ndarray:
    """Inverse of :func:`pack_shots`: (K, D) float32."""
    if not text:
        return np.zeros((0, 0), np.float32)
    dim, data = text.split(":", 1)
    return np.frombuffer(base64.b64decode(data), "<f2").astype(np.float32).reshape(-1, int(dim))


@dataclass
class StoredTracklet:
    """One point: a tracklet's vector and what the linker and the gallery need about it."""

    tracklet_id: str
    camera_id: str
    ts_start_ns: int
    ts_end_ns: int
    global_id: str
    vector: np.ndarray | None = None
    shots: np.ndarray | None = None
    thumbnail_ref: str = ""
    neighbours: dict[str, float] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        return {
            "tracklet_id": self.tracklet_id,
            "camera": self.camera_id,
            "ts_start_s": self.ts_start_ns / NS,
            "ts_end_s": self.ts_end_ns / NS,
            "ts_start_ns": self.ts_start_ns,
            "ts_end_ns": self.ts_end_ns,
            "global_id": self.global_id,
            "thumbnail_ref": self.thumbnail_ref,
            "shots": pack_shots(self.shots) if self.shots is not None else "",
            "neighbours": {k: round(float(v), 5) for k, v in self.neighbours.items()},
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any] | None, vector: Any = None) -> StoredTracklet:
        """From a point's payload (and its dense vector, when fetched)."""
        if payload is None:
            raise ValueError("point has no payload: not written by crosscam")
        return cls(
            tracklet_id=payload["tracklet_id"],
            camera_id=payload["camera"],
            ts_start_ns=int(payload["ts_start_ns"]),
            ts_end_ns=int(payload["ts_end_ns"]),
            global_id=payload.get("global_id", ""),
            vector=None if vector is None else np.asarray(vector, np.float32),
            shots=unpack_shots(payload.get("shots", "")),
            thumbnail_ref=payload.get("thumbnail_ref", ""),
            neighbours=dict(payload.get("neighbours") or {}),
        )


@dataclass(frozen=True)
class Hit:
    """A search result: a stored tracklet and its cosine distance to the query."""

    tracklet: StoredTracklet
    distance: float


@dataclass(frozen=True)
class Scope:
    """Search filter: cameras (None = any), a time range the tracklet must overlap, global ids."""

    cameras: frozenset[str] | None = None
    ts_from_ns: int | None = None
    ts_to_ns: int | None = None
    global_ids: frozenset[str] | None = None
    exclude_global_ids: frozenset[str] | None = None


class VectorStore(Protocol):
    """What the ReID engine and API need from a vector store."""

    kind: str

    def upsert(self, tracklets: Sequence[StoredTracklet]) -> None:
        """Insert or overwrite (same tracklet id = same point)."""

    def search(
        self, vector: np.ndarray, scope: Scope, limit: int, max_distance: float | None = None
    ) -> list[Hit]:
        """Nearest stored tracklets within ``scope``, closest first."""

    def get(self, tracklet_ids: Sequence[str], with_vectors: bool = False) -> list[StoredTracklet]:
        """Stored tracklets by id (missing ones left out)."""

    def set_global_ids(self, assignment: dict[str, str]) -> None:
        """Rewrite the global id of stored tracklets (after a merge or split)."""

    def scroll(self, scope: Scope, with_vectors: bool = False) -> Iterator[StoredTracklet]:
        """Every stored tracklet within ``scope`` (any order)."""

    def count(self) -> int:
        """Points stored."""

    def close(self) -> None:
        """Flush and release."""


# --- qdrant-edge ---------------------------------------------------------------------------


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
                qe.FieldCondition("ts_end_s", range=qe.RangeFloat(gte=scope.ts_from_ns / NS))
            )
        if scope.ts_to_ns is not None:
            must.append(
                qe.FieldCondition("ts_start_s", range=qe.RangeFloat(lte=scope.ts_to_ns / NS))
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
        if not tracklet_ids:
            return []
        recs = self.shard.retrieve(
            [point_id(t) for t in tracklet_ids], with_payload=True, with_vector=with_vectors
        )
        return [
            StoredTracklet.from_payload(r.payload, r.vector if with_vectors else None) for r in recs
        ]

    def set_global_ids(self, assignment: dict[str, str]) -> None:
        qe = self._qe
        for tid, gid in assignment.items():
            self.shard.update(qe.UpdateOperation.set_payload([point_id(tid)], {"global_id": gid}))

    def scroll(self, scope: Scope, with_vectors: bool = False) -> Iterator[StoredTracklet]:
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
        return int(self.shard.count(self._qe.CountRequest(exact=True)))

    def close(self) -> None:
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
            must.append(m.FieldCondition(key="ts_end_s", range=m.Range(gte=scope.ts_from_ns / NS)))
        if scope.ts_to_ns is not None:
            must.append(m.FieldCondition(key="ts_start_s", range=m.Range(lte=scope.ts_to_ns / NS)))
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
        if not tracklet_ids:
            return []
        recs = self.client.retrieve(COLLECTION, [point_id(t) for t in tracklet_ids], with_payload=True,
                                    with_vectors=with_vectors)  # fmt: skip
        return [
            StoredTracklet.from_payload(r.payload or {}, r.vector if with_vectors else None)
            for r in recs
        ]  # type: ignore[arg-type]

    def set_global_ids(self, assignment: dict[str, str]) -> None:
        for tid, gid in assignment.items():
            self.client.set_payload(COLLECTION, payload={"global_id": gid}, points=[point_id(tid)])

    def scroll(self, scope: Scope, with_vectors: bool = False) -> Iterator[StoredTracklet]:
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
        return int(self.client.count(COLLECTION, exact=True).count)

    def close(self) -> None:
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


def ids_of(tracklets: Iterable[StoredTracklet]) -> list[str]:
    return [t.tracklet_id for t in tracklets]


class LockedStore:
    """A store shared by threads (the stage's worker and the API's): one call at a time.

    The embedded engines open in one process and are not documented as safe
    for concurrent calls, so every call takes the lock. ``scroll`` is drained
    into a list under the lock.
    """

    def __init__(self, inner: VectorStore) -> None:
        import threading

        self.inner = inner
        self.kind = inner.kind
        self._lock = threading.RLock()

    def upsert(self, tracklets: Sequence[StoredTracklet]) -> None:
        with self._lock:
            self.inner.upsert(tracklets)

    def search(
        self, vector: np.ndarray, scope: Scope, limit: int, max_distance: float | None = None
    ) -> list[Hit]:
        with self._lock:
            return self.inner.search(vector, scope, limit, max_distance)

    def get(self, tracklet_ids: Sequence[str], with_vectors: bool = False) -> list[StoredTracklet]:
        with self._lock:
            return self.inner.get(tracklet_ids, with_vectors)

    def set_global_ids(self, assignment: dict[str, str]) -> None:
        with self._lock:
            self.inner.set_global_ids(assignment)

    def scroll(self, scope: Scope, with_vectors: bool = False) -> Iterator[StoredTracklet]:
        with self._lock:
            items = list(self.inner.scroll(scope, with_vectors))
        return iter(items)

    def count(self) -> int:
        with self._lock:
            return self.inner.count()

    def close(self) -> None:
        with self._lock:
            self.inner.close()
