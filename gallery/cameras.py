"""The camera map (from the cameras file) and each camera's live status (from Redis).

The ingest stage keeps one Redis hash per camera (``ingest.status``); the
gallery only reads it. Redis being down is an ordinary state here: every
camera's status becomes ``unknown`` and the page says so.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from redis.exceptions import RedisError

from schemas.cameras import CamerasFile, load_cameras_file
from schemas.keys import camera_status_key
from service.redact import redact

log = logging.getLogger(__name__)

STATUS_FIELDS = (
    "state",
    "last_frame_ns",
    "fps_measured",
    "fps_published",
    "reconnects",
    "frames_published",
    "last_error",
    "updated_ns",
)
"""Fields of the ingest status hash the gallery shows (the rest are for operators' tools)."""

UNKNOWN = "unknown"
"""State of every camera when Redis cannot be read."""

ABSENT = "no ingest"
"""State of a camera with no status hash: no ingest process has written one lately (TTL)."""


def camera_map(spec: CamerasFile) -> dict[str, Any]:
    """The cameras file as the page draws it: cameras with map points, links, the map's bounds."""
    cameras = []
    for cam in spec.cameras:
        point = cam.location.point()
        cameras.append(
            {
                "id": cam.id,
                "name": cam.name or cam.id,
                "x": None if point is None else point[0],
                "y": None if point is None else point[1],
                "geo": cam.location.x is None and point is not None,
            }
        )
    links = [
        {"a": lk.a, "b": lk.b, "min_transit_s": lk.min_transit_s, "max_transit_s": lk.max_transit_s}
        for lk in spec.links
    ]
    return {"cameras": cameras, "links": links, "window_s": spec.window_s}


def load_camera_map(path: Path | None) -> dict[str, Any] | None:
    """The map of a cameras file, or None when no file is configured."""
    return None if path is None else camera_map(load_cameras_file(path))


@dataclass
class _Cached:
    at: float
    value: dict[str, Any]


class CameraStatusReader:
    """Reads ``crosscam:camera:<id>`` hashes, with a short cache shared by all requests.

    Args:
        url: ``redis://`` URL.
        timeout_s: connect and read timeout; past it the status is ``unknown``.
        cache_s: how long one read answers every request.
    """

    def __init__(self, url: str, timeout_s: float, cache_s: float) -> None:
        self.url = url
        self.cache_s = cache_s
        self._client = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, decode_responses=True
        )
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, ...], _Cached] = {}
        self._failing = False

    def read(self, camera_ids: list[str]) -> dict[str, Any]:
        """``{"redis": "up"|"unreachable", "error": str, "cameras": {id: {state, ...}}}``."""
        key = tuple(sorted(camera_ids))
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and now - hit.at < self.cache_s:
                return hit.value
            value = self._read(list(key))
            self._cache = {key: _Cached(now, value)}
            return value

    def _read(self, camera_ids: list[str]) -> dict[str, Any]:
        try:
            pipe = self._client.pipeline(transaction=False)
            for cam in camera_ids:
                pipe.hgetall(camera_status_key(cam))
            rows = pipe.execute()
        except (RedisError, OSError) as exc:
            if not self._failing:
                log.warning(
                    "camera_status_unreachable", extra={"url": self.url, "error": repr(exc)}
                )
            self._failing = True
            return {
                "redis": "unreachable",
                "error": "Redis (camera status) cannot be read",
                "cameras": {cam: {"state": UNKNOWN} for cam in camera_ids},
            }
        if self._failing:
            log.info("camera_status_recovered", extra={"url": self.url})
        self._failing = False
        cameras: dict[str, Any] = {}
        for cam, row in zip(camera_ids, rows, strict=True):
            if not row:
                cameras[cam] = {"state": ABSENT}
                continue
            # an ingest error may quote its camera's URL: never hand a password to a browser
            cameras[cam] = {f: redact(row[f]) for f in STATUS_FIELDS if f in row}
        return {"redis": "up", "error": "", "cameras": cameras}

    def close(self) -> None:
        """Release the connection pool."""
        self._client.close()
