"""Bearer tokens with roles, stored only hashed in Redis, with an expiry.

Roles are ordered: ``viewer`` (identities, cameras, routes) < ``operator``
(+ re-identify queries, uploads) < ``admin`` (+ cameras, erasure, tokens,
audit). A token is ``cc_`` + 43 random URL-safe characters (256 bits), shown
once when created; Redis keeps only its SHA-256 (``schemas.keys.token_key``)
with the name, the role and a public ``token_id`` (the digest's first 12 hex
digits, what ``crosscam tokens list`` shows and ``revoke`` takes), and expires
the key itself at the token's expiry.

A first start with no admin token creates one (:func:`ensure_admin_token`),
writes it to a file only the owner can read, and says where, once.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import hmac
import logging
import os
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import redis

from schemas.keys import TOKEN_INDEX_KEY, token_key

log = logging.getLogger(__name__)

TOKEN_PREFIX = "cc_"
DEFAULT_TTL_S = 90 * 86400
"""Tokens expire after 90 days unless asked otherwise."""
MAX_TTL_S = 5 * 365 * 86400
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"
"""Token names (who, in the audit trail): like a user name or an e-mail address."""
TOKEN_ID_LENGTH = 12
BOOTSTRAP_LOCK = "crosscam:tokens:bootstrap"
BOOTSTRAP_NAME = "admin"
NS = 1_000_000_000


class Role(enum.IntEnum):
    """What a token may do; a higher role may do everything a lower one may."""

    viewer = 1
    operator = 2
    admin = 3


@dataclass(frozen=True)
class TokenInfo:
    """What is known about a token (never the token itself)."""

    token_id: str
    name: str
    role: str
    created_ns: int
    expires_ns: int

    def allows(self, role: Role) -> bool:
        """True when this token's role is ``role`` or above."""
        return Role[self.role] >= role

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def digest(token: str) -> str:
    """SHA-256 hex digest of a token (what Redis keys hold)."""
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    """Tokens in Redis. ``client`` must decode responses (``decode_responses=True``)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    @classmethod
    def from_url(cls, url: str, timeout_s: float = 2.0) -> TokenStore:
        client = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, decode_responses=True
        )
        return cls(client)

    def create(self, name: str, role: Role, ttl_s: int = DEFAULT_TTL_S) -> tuple[str, TokenInfo]:
        """A new token (shown once: only its hash is kept) and its info."""
        if not 1 <= ttl_s <= MAX_TTL_S:
            raise ValueError(f"ttl must be 1 s .. {MAX_TTL_S} s, not {ttl_s}")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        d = digest(token)
        now = time.time_ns()
        info = TokenInfo(d[:TOKEN_ID_LENGTH], name, role.name, now, now + ttl_s * NS)
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(token_key(d), mapping={k: str(v) for k, v in info.as_json().items()})
        pipe.expire(token_key(d), ttl_s)
        pipe.hset(TOKEN_INDEX_KEY, info.token_id, d)
        pipe.execute()
        return token, info

    def verify(self, token: str) -> TokenInfo | None:
        """The token's info when it is known and unexpired, else None."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 128:
            return None
        d = digest(token)
        row: dict[str, str] = self.client.hgetall(token_key(d))  # type: ignore[assignment]
        if not row:
            return None
        info = _info(row)
        if info is None or info.expires_ns <= time.time_ns():
            return None
        # the key is the digest, found by exact lookup; compare anyway in constant time
        return info if hmac.compare_digest(d[:TOKEN_ID_LENGTH], info.token_id) else None

    def list(self) -> list[TokenInfo]:
        """Every unexpired token, oldest first (expired ones are dropped from the index)."""
        index: dict[str, str] = self.client.hgetall(TOKEN_INDEX_KEY)  # type: ignore[assignment]
        out, gone = [], []
        for token_id, d in sorted(index.items()):
            info = _info(self.client.hgetall(token_key(d)))  # type: ignore[arg-type]
            if info is None or info.expires_ns <= time.time_ns():
                gone.append(token_id)
            else:
                out.append(info)
        if gone:
            self.client.hdel(TOKEN_INDEX_KEY, *gone)
        return sorted(out, key=lambda i: i.created_ns)

    def revoke(self, token_id: str) -> TokenInfo | None:
        """Delete a token by its id; its info, or None when there was no such token."""
        d = self.client.hget(TOKEN_INDEX_KEY, token_id)
        if not d:
            return None
        info = _info(self.client.hgetall(token_key(str(d))))  # type: ignore[arg-type]
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(token_key(str(d)))
        pipe.hdel(TOKEN_INDEX_KEY, token_id)
        pipe.execute()
        return info

    def has_admin(self) -> bool:
        """True when an unexpired admin token exists."""
        return any(i.role == Role.admin.name for i in self.list())


def _info(row: dict[str, str]) -> TokenInfo | None:
    try:
        return TokenInfo(
            row["token_id"],
            row["name"],
            Role[row["role"]].name,
            int(row["created_ns"]),
            int(row["expires_ns"]),
        )
    except (KeyError, ValueError):
        return None


def default_token_file() -> Path:
    """``$CROSSCAM_ADMIN_TOKEN_FILE``, else ``~/.config/crosscam/admin-token``."""
    env = os.environ.get("CROSSCAM_ADMIN_TOKEN_FILE")
    if env:
        return Path(env)
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "crosscam" / "admin-token"


def write_secret_file(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable and writable by the owner only (0600), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def ensure_admin_token(tokens: TokenStore, path: Path) -> str | None:
    """On a first start (no admin token in Redis): create one, write it to ``path`` (0600).

    Returns the new token (for the caller to print once), or None when an
    admin token already exists. A Redis lock keeps two servers starting at
    once from creating two.
    """
    lock = secrets.token_hex(8)
    deadline = time.monotonic() + 10
    while not tokens.client.set(BOOTSTRAP_LOCK, lock, nx=True, ex=30):
        if time.monotonic() > deadline:
            raise TimeoutError("another process holds the admin-token bootstrap lock")
        time.sleep(0.05)
    try:
        if tokens.has_admin():
            return None
        token, info = tokens.create(BOOTSTRAP_NAME, Role.admin)
        write_secret_file(path, token + "\n")
        log.warning(
            "admin_token_created",
            extra={"token_id": info.token_id, "file": str(path), "mode": "0600"},
        )
        return token
    finally:
        with contextlib.suppress(redis.RedisError):
            if tokens.client.get(BOOTSTRAP_LOCK) == lock:
                tokens.client.delete(BOOTSTRAP_LOCK)
