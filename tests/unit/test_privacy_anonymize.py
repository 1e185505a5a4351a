"""``crosscam anonymize``: an exported frame has no unblurred ground-truth person (pixels
checked against the original), obscuring is strong enough, pseudonyms do not link runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from crosscam.anonymize import (
    MIN_BLOCK_PX,
    AnonymizeParams,
    Anonymizer,
    obscure,
    padded_boxes,
    pseudonym,
    salted_labeler,
)
from crosscam.cli import main as cli
from evaluation.anonymize import COVERED_MIN, covered_share, detail_kept, head_box
from evaluation.groundtruth import load_mot_gt
from evaluation.video import video_frames
from service.assets import pets_dir

FRAMES = 8


def textured(h: int = 240, w: int = 320) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)


def test_exported_frames_hide_every_ground_truth_person(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "anon.avi"
    video = pets_dir() / "vtest.avi"
    assert (
        cli(
            [
                "anonymize",
                "--video",
                str(video),
                "--out",
                str(out),
                "--frames",
                str(FRAMES),
                "--ids",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["frames"] == FRAMES
    gt = load_mot_gt(pets_dir() / "gt.txt")
    exported = dict(video_frames(out))
    assert len(exported) == FRAMES
    people = 0
    for i, original in video_frames(video, FRAMES):
        boxes, _, ignore = gt.frame(i)
        for box in boxes[~ignore]:
            head = detail_kept(original, exported[i], head_box(box))
            body = detail_kept(original, exported[i], box)
            if head is None or body is None:
                continue
            people += 1
            assert head < 0.2, f"frame {i}: a head keeps {head:.2f} of its detail"
            assert body < 0.5, f"frame {i}: a body keeps {body:.2f} of its detail"
    assert people >= 2 * FRAMES
    # control: the same check on an untouched copy does see the people
    _, first = next(video_frames(video, 1))
    box = gt.frame(0)[0][~gt.frame(0)[2]][0]
    assert detail_kept(first, first.copy(), head_box(box)) == pytest.approx(1.0)


def test_pixelation_blocks_and_a_flat_head() -> None:
    frame = textured()
    mask = obscure(frame, np.array([[40, 20, 100, 200]], np.int32), "pixelate", 0.25)
    assert mask.sum() == 60 * 180 and mask[20:200, 40:100].all()
    head = frame[20:65, 40:100].reshape(-1, 3)
    assert (head == head[0]).all()  # one flat patch: nothing of a face is left
    body = frame[65:200, 40:100]
    # blocks of at least MIN_BLOCK_PX: neighbouring pixels inside a block are equal
    assert (np.diff(body[:, :MIN_BLOCK_PX].astype(int), axis=1) == 0).mean() > 0.8


def test_blur_kernel_grows_with_the_box() -> None:
    frame = textured()
    original = frame.copy()
    obscure(frame, np.array([[0, 0, 160, 240]], np.int32), "blur", 0.2)
    kept = detail_kept(original, frame, np.array([0, 60, 160, 240], float))
    assert kept is not None and kept < 0.1
    assert (frame[:, 161:] == original[:, 161:]).all()  # outside the box nothing changes


def test_padding_grows_and_clips_to_the_frame() -> None:
    boxes = padded_boxes(np.array([[10, 10, 110, 210], [300, 200, 320, 240]]), 0.2, 320, 240)
    assert boxes.tolist() == [[0, 0, 130, 240], [296, 192, 320, 240]]


def test_pseudonyms_are_stable_within_a_run_and_unlinkable_across_runs() -> None:
    assert pseudonym(3, b"a" * 16) == pseudonym(3, b"a" * 16) != pseudonym(4, b"a" * 16)
    assert pseudonym(3, b"a" * 16) != pseudonym(3, b"b" * 16)
    run1, run2 = salted_labeler(), salted_labeler()
    assert run1(1, None) == run1(1, None) != run2(1, None)


def test_missed_detections_are_covered_by_the_tracker() -> None:
    """A person the detector misses for two frames stays obscured (the tracker's prediction)."""
    frame = textured(480, 640)
    box = np.array([[200.0, 100.0, 260.0, 260.0]], np.float32)
    frames = []
    for i in range(8):
        b = box + np.array([4.0 * i, 0, 4.0 * i, 0], np.float32)
        frames.append(np.zeros((0, 4), np.float32) if i in (5, 6) else b)
    feed = iter(frames)

    def analyze(_frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        b = next(feed)
        return b, np.full(len(b), 0.9, np.float32), np.zeros((len(b), 0), np.float32)

    anon = Anonymizer(analyze, AnonymizeParams(draw_ids=True))
    for i in range(8):
        res = anon.process(i, frame, i * 142_857_143)
        truth = box[0] + np.array([4.0 * i, 0, 4.0 * i, 0])
        assert (covered_share(res.mask, truth) or 0) >= COVERED_MIN, f"frame {i} not covered"
        if i in (5, 6):
            assert res.predicted == 1 and res.detections == 0
            assert list(res.labels.values()) == list(anon._labels.values())


@pytest.mark.parametrize(
    "extra", [["--video", "/nonexistent.avi"], ["--pad", "-1"], ["--store", "/nonexistent"]]
)
def test_bad_input_is_a_clear_error(tmp_path: Path, extra: list[str], capsys) -> None:  # type: ignore[no-untyped-def]
    args = ["anonymize", "--video", str(pets_dir() / "vtest.avi"), "--out", str(tmp_path / "o.mp4")]
    assert cli(args + extra + ["--frames", "1"]) == 2
    assert "error:" in capsys.readouterr().err
    assert not (tmp_path / "o.mp4").exists()


def test_store_ids_are_drawn_until_the_identity_is_erased(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """End to end: a person stored as g42 is labelled g42 on the video; after
    ``erase_identity`` the same video never shows g42 again."""
    from crosscam.anonymize import analyzer_function
    from reid.erasure import erase_identity
    from reid.qdrant_store import open_store
    from reid.store import StoredTracklet

    analyze = analyzer_function(0.1)
    frames = dict(video_frames(pets_dir() / "vtest.avi", FRAMES))
    boxes, scores, emb = analyze(frames[FRAMES - 1])
    store = open_store("edge", tmp_path / "data" / "qdrant-edge", emb.shape[1])
    best = int(np.argmax(scores))
    store.upsert([StoredTracklet("cam:1:0", "cam", 0, 1, "g42", vector=emb[best])])
    store.close()
    args = ["anonymize", "--video", str(pets_dir() / "vtest.avi"), "--out", str(tmp_path / "o.mp4"),
            "--frames", str(FRAMES), "--store", str(tmp_path / "data"), "--dim", str(emb.shape[1])]  # fmt: skip

    assert cli(args) == 0
    before = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["ids"]
    assert "g42" in before
    assert all(i == "g42" or i.startswith("p") for i in before)

    store = open_store("edge", tmp_path / "data" / "qdrant-edge", emb.shape[1])
    assert erase_identity(store, None, "g42").tracklets == ["cam:1:0"]
    store.close()
    assert cli(args) == 0
    after = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["ids"]
    assert after and "g42" not in after
