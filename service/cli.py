"""What every Kafka stage's command shares: its flags, settings loading, and the run.

def configure(parser):
    add_stage_arguments(parser, "crosscam-tracker", "kafka, redis, metrics, tracker")

def main(args):
    settings = load_stage_settings(TrackerSettingsRoot, args)
    if settings is None:
        return 2
    ...
    serve_stage(stage, settings.kafka, args.group_id)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from service.kafka import Stage, install_stop_signals, run_stage
from service.logs import setup_logging

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)


def add_stage_arguments(
    parser: argparse.ArgumentParser,
    group_id: str,
    sections: str,
    redis_help: str = "redis:// URL (overrides the config)",
) -> None:
    """--config, --bootstrap-servers, --redis-url, --group-id, --metrics-port, --log-level."""
    parser.add_argument(
        "--config", type=Path, default=None, help=f"TOML settings (sections {sections})"
    )
    parser.add_argument(
        "--bootstrap-servers", default=None, help="Kafka host:port (overrides the config)"
    )
    parser.add_argument("--redis-url", default=None, help=redis_help)
    parser.add_argument("--group-id", default=group_id, help="consumer group of the replicas")
    parser.add_argument(
        "--metrics-port", type=int, default=None, help="Prometheus port (0 = any free port)"
    )
    parser.add_argument("--log-level", default="INFO")


def load_stage_settings(model: type[M], args: argparse.Namespace, **overrides: Any) -> M | None:
    """Logging set up, then settings from --config, the environment and the common flags.

    Returns None (after logging why) when the settings are invalid: the command exits 2.
    """
    from service.settings import load_settings

    setup_logging(args.log_level)
    try:
        return load_settings(
            model,
            args.config,
            kafka={"bootstrap_servers": args.bootstrap_servers},
            redis={"url": args.redis_url},
            metrics={"port": args.metrics_port},
            **overrides,
        )
    except (ValidationError, ValueError, OSError) as exc:
        log.error("bad_settings", extra={"error": str(exc)})
        return None


def serve_stage(stage: Stage, kafka: Any, group_id: str) -> None:
    """Run the stage until SIGTERM/SIGINT (finish the batch, commit, close)."""

    async def go() -> None:
        stop = asyncio.Event()
        install_stop_signals(stop)
        await run_stage(stage, kafka, group_id, stop)

    asyncio.run(go())
