"""The ReID service's HTTP API (FastAPI on uvicorn, closed by default; see service/web.py).

The embedded store opens in one process only, so the gallery asks the ReID
service. Every route but ``/healthz`` needs a bearer token; times are integer
ns since the epoch; OpenAPI at ``/openapi.json``.

viewer:
* ``GET /api/whoami`` — the caller's token name and role
* ``GET /api/cameras`` — id, name, location and links (never a camera's source)
* ``GET /api/identities?camera=&since=&until=&limit=`` — identities seen in the
  window, latest first (audited)
* ``GET /api/identities/{global_id}`` — its tracklets in time order (audited)
* ``GET /api/tracklets?camera=&global_id=&since=&until=&limit=`` (audited)
* ``GET /thumbnails/{camera}/{file}`` — a crop JPEG (audited)

operator:
* ``GET /api/reidentify?tracklet_id=|global_id=&cameras=&area=x0,y0,x1,y1&since=&until=&limit=``
  — ranked candidates, and the same grouped by identity (audited)

admin:
* ``GET /api/audit?since=&until=&who=&limit=&after=`` — the audit trail (audited)
* ``GET /api/tokens``, ``POST /api/tokens`` ``{name, role, ttl_s}``,
  ``DELETE /api/tokens/{token_id}`` (audited)

Lists are pages: a ``limit`` and a time window go into Qdrant's indexed
filters. The newest tracklet in scope is found by bounded top-1 probes, then
the API reads back from it in doubling time windows until the page is full, so
no request scans the store, and the store's lock is held per query, never
while a page is built.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Body, Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from reid.erasure import ErasureReport
from reid.headblur import blur_head
from reid.query import ReidQuery, by_identity, reidentify
from reid.store import Scope, StoredTracklet, VectorStore
from reid.topology import Topology
from schemas.messages import CAMERA_ID_PATTERN
from service.audit import MAX_QUERY
from service.auth import DEFAULT_TTL_S, MAX_TTL_S, NAME_PATTERN, Role, TokenInfo
from service.web import RunningServer, WebContext, audit, make_app, require, serve_in_thread

MAX_LIST = 1000
"""Most rows one list call returns (bounded responses whatever the store holds)."""
DEFAULT_LIST = 100
MAX_NS = 2**63 - 1
GLOBAL_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
TRACKLET_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,255}$"
THUMB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,255}\.jpg$")
_CAMERA = re.compile(CAMERA_ID_PATTERN)
MAX_CAMERAS = 256
FIRST_WINDOW_NS = 60 * 1_000_000_000
DEFAULT_DIM = 512
FUTURE_MARGIN_NS = 86_400 * 1_000_000_000
"""With no ``until``, pages look back from now plus this (camera clocks run ahead)."""

Ns = Annotated[int | None, Query(ge=0, le=MAX_NS, description="ns since the epoch")]
Limit = Annotated[int, Query(ge=1, le=MAX_LIST)]
CameraList = Annotated[
    str | None, Query(max_length=MAX_CAMERAS * 65, description="camera ids, comma separated")
]
GlobalId = Annotated[str, PathParam(pattern=GLOBAL_ID_PATTERN, max_length=128)]
Viewer = Annotated[TokenInfo, Depends(require(Role.viewer))]
Operator = Annotated[TokenInfo, Depends(require(Role.operator))]
Admin = Annotated[TokenInfo, Depends(require(Role.admin))]


def _unprocessable(where: str, why: str) -> HTTPException:
    return HTTPException(422, f"bad parameter {where}: {why}")


def parse_cameras(text: str | None, where: str = "camera") -> frozenset[str] | None:
    """A comma list of camera ids (each checked), or None for any camera."""
    if not text:
        return None
    ids = [c for c in text.split(",") if c]
    if len(ids) > MAX_CAMERAS:
        raise _unprocessable(where, f"more than {MAX_CAMERAS} cameras")
    bad = [c for c in ids if not _CAMERA.match(c)]
    if bad:
        raise _unprocessable(where, "not a camera id (A-Z a-z 0-9 _ . -, 1-64 long)")
    return frozenset(ids)


def parse_area(text: str | None) -> tuple[float, float, float, float] | None:
    """``x0,y0,x1,y1`` as four finite numbers, or None."""
    if text is None or text == "":
        return None
    parts = text.split(",")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise _unprocessable("area", "x0,y0,x1,y1 must be numbers") from None
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise _unprocessable("area", "give four finite numbers x0,y0,x1,y1")
    return (values[0], values[1], values[2], values[3])


def _window(since: int | None, until: int | None) -> None:
    if since is not None and until is not None and since > until:
        raise _unprocessable("since", "after until")


def _tracklet_json(t: StoredTracklet) -> dict[str, Any]:
    return {
        "tracklet_id": t.tracklet_id,
        "camera_id": t.camera_id,
        "ts_start_ns": t.ts_start_ns,
        "ts_end_ns": t.ts_end_ns,
        "global_id": t.global_id,
        "thumbnail_ref": t.thumbnail_ref,
        "thumbnail_url": f"/thumbnails/{t.thumbnail_ref}" if t.thumbnail_ref else "",
        "plan_track": t.plan_track,
    }


class ReidApi:
    """Answers the API's questions from a store, a topology and the thumbnails folder."""

    def __init__(
        self,
        store: VectorStore,
        topology: Topology,
        thumbnails_dir: Path,
        dim: int | None = None,
        erase: Callable[[str], ErasureReport] | None = None,
    ) -> None:
        self.store = store
        self.erase = erase
        """Erases an identity everywhere (the ReID service wires it; None = not offered)."""
        self.topology = topology
        self.thumbnails_dir = thumbnails_dir.resolve()
        dim = dim or getattr(store, "dim", None) or getattr(getattr(store, "inner", None), "dim", 0)
        self._probe = np.zeros(int(dim or DEFAULT_DIM), np.float32)
        self._probe[0] = 1.0  # any unit vector: existence probes only need a filter

    def cameras(self) -> dict[str, Any]:
        """The camera map: ids, names, locations, links. Never a source (it may hold a password)."""
        return {
            "window_s": self.topology.window_s,
            "cameras": [
                {"id": c.id, "name": c.name, "location": c.location.model_dump()}
                for c in self.topology.cameras.values()
            ],
            "links": [lk.model_dump() for lk in self.topology.spec.links],
        }

    def _has_points(self, scope: Scope) -> bool:
        """Whether any tracklet is in ``scope``: a filtered top-1 search, bounded work."""
        return bool(self.store.search(self._probe, scope, limit=1))

    def _newest_end(self, scope: Scope) -> int | None:
        """An upper bound within FIRST_WINDOW_NS of the newest tracklet end in ``scope``.

        Found by bounded existence probes: back from ``until`` in doubling steps,
        then bisection. None when ``scope`` holds nothing.
        """
        to = scope.ts_to_ns if scope.ts_to_ns is not None else time.time_ns() + FUTURE_MARGIN_NS
        floor = scope.ts_from_ns or 0

        def has(low: int) -> bool:
            return self._has_points(Scope(scope.cameras, low, to, scope.global_ids))

        span, hi = FIRST_WINDOW_NS, to
        low = max(floor, to - span)
        while not has(low):
            if low <= floor:
                return None
            span, hi = span * 2, low
            low = max(floor, to - span)
        while hi - low > FIRST_WINDOW_NS:  # the newest end is in [low, hi]
            mid = (low + hi) // 2
            low, hi = (mid, hi) if has(mid) else (low, mid)
        return hi

    def _recent(self, scope: Scope, enough: int, key: str) -> list[StoredTracklet]:
        """Tracklets in ``scope``, newest windows first, until ``enough`` distinct ``key`` values.

        Each window is one indexed Qdrant query (the store's lock is held for it
        alone); windows start at the newest tracklet and double back to
        ``scope.ts_from_ns`` or 0.
        """
        newest = self._newest_end(scope)
        if newest is None:
            return []
        top = scope.ts_to_ns if scope.ts_to_ns is not None else newest
        floor = scope.ts_from_ns or 0
        rows: dict[str, StoredTracklet] = {}
        keys: set[str] = set()
        span = FIRST_WINDOW_NS
        low = max(floor, newest - span)
        while True:
            for t in self.store.scroll(Scope(scope.cameras, low, top, scope.global_ids)):
                rows[t.tracklet_id] = t
                keys.add(getattr(t, key))
            if len(keys) >= enough or low <= floor:
                return list(rows.values())
            top, span = low, span * 2
            low = max(floor, low - span)

    def tracklets(
        self, cameras: frozenset[str] | None, gid: str | None, since: int | None,
        until: int | None, limit: int,
    ) -> list[dict[str, Any]]:  # fmt: skip
        """The latest ``limit`` tracklets in the window, newest first."""
        scope = Scope(cameras, since, until, frozenset([gid]) if gid else None)
        rows = sorted(self._recent(scope, limit, "tracklet_id"), key=lambda t: -t.ts_end_ns)
        return [_tracklet_json(t) for t in rows[:limit]]

    def identities(
        self, cameras: frozenset[str] | None, since: int | None, until: int | None, limit: int
    ) -> list[dict[str, Any]]:
        """The ``limit`` identities last seen most recently in the window, latest first."""
        scope = Scope(cameras, since, until)
        last: dict[str, int] = {}
        for t in self._recent(scope, limit, "global_id"):
            last[t.global_id] = max(last.get(t.global_id, 0), t.ts_end_ns)
        page = sorted(last, key=lambda g: -last[g])[:limit]
        if not page:
            return []
        groups: dict[str, list[StoredTracklet]] = {g: [] for g in page}
        for t in self.store.scroll(Scope(cameras, since, until, frozenset(page))):
            groups[t.global_id].append(t)
        out = []
        for gid in page:
            ts = sorted(groups[gid], key=lambda t: t.ts_start_ns)
            thumb = next((t for t in reversed(ts) if t.thumbnail_ref), None)
            out.append(
                {
                    "global_id": gid,
                    "cameras": sorted({t.camera_id for t in ts}),
                    "first_seen_ns": ts[0].ts_start_ns,
                    "last_seen_ns": max(t.ts_end_ns for t in ts),
                    "tracklets": len(ts),
                    "thumbnail_url": f"/thumbnails/{thumb.thumbnail_ref}" if thumb else "",
                }
            )
        return out

    def identity(self, gid: str) -> dict[str, Any] | None:
        """An identity's tracklets (the latest MAX_LIST) in time order, or None."""
        ts = sorted(
            self.store.scroll(Scope(global_ids=frozenset([gid]))), key=lambda t: t.ts_start_ns
        )[-MAX_LIST:]
        if not ts:
            return None
        return {
            "global_id": gid,
            "cameras": sorted({t.camera_id for t in ts}),
            "tracklets": [_tracklet_json(t) for t in ts],
            "thumbnails": [f"/thumbnails/{t.thumbnail_ref}" for t in ts if t.thumbnail_ref],
        }

    def reidentify(self, q: ReidQuery) -> dict[str, Any]:
        """Ranked candidates and the same grouped by identity (KeyError: unknown id)."""
        cands = reidentify(self.store, self.topology, q)
        return {"candidates": [asdict(c) for c in cands], "identities": by_identity(cands)}

    def thumbnail(self, camera: str, name: str) -> Path | None:
        """The crop file, only when it is a regular file inside the thumbnails folder."""
        if not _CAMERA.match(camera) or not THUMB_NAME.match(name):
            return None
        path = (self.thumbnails_dir / camera / name).resolve()
        if path.parent.parent != self.thumbnails_dir or not path.is_file():
            return None  # outside (a symlink out, say), or missing
        return path


