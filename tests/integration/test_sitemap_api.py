"""The site plan against the real stack: plan upload (checked by decoding), homographies per
camera with bad inputs refused, and tracklets stored afterwards carrying their plan trajectory,
returned by the identity route."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
import redis

from reid.api import ReidApi, start_api
from reid.engine import Engine
from reid.sitemap import foot_points, project
from reid.sitemap_api import SiteMap, sitemap_router
from schemas.messages import pack_f32
from tests.unit.test_reid_store import engine, tracklet
from tests.web_helpers import Tokens, db_url, web_world

pytestmark = pytest.mark.integration

SITEMAP_DB = 2
SITEMAP_WEB_DB = 1
IMAGE = [[0, 0], [640, 0], [640, 480], [0, 480]]
PLAN = [[100, 100], [300, 100], [300, 250], [100, 250]]


@dataclass
class World:
    url: str
    tokens: Tokens
    engine: Engine
    site: SiteMap

    def call(
        self, method: str, path: str, role: str | None = "admin", **kw: object
    ) -> httpx.Response:
        token = self.tokens.of(role)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        headers.update(kw.pop("headers", {}))  # type: ignore[arg-type]
        return httpx.request(method, self.url + path, headers=headers, timeout=10, **kw)  # type: ignore[arg-type]


@pytest.fixture
def world(redis_url: str, tmp_path: Path) -> Iterator[World]:
    client = redis.Redis.from_url(db_url(redis_url, SITEMAP_DB))
    client.flushdb()
    eng = engine(tmp_path / "s")
    site = SiteMap(client, tmp_path / "sitemap")
    eng.plan_track = site.track
    api = ReidApi(eng.store, eng.topology, tmp_path / "thumbs")
    with web_world(redis_url, SITEMAP_WEB_DB, tmp_path) as (ctx, tokens):
        server, port = start_api(
            api, ctx, "127.0.0.1", 0, [sitemap_router(site, lambda: api.topology)]
        )
        try:
            yield World(f"http://127.0.0.1:{port}", tokens, eng, site)
        finally:
            server.stop()
            eng.store.close()
            client.flushdb()


def test_a_plan_and_homographies_give_tracklets_a_plan_trajectory(world: World) -> None:
    w = world
    plan_png = cv2.imencode(".png", np.full((300, 400, 3), 240, np.uint8))[1].tobytes()
    r = w.call("POST", "/api/uploads/plan", content=plan_png)
    assert r.status_code == 201 and r.json()["plan"] == {"width": 400, "height": 300}
    assert w.call("GET", "/api/sitemap/plan.png", "viewer").content[:8] == b"\x89PNG\r\n\x1a\n"
    r = w.call("PUT", "/api/sitemap/cameras/a", json={"image_points": IMAGE, "plan_points": PLAN})
    assert r.status_code == 200, r.text
    h = np.array(r.json()["h"])
    view = w.call("GET", "/api/sitemap", "viewer").json()
    assert view["plan"]["width"] == 400 and view["cameras"]["a"]["plan_points"] == PLAN
    # a tracklet on camera a, walking down the image: its foot points on the plan
    t = tracklet("a", 1, 0, 10, 1)
    boxes = np.array([[300, 100, 340, 200], [300, 200, 340, 300], [300, 300, 340, 400]], np.float32)
    t.boxes_xyxy = pack_f32(boxes)
    t.frame_ts_ns = [0, 5 * 10**9, 10 * 10**9]
    t.frame_seqs = [0, 1, 2]
    w.engine.process(t)
    w.engine.process(tracklet("b", 2, 12, 20, 1))  # camera b has no homography: no trajectory
    ident = w.call("GET", "/api/identities/g1", "viewer").json()
    tracks = {x["camera_id"]: x["plan_track"] for x in ident["tracklets"]}
    want = project(h, foot_points(boxes))
    assert [p[0] for p in tracks["a"]] == t.frame_ts_ns
    assert np.allclose([p[1:] for p in tracks["a"]], want, atol=1e-2)
    assert 100 <= want[:, 0].min() and want[:, 0].max() <= 300  # inside the plan's quad
    assert tracks["b"] == []


def test_sitemap_routes_refuse_bad_requests(world: World) -> None:
    w = world
    ok = {"image_points": IMAGE, "plan_points": PLAN}
    assert w.call("PUT", "/api/sitemap/cameras/a", None, json=ok).status_code == 401
    assert w.call("PUT", "/api/sitemap/cameras/a", "operator", json=ok).status_code == 403
    assert w.call("POST", "/api/uploads/plan", "operator", content=b"x").status_code == 403
    assert w.call("GET", "/api/sitemap/plan.png", "viewer").status_code == 404  # none yet
    for bad in ({"image_points": IMAGE[:3], "plan_points": PLAN[:3]},
                {"image_points": IMAGE, "plan_points": [[0, 0], [1, 1], [2, 2], [3, 3]]},
                {"image_points": IMAGE, "plan_points": PLAN, "extra": 1},
                {"image_points": [[0, 0, 1]] * 4, "plan_points": PLAN}):  # fmt: skip
        r = w.call("PUT", "/api/sitemap/cameras/a", json=bad)
        assert r.status_code == 422 and "error" in r.json(), (bad, r.text)
    infinite = b'{"image_points": [[0,0],[640,0],[640,480],[0,480]], "plan_points": [[1e400,0],[1,0],[1,1],[0,1]]}'
    r = w.call(
        "PUT",
        "/api/sitemap/cameras/a",
        content=infinite,
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 422
    assert w.call("PUT", "/api/sitemap/cameras/zz", json=ok).status_code == 404
    assert w.call("PUT", "/api/sitemap/cameras/%2e%2e", json=ok).status_code in (404, 422)
    assert w.call("DELETE", "/api/sitemap/cameras/a").status_code == 404
    for not_image in (
        b"",
        b"GIF89a....",
        b"<svg onload=alert(1)>",
        b"\x89PNG\r\n\x1a\n" + b"\0" * 30,
    ):
        assert w.call("POST", "/api/uploads/plan", content=not_image).status_code == 415
    assert w.call("GET", "/api/sitemap", "viewer").json() == {"plan": None, "cameras": {}}
