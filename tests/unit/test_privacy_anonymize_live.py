"""The live anonymizer stage, without servers: opt-in cameras, end of stream,
a camera whose clock goes back, claim-check frames, bad frames dead-lettered."""

from __future__ import annotations

import cv2
import numpy as np

from crosscam.anonymize_live import AnonymizeLiveStage
from schemas import DeadLetter, Frame, decode
from schemas.topics import DEADLETTER, PSEUDONYMISED_FRAMES
from service.kafka import Record

BOX = np.array([[40.0, 20.0, 100.0, 200.0]], np.float32)


def analyze(_frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return BOX, np.array([0.9], np.float32), np.zeros((1, 0), np.float32)


def jpeg() -> bytes:
    image = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", image)[1].tobytes()


def record(camera: str, seq: int, ts: int, **kw: object) -> Record:
    frame = Frame(camera_id=camera, seq=seq, ts_capture_ns=ts, **kw)  # type: ignore[arg-type]
    return Record("crosscam.frames.v1", 0, seq, camera.encode(), b"raw", frame, 0)


def test_only_listed_cameras_come_out_obscured_and_eos_resets() -> None:
    stage = AnonymizeLiveStage({"a"}, analyze)
    outs = stage.handle([record("a", 0, 10, jpeg=jpeg()), record("b", 0, 10, jpeg=jpeg()),
                         record("a", 1, 20, eos=True)])  # fmt: skip
    assert [o.topic for o in outs] == [PSEUDONYMISED_FRAMES.name] * 2
    first, eos = (decode(Frame, o.value) for o in outs)
    assert (first.camera_id, first.seq, first.ts_capture_ns) == ("a", 0, 10)
    image = cv2.imdecode(np.frombuffer(first.jpeg, np.uint8), cv2.IMREAD_COLOR)
    head = image[5:50, 40:100].astype(float)
    assert head.std() < 5 < 50 < image[:, 150:].std()  # a flat head (JPEG noise aside); noise kept
    assert eos.eos and not eos.jpeg and "a" not in stage.anonymizers


def test_a_clock_that_goes_back_starts_a_fresh_tracker() -> None:
    stage = AnonymizeLiveStage({"a"}, analyze)
    stage.handle([record("a", 0, 1000, jpeg=jpeg())])
    before = stage.anonymizers["a"]
    stage.handle([record("a", 1, 2000, jpeg=jpeg())])
    assert stage.anonymizers["a"] is before
    stage.handle([record("a", 0, 5, jpeg=jpeg())])
    assert stage.anonymizers["a"] is not before


def test_claim_check_frames_are_fetched_and_missing_ones_dead_lettered() -> None:
    store = {"k1": jpeg()}
    stage = AnonymizeLiveStage(
        {"a"}, analyze, fetch_jpegs=lambda keys: [store.get(k) for k in keys]
    )
    outs = stage.handle([record("a", 0, 10, jpeg_ref="k1"), record("a", 1, 20, jpeg_ref="gone"),
                         record("a", 2, 30, jpeg=b"not a jpeg")])  # fmt: skip
    assert [o.topic for o in outs] == [PSEUDONYMISED_FRAMES.name, DEADLETTER.name, DEADLETTER.name]
    assert decode(Frame, outs[0].value).jpeg
    reasons = [decode(DeadLetter, o.value).reason for o in outs[1:]]
    assert "claim-check key missing" in reasons[0] and "corrupt_jpeg" in reasons[1]
