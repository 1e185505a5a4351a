"""Trust at the boundaries, without servers: camera ids, redaction, pages without full scans."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from pydantic import ValidationError

from reid.api import ReidApi
from reid.store import Scope, StoredTracklet, VectorStore
from schemas import DecodeError, decode, encode
from schemas.cameras import CamerasFile
from schemas.messages import Frame, Match, MatchedTracklet, Tracklet
from service.redact import redact
from tests.unit.test_reid_store import engine, tracklet

HOSTILE_IDS = ["", ".", "..", "../x", "a/b", "</select><img src=x onerror=alert(1)>", "x" * 65,
               "-lead", "_lead", "a b", "a\x00b", "é"]  # fmt: skip
GOOD_IDS = ["cam0", "C", "north-gate.2", "a_b", "9" * 64]


@pytest.mark.parametrize("cam", HOSTILE_IDS)
def test_hostile_camera_ids_are_refused_where_they_enter(cam: str) -> None:
    frame = msgspec.msgpack.encode({"v": 1, "camera_id": cam, "seq": 0, "ts_capture_ns": 1})
    with pytest.raises(DecodeError):
        decode(Frame, frame)
    tl = msgspec.msgpack.encode({"v": 1, "camera_id": cam, "tracklet_id": "t", "track_id": 1,
                                 "ts_start_ns": 0, "ts_end_ns": 1})  # fmt: skip
    with pytest.raises(DecodeError):
        decode(Tracklet, tl)
    with pytest.raises(ValidationError):
        CamerasFile.model_validate({"cameras": [{"id": cam}]})
    bad_match = Match(kind="link", global_id="g1", matched=[
        MatchedTracklet(tracklet_id="t", camera_id=cam, ts_start_ns=0, ts_end_ns=1, distance=0.1)])  # fmt: skip
    with pytest.raises(DecodeError):
        decode(Match, encode(bad_match))


@pytest.mark.parametrize("cam", GOOD_IDS)
def test_ordinary_camera_ids_pass(cam: str) -> None:
    assert decode(Frame, encode(Frame(camera_id=cam, seq=0, ts_capture_ns=1))).camera_id == cam
    assert CamerasFile.model_validate({"cameras": [{"id": cam}]}).cameras[0].id == cam
    assert decode(Match, encode(Match(kind="merge", global_id="g1"))).camera_id == ""


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("rtsp://admin:hunter2@10.0.0.5:554/s", "rtsp://***@10.0.0.5:554/s"),
        ("redis://:pw@redis:6379/0 and http://u@h/", "redis://***@redis:6379/0 and http://***@h/"),
        ("http://h/x?token=abc&limit=3&API_KEY=zz", "http://h/x?token=***&limit=3&API_KEY=***"),
        ("Authorization: Bearer cc_abc-def", "Authorization: Bearer ***"),
        ("plain words, no secrets", "plain words, no secrets"),
    ],
)
def test_redaction(text: str, want: str) -> None:
    assert redact(text) == want


class CountingStore:
    """A store that records every scroll's scope (to prove pages never scan the store)."""

    def __init__(self, inner: VectorStore) -> None:
        self.inner = inner
        self.scopes: list[Scope] = []
        self.rows = 0

    def scroll(self, scope: Scope, with_vectors: bool = False) -> Iterator[StoredTracklet]:
        self.scopes.append(scope)
        rows = list(self.inner.scroll(scope, with_vectors))
        self.rows += len(rows)
        return iter(rows)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def test_pages_are_time_windows_never_full_scans(tmp_path: Path) -> None:
    eng = engine(tmp_path / "s")
    n = 60
    for i in range(n):  # one person a minute on camera a, each a new identity far apart in time
        eng.process(tracklet("a", i + 1, 3600.0 * i, 3600.0 * i + 10, 100 + i))
    store = CountingStore(eng.store)
    api = ReidApi(store, eng.topology, tmp_path / "thumbs")  # type: ignore[arg-type]
    page = api.identities(None, None, None, 5)
    assert len(page) == 5
    assert [r["first_seen_ns"] for r in page] == sorted(
        (r["first_seen_ns"] for r in page), reverse=True
    )
    assert page[0]["first_seen_ns"] == int(3600.0 * (n - 1) * 1e9)
    windows = [s for s in store.scopes if s.global_ids is None]
    assert windows and all(s.ts_from_ns is not None and s.ts_to_ns is not None for s in windows)
    assert store.rows < 3 * 5 * 2, f"read {store.rows} rows for a page of 5 out of {n}"
    store.scopes.clear()
    rows = api.tracklets(None, None, None, None, 3)
    assert [r["tracklet_id"] for r in rows] == [
        f"a:{i}:{int(3600 * (i - 1) * 1e9)}" for i in (60, 59, 58)
    ]
    assert all(s.ts_from_ns is not None for s in store.scopes)
    eng.store.close()


def test_jpeg_pixel_cap_refuses_before_decoding() -> None:
    import cv2
    import numpy as np

    from detector.core import Rejected, decode_jpeg, jpeg_size

    ok, buf = cv2.imencode(".jpg", np.zeros((48, 64, 3), np.uint8))
    data = buf.tobytes()
    assert jpeg_size(data) == (64, 48)
    assert not isinstance(decode_jpeg(data), Rejected)
    refused = decode_jpeg(data, max_pixels=64 * 48 - 1)
    assert isinstance(refused, Rejected) and refused.kind == "too_large"
    # a header claiming 60000 x 60000 is refused without ever allocating the image
    sof = data.index(b"\xff\xc0")
    forged = data[: sof + 5] + (60000).to_bytes(2) + (60000).to_bytes(2) + data[sof + 9 :]
    assert jpeg_size(forged) == (60000, 60000)
    big = decode_jpeg(forged)
    assert isinstance(big, Rejected) and big.kind == "too_large"


@pytest.mark.parametrize("bad", [float("inf"), float("-inf"), float("nan")])
def test_infinite_or_nan_settings_and_cameras_are_refused(bad: float) -> None:
    from gallery.settings import GallerySettings
    from service.web import WebSettings

    with pytest.raises(ValidationError):
        GallerySettings.model_validate({"gallery": {"refresh_s": bad}})
    with pytest.raises(ValidationError):
        WebSettings(request_timeout_s=bad)
    with pytest.raises(ValidationError):
        CamerasFile.model_validate(
            {
                "cameras": [{"id": "a"}, {"id": "b"}],
                "links": [{"a": "a", "b": "b", "max_transit_s": bad}],
            }
        )
    with pytest.raises(ValidationError):
        CamerasFile.model_validate({"cameras": [{"id": "a", "location": {"x": bad, "y": 0.0}}]})
