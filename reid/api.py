"""The ReID service's small HTTP JSON API (stdlib http.server in a thread).

The embedded store opens in one process only, so the gallery asks the ReID
service. Endpoints (GET; times are integer ns since the epoch):

* ``/api/health`` — ``{"ok": true, "points": N}``
* ``/api/cameras`` — the cameras file: id, name, location, links
* ``/api/identities?camera=&since=&until=&limit=`` — identities seen in the
  window, latest first: global id, cameras, first/last seen, tracklet count,
  best thumbnail
* ``/api/identities/<global_id>`` — its tracklets (time order) with thumbnails
* ``/api/tracklets?camera=&global_id=&since=&until=&limit=``
* ``/api/reidentify?tracklet_id=|global_id=&cameras=a,b&area=x0,y0,x1,y1&since=&until=&limit=``
  — ranked candidates and the same grouped by identity
* ``/thumbnails/<thumbnail_ref>`` — the crop JPEG
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from reid.query import ReidQuery, by_identity, reidentify
from reid.store import Scope, StoredTracklet, VectorStore
from reid.topology import Topology

log = logging.getLogger(__name__)

MAX_LIST = 1000
"""Most rows one list call returns (bounded responses whatever the store holds)."""
DEFAULT_LIST = 100


def _tracklet_json(t: StoredTracklet) -> dict[str, Any]:
    return {
        "tracklet_id": t.tracklet_id,
        "camera_id": t.camera_id,
        "ts_start_ns": t.ts_start_ns,
        "ts_end_ns": t.ts_end_ns,
        "global_id": t.global_id,
        "thumbnail_ref": t.thumbnail_ref,
        "thumbnail_url": f"/thumbnails/{t.thumbnail_ref}" if t.thumbnail_ref else "",
    }


class ReidApi:
    """Answers the API's questions from a store, a topology and the thumbnails folder."""

    def __init__(self, store: VectorStore, topology: Topology, thumbnails_dir: Path) -> None:
        self.store = store
        self.topology = topology
        self.thumbnails_dir = thumbnails_dir.resolve()

    def _scope(self, qs: dict[str, list[str]]) -> Scope:
        def one(name: str) -> str | None:
            v = qs.get(name)
            return v[0] if v else None

        cams = one("camera") or one("cameras")
        since, until, gid = one("since"), one("until"), one("global_id")
        return Scope(
            cameras=frozenset(cams.split(",")) if cams else None,
            ts_from_ns=int(since) if since else None,
            ts_to_ns=int(until) if until else None,
            global_ids=frozenset([gid]) if gid else None,
        )

    @staticmethod
    def _limit(qs: dict[str, list[str]]) -> int:
        return max(1, min(int(qs.get("limit", [DEFAULT_LIST])[0]), MAX_LIST))

    def cameras(self) -> dict[str, Any]:
        return {
            "window_s": self.topology.window_s,
            "cameras": [c.model_dump() for c in self.topology.cameras.values()],
            "links": [lk.model_dump() for lk in self.topology.spec.links],
        }

    def tracklets(self, qs: dict[str, list[str]]) -> list[dict[str, Any]]:
        rows = sorted(self.store.scroll(self._scope(qs)), key=lambda t: -t.ts_end_ns)
        return [_tracklet_json(t) for t in rows[: self._limit(qs)]]

    def identities(self, qs: dict[str, list[str]]) -> list[dict[str, Any]]:
        groups: dict[str, list[StoredTracklet]] = {}
        for t in self.store.scroll(self._scope(qs)):
            groups.setdefault(t.global_id, []).append(t)
        out = []
        last_seen = {gid: max(t.ts_end_ns for t in ts) for gid, ts in groups.items()}
        for gid, ts in groups.items():
            ts.sort(key=lambda t: t.ts_start_ns)
            thumb = next((t for t in reversed(ts) if t.thumbnail_ref), None)
            out.append(
                {
                    "global_id": gid,
                    "cameras": sorted({t.camera_id for t in ts}),
                    "first_seen_ns": ts[0].ts_start_ns,
                    "last_seen_ns": last_seen[gid],
                    "tracklets": len(ts),
                    "thumbnail_url": f"/thumbnails/{thumb.thumbnail_ref}" if thumb else "",
                }
            )
        out.sort(key=lambda r: -last_seen[str(r["global_id"])])
        return out[: self._limit(qs)]

    def identity(self, gid: str) -> dict[str, Any] | None:
        ts = sorted(
            self.store.scroll(Scope(global_ids=frozenset([gid]))), key=lambda t: t.ts_start_ns
        )
        if not ts:
            return None
        return {
            "global_id": gid,
            "cameras": sorted({t.camera_id for t in ts}),
            "tracklets": [_tracklet_json(t) for t in ts[-MAX_LIST:]],
            "thumbnails": [f"/thumbnails/{t.thumbnail_ref}" for t in ts if t.thumbnail_ref][
                -MAX_LIST:
            ],
        }

    def reidentify(self, qs: dict[str, list[str]]) -> dict[str, Any]:
        scope = self._scope(qs)
        area = qs.get("area")
        q = ReidQuery(
            tracklet_id=qs.get("tracklet_id", [""])[0],
            global_id=qs.get("global_id", [""])[0],
            cameras=scope.cameras,
            area=tuple(float(x) for x in area[0].split(",")) if area else None,  # type: ignore[arg-type]
            ts_from_ns=scope.ts_from_ns,
            ts_to_ns=scope.ts_to_ns,
            limit=self._limit(qs),
        )
        cands = reidentify(self.store, self.topology, q)
        return {"candidates": [asdict(c) for c in cands], "identities": by_identity(cands)}

    def thumbnail(self, ref: str) -> bytes | None:
        path = (self.thumbnails_dir / ref).resolve()
        if self.thumbnails_dir not in path.parents or not path.is_file():
            return None
        return path.read_bytes()


