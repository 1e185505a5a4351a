"""Motion gating on real PETS09 frames: still scenes are skipped whatever their noise, people
walking never are, slow movement adds up, and a still frame repeats the last analysed
frame's detections so the tracker keeps every person through it."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from detector.analyzer import Analyzer, AnalyzerConfig
from detector.config import CropConfig, MotionGateConfig
from detector.core import FrameProcessor
from detector.motion import MotionGate
from evaluation.video import video_frames
from schemas.messages import Detections, Frame
from service.assets import models_dir, pets_dir
from tracker.core import CameraTracker

FPS = 7
STEP_NS = 1_000_000_000 // FPS


def _jpeg(img: np.ndarray, quality: int = 85) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def _noisy(img: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    noise = rng.normal(0.0, sigma, img.shape)
    return np.clip(img.astype(np.float64) + noise, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def pets() -> list[np.ndarray]:
    """The first 60 PETS09 frames at the bus's width (640)."""
    return [
        cv2.resize(f, (640, 480), interpolation=cv2.INTER_AREA)
        for _, f in video_frames(pets_dir() / "vtest.avi", 60)
    ]


@pytest.fixture(scope="module")
def empty_scene(pets: list[np.ndarray]) -> np.ndarray:
    """PETS09's square with nobody in it: the per-pixel median of frames far apart."""
    far = [f for _, f in video_frames(pets_dir() / "vtest.avi", 795)][::40]
    median = np.median(np.stack(far), axis=0).astype(np.uint8)
    return cv2.resize(median, (640, 480), interpolation=cv2.INTER_AREA)


@pytest.mark.parametrize("sigma", [0.0, 3.0, 8.0, 16.0])
def test_a_still_scene_is_skipped_whatever_its_sensor_noise(
    empty_scene: np.ndarray, sigma: float
) -> None:
    """The threshold follows each camera's own noise: no fixed level tuned to one sensor."""
    gate = MotionGate(MotionGateConfig(max_still_s=100.0))
    rng = np.random.default_rng(int(sigma))
    decisions = [
        gate.decide("cam", _jpeg(_noisy(empty_scene, sigma, rng)), k * STEP_NS) for k in range(40)
    ]
    assert decisions[0].reason == "first"
    analysed = [d.reason for d in decisions[1:] if d.analyse]
    assert not analysed, (sigma, analysed, gate.noise_sigma("cam"))


@pytest.mark.parametrize("sigma", [0.0, 8.0])
def test_people_walking_are_always_analysed(pets: list[np.ndarray], sigma: float) -> None:
    gate = MotionGate()
    rng = np.random.default_rng(1)
    decisions = [
        gate.decide("cam", _jpeg(_noisy(f, sigma, rng)), k * STEP_NS) for k, f in enumerate(pets)
    ]
    still = [k for k, d in enumerate(decisions) if not d.analyse]
    assert not still, still


def test_slow_movement_adds_up_against_the_last_analysed_frame() -> None:
    """A faint figure (20 grey levels off a plain wall) creeping one pixel a frame: one step
    alone is below the gate, but each frame is compared with the last analysed one, so the
    movement adds up and is seen within a few pixels."""
    gate = MotionGate(MotionGateConfig(max_still_s=100.0))
    rng = np.random.default_rng(2)
    reasons = []
    for k in range(40):
        img = np.full((480, 640, 3), 120, np.uint8)
        x = 300 + k  # one full-size pixel a frame: a quarter of a pixel at the gate's size
        cv2.rectangle(img, (x, 200), (x + 14, 240), (100, 100, 100), -1)
        reasons.append(gate.decide("cam", _jpeg(_noisy(img, 3.0, rng)), k * STEP_NS).reason)
    moved = [k for k, r in enumerate(reasons) if r == "moved"]
    assert moved, reasons
    gaps = np.diff([0, *moved])
    assert gaps.max() <= 8, reasons  # never lost more than 8 pixels of movement
    assert gaps.min() >= 2, reasons  # and single steps alone did not trigger it


