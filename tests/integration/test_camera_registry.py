"""Cameras at runtime against the real stack: the registry in Redis, the ReID API's admin routes
(sources write-only), the ReID topology following it, and ingest processes following it
(a real ``crosscam ingest`` comes online for a camera added while everything runs)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from crosscam.cameras import IngestReconciler
from crosscam.run import ingest_argv
from crosscam.supervisor import ProcessSpec, Supervisor
from reid.api import ReidApi, start_api
from reid.cameras_api import TopologyFollower, cameras_router
from reid.topology import Topology
from schemas.cameras import Camera, CamerasFile, Link, Location
from schemas.keys import camera_status_key
from service.camera_registry import CameraRegistry, RegistryError, UnknownCamera
from service.web import WebContext
from tests.integration.kafka_helpers import unique
from tests.unit.test_reid_store import engine
from tests.web_helpers import Tokens, db_url, web_world

pytestmark = pytest.mark.integration

REGISTRY_DB = 15
REGISTRY_WEB_DB = 5
SECRET = "s3cret-pa55"
ONLINE_WAIT_S = 60.0


def _seed_spec() -> CamerasFile:
    cams = [Camera(id=c, name=f"cam {c}", location=Location(x=float(i) * 100, y=0.0),
                   source=f"rtsp://op:{SECRET}@10.0.0.{i}/{c}") for i, c in enumerate("ab")]  # fmt: skip
    return CamerasFile(window_s=60.0, cameras=cams, links=[Link(a="a", b="b", max_transit_s=20)])


@pytest.fixture
def registry(redis_url: str) -> Iterator[CameraRegistry]:
    client = redis.Redis.from_url(db_url(redis_url, REGISTRY_DB))
    client.flushdb()
    try:
        yield CameraRegistry(client)
    finally:
        client.flushdb()
        client.close()


def test_registry_seeds_once_and_changes_persist(registry: CameraRegistry, tmp_path: Path) -> None:
    video = tmp_path / "rec.avi"
    video.write_bytes(b"x")
    assert registry.version() == 0
    assert registry.seed(_seed_spec(), tmp_path, "cameras.toml")
    assert not registry.seed(CamerasFile(), tmp_path, "other.toml")  # never twice
    v = registry.version()
    registry.add(Camera(id="c", source=str(video)))
    registry.set_link(Link(a="b", b="c", min_transit_s=1, max_transit_s=9))
    registry.update("a", enabled=False, name="west")
    assert registry.version() == v + 3
    kw = registry.client.connection_pool.connection_kwargs
    again = CameraRegistry(redis.Redis.from_url(f"redis://{kw['host']}:{kw['port']}/{REGISTRY_DB}"))
    spec = again.spec()  # another process reads the same registry
    assert [c.id for c in spec.cameras] == ["a", "b", "c"] and len(spec.links) == 2
    assert again.get("a").enabled is False and again.get("a").camera.name == "west"
    topo = Topology(spec)
    assert topo.transit_bounds("a", "c") == (1.0, 29.0)  # a-b-c through the new link
    registry.remove("b")  # and its links
    assert [c.id for c in registry.spec().cameras] == ["a", "c"] and registry.links() == []
    for bad in ("ftp://x/y", "relative/file.avi", str(tmp_path / "missing.avi"), "rtsp://x/\n"):
        with pytest.raises(RegistryError):
            registry.add(Camera(id="d", source=bad))
    with pytest.raises(RegistryError, match="exists"):
        registry.add(Camera(id="a"))
    with pytest.raises(UnknownCamera):
        registry.update("zz", name="x")
    with pytest.raises(UnknownCamera):
        registry.set_link(Link(a="a", b="zz"))
    assert "d" not in registry.entries()


@dataclass
class ApiWorld:
    url: str
    tokens: Tokens
    ctx: WebContext
    api: ReidApi
    registry: CameraRegistry

    def call(
        self, method: str, path: str, role: str | None = "admin", **kw: object
    ) -> httpx.Response:
        token = self.tokens.of(role)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.request(method, self.url + path, headers=headers, timeout=10, **kw)  # type: ignore[arg-type]


@pytest.fixture
def api_world(registry: CameraRegistry, redis_url: str, tmp_path: Path) -> Iterator[ApiWorld]:
    registry.seed(_seed_spec(), None, "test")
    eng = engine(tmp_path / "s")
    api = ReidApi(eng.store, Topology(registry.spec()), tmp_path / "thumbs")

    def apply(t: Topology) -> None:
        eng.topology = eng.linker.topology = api.topology = t

    follower = TopologyFollower(registry, apply)
    follower.refresh()
    with web_world(redis_url, REGISTRY_WEB_DB, tmp_path) as (ctx, tokens):
        server, port = start_api(api, ctx, "127.0.0.1", 0, [cameras_router(registry, follower)])
        try:
            yield ApiWorld(f"http://127.0.0.1:{port}", tokens, ctx, api, registry)
        finally:
            server.stop()
            eng.store.close()


def test_cameras_change_at_runtime_through_the_api(api_world: ApiWorld, tmp_path: Path) -> None:
    w = api_world
    new = {"id": "c", "name": "east door", "source": f"rtsp://op:{SECRET}@10.0.0.9/c",
           "location": {"x": 300.0, "y": 0.0}}  # fmt: skip
    r = w.call("POST", "/api/registry/cameras", json=new)
    assert r.status_code == 201, r.text
    assert r.json() == {"id": "c", "name": "east door", "location": {"x": 300.0, "y": 0.0, "lat": None, "lon": None},
                        "enabled": True, "has_source": True}  # fmt: skip
    # the ReID topology followed at once: the viewer's camera map has it, no source anywhere
    cams = w.call("GET", "/api/cameras", "viewer")
    assert "c" in [c["id"] for c in cams.json()["cameras"]] and "c" in w.api.topology.cameras
    r = w.call(
        "PUT",
        "/api/registry/links",
        json={"a": "b", "b": "c", "min_transit_s": 2, "max_transit_s": 15},
    )
    assert r.status_code == 200 and w.api.topology.transit_bounds("b", "c") == (2.0, 15.0)
    r = w.call("PATCH", "/api/registry/cameras/c", json={"enabled": False, "name": "east"})
    assert r.status_code == 200 and r.json()["enabled"] is False
    assert w.registry.get("c").camera.source.endswith(
        "/c"
    )  # kept: PATCH changed only what it named
    listing = w.call("GET", "/api/registry")
    assert [c["id"] for c in listing.json()["cameras"]] == ["a", "b", "c"]
    assert w.call("DELETE", "/api/registry/links/c/b").status_code == 200
    assert w.call("DELETE", "/api/registry/cameras/a").status_code == 200
    assert "a" not in w.api.topology.cameras and w.api.topology.spec.links == []
    for r in (cams, listing):
        assert SECRET not in r.text and "source" not in r.json().get("cameras", [{}])[0]
    trail = {e.action for e in w.ctx.audit_log.query(who="ada")[0]}
    assert {
        "camera.add",
        "camera.edit",
        "camera.remove",
        "link.set",
        "link.remove",
        "registry.view",
    } <= trail


def test_camera_routes_refuse_bad_requests(api_world: ApiWorld, tmp_path: Path) -> None:
    w = api_world
    ok = {"id": "c", "source": "rtsp://10.0.0.9/c"}
    assert w.call("POST", "/api/registry/cameras", None, json=ok).status_code == 401
    assert w.call("POST", "/api/registry/cameras", "operator", json=ok).status_code == 403
    assert w.call("GET", "/api/registry", "viewer").status_code == 403
    for bad in ({"id": "../x"}, {"id": ""}, {"id": "c", "source": "ftp://x"}, {"id": "c", "source": "/etc/nope"},
                {"id": "c", "colour": "red"}, {"id": "c", "location": {"lat": 200}}, {"id": "c", "source": "a" * 3000}):  # fmt: skip
        r = w.call("POST", "/api/registry/cameras", json=bad)
        assert r.status_code == 422 and "error" in r.json(), (bad, r.text)
    assert w.call("POST", "/api/registry/cameras", json={"id": "a"}).status_code == 409
    assert w.call("PATCH", "/api/registry/cameras/zz", json={"name": "x"}).status_code == 404
    assert (
        w.call("PATCH", "/api/registry/cameras/a", json={"source": "gopher://x"}).status_code == 422
    )
    assert w.call("DELETE", "/api/registry/cameras/zz").status_code == 404
    assert w.call("DELETE", "/api/registry/cameras/%2e%2e").status_code in (404, 422)
    for bad in (
        {"a": "a", "b": "a"},
        {"a": "a", "b": "b", "min_transit_s": 9, "max_transit_s": 1},
        {"a": "a"},
        [],
    ):
        assert w.call("PUT", "/api/registry/links", json=bad).status_code == 422, bad
    assert w.call("PUT", "/api/registry/links", json={"a": "a", "b": "zz"}).status_code == 404
    assert w.call("DELETE", "/api/registry/links/a/zz").status_code == 404
    assert w.call("GET", "/api/registry/cameras/a").status_code == 405
    # nothing changed by any refusal
    assert sorted(w.registry.entries()) == ["a", "b"] and w.registry.get(
        "a"
    ).camera.source.startswith("rtsp://op:")


def _sleeper(cam: str, source: str) -> ProcessSpec:
    return ProcessSpec(
        f"ingest-{cam}", [sys.executable, "-c", "import time; time.sleep(120)", cam, source]
    )


def _wait(cond, timeout_s: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return False


def test_ingest_processes_follow_the_registry(registry: CameraRegistry, tmp_path: Path) -> None:
    registry.seed(_seed_spec(), None, "test")
    sup = Supervisor([], tmp_path / "logs", grace_s=2)
    rec = IngestReconciler(registry, sup, _sleeper, poll_s=0)
    try:
        assert rec.tick() and sorted(sup.pids()) == ["ingest-a", "ingest-b"]
        assert not rec.tick()  # nothing changed: nothing done
        pid_b = sup.pids()["ingest-b"]
        registry.update("b", source="rtsp://10.0.0.8/b2")
        registry.update("a", enabled=False)
        registry.add(Camera(id="c", source="rtsp://10.0.0.7/c"))
        registry.add(Camera(id="d"))  # no source: no ingest
        assert rec.tick()
        pids = sup.pids()
        assert sorted(pids) == ["ingest-b", "ingest-c"] and pids["ingest-b"] != pid_b
        assert all(p is not None for p in pids.values())
        registry.remove("c")
        rec.tick()
        assert sorted(sup.pids()) == ["ingest-b"]
    finally:
        sup.stop()


def test_a_camera_added_at_runtime_comes_online(
    registry: CameraRegistry, redis_url: str, pets_video: Path, tmp_path: Path
) -> None:
    """A real ``crosscam ingest`` for a camera added to the registry writes its status: online."""
    registry.client.hset("crosscam:cameras:meta", "seeded_from", "test")
    cam = unique("live")[:40].replace("_", "-")
    status = redis.Redis.from_url(redis_url)  # ingest reports status in the stack's database 0
    sup = Supervisor([], tmp_path / "logs", grace_s=10)

    def make(c: str, source: str) -> ProcessSpec:
        return ProcessSpec(
            f"ingest-{c}",
            ingest_argv(c, source, ["--analysis-fps", "2"]),
            {"CROSSCAM_METRICS__PORT": "0"},
        )

    rec = IngestReconciler(registry, sup, make, poll_s=0)
    try:
        rec.tick()
        assert sup.pids() == {}
        registry.add(Camera(id=cam, source=str(pets_video)))
        rec.tick()
        key = camera_status_key(cam)
        online = _wait(lambda: status.hget(key, "state") in (b"online", b"ended"), ONLINE_WAIT_S)
        log = (tmp_path / "logs" / f"ingest-{cam}.log").read_text(errors="replace")[-3000:]
        assert online, log
        registry.remove(cam)
        rec.tick()
        assert sup.pids() == {}
    finally:
        sup.stop()
        status.delete(camera_status_key(cam))
        status.close()
