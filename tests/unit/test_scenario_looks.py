"""``crosscam scenario pets --look``: degraded camera looks, and greyscale detection of them."""

from __future__ import annotations

import numpy as np
import pytest

from detector.greyscale import GREY_LEVELS, GreyscaleCameras, channel_difference
from evaluation.scenario import LOOKS, degrade, make_views, parse_looks


def scene(seed: int = 0) -> np.ndarray:
    """A colourful 240×160 BGR test image (smooth colour gradients plus detail)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:240, 0:160]
    img = np.stack([x * 1.5, y, 255 - x * 1.5], axis=2) + rng.normal(0, 10, (240, 160, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def test_parse_looks_and_unknown_names_fail_clearly() -> None:
    assert parse_looks("cam1=grey, cam2=cast+noise") == {"cam1": "grey", "cam2": "cast+noise"}
    assert parse_looks("") == {}
    with pytest.raises(ValueError, match="CAM=LOOK"):
        parse_looks("cam1")
    with pytest.raises(ValueError, match="unknown look 'sepia'"):
        degrade(LOOKS[0], "sepia")
    with pytest.raises(ValueError, match="not in the cut"):
        make_views(2, 48, {"cam5": "grey"})


def test_each_degradation_changes_what_it_says() -> None:
    img = scene()
    base = LOOKS[0]
    rng = np.random.default_rng(1)
    plain = base.apply(img, rng)
    grey = degrade(base, "grey").apply(img, rng)
    assert channel_difference(plain) > 4 * GREY_LEVELS
    assert channel_difference(grey) < 1.0
    low = degrade(base, "lowres").apply(img, rng)
    assert low.shape[0] == plain.shape[0] // 2
    noisy = degrade(base, "noise").apply(img, rng)
    assert float(np.abs(noisy.astype(int) - plain.astype(int)).mean()) > 4.0
    jpeg = degrade(base, "jpeg").apply(img, rng)
    assert jpeg.shape == plain.shape and not np.array_equal(jpeg, plain)
    cast = degrade(base, "cast").apply(img, rng)
    assert cast[..., 0].mean() > plain[..., 0].mean() and cast[..., 2].mean() < plain[..., 2].mean()
    both = degrade(base, "grey+noise").apply(img, rng)
    assert channel_difference(both) < 1.0  # a noisy greyscale sensor is still greyscale


def test_greyscale_camera_is_told_from_its_frames() -> None:
    judge = GreyscaleCameras()
    grey_look, colour_look = degrade(LOOKS[1], "grey+noise"), degrade(LOOKS[1], "cast+noise")
    rng = np.random.default_rng(2)
    for seed in range(5):
        judge.observe("night", grey_look.apply(scene(seed), rng))
        judge.observe("day", colour_look.apply(scene(seed), rng))
    assert judge.is_greyscale("night") and not judge.is_greyscale("day")
    assert judge.any_greyscale()
    judge.reset("night")
    assert not judge.any_greyscale()
