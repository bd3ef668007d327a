"""Tests of Topaz's GMM normalisation: spec values, Topaz parity, invariants, flags, sampling."""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpick.errors import ConfigError
from jaxpick.ops import (
    PI_INITS,
    STATUS_CONSTANT,
    STATUS_FIT_FAILED,
    STATUS_NONFINITE,
    STATUS_OK,
    GMMFit,
    NormalizeStats,
    choice_without_replacement,
    fit_gmm,
    normalize,
    sample_size,
    status_message,
)

FIXTURES = Path(__file__).resolve().parent.parent / "data" / "topaz_preprocess.npz"
# The package re-exports the function `normalize`, which shadows the submodule attribute.
normalize_module = importlib.import_module("jaxpick.ops.normalize")
GMM_KEYS = ("mu", "std", "pi", "logp", "mus", "stds", "pis", "logps")
STATIC = ("method", "alpha", "beta", "sample")  # niters and tol may be traced

# Module-level jitted entry points and one image shape (the fixtures'), so that tests share
# compilations: compiling a fit takes about a second on 2 CPU cores, running one milliseconds.
_normalize = jax.jit(normalize, static_argnames=STATIC)
_fit = jax.jit(fit_gmm, static_argnames=STATIC[1:])
NITERS = 100  # passed explicitly (traced), so that the parity cases share compilations
SHAPE = (96, 128)


@jax.jit
def _normalize_sampled(image: jax.Array, key: jax.Array) -> tuple[jax.Array, NormalizeStats]:
    return normalize(image, sample=4, key=key)


@jax.jit
def _choice_batch(keys: jax.Array) -> jax.Array:
    return jax.vmap(lambda key: choice_without_replacement(key, 4000, 400))(keys)


def spec_image() -> np.ndarray:
    """Spec 5.2: ``x = 0.5·f(i,j) + 10 − 3·[((i mod 25)−12)² + ((j mod 25)−12)² ≤ 36]``.

    ``f(i,j) = float32(sin(0.1i)·cos(0.07j) + 0.01·((31i+17j) mod 13))`` on 100x130 (spec 4.2).
    """
    i, j = np.meshgrid(np.arange(100), np.arange(130), indexing="ij")
    f = (np.sin(0.1 * i) * np.cos(0.07 * j) + 0.01 * ((31 * i + 17 * j) % 13)).astype(np.float32)
    disks = (((i % 25) - 12) ** 2 + ((j % 25) - 12) ** 2) <= 36
    return (0.5 * f + 10 - 3 * disks).astype(np.float32)


def two_component_image(key: jax.Array, shape: tuple[int, int]) -> tuple[jax.Array, jax.Array]:
    """Noisy background at 5 (std 0.5) with dark disks at 2; returns (image, background mask)."""
    i, j = jnp.meshgrid(jnp.arange(shape[0]), jnp.arange(shape[1]), indexing="ij")
    disks = (((i % 16) - 8) ** 2 + ((j % 16) - 8) ** 2) <= 16
    image = 5.0 + 0.5 * jax.random.normal(key, shape) - 3.0 * disks
    return image, ~disks


@pytest.fixture(scope="module")
def topaz_fixtures() -> dict[str, np.ndarray]:
    with np.load(FIXTURES) as data:
        return dict(data)


def _assert_fit_close(
    fit: GMMFit | NormalizeStats, expected: dict[str, float], rtol: float
) -> None:
    for name, value in expected.items():
        np.testing.assert_allclose(
            np.asarray(getattr(fit, name), np.float64), value, rtol=rtol, err_msg=name
        )


# ---------------------------------------------------------------------------------------------
# Reference values and parity with Topaz.


def test_spec_reference_values() -> None:
    """Spec 5.2 [verified] values (sample=1), including the single-Gaussian initialisation."""
    fit = _fit(spec_image())
    _assert_fit_close(
        fit, {"mu": 10.032650, "std": 0.240564, "pi": 0.837398, "logp": -6088.007}, rtol=1e-4
    )
    # The single-Gaussian fit (pi0 = 1) is the last initialisation; its logp has the pdf quirk.
    np.testing.assert_allclose(float(fit.mus[-1]), 9.512428, rtol=1e-4)
    np.testing.assert_allclose(float(fit.stds[-1]), 1.159340, rtol=1e-4)
    np.testing.assert_allclose(float(fit.logps[-1]), -19467.76, rtol=1e-4)
    assert float(fit.pis[-1]) == 1.0
    assert int(jnp.argmax(fit.logps)) == 0  # first of the tied best fits, as np.argmax


