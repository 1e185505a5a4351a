"""The web gallery end to end, in headless Chromium, over a real ReID engine.

Real all the way: a PETS09 scenario cut into three cameras, ground-truth
tracklets embedded with the detector's OSNet ONNX embedder, linked by the
ReID engine into an embedded Qdrant (edge) store, served by the ReID HTTP API
(``reid/api.py``), fronted by the gallery server, driven by Playwright
(``tests/e2e/browser/gallery.mjs``) in Debian's Chromium. What the browser saw
is compared with what the store and :func:`reid.query.reidentify` say.

Needs ``chromium`` (deploy/install-system.sh) and Node with npm; the fixture
runs ``npm ci`` in tests/e2e/browser when playwright-core is missing there.
Nothing is skipped: a missing browser or Node is an error that says what to install.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import count
from pathlib import Path

import pytest
import redis

from common.units import NS_PER_S
from evaluation.mtmc import engine_params
from evaluation.mtmc_scoring import Scenario, gt_tracklets
from evaluation.scenario import T0_NS, build_scenario
from gallery.server import serve
from gallery.settings import GalleryConfig, GallerySettings
from reid.api import ReidApi, start_api
from reid.engine import Engine
from reid.qdrant_store import open_store
from reid.query import ReidQuery, reidentify
from reid.store import Scope, StoredTracklet, VectorStore
from schemas.keys import camera_status_key
from schemas.messages import Tracklet
from service.assets import models_dir
from service.settings import RedisSettings
from service.web import WebContext
from tests.stack_fixtures import free_port
from tests.web_helpers import Tokens, web_world

pytestmark = pytest.mark.e2e

BROWSER_DIR = Path(__file__).resolve().parent / "browser"
CHROMIUM = Path(os.environ.get("CROSSCAM_CHROMIUM", "/usr/bin/chromium"))
SCENARIO_CAMERAS = 3
SCENARIO_FRAMES = 200
"""29 s of PETS09 at 7 fps: enough for several people to cross all three views, cheap to embed."""
EMBEDDING_DIM = 512  # OSNet x0.25's output
GALLERY_REDIS_DB = 13
"""A Redis database of this test alone: the ingest tests write camera status for the same
camera ids (cam0...) into database 0 of the session's Redis."""
BROWSER_TIMEOUT_S = 120
PAGE_TIMEOUT_MS = 20_000
NPM_TIMEOUT_S = 300

REID_CAMERAS = ["cam1"]
REID_WINDOW_S = (5.0, 20.0)
"""The re-identify query's time window, seconds after the scenario's first frame."""
AREA_OF_CAM2 = (540.0, 0.0, 768.0, 576.0)
"""A map box (x0, y0, x1, y1) around cam2 alone (cameras sit at strip centres, y = 288)."""

HELD_BACK = 3
"""Tracklets linked only once the identities page shows: it must pick them up by itself."""
REFRESH_S = 1.0
READY_MARKER = "identities-ready"
"""File the browser driver writes once the identities page has loaded (then the test links more)."""
MARKER_WAIT_S = 60.0
MARKER_POLL_S = 0.1

ONLINE_FPS = "7.00"
ONLINE_RECONNECTS = "2"
STATUS_TTL_S = 120
WEB_REDIS_DB = 9
"""Tokens and the audit trail of this test (a database of its own)."""
HOSTILE_NAME = (
    '</select><img src=x onerror="window.__pwned=true"><script>window.__pwned=true</script>'
)
"""A camera name as an attacker who can edit the cameras file would write it."""


# --- the browser driver ---------------------------------------------------------------------


def _locked_version() -> str:
    lock = json.loads((BROWSER_DIR / "package-lock.json").read_text())
    return str(lock["packages"]["node_modules/playwright-core"]["version"])


def _installed_version() -> str | None:
    pkg = BROWSER_DIR / "node_modules" / "playwright-core" / "package.json"
    return json.loads(pkg.read_text())["version"] if pkg.is_file() else None


