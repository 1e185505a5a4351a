"""``crosscam gallery``: the web gallery's HTTP server.

Serves the static single-page UI, proxies ``/api/*`` and ``/thumbnails/*`` to
the ReID service's HTTP API (``reid/api.py``) and answers two routes of its own under ``/gallery/``:

* ``GET /gallery/config`` — refresh period, the ReID API's URL and the camera
  map from the cameras file (``map`` is null without one);
* ``GET /gallery/cameras/status?ids=a,b`` — each camera's live status from
  Redis (``unknown`` for all when Redis cannot be read).

Stdlib ``ThreadingHTTPServer``: a handful of operators' pages polling every few
seconds, each request a short proxied call; no framework needed.
"""

from __future__ import annotations

import argparse
import json
import logging
import mimetypes
import signal
import sys
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from gallery.cameras import CameraStatusReader, load_camera_map
from gallery.proxy import Answer, ReidApiProxy
from gallery.settings import GallerySettings
from service.logs import setup_logging
from service.metrics import start_metrics_server
from service.settings import load_settings

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
API_PREFIX = "/api/"
THUMBNAILS_PREFIX = "/thumbnails/"
PROXIED_PREFIXES = (API_PREFIX, THUMBNAILS_PREFIX)
"""Paths forwarded as they are to the ReID API (its JSON routes and its crop JPEGs)."""
OWN_PREFIX = "/gallery/"
MAX_BODY_BYTES = 64 * 1024
"""Largest request body forwarded (a re-identify query is a few hundred bytes)."""

EXIT_CANNOT_START = 2

MAX_STATUS_CAMERAS = 1000
"""Most camera ids one status request may ask for (bounds one Redis pipeline)."""

STATIC_CACHE = "no-cache"
"""Static files are revalidated on every load, so a deploy shows at once (they are tiny)."""

THUMBNAIL_CACHE = "max-age=300"
"""A crop never changes once written (a replay rewrites the same bytes), so browsers may
keep it a while: the pages poll, and a re-rendered grid must not refetch every image."""


@dataclass
class Gallery:
    """What the request handlers share: settings, the proxy, the map and the status reader."""

    settings: GallerySettings
    proxy: ReidApiProxy
    camera_map: dict[str, Any] | None
    status: CameraStatusReader

    def config(self) -> dict[str, Any]:
        g = self.settings.gallery
        return {"refresh_s": g.refresh_s, "reid_api": self.proxy.base_url, "map": self.camera_map}

    def camera_status(self, ids: list[str]) -> dict[str, Any]:
        return self.status.read(ids[:MAX_STATUS_CAMERAS])


def _static_file(path: str) -> Path | None:
    """The file under STATIC_DIR a URL path names, or None (never outside the folder)."""
    name = "index.html" if path in ("/", "/index.html") else path.removeprefix("/static/")
    if name == path or not name:
        return None
    candidate = (STATIC_DIR / name).resolve()
    if STATIC_DIR not in candidate.parents or not candidate.is_file():
        return None
    return candidate


