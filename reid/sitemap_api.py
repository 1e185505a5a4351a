"""The site plan in the ReID service: its routes, its Redis record, the projection at upsert.

viewer:
* ``GET /api/sitemap`` — the plan's size (or null) and each camera's point pairs
* ``GET /api/sitemap/plan.png`` — the plan image
admin (audited):
* ``POST /api/uploads/plan`` — the body is the plan image (JPEG/PNG/WebP, checked by
  decoding; stored re-encoded as PNG)
* ``PUT /api/sitemap/cameras/{camera}`` ``{image_points: [[x, y]...], plan_points: [[x, y]...]}``
  — four or more pairs; 422 when they cannot define a homography (:mod:`reid.sitemap`)
* ``DELETE /api/sitemap/cameras/{camera}``

Redis hash ``crosscam:sitemap`` (:mod:`schemas.keys`): ``plan`` → JSON ``{width, height}``,
``camera:<id>`` → JSON ``{image_points, plan_points, h}``. Each tracklet upserted after a
camera got its homography carries ``plan_track`` (foot points on the plan over time).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Annotated, Any

import anyio
import cv2
import numpy as np
import redis
from fastapi import APIRouter, Body, Depends, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from reid.embedding import BadImage, decode_image
from reid.sitemap import MAX_PAIRS, BadHomography, fit_homography, plan_track
from reid.topology import Topology
from schemas.keys import SITEMAP_KEY
from schemas.messages import CAMERA_ID_PATTERN, Tracklet
from service.auth import Role, TokenInfo
from service.web import UPLOAD_PATH, audit, require

Viewer = Annotated[TokenInfo, Depends(require(Role.viewer))]
Admin = Annotated[TokenInfo, Depends(require(Role.admin))]
PLAN_MAX_PIXELS = 40_000_000
Point = Annotated[list[float], Field(min_length=2, max_length=2)]


class Pairs(BaseModel):
    """``PUT /api/sitemap/cameras/{camera}`` body."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    image_points: list[Point] = Field(min_length=4, max_length=MAX_PAIRS)
    plan_points: list[Point] = Field(min_length=4, max_length=MAX_PAIRS)


class SiteMap:
    """The plan and the homographies, in Redis and in memory (the projection reads memory)."""

    def __init__(self, client: redis.Redis, folder: Path) -> None:
        self.client = client
        self.folder = folder
        self.plan_file = folder / "plan.png"
        self._h: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()
        self.reload()

    def reload(self) -> None:
        """Homographies from Redis (at start, and after each change)."""
        raw: Any = self.client.hgetall(SITEMAP_KEY)
        hs = {}
        for k, v in raw.items():
            key = k.decode() if isinstance(k, bytes) else k
            if key.startswith("camera:"):
                hs[key.removeprefix("camera:")] = np.asarray(json.loads(v)["h"], np.float64)
        with self._lock:
            self._h = hs

    def view(self) -> dict[str, Any]:
        """What ``GET /api/sitemap`` answers."""
        raw: Any = self.client.hgetall(SITEMAP_KEY)
        doc = {(k.decode() if isinstance(k, bytes) else k): json.loads(v) for k, v in raw.items()}
        plan = doc.get("plan")
        cams = {k.removeprefix("camera:"): {"image_points": v["image_points"], "plan_points": v["plan_points"]}
                for k, v in doc.items() if k.startswith("camera:")}  # fmt: skip
        return {
            "plan": None if plan is None else {**plan, "url": "/api/sitemap/plan.png"},
            "cameras": cams,
        }

    def set_plan(self, data: bytes) -> dict[str, int]:
        """Store a plan image (BadImage when it is none)."""
        img = decode_image(data, PLAN_MAX_PIXELS)
        self.folder.mkdir(parents=True, exist_ok=True)
        ok, png = cv2.imencode(".png", img)  # re-encoded: only pixels are kept
        if not ok:
            raise BadImage("the plan could not be encoded")
        tmp = self.folder / ".plan.png.part"
        tmp.write_bytes(png.tobytes())
        tmp.replace(self.plan_file)
        plan = {"width": int(img.shape[1]), "height": int(img.shape[0])}
        self.client.hset(SITEMAP_KEY, "plan", json.dumps(plan))
        return plan

    def set_camera(self, camera: str, pairs: Pairs) -> dict[str, Any]:
        """Fit and keep a camera's homography (BadHomography when the pairs cannot)."""
        h = fit_homography(pairs.image_points, pairs.plan_points)
        rec = {
            "image_points": pairs.image_points,
            "plan_points": pairs.plan_points,
            "h": h.tolist(),
        }
        self.client.hset(SITEMAP_KEY, f"camera:{camera}", json.dumps(rec))
        self.reload()
        return rec

    def remove_camera(self, camera: str) -> bool:
        gone = bool(self.client.hdel(SITEMAP_KEY, f"camera:{camera}"))
        self.reload()
        return gone

    def track(self, t: Tracklet) -> list[list[float]]:
        """A tracklet's plan trajectory (empty when its camera has no homography)."""
        with self._lock:
            h = self._h.get(t.camera_id)
        if h is None or not t.boxes_xyxy:
            return []
        ts = t.frame_ts_ns or []
        return plan_track(h, t.boxes_array(), ts)


