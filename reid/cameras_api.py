"""Cameras at runtime: the ReID API's admin routes over the camera registry, and the ReID
stage following it (included by :func:`reid.api.create_app` when the registry is on).

admin (all audited; a camera's ``source`` is write-only: never in an answer):
* ``GET /api/registry`` — cameras with ``enabled`` and ``has_source``, links, version
* ``POST /api/registry/cameras`` ``{id, name, source, location, enabled}`` — 201; 409 taken
* ``PATCH /api/registry/cameras/{id}`` ``{name?, source?, location?, enabled?}``
* ``DELETE /api/registry/cameras/{id}`` — the camera and its links (its sightings stay)
* ``PUT /api/registry/links`` ``{a, b, min_transit_s, max_transit_s}`` — add or replace
* ``DELETE /api/registry/links/{a}/{b}``

The runner starts or stops the camera's ingest within a second or so; the
ReID stage swaps its topology at once (this process) or on its next poll.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Body, Depends, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException

from reid.topology import Topology
from schemas.cameras import Camera, Link, Location
from schemas.messages import CAMERA_ID_PATTERN
from service.auth import Role, TokenInfo
from service.camera_registry import CameraRegistry, Entry, RegistryError, UnknownCamera
from service.web import audit, require

log = logging.getLogger(__name__)

POLL_S = 1.0
Admin = Annotated[TokenInfo, Depends(require(Role.admin))]
CameraIdPath = Annotated[str, PathParam(pattern=CAMERA_ID_PATTERN)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NewCamera(_Body):
    """``POST /api/registry/cameras`` body."""

    id: str = Field(pattern=CAMERA_ID_PATTERN)
    name: str = Field("", max_length=200)
    source: str = Field(
        "", max_length=2048, description="RTSP/HTTP(S) URL or absolute file path; write-only"
    )
    location: Location = Field(default_factory=Location)
    enabled: bool = True


class CameraChange(_Body):
    """``PATCH /api/registry/cameras/{id}`` body (only the fields given change)."""

    name: str | None = Field(None, max_length=200)
    source: str | None = Field(None, max_length=2048)
    location: Location | None = None
    enabled: bool | None = None


class TopologyFollower:
    """Keeps the ReID stage's topology equal to the registry's (polls its version).

    Args:
        registry: the camera registry.
        apply: swaps a new topology in (the service does it under the stage's lock).
    """

    def __init__(self, registry: CameraRegistry, apply: Callable[[Topology], None]) -> None:
        self.registry = registry
        self.apply = apply
        self.seen = -1
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> bool:
        """Reload when the registry changed; True when it did."""
        version = self.registry.version()
        if version == self.seen:
            return False
        topology = Topology(self.registry.spec())
        self.apply(topology)
        self.seen = version
        log.info("topology_reloaded", extra={"version": version, "cameras": len(topology.cameras),
                                             "links": len(topology.spec.links)})  # fmt: skip
        return True

    def start(self) -> None:
        """Poll in a daemon thread until :meth:`stop`."""

        def loop() -> None:
            while not self._stop.wait(POLL_S):
                try:
                    self.refresh()
                except Exception as exc:  # noqa: BLE001 - Redis down: keep the last topology
                    log.warning("topology_reload_failed", extra={"error": repr(exc)})

        self._thread = threading.Thread(target=loop, name="topology-follower", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()


def cameras_router(registry: CameraRegistry, follower: TopologyFollower) -> APIRouter:
    """The routes in the module docstring."""
    router = APIRouter()

    async def change(request: Request, who: TokenInfo, action: str, ids: list[str], fn: Callable[[], Any],
                     status: int = 200) -> Any:  # fmt: skip
        try:
            out = await anyio.to_thread.run_sync(fn)
        except UnknownCamera as exc:
            audit(request, who, action, ids, 404, {})
            raise HTTPException(404, f"unknown camera or link {str(exc.args[0])[:80]!r}") from None
        except (RegistryError, ValidationError) as exc:
            code = 409 if "exists" in str(exc) else 422
            audit(request, who, action, ids, code, {})
            raise HTTPException(code, f"refused: {str(exc)[:300]}") from None
        await anyio.to_thread.run_sync(follower.refresh)
        audit(request, who, action, ids, status, {})
        return out

    @router.get("/api/registry", tags=["admin"])
    def registry_view(request: Request, who: Admin) -> dict[str, Any]:
        entries = registry.entries()
        audit(request, who, "registry.view", list(entries)[:1000], 200, {})
        return {"version": registry.version(), "window_s": registry.window_s(),
                "cameras": [e.public() for e in entries.values()],
                "links": [lk.model_dump() for lk in registry.links()]}  # fmt: skip

    @router.post("/api/registry/cameras", tags=["admin"], status_code=201)
    async def add_camera(
        request: Request, who: Admin, body: Annotated[NewCamera, Body()]
    ) -> dict[str, Any]:
        cam = Camera(id=body.id, name=body.name, source=body.source, location=body.location)
        entry: Entry = await change(request, who, "camera.add", [body.id],
                                    lambda: registry.add(cam, body.enabled), 201)  # fmt: skip
        return entry.public()

    @router.patch("/api/registry/cameras/{camera_id}", tags=["admin"])
    async def edit_camera(
        request: Request, who: Admin, camera_id: CameraIdPath, body: Annotated[CameraChange, Body()]
    ) -> dict[str, Any]:
        changes = body.model_dump(exclude_none=True)
        if "location" in changes:
            changes["location"] = body.location
        entry: Entry = await change(request, who, "camera.edit", [camera_id],
                                    lambda: registry.update(camera_id, **changes))  # fmt: skip
        return entry.public()

    @router.delete("/api/registry/cameras/{camera_id}", tags=["admin"])
    async def remove_camera(
        request: Request, who: Admin, camera_id: CameraIdPath
    ) -> dict[str, Any]:
        entry: Entry = await change(request, who, "camera.remove", [camera_id],
                                    lambda: registry.remove(camera_id))  # fmt: skip
        return {"removed": entry.public()}

    @router.put("/api/registry/links", tags=["admin"])
    async def set_link(
        request: Request, who: Admin, body: Annotated[dict[str, Any], Body()]
    ) -> dict[str, Any]:
        def make() -> Link:
            return registry.set_link(Link.model_validate(body))

        link: Link = await change(
            request,
            who,
            "link.set",
            [str(body.get("a", ""))[:64], str(body.get("b", ""))[:64]],
            make,
        )
        return link.model_dump()

    @router.delete("/api/registry/links/{a}/{b}", tags=["admin"])
    async def remove_link(
        request: Request, who: Admin, a: CameraIdPath, b: CameraIdPath
    ) -> dict[str, Any]:
        await change(request, who, "link.remove", [a, b], lambda: registry.remove_link(a, b))
        return {"removed": {"a": a, "b": b}}

    return router
