"""The camera registry: the site's cameras and links in Redis, changed at runtime.

The cameras file stays the way to declare a site as code: it *seeds* the
registry once (the first ``crosscam run`` against an empty registry). From
then on the registry is the truth: the ReID API's admin routes add, edit,
disable and remove cameras and links; the runner (``crosscam run``) starts and
stops ingest processes to match; the ReID stage reloads its topology. Every
change bumps a version number, which is what the others poll (cheap: one GET).

Key layout (see :mod:`schemas.keys`):

* ``crosscam:cameras`` — hash: camera id → JSON ``{"camera": Camera, "enabled": bool}``
  (the camera's ``source`` is here, and only here; the API never returns it);
* ``crosscam:cameras:links`` — hash: ``a|b`` (a < b) → JSON :class:`schemas.cameras.Link`;
* ``crosscam:cameras:meta`` — hash: ``window_s``, ``version``, ``seeded_from``.

Redis runs without persistence in the local stack: there a Redis restart
loses runtime changes, and the next ``crosscam run`` seeds from the cameras
file again. Production Redis should keep its data (AOF), as for tokens and the audit trail.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from schemas.cameras import Camera, CamerasFile, Link
from schemas.keys import CAMERA_LINKS_KEY, CAMERA_META_KEY, CAMERA_REGISTRY_KEY

ALLOWED_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://")
MAX_SOURCE = 2048
MAX_CAMERAS = 256
"""Most cameras a registry holds (bounded per-camera work and metric series)."""


class RegistryError(ValueError):
    """A change the registry refuses (unknown camera, duplicate id, bad source or link)."""


class UnknownCamera(RegistryError, KeyError):
    """No camera (or link) with that id."""


@dataclass(frozen=True)
class Entry:
    """One registered camera and whether its ingest should run."""

    camera: Camera
    enabled: bool = True

    def to_json(self) -> str:
        return json.dumps({"camera": self.camera.model_dump(), "enabled": self.enabled})

    @classmethod
    def from_json(cls, text: str | bytes) -> Entry:
        doc = json.loads(text)
        return cls(Camera.model_validate(doc["camera"]), bool(doc.get("enabled", True)))

    def public(self) -> dict[str, Any]:
        """What the API shows: never the source (it may carry a password), only whether one is set."""
        cam = self.camera
        return {"id": cam.id, "name": cam.name, "location": cam.location.model_dump(),
                "enabled": self.enabled, "has_source": bool(cam.source)}  # fmt: skip


def check_source(source: str) -> str:
    """A camera source: an RTSP/HTTP(S) URL, or an absolute path of an existing file."""
    if not source:
        return source
    if len(source) > MAX_SOURCE or any(ord(c) < 32 for c in source):
        raise RegistryError("source: too long or holds control characters")
    if source.startswith(ALLOWED_SCHEMES):
        return source
    if "://" in source:
        raise RegistryError(f"source: scheme must be one of {', '.join(ALLOWED_SCHEMES)}")
    path = Path(source)
    if not path.is_absolute() or not path.is_file():
        raise RegistryError("source: a file source must be an absolute path of an existing file")
    return source


def _link_key(a: str, b: str) -> str:
    return f"{a}|{b}" if a <= b else f"{b}|{a}"


class CameraRegistry:
    """Reads and changes the registry in Redis (see the module docstring)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    # --- reading ----------------------------------------------------------------------

    def version(self) -> int:
        """The change counter (0: never seeded nor changed)."""
        v = self.client.hget(CAMERA_META_KEY, "version")
        return int(v) if v is not None else 0  # type: ignore[arg-type]

    def entries(self) -> dict[str, Entry]:
        """Every registered camera, by id."""
        raw: Any = self.client.hgetall(CAMERA_REGISTRY_KEY)
        out = {e.camera.id: e for e in map(Entry.from_json, raw.values())}
        return dict(sorted(out.items()))

    def links(self) -> list[Link]:
        """Every registered link."""
        raw: Any = self.client.hgetall(CAMERA_LINKS_KEY)
        return sorted(
            (Link.model_validate_json(v) for v in raw.values()), key=lambda lk: (lk.a, lk.b)
        )

    def window_s(self, default: float = 120.0) -> float:
        v = self.client.hget(CAMERA_META_KEY, "window_s")
        return float(v) if v is not None else default  # type: ignore[arg-type]

    def spec(self) -> CamerasFile:
        """The registry as a cameras file (every camera, enabled or not: old sightings stay linkable)."""
        return CamerasFile(window_s=self.window_s(),
                           cameras=[e.camera for e in self.entries().values()], links=self.links())  # fmt: skip

    # --- changing ---------------------------------------------------------------------

    def seed(self, spec: CamerasFile, base_dir: Path | None, origin: str) -> bool:
        """Fill an empty registry from a cameras file (relative file sources made absolute).
        False (nothing written) when it was already seeded or changed."""
        if not self.client.hsetnx(CAMERA_META_KEY, "seeded_from", origin[:512]):
            return False
        pipe = self.client.pipeline()
        for cam in spec.cameras:
            src = cam.source
            if src and "://" not in src and base_dir is not None and not Path(src).is_absolute():
                src = str((base_dir / src).resolve())
            pipe.hset(
                CAMERA_REGISTRY_KEY, cam.id, Entry(cam.model_copy(update={"source": src})).to_json()
            )
        for lk in spec.links:
            pipe.hset(CAMERA_LINKS_KEY, _link_key(lk.a, lk.b), lk.model_dump_json())
        pipe.hset(CAMERA_META_KEY, "window_s", repr(spec.window_s))
        pipe.hincrby(CAMERA_META_KEY, "version", 1)
        pipe.execute()
        return True

    def add(self, camera: Camera, enabled: bool = True) -> Entry:
        """Register a new camera (RegistryError when the id is taken or the registry is full)."""
        check_source(camera.source)
        if self.client.hlen(CAMERA_REGISTRY_KEY) >= MAX_CAMERAS:
            raise RegistryError(f"the registry holds {MAX_CAMERAS} cameras already")
        entry = Entry(camera, enabled)
        if not self.client.hsetnx(CAMERA_REGISTRY_KEY, camera.id, entry.to_json()):
            raise RegistryError(f"camera {camera.id!r} exists")
        self._bump()
        return entry

    def update(self, camera_id: str, **changes: Any) -> Entry:
        """Change a camera's name, source, location or enabled flag (UnknownCamera when absent)."""
        old = self.get(camera_id)
        enabled = changes.pop("enabled", old.enabled)
        if "source" in changes:
            check_source(changes["source"])
        cam = Camera.model_validate({**old.camera.model_dump(), **changes})
        entry = Entry(cam, bool(enabled))
        self.client.hset(CAMERA_REGISTRY_KEY, camera_id, entry.to_json())
        self._bump()
        return entry

    def get(self, camera_id: str) -> Entry:
        raw: Any = self.client.hget(CAMERA_REGISTRY_KEY, camera_id)
        if raw is None:
            raise UnknownCamera(camera_id)
        return Entry.from_json(raw)

    def remove(self, camera_id: str) -> Entry:
        """Unregister a camera and its links (its stored sightings stay)."""
        old = self.get(camera_id)
        pipe = self.client.pipeline()
        pipe.hdel(CAMERA_REGISTRY_KEY, camera_id)
        for lk in self.links():
            if camera_id in (lk.a, lk.b):
                pipe.hdel(CAMERA_LINKS_KEY, _link_key(lk.a, lk.b))
        pipe.execute()
        self._bump()
        return old

    def set_link(self, link: Link) -> Link:
        """Add or replace the link between two registered cameras."""
        ids = self.client.hkeys(CAMERA_REGISTRY_KEY)
        known = {k.decode() if isinstance(k, bytes) else k for k in ids}  # type: ignore[union-attr]
        for cam in (link.a, link.b):
            if cam not in known:
                raise UnknownCamera(cam)
        self.client.hset(CAMERA_LINKS_KEY, _link_key(link.a, link.b), link.model_dump_json())
        self._bump()
        return link

    def remove_link(self, a: str, b: str) -> None:
        if not self.client.hdel(CAMERA_LINKS_KEY, _link_key(a, b)):
            raise UnknownCamera(f"{a}|{b}")
        self._bump()

    def _bump(self) -> None:
        self.client.hsetnx(CAMERA_META_KEY, "seeded_from", "api")
        self.client.hincrby(CAMERA_META_KEY, "version", 1)
