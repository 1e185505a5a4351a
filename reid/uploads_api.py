"""Uploads of recorded videos: the ReID API's routes (with the camera registry on).

operator (audited):
* ``POST /api/uploads?camera=&start_ns=&name=&x=&y=`` — the body is the video
  (any container ffprobe reads; at most ``[web] upload_max_bytes``: 413 above;
  415 when ffprobe finds no video; nothing is kept after a refusal). A camera
  not yet registered is added (no live source). 409 while the camera has a
  live source enabled or another upload of it is still replaying.
* ``GET /api/uploads`` — every upload with its replay's progress
  (``frames_read`` of ``frames_total``, ``state``); never the stored path.
"""

from __future__ import annotations

import contextlib
import math
import secrets
import time
from pathlib import Path
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Query, Request
from starlette.exceptions import HTTPException

from schemas.cameras import Camera, Location
from schemas.keys import camera_status_key
from schemas.messages import CAMERA_ID_PATTERN
from service.auth import Role, TokenInfo
from service.camera_registry import CameraRegistry, UnknownCamera
from service.uploads import NotAVideo, Upload, UploadStore, probe_video
from service.web import UPLOAD_PATH, audit, require

Operator = Annotated[TokenInfo, Depends(require(Role.operator))]
MAX_NS = 2**63 - 1
CHUNK_LOG_EVERY = 1 << 20


def uploads_router(registry: CameraRegistry, store: UploadStore, folder: Path) -> APIRouter:
    """The routes in the module docstring; files are kept in ``folder``."""
    router = APIRouter()

    @router.get(UPLOAD_PATH, tags=["operator"])
    def list_uploads(request: Request, who: Operator) -> list[dict[str, Any]]:
        rows = []
        for up in store.all():
            raw: Any = registry.client.hgetall(camera_status_key(up.camera_id))
            status = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
                      for k, v in raw.items()}  # fmt: skip
            rows.append(up.public(status))
        audit(request, who, "upload.list", [r["upload_id"] for r in rows][:1000], 200, {})
        return rows

    @router.post(UPLOAD_PATH, tags=["operator"], status_code=201)
    async def upload(
        request: Request, who: Operator,
        camera: Annotated[str, Query(pattern=CAMERA_ID_PATTERN)],
        start_ns: Annotated[int, Query(ge=0, le=MAX_NS, description="the recording's first frame, ns")],
        name: Annotated[str, Query(max_length=200)] = "",
        x: float | None = None, y: float | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        if any(v is not None and not math.isfinite(v) for v in (x, y)):
            raise HTTPException(422, "bad parameter x/y: finite numbers only")
        params = {"camera": camera, "start_ns": str(start_ns)}
        refusal = await anyio.to_thread.run_sync(_busy, registry, store, camera)
        if refusal:
            audit(request, who, "upload", [camera], 409, params)
            raise HTTPException(409, refusal)
        folder.mkdir(parents=True, exist_ok=True)
        upload_id = f"u{time.strftime('%Y%m%d%H%M%S')}-{secrets.token_hex(4)}"
        part = folder / f".part-{upload_id}"
        kept: Path | None = None
        try:
            size = await _receive(request, part)
            if size == 0:
                raise HTTPException(422, "bad request: the body must be the video file")
            try:
                probe = await anyio.to_thread.run_sync(probe_video, str(part))
            except NotAVideo as exc:
                audit(request, who, "upload", [camera], 415, params)
                raise HTTPException(415, f"not a video: {exc}") from None
            kept = folder / f"{upload_id}{probe.suffix}"
            part.rename(kept)
            up = Upload(upload_id, camera, str(kept), start_ns, probe.frames, probe.fps,
                        probe.duration_s, time.time_ns(), who.name)  # fmt: skip
            await anyio.to_thread.run_sync(_register, registry, store, up, name, x, y)
        except BaseException:
            part.unlink(missing_ok=True)  # nothing left behind on a refusal (413 included)
            if kept is not None:
                kept.unlink(missing_ok=True)
            raise
        audit(request, who, "upload", [upload_id, camera], 201, params)
        return up.public()

    return router


async def _receive(request: Request, part: Path) -> int:
    """Stream the body to ``part``; its size (the web guard stops it past the cap: 413)."""
    size = 0
    with part.open("wb") as fh:
        async for chunk in request.stream():
            if chunk:
                size += len(chunk)
                await anyio.to_thread.run_sync(fh.write, chunk)
    return size


def _busy(registry: CameraRegistry, store: UploadStore, camera: str) -> str:
    """Why ``camera`` cannot take a recording now ('' when it can)."""
    with contextlib.suppress(UnknownCamera):
        e = registry.get(camera)
        if e.enabled and e.camera.source:
            return f"camera {camera!r} has a live source enabled: disable it first"
    if any(u.camera_id == camera and u.state != "done" for u in store.all()):
        return f"an upload of camera {camera!r} is still replaying"
    return ""


def _register(registry: CameraRegistry, store: UploadStore, up: Upload, name: str,
              x: float | None, y: float | None) -> None:  # fmt: skip
    try:
        registry.get(up.camera_id)
    except UnknownCamera:
        registry.add(Camera(id=up.camera_id, name=name, location=Location(x=x, y=y)))
    store.add(up)
