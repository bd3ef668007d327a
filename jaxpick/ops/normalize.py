"""Per-micrograph normalisation: Topaz's two-component GMM with a Beta prior, or a z-score.

Topaz (``topaz/stats.py::normalize``, spec section 5.2) fits a two-component Gaussian mixture
with a shared variance to the pixel values, with a Beta(alpha, beta) prior on the weight ``pi`` of
component 1, from 12 initial weights ``pi0`` (`PI_INITS`). It keeps the fit with the highest
log-likelihood and normalises with component 1 (the brighter, background-dominated one):
``(x - mu1) / sqrt(var)``. The last initial weight, ``pi0 = 1``, is a single Gaussian.

Everything here is pure ``jnp`` with static shapes, so it composes with ``jax.jit`` and
``jax.vmap`` (batch = ``jax.vmap`` of the single-micrograph function) with no host syncs:

* the 11 two-component fits run side by side in one ``lax.while_loop`` bounded by ``niters``;
  each initialisation freezes once its log-likelihood improves by no more than ``tol``, exactly
  when Topaz's loop for it would ``break``;
* one pass over the pixels per iteration gives both the log-likelihood of the current
  parameters and the next EM update (Topaz makes three passes with five ``exp``/``log`` per
  pixel; here one ``exp`` and one ``log1p``). The variance update uses sums shifted by the
  previous means, so it stays accurate in float32;
* on large images (at least ``16 * bins`` fitted pixels) that pass runs over ``bins`` narrow
  value bins of the sorted pixels rather than the pixels, with a second-order correction inside
  each bin (`fit_gmm`'s ``bins``): each EM step agrees with the per-pixel step to float32
  rounding, at a fraction of the cost;
* the quantile splits of the initialisation reproduce ``np.quantile``'s default ("linear")
  interpolation, from a sort of order-preserving integer keys (XLA:CPU sorts int32 about 7x
  faster than float32);
* ``sample > 1`` fits a uniformly random subset of ``round(size / sample)`` pixels drawn without
  replacement from an explicit ``key`` (`choice_without_replacement`; Topaz uses numpy's global,
  unseeded RNG) and scales the log-likelihood by ``size / n``, as Topaz does.

Quirks of Topaz kept for parity (its metadata JSON and its choice of fit depend on them):

* The single-Gaussian fit (``pi0 = 1``) uses the *unbiased* variance and adds the prior
  **density** ``Beta.pdf(1; alpha, beta)`` (= alpha = 900 for the defaults), not its logarithm,
  to its log-likelihood. This biases the choice towards the single Gaussian by about
  ``alpha - log(alpha)`` nats; on ordinary, nearly Gaussian micrographs it is usually chosen.
* The MAP update ``pi = (alpha + S - 1) / (alpha + beta + n - 2)`` counts the ``n`` fitted pixels,
  while the log-likelihood is scaled to the full image.
* All arithmetic is float32 (Topaz runs its fit in float32 torch), including the convergence
  test: for large images the log-likelihood's float32 spacing exceeds ``tol`` and most
  initialisations run all ``niters`` iterations, in Topaz as here.

Deviations: the split ``np.quantile`` computes in float64 is computed here in float32 (it can
differ by one unit in the last place, which only matters if it then equals a pixel value
exactly); sums are accumulated in a different order; and the normalised image is computed in
float32 (Topaz subtracts and divides in float64, then casts).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike

from jaxpick.errors import ConfigError

__all__ = [
    "DEFAULT_BINS",
    "PI_INITS",
    "STATUS_CONSTANT",
    "STATUS_FIT_FAILED",
    "STATUS_NONFINITE",
    "STATUS_OK",
    "GMMFit",
    "NormalizeStats",
    "choice_without_replacement",
    "fit_gmm",
    "normalize",
    "sample_size",
    "status_message",
]

#: Topaz's initial weights of component 1; the last (1.0) is the single-Gaussian fit.
PI_INITS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 1.0)

#: `NormalizeStats.status` codes.
STATUS_OK = 0
STATUS_NONFINITE = 1  #: the image contains NaN or infinity
STATUS_CONSTANT = 2  #: every pixel has the same value
STATUS_FIT_FAILED = 3  #: the fitted mean or standard deviation is not finite and positive

_STATUS_MESSAGES = {
    STATUS_OK: "ok",
    STATUS_NONFINITE: "the image contains NaN or infinite values",
    STATUS_CONSTANT: "the image is constant (all pixels equal), so it cannot be normalised",
    STATUS_FIT_FAILED: "normalisation failed: the fitted standard deviation is zero or not finite",
}

_LOG_2PI = math.log(2.0 * math.pi)


def status_message(status: int) -> str:
    """A one-line description of a `NormalizeStats.status` code, for error messages."""
    return _STATUS_MESSAGES.get(int(status), f"unknown normalisation status {int(status)}")


class GMMFit(NamedTuple):
    """Result of `fit_gmm`: the keys Topaz writes to its ``--metadata`` JSON.

    Attributes:
      mu: mean of component 1 of the chosen fit (the value subtracted).
      std: square root of the shared variance of the chosen fit (the divisor).
      pi: weight of component 1 of the chosen fit.
      logp: log-likelihood plus log-prior of the chosen fit (with the pdf quirk for pi0 = 1).
      mus, stds, pis, logps: the same for each of the 12 initialisations, in `PI_INITS` order.
    """

    mu: jax.Array
    std: jax.Array
    pi: jax.Array
    logp: jax.Array
    mus: jax.Array
    stds: jax.Array
    pis: jax.Array
    logps: jax.Array


class NormalizeStats(NamedTuple):
    """Statistics returned by `normalize` (float32 scalars, ``(12,)`` arrays, an int32 status).

    For ``method="affine"`` the GMM-only fields are empty: ``logp`` is NaN and ``mus``, ``stds``,
    ``pis``, ``logps`` have shape ``(0,)``; ``pi`` is 1.

    Attributes:
      mu, std, pi, logp, mus, stds, pis, logps: as in `GMMFit`.
      status: `STATUS_OK` or the reason the image could not be normalised (see `valid`,
        `status_message`). Check it on the host and report the file: the normalised image is
        meaningless when it is not `STATUS_OK`.
    """

    mu: jax.Array
    std: jax.Array
    pi: jax.Array
    logp: jax.Array
    mus: jax.Array
    stds: jax.Array
    pis: jax.Array
    logps: jax.Array
    status: jax.Array

    @property
    def valid(self) -> Any:
        """True where the image was normalised successfully (``status == STATUS_OK``)."""
        return self.status == STATUS_OK

    def to_metadata(
        self,
        *,
        alpha: float | None = None,
        beta: float | None = None,
        sample: int | None = None,
    ) -> dict[str, Any]:
        """Topaz's ``--metadata`` JSON dictionary for one (unbatched) image, as Python values.

        GMM statistics give ``mu, std, pi, logp, mus, stds, pis, logps`` (plus ``alpha, beta,
        sample`` when given); affine statistics give ``mu, std, pi`` as Topaz does.
        """
        stats = jax.device_get(self)
        if np.ndim(stats.mu) != 0:
            raise ValueError("to_metadata takes the statistics of one image, not a batch")
        meta: dict[str, Any] = {
            "mu": float(stats.mu),
            "std": float(stats.std),
            "pi": float(stats.pi),
        }
        if np.shape(stats.mus)[-1] == 0:  # affine
            meta["pi"] = 1
            return meta
        meta["logp"] = float(stats.logp)
        for name in ("mus", "stds", "pis", "logps"):
            meta[name] = [float(v) for v in np.asarray(getattr(stats, name))]
        for name, value in (("alpha", alpha), ("beta", beta), ("sample", sample)):
            if value is not None:
                meta[name] = value
        return meta


# ----------------------------------------------------------------------------------------------
# Argument checks (eager, on static Python values).


def _check_positive_real(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(
            f"{name} must be a positive number (a static Python value), got {value!r}"
        )
    out = float(value)
    if not math.isfinite(out) or out <= 0:
        raise ConfigError(f"{name} must be a finite number > 0, got {value!r}")
    return out


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ConfigError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _check_tol(value: object) -> float | jax.Array:
    if isinstance(value, jax.Array) and value.ndim == 0:
        return value.astype(jnp.float32)  # possibly traced: checked by the caller, if anyone
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
        raise ConfigError(f"tol must be a number, got {value!r}")
    return float(value)


def _check_niters(value: object) -> int | jax.Array:
    if (
        isinstance(value, jax.Array)
        and value.ndim == 0
        and jnp.issubdtype(value.dtype, jnp.integer)
    ):
        return value.astype(jnp.int32)  # possibly traced (see fit_gmm)
    return _check_int("niters", value, 0)


def sample_size(size: int, sample: float) -> int:
    """Number of pixels the GMM is fitted on: Topaz's ``int(np.round(size / sample))``.

    Args:
      size: number of pixels in the image.
      sample: subsampling factor (>= 1; 1 means every pixel).

    Returns:
      The sample size ``n`` (``size`` itself when ``sample == 1``).

    Raises:
      ConfigError: (a ValueError) if ``sample`` is not a number >= 1, or ``n`` would be 0.
    """
    size = _check_int("size", size, 1)
    if isinstance(sample, bool) or not isinstance(sample, numbers.Real):
        raise ConfigError(f"sample must be a number >= 1, got {sample!r}")
    if not math.isfinite(sample) or sample < 1:
        raise ConfigError(f"sample must be a finite number >= 1, got {sample!r}")
    if sample == 1:
        return size
    n = int(np.round(size / float(sample)))
    if n < 1:
        raise ConfigError(f"sample={sample!r} leaves no pixels of an image of {size} pixels")
    return n


# ----------------------------------------------------------------------------------------------
# Sampling without replacement.


def _compact(mask: jax.Array, size: int, fill: int) -> jax.Array:
    """Indices of the True entries of 1-D ``mask``, in order, cut or padded with ``fill`` to
    ``size`` (``jnp.nonzero(mask, size=size, fill_value=fill)`` with one cumsum, not two)."""
    positions = jnp.cumsum(mask, dtype=jnp.int32) - 1
    target = jnp.where(mask & (positions < size), positions, size)  # size = dropped
    out = jnp.full((size,), fill, jnp.int32)
    return out.at[target].set(jnp.arange(mask.shape[0], dtype=jnp.int32), mode="drop")


def choice_without_replacement(key: ArrayLike, population: int, n: int) -> jax.Array:
    """``n`` distinct indices drawn uniformly at random from ``range(population)``.

    Unlike ``jax.random.choice(..., replace=False)``, which shuffles the whole population
    (about 0.9 s for a 1024² image on 2 CPU cores), this is O(population) with no large sort:
    every index gets a random 32-bit key whose top bits pick one of about ``population / 16``
    buckets; a histogram finds the bucket holding the ``n``-th smallest key; all indices in lower
    buckets are taken, and the remaining ones come from that bucket, ordered by the rest of the
    key plus 32 fresh random bits. This selects the ``n`` smallest of i.i.d. random keys, so every
    ``n``-subset is equally likely, up to a tie of the full key within the boundary bucket
    (about 44 random bits per index there for a 1024² image: probability about 1e-11) and a
    boundary bucket with more than 1024 indices (expected 8-16; probability far below 1e-100);
    in those cases the draw is still ``n`` distinct indices, just not exactly uniform.

    Args:
      key: a JAX PRNG key.
      population: size of the population (static).
      n: number of indices to draw, ``0 <= n <= population`` (static).

    Returns:
      ``int32`` array of shape ``(n,)`` with distinct indices in increasing order.

    Raises:
      ConfigError: (a ValueError) if ``population`` or ``n`` are out of range.
    """
    population = _check_int("population", population, 1)
    n = _check_int("n", n, 0)
    if n > population:
        raise ConfigError(f"n={n} is larger than population={population}")
    if population >= 2**31:
        raise ConfigError(f"population={population} does not fit int32 indices")
    if n == population:
        return jnp.arange(population, dtype=jnp.int32)
    if n == 0:
        return jnp.zeros((0,), jnp.int32)

    capacity = min(population, 1024)
    # One draw of random bits: a key per index, then tie-breakers for the boundary bucket.
    random_bits = jax.random.bits(key, (population + capacity,), jnp.uint32)
    bits, tie_bits = random_bits[:population], random_bits[population:]
    # About 8-16 indices per bucket.
    bucket_bits = min(20, max(0, (population >> 4).bit_length()))
    num_buckets = 1 << bucket_bits
    if bucket_bits:
        bucket = (bits >> (32 - bucket_bits)).astype(jnp.int32)
    else:
        bucket = jnp.zeros((population,), jnp.int32)
    counts = jnp.zeros((num_buckets,), jnp.int32).at[bucket].add(1)
    cumulative = jnp.cumsum(counts)
    boundary = jnp.searchsorted(cumulative, n, side="left").astype(jnp.int32)
    need = n - (cumulative[boundary] - counts[boundary])  # 1 <= need <= counts[boundary]

    members = _compact(bucket == boundary, capacity, population)
    is_fill = members >= population
    safe = jnp.where(is_fill, 0, members)
    top = np.uint32(2**32 - 1)
    low_mask = np.uint32((1 << (32 - bucket_bits)) - 1) if bucket_bits else top
    low = jnp.where(is_fill, top, bits[safe] & low_mask)
    tie = jnp.where(is_fill, top, tie_bits)
    _, _, _, ordered = lax.sort(
        (is_fill.astype(jnp.int32), low, tie, members), num_keys=3, is_stable=True
    )
    chosen = jnp.where(jnp.arange(capacity) < need, ordered, population)  # population = dropped
    selected = (bucket < boundary).at[chosen].set(True, mode="drop")
    return _compact(selected, n, 0)


# ----------------------------------------------------------------------------------------------
# Quantiles (np.quantile, method="linear").


def _sort_float32(x: jax.Array) -> jax.Array:
    """Ascending sort of float32 values via order-preserving int32 keys (faster on XLA:CPU)."""
    bits = lax.bitcast_convert_type(x, jnp.int32)
    # Negative floats: flip the 31 value bits so that larger magnitudes sort lower.
    keys = bits ^ ((bits >> 31) & jnp.int32(0x7FFFFFFF))
    keys = jnp.sort(keys)
    bits = keys ^ ((keys >> 31) & jnp.int32(0x7FFFFFFF))
    return lax.bitcast_convert_type(bits, jnp.float32)


def _quantile_plan(size: int, quantiles: tuple[float, ...]) -> list[tuple[int, int, float]]:
    """Static (previous index, next index, gamma) per quantile, exactly as ``np.quantile``."""
    plan = []
    for q in quantiles:
        virtual = (size - 1) * q  # float64, as numpy's "linear" method
        previous = math.floor(virtual)
        following = previous + 1
        if virtual >= size - 1:
            previous = following = size - 1
        elif virtual < 0:
            previous = following = 0
        plan.append((previous, following, virtual - previous))
    return plan


def _quantiles(x: jax.Array, quantiles: tuple[float, ...]) -> jax.Array:
    """``np.quantile(x, quantiles)`` (linear interpolation), computed in float32."""
    return _sorted_quantiles(_sort_float32(x.reshape(-1)), quantiles)


def _sorted_quantiles(ordered: jax.Array, quantiles: tuple[float, ...]) -> jax.Array:
    """`_quantiles` of values already sorted in ascending order."""
    out = []
    for previous, following, gamma in _quantile_plan(ordered.shape[0], quantiles):
        a = ordered[previous]
        b = ordered[following]
        diff = b - a
        # numpy's _lerp: a + d*t, or b - d*(1 - t) where t >= 0.5.
        out.append(a + diff * gamma if gamma < 0.5 else b - diff * (1.0 - gamma))
    return jnp.stack(out)


# ----------------------------------------------------------------------------------------------
# The mixture fit.


class _Params(NamedTuple):
    mu0: jax.Array  # (K,) mean of component 0
    mu1: jax.Array  # (K,) mean of component 1
    var: jax.Array  # (K,) shared variance
    pi: jax.Array  # (K,) weight of component 1


def _log_prior(pi: jax.Array, alpha: float, beta: float, log_beta_fn: float) -> jax.Array:
    """``scipy.stats.beta.logpdf(pi, alpha, beta)`` in float32 (0 * log 0 taken as 0)."""
    out = jnp.full_like(pi, -log_beta_fn)
    if alpha != 1.0:
        out = out + (alpha - 1.0) * jnp.log(pi)
    if beta != 1.0:
        out = out + (beta - 1.0) * jnp.log1p(-pi)
    return out


def _beta_pdf_at_one(alpha: float, beta: float) -> float:
    """``scipy.stats.beta.pdf(1, alpha, beta)``: what Topaz adds to the single-Gaussian logp."""
    if beta > 1.0:
        return 0.0
    if beta < 1.0:
        return math.inf
    return alpha  # Beta(alpha, 1) has density alpha * x**(alpha - 1).


# Pixels per step of the accumulation loop on CPU. XLA:CPU materialises every intermediate of
# the E-step ((inits, pixels) arrays) and reduces them in separate kernels; in chunks of about
# this size they stay in cache, which makes a pass over a 1024² image about 3-5x faster than one
# whole-array pass. Other platforms (GPU) fuse the pass into a few kernels and take it whole.
_CPU_CHUNK = 32768

_PixelSums = Callable[[jax.Array, "jax.Array | None"], tuple[jax.Array, ...]]


def _sum_over_pixels(fn: _PixelSums, x: jax.Array) -> tuple[jax.Array, ...]:
    """``fn(x, None)`` for a ``fn(x, weight)`` that sums ``weight * term`` over pixels ``x``.

    On CPU the pixels are split into equal chunks of at most about `_CPU_CHUNK` (padded with
    copies of the last pixel, given weight 0), summed in a ``lax.scan``. ``fn`` appears once in
    the compiled program either way.
    """

    def chunked(x: jax.Array) -> tuple[jax.Array, ...]:
        size = x.shape[0]
        chunks = -(-size // _CPU_CHUNK)
        if chunks < 2:
            return fn(x, None)
        chunk = -(-size // chunks)
        pad = chunks * chunk - size
        weights = None
        if pad:
            x = jnp.concatenate([x, jnp.broadcast_to(x[-1], (pad,))])
            weights = (jnp.arange(chunks * chunk) < size).astype(x.dtype).reshape(chunks, chunk)
        blocks = (x.reshape(chunks, chunk), weights)
        zeros = jax.tree.map(
            lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(fn, blocks[0][0], None)
        )

        def step(acc: tuple[jax.Array, ...], block: Any) -> tuple[Any, None]:
            values, weight = block
            return jax.tree.map(jnp.add, acc, fn(values, weight)), None

        total, _ = lax.scan(step, zeros, blocks)
        return total

    return lax.platform_dependent(x, cpu=chunked, default=lambda x: fn(x, None))


def _em_sums(x: jax.Array, weight: jax.Array | None, params: _Params) -> tuple[jax.Array, ...]:
    """Sums over pixels ``x`` (1-D) for every initialisation at once.

    Returns ``(sum softplus(-delta), S0, S1, M0, M1, Q0, Q1)`` per initialisation, where
    ``delta = log p1 - log p0`` is the log-odds of component 1 for a pixel, ``S_k = sum p_k``,
    ``M_k = sum p_k d_k`` and ``Q_k = sum p_k d_k**2`` with ``d_k = x - mu_k`` and ``p_k`` the
    posterior of component k; pixels count with ``weight`` (1 if None). The log marginal
    density of a pixel is ``log p1 + softplus(-delta)`` (Topaz's ``Z``); the sum of ``log p1``
    needs no pass over the pixels (`_sum_log_p1`).
    """
    mu0, mu1, var, pi = params
    # With a shared variance the log-odds are linear in x; centring on the midpoint of the two
    # means keeps the float32 cancellation small.
    slope = ((mu1 - mu0) / var)[:, None]
    mid = (0.5 * (mu0 + mu1))[:, None]
    logit = (jnp.log(pi) - jnp.log1p(-pi))[:, None]
    delta = slope * (x[None, :] - mid) + logit
    e = jnp.exp(-jnp.abs(delta))  # the smaller posterior over the larger one
    softplus = jnp.maximum(-delta, 0.0) + jnp.log1p(e)
    r = 1.0 / (1.0 + e)
    one_is_larger = delta >= 0
    p1 = jnp.where(one_is_larger, r, e * r)
    p0 = jnp.where(one_is_larger, e * r, r)
    if weight is not None:  # padding pixels (weight 0) of the CPU chunks
        softplus, p0, p1 = softplus * weight, p0 * weight, p1 * weight
    d0 = x[None, :] - mu0[:, None]
    d1 = x[None, :] - mu1[:, None]
    w0 = p0 * d0
    w1 = p1 * d1
    return (
        jnp.sum(softplus, axis=-1),
        jnp.sum(p0, axis=-1),
        jnp.sum(p1, axis=-1),
        jnp.sum(w0, axis=-1),
        jnp.sum(w1, axis=-1),
        jnp.sum(w0 * d0, axis=-1),
        jnp.sum(w1 * d1, axis=-1),
    )


# Fits on at least `_MIN_PIXELS_PER_BIN` pixels per bin run EM on binned pixel values
# (`_bin_sorted`) instead of on every pixel.
DEFAULT_BINS = 1024
_MIN_PIXELS_PER_BIN = 16
# The most extreme pixels on each side stay single (exact), so that a few outliers (hot pixels,
# dead pixels, a stray edge) cannot stretch the value range the bins divide.
_TAIL_PIXELS = 256


class _Bins(NamedTuple):
    """Pixels grouped by value: count, mean and centred sum of squares per bin (some empty)."""

    count: jax.Array  # (B,) float32
    mean: jax.Array  # (B,)
    m2: jax.Array  # (B,) sum (x - mean)**2 over the bin


def _bin_sorted(ordered: jax.Array, bins: int) -> _Bins:
    """Groups sorted pixel values into ``bins`` equal-width value bins plus exact tails.

    The `_TAIL_PIXELS` lowest and highest values are bins of one pixel each; the values between
    them are split into ``bins`` bins of equal width, so every bin spans at most 1/``bins`` of
    the range that excludes the tails (about 0.007 standard deviations for a Gaussian image).
    """
    size = ordered.shape[0]
    tail = min(_TAIL_PIXELS, size // 4)
    lo = ordered[tail]
    hi = ordered[size - 1 - tail]
    width = jnp.where(hi > lo, hi - lo, 1.0)
    rank = jnp.arange(size, dtype=jnp.int32)
    middle = jnp.clip(((ordered - lo) * (bins / width)).astype(jnp.int32), 0, bins - 1)
    segment = jnp.where(
        rank < tail,
        rank,
        jnp.where(rank >= size - tail, rank - (size - tail) + tail + bins, middle + tail),
    )
    num = bins + 2 * tail

    def segment_sum(values: jax.Array) -> jax.Array:
        return jax.ops.segment_sum(values, segment, num_segments=num, indices_are_sorted=True)

    count = segment_sum(jnp.ones_like(ordered))
    safe = jnp.maximum(count, 1.0)
    # Centred on the middle of the range before summing, then on each bin's own mean.
    offset = 0.5 * (lo + hi)
    mean = segment_sum(ordered - offset) / safe + offset
    deviation = ordered - mean[segment]
    return _Bins(count, mean, segment_sum(deviation * deviation))


def _em_sums_binned(bins: _Bins, params: _Params) -> tuple[jax.Array, ...]:
    """`_em_sums` over all pixels, from bin statistics instead of the pixels themselves.

    Within a bin the posterior ``p1(x) = sigmoid(delta(x))`` (``delta`` linear in ``x``) is
    expanded to second order about the bin mean; with the bin's count ``n`` and centred sum of
    squares ``c`` the sums are exact up to third central moments of the bin, which are tiny
    because bins are narrow (`_bin_sorted`). The log-likelihood sum gets the matching curvature
    term. Empty bins (``n = c = 0``) contribute nothing.
    """
    mu0, mu1, var, pi = params
    slope = ((mu1 - mu0) / var)[:, None]
    mid = (0.5 * (mu0 + mu1))[:, None]
    logit = (jnp.log(pi) - jnp.log1p(-pi))[:, None]
    n, xbar, c = bins.count[None, :], bins.mean[None, :], bins.m2[None, :]
    delta = slope * (xbar - mid) + logit
    e = jnp.exp(-jnp.abs(delta))
    softplus = jnp.maximum(-delta, 0.0) + jnp.log1p(e)
    r = 1.0 / (1.0 + e)
    one_is_larger = delta >= 0
    p1 = jnp.where(one_is_larger, r, e * r)
    p0 = jnp.where(one_is_larger, e * r, r)
    g = e * r * r  # p0 * p1
    dp1 = slope * g  # d p1 / dx (= -d p0 / dx)
    half_d2p1_c = 0.5 * slope * dp1 * (p0 - p1) * c  # (1/2) d2 p1 / dx2 * c
    a0 = xbar - mu0[:, None]
    a1 = xbar - mu1[:, None]
    dc = dp1 * c
    return (
        jnp.sum(n * softplus + 0.5 * slope * dc, axis=-1),
        jnp.sum(n * p0 - half_d2p1_c, axis=-1),
        jnp.sum(n * p1 + half_d2p1_c, axis=-1),
        jnp.sum(n * p0 * a0 - dc - half_d2p1_c * a0, axis=-1),
        jnp.sum(n * p1 * a1 + dc + half_d2p1_c * a1, axis=-1),
        jnp.sum(p0 * (n * a0 * a0 + c) - 2.0 * dc * a0 - half_d2p1_c * a0 * a0, axis=-1),
        jnp.sum(p1 * (n * a1 * a1 + c) + 2.0 * dc * a1 + half_d2p1_c * a1 * a1, axis=-1),
    )


class _Moments(NamedTuple):
    """Sums over the fitted pixels, for closed forms: count, mean, and centred moments."""

    count: int
    mean: jax.Array
    centred_sum: jax.Array  # sum (x - mean): zero up to rounding
    centred_sum_sq: jax.Array  # sum (x - mean)**2


def _sum_log_p1(params: _Params, moments: _Moments) -> jax.Array:
    """``sum_x log(pi N(x; mu1, var))`` from the moments of x (no pass over the pixels)."""
    shift = moments.mean - params.mu1
    sum_d1_sq = (
        moments.centred_sum_sq + 2.0 * shift * moments.centred_sum + moments.count * shift * shift
    )
    log_norm = -0.5 * (_LOG_2PI + jnp.log(params.var)) + jnp.log(params.pi)
    return moments.count * log_norm - 0.5 * sum_d1_sq / params.var


def _uses_bins(count: int, bins: int | None) -> bool:
    """Whether a fit on ``count`` pixels runs EM on ``bins`` rank bins (see `fit_gmm`)."""
    return bins is not None and count >= _MIN_PIXELS_PER_BIN * bins


def _m_step(
    params: _Params,
    sums: tuple[jax.Array, ...],
    *,
    count: int,
    mean: jax.Array,
    alpha: float,
    beta: float,
) -> _Params:
    _, s0, s1, m0, m1, q0, q1 = sums
    pi = (alpha + s1 - 1.0) / (alpha + beta + count - 2.0)
    has0 = s0 > 0
    has1 = s1 > 0
    safe0 = jnp.where(has0, s0, 1.0)
    safe1 = jnp.where(has1, s1, 1.0)
    # Topaz falls back to the global mean for an empty component (its weight sum is 0).
    mu0 = jnp.where(has0, params.mu0 + m0 / safe0, mean)
    mu1 = jnp.where(has1, params.mu1 + m1 / safe1, mean)
    # sum p (x - mu_new)^2 = Q - M^2 / S, with sums shifted by the previous mean.
    ss0 = jnp.where(has0, jnp.maximum(q0 - m0 * m0 / safe0, 0.0), 0.0)
    ss1 = jnp.where(has1, jnp.maximum(q1 - m1 * m1 / safe1, 0.0), 0.0)
    var = (ss0 + ss1) / count
    return _Params(mu0, mu1, var, pi)


def _hard_init(x: jax.Array, splits: jax.Array, mean: jax.Array) -> _Params:
    """Topaz's initial parameters: component 0 = pixels <= split, component 1 = the rest."""
    count = x.shape[0]

    def sums(x: jax.Array, weight: jax.Array | None) -> tuple[jax.Array, ...]:
        in0 = x[None, :] <= splits[:, None]
        d = x - mean  # centred on the global mean to keep float32 sums accurate
        if weight is not None:
            in0 = in0 & (weight > 0)[None, :]
            d = d * weight
        d0 = jnp.where(in0, d[None, :], 0.0)
        d1 = d[None, :] - d0
        return (
            jnp.sum(in0, axis=-1, dtype=jnp.int32),
            jnp.sum(d0, axis=-1),
            jnp.sum(d1, axis=-1),
            jnp.sum(d0 * d0, axis=-1),
            jnp.sum(d1 * d1, axis=-1),
        )

    n0, c0, c1, q0, q1 = _sum_over_pixels(sums, x)
    n1 = count - n0
    s0 = jnp.maximum(n0, 1).astype(jnp.float32)
    s1 = jnp.maximum(n1, 1).astype(jnp.float32)
    mu0 = jnp.where(n0 > 0, mean + c0 / s0, mean)
    mu1 = jnp.where(n1 > 0, mean + c1 / s1, mean)
    ss0 = jnp.maximum(q0 - c0 * c0 / s0, 0.0)
    ss1 = jnp.maximum(q1 - c1 * c1 / s1, 0.0)
    return _Params(mu0, mu1, (ss0 + ss1) / count, jnp.zeros_like(mu0))


def _fit_mixtures(
    x: jax.Array,
    *,
    alpha: float,
    beta: float,
    scale: float,
    niters: int | jax.Array,
    tol: float | jax.Array,
    moments: _Moments,
    bins: int | None,
) -> tuple[_Params, jax.Array]:
    """EM for the two-component inits of `PI_INITS`, vectorised, with Topaz's stopping rule."""
    count, mean = moments.count, moments.mean
    pis = tuple(p for p in PI_INITS if p < 1.0)
    ordered = _sort_float32(x)
    splits = _sorted_quantiles(ordered, tuple(1.0 - p for p in pis))
    init = _hard_init(x, splits, mean)
    init = init._replace(pi=jnp.asarray(pis, jnp.float32))
    log_beta_fn = math.lgamma(alpha) + math.lgamma(beta) - math.lgamma(alpha + beta)
    binned = _bin_sorted(ordered, bins) if _uses_bins(count, bins) else None

    def evaluate(params: _Params) -> tuple[jax.Array, _Params]:
        """log p(params) and the EM update of params, from one pass over the pixels."""
        if binned is None:
            sums = _sum_over_pixels(lambda v, w: _em_sums(v, w, params), x)
        else:
            sums = _em_sums_binned(binned, params)
        log_lik = _sum_log_p1(params, moments) + sums[0]
        logp = scale * log_lik + _log_prior(params.pi, alpha, beta, log_beta_fn)
        nxt = _m_step(params, sums, count=count, mean=mean, alpha=alpha, beta=beta)
        return logp, nxt

    # Topaz: logp_0 = L(theta_0); for t = 1..niters: theta_t = EM(theta_{t-1}),
    # logp_t = L(theta_t), stop (keeping theta_t, logp_t) if logp_t - logp_{t-1} <= tol.
    # Iteration `it` of the loop below evaluates L(theta_it) and EM(theta_it) in one pass.
    def cond(state: tuple[Any, ...]) -> jax.Array:
        return ~jnp.all(state[-1])

    def body(state: tuple[Any, ...]) -> tuple[Any, ...]:
        it, current, nxt, logp_prev, done = state
        logp, after = evaluate(nxt)  # L(theta_it), EM(theta_it)
        converged = (it >= 1) & (logp - logp_prev <= tol)
        stop = ~done & (converged | (it >= niters))
        keep = done | stop
        # Done initialisations keep theta; the rest advance. Stopping ones keep theta_it.
        current = _Params(*jnp.where(done, jnp.stack(current), jnp.stack(nxt)))
        nxt = _Params(*jnp.where(keep, jnp.stack(nxt), jnp.stack(after)))
        logp_prev = jnp.where(done, logp_prev, logp)
        return it + 1, current, nxt, logp_prev, keep

    k = len(pis)
    state = (jnp.int32(0), init, init, jnp.zeros((k,), jnp.float32), jnp.zeros((k,), bool))
    _, params, _, logp, _ = lax.while_loop(cond, body, state)
    return params, logp


def fit_gmm(
    x: ArrayLike,
    *,
    alpha: float = 900.0,
    beta: float = 1.0,
    niters: int | jax.Array = 100,
    tol: float | jax.Array = 1e-3,
    sample: float = 1,
    key: ArrayLike | None = None,
    bins: int | None = DEFAULT_BINS,
) -> GMMFit:
    """Fits Topaz's two-component, shared-variance GMM with a Beta prior to pixel values.

    Args:
      x: pixel values of one image (any shape; all elements are used). Cast to float32.
      alpha: Beta prior parameter on the weight of component 1 (static; Topaz ``-a``).
      beta: Beta prior parameter (static; Topaz ``-b``).
      niters: maximum EM iterations per initialisation (Topaz ``--niters``). A Python int
        (checked), or a scalar integer array, which may be traced: changing it then does not
        recompile. It only bounds the ``lax.while_loop``.
      tol: an initialisation stops when its log-likelihood improves by ``<= tol``; a number or
        a scalar array (may be traced).
      sample: fit on ``round(size / sample)`` pixels drawn without replacement (static;
        Topaz ``--sample``; its default is 10); 1 uses every pixel.
      key: PRNG key for the pixel sample; required when ``sample > 1``.
      bins: when the fit uses at least ``16 * bins`` pixels, EM runs on ``bins`` equal-width
        bins of pixel values (each summarised by its count, mean and spread, with a
        second-order correction for the posterior's variation inside the bin; the 256 most
        extreme pixels on either side stay exact) instead of on every pixel: about 50x less
        work for a 1024² image, and each EM step agrees with the per-pixel one to about 1e-6
        relative, the level of float32 rounding of the sums. The initialisation, the single
        Gaussian and the log-likelihood of component 1 stay exact. ``None`` always fits on
        every pixel (static).

    Returns:
      A `GMMFit`: the fit with the largest ``logp`` (the first on ties) and all 12 fits.

    Raises:
      ConfigError: (a ValueError) for invalid static arguments, or ``sample > 1`` without key.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> noise = 0.1 * jax.random.normal(jax.random.key(0), (20000,))
      >>> x = jnp.concatenate([jnp.zeros(2000), jnp.ones(18000)]) + noise
      >>> fit = fit_gmm(x)
      >>> round(float(fit.mu), 2), round(float(fit.std), 2), round(float(fit.pi), 2)
      (1.0, 0.1, 0.9)

      With only 1000 such pixels the single Gaussian wins, by Topaz's +alpha quirk:

      >>> fit = fit_gmm(x[::20])
      >>> float(fit.pi), int(jnp.argmax(fit.logps))
      (1.0, 11)
    """
    alpha = _check_positive_real("alpha", alpha)
    beta = _check_positive_real("beta", beta)
    niters = _check_niters(niters)
    tol = _check_tol(tol)
    if bins is not None:
        bins = _check_int("bins", bins, 1)
    x = jnp.asarray(x, jnp.float32).reshape(-1)
    size = x.shape[0]
    if size < 1:
        raise ConfigError("x must contain at least one pixel")
    n = sample_size(size, sample)
    scale = 1.0
    if n != size:
        if key is None:
            raise ConfigError(f"sample={sample!r} > 1 draws a random subset: pass key")
        x = x[choice_without_replacement(key, size, n)]
        scale = size / n

    mean = jnp.mean(x)
    centred = x - mean
    sum_sq = jnp.sum(centred * centred)
    moments = _Moments(n, mean, jnp.sum(centred), sum_sq)
    # Single Gaussian (pi0 = 1): unbiased variance, and the pdf-not-logpdf quirk.
    var1 = sum_sq / (n - 1) if n > 1 else jnp.full_like(sum_sq, jnp.nan)
    logp1 = scale * (-sum_sq / (2.0 * var1) - 0.5 * n * (_LOG_2PI + jnp.log(var1)))
    logp1 = logp1 + _beta_pdf_at_one(alpha, beta)

    params, logps2 = _fit_mixtures(
        x,
        alpha=alpha,
        beta=beta,
        scale=scale,
        niters=niters,
        tol=tol,
        moments=moments,
        bins=bins,
    )
    one = jnp.ones((1,), jnp.float32)
    mus = jnp.concatenate([params.mu1, mean * one])
    stds = jnp.sqrt(jnp.concatenate([params.var, var1 * one]))
    pis = jnp.concatenate([params.pi, one])
    logps = jnp.concatenate([logps2, logp1 * one])
    best = jnp.argmax(logps)
    return GMMFit(mus[best], stds[best], pis[best], logps[best], mus, stds, pis, logps)


def _image_status(x: jax.Array) -> jax.Array:
    finite = jnp.all(jnp.isfinite(x))
    constant = jnp.max(x) == jnp.min(x)
    return jnp.where(
        ~finite,
        STATUS_NONFINITE,
        jnp.where(constant, STATUS_CONSTANT, STATUS_OK),
    ).astype(jnp.int32)


def normalize(
    x: ArrayLike,
    *,
    method: Literal["gmm", "affine"] = "gmm",
    alpha: float = 900.0,
    beta: float = 1.0,
    niters: int | jax.Array = 100,
    tol: float | jax.Array = 1e-3,
    sample: float = 1,
    key: ArrayLike | None = None,
    bins: int | None = DEFAULT_BINS,
) -> tuple[jax.Array, NormalizeStats]:
    """Normalises one micrograph as ``topaz normalize`` / ``topaz preprocess`` do.

    ``method="gmm"``: fit `fit_gmm` and return ``(x - mu1) / sqrt(var)`` with component 1 of the
    best fit. ``method="affine"``: ``(x - mean) / std`` with the population std (``--affine``).
    For a batch of same-shaped micrographs use ``jax.vmap`` (with one key per image).

    A constant image, or one with NaN or infinite pixels, cannot be normalised: this is reported
    in ``stats.status`` (see `NormalizeStats.valid` and `status_message`) rather than raised, so
    that a whole batch runs in one jitted call; check it on the host.

    Args:
      x: one image (any shape, usually ``(H, W)``); cast to float32.
      method: ``"gmm"`` (Topaz's default) or ``"affine"`` (static).
      alpha, beta, niters, tol, sample, key, bins: as in `fit_gmm` (ignored for
        ``"affine"``).
        Note Topaz's command-line default is ``sample=10``; the default here is every pixel.

    Returns:
      ``(normalised float32 image of x's shape, NormalizeStats)``.

    Raises:
      ConfigError: (a ValueError) for invalid static arguments.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> image = 5.0 + 2.0 * jax.random.normal(jax.random.key(1), (64, 64))
      >>> y, stats = normalize(image, method="affine")
      >>> round(float(y.mean()), 4), round(float(y.std()), 4), bool(stats.valid)
      (0.0, 1.0, True)
    """
    if method not in ("gmm", "affine"):
        raise ConfigError(f"method must be 'gmm' or 'affine', got {method!r}")
    x = jnp.asarray(x, jnp.float32)
    status = _image_status(x)
    if method == "affine":
        mu = jnp.mean(x)
        centred = x - mu
        std = jnp.sqrt(jnp.mean(centred * centred))
        empty = jnp.zeros((0,), jnp.float32)
        stats = NormalizeStats(
            mu, std, jnp.float32(1.0), jnp.float32(jnp.nan), empty, empty, empty, empty, status
        )
        return centred / std, stats
    fit = fit_gmm(
        x, alpha=alpha, beta=beta, niters=niters, tol=tol, sample=sample, key=key, bins=bins
    )
    fit_ok = jnp.isfinite(fit.mu) & jnp.isfinite(fit.std) & (fit.std > 0)
    status = jnp.where((status == STATUS_OK) & ~fit_ok, STATUS_FIT_FAILED, status)
    status = status.astype(jnp.int32)
    return (x - fit.mu) / fit.std, NormalizeStats(*fit, status=status)
