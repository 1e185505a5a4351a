"""``crosscam tokens create|list|revoke``: who may use the ReID API and the gallery.

``create --role viewer|operator|admin --name NAME [--ttl-days N]`` prints a new
token once (only its hash is kept, in Redis); ``list`` prints every unexpired
token's id, name, role and expiry (never a token); ``revoke TOKEN_ID``
deletes one at once. Every change is written to the audit trail (published on
``crosscam.audit.v1`` by the next running web server).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time

import redis
from pydantic import Field

from schemas.messages import AuditEvent
from service.audit import AuditLog, now_ns
from service.auth import DEFAULT_TTL_S, NAME_PATTERN, Role, TokenInfo, TokenStore
from service.settings import RedisSettings, StrictModel, load_settings, read_toml

EXIT_BAD = 2
DAY_S = 86400


class _RedisRoot(StrictModel):
    redis: RedisSettings = Field(default_factory=RedisSettings)  # type: ignore[arg-type]


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis-url", help="Redis holding the tokens (default: the local stack's)")
    parser.add_argument("--config", help="settings file (TOML, section [redis])")


def configure_create(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--role", required=True, choices=[r.name for r in Role])
    parser.add_argument("--name", required=True, help=f"who holds it ({NAME_PATTERN})")
    parser.add_argument(
        "--ttl-days",
        type=float,
        default=DEFAULT_TTL_S / DAY_S,
        help="lifetime in days (default 90)",
    )
    _common(parser)


def configure_list(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="one JSON array")
    _common(parser)


def configure_revoke(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("token_id", help="the id `crosscam tokens list` shows (12 hex digits)")
    _common(parser)


def _connect(args: argparse.Namespace) -> tuple[TokenStore, AuditLog]:
    from pathlib import Path

    config = Path(args.config) if args.config else None
    read_toml(config)  # unknown sections are an error here too
    url = args.redis_url or load_settings(_RedisRoot, config).redis.url
    client = redis.Redis.from_url(
        url, socket_timeout=5, socket_connect_timeout=5, decode_responses=True
    )
    return TokenStore(client), AuditLog(client)


def _audit(log: AuditLog, action: str, info: TokenInfo, params: dict[str, str]) -> None:
    import getpass

    who = f"cli:{getpass.getuser()}"
    log.record(
        AuditEvent(
            ts_ns=now_ns(), who=who[:64], role="admin", action=action, method="CLI",
            route=f"crosscam tokens {action.split('.')[-1]}", params=params,
            ids=[info.token_id], status=0, client=socket.gethostname(),
        )
    )  # fmt: skip


def main_create(args: argparse.Namespace) -> int:
    import re

    if not re.match(NAME_PATTERN, args.name):
        print(f"crosscam tokens: --name must match {NAME_PATTERN}", file=sys.stderr)
        return EXIT_BAD
    try:
        tokens, log = _connect(args)
        token, info = tokens.create(args.name, Role[args.role], int(args.ttl_days * DAY_S))
        _audit(log, "token.create", info, {"name": args.name, "role": args.role})
    except (ValueError, OSError, redis.RedisError) as exc:
        print(f"crosscam tokens: {exc}", file=sys.stderr)
        return EXIT_BAD
    print(token)
    expires = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(info.expires_ns / 1e9))
    print(
        f"token {info.token_id} for {info.name!r}, role {info.role}, expires {expires}. "
        "It is shown only now: keep it.",
        file=sys.stderr,
    )
    return 0


def main_list(args: argparse.Namespace) -> int:
    try:
        rows = _connect(args)[0].list()
    except (ValueError, OSError, redis.RedisError) as exc:
        print(f"crosscam tokens: {exc}", file=sys.stderr)
        return EXIT_BAD
    if args.json:
        print(json.dumps([r.as_json() for r in rows]))
        return 0
    for r in rows:
        expires = time.strftime("%Y-%m-%d %H:%M", time.gmtime(r.expires_ns / 1e9))
        print(f"{r.token_id}  {r.role:<8}  expires {expires} UTC  {r.name}")
    return 0


def main_revoke(args: argparse.Namespace) -> int:
    try:
        tokens, log = _connect(args)
        info = tokens.revoke(args.token_id)
        if info is not None:
            _audit(log, "token.revoke", info, {})
    except (ValueError, OSError, redis.RedisError) as exc:
        print(f"crosscam tokens: {exc}", file=sys.stderr)
        return EXIT_BAD
    if info is None:
        print(f"crosscam tokens: no token {args.token_id!r}", file=sys.stderr)
        return 1
    print(f"revoked {info.token_id} ({info.name}, {info.role})")
    return 0
