"""Fourier-crop downsampling of micrographs (Topaz's ``topaz/utils/image.py::downsample``).

Downsampling keeps the lowest spatial frequencies of the image and discards the rest: the real
FFT is cropped to the target size and transformed back, with no window or anti-alias taper.
This is exactly Topaz's operation (spec section 5.1), computed in float32/complex64 as Topaz
itself does with numpy >= 2 (whose ``np.fft`` keeps float32 input in single precision).

Only the low frequencies are ever formed: the real FFT runs along rows, is cropped to the
``n // 2 + 1`` kept columns, and only those columns are transformed along the other axis, so
the full two-dimensional spectrum is never held. On CPU the row FFTs run in blocks of about 256
rows whose cropped, transposed spectra are written straight into place: the full-width row
spectrum of a 4096² image (67 MB) never exists, which saves its page faults and a transpose.
On XLA:CPU this is about 1.5-2x faster than ``jnp.fft.rfft2`` followed by a crop.

Functions are pure ``jnp``; the target shape is static (the factor and shape are plain Python
values, checked eagerly). Leading axes are batch axes, so ``(H, W)`` and ``(B, H, W)`` both work,
and the functions compose with ``jax.jit`` and ``jax.vmap``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike

from jaxpick.errors import ConfigError

__all__ = ["downsample", "downsample_shape"]


def _check_factor(factor: object) -> float:
    if isinstance(factor, bool) or not isinstance(factor, numbers.Real):
        raise ConfigError(
            f"factor must be a real number >= 1 (a static Python value), got {factor!r}"
        )
    value = float(factor)
    if not math.isfinite(value) or value < 1.0:
        raise ConfigError(f"factor must be a finite number >= 1, got {factor!r}")
    return value


def _check_image_shape(shape: object, name: str) -> tuple[int, int]:
    if not isinstance(shape, Sequence) or len(shape) != 2:
        raise ConfigError(f"{name} must be a pair (height, width) of positive ints, got {shape!r}")
    out = []
    for size in shape:
        if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
            raise ConfigError(f"{name} must be a pair of positive ints, got {shape!r}")
        out.append(int(size))
    return out[0], out[1]


def downsample_shape(shape: tuple[int, int], factor: float) -> tuple[int, int]:
    """The ``(height, width)`` that `downsample` produces for ``factor``.

    Topaz's rule: each size is divided by ``factor`` and truncated, ``(int(H / f), int(W / f))``.

    Args:
      shape: ``(height, width)`` of the input image, in pixels.
      factor: downsampling factor, a real number >= 1 (need not be an integer).

    Returns:
      The output ``(height, width)``.

    Raises:
      ConfigError: (a ValueError) if ``shape`` is not two positive ints, ``factor`` is not a
        finite number >= 1, or the result would have a zero-sized side.

    Examples:
      >>> downsample_shape((4096, 4096), 4)
      (1024, 1024)
      >>> downsample_shape((100, 130), 3)
      (33, 43)
    """
    height, width = _check_image_shape(shape, "shape")
    f = _check_factor(factor)
    out = (int(height / f), int(width / f))
    if min(out) < 1:
        raise ConfigError(
            f"factor={factor!r} is too large for an image of shape {(height, width)}: "
            f"the result would be {out}"
        )
    return out


def _target_shape(
    in_shape: tuple[int, int], factor: float | None, shape: tuple[int, int] | None
) -> tuple[int, int]:
    if factor is None and shape is None:
        raise ConfigError("downsample needs either factor or shape, got neither")
    if factor is not None and shape is not None:
        raise ConfigError(
            f"downsample takes factor or shape, not both (got factor={factor!r}, shape={shape!r})"
        )
    if factor is not None:
        return downsample_shape(in_shape, factor)
    m, n = _check_image_shape(shape, "shape")
    if m > in_shape[0] or n > in_shape[1]:
        raise ConfigError(
            f"shape={(m, n)} is larger than the input image {in_shape}; downsample cannot upsample"
        )
    return m, n


def _compute_dtype(dtype: np.dtype) -> np.dtype:
    # float64 stays float64 when x64 is enabled (jnp.asarray would already have demoted it
    # otherwise); everything else, including float16/bfloat16 and integers, runs in float32.
    if dtype == jnp.float64:
        return np.dtype(jnp.float64)
    return np.dtype(jnp.float32)


# Rows per block of the CPU row FFTs (see the module docstring); a divisor of the height
# between _MIN_BLOCK_ROWS and _MAX_BLOCK_ROWS, as close as possible to this, is used.
_CPU_BLOCK_ROWS = 256
_MIN_BLOCK_ROWS = 64
_MAX_BLOCK_ROWS = 1024


def _block_rows(height: int) -> int | None:
    """Rows per block for the CPU row FFTs, or None to transform all rows at once."""
    if height <= 2 * _CPU_BLOCK_ROWS:
        return None
    divisors = [d for d in range(_MIN_BLOCK_ROWS, _MAX_BLOCK_ROWS + 1) if height % d == 0]
    if not divisors:
        return None
    return min(divisors, key=lambda d: (abs(d - _CPU_BLOCK_ROWS), d))


def _row_spectrum_transposed(x: jax.Array, cols: int) -> jax.Array:
    """``rfft(x, axis=-1)[..., :cols]`` with its last two axes swapped: ``(..., cols, H)``."""

    def whole(x: jax.Array) -> jax.Array:
        return jnp.swapaxes(jnp.fft.rfft(x, axis=-1)[..., :cols], -1, -2)

    def blocked(x: jax.Array) -> jax.Array:
        *lead, height, width = x.shape
        rows = _block_rows(height)
        if rows is None:
            return whole(x)
        blocks = lax.map(whole, x.reshape(-1, rows, width))  # (lead * nblocks, cols, rows)
        blocks = blocks.reshape(*lead, height // rows, cols, rows)
        return jnp.moveaxis(blocks, -3, -2).reshape(*lead, cols, height)

    return lax.platform_dependent(x, cpu=blocked, default=whole)


def downsample(
    x: ArrayLike,
    factor: float | None = None,
    *,
    shape: tuple[int, int] | None = None,
) -> jax.Array:
    """Downsamples images by cropping their Fourier transform, as Topaz does.

    With ``(H, W)`` the input size and ``(m, n)`` the target, the kept frequencies are rows
    ``0 .. m//2 - 1`` and the last ``ceil(m / 2)`` rows of the real FFT (Python's ``-m//2:``)
    and columns ``0 .. n//2``; the cropped spectrum is scaled by ``(m * n) / (H * W)``, so the
    mean is preserved, and inverted with ``irfft2(F, s=(m, n))``. No window or taper is applied,
    so, like Topaz, the result can ring near sharp edges.

    Kept for parity, a Topaz quirk: for an odd ``m`` the kept rows are frequencies
    ``-ceil(m/2) .. floor(m/2) - 1``, i.e. ``-(m+1)/2`` instead of ``+(m-1)/2`` (an asymmetric
    crop), and for ``m = 1`` that is row ``-1`` alone: the mean is lost. Columns are cropped
    symmetrically.

    When the target equals the input size the image is returned unchanged (Topaz would return
    the FFT round trip, which equals the input to within float32 rounding).

    Args:
      x: image(s) of shape ``(..., H, W)``; leading axes are batch axes.
      factor: downsampling factor >= 1; the target is ``(int(H / factor), int(W / factor))``.
        A static Python number. Give either ``factor`` or ``shape``.
      shape: explicit target ``(m, n)`` with ``1 <= m <= H`` and ``1 <= n <= W``.

    Returns:
      The downsampled image(s), shape ``(..., m, n)``. Floating inputs keep their dtype
      (computation is in float32, or float64 for float64 input under x64); integer inputs give
      float32 (Topaz would truncate the result back to integers).

    Raises:
      ConfigError: (a ValueError) if neither or both of ``factor`` and ``shape`` are given, if
        ``factor`` is not a finite number >= 1, if the target has a zero-sized side or is larger
        than the input, or if ``x`` has fewer than two axes.

    Examples:
      >>> import jax.numpy as jnp
      >>> downsample(jnp.ones((8, 12)), 4).shape
      (2, 3)
      >>> downsample(jnp.ones((3, 64, 64)), shape=(16, 32)).shape
      (3, 16, 32)
    """
    x = jnp.asarray(x)
    if x.ndim < 2:
        raise ConfigError(f"x must have at least 2 axes (..., H, W), got shape {x.shape}")
    height, width = x.shape[-2:]
    m, n = _target_shape((height, width), factor, shape)
    out_dtype = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.dtype(jnp.float32)
    real = _compute_dtype(x.dtype)
    x = x.astype(real)
    if (m, n) == (height, width):
        return x.astype(out_dtype)

    cols = n // 2 + 1
    # 1. Real FFT along rows, keeping only the n//2 + 1 lowest column frequencies, transposed
    #    so that the next FFT runs along the last axis (lax.fft works on trailing axes).
    spectrum = _row_spectrum_transposed(x, cols)
    # 2. Complex FFT along the columns that were kept (n//2+1 of them instead of W//2+1).
    spectrum = jnp.fft.fft(spectrum, axis=-1)
    # 3. Keep rows 0..m//2-1 and the last ceil(m/2) rows (Topaz's F[0:m//2] and F[-m//2:]).
    top = m // 2
    bottom = m - top
    spectrum = jnp.concatenate([spectrum[..., :top], spectrum[..., height - bottom :]], axis=-1)
    spectrum = jnp.swapaxes(spectrum, -1, -2) * ((m * n) / (height * width))
    out = jnp.fft.irfft2(spectrum, s=(m, n))
    return out.astype(out_dtype)
