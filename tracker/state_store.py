"""Per-camera tracker state in Redis: one key per camera, whole-state writes.

``crosscam:tracker:state:<camera_id>`` holds :func:`tracker.state.dumps`
bytes. A write replaces the whole value (``SET``), so a reader never sees half
a state; a TTL lets the key of a camera that went away expire instead of
lingering. The sync client is used: the service calls it from its worker
thread, never from the event loop.
"""

from __future__ import annotations

import redis

DEFAULT_KEY_PREFIX = "crosscam:tracker:state:"


class RedisStateStore:
    """Load and save camera states.

    Args:
        client: a sync ``redis.Redis`` (bytes responses).
        key_prefix: keys are ``key_prefix + camera_id``.
        ttl_s: seconds a saved state lives after its last write (None: forever).
            Longer lets a camera that paused resume its ids after a longer
            silence, at the price of keys kept for cameras that are gone.
    """

    def __init__(
        self, client: redis.Redis, key_prefix: str = DEFAULT_KEY_PREFIX, ttl_s: int | None = None
    ) -> None:
        self.client = client
        self.key_prefix = key_prefix
        self.ttl_s = ttl_s

    @classmethod
    def from_url(
        cls,
        url: str,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        ttl_s: int | None = None,
        timeout_s: float = 5.0,
    ) -> RedisStateStore:
        """A store on a new client for ``url``; ``timeout_s`` bounds each Redis call."""
        client = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        return cls(client, key_prefix, ttl_s)

    def key(self, camera_id: str) -> str:
        """The Redis key of a camera's state."""
        return f"{self.key_prefix}{camera_id}"

    def save(self, camera_id: str, data: bytes) -> None:
        """Replace the camera's saved state with ``data``."""
        self.client.set(self.key(camera_id), data, ex=self.ttl_s)

    def load(self, camera_id: str) -> bytes | None:
        """The camera's saved state, or None when there is none."""
        value = self.client.get(self.key(camera_id))
        return None if value is None else bytes(value)  # type: ignore[arg-type]

    def delete(self, camera_id: str) -> None:
        """Forget a camera's saved state."""
        self.client.delete(self.key(camera_id))

    def close(self) -> None:
        """Close the Redis connection."""
        self.client.close()
