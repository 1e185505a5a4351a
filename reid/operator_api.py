"""The ReID API's operator routes (included by :func:`reid.api.create_app`).

admin:
* ``POST /api/identities/{global_id}/split`` ``{tracklet_ids: [...]}`` — those
  tracklets leave the identity for a new one; the linker never re-links them
  with the rest (``split`` events, ``by: operator``, on the matches topic; audited)
* ``POST /api/identities/{global_id}/merge`` ``{global_ids: [...]}`` — those
  identities join this one (a ``merge`` event, ``by: operator``; audited)

operator:
* ``POST /api/search?cameras=&area=&since=&until=&limit=`` — search by example:
  the body is a person image (JPEG, PNG or WebP, checked by decoding; at most
  ``[web] max_body_bytes``), or empty with ``thumbnail=<camera>/<file>.jpg`` to
  search with a stored crop; ranked sightings and identities (audited)
"""

from __future__ import annotations

import logging
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import anyio
import numpy as np
from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from reid.api import (
    GLOBAL_ID_PATTERN,
    TRACKLET_ID_PATTERN,
    CameraList,
    Ns,
    ReidApi,
    _window,
    parse_area,
    parse_cameras,
)  # fmt: skip
from reid.corrections import ConstraintLimit, Correction
from reid.embedding import BadImage, CropEmbedder, decode_image
from reid.operator import Corrector, MatchPublisher
from reid.query import ReidQuery, by_example, by_identity
from service.auth import Role, TokenInfo
from service.web import audit, require

log = logging.getLogger(__name__)

MAX_SPLIT = 1000
MAX_MERGE = 64
GlobalId = Annotated[str, PathParam(pattern=GLOBAL_ID_PATTERN, max_length=128)]
Operator = Annotated[TokenInfo, Depends(require(Role.operator))]
Admin = Annotated[TokenInfo, Depends(require(Role.admin))]


class SplitBody(BaseModel):
    """``POST /api/identities/{global_id}/split`` body."""

    tracklet_ids: list[Annotated[str, Field(pattern=TRACKLET_ID_PATTERN)]] = Field(
        min_length=1, max_length=MAX_SPLIT, description="tracklets that are not this person"
    )


class MergeBody(BaseModel):
    """``POST /api/identities/{global_id}/merge`` body."""

    global_ids: list[Annotated[str, Field(pattern=GLOBAL_ID_PATTERN)]] = Field(
        min_length=1, max_length=MAX_MERGE, description="identities that are this person too"
    )


class Searcher:
    """Embeds example images with the service's own copy of the appearance model (lazily)."""

    def __init__(self, model_path: Path) -> None:
        self.model_path = model_path
        self._embedder: CropEmbedder | None = None
        self._lock = threading.Lock()

    def vector(self, image_bgr: np.ndarray) -> np.ndarray:
        """The image's (512,) unit vector."""
        with self._lock:
            if self._embedder is None:
                self._embedder = CropEmbedder(self.model_path)
            return self._embedder.embed([image_bgr])[0]


class OperatorApi:
    """What the operator routes need: the ReID API, the corrector, a publisher, a searcher."""

    def __init__(
        self, api: ReidApi, corrector: Corrector | None, publisher: MatchPublisher | None,
        searcher: Searcher | None,
    ) -> None:  # fmt: skip
        self.api = api
        self.corrector = corrector
        self.publisher = publisher
        self.searcher = searcher

    async def publish(self, fix: Correction) -> bool:
        """Send a correction's events; False (logged) when Kafka did not take them."""
        if self.publisher is None:
            return False
        try:
            await self.publisher.send(fix.events)
        except Exception as exc:  # noqa: BLE001 - the correction stands; say so in the answer
            log.warning("operator_event_unpublished", extra={"error": repr(exc)})
            return False
        return True


def operator_router(ops: OperatorApi) -> APIRouter:
    """The routes in the module docstring."""
    router = APIRouter()
    _correction_routes(router, ops)
    _search_routes(router, ops)
    return router


def _corrector(ops: OperatorApi) -> Corrector:
    if ops.corrector is None:
        raise HTTPException(503, "corrections are not available in this process")
    return ops.corrector


