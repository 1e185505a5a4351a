"""The ReID API as a hostile client meets it: real uvicorn on loopback, a real embedded store,
tokens and the audit trail in the session's real Redis.

Every endpoint x missing token (401), a role too low (403), bad parameters (422),
an unknown id (404), a wrong method (405 with Allow) and an oversized body (413).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from gallery.server import serve
from gallery.settings import GalleryConfig, GallerySettings
from reid.api import ReidApi, start_api
from reid.engine import Engine
from schemas.cameras import Camera, CamerasFile
from service.web import WebContext
from tests.unit.test_reid_store import engine, tracklet
from tests.web_helpers import Tokens, web_world

pytestmark = pytest.mark.integration

API_REDIS_DB = 11
BODY_CAP = 4096
SECRET = "hunter2-s3cret"


@dataclass
class World:
    url: str
    tokens: Tokens
    ctx: WebContext
    engine: Engine
    thumbs: Path
    via_gallery: bool


@pytest.fixture(params=["direct", "via-gallery"])
def world(request: pytest.FixtureRequest, redis_url: str, tmp_path: Path) -> Iterator[World]:
    """The API on loopback; with ``via-gallery`` every call goes through the gallery's proxy."""
    thumbs = tmp_path / "thumbs"
    eng = engine(tmp_path / "s", thumbs)
    # a camera whose source carries credentials: they must never come back
    spec = eng.topology.spec
    cams = [
        Camera(id=c.id, name=c.name, location=c.location, source=f"rtsp://admin:{SECRET}@10.0.0.9/{c.id}")
        for c in spec.cameras
    ]  # fmt: skip
    eng.topology.spec = CamerasFile(window_s=spec.window_s, cameras=cams, links=spec.links)
    for row in [("a", 1, 0, 10, 1), ("b", 2, 12, 20, 1), ("c", 3, 100, 110, 2)]:
        eng.process(tracklet(*row))
    with web_world(redis_url, API_REDIS_DB, tmp_path, max_body_bytes=BODY_CAP) as (ctx, tokens):
        server, port = start_api(ReidApi(eng.store, eng.topology, thumbs), ctx, "127.0.0.1", 0)
        front = gallery = None
        url = f"http://127.0.0.1:{port}"
        if request.param == "via-gallery":
            settings = GallerySettings(gallery=GalleryConfig(port=0, reid_api=url))
            front, gallery = serve(settings, ctx)
            url = f"http://127.0.0.1:{front.port}"
        try:
            yield World(url, tokens, ctx, eng, thumbs, request.param == "via-gallery")
        finally:
            if front is not None and gallery is not None:
                front.stop()
                gallery.status.close()
            server.stop()
            eng.store.close()


def call(w: World, method: str, path: str, role: str | None = None, **kw: object) -> httpx.Response:
    token = w.tokens.of(role)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    headers.update(kw.pop("headers", {}))  # type: ignore[arg-type]
    return httpx.request(method, w.url + path, headers=headers, timeout=10, **kw)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    role: str
    bad: str | None = None
    unknown: str | None = None
    body: dict | None = None
    bad_body: dict | None = None


ROUTES = [
    Route("GET", "/api/whoami", "viewer"),
    Route("GET", "/api/health", "viewer"),
    Route("GET", "/api/cameras", "viewer"),
    Route("GET", "/api/identities", "viewer", "/api/identities?since=" + "1" * 400),
    Route("GET", "/api/identities/g1", "viewer", "/api/identities/%3Cscript%3E", "/api/identities/g999"),
    Route("GET", "/api/tracklets", "viewer", "/api/tracklets?limit=0&camera=a"),
    Route("GET", "/thumbnails/a/x.jpg", "viewer", None, "/thumbnails/a/nobody.jpg"),
    Route("GET", "/api/reidentify?tracklet_id=a:1:0", "operator",
          "/api/reidentify?global_id=g1&area=1,2,3", "/api/reidentify?tracklet_id=nope:1:2"),
    Route("GET", "/api/audit", "admin", "/api/audit?since=yesterday"),
    Route("GET", "/api/tokens", "admin"),
    Route("POST", "/api/tokens", "admin", "/api/tokens", None, {"name": "new", "role": "viewer"},
          {"name": "<img src=x>", "role": "god"}),
    Route("DELETE", "/api/tokens/000000000000", "admin", "/api/tokens/NOT-HEX", "/api/tokens/000000000000"),
]  # fmt: skip
LOWER = {"operator": "viewer", "admin": "operator"}


