"""The ReID query API over a real embedded store, through real HTTP on loopback."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from reid.api import ReidApi, start_api
from tests.unit.test_reid_store import engine, tracklet


def get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture
def api(tmp_path: Path):  # type: ignore[no-untyped-def]
    eng = engine(tmp_path / "s", tmp_path / "thumbs")
    for row in [("a", 1, 0, 10, 1), ("b", 2, 12, 20, 1), ("c", 3, 100, 110, 2)]:
        eng.process(tracklet(*row))
    server, port = start_api(ReidApi(eng.store, eng.topology, tmp_path / "thumbs"), "127.0.0.1", 0)
    yield port, eng
    server.shutdown()
    eng.store.close()


def test_identities_detail_thumbnails_and_reidentify(api) -> None:  # type: ignore[no-untyped-def]
    port, eng = api
    code, body = get(port, "/api/identities")
    ids = json.loads(body)
    assert code == 200 and len(ids) == 2
    two_cams = next(i for i in ids if i["tracklets"] == 2)
    assert two_cams["cameras"] == ["a", "b"]
    code, body = get(port, f"/api/identities/{two_cams['global_id']}")
    detail = json.loads(body)
    assert [t["camera_id"] for t in detail["tracklets"]] == ["a", "b"]
    code, img = get(port, detail["thumbnails"][0])
    assert code == 200 and img.startswith(b"\xff\xd8")
    assert get(port, "/thumbnails/../../etc/passwd")[0] == 404
    code, body = get(port, "/api/reidentify?tracklet_id=a:1:0&cameras=c")
    cands = json.loads(body)["candidates"]
    assert code == 200 and [c["camera_id"] for c in cands] == ["c"]
    code, body = get(port, "/api/tracklets?camera=b")
    assert [t["camera_id"] for t in json.loads(body)] == ["b"]
    assert json.loads(get(port, "/api/cameras")[1])["cameras"][0]["id"] == "a"
    assert get(port, "/api/identities/nobody")[0] == 404
    assert get(port, "/api/reidentify?tracklet_id=nope")[0] == 404
    assert get(port, "/api/reidentify")[0] == 400
