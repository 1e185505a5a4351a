"""Pytest fixtures that start the real local stack (Kafka, Redis, RTSP).

Loaded from tests/conftest.py with ``pytest_plugins = ["tests.stack_fixtures"]``.

A test that needs a server gets it started here; nothing is ever skipped
because a server is missing: if one cannot start, the fixture raises
``StackError`` with the server's log tail and the test errors loudly.

At the end of the session the fixtures stop what *they* started, and leave
alone what was already running (a developer's ``crosscam stack up``), unless
``CROSSCAM_STACK_KEEP=1`` asks to keep everything for the next run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from devstack import stack as stack_mod
from devstack.stack import RtspServer, StackConfig

if TYPE_CHECKING:  # the pipeline's modules load only for the tests that run it
    from crosscam.demo import LiveRun


def free_port() -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def live_run_on_free_ports(out: Path, metrics_ports: int, timeout_s: float, **kw: Any) -> LiveRun:
    """A live run of the whole pipeline on free ports (metrics, ReID API, gallery), never the
    defaults; ``kw`` are the rest of :class:`crosscam.demo.LiveRun`'s fields."""
    from crosscam.demo import LiveRun
    from devstack.faults import free_port_range

    return LiveRun(
        out=out,
        gallery_port=free_port(),
        reid_api_port=free_port(),
        metrics_base_port=free_port_range(metrics_ports),
        timeout_s=timeout_s,
        **kw,
    )


@contextlib.contextmanager
def server_state_dir(prefix: str) -> Iterator[Path]:
    """A fresh state dir for a private server, removed afterwards.

    Not pytest's tmp_path: pytest prunes old numbered temp dirs, and with
    several sessions running at once (developers, CI shards) that can pull a
    live server's pid file or mounts out from under it.
    """
    path = Path(tempfile.mkdtemp(prefix=f"crosscam-{prefix}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def private_stack_config(state_dir: Path) -> StackConfig:
    """A stack on fresh ports and its own state dir, sharing the jar cache.

    For tests that stop, kill or take down servers: they must not disturb
    the session's stack that every other test uses.
    """
    main = StackConfig.from_env()
    return replace(
        main,
        state_dir=state_dir.resolve(),
        kafka_port=free_port(),
        kafka_controller_port=free_port(),
        redis_port=free_port(),
        rtsp_port=free_port(),
        prometheus_port=free_port(),
        kafka_libs_override=main.kafka_libs_dir,
    )


@pytest.fixture(scope="session")
def stack_config() -> StackConfig:
    """The session stack's config (from the environment, like the CLI)."""
    return StackConfig.from_env()


@pytest.fixture(scope="session")
def stack(stack_config: StackConfig) -> Iterator[StackConfig]:
    """Kafka, Redis and the RTSP server, up and answering, for the whole session."""
    before = stack_mod.status(stack_config)
    state = stack_mod.up(cfg=stack_config)
    not_up = {k: v for k, v in state.items() if v != "up"}
    if not_up:
        raise stack_mod.StackError("stack", f"services not up after up(): {not_up}")
    yield stack_config
    if os.environ.get("CROSSCAM_STACK_KEEP") == "1":
        return
    started_here = [name for name, was in before.items() if was == "down"]
    if "rtsp" in started_here:
        stack_mod.stack_rtsp(stack_config).stop()
    if "redis" in started_here:
        stack_mod.redis_stop(stack_config)
    if "kafka" in started_here:
        stack_mod.kafka_stop(stack_config)


@pytest.fixture(scope="session")
def kafka_bootstrap(stack: StackConfig) -> str:
    """``host:port`` of the session's Kafka broker."""
    return stack_mod.kafka_bootstrap(stack)


@pytest.fixture(scope="session")
def redis_url(stack: StackConfig) -> str:
    """``redis://`` URL of the session's Redis."""
    return stack_mod.redis_url(stack)


@contextlib.contextmanager
def running_rtsp_server(prefix: str = "rtsp") -> Iterator[RtspServer]:
    """Start a private RtspServer on a free port; stop it and remove its dir after."""
    with server_state_dir(prefix) as state:
        server = RtspServer(free_port(), state)
        try:
            server.start()
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="session")
def rtsp_server() -> Iterator[RtspServer]:
    """A private RTSP server on a free port for the session; publish cameras on it.

    Tests that pause, kill or stop it should use ``private_rtsp_server``.
    """
    with running_rtsp_server() as server:
        yield server


@pytest.fixture
def private_rtsp_server() -> Iterator[RtspServer]:
    """An RTSP server of this test alone (fault tests may kill or pause it)."""
    with running_rtsp_server() as server:
        yield server


@pytest.fixture(scope="session")
def pets_video() -> Path:
    """PETS09-S2L1 ``vtest.avi`` (768x576, 10 fps, 795 frames)."""
    from service.assets import pets_dir

    path = pets_dir() / "vtest.avi"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the shared test assets are missing (CROSSCAM_SHARED)")
    return path
