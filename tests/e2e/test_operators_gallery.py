"""Operators' gallery pages in headless Chromium, over the real ReID API, store, Redis and Kafka:
split a wrong link on the identity page, search by an uploaded photo and by a stored crop, add a
camera at runtime and see its (real) ingest come online, disable it.
Screenshots of each page go to ``$CROSSCAM_GALLERY_SHOTS`` (default: the test's tmp folder)."""

from __future__ import annotations

import os
import threading
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import pytest
import redis

from crosscam.cameras import IngestReconciler
from crosscam.run import crosscam_argv, ingest_argv
from crosscam.supervisor import ProcessSpec, Supervisor
from gallery.server import serve
from gallery.settings import GalleryConfig, GallerySettings
from reid.api import ReidApi, start_api
from reid.cameras_api import TopologyFollower, cameras_router
from reid.embedding import MODEL_FILE, CropEmbedder
from reid.engine import Engine
from reid.operator import Corrector, MatchPublisher
from reid.operator_api import OperatorApi, Searcher, operator_router
from reid.sitemap_api import SiteMap, sitemap_router
from reid.topology import Topology
from reid.uploads_api import uploads_router
from schemas.keys import SITEMAP_KEY, camera_status_key
from schemas.messages import Crop, Tracklet, pack_f32
from service.assets import model_path
from service.camera_registry import CameraRegistry
from service.settings import KafkaSettings, RedisSettings
from service.uploads import UploadStore
from tests.e2e.test_gallery import BROWSER_DIR, CHROMIUM, PAGE_TIMEOUT_MS, node_driver  # noqa: F401
from tests.integration.kafka_helpers import unique
from tests.integration.test_operator_api import _engine
from tests.unit.test_reid_embedding import pets_crops
from tests.web_helpers import db_url, web_world

pytestmark = pytest.mark.e2e

OPS_GALLERY_DB = 14
BROWSER_TIMEOUT_S = 120


def _tracklet(cam: str, person: int, t0_s: int, img, emb: CropEmbedder) -> Tracklet:  # type: ignore[no-untyped-def]
    crop = Crop(seq=0, ts_capture_ns=t0_s * 10**9, box_xyxy=[0, 0, 10, 20], score=0.9, quality=1.0,
                jpeg=cv2.imencode(".jpg", img)[1].tobytes(), embedding=pack_f32(emb.embed([img])[0]))  # fmt: skip
    return Tracklet(camera_id=cam, tracklet_id=f"{cam}:{person}:{t0_s}", track_id=person,
                    ts_start_ns=t0_s * 10**9, ts_end_ns=(t0_s + 8) * 10**9, crops=[crop])  # fmt: skip


def _ingest_spec(cam: str, source: str) -> ProcessSpec:
    return ProcessSpec(f"ingest-{cam}", ingest_argv(cam, source, ["--analysis-fps", "2"]),
                       {"CROSSCAM_METRICS__PORT": "0"})  # fmt: skip


def _replay_spec(redis_url: str, upload_id: str, cam: str, path: str, start_ns: int) -> ProcessSpec:
    argv = crosscam_argv("ingest", "--camera-id", cam, "--source", path, "--start-time-ns", str(start_ns),
                         "--redis-url", redis_url)  # status where the API reads it  # fmt: skip
    return ProcessSpec(f"upload-{upload_id}", argv, {"CROSSCAM_METRICS__PORT": "0"})


def _reconcile(reconciler: IngestReconciler, stop: threading.Event) -> None:
    """What ``crosscam run --runtime-cameras`` does between its supervision polls."""
    while not stop.wait(0.25):
        reconciler.supervisor.poll()
        reconciler.tick()


def _clip(video: Path, out: Path, frames: int = 30) -> Path:
    cap = cv2.VideoCapture(str(video))
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (384, 288))
    for _ in range(frames):
        ok, frame = cap.read()
        assert ok
        writer.write(cv2.resize(frame, (384, 288)))
    writer.release()
    cap.release()
    return out


def _walking_tracklet(img: np.ndarray, emb: CropEmbedder) -> Tracklet:
    """Person 17 again, on camera b, walking down the image (three boxes)."""
    t = _tracklet("b", 17, 60, img, emb)
    t.boxes_xyxy = pack_f32(
        np.array([[300, 100, 340, 200], [300, 200, 340, 300], [300, 300, 340, 400]], np.float32)
    )
    t.frame_ts_ns = [60 * 10**9, 64 * 10**9, 68 * 10**9]
    t.frame_seqs = [0, 1, 2]
    return t