class Handler(BaseHTTPRequestHandler):
    """One request: a static file, a gallery route, or a proxied ReID API call."""

    gallery: Gallery  # set on the subclass made by make_server
    protocol_version = "HTTP/1.1"
    server_version = "crosscam-gallery"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        log.debug("http_request", extra={"client": self.client_address[0], "line": format % args})

    def _send(self, answer: Answer) -> None:
        self.send_response(answer.status)
        for key, value in answer.headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer.body)

    def _json(self, value: Any, status: int = HTTPStatus.OK) -> None:
        body = json.dumps(value).encode()
        self._send(
            Answer(
                status, body, [("Content-Type", "application/json"), ("Cache-Control", "no-store")]
            )
        )

    def _body(self) -> bytes | None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise ValueError(f"request body over {MAX_BODY_BYTES} bytes")
        return self.rfile.read(length) if length else None

    def _handle(self) -> None:
        url = urlsplit(self.path)
        try:
            if url.path.startswith(PROXIED_PREFIXES):
                body = self._body()
                answer = self.gallery.proxy.forward(
                    self.command, self.path, dict(self.headers.items()), body
                )
                if answer.status >= HTTPStatus.INTERNAL_SERVER_ERROR:
                    log.warning("reid_api_error", extra={"path": url.path, "status": answer.status})
                elif url.path.startswith(THUMBNAILS_PREFIX) and answer.status == HTTPStatus.OK:
                    answer.headers.append(("Cache-Control", THUMBNAIL_CACHE))
                self._send(answer)
            elif url.path.startswith(OWN_PREFIX) and self.command in ("GET", "HEAD"):
                self._own(url.path.removeprefix(OWN_PREFIX), parse_qs(url.query))
            elif self.command in ("GET", "HEAD") and (f := _static_file(url.path)) is not None:
                ctype = mimetypes.guess_type(f.name)[0] or "application/octet-stream"
                self._send(
                    Answer(
                        HTTPStatus.OK,
                        f.read_bytes(),
                        [("Content-Type", ctype), ("Cache-Control", STATIC_CACHE)],
                    )
                )
            else:
                self._json({"error": f"no such page: {url.path}"}, HTTPStatus.NOT_FOUND)
        except ValueError as exc:
            self._json({"error": str(exc)}, HTTPStatus.BAD_REQUEST)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the browser went away; nothing to answer
        except Exception as exc:  # one bad request must never take the server down
            log.exception("gallery_request_failed", extra={"path": url.path})
            self._json({"error": f"gallery error: {exc!r}"}, HTTPStatus.INTERNAL_SERVER_ERROR)

    def _own(self, route: str, query: dict[str, list[str]]) -> None:
        if route == "config":
            self._json(self.gallery.config())
        elif route == "cameras/status":
            ids = [i for part in query.get("ids", []) for i in part.split(",") if i]
            self._json(self.gallery.camera_status(ids))
        elif route == "health":
            self._json({"ok": True})
        else:
            self._json({"error": f"no such gallery route: {route}"}, HTTPStatus.NOT_FOUND)

    do_GET = _handle
    do_HEAD = _handle
    do_POST = _handle


def make_server(settings: GallerySettings) -> tuple[ThreadingHTTPServer, Gallery]:
    """A bound (not yet serving) server; read the port from ``server.server_port``."""
    g = settings.gallery
    gallery = Gallery(
        settings=settings,
        proxy=ReidApiProxy(g.reid_api, g.upstream_timeout_s),
        camera_map=load_camera_map(g.cameras),
        status=CameraStatusReader(settings.redis.url, g.redis_timeout_s, g.status_cache_s),
    )
    handler = type("GalleryHandler", (Handler,), {"gallery": gallery})
    server = ThreadingHTTPServer((g.host, g.port), handler)
    server.daemon_threads = True
    return server, gallery


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="settings file (TOML, section [gallery])")
    parser.add_argument("--host", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to serve on (default 8080; 0: a free one)")
    parser.add_argument(
        "--reid-api", help="ReID service API base URL (default http://127.0.0.1:8700)"
    )
    parser.add_argument("--cameras", type=Path, help="cameras file (TOML) for the map")
    parser.add_argument(
        "--redis-url", help="Redis holding camera status (default: the local stack's)"
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
        server, gallery = make_server(settings)
    except (OSError, ValueError) as exc:  # cameras file unreadable or invalid, port taken
        log.error("gallery_cannot_start", extra={"error": str(exc)})
        print(f"crosscam gallery: cannot start: {exc}", file=sys.stderr)
        return EXIT_CANNOT_START
    start_metrics_server(settings.metrics, "gallery")
    host, port = str(server.server_address[0]), int(server.server_address[1])
    log.info(
        "gallery_serving",
        extra={
            "url": f"http://{host}:{port}/",
            "reid_api": settings.gallery.reid_api,
            "cameras": str(settings.gallery.cameras or "from the ReID API"),
            "redis": settings.redis.url,
        },  # fmt: skip
    )
    print(f"gallery: http://{host}:{port}/", flush=True)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    thread = threading.Thread(target=server.serve_forever, name="gallery-http", daemon=True)
    thread.start()
    stop.wait()
    log.info("gallery_stopping")
    server.shutdown()
    server.server_close()
    gallery.status.close()
    return 0
