"""An uploaded recording through the whole pipeline: ``crosscam run --runtime-cameras`` (every
stage a supervised process over the real Kafka, Redis, ONNX models), a clip uploaded through the
gallery for a camera that did not exist, replayed as that camera at its recorded time, and its
people appearing as identities on that camera, seen through the gallery.

It resets the stack's crosscam topics, groups and Redis keys first (as ``crosscam demo`` does):
run it on its own stack. About a minute or two on 2 cores.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import httpx
import pytest
import redis

from devstack import faults
from devstack import stack as stack_mod
from devstack.stack import StackConfig
from evaluation.live_scoring import reset_state
from schemas.cameras import Camera, CamerasFile, Location, dump_cameras_toml
from service.auth import Role, TokenStore
from tests.stack_fixtures import free_port

pytestmark = pytest.mark.e2e

CLIP_FRAMES = 60
START_NS = 1_600_000_000 * 10**9
WAIT_S = 360.0
METRICS_PORTS = 12


def _clip(video: Path, out: Path) -> Path:
    cap = cv2.VideoCapture(str(video))
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), 7.0, (768, 576))
    for _ in range(CLIP_FRAMES):
        ok, frame = cap.read()
        assert ok
        writer.write(frame)
    writer.release()
    cap.release()
    return out


def _wait(what: str, fn, timeout_s: float, proc: subprocess.Popen, logs: Path):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"crosscam run exited {proc.returncode}"
        try:
            out = fn()
        except httpx.HTTPError:
            out = None
        if out:
            return out
        time.sleep(1.0)
    tails = "\n".join(
        f"--- {p.name}\n{p.read_text(errors='replace')[-1500:]}" for p in sorted(logs.glob("*.log"))
    )
    raise AssertionError(f"timed out waiting for {what}\n{tails}")


def test_an_uploaded_recording_becomes_identities(
    stack: StackConfig, pets_video: Path, tmp_path: Path
) -> None:
    bootstrap, redis_url = stack_mod.kafka_bootstrap(stack), stack_mod.redis_url(stack)
    asyncio.run(reset_state(bootstrap, redis_url))
    token = TokenStore(redis.Redis.from_url(redis_url, decode_responses=True)).create(
        "uploader", Role.admin
    )[0]
    site = tmp_path / "site.toml"
    site.write_text(
        dump_cameras_toml(CamerasFile(cameras=[Camera(id="hall", location=Location(x=0, y=0))]))
    )
    gallery, api = free_port(), free_port()
    data = tmp_path / "run"
    env = {**os.environ, "CROSSCAM_ADMIN_TOKEN_FILE": str(tmp_path / "admin-token")}
    argv = [sys.executable, "-m", "crosscam.cli", "run", "--cameras", str(site), "--runtime-cameras",
            "--gallery-port", str(gallery), "--reid-api-port", str(api), "--data-dir", str(data),
            "--metrics-base-port", str(faults.free_port_range(METRICS_PORTS))]  # fmt: skip
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url, auth = f"http://127.0.0.1:{gallery}", {"Authorization": f"Bearer {token}"}
    try:
        _wait("the gallery", lambda: httpx.get(f"{url}/api/registry", headers=auth, timeout=5).status_code == 200,
              WAIT_S, proc, data / "logs")  # fmt: skip
        clip = _clip(pets_video, tmp_path / "recording.avi")
        r = httpx.post(f"{url}/api/uploads", params={"camera": "door", "start_ns": START_NS, "x": 50, "y": 0},
                       content=clip.read_bytes(), headers=auth, timeout=60)  # fmt: skip
        assert r.status_code == 201, r.text
        upload = r.json()["upload_id"]

        def done() -> dict | None:
            rows = httpx.get(f"{url}/api/uploads", headers=auth, timeout=5).json()
            row = next(u for u in rows if u["upload_id"] == upload)
            return row if row["state"] == "done" else None

        row = _wait("the replay", done, WAIT_S, proc, data / "logs")

        def identities() -> list | None:
            ids = httpx.get(
                f"{url}/api/identities", params={"camera": "door"}, headers=auth, timeout=10
            ).json()
            return ids or None

        ids = _wait("identities of the uploaded camera", identities, WAIT_S, proc, data / "logs")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert row["frames_read"] == row["frames_total"] == CLIP_FRAMES and row["frames_published"] > 0
    print(f"upload: {row}; identities on door: {len(ids)}")
    assert all(i["cameras"] == ["door"] for i in ids)
    # the identities were seen when the recording was made, not when it was uploaded
    assert all(START_NS <= i["first_seen_ns"] <= START_NS + 10 * 10**9 for i in ids), ids
