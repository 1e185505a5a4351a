"""The gallery server at the HTTP level, as a hostile client meets it.

The browser test (test_gallery.py) covers the pages; this covers the server's
own edges: closed by default, static files never leak outside their folder,
HTTP framing abuse (negative Content-Length, chunked smuggling, slow clients),
Host and Origin checks, an unreachable ReID API is a 502 JSON without its
address, an unreachable Redis is an ``unknown`` status, no answer or log line
carries a camera's password, and ``crosscam gallery`` refuses bad settings.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from gallery.server import EXIT_CANNOT_START, STATIC_DIR, serve
from gallery.settings import GalleryConfig, GallerySettings
from schemas.keys import camera_status_key
from service.settings import RedisSettings
from tests.stack_fixtures import free_port
from tests.web_helpers import Tokens, db_url, web_world

pytestmark = pytest.mark.e2e

GALLERY_DB = 10
PASSWORD = "Tr0ub4dor-secret"
CAMERAS_TOML = f"""\
window_s = 60.0

[[cameras]]
id = "north"
name = "North gate"
source = "rtsp://admin:{PASSWORD}@10.1.2.3:554/live"
location = {{ x = 10.0, y = 5.0 }}

[[cameras]]
id = "south"
location = {{ lat = 48.1, lon = 11.5 }}
"""
TIMEOUT_S = 10
HEADER_TIMEOUT_S = 1.0
BODY_CAP = 4096


@dataclass
class Lonely:
    url: str
    port: int
    api: str
    redis_url: str
    tokens: Tokens


@pytest.fixture
def lonely_gallery(tmp_path: Path, redis_url: str) -> Iterator[Lonely]:
    """A gallery whose ReID API and status Redis point at ports nothing listens on."""
    cameras = tmp_path / "cameras.toml"
    cameras.write_text(CAMERAS_TOML)
    api = f"http://127.0.0.1:{free_port()}"
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    with web_world(
        redis_url, GALLERY_DB, tmp_path, header_timeout_s=HEADER_TIMEOUT_S, max_body_bytes=BODY_CAP
    ) as (ctx, tokens):
        settings = GallerySettings(
            gallery=GalleryConfig(port=0, reid_api=api, cameras=cameras),
            redis=RedisSettings(url=dead_redis),
        )
        server, gallery = serve(settings, ctx)
        try:
            yield Lonely(f"http://127.0.0.1:{server.port}", server.port, api, dead_redis, tokens)
        finally:
            server.stop()
            gallery.status.close()


def get(g: Lonely, path: str, role: str | None = "viewer", **kw: object) -> httpx.Response:
    token = g.tokens.of(role)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    headers.update(kw.pop("headers", {}))  # type: ignore[arg-type]
    return httpx.get(g.url + path, headers=headers, timeout=TIMEOUT_S, **kw)  # type: ignore[arg-type]


def raw(g: Lonely, data: bytes, wait_s: float = 3.0) -> bytes:
    """Send bytes as they are; everything the server answers until it closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", g.port), timeout=wait_s) as sock:
        sock.sendall(data)
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except TimeoutError:
            pass
        return out


def test_closed_by_default_except_the_shell(lonely_gallery: Lonely) -> None:
    g = lonely_gallery
    r = get(g, "/", None)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert b"/static/gallery.js" in r.content
    for name in ("gallery.js", "gallery.css"):
        assert get(g, f"/static/{name}", None).status_code == 200
    assert get(g, "/healthz", None).json() == {"ok": True}
    for path in ("/gallery/config", "/gallery/cameras/status?ids=north", "/api/identities",
                 "/thumbnails/north/x.jpg"):  # fmt: skip
        r = get(g, path, None)
        assert r.status_code == 401 and "error" in r.json(), path
    config = get(g, "/gallery/config").json()
    cams = {c["id"]: c for c in config["map"]["cameras"]}
    assert (cams["north"]["x"], cams["north"]["y"], cams["north"]["geo"]) == (10.0, 5.0, False)
    assert (cams["south"]["x"], cams["south"]["y"], cams["south"]["geo"]) == (11.5, 48.1, True)
    assert config["who"] == {"name": "vera", "role": "viewer"}
    assert "reid_api" not in config and "rtsp" not in r.text and PASSWORD not in r.text
    assert get(g, "/gallery/cameras/status?ids=..").status_code == 422
    assert httpx.put(f"{g.url}/gallery/config", timeout=TIMEOUT_S).status_code == 405


