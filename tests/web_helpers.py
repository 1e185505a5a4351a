"""Helpers of the web tests: a WebContext on a private Redis database, tokens of each role."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

from service.auth import Role
from service.settings import KafkaSettings, RedisSettings
from service.web import WebContext, WebRoot, WebSettings


@dataclass
class Tokens:
    """One token per role (plain text, as a client holds them)."""

    viewer: str
    operator: str
    admin: str

    def of(self, role: str | None) -> str | None:
        return None if role is None else str(getattr(self, role))


def db_url(redis_url: str, db: int) -> str:
    """The same Redis, another database (tests own theirs and flush it)."""
    return f"{redis_url.rsplit('/', 1)[0]}/{db}"


@contextlib.contextmanager
def web_world(
    redis_url: str,
    db: int,
    tmp: Path,
    kafka_bootstrap: str | None = None,
    flush: bool = True,
    **web: object,
) -> Iterator[tuple[WebContext, Tokens]]:
    """A WebContext on Redis database ``db`` (flushed before, unless not ``flush``, and after).

    With ``kafka_bootstrap`` the audit publisher runs (to ``crosscam.audit.v1``).
    """
    url = db_url(redis_url, db)
    flusher = redis.Redis.from_url(url)
    if flush:
        flusher.flushdb()
    settings = WebSettings(admin_token_file=tmp / "admin-token", **web)  # type: ignore[arg-type]
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap or "127.0.0.1:1")
    root = WebRoot(web=settings, redis=RedisSettings(url=url), kafka=kafka)
    ctx = WebContext.connect(root, "test", publish=kafka_bootstrap is not None)
    tokens = Tokens(
        viewer=ctx.tokens.create("vera", Role.viewer)[0],
        operator=ctx.tokens.create("otto", Role.operator)[0],
        admin=ctx.tokens.create("ada", Role.admin)[0],
    )
    try:
        yield ctx, tokens
    finally:
        ctx.close()
        flusher.flushdb()
        flusher.close()