def _correction_routes(router: APIRouter, ops: OperatorApi) -> None:
    @router.post("/api/identities/{global_id}/split", tags=["admin"])
    async def split(
        request: Request, who: Admin, global_id: GlobalId, body: Annotated[SplitBody, Body()]
    ) -> dict[str, Any]:
        fix = await _run(request, who, "identity.split", global_id,
                         lambda: _corrector(ops).split(global_id, body.tracklet_ids))  # fmt: skip
        published = await ops.publish(fix)
        new = next(iter(fix.assigned.values()))
        return {"global_id": new, "from": global_id, "tracklet_ids": list(fix.assigned),
                "published": published}  # fmt: skip

    @router.post("/api/identities/{global_id}/merge", tags=["admin"])
    async def merge(
        request: Request, who: Admin, global_id: GlobalId, body: Annotated[MergeBody, Body()]
    ) -> dict[str, Any]:
        if global_id in body.global_ids:
            raise HTTPException(
                422, "bad parameter global_ids: an identity cannot merge into itself"
            )
        gids = [global_id, *body.global_ids]
        fix = await _run(request, who, "identity.merge", global_id,
                         lambda: _corrector(ops).merge(global_id, gids))  # fmt: skip
        published = await ops.publish(fix)
        return {"global_id": global_id, "merged_ids": sorted(set(body.global_ids)),
                "tracklets_moved": len(fix.assigned), "published": published}  # fmt: skip


async def _run(request: Request, who: TokenInfo, action: str, gid: str, fn: Any) -> Correction:
    """Apply a correction off the event loop; refusals become 404/409/422, all audited."""
    params = {"global_id": gid}
    try:
        fix: Correction = await anyio.to_thread.run_sync(fn)
    except KeyError as exc:
        audit(request, who, action, [gid], 404, params)
        raise HTTPException(
            404, f"unknown identity or tracklet {str(exc.args[0])[:80]!r}"
        ) from None
    except ConstraintLimit as exc:
        audit(request, who, action, [gid], 409, params)
        raise HTTPException(409, str(exc)) from None
    except ValueError as exc:
        audit(request, who, action, [gid], 422, params)
        raise HTTPException(422, f"bad request: {exc}") from None
    ids = sorted({gid, *fix.assigned.values()}) + list(fix.assigned)
    audit(request, who, action, ids[:1000], 200, params)
    return fix


def _search_routes(router: APIRouter, ops: OperatorApi) -> None:
    @router.post("/api/search", tags=["operator"])
    async def search(
        request: Request, who: Operator, cameras: CameraList = None,
        area: Annotated[str | None, Query(max_length=200)] = None,
        thumbnail: Annotated[str | None, Query(max_length=400)] = None,
        since: Ns = None, until: Ns = None, limit: Annotated[int, Query(ge=1, le=100)] = 20,
    ) -> dict[str, Any]:  # fmt: skip
        _window(since, until)
        q = ReidQuery(cameras=parse_cameras(cameras, "cameras"), area=parse_area(area),
                      ts_from_ns=since, ts_to_ns=until, limit=limit)  # fmt: skip
        data = await _example_bytes(request, ops, thumbnail)
        if ops.searcher is None:
            raise HTTPException(503, "search by example is not available in this process")
        searcher = ops.searcher
        try:
            image = await anyio.to_thread.run_sync(decode_image, data)
        except BadImage as exc:
            audit(request, who, "search", [], 415)
            raise HTTPException(415, f"not a usable image: {exc}") from None
        vec = await anyio.to_thread.run_sync(searcher.vector, image)
        cands = await anyio.to_thread.run_sync(by_example, ops.api.store, ops.api.topology, vec, q)
        res = {"candidates": [asdict(c) for c in cands], "identities": by_identity(cands)}
        ids = [c.tracklet_id for c in cands] + [i["global_id"] for i in res["identities"]]
        audit(request, who, "search", ids)
        return res


async def _example_bytes(request: Request, ops: OperatorApi, thumbnail: str | None) -> bytes:
    body = await request.body()
    if thumbnail:
        if body:
            raise HTTPException(422, "bad parameter thumbnail: give an image body or a thumbnail")
        camera, _, name = thumbnail.partition("/")
        path = ops.api.thumbnail(camera, name)
        if path is None:
            raise HTTPException(404, "no such thumbnail")
        return path.read_bytes()
    if not body:
        raise HTTPException(422, "bad request: send an image as the body, or thumbnail=")
    return body
