"""What every crosscam web server shares: FastAPI on uvicorn, closed and hardened by default.

* **Tokens and roles.** :func:`require` is a FastAPI dependency: no or an
  unknown bearer token is 401 (with ``WWW-Authenticate: Bearer``), a role
  below the route's is 403.
* **Audit.** :func:`audit` appends who/role/when/route/params/ids/from-where to
  the audit stream (:mod:`service.audit`); the app's lifespan runs the
  publisher that copies it to ``crosscam.audit.v1``.
* **Bounded requests.** Bodies over ``max_body_bytes`` are 413 (by header
  and while reading, chunked or not); a request that has not finished in
  ``request_timeout_s`` is answered 408/504; request heads must arrive within
  ``header_timeout_s`` (slow clients are cut off; uvicorn's asyncio loop serves
  others meanwhile); idle keep-alive connections close after ``keep_alive_s``.
  HTTP parsing is h11's (negative Content-Length, Content-Length with
  Transfer-Encoding and other smuggling shapes are refused).
* **Headers.** A CSP allowing only the app's own scripts (and Trusted Types),
  ``nosniff``, no framing, no referrer, no caching of API answers; the Host
  header checked against ``allowed_hosts``; CORS off unless ``cors_origins``
  lists origins; no ``Server`` header.
* **Errors.** Every error is JSON ``{"error": ...}`` (422 adds ``detail``),
  unexpected ones are logged and answered without internals.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import h11
import redis
import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from schemas.messages import AuditEvent
from service.audit import AuditLog, AuditPublisher, now_ns
from service.auth import Role, TokenInfo, TokenStore, default_token_file, ensure_admin_token
from service.redact import redact
from service.settings import KafkaSettings, RedisSettings, StrictModel

log = logging.getLogger(__name__)

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' blob: data:; connect-src 'self'; font-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'; "
    "require-trusted-types-for 'script'; trusted-types crosscam"
)
"""Scripts only from the app itself; no inline script; ``innerHTML`` only through the
page's one escaping policy (Trusted Types); never framed. Inline *styles* are
allowed: the UI sets bar widths with them and they run no code."""

SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]
UPLOAD_PATH = "/api/uploads"
"""The routes whose bodies may be large (recorded videos, a site plan image: POST to it and
below it): their own cap and timeout."""
MAX_AUDIT_PARAMS = 32
MAX_AUDIT_VALUE = 256


class WebSettings(StrictModel):
    """Section ``[web]``: how the ReID API and the gallery face the network."""

    allowed_hosts: list[str] = Field(
        default_factory=lambda: ["127.0.0.1", "localhost", "::1"],
        description="Host header names answered (others get 400); '*' = any (not advised)",
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="origins allowed to read answers cross-site (CORS); empty = CORS off",
    )
    max_body_bytes: int = Field(64 * 1024, ge=1024, le=1 << 30, description="413 above this")
    upload_max_bytes: int = Field(
        512 << 20, ge=1024, le=1 << 40, description=f"413 above this on POST {UPLOAD_PATH} (videos)"
    )
    upload_timeout_s: float = Field(
        600.0, gt=0, le=7200, description=f"whole POST {UPLOAD_PATH} request, then 504"
    )
    request_timeout_s: float = Field(30.0, gt=0, le=600, description="whole request, then 408/504")
    header_timeout_s: float = Field(10.0, gt=0, le=120, description="request head must arrive")
    keep_alive_s: int = Field(5, ge=1, le=120, description="idle keep-alive connections close")
    max_connections: int = Field(512, ge=8, le=100_000, description="beyond: 503")
    admin_token_file: Path | None = Field(
        None,
        description="where a first start writes the admin token (0600); default "
        "$CROSSCAM_ADMIN_TOKEN_FILE or ~/.config/crosscam/admin-token",
    )
    bootstrap_admin: bool = Field(
        True, description="a first start with no admin token creates one and writes it"
    )

    def token_file(self) -> Path:
        """Where the first admin token is written."""
        return self.admin_token_file or default_token_file()


class WebRoot(StrictModel):
    """The sections a web server reads besides its own."""

    web: WebSettings = Field(default_factory=WebSettings)  # type: ignore[arg-type]
    redis: RedisSettings = Field(default_factory=RedisSettings)  # type: ignore[arg-type]
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)  # type: ignore[arg-type]


@dataclass
class WebContext:
    """What a web app's routes share: settings, tokens, the audit log, the publisher."""

    settings: WebSettings
    tokens: TokenStore
    audit_log: AuditLog
    publisher: AuditPublisher | None = None
    service: str = "crosscam"
    on_stop: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    """Run when the app stops (close clients)."""

    @classmethod
    def connect(
        cls, root: WebRoot, service: str, publish: bool = True, redis_timeout_s: float = 2.0
    ) -> WebContext:
        """Tokens and audit log in ``root.redis``; with ``publish``, the audit publisher too."""
        client = redis.Redis.from_url(
            root.redis.url,
            socket_timeout=redis_timeout_s,
            socket_connect_timeout=redis_timeout_s,
            decode_responses=True,
        )
        publisher = AuditPublisher(root.redis.url, root.kafka) if publish else None
        return cls(root.web, TokenStore(client), AuditLog(client), publisher, service)

    def bootstrap(self) -> str | None:
        """First start: create the admin token when none exists (see :func:`ensure_admin_token`)."""
        if not self.settings.bootstrap_admin:
            return None
        path = self.settings.token_file()
        token = ensure_admin_token(self.tokens, path)
        if token is not None:
            print(
                f"{self.service}: no admin token existed; created one, written to {path} "
                "(mode 0600). It is shown only there.",
                flush=True,
            )
        return token

    def close(self) -> None:
        """Release the Redis connections."""
        self.tokens.client.close()


