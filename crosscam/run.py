"""``crosscam run --cameras cameras.toml``: every stage for a camera network, supervised.

Starts one ingest process per camera in the cameras file and the detector,
tracker and ReID stages (and the gallery) as supervised child processes:
a child that dies is restarted with backoff; SIGTERM stops them all cleanly
(each stage finishes its batch and commits). Kafka, Redis and Qdrant are
the local stack's unless their addresses are given (flags or environment).

With ``--runtime-cameras`` the cameras file seeds the Redis camera registry
once; from then on cameras are added, edited, disabled and removed through
the ReID API (admin) while everything runs: ingest processes follow the
registry (:mod:`crosscam.cameras`), the ReID stage reloads its topology and
the gallery draws the ReID API's cameras.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from crosscam.cameras import IngestReconciler
from crosscam.supervisor import ProcessSpec, Supervisor
from reid.topology import Topology
from service.auth import default_token_file
from service.camera_registry import CameraRegistry
from service.logs import setup_logging

log = logging.getLogger(__name__)

STAGES = ("ingest", "detector", "tracker", "reid", "gallery")


def ingest_argv(camera_id: str, source: str, cfg: list[str]) -> list[str]:
    """argv of one camera's ingest (``--eos-on-stop``: a stopped camera closes its tracks)."""
    return crosscam_argv(
        "ingest", "--camera-id", camera_id, "--source", source, "--eos-on-stop", *cfg
    )


def crosscam_argv(*args: str) -> list[str]:
    """argv that runs ``crosscam ARGS`` with this interpreter (works inside a venv)."""
    return [sys.executable, "-m", "crosscam.cli", *args]


