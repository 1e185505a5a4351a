"""``crosscam gallery``: the web gallery's server (FastAPI on uvicorn, closed by default).

Serves the static single-page UI (its sign-in page needs no token; every data
route does), proxies ``/api/*`` and ``/thumbnails/*`` to the ReID service's
HTTP API (``reid/api.py``, which checks roles and writes the audit trail) with
the caller's token, and answers its own routes:

* ``GET /healthz`` — liveness (no token);
* ``GET /gallery/config`` (viewer) — refresh period, the camera map from the
  cameras file (``map`` is null without one; never a camera's source) and who
  the caller is;
* ``GET /gallery/cameras/status?ids=a,b`` (viewer) — each camera's live status
  from Redis (``unknown`` for all when Redis cannot be read).

Hardening (Host check, body caps, timeouts, security headers, JSON errors) is
:mod:`service.web`'s, shared with the ReID API.
"""

from __future__ import annotations

import argparse
import logging
import mimetypes
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import FileResponse, Response
from starlette.exceptions import HTTPException

from gallery.cameras import CameraStatusReader, load_camera_map
from gallery.proxy import ReidApiProxy
from gallery.settings import GallerySettings
from schemas.messages import CAMERA_ID_PATTERN
from service.auth import Role, TokenInfo
from service.logs import setup_logging
from service.metrics import start_metrics_server
from service.settings import load_settings
from service.web import (
    UPLOAD_PATH,
    RunningServer,
    WebContext,
    WebRoot,
    authenticate,
    bind,
    make_app,
    require,
    serve_forever,
    serve_in_thread,
)

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
EXIT_CANNOT_START = 2

MAX_STATUS_CAMERAS = 1000
"""Most camera ids one status request may ask for (bounds one Redis pipeline)."""

STATIC_CACHE = "no-cache"
"""Static files are revalidated on every load, so a deploy shows at once (they are tiny)."""

THUMBNAIL_CACHE = "private, max-age=300"
"""A crop never changes once written; only this browser may keep it a while."""

_CAMERA = re.compile(CAMERA_ID_PATTERN)
Viewer = Annotated[TokenInfo, Depends(require(Role.viewer))]


@dataclass
class Gallery:
    """What the routes share: settings, the proxy, the map and the status reader."""

    settings: GallerySettings
    proxy: ReidApiProxy
    camera_map: dict[str, Any] | None
    status: CameraStatusReader

    def config(self, who: TokenInfo) -> dict[str, Any]:
        return {
            "refresh_s": self.settings.gallery.refresh_s,
            "map": self.camera_map,
            "who": {"name": who.name, "role": who.role},
        }


def static_file(name: str) -> Path | None:
    """The file under STATIC_DIR that ``name`` names, or None (never outside the folder)."""
    if not name or name.startswith(("/", "\\")) or "\x00" in name:
        return None
    candidate = (STATIC_DIR / name).resolve()
    if STATIC_DIR not in candidate.parents or not candidate.is_file():
        return None
    return candidate


def _static_answer(path: Path | None) -> FileResponse:
    if path is None:
        raise HTTPException(404, "no such file")
    ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FileResponse(path, media_type=ctype, headers={"Cache-Control": STATIC_CACHE})


def create_app(gallery: Gallery, web: WebContext) -> FastAPI:
    """The gallery as a FastAPI app (see the module docstring for the routes)."""
    web.on_stop.append(gallery.proxy.close)
    app = make_app("crosscam gallery", web, "The web gallery; /api/* is the ReID API's.")
    app.state.gallery = gallery
    _own_routes(app, gallery)
    _proxy_routes(app, gallery)
    return app


def _own_routes(app: FastAPI, gallery: Gallery) -> None:
    @app.get("/", include_in_schema=False)
    @app.get("/index.html", include_in_schema=False)
    def index() -> FileResponse:
        """The app shell and its sign-in page (no data: no token needed)."""
        return _static_answer(static_file("index.html"))

    @app.get("/static/{name:path}", include_in_schema=False)
    def static(name: str) -> FileResponse:
        return _static_answer(static_file(name))

    @app.get("/gallery/config", tags=["gallery"])
    def config(who: Viewer) -> dict[str, Any]:
        return gallery.config(who)

    @app.get("/gallery/cameras/status", tags=["gallery"])
    def camera_status(
        who: Viewer,
        ids: Annotated[str, Query(max_length=MAX_STATUS_CAMERAS * 65)] = "",
    ) -> dict[str, Any]:
        cams = [i for i in ids.split(",") if i]
        if len(cams) > MAX_STATUS_CAMERAS or not all(_CAMERA.match(c) for c in cams):
            raise HTTPException(422, "bad parameter ids: camera ids, comma separated")
        return gallery.status.read(cams)