def _after_homography(client: redis.Redis, cam: str, eng: Engine, lock: threading.Lock, t: Tracklet,
                      stop: threading.Event) -> None:  # fmt: skip
    """Once the browser saved ``cam``'s homography, link ``t`` as the ReID stage would."""
    while not stop.wait(0.2):
        if client.hexists(SITEMAP_KEY, f"camera:{cam}"):
            with lock:
                eng.process(t)
            return


def _status(redis_url: str, cam: str) -> str:
    client = redis.Redis.from_url(redis_url)
    try:
        state = client.hget(camera_status_key(cam), "state")
        client.delete(camera_status_key(cam))
        return state.decode() if state else ""
    finally:
        client.close()


def test_operator_pages_in_chromium(
    node_driver: str,  # noqa: F811
    redis_url: str,
    kafka_bootstrap: str,
    pets_video: Path,
    tmp_path: Path,
) -> None:
    import json
    import subprocess

    shots = Path(os.environ.get("CROSSCAM_GALLERY_SHOTS", tmp_path / "screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    crops = pets_crops((1, 17), 2)
    emb = CropEmbedder(model_path(MODEL_FILE))
    url = db_url(redis_url, OPS_GALLERY_DB)
    cam = unique("door")[:30]
    with web_world(redis_url, OPS_GALLERY_DB, tmp_path) as (ctx, tokens):
        eng = _engine(tmp_path / "s", 512, "ui", url)
        # person 1's crop seen on a then b (one identity); person 17 on c
        for t in (_tracklet("a", 1, 0, crops[1][0], emb), _tracklet("b", 1, 12, crops[1][0], emb),
                  _tracklet("c", 17, 40, crops[17][0], emb)):  # fmt: skip
            eng.process(t)
        gid = eng.identities(["a:1:0"])["a:1:0"]
        assert eng.identities(["b:1:12"])["b:1:12"] == gid
        api = ReidApi(eng.store, eng.topology, tmp_path / "thumbs")
        publisher = MatchPublisher(KafkaSettings(bootstrap_servers=kafka_bootstrap))
        ctx.on_stop.append(publisher.close)
        lock = threading.Lock()
        ops = OperatorApi(api, Corrector(eng, lock, redis.Redis.from_url(url)),
                          publisher, Searcher(model_path(MODEL_FILE)))  # fmt: skip
        registry = CameraRegistry(redis.Redis.from_url(url))
        registry.seed(eng.topology.spec, None, "test")

        def apply(t: Topology) -> None:
            eng.topology = eng.linker.topology = api.topology = t

        follower = TopologyFollower(registry, apply)
        follower.refresh()
        site = SiteMap(registry.client, tmp_path / "sitemap")
        eng.plan_track = site.track
        routers = [operator_router(ops), cameras_router(registry, follower),
                   uploads_router(registry, UploadStore(registry.client), tmp_path / "uploads"),
                   sitemap_router(site, lambda: api.topology)]  # fmt: skip
        gid17 = eng.identities(["c:17:40"])["c:17:40"]
        walk = _walking_tracklet(crops[17][0], emb)
        feeder = threading.Thread(
            target=_after_homography,
            args=(registry.client, "b", eng, lock, walk, stop_feed := threading.Event()),
            daemon=True,
        )
        feeder.start()
        server, port = start_api(api, ctx, "127.0.0.1", 0, routers)
        settings = GallerySettings(
            gallery=GalleryConfig(port=0, reid_api=f"http://127.0.0.1:{port}", refresh_s=1.0),
            redis=RedisSettings(url=redis_url),  # where ingest reports camera status
        )
        sup = Supervisor([], tmp_path / "logs", grace_s=10)
        reconciler = IngestReconciler(
            registry, sup, _ingest_spec, poll_s=0.5, make_replay=partial(_replay_spec, url)
        )
        stop = threading.Event()
        follow = threading.Thread(target=_reconcile, args=(reconciler, stop), daemon=True)
        follow.start()
        front, gallery = serve(settings, ctx)
        clip, fake = _clip(pets_video, tmp_path / "clip.avi"), tmp_path / "fake.mp4"
        fake.write_text("not a video, whatever its name says\n" * 50)
        plan_png = tmp_path / "plan.png"
        cv2.imwrite(str(plan_png), np.full((300, 400, 3), 235, np.uint8))
        photo = tmp_path / "person17.png"
        cv2.imwrite(str(photo), crops[17][1])  # another frame of person 17
        try:
            plan = {"url": f"http://127.0.0.1:{front.port}", "chromium": str(CHROMIUM),
                    "out_dir": str(shots), "token": tokens.admin, "timeout_ms": PAGE_TIMEOUT_MS,
                    "gid": gid, "split_tracklet": "b:1:12", "photo": str(photo),
                    "new_camera": {"id": cam, "source": str(pets_video)}, "online_timeout_ms": 60_000,
                    "upload": {"file": str(clip), "camera": f"{cam}-up", "start": "2020-09-13T12:26:40",
                               "fake": str(fake)},
                    "sitemap": {"plan": str(plan_png), "camera": "b", "image": "0,0; 640,0; 640,480; 0,480",
                                "clicks": [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.1, 0.9]], "gid": gid17}}  # fmt: skip
            proc = subprocess.run([node_driver, str(BROWSER_DIR / "operators.mjs"), json.dumps(plan)],
                                  capture_output=True, text=True, timeout=BROWSER_TIMEOUT_S, cwd=BROWSER_DIR)  # fmt: skip
            facts = json.loads(proc.stdout or "{}")
            assert proc.returncode == 0 and "failed" not in facts, (facts, proc.stderr[-3000:])
            new = eng.identities(["b:1:12"])["b:1:12"]
            online = _status(redis_url, cam)
            walked = eng.store.get([walk.tracklet_id])
        finally:
            stop_feed.set()
            stop.set()
            follow.join(5)
            sup.stop()
            front.stop()
            gallery.status.close()
            server.stop()
            eng.store.close()
    assert not facts["page_errors"], facts["page_errors"]
    assert sorted(facts["before"]) == ["a:1:0", "b:1:12"]
    # the split moved b:1:12 to a new identity, and the page went there
    assert new != gid and facts["after"]["hash"] == f"#/identity/{new}"
    assert facts["after"]["sightings"] == ["b:1:12"]
    # the uploaded photo of person 17 ranks person 17's sighting first
    assert facts["photo"][0]["tracklet_id"] == "c:17:40", facts["photo"]
    # the stored crop of person 1 ranks person 1's sightings first (same crop: ~0)
    assert {c["tracklet_id"] for c in facts["crop"][:2]} == {"a:1:0", "b:1:12"}
    assert facts["crop"][0]["distance"] < 0.05
    # the camera added in the browser got an ingest that came online (the page showed it);
    # its source never showed. Disabling it stops that ingest ("offline") unless its file
    # had already ended, or the stop is still on its way: the page's view is the check.
    assert facts["came_up"] in ("online", "ended") and facts["disabled"], facts
    assert online in ("online", "ended", "offline"), online
    assert (
        str(pets_video) not in facts["registry_text"] and "set (hidden)" in facts["registry_text"]
    )
    assert cam not in facts["registry_before"] and "a" in facts["registry_before"]
    # the upload was stored, replayed to its end as a new camera; a fake video was refused
    assert facts["upload"]["state"] == "done" and facts["upload"]["progress"] == 100.0
    assert "30 / 30 frames read" in facts["upload"]["text"]
    assert "· 0 sent" not in facts["upload"]["text"]  # sampled to the analysis rate, > 0
    assert "not a video" in facts["upload"]["refused"]
    # a homography placed in the browser: the next sighting has a plan path, drawn on the plan
    assert walked and len(walked[0].plan_track) == 3 and walked[0].global_id == gid17
    assert facts["plan_route"]["points"] == 3 and facts["plan_route"]["stops"] == 1
    for name in ("sitemap", "identity-plan-route", "upload-started", "upload-done", "identity-before-split", "identity-after-split", "search-by-photo", "search-by-crop",
                 "registry-camera-online", "cameras-with-runtime-camera"):  # fmt: skip
        assert (shots / f"{name}.png").stat().st_size > 0