# --- auth and audit -----------------------------------------------------------------------


def _ctx(request: Request) -> WebContext:
    return request.app.state.web  # type: ignore[no-any-return]


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def authenticate(request: Request) -> TokenInfo:
    """The caller's token info; 401 when there is no valid token."""
    token = _bearer(request)
    info = _ctx(request).tokens.verify(token) if token else None
    if info is None:
        raise StarletteHTTPException(
            401,
            "a valid bearer token is needed (Authorization: Bearer <token>)",
            headers={"WWW-Authenticate": 'Bearer realm="crosscam"'},
        )
    request.state.principal = info
    return info


def require(role: Role) -> Callable[[Request], TokenInfo]:
    """A FastAPI dependency: the caller's token, which must have ``role`` or above."""

    def dependency(request: Request) -> TokenInfo:
        info = authenticate(request)
        if not info.allows(role):
            audit(request, info, "denied", [], 403)  # who tried what they may not do
            raise StarletteHTTPException(
                403, f"this needs the {role.name} role; token {info.name!r} is {info.role}"
            )
        return info

    dependency.__name__ = f"require_{role.name}"
    return dependency


def audit(
    request: Request,
    who: TokenInfo,
    action: str,
    ids: list[str] | None = None,
    status: int = 200,
    params: dict[str, str] | None = None,
) -> str:
    """Append one audit event for this request; its audit id."""
    if params is None:
        params = {k: v for k, v in list(request.query_params.items())[:MAX_AUDIT_PARAMS]}
    clean = {k[:64]: redact(v)[:MAX_AUDIT_VALUE] for k, v in params.items()}
    event = AuditEvent(
        ts_ns=now_ns(),
        who=who.name,
        role=who.role,
        token_id=who.token_id,
        action=action,
        method=request.method,
        route=request.url.path,
        params=clean,
        ids=list(ids or []),
        status=status,
        client=request.client.host if request.client else "",
        forwarded_for=request.headers.get("x-forwarded-for", "")[:200],
    )
    return _ctx(request).audit_log.record(event)


# --- the guard: host, bodies, time, headers --------------------------------------------------


async def _send_json(send: Send, status: int, error: str, extra: list | None = None) -> None:
    body = JSONResponse({"error": error}).body
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        (b"connection", b"close"),
        *SECURITY_HEADERS,
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _BodyTooLarge(Exception):
    pass


def _host_allowed(scope: Scope, allowed: list[str]) -> bool:
    if "*" in allowed:
        return True
    host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), "")
    if host.startswith("["):
        name = host[1:].partition("]")[0]
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return name.lower() in {a.lower() for a in allowed}


class Guard:
    """Pure ASGI middleware: Host check, body cap, whole-request timeout, security headers."""

    def __init__(self, app: ASGIApp, settings: WebSettings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        s = self.settings
        if not _host_allowed(scope, s.allowed_hosts):
            await _send_json(send, 400, "unknown Host header")
            return
        names = [k for k, _ in scope["headers"]]
        if b"transfer-encoding" in names and b"content-length" in names:
            # RFC 9112 6.3: a smuggling attempt's shape; refuse it and close the connection
            await _send_json(send, 400, "Content-Length together with Transfer-Encoding")
            return
        path = scope["path"]
        upload = scope["method"] == "POST" and (
            path == UPLOAD_PATH or path.startswith(UPLOAD_PATH + "/")
        )
        cap = s.upload_max_bytes if upload else s.max_body_bytes
        timeout_s = s.upload_timeout_s if upload else s.request_timeout_s
        length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if length is not None and (not length.isdigit() or int(length) > cap):
            code = 413 if length.isdigit() else 400
            await _send_json(send, code, f"request body over {cap} bytes")
            return
        started = False
        seen = 0

        async def capped_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > cap:
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                names = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in SECURITY_HEADERS if k not in names]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        try:
            with anyio.fail_after(timeout_s):
                await self.app(scope, capped_receive, guarded_send)
        except _BodyTooLarge:
            if not started:
                await _send_json(send, 413, f"request body over {cap} bytes")
        except TimeoutError:
            log.warning("web_request_timeout", extra={"path": scope.get("path", "")})
            if not started:
                await _send_json(send, 504, f"no answer within {timeout_s:g} s")


# --- errors ---------------------------------------------------------------------------------


