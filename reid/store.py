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
from typing import Any, Protocol

import numpy as np

from common.units import NS_PER_S

POINT_NAMESPACE = uuid.UUID("6b1f3c2e-8f0e-4d8a-9a59-3c1e2f7d0a11")
"""Namespace of the uuid5 point ids (fixed forever: changing it duplicates every point)."""

COLLECTION = "crosscam_tracklets"
SCROLL_PAGE = 256


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
    plan_track: list[list[float]] = field(default_factory=list)
    """[t_ns, x, y] rows on the site plan (foot points through the camera's homography)."""

    def payload(self) -> dict[str, Any]:
        """The point's payload as stored (times also in seconds, for range filters)."""
        return {
            "tracklet_id": self.tracklet_id,
            "camera": self.camera_id,
            "ts_start_s": self.ts_start_ns / NS_PER_S,
            "ts_end_s": self.ts_end_ns / NS_PER_S,
            "ts_start_ns": self.ts_start_ns,
            "ts_end_ns": self.ts_end_ns,
            "global_id": self.global_id,
            "thumbnail_ref": self.thumbnail_ref,
            "shots": pack_shots(self.shots) if self.shots is not None else "",
            "neighbours": {k: round(float(v), 5) for k, v in self.neighbours.items()},
            "plan_track": self.plan_track,
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
            plan_track=list(payload.get("plan_track") or []),
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

    def delete(self, tracklet_ids: Sequence[str]) -> None:
        """Remove tracklets' points (vectors and payloads); unknown ids are ignored."""

    def scroll(self, scope: Scope, with_vectors: bool = False) -> Iterator[StoredTracklet]:
        """Every stored tracklet within ``scope`` (any order)."""

    def count(self) -> int:
        """Points stored."""

    def close(self) -> None:
        """Flush and release."""


# --- qdrant-edge ---------------------------------------------------------------------------


def ids_of(tracklets: Iterable[StoredTracklet]) -> list[str]:
    """The tracklet ids of ``tracklets``, in order."""
    return [t.tracklet_id for t in tracklets]
