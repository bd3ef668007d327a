"""Denoising micrographs and tomograms with a network, whole or in tiles, as Topaz does it.

Everything here is pure and traceable: :func:`denoise_image` and :func:`denoise_volume` are the
single-image functions that the batch commands map over a device batch
(:func:`jaxpick.devices.batched_jit`: ``lax.map`` on one CPU, ``vmap`` and sharding elsewhere).

**The network call** (Topaz's ``Denoise._denoise``): the input window is standardised with its
own mean and *unbiased* standard deviation, passed through the network, and mapped back with
the same two numbers. Everything below reproduces Topaz's way of cutting an image into such
windows, so the outputs equal Topaz's to float32 rounding.

**Tilings** (:class:`Tiling`: one :class:`AxisTiling` per axis, windows are the products of
per-axis intervals). Tile ``r`` along an axis is ``[r * tile, (r + 1) * tile)`` (clipped to the
image); its window ``[start_r, start_r + size_r)`` contains it; the network's output on the
window is kept on the tile only.

- :func:`topaz_tiling` (2-D, ``topaz denoise -s P -p p``, spec 6.2): windows extend ``p`` past
  the tile on each side, *clipped* to the image, so border windows are smaller;
- :func:`cube_tiling` (3-D, ``topaz denoise3d``, spec 6.4): every window is a
  ``(P + 2p)``-cube; what lies outside the volume is zero *before* the volume's global
  standardisation (so it enters the network as ``-mean / std``);
- :func:`matched_tiling` (jaxpick's default for 2-D): Topaz's tiles with a smaller context,
  each window keeping its Topaz window's start and size modulo the U-Net's pooling factor and
  standardised by the statistics of Topaz's window. The U-Net is far from shift-invariant (a
  one-pixel shift of the pooling grid changes the output by up to 0.2 σ) and a hot pixel in a
  window changes its scale, so both are needed to stay close (1e-4 σ) to Topaz's default;
- :func:`fixed_tiling`: equal windows (a tile plus a halo, shifted inwards at the borders):
  one window shape, equal work per window, but not Topaz's pooling grid.

**Batching.** Windows of one shape form one group (a clipped 2-D tiling has up to four sizes
per axis: first, interior and the last one or two; typically two, so four groups in 2-D). Each
group runs as one ``lax.map`` over its windows with ``batch_size`` windows per network call:
the window is cut out (``dynamic_slice``) inside the mapped function, so only ``batch_size``
windows and their activations exist at a time. The kept tiles come back as ``tile``-sized
blocks (partial border tiles zero-padded) and are reassembled by one reshape.

Examples:
  >>> import jax.numpy as jnp
  >>> smooth = lambda x: x * 0.5  # a "network"
  >>> out = denoise_image([smooth], jnp.ones((40, 50)).at[3, 4].set(5.0),
  ...                     tiling=topaz_tiling((40, 50), 16, 8))
  >>> out.shape
  (40, 50)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxpick.errors import ConfigError

__all__ = [
    "AxisTiling",
    "Network",
    "Tiling",
    "cube_tiling",
    "denoise_image",
    "denoise_volume",
    "fixed_tiling",
    "gaussian_filter",
    "gaussian_kernel",
    "lowpass",
    "matched_tiling",
    "standardized_call",
    "tiled_call",
    "topaz_tiling",
]

#: ``(B, *spatial) float32 -> (B, *spatial) float32``: a denoiser's forward pass.
Network = Callable[[jax.Array], jax.Array]


@dataclass(frozen=True)
class AxisTiling:
    """How one axis of length ``length`` is cut into tiles and windows.

    Attributes:
      length: the axis length.
      tile: tile size; tile ``r`` covers ``[r * tile, min((r + 1) * tile, length))``.
      starts: window start of each tile (may be negative or run past the end: filled).
      sizes: window size of each tile.
      stat_starts, stat_sizes: the interval whose mean and std standardise the window (inside
        the image); None = the window itself (Topaz). :func:`matched_tiling` sets them to
        Topaz's windows, which are larger than the windows it computes.
    """

    length: int
    tile: int
    starts: tuple[int, ...]
    sizes: tuple[int, ...]
    stat_starts: tuple[int, ...] | None = None
    stat_sizes: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if len(self.starts) != math.ceil(self.length / self.tile) or len(self.sizes) != len(
            self.starts
        ):
            raise ValueError(f"inconsistent axis tiling {self}")
        for r, (s, n) in enumerate(zip(self.starts, self.sizes, strict=True)):
            lo, hi = r * self.tile, min((r + 1) * self.tile, self.length)
            if not (s <= lo and s + n >= hi):
                raise ValueError(
                    f"window {r} [{s}, {s + n}) does not contain its tile [{lo}, {hi})"
                )
        if (self.stat_starts is None) != (self.stat_sizes is None):
            raise ValueError("stat_starts and stat_sizes go together")
        if self.stat_starts is not None and self.stat_sizes is not None:
            if len(self.stat_starts) != self.count or len(self.stat_sizes) != self.count:
                raise ValueError(f"one statistics interval per tile needed: {self}")
            for s, n in zip(self.stat_starts, self.stat_sizes, strict=True):
                if s < 0 or n < 2 or s + n > self.length:
                    raise ValueError(f"statistics interval [{s}, {s + n}) outside the axis")

    @property
    def count(self) -> int:
        """Number of tiles."""
        return len(self.starts)

    @property
    def pad_low(self) -> int:
        """How far windows reach below 0."""
        return max(0, -min(self.starts))

    @property
    def pad_high(self) -> int:
        """How far windows (and the zero-padded last tile) reach past the end."""
        ends = [s + n for s, n in zip(self.starts, self.sizes, strict=True)]
        return max(0, max(ends) - self.length)

    @property
    def work(self) -> int:
        """Total window length along this axis (the product over axes is the work)."""
        return sum(self.sizes)


@dataclass(frozen=True)
class Tiling:
    """A tiling of an N-d image: one :class:`AxisTiling` per axis.

    Attributes:
      axes: per-axis tilings.
    """

    axes: tuple[AxisTiling, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        """The image shape."""
        return tuple(a.length for a in self.axes)

    @property
    def separate_stats(self) -> bool:
        """Whether windows are standardised by other intervals than themselves."""
        return any(a.stat_starts is not None for a in self.axes)

    @property
    def window_shapes(self) -> tuple[tuple[int, ...], ...]:
        """Distinct window shapes (each compiles the network once)."""
        return tuple(dict.fromkeys(itertools.product(*(a.sizes for a in self.axes))))

    @property
    def count(self) -> int:
        """Number of windows."""
        return math.prod(a.count for a in self.axes)

    @property
    def work(self) -> int:
        """Pixels (voxels) passed through the network."""
        return math.prod(a.work for a in self.axes)


def _check_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")


def topaz_tiling(shape: Sequence[int], patch_size: int, padding: int) -> Tiling | None:
    """Topaz's 2-D tiling (``denoise_patches``): windows clipped to the image.

    Tile ``r`` starts at ``i = r * patch_size``; its window is
    ``[max(0, i - padding), min(n, i + patch_size + padding))``.

    Args:
      shape: image shape.
      patch_size: Topaz's ``-s``; < 1 means the whole image.
      padding: Topaz's ``-p`` (>= 0).

    Returns:
      The tiling, or None when Topaz would denoise the whole image at once (``patch_size < 1``
      or ``patch_size + padding`` at least as large as every side).

    Raises:
      ConfigError: negative padding.

    Examples:
      >>> t = topaz_tiling((4096, 4096), 1024, 500)
      >>> t.axes[0].starts, t.axes[0].sizes
      ((0, 524, 1548, 2572), (1524, 2024, 2024, 1524))
    """
    if padding < 0:
        raise ConfigError(f"patch padding must be >= 0, got {padding}")
    if patch_size < 1 or all(patch_size + padding >= n for n in shape):
        return None
    axes = []
    for n in shape:
        starts, sizes = [], []
        for i in range(0, n, patch_size):
            s, e = max(0, i - padding), min(n, i + patch_size + padding)
            starts.append(s)
            sizes.append(e - s)
        axes.append(AxisTiling(n, patch_size, tuple(starts), tuple(sizes)))
    return Tiling(tuple(axes))


def cube_tiling(shape: Sequence[int], patch_size: int, padding: int) -> Tiling | None:
    """Topaz's 3-D tiling (``PatchDataset``): ``(P + 2p)`` windows, zero outside the volume.

    Returns:
      The tiling, or None for ``patch_size < 1`` (the whole volume at once).

    Raises:
      ConfigError: negative padding.
    """
    if padding < 0:
        raise ConfigError(f"patch padding must be >= 0, got {padding}")
    if patch_size < 1:
        return None
    axes = []
    for n in shape:
        count = math.ceil(n / patch_size)
        starts = tuple(r * patch_size - padding for r in range(count))
        axes.append(AxisTiling(n, patch_size, starts, (patch_size + 2 * padding,) * count))
    return Tiling(tuple(axes))


def matched_tiling(
    shape: Sequence[int],
    patch_size: int,
    padding: int,
    *,
    halo: int,
    multiple: int,
) -> Tiling | None:
    """Topaz's tiles with less padding, each window keeping its Topaz window's structure.

    A U-Net with ``depth`` poolings is far from shift-invariant: moving its window by one
    pixel changes the output by up to a fifth of the image's σ (the pooling grid moves), and
    a window side with bit ``l`` set makes the nearest upsampling into level ``l`` shift by
    one pixel. Both depend only on the window start and size modulo ``multiple = 2**depth``.
    So each window here starts and ends at the same positions modulo ``multiple`` as the
    window Topaz would use for the tile (:func:`topaz_tiling`), and at an image border
    whenever Topaz's does, but reaches only ``halo`` (rounded up to keep those residues) past
    the tile instead of ``padding``; and each window is standardised by the mean and std of
    Topaz's window (a hot pixel in Topaz's window but not in ours would otherwise change the
    scale). The network then sees Topaz's grid and Topaz's scaling; what changes is only
    context farther than ``halo`` from the tile.

    Args:
      shape: image shape.
      patch_size, padding: the Topaz tiling to follow.
      halo: context kept on each side of a tile (at most ``padding``).
      multiple: the network's pooling factor (32 for Topaz's U-Net).

    Returns:
      The tiling, or None when Topaz would denoise the whole image at once.

    Examples:
      >>> t = matched_tiling((4096, 4096), 1024, 500, halo=96, multiple=32)
      >>> t.axes[0].starts, t.axes[0].sizes
      ((0, 908, 1932, 2956), (1140, 1256, 1256, 1140))
    """
    _check_positive("multiple", multiple)
    topaz = topaz_tiling(shape, patch_size, padding)
    if topaz is None:
        return None
    halo = min(max(halo, 0), padding)
    axes = []
    for axis in topaz.axes:
        n = axis.length
        starts, sizes = [], []
        for r, (s, size) in enumerate(zip(axis.starts, axis.sizes, strict=True)):
            e = s + size
            lo, hi = r * axis.tile, min(n, (r + 1) * axis.tile)
            new_s = s if s == 0 else s + (lo - halo - s) // multiple * multiple
            new_e = e if e == n else e - (e - hi - halo) // multiple * multiple
            starts.append(new_s)
            sizes.append(new_e - new_s)
        axes.append(AxisTiling(n, axis.tile, tuple(starts), tuple(sizes), axis.starts, axis.sizes))
    return Tiling(tuple(axes))


def fixed_tiling(shape: Sequence[int], tile: int, halo: int, *, align: int = 1) -> Tiling | None:
    """Equal-sized windows: each tile plus ``halo`` on both sides, shifted inside the image.

    Along an axis of length ``n`` that is longer than ``tile + 2 * halo``, ``k = ceil(n /
    tile)`` tiles of ``ceil(n / k)`` (rounded up to ``align``) are used, each with a window of
    ``tile' + 2 * halo`` starting at ``clip(r * tile' - halo, 0, n - size)``; a shorter axis is
    one window over all of it.

    Args:
      shape: image shape.
      tile: largest tile side.
      halo: context on each side of a tile.
      align: tile sides are multiples of this (e.g. the network's pooling factor, so that
        interior windows share the pooling grid).

    Returns:
      The tiling, or None when one window covers the whole image.

    Examples:
      >>> t = fixed_tiling((4096, 3838), 2048, 128)
      >>> t.axes[1].starts, t.axes[1].sizes
      ((0, 1663), (2175, 2175))
    """
    _check_positive("tile", tile)
    _check_positive("align", align)
    if halo < 0:
        raise ConfigError(f"halo must be >= 0, got {halo}")
    if all(n <= tile + 2 * halo for n in shape):
        return None
    axes = []
    for n in shape:
        if n <= tile + 2 * halo:
            axes.append(AxisTiling(n, n, (0,), (n,)))
            continue
        k = math.ceil(n / tile)
        side = min(tile, -(-math.ceil(n / k) // align) * align)
        k = math.ceil(n / side)
        size = min(n, side + 2 * halo)
        starts = tuple(min(max(r * side - halo, 0), n - size) for r in range(k))
        axes.append(AxisTiling(n, side, starts, (size,) * k))
    return Tiling(tuple(axes))


def _std(x: jax.Array, mean: jax.Array, ddof: int) -> jax.Array:
    n = x.size
    return jnp.sqrt(jnp.sum(jnp.square(x - mean)) / (n - ddof))


def _mean(x: jax.Array) -> jax.Array:
    """Mean of all elements, reduced axis by axis (a flat float32 sum of 16M values loses
    digits that numpy's pairwise summation keeps)."""
    for _ in range(x.ndim):
        x = jnp.mean(x, axis=-1)
    return x


def _centred_std(x: jax.Array, mean: jax.Array, ddof: int) -> jax.Array:
    d = jnp.square(x - mean)
    for _ in range(x.ndim):
        d = jnp.sum(d, axis=-1)
    return jnp.sqrt(d / (x.size - ddof))


def standardized_call(
    network: Network, x: jax.Array, stats: tuple[jax.Array, jax.Array] | None = None
) -> jax.Array:
    """Topaz's ``Denoise._denoise`` on one window: standardise by the window's own mean and
    unbiased std (or by ``stats = (mean, std)``), run the network, undo the standardisation.

    A constant window (std 0, where Topaz would produce NaN) is passed through unscaled.
    """
    x = x.astype(jnp.float32)
    if stats is None:
        mean = _mean(x)
        std = _centred_std(x, mean, 1)
    else:
        mean, std = stats
    std = jnp.where(std > 0, std, 1.0)
    return network(((x - mean) / std)[None])[0] * std + mean


def tiled_call(
    network: Network,
    image: jax.Array,
    tiling: Tiling | None,
    *,
    fill: float | jax.Array = 0.0,
    batch_size: int = 1,
) -> jax.Array:
    """The network over one image, window by window (:func:`standardized_call` on each).

    Args:
      network: the forward pass.
      image: ``(*spatial)`` float32, already standardised as the caller wants.
      tiling: the windows; None runs the whole image as one window.
      fill: what windows see outside the image (in the units of ``image``).
      batch_size: windows per network call (static).

    Returns:
      ``(*spatial)`` float32.
    """
    if tiling is None:
        return standardized_call(network, image)
    if tuple(image.shape) != tiling.shape:
        raise ValueError(f"image shape {image.shape} does not match the tiling {tiling.shape}")
    nd = image.ndim
    lows = tuple(a.pad_low for a in tiling.axes)
    highs = tuple(a.pad_high for a in tiling.axes)
    if any(lows) or any(highs):
        image = jnp.pad(image, tuple(zip(lows, highs, strict=True)), constant_values=fill)
    tile = tuple(a.tile for a in tiling.axes)
    blocks: list[jax.Array] = []
    order: list[int] = []
    grid = [a.count for a in tiling.axes]
    means, stds = _interval_stats(image, tiling, lows) if tiling.separate_stats else (None, None)
    for size in tiling.window_shapes:
        members = [
            idx
            for idx in itertools.product(*(range(n) for n in grid))
            if all(a.sizes[r] == s for a, r, s in zip(tiling.axes, idx, size, strict=True))
        ]
        starts = np.array(
            [
                [a.starts[r] + lo for a, r, lo in zip(tiling.axes, idx, lows, strict=True)]
                for idx in members
            ],
            dtype=np.int32,
        )
        offsets = np.array(
            [
                [r * a.tile - a.starts[r] for a, r in zip(tiling.axes, idx, strict=True)]
                for idx in members
            ],
            dtype=np.int32,
        )

        flat = np.array([np.ravel_multi_index(idx, grid) for idx in members], dtype=np.int32)

        def one(
            args: tuple[jax.Array, jax.Array, jax.Array], size: tuple[int, ...] = size
        ) -> jax.Array:
            start, offset, index = args
            window = lax.dynamic_slice(image, tuple(start[d] for d in range(nd)), size)
            stats = None if means is None or stds is None else (means[index], stds[index])
            out = standardized_call(network, window, stats)
            # Room for a partial last tile, so that the block slice never gets clamped.
            out = jnp.pad(out, [(0, t) for t in tile])
            return lax.dynamic_slice(out, tuple(offset[d] for d in range(nd)), tile)

        xs = (jnp.asarray(starts), jnp.asarray(offsets), jnp.asarray(flat))
        blocks.append(lax.map(one, xs, batch_size=batch_size))
        order += flat.tolist()
    stacked = jnp.concatenate(blocks) if len(blocks) > 1 else blocks[0]
    stacked = stacked[jnp.asarray(np.argsort(np.array(order)))]
    # (*grid, *tile) -> (g0, t0, g1, t1, ...) -> the image.
    stacked = stacked.reshape(*grid, *tile)
    perm = [i for d in range(nd) for i in (d, nd + d)]
    full = stacked.transpose(perm).reshape(*(g * t for g, t in zip(grid, tile, strict=True)))
    return full[tuple(slice(0, n) for n in tiling.shape)]


def _interval_stats(
    image: jax.Array, tiling: Tiling, lows: tuple[int, ...]
) -> tuple[jax.Array, jax.Array]:
    """Mean and unbiased std over each tile's statistics box, flat in tile order.

    The boxes are products of per-axis intervals, so sums are taken axis by axis (one pass per
    interval of the last axis, then sums of those partial sums): no loop over tiles, and each
    float32 sum adds at most one axis length of terms.
    """
    sums, squares = image, jnp.square(image)
    for axis in reversed(range(image.ndim)):
        a = tiling.axes[axis]
        starts = a.starts if a.stat_starts is None else a.stat_starts
        sizes = a.sizes if a.stat_sizes is None else a.stat_sizes
        parts_s, parts_q = [], []
        for s0, n in zip(starts, sizes, strict=True):
            lo = s0 + lows[axis]
            parts_s.append(jnp.sum(lax.slice_in_dim(sums, lo, lo + n, axis=axis), axis=axis))
            parts_q.append(jnp.sum(lax.slice_in_dim(squares, lo, lo + n, axis=axis), axis=axis))
        sums, squares = jnp.stack(parts_s, axis=-1), jnp.stack(parts_q, axis=-1)
    # The interval axes come out last-axis first: (c_{n-1}, ..., c_0) -> (c_0, ..., c_{n-1}).
    order = tuple(reversed(range(image.ndim)))
    sums, squares = sums.transpose(order).ravel(), squares.transpose(order).ravel()
    counts = np.array(
        [
            math.prod(n)
            for n in itertools.product(
                *(a.sizes if a.stat_sizes is None else a.stat_sizes for a in tiling.axes)
            )
        ],
        dtype=np.float32,
    )
    means = sums / counts
    # The image is globally standardised (mean ~0, std ~1): no cancellation to speak of.
    variances = (squares - counts * jnp.square(means)) / (counts - 1)
    return means, jnp.sqrt(jnp.maximum(variances, 0.0))


def gaussian_kernel(sigma: float, *, scale: float = 5.0) -> np.ndarray:
    """Topaz's normalised 1-D Gaussian factor (``GaussianDenoise``: width ``1 + 2 ceil(5 σ)``).

    The 2-D/3-D kernel Topaz builds, ``exp(-d² / 2σ²)`` normalised to sum 1, is the outer
    product of this one with itself, so filtering axis by axis gives the same result.
    """
    if not (sigma > 0 and math.isfinite(sigma)):
        raise ConfigError(f"gaussian sigma must be a positive number, got {sigma!r}")
    width = 1 + 2 * int(np.ceil(sigma * scale))
    r = np.arange(width, dtype=np.float64) - width // 2
    g = np.exp(-0.5 * r**2 / sigma**2)
    return (g / g.sum()).astype(np.float32)


def gaussian_filter(x: jax.Array, sigma: float) -> jax.Array:
    """Topaz's Gaussian filter on an image or volume: zero padding, same size, separable."""
    g = jnp.asarray(gaussian_kernel(sigma))
    pad = g.shape[0] // 2
    out = x.astype(jnp.float32)
    for axis in range(x.ndim):
        shape = [1] * x.ndim
        shape[axis] = g.shape[0]
        kernel = g.reshape(*shape, 1, 1)
        padding = [(pad, pad) if d == axis else (0, 0) for d in range(x.ndim)]
        spec = ("NHWC", "HWIO", "NHWC") if x.ndim == 2 else ("NDHWC", "DHWIO", "NDHWC")
        out = lax.conv_general_dilated(
            out[None, ..., None],
            kernel,
            (1,) * x.ndim,
            padding,
            dimension_numbers=spec,
            precision=lax.Precision.HIGHEST,
        )[0, ..., 0]
    return out


def lowpass(x: jax.Array, factor: float) -> jax.Array:
    """Hard low-pass filter: Fourier components with any ``|frequency| > 0.5 / factor``
    (cycles per pixel, per axis: a square cutoff) set to zero (Topaz's ``denoise.lowpass``,
    which its command line never reaches). ``factor <= 1`` returns ``x`` unchanged."""
    if factor <= 1:
        return x
    shape = x.shape
    freqs = [np.fft.fftfreq(n) for n in shape[:-1]] + [np.fft.rfftfreq(shape[-1])]
    grids = np.meshgrid(*freqs, indexing="ij")
    keep = ~np.any(np.stack([np.abs(g) > 0.5 / factor for g in grids]), axis=0)
    spectrum = jnp.fft.rfftn(x.astype(jnp.float32))
    spectrum = jnp.where(jnp.asarray(keep), spectrum, 0)
    return jnp.fft.irfftn(spectrum, s=shape).astype(jnp.float32)


def denoise_image(
    networks: Sequence[Network | None],
    image: jax.Array,
    *,
    tiling: Tiling | None = None,
    lowpass_factor: float = 1.0,
    pixel_cutoff: float = 0.0,
    gaussian: float = 0.0,
    normalize: bool = False,
    batch_size: int = 1,
) -> jax.Array:
    """Topaz's ``denoise_image`` (spec 6.2) for one micrograph.

    1. low-pass (``lowpass_factor > 1``); 2. standardise by the micrograph's mean and
    population std; zero the pixels beyond ``pixel_cutoff`` std (if > 0); 3. Gaussian filter
    (``gaussian`` = σ in pixels, if > 0); 4. each network over the windows of ``tiling``
    (None entries: no network, the filtered image itself), averaged; 5. z-score the result
    (``normalize``) or restore the micrograph's mean and std.

    Args:
      networks: forward passes to average (``None`` = identity).
      image: ``(H, W)`` micrograph.
      tiling: the windows (:func:`topaz_tiling`, :func:`fixed_tiling`); None = whole image.
      lowpass_factor: hard low-pass cutoff at ``0.5 / factor`` cycles per pixel.
      pixel_cutoff: outlier cutoff in standard deviations (0 = none).
      gaussian: Gaussian pre-filter σ in pixels (0 = none).
      normalize: z-score the output instead of restoring the input's scale.
      batch_size: windows per network call (static).

    Returns:
      ``(H, W)`` float32.
    """
    if not networks:
        raise ConfigError("at least one network (or None for no network) is needed")
    mic = jnp.asarray(image, jnp.float32)
    mic = lowpass(mic, lowpass_factor)
    mu = _mean(mic)
    std = _centred_std(mic, mu, 0)
    x = (mic - mu) / std
    if pixel_cutoff > 0:
        x = jnp.where((x < -pixel_cutoff) | (x > pixel_cutoff), 0.0, x)
    if gaussian > 0:
        x = gaussian_filter(x, gaussian)
    outs = [
        x if net is None else tiled_call(net, x, tiling, batch_size=batch_size) for net in networks
    ]
    y = outs[0]
    for out in outs[1:]:
        y = y + out
    y = y / len(outs)
    if normalize:
        m = _mean(y)
        return (y - m) / _centred_std(y, m, 0)
    return std * y + mu


def denoise_volume(
    network: Network,
    volume: jax.Array,
    *,
    tiling: Tiling | None = None,
    gaussian: float = 0.0,
    batch_size: int = 1,
) -> jax.Array:
    """Topaz's 3-D denoising (``Denoise3D.denoise``, spec 6.4) of one volume.

    The volume is standardised by its global mean and population std, so the zeros outside it
    (:func:`cube_tiling`) enter as ``-mean / std``; each cube is standardised again by its own mean
    and unbiased std inside the network call; the result is mapped back by the global mean
    and std. ``gaussian > 0`` then smooths the *output* with a 3-D Gaussian of that σ (what
    Topaz's ``denoise3d -g`` documents; Topaz itself filters a discarded copy of the input).

    Args:
      network: the 3-D forward pass.
      volume: ``(D, H, W)``.
      tiling: :func:`cube_tiling`; None = the whole volume at once.
      gaussian: σ of the Gaussian post-filter in voxels (0 = none).
      batch_size: cubes per network call (static).

    Returns:
      ``(D, H, W)`` float32.
    """
    v = jnp.asarray(volume, jnp.float32)
    mu = _mean(v)
    std = _centred_std(v, mu, 0)
    x = (v - mu) / std
    # Topaz fills the cubes with zeros before standardising them.
    y = tiled_call(network, x, tiling, fill=(0.0 - mu) / std, batch_size=batch_size)
    y = std * y + mu
    if gaussian > 0:
        y = gaussian_filter(y, gaussian)
    return y
