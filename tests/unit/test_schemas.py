"""Contracts: round trips, golden v1 payloads, version and garbage rejection, JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import msgspec
import numpy as np
import pytest

from schemas import TOPICS, DecodeError, decode, encode
from schemas.codec import json_schema
from schemas.messages import Detections, Frame, Match, Tracklet
from tests.unit.schema_samples import samples

GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize("name", sorted(samples()))
def test_round_trip(name: str) -> None:
    msg = samples()[name]
    assert decode(type(msg), encode(msg)) == msg


@pytest.mark.parametrize("name", sorted(samples()))
def test_golden_v1_payloads_still_decode(name: str) -> None:
    """Bytes written by v1 producers must keep decoding to the same message.

    If this fails, a field was renamed, retyped or made required: that is a v2
    topic, not an edit of v1.
    """
    msg = samples()[name]
    data = (GOLDEN / f"{name}.v1.bin").read_bytes()
    assert decode(type(msg), data) == msg


def test_match_is_json_and_internal_types_are_msgpack() -> None:
    s = samples()
    assert json.loads(encode(s["match"]))["kind"] == "link"
    with pytest.raises(ValueError):  # msgpack bytes are not JSON (nor even UTF-8)
        json.loads(encode(s["frame"]))


def test_arrays_survive_the_wire() -> None:
    det = decode(Detections, encode(samples()["detections"]))
    assert det.boxes_array().shape == (2, 4)
    np.testing.assert_allclose(det.boxes_array()[1], [200.5, 30.25, 240.0, 150.0])
    assert det.embeddings_array().shape == (2, 4)
    np.testing.assert_allclose(np.linalg.norm(det.embeddings_array(), axis=1), 1.0, rtol=1e-6)
    trk = decode(Tracklet, encode(samples()["tracklet"]))
    assert trk.boxes_array().shape == (len(trk.frame_seqs), 4)


@pytest.mark.parametrize(
    "data", [b"", b"\x00\x01garbage", b"\xc1", encode(Match(kind="merge", global_id="g"))]
)
def test_garbage_is_a_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode(Frame, data)


def test_unknown_schema_version_is_rejected() -> None:
    future = msgspec.msgpack.encode({"v": 2, "camera_id": "c", "seq": 0, "ts_capture_ns": 1})
    with pytest.raises(DecodeError, match="version 2"):
        decode(Frame, future)


def test_missing_required_field_is_rejected() -> None:
    with pytest.raises(DecodeError, match="camera_id"):
        decode(Frame, msgspec.msgpack.encode({"v": 1, "seq": 0, "ts_capture_ns": 1}))


def test_match_validates_against_its_published_json_schema(tmp_path: Path) -> None:
    import argparse

    from schemas.cli import configure, main

    parser = argparse.ArgumentParser()
    configure(parser)
    assert main(parser.parse_args([str(tmp_path)])) == 0
    schema = json.loads((tmp_path / "crosscam.matches.v1.schema.json").read_text())
    assert schema == json_schema(Match)
    jsonschema.validate(json.loads(encode(samples()["match"])), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"v": 1, "kind": "teleport", "global_id": "g"}, schema)


def test_topic_names_follow_the_convention() -> None:
    for name, topic in TOPICS.items():
        assert name.startswith("crosscam.") and name.endswith(".v1")
        assert topic.encoding in {"json", "msgpack"}