def _allowed_methods(request: Request) -> str:
    """Every method some route of this path answers (Starlette names only the first route's)."""
    methods: set[str] = set()
    for route in request.app.routes:
        regex = getattr(route, "path_regex", None)
        if regex is not None and regex.match(request.url.path):
            methods |= set(getattr(route, "methods", None) or ())
    return ", ".join(sorted(methods))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else "error"
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = _allowed_methods(request)
        detail = f"method {request.method} not allowed here; allowed: {headers['Allow']}"
    return JSONResponse({"error": detail}, exc.status_code, headers=headers or None)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    detail = [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))[:300]}
        for e in exc.errors()[:20]
    ]
    first = detail[0] if detail else {"loc": [], "msg": "invalid"}
    where = ".".join(first["loc"][1:] or first["loc"])  # type: ignore[index]
    return JSONResponse({"error": f"bad parameter {where}: {first['msg']}", "detail": detail}, 422)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("web_request_failed", extra={"path": request.url.path, "error": repr(exc)})
    return JSONResponse({"error": "internal error (logged)"}, 500)


def make_app(title: str, ctx: WebContext, description: str = "", version: str = "1") -> FastAPI:
    """A FastAPI app with the guard, JSON errors, CORS (if configured) and the audit publisher."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = None
        if ctx.publisher is not None:
            task = asyncio.create_task(ctx.publisher.run(stop), name="audit-publisher")
        try:
            yield
        finally:
            stop.set()
            if task is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(task, 10)
            for close in ctx.on_stop:
                with contextlib.suppress(Exception):
                    await close()

    app = FastAPI(
        title=title,
        description=description,
        version=version,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.web = ctx
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
    if ctx.settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=ctx.settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(Guard, settings=ctx.settings)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, bool]:
        """Liveness (no token needed)."""
        return {"ok": True}

    return app


# --- serving --------------------------------------------------------------------------------


class _HeadTimeoutH11(H11Protocol):
    """uvicorn's h11 protocol, plus: a request head must arrive within ``head_timeout_s``."""

    head_timeout_s = 10.0

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()

    def send_400_response(self, msg: str) -> None:
        """Malformed HTTP (h11 refused it): a JSON error too, with the security headers."""
        body = bytes(JSONResponse({"error": f"bad HTTP request: {msg}"}).body)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
            *SECURITY_HEADERS,
        ]
        for event in (
            h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
            h11.Data(data=body),
            h11.EndOfMessage(),
        ):
            self.transport.write(self.conn.send(event) or b"")
        self.transport.close()

    def _arm(self) -> None:
        self.loop.call_later(self.head_timeout_s, self._check, self.cycle)

    def _check(self, cycle: Any) -> None:
        if self.cycle is cycle and (cycle is None or cycle.response_complete):
            if not self.transport.is_closing():
                self.transport.close()  # no (next) request head in time: slowloris or idle


def _config(app: FastAPI, sock: socket.socket, settings: WebSettings) -> uvicorn.Config:
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)  # our own lines say it all
    proto = type("Http", (_HeadTimeoutH11,), {"head_timeout_s": settings.header_timeout_s})
    return uvicorn.Config(
        app,
        http=proto,
        lifespan="on",
        access_log=False,
        server_header=False,
        proxy_headers=False,  # the peer is the peer; X-Forwarded-For is recorded beside it
        timeout_keep_alive=settings.keep_alive_s,
        limit_concurrency=settings.max_connections,
        h11_max_incomplete_event_size=16 * 1024,
        log_config=None,
        fd=None,
    )


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket (port 0: a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


@dataclass
class RunningServer:
    """A uvicorn server serving in a daemon thread."""

    server: uvicorn.Server
    thread: threading.Thread
    sock: socket.socket
    port: int

    def stop(self, timeout_s: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout_s)
        self.sock.close()

    # http.server compatibility for callers that used to get a ThreadingHTTPServer
    def shutdown(self) -> None:
        self.stop()

    def server_close(self) -> None:
        self.sock.close()


def serve_in_thread(
    app: FastAPI, host: str, port: int, settings: WebSettings, name: str = "web"
) -> RunningServer:
    """Serve ``app`` in a daemon thread; returns once it accepts connections."""
    sock = bind(host, port)
    server = uvicorn.Server(_config(app, sock, settings))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=name, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError(f"{name}: the web server did not start")
        time.sleep(0.02)
    return RunningServer(server, thread, sock, int(sock.getsockname()[1]))


def serve_forever(app: FastAPI, sock: socket.socket, settings: WebSettings) -> None:
    """Serve ``app`` on ``sock`` in this thread until SIGINT/SIGTERM."""
    uvicorn.Server(_config(app, sock, settings)).run(sockets=[sock])


def web_context(
    config: Path | None, redis_settings: RedisSettings, kafka: KafkaSettings, service: str
) -> WebContext:
    """The ``[web]`` section of ``config`` (and the environment) with the stage's Redis and
    Kafka, connected, the admin token bootstrapped when none exists."""
    from service.settings import load_settings

    web = load_settings(WebRoot, config).web
    ctx = WebContext.connect(WebRoot(web=web, redis=redis_settings, kafka=kafka), service)
    ctx.bootstrap()
    return ctx
