"""``crosscam anonymize-live`` on the real stack: PETS frames of an opted-in camera come
out on the pseudonymised topic with every ground-truth person obscured (pixels checked
against the published original); an unlisted camera gets nothing; a corrupt frame is
dead-lettered, not lost."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from evaluation.anonymize import detail_kept, head_box
from evaluation.groundtruth import load_mot_gt
from evaluation.video import video_frames
from schemas import DeadLetter, Frame, decode, encode
from schemas.topics import DEADLETTER, FRAMES, PSEUDONYMISED_FRAMES
from tests.integration.kafka_helpers import consume_all, produce, unique

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
N = 20
OTHER = 4
T0_NS = 1_700_000_000 * 10**9
STEP_NS = 142_857_143  # 7 fps


def _jpeg(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return buf.tobytes()


def _frame(camera: str, seq: int, jpeg: bytes) -> tuple[bytes, bytes]:
    msg = Frame(camera_id=camera, seq=seq, ts_capture_ns=T0_NS + seq * STEP_NS, width=768,
                height=576, jpeg=jpeg, source="pets")  # fmt: skip
    return camera.encode(), encode(msg)


def _start(bootstrap: str, camera: str, group: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "crosscam.cli", "anonymize-live", "--cameras", f"{camera},absent",
           "--ids", "--bootstrap-servers", bootstrap, "--group-id", group]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip


def test_live_output_obscures_every_person_of_opted_in_cameras_only(
    kafka_bootstrap: str, pets_video: Path
) -> None:
    cam, other = unique("anon"), unique("plain")
    originals = {i: cv2.imdecode(np.frombuffer(_jpeg(f), np.uint8), cv2.IMREAD_COLOR)
                 for i, f in video_frames(pets_video, N)}  # fmt: skip
    items = [_frame(cam, i, _jpeg(img)) for i, img in originals.items()]
    items += [_frame(other, i, _jpeg(originals[i])) for i in range(OTHER)]
    items.append(_frame(cam, N, b"\xff\xd8 not a whole jpeg"))
    asyncio.run(produce(kafka_bootstrap, FRAMES.name, items))

    proc = _start(kafka_bootstrap, cam, unique("crosscam-anonymize"))
    try:
        mine = lambda recs: [r for r in recs if r.key in (cam.encode(), other.encode())]  # noqa: E731
        out = mine(asyncio.run(consume_all(kafka_bootstrap, PSEUDONYMISED_FRAMES.name,
                                           lambda recs: len(mine(recs)) >= N, timeout_s=300)))  # fmt: skip
        dead = asyncio.run(consume_all(kafka_bootstrap, DEADLETTER.name, lambda recs: any(
            decode(DeadLetter, r.value).value == items[-1][1] for r in recs), timeout_s=60))  # fmt: skip
    finally:
        proc.send_signal(signal.SIGTERM)
        log, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, log[-3000:]
    assert "stage_stopped" in log

    frames = [decode(Frame, r.value) for r in out]
    assert [(f.camera_id, f.seq) for f in frames] == [(cam, i) for i in range(N)], log[-3000:]
    assert all(f.ts_capture_ns == T0_NS + f.seq * STEP_NS and f.source == "pets" for f in frames)
    letters = [decode(DeadLetter, r.value) for r in dead]
    assert [d.stage for d in letters if d.value == items[-1][1]] == ["anonymize"]
    _assert_people_obscured(frames, originals, pets_video.parent / "gt.txt")


def _assert_people_obscured(
    frames: list[Frame], originals: dict[int, np.ndarray], gt_path: Path
) -> None:
    """Every ground-truth person (head and body) keeps little of its detail; the control
    (the published original itself) keeps all of it."""
    gt = load_mot_gt(gt_path)
    people = 0
    for f in frames:
        output = cv2.imdecode(np.frombuffer(f.jpeg, np.uint8), cv2.IMREAD_COLOR)
        original = originals[f.seq]
        assert output.shape == original.shape and (f.width, f.height) == (768, 576)
        boxes, _, ignore = gt.frame(f.seq)
        for box in boxes[~ignore]:
            head = detail_kept(original, output, head_box(box))
            body = detail_kept(original, output, box)
            if head is None or body is None:
                continue
            people += 1
            assert head < 0.2, f"frame {f.seq}: a head keeps {head:.2f} of its detail"
            assert body < 0.5, f"frame {f.seq}: a body keeps {body:.2f} of its detail"
            control = detail_kept(original, original.copy(), head_box(box))
            assert control == pytest.approx(1.0)
    assert people >= 2 * len(frames)
