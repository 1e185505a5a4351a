"""A real Redis stopped and started again under the tracker stage and the shared
loop's batch handling: the frames wait (retried with backoff), nothing is
dead-lettered, and the camera's state is restored (same tracklets as never stopped)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from common.backoff import Backoff
from schemas.codec import decode
from schemas.messages import Tracklet
from schemas.topics import DEADLETTER
from service.kafka import Handled, handle_batch
from tests.integration.test_tracker_service import _records
from tracker.core import TrackerParams
from tracker.service import TrackerStage
from tracker.state_store import RedisStateStore

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OwnRedis:
    """A redis-server of this test's own (append-only file: data survives a restart)."""

    def __init__(self, folder: Path) -> None:
        self.port, self.folder = _free_port(), folder
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        server = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc = subprocess.Popen(
            [server, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
             "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
            self.proc = None


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    r = OwnRedis(tmp_path)
    r.start()
    yield r
    r.stop()


def test_tracker_waits_out_a_redis_restart_and_restores_the_camera(own_redis: OwnRedis) -> None:
    camera = f"it-outage-{uuid.uuid4().hex[:8]}"
    params = TrackerParams()
    store = RedisStateStore.from_url(
        f"redis://127.0.0.1:{own_redis.port}/0", ttl_s=600, timeout_s=1
    )
    a = TrackerStage(params, store, checkpoint_interval_s=3600)
    a.handle(_records(camera, range(0, 20)))
    a.on_revoke([3])  # the camera's checkpoint, then the partition moves on
    own_redis.stop()

    b = TrackerStage(params, store, checkpoint_interval_s=3600)  # the new owner
    got: list[Handled] = []
    worker = threading.Thread(
        target=lambda: got.append(
            handle_batch(b, _records(camera, range(20, 60)), backoff=Backoff(0.05, 0.2))
        )
    )
    worker.start()
    time.sleep(1.0)  # Redis is down this long: the frames must wait, not be dead-lettered
    assert worker.is_alive() and not got
    own_redis.start()
    worker.join(timeout=60)
    store.close()

    (handled,) = got
    assert handled.unfinished == []
    assert [o for o in handled.outputs if o.topic == DEADLETTER.name] == []
    ref = TrackerStage(params, None)  # the uninterrupted reference
    ref.handle(_records(camera, range(0, 20)))
    expected = [decode(Tracklet, o.value) for o in ref.handle(_records(camera, range(20, 60)))]
    tracklets = [decode(Tracklet, o.value) for o in handled.outputs]
    assert tracklets and [t.tracklet_id for t in tracklets] == [t.tracklet_id for t in expected]
    assert [t.frame_seqs for t in tracklets] == [t.frame_seqs for t in expected]
