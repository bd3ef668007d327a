"""Tests of Fourier-crop downsampling against the spec, Topaz, a NumPy oracle and invariants."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpick.errors import ConfigError
from jaxpick.ops import downsample, downsample_shape

FIXTURES = Path(__file__).resolve().parent.parent / "data" / "topaz_preprocess.npz"

_downsample = jax.jit(downsample, static_argnames=("factor", "shape"))


def spec_map(height: int = 100, width: int = 130) -> np.ndarray:
    """The spec's test map ``f(i,j) = float32(sin(0.1i)·cos(0.07j) + 0.01·((31i+17j) mod 13))``.

    Defined in spec section 4.2 and reused by 5.1 and 5.2 (i = row, j = column).
    """
    i, j = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    return (np.sin(0.1 * i) * np.cos(0.07 * j) + 0.01 * ((31 * i + 17 * j) % 13)).astype(np.float32)


def topaz_downsample_reference(x: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Topaz's ``downsample`` restated in float64 NumPy (its code, with the crop on axis -2)."""
    m, n = shape
    spectrum = np.fft.rfft2(x.astype(np.float64))
    top = spectrum[..., 0 : m // 2, 0 : n // 2 + 1]
    bottom = spectrum[..., -m // 2 :, 0 : n // 2 + 1]
    spectrum = np.concatenate([top, bottom], axis=-2) * (m * n / (x.shape[-2] * x.shape[-1]))
    return np.fft.irfft2(spectrum, s=shape)


# ---------------------------------------------------------------------------------------------
# Reference values and parity.


def test_spec_reference_values() -> None:
    """Spec 5.1 [verified] values for the 100x130 map f(i,j): factors 4 and 3."""
    image = spec_map()
    out = np.asarray(_downsample(image, factor=4))
    assert out.shape == (25, 32)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.sum(dtype=np.float64), 54.346481, rtol=1e-6)
    np.testing.assert_allclose(out[0, 0], 0.029641, atol=1e-6)
    np.testing.assert_allclose(out[10, 20], -0.566026, atol=1e-6)
    out = np.asarray(_downsample(image, factor=3))
    assert out.shape == (33, 43)
    np.testing.assert_allclose(out[5, 7], 0.198481, atol=1e-6)


@pytest.fixture(scope="module")
def topaz_fixtures() -> dict[str, np.ndarray]:
    with np.load(FIXTURES) as data:
        return dict(data)


@pytest.mark.parametrize("factor", [2, 3, 4])
@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_parity_with_topaz(topaz_fixtures: dict[str, np.ndarray], index: int, factor: int) -> None:
    """Matches topaz.utils.image.downsample (stored by make_topaz_preprocess_fixtures.py)."""
    image = topaz_fixtures[f"image{index}"]
    expected = topaz_fixtures[f"down{index}_f{factor}"]
    out = np.asarray(_downsample(image, factor=factor))
    assert out.shape == expected.shape
    assert out.dtype == expected.dtype == np.float32
    scale = float(np.abs(expected).max())
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6 * scale)


@pytest.mark.parametrize(
    ("in_shape", "out_shape"),
    [
        ((16, 20), (8, 10)),  # even -> even
        ((17, 23), (5, 7)),  # odd -> odd
        ((16, 20), (7, 9)),  # even -> odd
        ((15, 21), (6, 10)),  # odd -> even
        ((12, 12), (1, 1)),  # a single pixel: Topaz keeps the last frequency row, -1
        ((12, 9), (1, 4)),
        ((10, 14), (10, 5)),  # rows untouched
        ((10, 14), (3, 14)),  # columns untouched
        ((9, 8), (9, 8)),  # identity
        # Taller than 512 rows: on CPU the row FFTs run in blocks of rows (a divisor of H).
        ((1024, 40), (256, 10)),  # 4 blocks of 256
        ((600, 30), (150, 15)),  # 2 blocks of 300
        ((521, 24), (130, 12)),  # prime height: no divisor, one block
    ],
)
def test_matches_numpy_oracle(in_shape: tuple[int, int], out_shape: tuple[int, int]) -> None:
    """Every parity of sizes, including the degenerate crops, agrees with Topaz's algorithm."""
    image = np.random.default_rng(3).standard_normal(in_shape).astype(np.float32)
    expected = topaz_downsample_reference(image, out_shape)
    out = np.asarray(_downsample(image, shape=out_shape))
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=2e-6)


