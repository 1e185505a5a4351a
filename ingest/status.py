"""The camera's status in Redis: hash ``crosscam:camera:<id>`` with a TTL.

Fields: state (connecting/online/offline/ended), last_frame_ns, fps_measured
(frames/s from the camera), fps_published, reconnects, frames_captured,
frames_published, frames_dropped (every reason), frames_dropped_backlog (the
outbox was full: Kafka could not take frames for longer than the outbox holds),
last_error, source, pid, updated_ns. The TTL is
refreshed with every write, so a camera whose ingest process died vanishes.
Redis outages are logged and counted, never fatal: the client reconnects on
the next write.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from ingest.capture import SourceStats
from schemas.keys import camera_status_key

log = logging.getLogger(__name__)

# Socket timeouts of the status client: a hung Redis must not stall ingest.
REDIS_SOCKET_TIMEOUT_S = 2.0


def status_fields(
    stats: SourceStats,
    *,
    source: str,
    frames_published: int,
    frames_dropped: int,
    fps_published: float,
    frames_dropped_backlog: int = 0,
    now_ns: int,
    state: str | None = None,
) -> dict[str, str]:
    """The hash written for one camera (all values as strings)."""
    return {
        "state": state or str(stats.state),
        "last_frame_ns": str(stats.last_frame_ns),
        "fps_measured": f"{stats.fps_measured:.2f}",
        "fps_published": f"{fps_published:.2f}",
        "reconnects": str(stats.reconnects),
        "frames_captured": str(stats.captured),
        "frames_published": str(frames_published),
        "frames_dropped": str(frames_dropped),
        "frames_dropped_backlog": str(frames_dropped_backlog),
        "last_error": stats.error,
        "source": source,
        "pid": str(os.getpid()),
        "updated_ns": str(now_ns),
    }


def redis_client(url: str) -> Redis:
    """An asyncio Redis client with short socket timeouts (it reconnects by itself)."""
    client: Redis = Redis.from_url(
        url,
        socket_timeout=REDIS_SOCKET_TIMEOUT_S,
        socket_connect_timeout=REDIS_SOCKET_TIMEOUT_S,
        health_check_interval=10,
    )
    return client


class StatusWriter:
    """Writes one camera's status; ``ttl_s`` is how long it outlives the last write."""

    def __init__(self, client: Redis, camera_id: str, ttl_s: int, on_error: Any = None) -> None:
        self.client = client
        self.key = camera_status_key(camera_id)
        self.ttl_s = ttl_s
        self.on_error = on_error
        self.failing = False

    async def write(self, fields: dict[str, str]) -> bool:
        """HSET + EXPIRE in one transaction; False (logged once per outage) on failure."""
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.hset(self.key, mapping=fields)  # type: ignore[arg-type]
                pipe.expire(self.key, self.ttl_s)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            if self.on_error is not None:
                self.on_error()
            if not self.failing:
                log.warning("status_write_failed", extra={"key": self.key, "error": repr(exc)})
            self.failing = True
            return False
        if self.failing:
            log.info("status_write_recovered", extra={"key": self.key})
        self.failing = False
        return True
