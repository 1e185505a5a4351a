"""Tokens and the audit trail against the real Redis and Kafka.

A re-identify query shows up on ``crosscam.audit.v1`` with the caller's name;
an event written while no server ran (``crosscam tokens create``) is published
once one starts; the CLI prints a token once and keeps only its hash; a first
start creates exactly one admin token, in a 0600 file.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
import redis

from reid.api import ReidApi, start_api
from schemas.codec import decode
from schemas.keys import token_key
from schemas.messages import AuditEvent
from schemas.topics import AUDIT
from service.auth import Role, TokenStore, digest, ensure_admin_token
from tests.integration.kafka_helpers import consume_all, unique
from tests.unit.test_reid_store import engine, tracklet
from tests.web_helpers import db_url, web_world

pytestmark = pytest.mark.integration

AUDIT_DB = 7
TOKENS_DB = 6
KAFKA_WAIT_S = 60


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crosscam.cli", "tokens", *args],
        capture_output=True, text=True, timeout=60, env={**os.environ},
    )  # fmt: skip


def test_a_reidentify_query_is_published_with_the_callers_name(
    redis_url: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    eng = engine(tmp_path / "s", tmp_path / "thumbs")
    for row in [("a", 1, 0, 10, 1), ("b", 2, 12, 20, 1), ("c", 3, 100, 110, 2)]:
        eng.process(tracklet(*row))
    analyst = unique("analyst")
    admin_name = unique("cli-made")
    url = db_url(redis_url, AUDIT_DB)
    redis.Redis.from_url(url).flushdb()
    # written while no web server runs: published later, by the first one that starts
    made = _cli("create", "--role", "viewer", "--name", admin_name, "--redis-url", url)
    assert made.returncode == 0, made.stderr
    with web_world(redis_url, AUDIT_DB, tmp_path, kafka_bootstrap=kafka_bootstrap, flush=False) as (
        ctx,
        _,
    ):
        token = ctx.tokens.create(analyst, Role.operator)[0]
        server, port = start_api(
            ReidApi(eng.store, eng.topology, tmp_path / "thumbs"), ctx, "127.0.0.1", 0
        )
        try:
            r = httpx.get(
                f"http://127.0.0.1:{port}/api/reidentify?tracklet_id=a:1:0&cameras=c",
                headers={"Authorization": f"Bearer {token}", "X-Forwarded-For": "10.9.8.7"},
                timeout=10,
            )
            assert r.status_code == 200
            want = [c["tracklet_id"] for c in r.json()["candidates"]]

            def seen(records: list) -> bool:
                events = [json.loads(m.value) for m in records]
                return any(e["who"] == analyst for e in events) and any(
                    e.get("params", {}).get("name") == admin_name for e in events
                )

            records = asyncio.run(consume_all(kafka_bootstrap, AUDIT.name, seen, KAFKA_WAIT_S))
        finally:
            server.stop()
            eng.store.close()
    events = [decode(AuditEvent, m.value) for m in records]
    mine = [e for e in events if e.who == analyst]
    assert [e.action for e in mine] == ["reidentify"], mine
    e = mine[0]
    assert e.role == "operator" and e.route == "/api/reidentify" and e.status == 200
    assert e.params == {"tracklet_id": "a:1:0", "cameras": "c"}
    assert e.ids[: len(want)] == want and e.client == "127.0.0.1" and e.forwarded_for == "10.9.8.7"
    assert e.audit_id and records[events.index(e)].key == analyst.encode()
    cli = [e for e in events if e.action == "token.create" and e.params.get("name") == admin_name]
    assert len(cli) == 1 and cli[0].method == "CLI" and cli[0].who.startswith("cli:")


def test_tokens_cli_prints_once_and_keeps_only_a_hash(redis_url: str) -> None:
    url = db_url(redis_url, TOKENS_DB)
    client = redis.Redis.from_url(url, decode_responses=True)
    client.flushdb()
    try:
        made = _cli("create", "--role", "viewer", "--name", "x", "--redis-url", url)
        assert made.returncode == 0, made.stderr
        token = made.stdout.strip()
        assert token.startswith("cc_") and "\n" not in token
        store = TokenStore(client)
        info = store.verify(token)
        assert info is not None and (info.name, info.role) == ("x", "viewer")
        dump = json.dumps(
            {k: client.hgetall(k) if client.type(k) == "hash" else "" for k in client.keys()}
        )
        assert token not in dump and digest(token) in dump  # only the hash is stored
        assert 0 < client.ttl(token_key(digest(token))) <= 90 * 86400
        listed = _cli("list", "--json", "--redis-url", url)
        rows = json.loads(listed.stdout)
        assert [(r["token_id"], r["name"]) for r in rows] == [(info.token_id, "x")]
        assert token not in listed.stdout
        assert _cli("create", "--role", "god", "--name", "x", "--redis-url", url).returncode == 2
        assert (
            _cli("create", "--role", "admin", "--name", "<b>", "--redis-url", url).returncode == 2
        )
        assert _cli("revoke", "000000000000", "--redis-url", url).returncode == 1
        assert _cli("revoke", info.token_id, "--redis-url", url).returncode == 0
        assert store.verify(token) is None
        expiring = store.create("brief", Role.viewer, ttl_s=1)[0]
        assert store.verify(expiring) is not None
        client.hset(token_key(digest(expiring)), "expires_ns", "1")  # as if its time had come
        assert store.verify(expiring) is None
    finally:
        client.flushdb()
        client.close()


def test_first_start_creates_one_admin_token_in_a_private_file(
    redis_url: str, tmp_path: Path
) -> None:
    url = db_url(redis_url, TOKENS_DB)
    client = redis.Redis.from_url(url, decode_responses=True)
    client.flushdb()
    try:
        stores = [TokenStore(redis.Redis.from_url(url, decode_responses=True)) for _ in range(4)]
        made: list[str | None] = []
        threads = [
            threading.Thread(target=lambda s=s: made.append(ensure_admin_token(s, tmp_path / "cfg" / "admin-token")))
            for s in stores
        ]  # fmt: skip
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        created = [m for m in made if m]
        assert len(made) == 4 and len(created) == 1, made
        path = tmp_path / "cfg" / "admin-token"
        assert path.stat().st_mode & 0o777 == 0o600
        assert path.read_text().strip() == created[0]
        info = stores[0].verify(created[0])
        assert info is not None and info.role == "admin"
        assert ensure_admin_token(stores[0], path) is None  # the next start leaves it alone
    finally:
        client.flushdb()
        client.close()
