"""``crosscam matches tail``: print cross-camera matches (JSON lines) as they arrive.

Any Kafka client can do the same: the topic is ``crosscam.matches.v1``, keyed
by global id, JSON values described by ``crosscam schemas export DIR``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer

from schemas.codec import DecodeError, decode
from schemas.messages import Match
from schemas.topics import MATCHES
from service.settings import KafkaSettings, StrictModel, load_settings


class _Root(StrictModel):
    kafka: KafkaSettings = KafkaSettings()


async def tail(
    bootstrap: str, from_beginning: bool, max_messages: int | None, idle_timeout_s: float | None
) -> int:
    """Print matches until ``max_messages`` or ``idle_timeout_s`` without one; returns how many."""
    consumer = AIOKafkaConsumer(
        MATCHES.name,
        bootstrap_servers=bootstrap,
        group_id=f"crosscam-tail-{uuid.uuid4().hex[:8]}",  # a private group: every tail sees everything
        enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
    )
    await consumer.start()
    n = 0
    try:
        while max_messages is None or n < max_messages:
            batch = await consumer.getmany(timeout_ms=int((idle_timeout_s or 3600) * 1000))
            if not batch:
                if idle_timeout_s is not None:
                    break
                continue
            for records in batch.values():
                for r in records:
                    try:
                        decode(Match, r.value)
                        line = r.value.decode()
                    except DecodeError as exc:
                        line = json.dumps({"error": str(exc), "offset": r.offset})
                    print(line, flush=True)
                    n += 1
                    if max_messages is not None and n >= max_messages:
                        return n
    finally:
        await consumer.stop()
    return n


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of the match-event tail command."""
    parser.add_argument("--config", type=Path, default=None, help="TOML settings (kafka section)")
    parser.add_argument("--bootstrap-servers", default=None, help="Kafka host:port")
    parser.add_argument(
        "--from-beginning", action="store_true", help="start at the oldest match kept"
    )
    parser.add_argument("--max-messages", type=int, default=None, help="stop after N matches")
    parser.add_argument(
        "--idle-timeout", type=float, default=None, help="stop after this many seconds without one"
    )


def main(args: argparse.Namespace) -> int:
    """Print match events as they arrive until interrupted; the exit status."""
    settings = load_settings(
        _Root, args.config, kafka={"bootstrap_servers": args.bootstrap_servers}
    )
    try:
        asyncio.run(
            tail(
                settings.kafka.bootstrap_servers,
                args.from_beginning,
                args.max_messages,
                args.idle_timeout,
            )
        )
    except KeyboardInterrupt:
        pass
    sys.stdout.flush()
    return 0
