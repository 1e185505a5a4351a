"""``crosscam replay FILE --camera-id ID --to kafka|rtsp [--speed realtime|max] [--loop]``.

``--to kafka``: every frame of the file (no sampling unless
``--analysis-fps``), resized and encoded as ingest does, published with
``seq`` = frame index from 0 and ``ts_capture_ns`` = start + index / file fps
(``--start-ns`` pins the start, so two replays are byte-identical), then one
``eos`` frame (seq = last + 1) so the tracker closes every track. ``--speed
realtime`` paces sends at the file's rate; ``max`` goes as fast as the broker
takes them. Prints a JSON summary.

``--to rtsp``: serves the file as a live camera on the local stack's RTSP
server and prints its URL; with ``--loop`` it loops until SIGTERM/Ctrl-C,
otherwise it plays once. Either way the camera is unpublished on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ingest.cli import add_common_arguments, build_settings
from service.kafka import install_stop_signals
from service.logs import setup_logging
from service.metrics import start_metrics_server

log = logging.getLogger(__name__)

# How often `--to rtsp` without --loop checks whether the file has played out.
RTSP_POLL_S = 0.5


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="video file to replay")
    add_common_arguments(parser)
    parser.add_argument("--to", choices=("kafka", "rtsp"), required=True, help="where to")
    parser.add_argument(
        "--speed",
        choices=("realtime", "max"),
        default="max",
        help="kafka: pace at the file's frame rate, or as fast as possible (default max)",
    )
    parser.add_argument(
        "--loop", action="store_true", help="start again at the end (until SIGTERM)"
    )
    parser.add_argument(
        "--analysis-fps",
        type=float,
        default=0.0,
        help="kafka: sample to this rate by file time (default 0: every frame)",
    )
    parser.add_argument("--start-ns", type=int, help="kafka: capture time of frame 0 (default now)")
    parser.add_argument("--fps", type=float, help="rtsp: serve at this rate (default: the file's)")


def main(args: argparse.Namespace) -> int:
    setup_logging()
    if not args.file.is_file():
        log.error("no_such_file", extra={"file": str(args.file)})
        return 2
    if args.to == "rtsp":
        return _to_rtsp(args)
    try:
        settings = build_settings(args, analysis_fps=args.analysis_fps)
    except (ValidationError, ValueError, OSError) as exc:
        log.error("bad_settings", extra={"error": str(exc)})
        return 2
    from ingest.service import IngestRun, run_ingest

    run = IngestRun(
        camera_id=args.camera_id,
        source=str(args.file.resolve()),
        settings=settings,
        topic=args.topic,
        file_start_ns=args.start_ns if args.start_ns is not None else time.time_ns(),
        speed_realtime=args.speed == "realtime",
        loop_file=args.loop,
    )

    async def go() -> dict[str, Any]:
        stop = asyncio.Event()
        install_stop_signals(stop)
        return await run_ingest(run, stop)

    start_metrics_server(settings.metrics, name=f"replay-{args.camera_id}")
    summary = asyncio.run(go())
    summary["speed"] = args.speed
    print(json.dumps(summary, sort_keys=True), flush=True)
    return 0


def _to_rtsp(args: argparse.Namespace) -> int:
    from devstack.stack import StackError, stack_rtsp

    server = stack_rtsp()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        url = server.publish(args.camera_id, args.file, fps=args.fps, loop=args.loop)
    except (StackError, ValueError, OSError) as exc:
        log.error("rtsp_publish_failed", extra={"camera": args.camera_id, "error": str(exc)})
        return 1
    print(json.dumps({"camera_id": args.camera_id, "url": url, "loop": args.loop}), flush=True)
    try:
        while not stop.wait(RTSP_POLL_S):
            state = server.mounts().get(args.camera_id, {}).get("state")
            if state in ("ended", "error") or (state is None and not server.running()):
                log.info("rtsp_replay_over", extra={"camera": args.camera_id, "state": state})
                break
    finally:
        try:
            server.unpublish(args.camera_id)
        except StackError as exc:
            log.warning("rtsp_unpublish_failed", extra={"error": str(exc)})
    return 0