class NewToken(BaseModel):
    """``POST /api/tokens`` body."""

    name: str = Field(pattern=NAME_PATTERN, description="who (shown in the audit trail)")
    role: Literal["viewer", "operator", "admin"] = Field(description="what the token may do")
    ttl_s: int = Field(DEFAULT_TTL_S, ge=60, le=MAX_TTL_S, description="lifetime, seconds")


def create_app(api: ReidApi, web: WebContext, routers: Sequence[APIRouter] = ()) -> FastAPI:
    """The ReID API as a FastAPI app (see the module docstring for the routes); ``routers``:
    more routes (the operator routes of :mod:`reid.operator_api`)."""
    app = make_app("crosscam ReID API", web, __doc__.split("\n\n")[1] if __doc__ else "")
    for router in routers:
        app.include_router(router)
    _read_routes(app, api)
    _query_routes(app, api)
    _admin_routes(app, web)
    _erasure_route(app, api)
    return app


def _erasure_route(app: FastAPI, api: ReidApi) -> None:
    @app.delete("/api/identities/{global_id}", tags=["admin"])
    def erase_identity(request: Request, who: Admin, global_id: GlobalId) -> dict[str, Any]:
        """Erase an identity everywhere: store, thumbnails, linker, Redis; announce ``erased``."""
        if api.erase is None:
            raise HTTPException(503, "erasure is not available on this server")
        report = api.erase(global_id)
        status = 200 if report.found else 404
        audit(request, who, "identity.erase", [global_id], status, {})
        if not report.found:
            raise HTTPException(404, "no such identity (or already erased)")
        out = report.as_dict()
        out.pop("tracklet_ids", None)
        return out