def test_refresh_resize_reset_and_clock_jumps(empty_scene: np.ndarray) -> None:
    gate = MotionGate(MotionGateConfig(max_still_s=1.0))
    jpeg = _jpeg(empty_scene)
    reasons = [gate.decide("cam", jpeg, k * STEP_NS).reason for k in range(20)]
    # analysed at 0, then still until a full second has passed since (7 steps of 1/7 s
    # rounded down to whole ns fall 6 ns short): frames 8 and 16
    assert reasons[0] == "first"
    assert [k for k, r in enumerate(reasons) if r == "refresh"] == [8, 16]
    assert set(reasons) == {"first", "still", "refresh"}
    assert gate.decide("cam", _jpeg(empty_scene[:240, :320]), 20 * STEP_NS).reason == "resized"
    assert gate.decide("cam", _jpeg(empty_scene[:240, :320]), 0).reason == "refresh"  # went back
    gate.reset("cam")
    assert gate.decide("cam", jpeg, 21 * STEP_NS).reason == "first"
    assert gate.decide("other", b"\xff\xd8 not really a jpeg \xff\xd9", 0).reason == "undecodable"


@pytest.fixture(scope="module")
def analyzer() -> Analyzer:
    return Analyzer.from_config(AnalyzerConfig(models_dir=models_dir()))


def _frame(seq: int, jpeg: bytes) -> Frame:
    return Frame(
        camera_id="cam", seq=seq, ts_capture_ns=seq * STEP_NS, width=640, height=480, jpeg=jpeg
    )


def test_a_still_frame_repeats_the_last_analysed_frames_detections(
    analyzer: Analyzer, pets: list[np.ndarray]
) -> None:
    proc = FrameProcessor(analyzer, CropConfig(), max_batch_frames=4, motion_gate=MotionGate())
    rng = np.random.default_rng(3)
    jpegs = [_jpeg(pets[10])] + [_jpeg(_noisy(pets[10], 3.0, rng)) for _ in range(3)]
    truncated = jpegs[1][: len(jpegs[1]) // 2]
    items = [(_frame(k, j), j) for k, j in enumerate(jpegs)]
    items.insert(2, (_frame(9, truncated), truncated))
    items.append((_frame(5, _jpeg(pets[20])), _jpeg(pets[20])))
    out = proc.process(items)
    first, s1, broken, s2, s3, moved = out
    assert isinstance(first, Detections) and not first.still and len(first.scores) >= 4 * 3
    assert not isinstance(broken, Detections), "a broken frame is dead-lettered, never repeated"
    for det in (s1, s2, s3):
        assert isinstance(det, Detections) and det.still
        assert (det.boxes_xyxy, det.scores, det.embeddings) == (
            first.boxes_xyxy,
            first.scores,
            first.embeddings,
        )
        assert det.carried_array() is not None and det.carried_array().all()  # type: ignore[union-attr]
        assert det.crops_jpeg == []
    assert [d.seq for d in (s1, s2, s3)] == [1, 2, 3]
    assert isinstance(moved, Detections) and not moved.still and moved.seq == 5
    assert proc.last_stats.still == 3 and proc.last_stats.frames == 2


def test_people_keep_their_ids_through_a_still_stretch(
    analyzer: Analyzer, pets: list[np.ndarray]
) -> None:
    """Six seconds with nothing moving (three times the tracker's lost-track limit) and no
    refresh in between: every frame is skipped, the repeated boxes alone keep every track
    alive, and when people move again each continues under the id it had."""
    rng = np.random.default_rng(4)
    frozen = pets[30]
    sequence = pets[:31] + [_noisy(frozen, 2.0, rng) for _ in range(6 * FPS)] + pets[31:45]
    gate = MotionGate(MotionGateConfig(max_still_s=10.0))
    proc = FrameProcessor(analyzer, CropConfig(), max_batch_frames=8, motion_gate=gate)
    tracker = CameraTracker("cam")
    ids_by_frame: list[set[int]] = []
    finished_in_stretch = []
    stretch = 6 * FPS
    still = 0
    for k, img in enumerate(sequence):
        jpeg = _jpeg(img)
        (det,) = proc.process([(_frame(k, jpeg), jpeg)])
        assert isinstance(det, Detections)
        still += det.still
        res = tracker.step_detections(det)
        if 31 <= k < 31 + stretch:
            finished_in_stretch += res.finished
        ids_by_frame.append({t.track_id for t in res.confirmed})
    assert still >= stretch - 1, still
    before = ids_by_frame[30]
    assert not [t.track_id for t in finished_in_stretch if t.track_id in before]
    after = set().union(*ids_by_frame[31 + stretch : 31 + stretch + 5])
    assert len(before) >= 3
    assert before <= after, (before, after)