def sitemap_router(site: SiteMap, topology: Any) -> APIRouter:
    """The routes in the module docstring; ``topology()`` is the current :class:`Topology`."""
    router = APIRouter()

    @router.get("/api/sitemap", tags=["viewer"])
    def view(who: Viewer) -> dict[str, Any]:
        return site.view()

    @router.get("/api/sitemap/plan.png", tags=["viewer"], response_class=FileResponse)
    def plan_image(who: Viewer) -> FileResponse:
        if not site.plan_file.is_file():
            raise HTTPException(404, "no site plan")
        return FileResponse(
            site.plan_file, media_type="image/png", headers={"Cache-Control": "private, max-age=60"}
        )

    @router.post(f"{UPLOAD_PATH}/plan", tags=["admin"], status_code=201)
    async def upload_plan(request: Request, who: Admin) -> dict[str, Any]:
        data = await request.body()
        try:
            plan = await anyio.to_thread.run_sync(site.set_plan, data)
        except BadImage as exc:
            audit(request, who, "sitemap.plan", [], 415, {})
            raise HTTPException(415, f"not a usable plan image: {exc}") from None
        audit(request, who, "sitemap.plan", [], 201, {})
        return {"plan": plan}

    @router.put("/api/sitemap/cameras/{camera}", tags=["admin"])
    def set_camera(
        request: Request, who: Admin, camera: Annotated[str, PathParam(pattern=CAMERA_ID_PATTERN)],
        body: Annotated[Pairs, Body()],
    ) -> dict[str, Any]:  # fmt: skip
        topo: Topology = topology()
        if camera not in topo.cameras:
            audit(request, who, "sitemap.camera", [camera], 404, {})
            raise HTTPException(404, "unknown camera")
        try:
            rec = site.set_camera(camera, body)
        except BadHomography as exc:
            audit(request, who, "sitemap.camera", [camera], 422, {})
            raise HTTPException(422, f"bad point pairs: {exc}") from None
        audit(request, who, "sitemap.camera", [camera], 200, {})
        return {"camera": camera, "h": rec["h"]}

    @router.delete("/api/sitemap/cameras/{camera}", tags=["admin"])
    def remove_camera(
        request: Request, who: Admin, camera: Annotated[str, PathParam(pattern=CAMERA_ID_PATTERN)]
    ) -> dict[str, Any]:
        gone = site.remove_camera(camera)
        audit(request, who, "sitemap.camera.remove", [camera], 200 if gone else 404, {})
        if not gone:
            raise HTTPException(404, "this camera has no homography")
        return {"removed": camera}

    return router