def _read_routes(app: FastAPI, api: ReidApi) -> None:
    @app.get("/api/whoami", tags=["viewer"])
    def whoami(who: Viewer) -> dict[str, str]:
        return {"name": who.name, "role": who.role, "token_id": who.token_id}

    @app.get("/api/health", tags=["viewer"])
    def health(who: Viewer) -> dict[str, Any]:
        return {"ok": True, "points": api.store.count()}

    @app.get("/api/cameras", tags=["viewer"])
    def cameras(who: Viewer) -> dict[str, Any]:
        return api.cameras()

    @app.get("/api/identities", tags=["viewer"])
    def identities(
        request: Request, who: Viewer, camera: CameraList = None, cameras: CameraList = None,
        since: Ns = None, until: Ns = None, limit: Limit = DEFAULT_LIST,
    ) -> list[dict[str, Any]]:  # fmt: skip
        _window(since, until)
        rows = api.identities(parse_cameras(camera or cameras), since, until, limit)
        audit(request, who, "identities.list", [str(r["global_id"]) for r in rows])
        return rows

    @app.get("/api/identities/{global_id}", tags=["viewer"])
    def identity(request: Request, who: Viewer, global_id: GlobalId) -> dict[str, Any]:
        found = api.identity(global_id)
        audit(request, who, "identity.view", [global_id], 200 if found else 404)
        if found is None:
            raise HTTPException(404, "unknown identity")
        return found

    @app.get("/api/tracklets", tags=["viewer"])
    def tracklets(
        request: Request, who: Viewer, camera: CameraList = None, cameras: CameraList = None,
        global_id: Annotated[str | None, Query(pattern=GLOBAL_ID_PATTERN)] = None,
        since: Ns = None, until: Ns = None, limit: Limit = DEFAULT_LIST,
    ) -> list[dict[str, Any]]:  # fmt: skip
        _window(since, until)
        rows = api.tracklets(parse_cameras(camera or cameras), global_id, since, until, limit)
        audit(request, who, "tracklets.list", [str(r["tracklet_id"]) for r in rows])
        return rows

    @app.get("/thumbnails/{camera}/{name}", tags=["viewer"], response_class=Response)
    def thumbnail(request: Request, who: Viewer, camera: str, name: str) -> Response:
        """A crop: viewers get the head blurred, operators and admins the clear image (audited)."""
        path = api.thumbnail(camera, name)
        clear = who.allows(Role.operator)
        action = "thumbnail.clear" if clear else "thumbnail.blurred"
        audit(request, who, action, [f"{camera}/{name}"[:300]], 200 if path else 404, {})
        if path is None:
            raise HTTPException(404, "no such thumbnail")
        headers = {"Cache-Control": "private, max-age=300"}
        if clear:
            return FileResponse(path, media_type="image/jpeg", headers=headers)
        try:
            blurred = blur_head(path.read_bytes())
        except ValueError:  # never fall back to the clear image for a viewer
            raise HTTPException(404, "thumbnail unreadable") from None
        return Response(blurred, media_type="image/jpeg", headers=headers)


