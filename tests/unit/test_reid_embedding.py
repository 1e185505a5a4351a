"""The ReID service's own appearance model (search by example) agrees with the detector's,
on real PETS crops through the real OSNet model; images are checked by decoding."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from evaluation.scenario import load_pets_gt
from reid.embedding import MODEL_FILE, BadImage, CropEmbedder, decode_image
from service.assets import model_path, models_dir, pets_dir


def pets_crops(
    people: tuple[int, ...] = (1, 17, 5), per_person: int = 3
) -> dict[int, list[np.ndarray]]:
    """BGR crops of PETS people from the real video (every 15th ground-truth frame)."""
    gt = load_pets_gt(pets_dir() / "gt.txt")
    want = {p: set(gt[gt[:, 1] == p][:, 0].astype(int)[::15][:per_person]) for p in people}
    crops: dict[int, list[np.ndarray]] = {p: [] for p in people}
    cap = cv2.VideoCapture(str(pets_dir() / "vtest.avi"))
    idx = 0
    while any(len(crops[p]) < len(want[p]) for p in people):
        ok, frame = cap.read()
        assert ok
        idx += 1
        for p in people:
            if idx in want[p]:
                r = gt[(gt[:, 0] == idx) & (gt[:, 1] == p)][0]
                x, y, w, h = (int(v) for v in r[2:6])
                crops[p].append(frame[max(y, 0) : y + h, max(x, 0) : x + w].copy())
    cap.release()
    return crops


@pytest.fixture(scope="module")
def crops() -> list[np.ndarray]:
    return [c for cs in pets_crops().values() for c in cs]


@pytest.mark.parametrize(("precision", "least"), [("f32", 0.999), ("auto", 0.995)])
def test_reid_embedder_matches_the_detectors(
    crops: list[np.ndarray], precision: str, least: float
) -> None:
    """Float32 against float32 agree to 0.999; the detector's default ('auto': bfloat16 on a
    CPU with AMX, where it also agrees at start) to 0.995."""
    from detector.config import OnnxEmbedderConfig, RuntimeConfig
    from detector.embedder import build_embedder

    runtime = RuntimeConfig(embedder_precision=precision)  # type: ignore[arg-type]
    theirs = build_embedder(OnnxEmbedderConfig(), runtime, models_dir()).embed(crops)
    ours = CropEmbedder(model_path(MODEL_FILE)).embed(crops)
    cos = np.sum(theirs * ours, axis=1)
    assert ours.shape == theirs.shape == (len(crops), 512)
    assert cos.min() >= least, cos
    # and different people stay apart (the check above cannot pass on a constant vector)
    assert float(ours[0] @ ours[3]) < 0.95


def test_images_are_checked_by_decoding(crops: list[np.ndarray]) -> None:
    ok, jpeg = cv2.imencode(".jpg", crops[0])
    assert ok
    assert decode_image(jpeg.tobytes()).shape == crops[0].shape
    for bad in (
        b"",
        b"GIF89a....",
        b"hello world",
        jpeg.tobytes()[:40],
        b"\xff\xd8" + b"\x00" * 50,
    ):
        with pytest.raises(BadImage):
            decode_image(bad)
    # a PNG header claiming 100000 x 100000 pixels is refused before any decoding
    huge = (
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
        + (100000).to_bytes(4, "big") * 2
        + b"\x08\x02\x00\x00\x00"
    )
    with pytest.raises(BadImage, match="pixels"):
        decode_image(huge)
    with pytest.raises(BadImage, match="smaller"):
        decode_image(cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))[1].tobytes())


def test_a_wrong_model_file_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    fake = tmp_path / MODEL_FILE
    fake.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="SHA-256"):
        CropEmbedder(fake)