def test_equals_naive_rfft2_crop() -> None:
    """The separable low-frequency FFT gives the same result as cropping jnp.fft.rfft2."""
    image = jax.random.normal(jax.random.key(1), (2, 48, 60))
    m, n = 20, 25

    @jax.jit
    def naive(x: jax.Array) -> jax.Array:
        spectrum = jnp.fft.rfft2(x)[..., : n // 2 + 1]
        spectrum = jnp.concatenate(
            [spectrum[..., : m // 2, :], spectrum[..., -(m - m // 2) :, :]], -2
        )
        return jnp.fft.irfft2(spectrum * (m * n / (48 * 60)), s=(m, n))

    np.testing.assert_allclose(
        np.asarray(_downsample(image, shape=(m, n))), np.asarray(naive(image)), atol=2e-6
    )


# ---------------------------------------------------------------------------------------------
# Invariants.


def test_factor_one_is_identity() -> None:
    image = jax.random.normal(jax.random.key(0), (33, 47))
    np.testing.assert_array_equal(np.asarray(_downsample(image, factor=1)), np.asarray(image))
    np.testing.assert_array_equal(np.asarray(_downsample(image, shape=(33, 47))), np.asarray(image))
    # Topaz computes the FFT round trip instead; it equals the input to float32 rounding.
    np.testing.assert_allclose(
        topaz_downsample_reference(np.asarray(image), (33, 47)), np.asarray(image), atol=1e-6
    )


@pytest.mark.parametrize(
    ("factor", "shape"), [(2, None), (3, None), (2.5, None), (None, (11, 7)), (None, (2, 1))]
)
def test_preserves_mean(factor: float | None, shape: tuple[int, int] | None) -> None:
    image = 3.0 + jax.random.normal(jax.random.key(2), (60, 75))
    out = _downsample(image, factor=factor, shape=shape)
    np.testing.assert_allclose(float(out.mean()), float(image.mean()), rtol=1e-5)


def test_single_row_target_drops_the_mean_like_topaz() -> None:
    """Topaz quirk kept for parity: for an odd target height m it keeps frequency rows
    ``0 .. m//2 - 1`` and ``-ceil(m/2) .. -1``, so for m = 1 only row -1 survives and the
    mean (row 0) is lost. ``test_matches_numpy_oracle`` covers the general odd case."""
    i = np.arange(12, dtype=np.float32)[:, None] * np.ones((1, 8), np.float32)
    image = 4.0 + np.cos(2 * np.pi * i / 12)  # mean 4, one cosine along the rows
    out = np.asarray(_downsample(image, shape=(1, 8)))
    np.testing.assert_allclose(out, 0.5 * np.ones((1, 8)), atol=1e-5)  # half the cosine, no mean


def test_band_limited_image_downsamples_to_samples() -> None:
    """A sinusoid below the new Nyquist frequency becomes the same sinusoid, sampled."""
    height, width, factor = 96, 128, 4
    i, j = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")

    def wave(i: np.ndarray, j: np.ndarray) -> np.ndarray:
        phase = 2 * np.pi * (3 * i / height + 5 * j / width)
        return 1.5 + np.cos(phase) - 0.5 * np.sin(2 * np.pi * (-7 * i / height + 2 * j / width))

    image = wave(i, j).astype(np.float32)
    out = np.asarray(_downsample(image, factor=factor))
    np.testing.assert_allclose(out, image[::factor, ::factor], atol=1e-5)


@pytest.mark.parametrize("shape", [(40, 52), (768, 20)])  # whole and blocked row FFTs
def test_batch_equals_loop_and_vmap(shape: tuple[int, int]) -> None:
    images = jax.random.normal(jax.random.key(4), (3, *shape))
    batched = np.asarray(_downsample(images, factor=3))
    looped = np.stack([np.asarray(_downsample(image, factor=3)) for image in images])
    vmapped = np.asarray(jax.jit(jax.vmap(lambda x: downsample(x, 3)))(images))
    assert batched.shape == (3, shape[0] // 3, shape[1] // 3)
    np.testing.assert_allclose(batched, looped, atol=1e-6)
    np.testing.assert_allclose(vmapped, looped, atol=1e-6)
    expected = topaz_downsample_reference(np.asarray(images), batched.shape[1:])
    np.testing.assert_allclose(batched, expected, atol=2e-6)


def test_traces_once_per_shape() -> None:
    traces = []

    @jax.jit
    def run(x: jax.Array) -> jax.Array:
        traces.append(x.shape)
        return downsample(x, 2)

    for seed in range(3):
        run(jax.random.normal(jax.random.key(seed), (32, 48))).block_until_ready()
    assert len(traces) == 1
    run(jnp.zeros((34, 48))).block_until_ready()
    assert len(traces) == 2


@pytest.mark.parametrize(
    ("dtype", "out_dtype"),
    [(np.float32, np.float32), (np.float16, np.float16), (np.int16, np.float32)],
)
def test_dtypes(dtype: type, out_dtype: type) -> None:
    image = (100 * np.random.default_rng(0).random((16, 16))).astype(dtype)
    out = _downsample(image, factor=2)
    assert out.dtype == out_dtype
    expected = topaz_downsample_reference(image.astype(np.float32), (8, 8))
    np.testing.assert_allclose(np.asarray(out, np.float64), expected, rtol=2e-3, atol=0.1)


# ---------------------------------------------------------------------------------------------
# Static-argument validation.


def test_downsample_shape() -> None:
    assert downsample_shape((4096, 4096), 4) == (1024, 1024)
    assert downsample_shape((100, 130), 3) == (33, 43)
    assert downsample_shape((5760, 4092), 2.5) == (2304, 1636)
    with pytest.raises(ConfigError, match="factor"):
        downsample_shape((10, 10), 11)
    with pytest.raises(ConfigError, match="shape"):
        downsample_shape((10,), 2)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"factor": 0.5}, "factor"),
        ({"factor": 0}, "factor"),
        ({"factor": -2}, "factor"),
        ({"factor": float("nan")}, "factor"),
        ({"factor": float("inf")}, "factor"),
        ({"factor": True}, "factor"),
        ({"factor": "2"}, "factor"),
        ({"factor": 40}, "factor"),  # would give a zero-sized image
        ({}, "neither"),
        ({"factor": 2, "shape": (8, 8)}, "not both"),
        ({"shape": (17, 8)}, "larger"),
        ({"shape": (8, 21)}, "larger"),
        ({"shape": (0, 8)}, "shape"),
        ({"shape": (8.0, 8)}, "shape"),
        ({"shape": (8, 8, 8)}, "shape"),
    ],
)
def test_invalid_arguments(kwargs: dict[str, object], match: str) -> None:
    image = jnp.zeros((16, 20))
    with pytest.raises(ConfigError, match=match):
        downsample(image, **kwargs)  # type: ignore[arg-type]
    assert issubclass(ConfigError, ValueError)


def test_needs_two_axes() -> None:
    with pytest.raises(ConfigError, match="2 axes"):
        downsample(jnp.zeros(16), 2)
