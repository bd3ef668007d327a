"""Tests of the crop geometry (`jaxpick.data.augment`) against numpy and torchvision/Topaz."""

from __future__ import annotations

import inspect
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpick.data import augment
from jaxpick.data.augment import (
    centred_offsets,
    random_offsets,
    random_transform,
    transform_offsets,
)

FIXTURE = Path(__file__).resolve().parent.parent / "data" / "torchvision_rotate.npz"


def _take(window: np.ndarray, offsets: jax.Array) -> np.ndarray:
    """Pixels ``centre + offsets`` of an odd window (all inside it)."""
    off = np.asarray(offsets)
    c = window.shape[0] // 2
    return window[c + off[..., 0], c + off[..., 1]]


@pytest.mark.parametrize("crop", [1, 2, 5, 6, 71])
def test_centred_offsets(crop: int) -> None:
    off = np.asarray(centred_offsets(crop))
    assert off.dtype == np.int32
    assert off.shape == (crop, crop, 2)
    assert off[0, 0].tolist() == [-(crop // 2), -(crop // 2)]
    assert off[crop // 2, crop // 2].tolist() == [0, 0]
    # The same as Topaz's centred crop, [c - crop//2, c - crop//2 + crop).
    window = np.arange(81 * 81).reshape(81, 81)
    start = 40 - crop // 2
    np.testing.assert_array_equal(
        _take(window, off), window[start : start + crop, start : start + crop]
    )
    np.testing.assert_array_equal(transform_offsets(crop, 0.0), off)


@pytest.mark.parametrize("crop", [3, 7, 21])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_quarter_turns_are_rot90(crop: int, k: int) -> None:
    window = np.random.default_rng(k).standard_normal((31, 31))
    plain = _take(window, centred_offsets(crop))
    # Counter-clockwise as displayed, as torchvision's rotate (checked in the fixture below).
    np.testing.assert_array_equal(
        _take(window, transform_offsets(crop, 90.0 * k)), np.rot90(plain, k)
    )
    np.testing.assert_array_equal(
        _take(window, transform_offsets(crop, 90.0 * k - 360.0)), np.rot90(plain, k)
    )


@pytest.mark.parametrize("crop", [5, 6])
def test_flips_act_on_the_rotated_crop(crop: int) -> None:
    window = np.random.default_rng(0).standard_normal((31, 31))
    for angle in (0.0, 90.0, 33.3):
        rotated = _take(window, transform_offsets(crop, angle))
        h = _take(window, transform_offsets(crop, angle, hflip=True))
        v = _take(window, transform_offsets(crop, angle, vflip=True))
        hv = _take(window, transform_offsets(crop, angle, hflip=True, vflip=True))
        np.testing.assert_array_equal(h, rotated[:, ::-1])
        np.testing.assert_array_equal(v, rotated[::-1, :])
        np.testing.assert_array_equal(hv, rotated[::-1, ::-1])


def test_matches_torchvision_rotate_and_topaz_crop() -> None:
    """Topaz's rotate → centre-crop → hflip → vflip, recorded with torchvision (see the script
    ``tests/data/make_torchvision_rotate_fixtures.py``)."""
    data = np.load(FIXTURE)
    window, crops = data["window"], data["crop"]
    crop = crops.shape[-1]
    mismatched = 0
    for angle, hflip, vflip, expected in zip(
        data["angle"], data["hflip"], data["vflip"], crops, strict=True
    ):
        got = _take(window, transform_offsets(crop, np.float32(angle), hflip, vflip))
        assert (expected != 0).all()  # the crop never leaves Topaz's window
        if angle % 90 == 0:
            np.testing.assert_array_equal(got, expected, err_msg=f"angle {angle}")
        mismatched += int((got != expected).sum())
    # Elsewhere only pixels whose source lies within float rounding of a half-pixel tie may
    # round the other way (float32 maths in a different order): none or a handful of 26,460.
    assert mismatched <= crops.size * 1e-3


def test_random_transform_distribution() -> None:
    angle, hflip, vflip = random_transform(jax.random.key(0), (20000,))
    assert angle.dtype == jnp.float32
    assert hflip.dtype == jnp.bool_
    assert vflip.shape == (20000,)
    a = np.asarray(angle)
    assert a.min() >= 0.0
    assert a.max() < 360.0
    # Uniform: each quarter about a quarter (4 sigma).
    counts = np.histogram(a, bins=4, range=(0, 360))[0]
    assert np.all(np.abs(counts - 5000) < 4 * np.sqrt(20000 * 0.25 * 0.75))
    for flip in (hflip, vflip):
        assert abs(float(np.mean(flip)) - 0.5) < 4 * 0.5 / np.sqrt(20000)
    assert not np.array_equal(np.asarray(hflip), np.asarray(vflip))


def test_random_offsets_shapes_and_independence() -> None:
    off = random_offsets(jax.random.key(1), 7, 16)
    assert off.shape == (16, 7, 7, 2)
    assert off.dtype == jnp.int32
    assert np.all(np.asarray(off[:, 3, 3]) == 0)  # the centre stays the centre
    assert len({np.asarray(o).tobytes() for o in off}) > 1
    np.testing.assert_array_equal(off, random_offsets(jax.random.key(1), 7, 16))


def test_api_conventions() -> None:
    """Randomness takes ``key`` first; static sizes are plain ints checked eagerly."""
    for fn in (random_transform, random_offsets):
        assert next(iter(inspect.signature(fn).parameters)) == "key"
    for name in augment.__all__:
        assert getattr(augment, name).__doc__
    with pytest.raises(ValueError, match="crop_size"):
        centred_offsets(0)
    with pytest.raises(ValueError, match="crop_size"):
        transform_offsets(2.5, 0.0)  # type: ignore[arg-type]