def _handler(api: ReidApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt: str, *args: Any) -> None:
            log.debug("api_request " + fmt, *args)

        def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Access-Control-Allow-Origin", "*")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, code: int, obj: Any) -> None:
            self._send(code, json.dumps(obj).encode())

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            url = urlparse(self.path)
            qs = parse_qs(url.query)
            path = url.path.rstrip("/")
            try:
                if path == "/api/health":
                    self._json(200, {"ok": True, "points": api.store.count()})
                elif path == "/api/cameras":
                    self._json(200, api.cameras())
                elif path == "/api/identities":
                    self._json(200, api.identities(qs))
                elif path.startswith("/api/identities/"):
                    found = api.identity(unquote(path.split("/", 3)[3]))
                    self._json(200 if found else 404, found or {"error": "unknown identity"})
                elif path == "/api/tracklets":
                    self._json(200, api.tracklets(qs))
                elif path == "/api/reidentify":
                    self._json(200, api.reidentify(qs))
                elif path.startswith("/thumbnails/"):
                    data = api.thumbnail(unquote(path[len("/thumbnails/") :]))
                    if data is None:
                        self._json(404, {"error": "no such thumbnail"})
                    else:
                        self._send(200, data, "image/jpeg")
                else:
                    self._json(404, {"error": "not found"})
            except KeyError as exc:
                self._json(404, {"error": f"unknown {exc}"})
            except ValueError as exc:
                self._json(400, {"error": str(exc)})

    return Handler


def start_api(api: ReidApi, host: str, port: int) -> tuple[ThreadingHTTPServer, int]:
    """Serve the API in a daemon thread; (server, bound port). ``server.shutdown()`` stops it."""
    server = ThreadingHTTPServer((host, port), _handler(api))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="reid-api", daemon=True).start()
    bound = server.server_address[1]
    log.info("reid_api_started", extra={"host": host, "port": bound})
    return server, int(bound)