def _is_json_error(r: httpx.Response) -> bool:
    return r.headers["content-type"].startswith("application/json") and "error" in r.json()


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_every_route_refuses_what_it_must(world: World, route: Route) -> None:
    w = world
    body = {"json": route.body} if route.body else {}
    r = call(w, route.method, route.path, None, **body)
    assert r.status_code == 401 and _is_json_error(r), r.text
    assert r.headers["www-authenticate"].startswith("Bearer")
    r = call(w, route.method, route.path, None, headers={"Authorization": "Bearer cc_forged"})
    assert r.status_code == 401
    if route.role in LOWER:
        r = call(w, route.method, route.path, LOWER[route.role], **body)
        assert r.status_code == 403 and _is_json_error(r), r.text
        name = {"viewer": "vera", "operator": "otto"}[LOWER[route.role]]
        denied = w.ctx.audit_log.query(who=name)[0]
        assert [(e.action, e.route, e.status) for e in denied] == [
            ("denied", route.path.split("?")[0], 403)
        ]  # who tried what they may not do is on record
    if route.bad:
        bad = {"json": route.bad_body} if route.bad_body else body
        r = call(w, route.method, route.bad, route.role, **bad)
        assert r.status_code == 422 and _is_json_error(r), r.text
    if route.unknown:
        r = call(w, route.method, route.unknown, route.role, **body)
        assert r.status_code == 404 and _is_json_error(r), r.text
    wrong = "PUT"
    r = call(w, wrong, route.path.split("?")[0], route.role)
    assert r.status_code == 405 and _is_json_error(r)
    assert route.method in r.headers["allow"]
    r = call(w, route.method, route.path, route.role, content=b"x" * (BODY_CAP + 1))
    assert r.status_code == 413 and _is_json_error(r)


def test_answers_and_the_audit_trail(world: World) -> None:
    w = world
    ids = call(w, "GET", "/api/identities", "viewer").json()
    assert len(ids) == 2
    two_cams = next(i for i in ids if i["tracklets"] == 2)
    assert two_cams["cameras"] == ["a", "b"]
    detail = call(w, "GET", f"/api/identities/{two_cams['global_id']}", "viewer").json()
    assert [t["camera_id"] for t in detail["tracklets"]] == ["a", "b"]
    img = call(w, "GET", detail["thumbnails"][0], "viewer")
    assert img.status_code == 200 and img.content.startswith(b"\xff\xd8")
    assert img.headers["x-content-type-options"] == "nosniff"
    r = call(w, "GET", "/api/reidentify?tracklet_id=a:1:0&cameras=c", "operator")
    assert [c["camera_id"] for c in r.json()["candidates"]] == ["c"]
    assert [t["camera_id"] for t in call(w, "GET", "/api/tracklets?camera=b", "viewer").json()] == [
        "b"
    ]
    assert call(w, "GET", "/api/tracklets?limit=1", "viewer").json()[0]["camera_id"] == "c"
    assert [i["global_id"] for i in call(w, "GET", "/api/identities?limit=1", "viewer").json()] == [
        ids[0]["global_id"]
    ]
    cams = call(w, "GET", "/api/cameras", "viewer")
    assert cams.json()["cameras"][0]["id"] == "a" and "source" not in cams.text
    assert SECRET not in cams.text
    trail = call(w, "GET", "/api/audit?who=otto", "admin").json()["events"]
    assert [(e["action"], e["who"], e["role"]) for e in trail] == [
        ("reidentify", "otto", "operator")
    ]
    assert trail[0]["params"] == {"tracklet_id": "a:1:0", "cameras": "c"}
    assert trail[0]["client"] == "127.0.0.1" and trail[0]["status"] == 200
    views = call(w, "GET", "/api/audit?who=vera", "admin").json()["events"]
    assert [e["action"] for e in views] == [
        "identities.list", "identity.view", "thumbnail.blurred", "tracklets.list", "tracklets.list",
        "identities.list",
    ]  # fmt: skip
    assert views[1]["ids"] == [two_cams["global_id"]]


