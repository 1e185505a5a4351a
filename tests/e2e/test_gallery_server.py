"""The gallery server at the HTTP level: what it answers when things around it are missing.

The browser test (test_gallery.py) covers the pages; this covers the server's
own edges quickly: static files never leak outside their folder, an
unreachable ReID API is a 502 JSON the page can show, an unreachable Redis is
an ``unknown`` status, and ``crosscam gallery`` refuses bad settings cleanly.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from gallery.server import EXIT_CANNOT_START, make_server
from gallery.settings import GalleryConfig, GallerySettings
from service.settings import RedisSettings
from tests.stack_fixtures import free_port

pytestmark = pytest.mark.e2e

CAMERAS_TOML = """\
window_s = 60.0

[[cameras]]
id = "north"
name = "North gate"
location = { x = 10.0, y = 5.0 }

[[cameras]]
id = "south"
location = { lat = 48.1, lon = 11.5 }
"""
HTTP_TIMEOUT_S = 10


@pytest.fixture
def lonely_gallery(tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    """A gallery whose ReID API and Redis both point at ports nothing listens on."""
    cameras = tmp_path / "cameras.toml"
    cameras.write_text(CAMERAS_TOML)
    api = f"http://127.0.0.1:{free_port()}"
    redis_url = f"redis://127.0.0.1:{free_port()}/0"
    settings = GallerySettings(
        gallery=GalleryConfig(port=0, reid_api=api, cameras=cameras),
        redis=RedisSettings(url=redis_url),
    )
    server, gallery = make_server(settings)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", api, redis_url
    finally:
        server.shutdown()
        server.server_close()
        gallery.status.close()


def _get(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as resp:
            return resp.status, resp.read(), resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as err:
        return err.code, err.read(), err.headers.get("Content-Type", "")


def test_pages_and_map_without_any_backend(lonely_gallery: tuple[str, str, str]) -> None:
    url, api, _ = lonely_gallery
    status, body, ctype = _get(f"{url}/")
    assert status == 200 and ctype.startswith("text/html") and b"/static/gallery.js" in body
    for name in ("gallery.js", "gallery.css"):
        assert _get(f"{url}/static/{name}")[0] == 200
    config = json.loads(_get(f"{url}/gallery/config")[1])
    cams = {c["id"]: c for c in config["map"]["cameras"]}
    assert (cams["north"]["x"], cams["north"]["y"], cams["north"]["geo"]) == (10.0, 5.0, False)
    assert (cams["south"]["x"], cams["south"]["y"], cams["south"]["geo"]) == (11.5, 48.1, True)
    assert config["reid_api"] == api


def test_unreachable_reid_api_is_a_json_502(lonely_gallery: tuple[str, str, str]) -> None:
    url, api, _ = lonely_gallery
    for path in ("/api/identities", "/thumbnails/north/x.jpg"):
        status, body, ctype = _get(f"{url}{path}")
        assert status == 502 and ctype == "application/json"
        error = json.loads(body)["error"]
        assert api in error and "unreachable" in error
    assert _get(f"{url}/gallery/health")[0] == 200  # still serving


def test_unreachable_redis_is_unknown_status(lonely_gallery: tuple[str, str, str]) -> None:
    url, _, redis_url = lonely_gallery
    status, body, _ = _get(f"{url}/gallery/cameras/status?ids=north,south")
    answer = json.loads(body)
    assert status == 200 and answer["redis"] == "unreachable" and redis_url in answer["error"]
    assert answer["cameras"] == {"north": {"state": "unknown"}, "south": {"state": "unknown"}}


def test_static_files_stay_in_their_folder(lonely_gallery: tuple[str, str, str]) -> None:
    url = lonely_gallery[0]
    for path in ("/static/../server.py", "/static/%2e%2e/server.py", "/static/", "/server.py"):
        status, body, _ = _get(f"{url}{path}")  # urllib sends the path as written
        assert status == 404, path
        assert b"def make_server" not in body


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