def _query_routes(app: FastAPI, api: ReidApi) -> None:
    @app.get("/api/reidentify", tags=["operator"])
    def reidentify_route(
        request: Request, who: Operator,
        tracklet_id: Annotated[str | None, Query(pattern=TRACKLET_ID_PATTERN)] = None,
        global_id: Annotated[str | None, Query(pattern=GLOBAL_ID_PATTERN)] = None,
        camera: CameraList = None, cameras: CameraList = None,
        area: Annotated[str | None, Query(max_length=200)] = None,
        since: Ns = None, until: Ns = None, limit: Annotated[int, Query(ge=1, le=100)] = 20,
    ) -> dict[str, Any]:  # fmt: skip
        if bool(tracklet_id) == bool(global_id):
            raise _unprocessable("tracklet_id", "give exactly one of tracklet_id or global_id")
        _window(since, until)
        q = ReidQuery(tracklet_id or "", global_id or "", parse_cameras(camera or cameras, "cameras"),
                      parse_area(area), since, until, limit)  # fmt: skip
        try:
            res = api.reidentify(q)
        except KeyError:
            audit(request, who, "reidentify", [tracklet_id or global_id or ""], 404)
            raise HTTPException(404, "unknown tracklet or identity") from None
        ids = [c["tracklet_id"] for c in res["candidates"]] + [
            i["global_id"] for i in res["identities"]
        ]
        audit(request, who, "reidentify", ids)
        return res


