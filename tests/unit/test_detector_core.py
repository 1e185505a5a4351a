"""Frames -> Detections on real PETS09 JPEGs: corrupt and truncated JPEGs, eos, crops, order."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from detector.analyzer import Analyzer, AnalyzerConfig
from detector.background import BackgroundMasker
from detector.config import BackgroundConfig, CropConfig
from detector.core import FrameProcessor, Rejected, decode_jpeg, encode_crop
from detector.stage import DetectorStage
from evaluation.video import video_frames
from schemas.codec import decode, encode
from schemas.messages import Detections, Frame
from schemas.topics import DEADLETTER, DETECTIONS, FRAMES
from service.assets import models_dir, pets_dir
from service.kafka import Output, Record

NOW_NS = 1_700_000_000_000_000_000


@pytest.fixture(scope="module")
def jpegs() -> list[bytes]:
    out = []
    for _, frame in video_frames(pets_dir() / "vtest.avi", 3):
        ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        out.append(buf.tobytes())
    return out


@pytest.fixture(scope="module")
def processor() -> FrameProcessor:
    return FrameProcessor(
        Analyzer.from_config(AnalyzerConfig(models_dir=models_dir())),
        CropConfig(),
        max_batch_frames=2,
        now_ns=lambda: NOW_NS,
    )


def _frame(cam: str, seq: int, jpeg: bytes = b"", **kw: object) -> Frame:
    return Frame(
        camera_id=cam, seq=seq, ts_capture_ns=1_000 + seq, width=768, height=576, jpeg=jpeg, **kw
    )  # type: ignore[arg-type]


def test_corrupt_and_truncated_jpegs_are_rejected(jpegs: list[bytes]) -> None:
    assert isinstance(decode_jpeg(jpegs[0]), np.ndarray)
    truncated = decode_jpeg(jpegs[0][: len(jpegs[0]) // 2])
    assert isinstance(truncated, Rejected) and "truncated" in truncated.reason
    garbage = decode_jpeg(b"\xff\xd8" + b"\x00" * 500 + b"\xff\xd9")
    assert isinstance(garbage, Rejected) and garbage.kind == "corrupt_jpeg"
    assert isinstance(decode_jpeg(b"GIF89a..."), Rejected)
    assert decode_jpeg(b"").kind == "empty_image"  # type: ignore[union-attr]


def test_batch_keeps_order_with_eos_and_rejections(
    processor: FrameProcessor, jpegs: list[bytes]
) -> None:
    items = [
        (_frame("a", 0, jpegs[0]), jpegs[0]),
        (_frame("b", 0, jpegs[1]), jpegs[1]),
        (_frame("a", 1, b"broken"), b"broken"),
        (_frame("a", 2, jpegs[2]), jpegs[2]),
        (_frame("a", 3, eos=True), b""),
    ]
    out = processor.process(items)
    assert [type(o).__name__ for o in out] == [
        "Detections",
        "Detections",
        "Rejected",
        "Detections",
        "Detections",
    ]
    d0, d1, _, d2, end = out
    assert isinstance(d0, Detections) and isinstance(end, Detections)
    assert (d0.camera_id, d0.seq, d0.ts_capture_ns, d0.ts_detected_ns) == ("a", 0, 1000, NOW_NS)
    assert end.eos and end.seq == 3 and not end.boxes_xyxy
    assert processor.last_stats.chunks == [2, 1] and processor.last_stats.rejected == 1
    for det in (d0, d1, d2):
        n = len(det.scores_array())
        assert n >= 3 and det.boxes_array().shape == (n, 4)
        assert det.embeddings_array().shape == (n, 512) and det.embedding_dim == 512
        np.testing.assert_allclose(np.linalg.norm(det.embeddings_array(), axis=1), 1.0, atol=1e-5)
        assert det.sharpness_array().shape == (n,) and (det.width, det.height) == (768, 576)
        assert len(det.crops_jpeg) == n
        crop = cv2.imdecode(np.frombuffer(det.crops_jpeg[0], np.uint8), cv2.IMREAD_COLOR)
        x1, y1, x2, y2 = det.boxes_array()[0]
        assert abs(crop.shape[0] - (y2 - y1)) <= 2 and abs(crop.shape[1] - (x2 - x1)) <= 2


def test_crop_jpeg_longest_side_capped() -> None:
    tall = np.random.default_rng(0).integers(0, 255, (600, 200, 3), dtype=np.uint8)
    img = cv2.imdecode(
        np.frombuffer(encode_crop(tall, CropConfig(jpeg_max_side=256)), np.uint8), cv2.IMREAD_COLOR
    )
    assert img.shape[:2] == (256, 85)


def test_stage_dead_letters_bad_frames_and_keys_by_camera(
    processor: FrameProcessor, jpegs: list[bytes]
) -> None:
    stage = DetectorStage(processor, fetch_jpegs=None)
    frames = [
        _frame("cam-1", 0, jpegs[0]),
        _frame("cam-1", 1, b"\xff\xd8junk"),
        _frame("cam-2", 0, jpeg_ref="frame:gone"),
    ]
    records = [
        Record(FRAMES.name, 0, i, f.camera_id.encode(), encode(f), f, 0)
        for i, f in enumerate(frames)
    ]
    out = stage.handle(records)
    assert [o.topic for o in out] == [DETECTIONS.name, DEADLETTER.name, DEADLETTER.name]
    assert out[0].key == b"cam-1"
    det = decode(Detections, out[0].value)
    assert det.embedding_dim == 512 and len(det.crops_jpeg) == len(det.scores_array())
    assert b"corrupt_jpeg" in out[1].value and b"claim_check_missing" in out[2].value


def test_stage_streams_detections_in_record_order_before_the_batch_ends(
    processor: FrameProcessor, jpegs: list[bytes]
) -> None:
    """With ``emit`` set (the runner does), each frame's detections are handed over as soon as
    they and every record before them are ready; the batch returns only what was not sent."""
    frames = [
        _frame("s-1", 0, jpegs[0]),
        _frame("s-2", 0, jpegs[1]),
        _frame("s-1", 1, b"\xff\xd8junk"),
        _frame("s-1", 2, jpegs[2]),
        _frame("s-2", 1, jpegs[0]),
        _frame("s-1", 3, eos=True),
    ]
    records = [
        Record(FRAMES.name, 0, i, f.camera_id.encode(), encode(f), f, 0)
        for i, f in enumerate(frames)
    ]
    stage = DetectorStage(processor, fetch_jpegs=None)
    serial = stage.handle(records)  # no emit: everything comes back at the end
    emitted: list[list[Output]] = []
    analyses_when_emitted: list[int] = []
    calls = {"n": 0}
    original = processor.analyzer.analyze_batch

    def counting(*args: object, **kw: object) -> object:
        calls["n"] += 1
        return original(*args, **kw)  # type: ignore[arg-type]

    def emit(outputs: list[Output]) -> None:
        emitted.append(list(outputs))
        analyses_when_emitted.append(calls["n"])

    processor.analyzer.analyze_batch = counting  # type: ignore[method-assign]
    try:
        stage.emit = emit
        returned = stage.handle(records)
    finally:
        del processor.analyzer.analyze_batch
        stage.emit = None
    sent = [o for batch in emitted for o in batch]
    assert [o.topic for o in returned] == [DEADLETTER.name]  # only the dead letter waited
    assert [(o.topic, o.key) for o in sent] == [
        (o.topic, o.key) for o in serial if o.topic == DETECTIONS.name
    ]
    got = [decode(Detections, o.value) for o in sent]
    assert [(d.camera_id, d.seq, d.eos) for d in got] == [
        ("s-1", 0, False), ("s-2", 0, False), ("s-1", 2, False), ("s-2", 1, False),
        ("s-1", 3, True),
    ]  # fmt: skip
    # max_batch_frames=2: the first frames went out before the last chunk was analysed
    assert len(emitted) >= 2 and analyses_when_emitted[0] < calls["n"]


def test_background_masker_memory_is_bounded() -> None:
    masker = BackgroundMasker(BackgroundConfig(enabled=True, max_cameras=3), (104, 116, 124))
    frame = np.zeros((64, 64, 3), np.uint8)
    for i in range(10):
        masker.foreground(f"cam-{i}", frame)
        assert len(masker) <= 3
    masker.foreground("cam-7", frame)  # recently used: kept
    masker.foreground("cam-new", frame)
    assert len(masker) == 3


def test_background_masking_greys_out_static_pixels() -> None:
    """A walker on a static background: masked crop keeps the walker, greys the rest."""
    masker = BackgroundMasker(
        BackgroundConfig(enabled=True, downscale=1.0, history=50), (104, 116, 124)
    )
    rng = np.random.default_rng(1)
    background = rng.integers(0, 60, (120, 160, 3), dtype=np.uint8)
    for _ in range(60):
        fg = masker.foreground("c", background)
    frame = background.copy()
    frame[40:100, 70:90] = 250  # a bright "person"
    fg = masker.foreground("c", frame)
    box = np.asarray([[60, 30, 100, 110]], np.float32)
    crop = frame[30:110, 60:100]
    (masked,) = masker.mask_crops(fg, frame.shape[:2], box, [crop])
    assert (masked[15:65, 12:28] == 250).all(), "person kept"
    assert (masked[0:5, 0:5] == (104, 116, 124)).all(), "background greyed"