@pytest.fixture(scope="session")
def node_driver() -> str:
    """``node``, with playwright-core installed in tests/e2e/browser (``npm ci`` when missing)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise RuntimeError("the gallery browser test needs Node.js and npm on PATH")
    if not CHROMIUM.is_file():
        raise RuntimeError(
            f"{CHROMIUM} not found: run deploy/install-system.sh (Debian package chromium) "
            "or set CROSSCAM_CHROMIUM"
        )
    if _installed_version() != _locked_version():
        subprocess.run(
            [
                npm,
                "ci",
                "--prefix",
                str(BROWSER_DIR),
                "--no-audit",
                "--no-fund",
                "--prefer-offline",
            ],
            check=True,
            timeout=NPM_TIMEOUT_S,
        )
    return node


# --- a ReID engine and its API over real tracklets ------------------------------------------


@dataclass
class ReidWorld:
    """The scenario, the filled store and the ReID API serving it."""

    scenario: Scenario
    store: VectorStore
    api_url: str
    engine: Engine
    web: WebContext
    tokens: Tokens
    held_back: list[Tracklet]
    """The last tracklets to finish, fed while the identities page is open (auto-refresh)."""

    def stored(self) -> list[StoredTracklet]:
        return list(self.store.scroll(Scope()))


@pytest.fixture(scope="module")
def reid_world(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[ReidWorld]:
    from detector.config import OnnxEmbedderConfig, RuntimeConfig
    from detector.embedder import build_embedder

    root = tmp_path_factory.mktemp("gallery")
    build_scenario(
        root / "scenario", cameras=SCENARIO_CAMERAS, fmt="avi", max_frames=SCENARIO_FRAMES
    )
    scn = Scenario.load(root / "scenario")
    embedder = build_embedder(OnnxEmbedderConfig(), RuntimeConfig(), models_dir())
    samples = sorted(gt_tracklets(scn, embedder.embed), key=lambda s: s.tracklet.ts_end_ns)
    store = open_store("edge", root / "store", dim=EMBEDDING_DIM)
    ids = count(1)
    thumbs = root / "thumbnails"
    engine = Engine(store, scn.topology, engine_params(None, None), lambda: f"g{next(ids)}", thumbs)
    for s in samples[:-HELD_BACK]:  # in the order they finished, as the ReID stage sees them
        engine.process(s.tracklet)
    held = [s.tracklet for s in samples[-HELD_BACK:]]
    with web_world(redis_url, WEB_REDIS_DB, root) as (web, tokens):
        server, port = start_api(ReidApi(store, scn.topology, thumbs), web, "127.0.0.1", 0)
        try:
            yield ReidWorld(scn, store, f"http://127.0.0.1:{port}", engine, web, tokens, held)
        finally:
            server.stop()
            store.close()


# --- galleries ------------------------------------------------------------------------------


@contextmanager
def serving_gallery(reid_api: str, cameras: Path, redis_url: str, web: WebContext) -> Iterator[str]:
    """A gallery server on a free port in this process; its base URL."""
    settings = GallerySettings(
        gallery=GalleryConfig(port=0, reid_api=reid_api, cameras=cameras, refresh_s=REFRESH_S),
        redis=RedisSettings(url=redis_url),
    )
    server, gallery = serve(settings, web)
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()
        gallery.status.close()


def hostile_cameras_file(src: Path, dst: Path) -> Path:
    """The scenario's cameras file with every camera renamed to HOSTILE_NAME."""
    import tomllib

    from schemas.cameras import CamerasFile, dump_cameras_toml

    spec = CamerasFile.model_validate(tomllib.loads(src.read_text()))
    cams = [c.model_copy(update={"name": HOSTILE_NAME}) for c in spec.cameras]
    dst.write_text(dump_cameras_toml(spec.model_copy(update={"cameras": cams})))
    return dst


@pytest.fixture
def gallery_redis(redis_url: str) -> Iterator[str]:
    """The session Redis's test database, with cam0 reported online by a (pretend) ingest."""
    url = f"{redis_url.rsplit('/', 1)[0]}/{GALLERY_REDIS_DB}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    key = camera_status_key("cam0")
    client.hset(
        key,
        mapping={
            "state": "online",
            "last_frame_ns": str(time.time_ns()),
            "fps_measured": ONLINE_FPS,
            "reconnects": ONLINE_RECONNECTS,
        },
    )
    client.expire(key, STATUS_TTL_S)
    try:
        yield url
    finally:
        client.flushdb()
        client.close()