def test_single_gaussian_pdf_quirk() -> None:
    """logps[-1] = sum log N(x; mean, unbiased var) + Beta.pdf(1; alpha, beta), not logpdf."""
    image = spec_image()
    x = image.astype(np.float64).ravel()
    var = x.var(ddof=1)
    log_lik = np.sum(-((x - x.mean()) ** 2) / (2 * var) - 0.5 * np.log(2 * np.pi * var))
    for kwargs, pdf_at_one in (({}, 900.0), ({"alpha": 2.0, "beta": 2.0}, 0.0)):
        fit = _fit(image, **kwargs)
        np.testing.assert_allclose(float(fit.logps[-1]), log_lik + pdf_at_one, rtol=1e-6)


# Tolerances for the parity tests. With ``niters`` bounding the loop (the niters0/niters3
# cases) and for image 0, where EM converges cleanly, everything agrees to ~1e-6. Where EM
# creeps (images 1-3 for the initialisations that are not chosen, and the alpha cases), the
# iteration at which an initialisation stops is decided by float32 rounding of the
# log-likelihood, whose spacing there is about tol = 1e-3; the per-initialisation parameters then
# differ by up to a few 1e-2 (the log-likelihoods still agree to ~1e-6).
PARITY_CASES = {
    # case: (normalize keyword arguments, image index, rtol chosen fit, rtol per-init params)
    "gmm0": ({"niters": NITERS}, 0, 1e-5, 1e-5),
    "gmm1": ({"niters": NITERS}, 1, 1e-5, 5e-2),  # the single Gaussian is chosen: closed form
    "gmm2": ({"niters": NITERS}, 2, 1e-5, 5e-2),  # (photon counts with tied values)
    "gmm3": ({"niters": NITERS}, 3, 3e-4, 5e-2),  # near-tied best fits: which wins is a coin flip
    "niters0": ({"niters": 0}, 3, 1e-5, 1e-5),
    "niters3": ({"niters": 3}, 3, 1e-5, 1e-5),
    "alpha2beta2": ({"alpha": 2.0, "beta": 2.0, "niters": NITERS}, 1, 3e-4, 1e-1),
    "alpha50": ({"alpha": 50.0, "niters": 20}, 2, 1e-2, 1e-1),
}


@pytest.mark.parametrize("case", sorted(PARITY_CASES))
def test_parity_with_topaz(topaz_fixtures: dict[str, np.ndarray], case: str) -> None:
    """Matches topaz.stats.normalize(sample=1) (stored by make_topaz_preprocess_fixtures.py)."""
    kwargs, index, rtol_chosen, rtol_inits = PARITY_CASES[case]
    image = topaz_fixtures[f"image{index}"]
    out, stats = _normalize(image, **kwargs)
    assert int(stats.status) == STATUS_OK
    expected = {key: topaz_fixtures[f"{case}_{key}"] for key in GMM_KEYS}
    _assert_fit_close(stats, {k: expected[k] for k in ("mu", "std", "pi", "logp")}, rtol_chosen)
    np.testing.assert_allclose(np.asarray(stats.logps), expected["logps"], rtol=1e-5)
    for name in ("mus", "stds", "pis"):
        np.testing.assert_allclose(
            np.asarray(getattr(stats, name)), expected[name], rtol=rtol_inits, err_msg=name
        )
    if f"{case}_out" in topaz_fixtures:
        np.testing.assert_allclose(np.asarray(out), topaz_fixtures[f"{case}_out"], atol=1e-3)


@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_affine_parity_with_topaz(topaz_fixtures: dict[str, np.ndarray], index: int) -> None:
    out, stats = _normalize(topaz_fixtures[f"image{index}"], method="affine")
    np.testing.assert_allclose(float(stats.mu), topaz_fixtures[f"affine{index}_mu"], rtol=1e-5)
    np.testing.assert_allclose(float(stats.std), topaz_fixtures[f"affine{index}_std"], rtol=1e-5)
    np.testing.assert_allclose(np.asarray(out), topaz_fixtures[f"affine{index}_out"], atol=1e-5)


