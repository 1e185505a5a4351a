"""Uploads against the real stack: a recorded video through the ReID API (and the gallery's
proxy), probed by the real ffprobe, stored, refused cleanly (nothing left behind), and replayed
by a real ``crosscam ingest`` at the recording's own time, with its progress."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import httpx
import pytest
import redis

from crosscam.cameras import IngestReconciler
from crosscam.run import crosscam_argv, ingest_argv
from crosscam.supervisor import ProcessSpec, Supervisor
from gallery.server import serve
from gallery.settings import GalleryConfig, GallerySettings
from reid.api import ReidApi, start_api
from reid.topology import Topology
from reid.uploads_api import uploads_router
from schemas.keys import camera_status_key
from service.camera_registry import CameraRegistry
from service.uploads import UploadStore
from tests.integration.kafka_helpers import unique
from tests.unit.test_reid_store import engine
from tests.web_helpers import Tokens, db_url, web_world

pytestmark = pytest.mark.integration

UPLOADS_DB = 4
UPLOADS_WEB_DB = 3
UPLOAD_CAP = 2 << 20
CLIP_FRAMES = 40
START_NS = 1_600_000_000 * 10**9
REPLAY_WAIT_S = 90.0


@pytest.fixture(scope="module")
def clip(pets_video: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first CLIP_FRAMES frames of PETS, half size, as an MJPG AVI (a few hundred KiB)."""
    out = tmp_path_factory.mktemp("clip") / "clip.avi"
    cap = cv2.VideoCapture(str(pets_video))
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (384, 288))
    for _ in range(CLIP_FRAMES):
        ok, frame = cap.read()
        assert ok
        writer.write(cv2.resize(frame, (384, 288)))
    writer.release()
    cap.release()
    return out


@dataclass
class World:
    url: str
    gallery_url: str
    tokens: Tokens
    registry: CameraRegistry
    store: UploadStore
    folder: Path
    redis_url: str

    def post(self, url: str, role: str | None, content: bytes, **params: object) -> httpx.Response:
        token = self.tokens.of(role)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.post(
            f"{url}/api/uploads", params=params, content=content, headers=headers, timeout=30
        )  # type: ignore[arg-type]

    def files(self) -> list[str]:
        return sorted(p.name for p in self.folder.glob("*")) + sorted(
            p.name for p in self.folder.glob(".*")
        )


@pytest.fixture
def world(redis_url: str, tmp_path: Path) -> Iterator[World]:
    client = redis.Redis.from_url(db_url(redis_url, UPLOADS_DB))
    client.flushdb()
    registry, store = CameraRegistry(client), UploadStore(client)
    registry.seed(engine(tmp_path / "seed-unused").topology.spec, None, "test")
    registry.update("a", source="rtsp://10.0.0.1/a")  # a camera with a live source
    eng = engine(tmp_path / "s")
    api = ReidApi(eng.store, Topology(registry.spec()), tmp_path / "thumbs")
    folder = tmp_path / "uploads"
    with web_world(redis_url, UPLOADS_WEB_DB, tmp_path, upload_max_bytes=UPLOAD_CAP) as (
        ctx,
        tokens,
    ):
        server, port = start_api(
            api, ctx, "127.0.0.1", 0, [uploads_router(registry, store, folder)]
        )
        url = f"http://127.0.0.1:{port}"
        front, gallery = serve(GallerySettings(gallery=GalleryConfig(port=0, reid_api=url)), ctx)
        try:
            yield World(
                url,
                f"http://127.0.0.1:{front.port}",
                tokens,
                registry,
                store,
                folder,
                db_url(redis_url, UPLOADS_DB),
            )
        finally:
            front.stop()
            gallery.status.close()
            server.stop()
            eng.store.close()
            client.flushdb()