def _admin_routes(app: FastAPI, web: WebContext) -> None:
    @app.get("/api/audit", tags=["admin"])
    def audit_trail(
        request: Request, who: Admin, since: Ns = None, until: Ns = None,
        who_: Annotated[str | None, Query(alias="who", pattern=NAME_PATTERN)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_QUERY)] = 100,
        after: Annotated[str | None, Query(pattern=r"^\d{1,20}-\d{1,20}$")] = None,
    ) -> dict[str, Any]:  # fmt: skip
        _window(since, until)
        events, cursor = web.audit_log.query(since, until, who_, limit, after)
        audit(request, who, "audit.read", [e.audit_id for e in events][:MAX_QUERY])
        return {"events": [_event_json(e) for e in events], "next": cursor}

    @app.get("/api/tokens", tags=["admin"])
    def tokens(request: Request, who: Admin) -> list[dict[str, Any]]:
        rows = web.tokens.list()
        audit(request, who, "token.list", [r.token_id for r in rows])
        return [r.as_json() for r in rows]

    @app.post("/api/tokens", tags=["admin"], status_code=201)
    def create_token(
        request: Request, who: Admin, body: Annotated[NewToken, Body()]
    ) -> dict[str, Any]:
        token, info = web.tokens.create(body.name, Role[body.role], body.ttl_s)
        audit(request, who, "token.create", [info.token_id], 201,
              {"name": body.name, "role": body.role, "ttl_s": str(body.ttl_s)})  # fmt: skip
        return {"token": token, **info.as_json()}

    @app.delete("/api/tokens/{token_id}", tags=["admin"])
    def revoke_token(
        request: Request, who: Admin, token_id: Annotated[str, PathParam(pattern=r"^[0-9a-f]{12}$")]
    ) -> dict[str, Any]:
        info = web.tokens.revoke(token_id)
        audit(request, who, "token.revoke", [token_id], 200 if info else 404, {})
        if info is None:
            raise HTTPException(404, "unknown token id")
        return {"revoked": info.as_json()}


def _event_json(e: Any) -> dict[str, Any]:
    import msgspec

    return msgspec.to_builtins(e)  # type: ignore[no-any-return]


def start_api(
    api: ReidApi, web: WebContext, host: str, port: int, routers: Sequence[APIRouter] = ()
) -> tuple[RunningServer, int]:
    """Serve the API in a daemon thread; (server, bound port). ``server.stop()`` ends it."""
    app = create_app(api, web, routers)
    server = serve_in_thread(app, host, port, web.settings, name="reid-api")
    return server, server.port