def test_tokens_over_the_api(world: World) -> None:
    w = world
    made = call(w, "POST", "/api/tokens", "admin", json={"name": "kim", "role": "operator"})
    assert made.status_code == 201
    token = made.json()["token"]
    who = httpx.get(f"{w.url}/api/whoami", headers={"Authorization": f"Bearer {token}"})
    assert who.json()["name"] == "kim" and who.json()["role"] == "operator"
    listed = call(w, "GET", "/api/tokens", "admin").json()
    assert "kim" in [t["name"] for t in listed] and token not in json.dumps(listed)
    gone = call(w, "DELETE", f"/api/tokens/{made.json()['token_id']}", "admin")
    assert gone.status_code == 200
    assert (
        httpx.get(f"{w.url}/api/whoami", headers={"Authorization": f"Bearer {token}"}).status_code
        == 401
    )
    acts = [e["action"] for e in call(w, "GET", "/api/audit?who=ada", "admin").json()["events"]]
    assert acts[:3] == ["token.create", "token.list", "token.revoke"]


def test_thumbnails_stay_in_their_folder(world: World, tmp_path: Path) -> None:
    w = world
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(b"\xff\xd8secret")
    (w.thumbs / "a" / "link.jpg").symlink_to(secret)
    (w.thumbs / "evil").symlink_to(tmp_path)
    for path in (
        "/thumbnails/../../etc/passwd",
        "/thumbnails/a/..%2F..%2Fsecret.jpg",
        "/thumbnails/%2e%2e/secret.jpg",
        "/thumbnails/a/%2e%2e%2f%2e%2e%2fsecret.jpg",
        f"/thumbnails/{tmp_path}/secret.jpg",
        "/thumbnails//etc/passwd",
        "/thumbnails/a/link.jpg",
        "/thumbnails/evil/secret.jpg",
    ):
        r = call(w, "GET", path, "viewer")
        assert r.status_code in (404, 422), path
        assert b"secret" not in r.content, path


def test_headers_host_and_cors(world: World) -> None:
    w = world
    r = call(w, "GET", "/api/whoami", "viewer", headers={"Origin": "https://evil.example"})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY" and "server" not in r.headers
    r = call(w, "GET", "/api/whoami", "viewer", headers={"Host": "evil.example"})
    assert r.status_code == 400 and _is_json_error(r)
    assert call(w, "GET", "/healthz").json() == {"ok": True}
    spec = call(w, "GET", "/openapi.json").json()
    assert ("/gallery/config" if w.via_gallery else "/api/reidentify") in spec["paths"]


def test_viewer_sees_the_head_blurred_operator_sees_it_clear(world: World) -> None:
    """Issue 13: a viewer's thumbnail differs from the operator's in the head region only."""
    import cv2
    import numpy as np

    from reid.headblur import HEAD_FRACTION, JPEG_QUALITY

    w = world
    ids = call(w, "GET", "/api/identities", "viewer").json()
    ref = next(i for i in ids if i["tracklets"] == 2)["thumbnail_url"]
    clear = call(w, "GET", ref, "operator")
    blurred = call(w, "GET", ref, "viewer")
    assert clear.status_code == blurred.status_code == 200
    on_disk = (w.thumbs / ref.removeprefix("/thumbnails/")).read_bytes()
    assert clear.content == on_disk  # the operator gets the stored crop itself
    original = cv2.imdecode(np.frombuffer(clear.content, np.uint8), cv2.IMREAD_COLOR)
    # the blurred copy is re-encoded: compare with the original re-encoded the same way
    ok, again = cv2.imencode(".jpg", original, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    assert ok
    a = cv2.imdecode(again, cv2.IMREAD_COLOR).astype(int)
    b = cv2.imdecode(np.frombuffer(blurred.content, np.uint8), cv2.IMREAD_COLOR).astype(int)
    assert a.shape == b.shape
    head = max(2, round(a.shape[0] * HEAD_FRACTION))
    diff = np.abs(a - b).max(axis=2)
    assert diff[:head].mean() > 20, "the head region was not blurred"
    # below the head, past the JPEG blocks (16 px with chroma) that straddle its edge
    below = -(-head // 16) * 16
    assert diff[below:].max() <= 4, "pixels below the head changed"
    trail = call(w, "GET", "/api/audit", "admin").json()["events"]
    assert {"thumbnail.clear", "thumbnail.blurred"} <= {e["action"] for e in trail}