def _utc_input(ts_ns: int) -> str:
    """A datetime-local input's value (UTC, seconds) for a capture time."""
    return datetime.fromtimestamp(ts_ns / NS_PER_S, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _drive(node: str, plan: dict) -> dict:
    proc = subprocess.run(
        [node, str(BROWSER_DIR / "gallery.mjs"), json.dumps(plan)],
        capture_output=True,
        text=True,
        timeout=BROWSER_TIMEOUT_S,
        cwd=BROWSER_DIR,
    )
    try:
        facts = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise AssertionError(
            f"browser driver exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
        ) from None
    assert proc.returncode == 0 and "failed" not in facts, (
        f"browser driver failed: {facts.get('failed')}\n{proc.stderr[-4000:]}"
    )
    return facts


def _link_when_ready(world: ReidWorld, marker: Path, errors: list[BaseException]) -> None:
    """Once the page is open (marker written), link the held-back tracklets, as the stage would."""
    try:
        deadline = time.monotonic() + MARKER_WAIT_S
        while not marker.exists():
            if time.monotonic() > deadline:
                return  # the driver never got there; it fails and says why
            time.sleep(MARKER_POLL_S)
        for t in world.held_back:
            world.engine.process(t)
    except BaseException as exc:  # reported by the test, not lost in a thread
        errors.append(exc)


def _overlaps(t: StoredTracklet, ts_from_ns: int, ts_to_ns: int) -> bool:
    return t.ts_end_ns >= ts_from_ns and t.ts_start_ns <= ts_to_ns


# --- the test -------------------------------------------------------------------------------


def test_gallery_in_chromium(
    node_driver: str, reid_world: ReidWorld, gallery_redis: str, tmp_path: Path
) -> None:
    """Identities with images, a two-camera route, live camera status and re-identify, as seen."""
    world = reid_world
    topo = world.scenario.topology
    cameras_file = world.scenario.root / "cameras.toml"
    shots = Path(os.environ.get("CROSSCAM_GALLERY_SHOTS", tmp_path / "screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    ts_from = T0_NS + int(REID_WINDOW_S[0] * NS_PER_S)
    ts_to = T0_NS + int(REID_WINDOW_S[1] * NS_PER_S)
    dead_api = f"http://127.0.0.1:{free_port()}"
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    shown_before = len(world.stored())
    errors: list[BaseException] = []
    feeder = threading.Thread(
        target=_link_when_ready, args=(world, shots / READY_MARKER, errors), daemon=True
    )
    (shots / READY_MARKER).unlink(missing_ok=True)
    feeder.start()
    hostile = hostile_cameras_file(cameras_file, tmp_path / "hostile-cameras.toml")
    with (
        serving_gallery(world.api_url, hostile, gallery_redis, world.web) as url,
        serving_gallery(dead_api, cameras_file, dead_redis, world.web) as dead_url,
    ):
        facts = _drive(
            node_driver,
            {
                "url": url,
                "dead_url": dead_url,
                "chromium": str(CHROMIUM),
                "out_dir": str(shots),
                "timeout_ms": PAGE_TIMEOUT_MS,
                "ready_marker": READY_MARKER,
                "token": world.tokens.operator,
                "bad_token": "cc_not-a-token-at-all",
                "expect_sightings": shown_before + len(world.held_back),
                "reid": {
                    "cameras": REID_CAMERAS,
                    "from": _utc_input(ts_from),
                    "to": _utc_input(ts_to),
                    "area": list(AREA_OF_CAM2),
                },
            },
        )
        # a gallery whose ReID API is down still serves (the page said why, below)
        with urllib.request.urlopen(f"{dead_url}/healthz", timeout=5) as resp:
            assert json.load(resp) == {"ok": True}

    feeder.join(MARKER_WAIT_S)
    assert not errors, errors
    stored = world.stored()
    assert len(stored) == shown_before + len(world.held_back)
    by_id = {t.tracklet_id: t for t in stored}
    identities: dict[str, list[StoredTracklet]] = {}
    for t in stored:
        identities.setdefault(t.global_id, []).append(t)
    assert not facts["page_errors"], facts["page_errors"]

    # closed by default: a wrong token was refused, the right one kept for the tab
    assert "not valid" in facts["login"]["refused"]
    assert facts["login"]["who"] == "otto (operator)" and facts["login"]["stored"]
    # hostile camera names showed as text and ran nothing
    assert facts["cameras"]["names"] == [HOSTILE_NAME] * len(topo.cameras)
    assert facts["cameras"]["injected"] == 0 and not facts["cameras"]["pwned"]
    assert not facts["pwned"]
    # every page the operator opened is in the audit trail under their name
    trail, _ = world.web.audit_log.query(who="otto", limit=1000)
    actions = {e.action for e in trail}
    assert {"identities.list", "identity.view", "thumbnail", "reidentify"} <= actions
    assert all(e.forwarded_for == "127.0.0.1" for e in trail)

    # identities: the page refreshed by itself to show the tracklets linked while it was open
    assert facts["identities"]["sightings_at_load"] == shown_before
    # every identity, newest first, every best image loaded
    cards = facts["identities"]["cards"]
    newest_first = sorted(identities, key=lambda g: -max(t.ts_end_ns for t in identities[g]))
    assert [c["global_id"] for c in cards] == newest_first
    for c in cards:
        assert sorted(c["cameras"]) == sorted({t.camera_id for t in identities[c["global_id"]]})
    images = facts["identities"]["images"]
    assert len(images) == len(cards) and all(i["width"] > 0 for i in images), images

    # identity detail: its sightings in time order, from >= 2 cameras, and the route between them
    ident = facts["identity"]
    gid = ident["global_id"]
    mine = sorted(identities[gid], key=lambda t: t.ts_start_ns)
    assert ident["url_hash"] == f"#/identity/{gid}"
    assert ident["sightings"] == [t.camera_id for t in mine]
    assert len(set(ident["sightings"])) >= 2
    assert len(ident["images"]) == len(mine) and all(i["width"] > 0 for i in ident["images"])
    hops = sum(a.camera_id != b.camera_id for a, b in zip(mine, mine[1:], strict=False))
    assert ident["route_legs"] == hops >= 1
    assert {m["id"] for m in ident["map_cameras"] if m["seen"]} == set(ident["sightings"])

    # cameras: every camera of the cameras file, cam0 live from Redis, the others without ingest
    rows = {r["id"]: r for r in facts["cameras"]["rows"]}
    assert sorted(rows) == sorted(topo.cameras) == sorted(facts["cameras"]["map_cameras"])
    assert rows["cam0"]["state"] == "online"
    assert float(ONLINE_FPS) == pytest.approx(float(rows["cam0"]["cells"][3]))
    assert rows["cam0"]["cells"][4] == ONLINE_RECONNECTS
    assert {rows[c]["state"] for c in rows if c != "cam0"} == {"no ingest"}

    # re-identify within cameras and a time window: exactly the engine's ranking, all in scope
    cands = facts["reidentify"]["candidates"]
    assert facts["reidentify"]["global_id"] == gid and not facts["reidentify"]["error"]
    want = reidentify(
        world.store,
        topo,
        ReidQuery(
            global_id=gid, cameras=frozenset(REID_CAMERAS), ts_from_ns=ts_from, ts_to_ns=ts_to
        ),
    )
    assert [c["tracklet_id"] for c in cands] == [w.tracklet_id for w in want]
    assert cands, "no candidate on the chosen camera in the window: widen REID_WINDOW_S"
    assert [c["rank"] for c in cands] == [f"#{i + 1}" for i in range(len(cands))]
    distances = [c["distance"] for c in cands]
    assert distances == sorted(distances)
    for c in cands:
        t = by_id[c["tracklet_id"]]
        assert t.camera_id in REID_CAMERAS and _overlaps(t, ts_from, ts_to) and t.global_id != gid
    assert all(i["width"] > 0 for i in facts["reidentify"]["images"])
    # ... and the filters mattered: unfiltered, the same identity has candidates elsewhere
    unfiltered = reidentify(world.store, topo, ReidQuery(global_id=gid, limit=len(stored)))
    assert any(
        c.camera_id not in REID_CAMERAS or not _overlaps(by_id[c.tracklet_id], ts_from, ts_to)
        for c in unfiltered
    )

    # re-identify within a map area: only the cameras inside it
    area_cands = facts["reidentify_area"]["candidates"]
    assert facts["reidentify_area"]["area_drawn"]
    in_area = topo.cameras_in_area(*AREA_OF_CAM2)
    assert in_area == {"cam2"}
    want_area = reidentify(
        world.store,
        topo,
        ReidQuery(global_id=gid, area=AREA_OF_CAM2, ts_from_ns=ts_from, ts_to_ns=ts_to),
    )
    assert [c["tracklet_id"] for c in area_cands] == [w.tracklet_id for w in want_area]
    assert area_cands and {c["camera_id"] for c in area_cands} == in_area

    # the ReID API down: the page says so, with the address it tried
    down = facts["unreachable"]
    assert "unreachable" in down["message"] and dead_api not in down["message"]
    assert "unreachable" in down["connection"]
    assert down["camera_states"] == ["unknown"] * len(topo.cameras)
    assert "cannot be read" in down["cameras_note"] and dead_redis not in down["cameras_note"]
    for name in (
        "identities",
        "identity",
        "cameras",
        "reidentify",
        "reidentify_area",
        "unreachable",
        "login",
    ):
        assert (shots / f"{name}.png").stat().st_size > 0