def _proxy_routes(app: FastAPI, gallery: Gallery) -> None:
    async def forward(request: Request) -> Response:
        authenticate(request)  # no valid token: 401 here, the ReID API never asked
        # a recorded video streams through; every other body is small and read whole
        streamed = request.method == "POST" and request.url.path.startswith(UPLOAD_PATH)
        body = request.stream() if streamed else await request.body()
        client = request.client.host if request.client else ""
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        answer = await gallery.proxy.forward(
            request.method, target, dict(request.headers), body or None, client
        )
        headers = dict(answer.headers)
        if request.url.path.startswith("/thumbnails/") and answer.status == 200:
            headers["Cache-Control"] = THUMBNAIL_CACHE
        if answer.status >= 500:
            log.warning("reid_api_error", extra={"path": request.url.path, "status": answer.status})
        if headers.get("content-type", headers.get("Content-Type", "")).startswith(
            "application/json"
        ):
            headers.setdefault("Cache-Control", "no-store")
        return Response(answer.body, answer.status, headers=headers)

    # every method goes through: the ReID API answers 405 with its own precise Allow
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    app.add_api_route("/api/{rest:path}", forward, methods=methods, include_in_schema=False)
    app.add_api_route("/thumbnails/{rest:path}", forward, methods=methods, include_in_schema=False)


def build(settings: GallerySettings, web: WebContext) -> tuple[FastAPI, Gallery]:
    """The app and what it shares (raises OSError/ValueError on a bad cameras file)."""
    g = settings.gallery
    gallery = Gallery(
        settings=settings,
        proxy=ReidApiProxy(g.reid_api, g.upstream_timeout_s),
        camera_map=load_camera_map(g.cameras),
        status=CameraStatusReader(settings.redis.url, g.redis_timeout_s, g.status_cache_s),
    )
    return create_app(gallery, web), gallery


def serve(settings: GallerySettings, web: WebContext) -> tuple[RunningServer, Gallery]:
    """A gallery serving in a daemon thread (tests, the demo); ``server.stop()`` ends it."""
    app, gallery = build(settings, web)
    return serve_in_thread(app, settings.gallery.host, settings.gallery.port, web.settings), gallery


def web_for(settings: GallerySettings) -> WebContext:
    """Tokens and the audit log in the gallery's Redis (the ReID service publishes audit)."""
    root = WebRoot(web=settings.web, redis=settings.redis, kafka=settings.kafka)
    return WebContext.connect(root, "gallery", publish=False)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, help="settings file (TOML, sections [gallery], [web])"
    )
    parser.add_argument("--host", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to serve on (default 8080; 0: a free one)")
    parser.add_argument(
        "--reid-api", help="ReID service API base URL (default http://127.0.0.1:8700)"
    )
    parser.add_argument("--cameras", type=Path, help="cameras file (TOML) for the map")
    parser.add_argument(
        "--redis-url", help="Redis holding tokens and camera status (default: the local stack's)"
    )
    parser.add_argument("--refresh-s", type=float, help="page refresh period, seconds")


def _settings(args: argparse.Namespace) -> GallerySettings:
    """Settings file, then environment, then command-line flags (flags win)."""
    return load_settings(
        GallerySettings,
        args.config,
        gallery={
            "host": args.host,
            "port": args.port,
            "reid_api": args.reid_api,
            "cameras": args.cameras,
            "refresh_s": args.refresh_s,
        },
        redis={"url": args.redis_url},
    )


def main(args: argparse.Namespace) -> int:
    setup_logging()
    try:
        settings = _settings(args)
    except (OSError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        print(f"crosscam gallery: bad settings: {exc}", file=sys.stderr)
        return EXIT_CANNOT_START
    try:
        web = web_for(settings)
        web.bootstrap()
        app, gallery = build(settings, web)
        sock = bind(settings.gallery.host, settings.gallery.port)
    except Exception as exc:  # cameras file unreadable or invalid, port taken, Redis down
        log.error("gallery_cannot_start", extra={"error": str(exc)})
        print(f"crosscam gallery: cannot start: {exc}", file=sys.stderr)
        return EXIT_CANNOT_START
    start_metrics_server(settings.metrics, "gallery")
    host, port = sock.getsockname()[:2]
    cameras = str(settings.gallery.cameras or "from the ReID API")
    log.info("gallery_serving", extra={"url": f"http://{host}:{port}/", "cameras": cameras})
    print(f"gallery: http://{host}:{port}/", flush=True)
    try:
        serve_forever(app, sock, settings.web)
    finally:
        log.info("gallery_stopping")
        gallery.status.close()
        web.close()
    return 0