def test_security_headers_host_and_origin(lonely_gallery: Lonely) -> None:
    g = lonely_gallery
    r = get(g, "/gallery/config", headers={"Origin": "https://evil.example"})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "server" not in r.headers
    assert get(g, "/", None, headers={"Host": "evil.example"}).status_code == 400


def test_unreachable_reid_api_is_a_json_502(lonely_gallery: Lonely) -> None:
    g = lonely_gallery
    for path in ("/api/identities", "/thumbnails/north/x.jpg"):
        r = get(g, path)
        assert r.status_code == 502 and r.headers["content-type"] == "application/json"
        assert "unreachable" in r.json()["error"] and g.api not in r.text
    assert get(g, "/healthz", None).status_code == 200  # still serving


def test_unreachable_redis_is_unknown_status(lonely_gallery: Lonely) -> None:
    g = lonely_gallery
    answer = get(g, "/gallery/cameras/status?ids=north,south").json()
    assert answer["redis"] == "unreachable" and g.redis_url not in answer["error"]
    assert answer["cameras"] == {"north": {"state": "unknown"}, "south": {"state": "unknown"}}


def test_static_files_stay_in_their_folder(lonely_gallery: Lonely, tmp_path: Path) -> None:
    g = lonely_gallery
    outside = tmp_path / "outside.txt"
    outside.write_text("def make_server secret")
    link = STATIC_DIR / "zz-test-link.txt"
    link.symlink_to(outside)
    try:
        for path in (
            "/static/../server.py",
            "/static/%2e%2e/server.py",
            "/static/%2E%2E%2Fserver.py",
            "/static/..%5cserver.py",
            "/static//etc/passwd",
            f"/static/{outside}",
            "/static/zz-test-link.txt",
            "/static/",
            "/server.py",
        ):
            answer = raw(
                g, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
            )
            assert answer.split(b"\r\n", 1)[0].split()[1] in (b"404", b"400"), (path, answer[:200])
            assert b"def make_server" not in answer and b"root:" not in answer, path
    finally:
        link.unlink()


def test_negative_content_length_and_smuggling_are_refused(lonely_gallery: Lonely) -> None:
    g = lonely_gallery
    auth = f"Authorization: Bearer {g.tokens.admin}\r\n"
    negative = raw(
        g,
        f"POST /api/tokens HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Length: -1\r\n\r\n".encode()
        + b"x" * 100_000,
    )
    assert negative.startswith(b"HTTP/1.1 400"), negative[:200]
    assert b"application/json" in negative and b'"error"' in negative  # JSON, like every error
    hidden = f"GET /gallery/config HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}\r\n"
    smuggle = (
        f"POST /api/tokens HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Length: 4\r\n"
        f"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n{hidden}"
    ).encode()
    answer = raw(g, smuggle)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert answer.count(b"HTTP/1.1 ") == 1 and b'"who"' not in answer  # the hidden one never ran
    # a request hidden in a chunked body is body, never a request
    inner = hidden.encode()
    chunked = (
        f"POST /api/tokens HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Transfer-Encoding: chunked\r\n"
        "Content-Type: application/json\r\nConnection: close\r\n\r\n"
    ).encode() + b"%x\r\n%s\r\n0\r\n\r\n" % (len(inner), inner)
    answer = raw(g, chunked)
    assert answer.count(b"HTTP/1.1 ") == 1 and b'"who"' not in answer, answer[:300]
    # chunked bodies are counted too: over the cap is 413 however it is framed
    chunk = b"x" * 1000
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(10)) + b"0\r\n\r\n"
    big = raw(
        g,
        f"POST /api/tokens HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n".encode()
        + body,
    )
    assert big.startswith(b"HTTP/1.1 413"), big[:200]
    oversized = raw(
        g,
        f"POST /api/tokens HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Length: {BODY_CAP + 1}\r\nConnection: close\r\n\r\n".encode(),
    )
    assert oversized.startswith(b"HTTP/1.1 413"), oversized[:200]  # fmt: skip