def test_bad_uploads_are_refused_and_leave_nothing(world: World, clip: Path) -> None:
    w, video = world, clip.read_bytes()
    jpeg = cv2.imencode(".jpg", _frame(clip))[1].tobytes()
    ok = {"camera": "door", "start_ns": START_NS}
    assert w.post(w.url, None, video, **ok).status_code == 401
    assert w.post(w.url, "viewer", video, **ok).status_code == 403
    for bad in ({"camera": "../x", "start_ns": 1}, {"camera": "door"}, {"camera": "door", "start_ns": -1},
                {"camera": "door", "start_ns": 1, "x": "nan"}):  # fmt: skip
        assert w.post(w.url, "operator", video, **bad).status_code == 422, bad
    assert w.post(w.url, "operator", b"", **ok).status_code == 422
    for not_video in (jpeg, b"hello, not a video" * 100, video[:3000]):
        r = w.post(w.url, "operator", not_video, **ok)
        assert r.status_code == 415 and "error" in r.json(), r.text
    big = b"\0" * (UPLOAD_CAP + 1)
    assert w.post(w.url, "operator", big, **ok).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: the cap bites while streaming
        for _ in range(UPLOAD_CAP // 65536 + 2):
            yield b"\0" * 65536

    r = httpx.post(f"{w.url}/api/uploads", params=ok, content=chunks(),
                   headers={"Authorization": f"Bearer {w.tokens.operator}"}, timeout=30)  # fmt: skip
    assert r.status_code == 413
    assert (
        w.post(w.url, "operator", video, camera="a", start_ns=START_NS).status_code == 409
    )  # live source
    assert w.files() == [] and w.store.all() == [] and "door" not in w.registry.entries()


def _frame(clip: Path):  # type: ignore[no-untyped-def]
    cap = cv2.VideoCapture(str(clip))
    ok, frame = cap.read()
    cap.release()
    assert ok
    return frame


def test_an_upload_is_stored_replayed_at_its_time_with_progress(
    world: World, clip: Path, tmp_path: Path
) -> None:
    w = world
    cam = unique("door")[:30]
    r = w.post(
        w.gallery_url,
        "operator",
        clip.read_bytes(),
        camera=cam,
        start_ns=START_NS,
        name="back door",
        x=5,
        y=6,
    )
    assert r.status_code == 201, r.text  # through the gallery's proxy, streamed
    up = r.json()
    assert up["frames_total"] == CLIP_FRAMES and up["state"] == "queued" and "path" not in up
    assert w.files() == [f"{up['upload_id']}.avi"]
    entry = w.registry.get(cam)
    assert (
        entry.camera.name == "back door"
        and entry.camera.source == ""
        and entry.camera.location.x == 5
    )
    assert (
        w.post(w.url, "operator", clip.read_bytes(), camera=cam, start_ns=START_NS).status_code
        == 409
    )

    sup = Supervisor([], tmp_path / "logs", grace_s=10)

    def replay(upload_id: str, c: str, path: str, start_ns: int) -> ProcessSpec:
        argv = crosscam_argv(
            "ingest",
            "--camera-id",
            c,
            "--source",
            path,
            "--start-time-ns",
            str(start_ns),
            "--redis-url",
            w.redis_url,
        )  # status where the API reads it
        return ProcessSpec(f"upload-{upload_id}", argv, {"CROSSCAM_METRICS__PORT": "0"})

    rec = IngestReconciler(w.registry, sup, lambda c, s: ProcessSpec(f"ingest-{c}", ingest_argv(c, s, [])),
                           poll_s=0, make_replay=replay)  # fmt: skip
    status = w.registry.client
    try:
        deadline = time.monotonic() + REPLAY_WAIT_S
        while time.monotonic() < deadline:
            sup.poll()
            rec.tick()
            if w.store.all()[0].state == "done":
                break
            time.sleep(0.2)
        rows = httpx.get(
            f"{w.url}/api/uploads", headers={"Authorization": f"Bearer {w.tokens.operator}"}
        ).json()
    finally:
        sup.stop()
    log = "".join(p.read_text(errors="replace")[-2000:] for p in (tmp_path / "logs").glob("*.log"))
    assert w.store.all()[0].state == "done", log
    row = rows[0]
    assert row["state"] == "done" and row["frames_read"] == row["frames_total"] == CLIP_FRAMES, row
    assert 0 < row["frames_published"] <= CLIP_FRAMES, row  # sampled to the analysis rate
    st = {k.decode(): v.decode() for k, v in status.hgetall(camera_status_key(cam)).items()}
    assert int(st["frames_captured"]) == CLIP_FRAMES, st
    # replayed at the time it was recorded: the last frame is ~4 s after START_NS
    assert START_NS < int(st["last_frame_ns"]) <= START_NS + 5 * 10**9
    status.delete(camera_status_key(cam))
    # its ingest is not started again, and the file stays for the record
    assert not any(n.startswith("upload-") for n in sup.children) and w.files() == [
        f"{up['upload_id']}.avi"
    ]