def build_specs(
    cameras_file: Path,
    only: set[str] | None = None,
    replicas: dict[str, int] | None = None,
    config: Path | None = None,
    metrics_base_port: int = 19400,
    data_dir: Path | None = None,
    gallery_port: int = 8080,
    reid_api_port: int = 8700,
) -> list[ProcessSpec]:
    """One spec per ingest camera and per stage replica, each with its own metrics port."""
    topology = Topology.load(cameras_file)
    only = only or set(STAGES)
    replicas = replicas or {}
    cfg = ["--config", str(config)] if config else []
    specs: list[ProcessSpec] = []
    port = metrics_base_port

    def add(name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        nonlocal port
        specs.append(
            ProcessSpec(name, argv, {**(env or {}), "CROSSCAM_METRICS__PORT": str(port)}, port)
        )
        port += 1

    if "ingest" in only:
        for cam in topology.cameras:
            source = topology.source_path(cam)
            if not source:
                raise ValueError(f"camera {cam!r} has no source in {cameras_file}")
            add(f"ingest-{cam}", ingest_argv(cam, source, cfg))
    for stage in ("detector", "tracker"):
        if stage in only:
            for i in range(replicas.get(stage, 1)):
                add(f"{stage}-{i}", crosscam_argv(stage, *cfg))
    data = ["--data-dir", str(data_dir)] if data_dir else []
    if "reid" in only:
        add(
            "reid",
            crosscam_argv(
                "reid",
                "--cameras",
                str(cameras_file),
                "--api-port",
                str(reid_api_port),
                *data,
                *cfg,
            ),
        )
    if "gallery" in only:
        add(
            "gallery",
            crosscam_argv(
                "gallery",
                "--port",
                str(gallery_port),
                "--cameras",
                str(cameras_file),
                "--reid-api",
                f"http://127.0.0.1:{reid_api_port}",
                *cfg,
            ),
        )
    return specs


def _parse_replicas(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for part in filter(None, text.split(",")):
        stage, _, n = part.partition("=")
        if stage not in ("detector", "tracker") or not n.isdigit() or int(n) < 1:
            raise argparse.ArgumentTypeError(
                f"bad replica count {part!r} (e.g. tracker=2,detector=1)"
            )
        out[stage] = int(n)
    return out


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cameras", type=Path, required=True, help="cameras file (TOML)")
    parser.add_argument("--config", type=Path, help="settings file (TOML) passed to every stage")
    parser.add_argument(
        "--only", default="", help=f"comma list of stages to run (default all: {','.join(STAGES)})"
    )
    parser.add_argument(
        "--replicas", type=_parse_replicas, default={}, help="e.g. tracker=2,detector=1"
    )
    parser.add_argument("--kafka", help="Kafka bootstrap servers (default: local stack)")
    parser.add_argument("--redis", help="Redis URL (default: local stack)")
    parser.add_argument(
        "--qdrant", help="Qdrant server URL (default: embedded, owned by the reid stage)"
    )
    parser.add_argument(
        "--metrics-base-port", type=int, default=19400, help="first metrics port; +1 per process"
    )
    parser.add_argument("--gallery-port", type=int, default=8080)
    parser.add_argument("--reid-api-port", type=int, default=8700, help="the ReID query API")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path("runs/live"),
        help="where reid keeps its store and thumbnails",
    )
    parser.add_argument(
        "--stack", action="store_true", help="start the local stack first (crosscam stack up)"
    )
    parser.add_argument(
        "--runtime-cameras",
        action="store_true",
        help="cameras from the Redis registry (seeded once from --cameras), changed at runtime "
        "through the ReID API; ingest processes follow it",
    )


def main(args: argparse.Namespace) -> int:
    setup_logging()
    if args.kafka:
        os.environ["CROSSCAM_KAFKA_BOOTSTRAP"] = args.kafka
    if args.redis:
        os.environ["CROSSCAM_REDIS_URL"] = args.redis
    if args.qdrant:
        os.environ["CROSSCAM_QDRANT__URL"] = args.qdrant
    if args.stack:
        from devstack import stack

        print(json.dumps(stack.up(prometheus=True)), flush=True)
        # Every stage registers its /metrics with the local Prometheus (file discovery).
        os.environ.setdefault("CROSSCAM_METRICS_TARGETS_DIR", str(stack.prometheus_targets_dir()))
    only = {s.strip() for s in args.only.split(",") if s.strip()} or None
    if only and not only <= set(STAGES):
        print(
            f"unknown stage(s) {sorted(only - set(STAGES))}; known: {', '.join(STAGES)}",
            file=sys.stderr,
        )
        return 2
    specs = build_specs(
        args.cameras,
        (only or set(STAGES)) - ({"ingest"} if args.runtime_cameras else set()),
        args.replicas,
        args.config,
        args.metrics_base_port,
        args.data_dir,
        args.gallery_port,
        args.reid_api_port,
    )
    if args.runtime_cameras:
        runtime_cameras_mode(specs)
    supervisor = Supervisor(specs, log_dir=args.data_dir / "logs")
    reconciler = None
    if args.runtime_cameras and (only is None or "ingest" in only):
        reconciler = ingest_reconciler(args, supervisor, args.metrics_base_port + len(specs))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(
        json.dumps(
            {
                "processes": {s.name: f"http://127.0.0.1:{s.metrics_port}/metrics" for s in specs},
                "logs": str(args.data_dir / "logs"),
                # the first admin token (created on the first start) is in this 0600 file
                "admin_token_file": str(default_token_file()),
            }
        ),
        flush=True,
    )
    t0 = time.monotonic()
    supervise(supervisor, reconciler, stop)
    log.info(
        "run_stopped",
        extra={
            "after_s": round(time.monotonic() - t0, 1),
            "restarts": json.dumps(supervisor.restarts()),
        },
    )
    return 0


def runtime_cameras_mode(specs: list[ProcessSpec]) -> None:
    """The ReID stage follows the registry; the gallery draws the ReID API's cameras."""
    for spec in specs:
        if spec.name == "reid":
            spec.env["CROSSCAM_REID__CAMERA_REGISTRY"] = "true"
        if spec.name == "gallery" and "--cameras" in spec.argv:
            i = spec.argv.index("--cameras")
            del spec.argv[i : i + 2]


def ingest_reconciler(
    args: argparse.Namespace, supervisor: Supervisor, first_port: int
) -> IngestReconciler:
    """Seed the registry from the cameras file (once) and follow it with ingest processes."""
    import redis

    from schemas.cameras import load_cameras_file
    from service.settings import RedisSettings

    registry = CameraRegistry(redis.Redis.from_url(RedisSettings().url))
    if registry.seed(
        load_cameras_file(args.cameras), args.cameras.resolve().parent, str(args.cameras)
    ):
        log.info("camera_registry_seeded", extra={"from": str(args.cameras)})
    cfg = ["--config", str(args.config)] if args.config else []
    ports: dict[str, int] = {}

    def make_spec(cam: str, source: str) -> ProcessSpec:
        port = ports.setdefault(cam, first_port + len(ports))
        return ProcessSpec(f"ingest-{cam}", ingest_argv(cam, source, cfg),
                           {"CROSSCAM_METRICS__PORT": str(port)}, port)  # fmt: skip

    def make_replay(upload_id: str, cam: str, path: str, start_ns: int) -> ProcessSpec:
        port = ports.setdefault(upload_id, first_port + len(ports))
        argv = crosscam_argv("ingest", "--camera-id", cam, "--source", path,
                             "--start-time-ns", str(start_ns), *cfg)  # fmt: skip
        return ProcessSpec(f"upload-{upload_id}", argv, {"CROSSCAM_METRICS__PORT": str(port)}, port)

    return IngestReconciler(registry, supervisor, make_spec, make_replay=make_replay)


def supervise(
    supervisor: Supervisor, reconciler: IngestReconciler | None, stop: threading.Event
) -> None:
    """Keep the children running (and ingest following the registry) until ``stop``."""
    if reconciler is None:
        supervisor.run(stop)
        return
    supervisor.start()
    try:
        while not stop.wait(0.25):
            supervisor.poll()
            try:
                reconciler.tick()
            except Exception as exc:  # noqa: BLE001 - Redis down: keep what runs, retry
                log.warning("camera_reconcile_failed", extra={"error": repr(exc)})
    finally:
        supervisor.stop()