def test_slow_clients_neither_block_others_nor_stay(lonely_gallery: Lonely) -> None:
    g = lonely_gallery
    slow = []
    for _ in range(50):
        s = socket.create_connection(("127.0.0.1", g.port), timeout=5)
        s.sendall(b"GET /gallery/config HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        slow.append(s)
    try:
        t0 = time.monotonic()
        assert get(g, "/gallery/config").status_code == 200
        assert time.monotonic() - t0 < 1.0, "a normal request waited behind slow clients"
        time.sleep(HEADER_TIMEOUT_S + 1.0)
        for s in slow:  # the server gave up on every one of them
            with pytest.raises((ConnectionResetError, BrokenPipeError, OSError)):
                s.sendall(b"a")
                if s.recv(1) == b"":
                    raise ConnectionResetError("closed by the server")
    finally:
        for s in slow:
            s.close()


def test_no_answer_or_log_carries_a_camera_password(tmp_path: Path, redis_url: str) -> None:
    """The whole `crosscam gallery` process: every answer and every log line, password-free."""
    cameras = tmp_path / "cameras.toml"
    cameras.write_text(CAMERAS_TOML)
    url = db_url(redis_url, GALLERY_DB)
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.hset(camera_status_key("north"), mapping={
        "state": "offline", "last_error": f"cannot open rtsp://admin:{PASSWORD}@10.1.2.3:554/live",
    })  # fmt: skip
    port = free_port()
    token_file = tmp_path / "admin-token"
    env = {**os.environ, "CROSSCAM_ADMIN_TOKEN_FILE": str(token_file)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "crosscam.cli", "gallery", "--port", str(port), "--cameras", str(cameras),
         "--redis-url", url, "--reid-api", f"http://svc:{PASSWORD}@127.0.0.1:{free_port()}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not token_file.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "gallery did not start"
            time.sleep(0.1)
        assert token_file.stat().st_mode & 0o777 == 0o600
        token = token_file.read_text().strip()
        auth = {"Authorization": f"Bearer {token}"}
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/healthz", timeout=2)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        bodies = [
            httpx.get(f"{base}{p}", headers=auth, timeout=TIMEOUT_S).text
            for p in ("/gallery/config", "/gallery/cameras/status?ids=north,south",
                      "/api/cameras", "/api/identities", "/openapi.json", "/")
        ]  # fmt: skip
        status = httpx.get(f"{base}/gallery/cameras/status?ids=north", headers=auth).json()
        assert (
            status["cameras"]["north"]["last_error"] == "cannot open rtsp://***@10.1.2.3:554/live"
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        client.flushdb()
        client.close()
    assert "gallery: http://" in out and str(token_file) in out
    assert token not in out, "the admin token is printed only into its file"
    for text in [*bodies, out]:
        assert PASSWORD not in text


def test_bad_settings_exit_with_a_message(tmp_path: Path) -> None:
    bad = tmp_path / "settings.toml"
    bad.write_text("[gallery]\nrefresh_every = 3\n")
    proc = subprocess.run(
        [sys.executable, "-m", "crosscam.cli", "gallery", "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == EXIT_CANNOT_START
    assert "refresh_every" in proc.stderr and "Traceback" not in proc.stderr


def test_cors_answers_only_the_configured_origins(tmp_path: Path, redis_url: str) -> None:
    ops = "https://ops.example"
    with web_world(redis_url, GALLERY_DB, tmp_path, cors_origins=[ops]) as (ctx, tokens):
        settings = GallerySettings(
            gallery=GalleryConfig(port=0, reid_api=f"http://127.0.0.1:{free_port()}")
        )
        server, gallery = serve(settings, ctx)
        try:
            url = f"http://127.0.0.1:{server.port}/gallery/config"
            auth = {"Authorization": f"Bearer {tokens.viewer}"}
            r = httpx.get(url, headers={**auth, "Origin": ops}, timeout=TIMEOUT_S)
            assert r.status_code == 200 and r.headers["access-control-allow-origin"] == ops
            r = httpx.get(
                url, headers={**auth, "Origin": "https://evil.example"}, timeout=TIMEOUT_S
            )
            assert "access-control-allow-origin" not in r.headers
            pre = httpx.options(url, timeout=TIMEOUT_S, headers={
                "Origin": ops, "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization",
            })  # fmt: skip
            assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == ops
        finally:
            server.stop()
            gallery.status.close()
