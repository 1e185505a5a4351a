"""``crosscam ingest --camera-id ID --source URL_OR_FILE``: one camera into Kafka.

Settings come from ``--config`` (sections kafka, redis, metrics, ingest), then
``CROSSCAM_<SECTION>__<KEY>`` variables, then these flags. Exit codes: 0 after
SIGTERM/SIGINT or a file's end, 2 for bad arguments or settings.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ingest.capture import is_file_source
from ingest.settings import IngestSettingsRoot
from schemas.topics import FRAMES
from service.kafka import install_stop_signals
from service.logs import setup_logging
from service.metrics import start_metrics_server
from service.settings import load_settings

log = logging.getLogger(__name__)

CAMERA_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def camera_id(value: str) -> str:
    """argparse type: a camera id that is safe in a URL path, a Redis key and a label."""
    if not CAMERA_ID_RE.match(value):
        raise argparse.ArgumentTypeError(f"camera id {value!r} must match {CAMERA_ID_RE.pattern}")
    return value


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags shared by ``ingest`` and ``replay``."""
    parser.add_argument(
        "--camera-id", type=camera_id, required=True, help="camera id (message key)"
    )
    parser.add_argument(
        "--config", type=Path, help="settings TOML (sections kafka/redis/metrics/ingest)"
    )
    parser.add_argument(
        "--topic", default=FRAMES.name, help=f"frames topic (default {FRAMES.name})"
    )
    parser.add_argument("--bootstrap-servers", help="Kafka host:port (overrides settings)")
    parser.add_argument("--redis-url", help="Redis URL for camera status (overrides settings)")
    parser.add_argument("--analysis-width", type=int, help="resize to this width (px)")
    parser.add_argument("--jpeg-quality", type=int, help="JPEG quality 1-100")
    parser.add_argument(
        "--claim-check",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="JPEG in Redis, key in the message (default: inline)",
    )
    parser.add_argument("--metrics-port", type=int, help="Prometheus port (0 = any free port)")


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``crosscam ingest``."""
    add_common_arguments(parser)
    parser.add_argument("--source", required=True, help="rtsp:// URL or a video file")
    parser.add_argument("--analysis-fps", type=float, help="frames per second analysed (0 = all)")
    parser.add_argument("--open-timeout-s", type=float, help="open timeout (s)")
    parser.add_argument("--read-timeout-s", type=float, help="no frame this long = hung (s)")
    parser.add_argument(
        "--start-time-ns",
        type=int,
        default=None,
        help="a file source's first frame time (ns since the epoch; default now): a "
        "recording replayed at the time it was made",
    )
    parser.add_argument(
        "--eos-on-stop",
        action="store_true",
        help="on SIGTERM end the camera's stream (eos frame): the tracker closes its tracks now",
    )


def build_settings(args: argparse.Namespace, **ingest_overrides: Any) -> IngestSettingsRoot:
    """Settings from file, environment and the flags in ``args``."""
    ingest = {
        "analysis_width": args.analysis_width,
        "jpeg_quality": args.jpeg_quality,
        "claim_check": args.claim_check,
        "analysis_fps": getattr(args, "analysis_fps", None),
        "open_timeout_s": getattr(args, "open_timeout_s", None),
        "read_timeout_s": getattr(args, "read_timeout_s", None),
    }
    ingest.update(ingest_overrides)
    return load_settings(
        IngestSettingsRoot,
        args.config,
        kafka={"bootstrap_servers": args.bootstrap_servers},
        redis={"url": args.redis_url},
        metrics={"port": args.metrics_port},
        ingest=ingest,
    )


def main(args: argparse.Namespace) -> int:
    """Run ``crosscam ingest``: one camera until SIGTERM or the file's end; the exit status."""
    setup_logging()
    try:
        settings = build_settings(args)
    except (ValidationError, ValueError, OSError) as exc:
        log.error("bad_settings", extra={"error": str(exc)})
        return 2
    if is_file_source(args.source) and not Path(args.source.removeprefix("file://")).is_file():
        log.error("no_such_file", extra={"source": args.source})
        return 2
    from ingest.service import IngestRun, run_ingest

    run = IngestRun(
        camera_id=args.camera_id,
        source=args.source,
        settings=settings,
        topic=args.topic,
        eos_on_stop=args.eos_on_stop,
        file_start_ns=args.start_time_ns,
    )

    async def go() -> dict[str, Any]:
        stop = asyncio.Event()
        install_stop_signals(stop)
        return await run_ingest(run, stop)

    start_metrics_server(settings.metrics, name=f"ingest-{args.camera_id}")
    summary = asyncio.run(go())
    print(json.dumps(summary, sort_keys=True), flush=True)
    return 0