def test_chunked_pass_matches_whole_pass() -> None:
    """The cache-sized chunks used on CPU give the sums of the one-shot pass used elsewhere."""
    size = 2 * normalize_module._CPU_CHUNK + 1234
    x = jax.random.normal(jax.random.key(5), (size,))
    params = normalize_module._Params(
        jnp.linspace(-1.0, 0.0, 11),
        jnp.linspace(0.1, 1.0, 11),
        jnp.full(11, 0.7),
        jnp.linspace(0.1, 0.9, 11),
    )
    chunked = jax.jit(
        lambda x: normalize_module._sum_over_pixels(
            lambda v, w: normalize_module._em_sums(v, w, params), x
        )
    )(x)
    whole = jax.jit(lambda x: normalize_module._em_sums(x, None, params))(x)
    for a, b in zip(chunked, whole, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=1e-2)


def test_chunked_fit_matches_unchunked(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fit over more pixels than one CPU chunk (padded chunks included) equals a one-chunk fit."""
    image, _ = two_component_image(jax.random.key(8), (299, 301))  # 89999 px: 3 chunks, 1 pad
    run = jax.jit(lambda x: fit_gmm(x, niters=3, bins=None))
    chunked = run(image)
    monkeypatch.setattr(normalize_module, "_CPU_CHUNK", 10**9)
    whole = jax.jit(lambda x: fit_gmm(x, niters=3, bins=None))(image)
    for name in GMM_KEYS:
        np.testing.assert_allclose(
            np.asarray(getattr(chunked, name)),
            np.asarray(getattr(whole, name)),
            rtol=1e-5,
            err_msg=name,
        )


def _image_with_outliers(key: jax.Array, shape: tuple[int, int]) -> jax.Array:
    """`two_component_image` plus a few hot and cold pixels, which widen the extreme bins."""
    image, _ = two_component_image(key, shape)
    flat = image.reshape(-1)
    flat = flat.at[jnp.arange(7) * 9973].set(60.0).at[jnp.arange(5) * 7919 + 11].set(-40.0)
    return flat.reshape(shape)


@pytest.mark.parametrize("outliers", [False, True])
def test_binned_sums_match_pixel_sums(outliers: bool) -> None:
    """The E-step sums from rank bins equal the per-pixel sums to float32 accuracy."""
    key = jax.random.key(11)
    if outliers:
        x = _image_with_outliers(key, (200, 300)).reshape(-1)
    else:
        x = two_component_image(key, (200, 300))[0].reshape(-1)
    params = normalize_module._Params(
        jnp.linspace(1.5, 4.0, 11),
        jnp.linspace(4.5, 5.5, 11),
        jnp.linspace(0.2, 3.0, 11),
        jnp.linspace(0.1, 0.98, 11),
    )

    @jax.jit
    def both(x: jax.Array) -> tuple[tuple[jax.Array, ...], tuple[jax.Array, ...]]:
        bins = normalize_module._bin_sorted(
            normalize_module._sort_float32(x), normalize_module.DEFAULT_BINS
        )
        return (
            normalize_module._em_sums_binned(bins, params),
            normalize_module._em_sums(x, None, params),
        )

    binned, exact = both(x)
    names = ("softplus", "S0", "S1", "M0", "M1", "Q0", "Q1")
    for name, a, b in zip(names, binned, exact, strict=True):
        scale = np.abs(np.asarray(b)).max()  # M sums are near zero for some inits
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-5 * scale, err_msg=name)


def test_binned_fit_matches_pixel_fit() -> None:
    """Fixed iterations (no early stop): the binned EM follows the per-pixel EM to ~1e-6.

    With Topaz's stopping rule the two can stop a few iterations apart on a flat likelihood
    (its float32 improvements are at the level of rounding), as Topaz and the per-pixel fit can.
    """
    x = _image_with_outliers(jax.random.key(12), (180, 200))  # 36000 px >= 16 * 1024
    assert normalize_module._uses_bins(x.size, normalize_module.DEFAULT_BINS)
    run = jax.jit(lambda x, bins: fit_gmm(x, niters=30, tol=-jnp.inf, bins=bins), static_argnums=1)
    binned = run(x, normalize_module.DEFAULT_BINS)
    exact = run(x, None)
    for name, rtol in (("mus", 2e-6), ("stds", 2e-6), ("pis", 2e-6), ("logps", 1e-6)):
        np.testing.assert_allclose(
            np.asarray(getattr(binned, name)),
            np.asarray(getattr(exact, name)),
            rtol=rtol,
            err_msg=name,
        )


def test_small_images_are_fitted_per_pixel() -> None:
    """Below 16 pixels per bin the fit does not bin: the spec image gives the same bits."""
    image = spec_image()
    assert not normalize_module._uses_bins(image.size, normalize_module.DEFAULT_BINS)
    default = jax.device_get(_fit(image, niters=NITERS))
    exact = jax.device_get(jax.jit(lambda x: fit_gmm(x, niters=NITERS, bins=None))(image))
    for name in GMM_KEYS:
        np.testing.assert_array_equal(getattr(default, name), getattr(exact, name), name)


def test_quantiles_match_numpy() -> None:
    """The initial splits follow np.quantile's linear interpolation, ties included."""
    rng = np.random.default_rng(0)
    quantiles = tuple(1.0 - p for p in PI_INITS)
    for x in (
        rng.standard_normal(1001).astype(np.float32),
        rng.poisson(3.0, 777).astype(np.float32),  # many ties
        -np.abs(rng.standard_normal(20)).astype(np.float32),  # negative values (bit keys)
        np.array([2.5], np.float32),
    ):
        ours = np.asarray(jax.jit(lambda v: normalize_module._quantiles(v, quantiles))(x))
        expected = np.quantile(x, quantiles).astype(np.float32)
        np.testing.assert_allclose(ours, expected, rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# Invariants.


def test_gmm_output_has_standard_background() -> None:
    image, background = two_component_image(jax.random.key(0), SHAPE)
    out, stats = _normalize(image, niters=NITERS)
    values = np.asarray(out)[np.asarray(background)]
    assert abs(values.mean()) < 0.05
    assert abs(values.std() - 1.0) < 0.05
    assert 0.75 < float(stats.pi) < 0.9  # component 1 is the background (80 % of pixels)


def test_affine_output_is_standardised() -> None:
    image = 7.0 + 3.0 * jax.random.normal(jax.random.key(1), SHAPE)
    out, stats = _normalize(image, method="affine")
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(float(out.mean()), 0.0, atol=1e-5)
    np.testing.assert_allclose(float(out.std()), 1.0, rtol=1e-5)
    assert float(stats.pi) == 1.0
    assert stats.mus.shape == (0,)
    assert math.isnan(float(stats.logp))


def test_vmap_equals_loop() -> None:
    """A batch under jit(vmap) equals the images one by one (pixel sampling and an invalid
    image included): the preprocessing pipeline's ``jit(vmap(...))``."""
    images = [two_component_image(jax.random.key(s), SHAPE)[0] * (1 + s) for s in range(2)]
    images.append(images[0].at[5, 7].set(jnp.nan))
    keys = jax.random.split(jax.random.key(7), 3)

    def one(image: jax.Array, key: jax.Array) -> tuple[jax.Array, NormalizeStats]:
        return normalize(image, sample=4, key=key)

    batched_out, batched_stats = jax.jit(jax.vmap(one))(jnp.stack(images), keys)
    singles = [_normalize_sampled(image, key) for image, key in zip(images, keys, strict=True)]
    np.testing.assert_array_equal(
        np.asarray(batched_stats.status), [STATUS_OK, STATUS_OK, STATUS_NONFINITE]
    )
    for b, (out, stats) in enumerate(singles[:2]):
        np.testing.assert_allclose(np.asarray(batched_out[b]), np.asarray(out), atol=1e-4)
        for name in GMM_KEYS + ("status",):
            np.testing.assert_allclose(
                np.asarray(getattr(batched_stats, name)[b]),
                np.asarray(getattr(stats, name)),
                rtol=1e-4,
                err_msg=name,
            )
    assert int(singles[2][1].status) == STATUS_NONFINITE


def test_traces_once_per_shape() -> None:
    traces = []

    @jax.jit
    def run(image: jax.Array) -> tuple[jax.Array, NormalizeStats]:
        traces.append(image.shape)
        return normalize(image, niters=5)

    for seed in range(3):
        jax.block_until_ready(run(jax.random.normal(jax.random.key(seed), (24, 20))))
    assert len(traces) == 1
    jax.block_until_ready(run(jnp.ones((20, 24)) + jnp.arange(20.0)[:, None]))
    assert len(traces) == 2


def test_subsampling_is_seeded() -> None:
    image, _ = two_component_image(jax.random.key(3), SHAPE)
    first = _normalize_sampled(image, jax.random.key(10))[1]
    again = _normalize_sampled(image, jax.random.key(10))[1]
    other = _normalize_sampled(image, jax.random.key(11))[1]
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(first.logps), np.asarray(other.logps))
    # Both are estimates of the full-image fit.
    _, full = _normalize(image, niters=NITERS)
    for fit in (first, other):
        np.testing.assert_allclose(float(fit.mu), float(full.mu), atol=0.05)
        np.testing.assert_allclose(float(fit.std), float(full.std), rtol=0.1)


def test_subsample_loglikelihood_is_scaled() -> None:
    """With sample > 1 the log-likelihood is scaled by size / n, as Topaz does.

    The single-Gaussian fit reports the sample's mean and unbiased std, which determine its
    log-likelihood: sum log N(x_s) = -(n - 1) / 2 - n / 2 * log(2 pi var_s).
    """
    image = jax.random.normal(jax.random.key(4), SHAPE)
    size = SHAPE[0] * SHAPE[1]
    n = sample_size(size, 4)
    stats = _normalize_sampled(image, jax.random.key(0))[1]
    var = float(stats.stds[-1]) ** 2
    log_lik = -(n - 1) / 2 - n / 2 * math.log(2 * math.pi * var)
    np.testing.assert_allclose(float(stats.logps[-1]), size / n * log_lik + 900.0, rtol=1e-5)
    # The sample mean differs from the full mean (the fit did not use every pixel).
    assert float(stats.mus[-1]) != pytest.approx(float(image.mean()), abs=1e-6)


# ---------------------------------------------------------------------------------------------
# Invalid images are flagged, not raised.


@pytest.mark.parametrize("method", ["gmm", "affine"])
def test_invalid_images_are_flagged(method: str) -> None:
    good, _ = two_component_image(jax.random.key(0), SHAPE)
    cases = [
        (good, STATUS_OK),
        (good.at[3, 4].set(jnp.nan), STATUS_NONFINITE),
        (good.at[0, 0].set(-jnp.inf), STATUS_NONFINITE),
        (jnp.full(SHAPE, 3.0), STATUS_CONSTANT),
    ]
    kwargs = {"method": "affine"} if method == "affine" else {"niters": NITERS}  # shared
    for image, expected in cases:
        _, stats = _normalize(image, **kwargs)
        assert int(stats.status) == expected
        assert bool(stats.valid) == (expected == STATUS_OK)
    assert "NaN" in status_message(STATUS_NONFINITE)
    assert "constant" in status_message(STATUS_CONSTANT)
    assert status_message(STATUS_OK) == "ok"


def test_degenerate_fit_is_flagged() -> None:
    """Two distinct values: valid pixels, but a GMM fit collapses to zero variance."""
    image = jnp.where(jnp.arange(SHAPE[0] * SHAPE[1]) % 3 == 0, 1.0, 2.0).reshape(SHAPE)
    _, stats = _normalize(image, niters=NITERS)
    if int(stats.status) != STATUS_OK:
        assert int(stats.status) == STATUS_FIT_FAILED
        assert "standard deviation" in status_message(STATUS_FIT_FAILED)
    else:  # the single Gaussian was chosen
        assert float(stats.std) > 0


# ---------------------------------------------------------------------------------------------
# Sampling without replacement.


@pytest.mark.parametrize(("population", "n"), [(1, 1), (7, 0), (7, 7), (4000, 400)])
def test_choice_is_distinct_sorted_in_range(population: int, n: int) -> None:
    if population == 4000:
        draws = np.asarray(_choice_batch(jax.random.split(jax.random.key(1), 5)))
    else:
        draws = np.asarray(choice_without_replacement(jax.random.key(1), population, n))[None]
    for indices in draws:
        assert indices.shape == (n,)
        assert indices.dtype == np.int32
        assert np.all(np.diff(indices) > 0)  # distinct and sorted
        assert n == 0 or (indices.min() >= 0 and indices.max() < population)


def test_choice_is_uniform_over_subsets() -> None:
    """All 15 pairs from 6 items are equally likely (chi-square over 30,000 draws)."""
    draws = 30_000
    keys = jax.random.split(jax.random.key(2), draws)
    pairs = np.asarray(jax.jit(jax.vmap(lambda k: choice_without_replacement(k, 6, 2)))(keys))
    assert np.all(pairs[:, 0] < pairs[:, 1])  # distinct and sorted
    codes = pairs[:, 0] * 6 + pairs[:, 1]
    counts = np.unique(codes, return_counts=True)[1]
    assert counts.size == 15
    expected = draws / 15
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 36.1  # 99.9th percentile of chi-square with 14 degrees of freedom


def test_choice_is_uniform_over_items_in_bucketed_path() -> None:
    """Large populations go through the bucket histogram; inclusion stays uniform per item."""
    population, n, draws = 4000, 400, 300
    picks = np.asarray(_choice_batch(jax.random.split(jax.random.key(3), draws)))
    counts = np.bincount(picks.ravel(), minlength=population)
    assert counts.sum() == n * draws
    # Each item is picked Binomial(300, 0.1) times: mean 30, sd ~5.2. Check blocks of 100 items.
    blocks = counts.reshape(40, 100).sum(axis=1)
    np.testing.assert_allclose(blocks, 3000, atol=5 * math.sqrt(3000 * 0.9))


# ---------------------------------------------------------------------------------------------
# API and validation.


def test_sample_size_matches_topaz_rounding() -> None:
    assert sample_size(1024 * 1024, 10) == 104858
    assert sample_size(25, 10) == 2  # np.round rounds half to even, as Topaz
    assert sample_size(35, 10) == 4
    assert sample_size(100, 1) == 100
    assert sample_size(100, 2.5) == 40


def test_metadata_dict_is_topaz_json() -> None:
    image, _ = two_component_image(jax.random.key(0), SHAPE)
    _, stats = _normalize(image, niters=NITERS)
    meta = stats.to_metadata(alpha=900.0, beta=1.0, sample=1)
    assert set(meta) == set(GMM_KEYS) | {"alpha", "beta", "sample"}
    assert len(meta["mus"]) == len(PI_INITS) == 12
    json.dumps(meta)
    _, stats = _normalize(image, method="affine")
    assert stats.to_metadata() == {
        "mu": pytest.approx(float(stats.mu)),
        "std": pytest.approx(float(stats.std)),
        "pi": 1,
    }


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": -1.0}, "alpha"),
        ({"beta": float("nan")}, "beta"),
        ({"beta": "1"}, "beta"),
        ({"niters": -1}, "niters"),
        ({"niters": 2.5}, "niters"),
        ({"niters": True}, "niters"),
        ({"tol": float("nan")}, "tol"),
        ({"sample": 0.5}, "sample"),
        ({"sample": 0}, "sample"),
        ({"sample": 4}, "key"),  # sampling needs a key
        ({"sample": 10_000}, "sample"),  # no pixels left
        ({"method": "zscore"}, "method"),
    ],
)
def test_invalid_arguments(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        normalize(jnp.ones((10, 10)), **kwargs)  # type: ignore[arg-type]


def test_choice_invalid_arguments() -> None:
    key = jax.random.key(0)
    with pytest.raises(ConfigError, match="n="):
        choice_without_replacement(key, 5, 6)
    with pytest.raises(ConfigError, match="population"):
        choice_without_replacement(key, 0, 0)
    with pytest.raises(ConfigError, match="n must"):
        choice_without_replacement(key, 5, -1)
