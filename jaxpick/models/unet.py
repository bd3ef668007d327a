"""Topaz's denoising networks in Flax NNX: one U-Net for 2-D and 3-D, plus fcnn and affine.

All of them map a batch of images ``(B, *spatial)`` to a batch of the same shape (channels-last
inside, one input and one output channel), with Topaz's numerics (spec 6.1):

- every convolution is "same"-padded with zeros (``k // 2``), stride 1, with a bias;
- LeakyReLU with slope 0.1 after every convolution but the last;
- max pooling by 2 in floor mode (an odd last row/column is dropped);
- upsampling is PyTorch's ``F.interpolate(mode="nearest", size=skip_size)``: source index
  ``min(floor(i * float32(n_in / n_out)), n_in - 1)`` in float32 (exactly ``i // 2`` when the
  skip is twice the size, but *not* when it is odd: ``i = 2`` of a 12 -> 25 upsampling reads
  row 0);
- concatenation order ``[upsampled, skip]``; no residual connection: the output is predicted
  directly.

:class:`UNet` covers Topaz's ``UDenoiseNet`` (``depth=5``: base kernel 11 / top kernel 5 for
v0.2.2, 7 / 3 for v0.2.1), ``UDenoiseNetSmall`` (``depth=3``) and ``UDenoiseNet3D``
(``ndim=3``, 7 / 3), with any width. :class:`FCNN` is ``DenoiseNet2`` and :class:`Affine` is
``AffineDenoise``. The architecture is a frozen :class:`DenoiserConfig`; weights come from
:mod:`jaxpick.models.denoisers`.

Compute precision: float32 (``Precision.HIGHEST``) or bfloat16 (weights and activations
rounded to bf16, products accumulated in float32, the output float32).

Examples:
  >>> import jax.numpy as jnp
  >>> from flax import nnx
  >>> config = DenoiserConfig(arch="unet", width=4, depth=3, base_kernel=3, top_kernel=3)
  >>> model = build_denoiser(config, rngs=nnx.Rngs(0))
  >>> model(jnp.zeros((2, 40, 37))).shape
  (2, 40, 37)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import lax

from jaxpick.errors import ConfigError

# Host-side torch-style initialisation (no XLA compilation per weight shape when eager).
from jaxpick.models.layers import Compute, _torch_uniform, compute_settings

__all__ = [
    "ARCHITECTURES",
    "Affine",
    "Denoiser",
    "DenoiserConfig",
    "FCNN",
    "UNet",
    "build_denoiser",
    "abstract_denoiser",
    "nearest_indices",
]

#: Denoiser architecture families.
ARCHITECTURES = ("unet", "fcnn", "affine")
#: Topaz's LeakyReLU slope in every denoiser.
LEAKY_SLOPE = 0.1

Arch = Literal["unet", "fcnn", "affine"]


@dataclass(frozen=True, kw_only=True)
class DenoiserConfig:
    """The architecture of a denoiser (static, hashable, JSON-able).

    Attributes:
      arch: ``"unet"``, ``"fcnn"`` or ``"affine"``.
      ndim: 2 (micrographs) or 3 (tomograms).
      width: U-Net encoder channels (Topaz's ``nf``, 48); fcnn hidden channels (64).
        Unused by affine.
      depth: U-Net pooling levels (5 for ``UDenoiseNet``, 3 for ``UDenoiseNetSmall``).
      base_kernel: kernel side of the first convolution (U-Net); of every convolution (fcnn);
        of the single filter (affine).
      top_kernel: kernel side of the U-Net's three last convolutions.
      top_widths: channels of the U-Net's last two hidden convolutions (Topaz: 64, 32).
    """

    arch: Arch
    ndim: int = 2
    width: int = 48
    depth: int = 5
    base_kernel: int = 11
    top_kernel: int = 5
    top_widths: tuple[int, ...] = (64, 32)

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ConfigError(f"arch must be one of {ARCHITECTURES}, got {self.arch!r}")
        if self.ndim not in (2, 3):
            raise ConfigError(f"ndim must be 2 or 3, got {self.ndim!r}")
        for name in ("width", "base_kernel", "top_kernel"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        for name in ("base_kernel", "top_kernel"):
            if getattr(self, name) % 2 == 0:
                raise ConfigError(f"{name} must be odd (same padding), got {getattr(self, name)}")
        if not isinstance(self.depth, int) or self.depth < 1:
            raise ConfigError(f"depth must be a positive integer, got {self.depth!r}")
        if self.arch == "unet" and self.depth < 2:
            # One pooling level leaves no inner decoder: Topaz's U-Nets have 3 or 5.
            raise ConfigError(f"depth of a unet must be >= 2, got {self.depth!r}")
        object.__setattr__(self, "top_widths", tuple(int(w) for w in self.top_widths))
        if self.arch == "unet" and (not self.top_widths or min(self.top_widths) < 1):
            raise ConfigError(f"top_widths must be positive, got {self.top_widths!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (inverse of :meth:`from_dict`)."""
        d = asdict(self)
        d["top_widths"] = list(self.top_widths)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DenoiserConfig:
        """Rebuilds a config from :meth:`to_dict` output.

        Raises:
          ConfigError: unknown keys or invalid values.
        """
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown denoiser config keys {sorted(unknown)}")
        d = dict(d)
        if "top_widths" in d:
            d["top_widths"] = tuple(d["top_widths"])
        try:
            return cls(**d)
        except TypeError as err:
            raise ConfigError(f"bad denoiser config {d}: {err}") from err

    @property
    def multiple(self) -> int:
        """Input sides that are multiples of this pool evenly at every level (2**depth)."""
        return 2**self.depth if self.arch == "unet" else 1

    @property
    def receptive_field(self) -> int:
        """Side of the input window one output pixel can depend on (theoretical bound)."""
        if self.arch == "affine":
            return self.base_kernel
        if self.arch == "fcnn":
            return 3 * (self.base_kernel - 1) + 1
        # The usual size/jump recursion over the deepest path: a k-conv at jump j adds
        # (k - 1) * j, a 2-pool adds j and doubles the jump, nearest upsampling halves it.
        size, jump = self.base_kernel, 1
        for _ in range(self.depth):
            size += jump
            jump *= 2
            size += 2 * jump  # enc2 .. enc{D+1}: 3x3 convs at the coarser level
        for _ in range(self.depth - 1):
            jump //= 2
            size += 4 * jump  # two 3x3 convs per decoder level
        return size + 3 * (self.top_kernel - 1)


def nearest_indices(n_in: int, n_out: int) -> np.ndarray:
    """Source indices of PyTorch's nearest-neighbour resize from ``n_in`` to ``n_out``.

    ``aten::upsample_nearest`` without a scale factor: identity for equal sizes, ``i >> 1`` for
    exact doubling, else ``min(floorf(i * ((float) n_in / n_out)), n_in - 1)`` in float32.

    Examples:
      >>> nearest_indices(3, 7).tolist()
      [0, 0, 0, 1, 1, 2, 2]
      >>> nearest_indices(3, 6).tolist()
      [0, 0, 1, 1, 2, 2]
    """
    if n_out == n_in:
        return np.arange(n_out, dtype=np.int32)
    if n_out == 2 * n_in:
        return (np.arange(n_out, dtype=np.int32) >> 1).astype(np.int32)
    scale = np.float32(n_in) / np.float32(n_out)
    index = np.floor(np.arange(n_out, dtype=np.float32) * scale).astype(np.int64)
    return np.minimum(index, n_in - 1).astype(np.int32)


def _upsample(h: jax.Array, size: tuple[int, ...]) -> jax.Array:
    """Nearest resize of ``(B, *spatial, C)`` to ``size`` (static), as PyTorch does it."""
    for axis, n_out in enumerate(size, start=1):
        n_in = h.shape[axis]
        if n_out == n_in:
            continue
        if n_out == 2 * n_in:
            h = jnp.repeat(h, 2, axis=axis)
        else:
            h = jnp.take(h, jnp.asarray(nearest_indices(n_in, n_out)), axis=axis)
    return h


def _max_pool(h: jax.Array, ndim: int) -> jax.Array:
    """2x max pooling of ``(B, *spatial, C)`` in floor mode."""
    spatial = h.shape[1 : 1 + ndim]
    crop = tuple(slice(0, 2 * (n // 2)) for n in spatial)
    h = h[(slice(None), *crop)]
    shape: list[int] = [h.shape[0]]
    for n in spatial:
        shape += [n // 2, 2]
    h = h.reshape(*shape, h.shape[-1])
    return jnp.max(h, axis=tuple(2 + 2 * i for i in range(ndim)))


def _leaky(h: jax.Array) -> jax.Array:
    return jnp.where(h >= 0, h, h * jnp.asarray(LEAKY_SLOPE, h.dtype))


_DIMENSIONS = {2: ("NHWC", "HWIO", "NHWC"), 3: ("NDHWC", "DHWIO", "NDHWC")}


class Conv(nnx.Module):
    """An N-d "same" convolution with bias and PyTorch's default initialisation.

    Attributes:
      kernel: ``(*[k] * ndim, Cin, Cout)``.
      bias: ``(Cout,)``.
    """

    def __init__(self, nin: int, nout: int, kernel: int, ndim: int, *, rngs: nnx.Rngs) -> None:
        fan_in = nin * kernel**ndim
        shape = (*([kernel] * ndim), nin, nout)
        self.kernel = nnx.Param(_torch_uniform(rngs.params(), shape, fan_in))
        self.bias = nnx.Param(_torch_uniform(rngs.params(), (nout,), fan_in))

    def __call__(self, x: jax.Array, compute: Compute) -> jax.Array:
        return _conv(x, self.kernel[...], compute) + self.bias[...]

    def upsampled(self, h: jax.Array, skip: jax.Array, compute: Compute) -> jax.Array:
        """This convolution on ``[nearest_upsample(h, skip's size), skip]``.

        When every side of ``skip`` is twice ``h``'s, the upsampled part is computed at
        ``h``'s resolution, phase by phase (each output phase of a k-tap convolution of a
        2x nearest-upsampled map is a 2- or 3-tap convolution of the map itself): 2.6x fewer
        operations for a 5x5 kernel, 2.25x for 3x3, and no upsampled copy. Other sizes (an odd
        side: PyTorch's one-pixel-shifted upsampling) are upsampled and concatenated.
        """
        nd = h.ndim - 2
        size = skip.shape[1 : 1 + nd]
        kernel = self.kernel[...]
        if any(s != 2 * n for s, n in zip(size, h.shape[1 : 1 + nd], strict=True)):
            return self(jnp.concatenate([_upsample(h, size), skip], axis=-1), compute)
        c = h.shape[-1]
        y = _conv_upsampled(h, kernel[..., :c, :], compute)
        return y + _conv(skip, kernel[..., c:, :], compute) + self.bias[...]


def _conv(x: jax.Array, kernel: jax.Array, compute: Compute) -> jax.Array:
    """ "Same" zero-padded N-d convolution, float32 out."""
    ndim = kernel.ndim - 2
    pad = kernel.shape[0] // 2
    return lax.conv_general_dilated(
        x.astype(compute.dtype),
        kernel.astype(compute.dtype),
        (1,) * ndim,
        [(pad, pad)] * ndim,
        dimension_numbers=_DIMENSIONS[ndim],
        precision=compute.precision,
        preferred_element_type=jnp.float32,
    )


def _phase_taps(k: int, phase: int) -> np.ndarray:
    """``M[u, d] = 1`` when tap ``d`` of a k-tap "same" kernel, at output phase ``phase`` of a
    2x nearest-upsampled input, reads source offset ``u + min offset``; rows = used offsets."""
    r = k // 2
    offsets = [(phase + d - r) // 2 for d in range(k)]
    low = min(offsets)
    m = np.zeros((max(offsets) - low + 1, k), np.float32)
    for d, u in enumerate(offsets):
        m[u - low, d] = 1.0
    return m


def _conv_upsampled(h: jax.Array, kernel: jax.Array, compute: Compute) -> jax.Array:
    """``_conv(2x nearest upsample of h, kernel)`` computed at ``h``'s resolution."""
    nd = h.ndim - 2
    k = kernel.shape[0]
    r = k // 2
    phases = []
    for phase in np.ndindex(*([2] * nd)):
        effective = kernel
        padding = []
        for axis, p in enumerate(phase):
            m = jnp.asarray(_phase_taps(k, p))
            # Sum the taps that read the same source pixel (exact: a linear map of weights).
            effective = jnp.moveaxis(
                jnp.tensordot(m, effective, axes=([1], [axis]), precision=lax.Precision.HIGHEST),
                0,
                axis,
            )
            low = (p - r) // 2
            padding.append((-low, low + m.shape[0] - 1))
        phases.append(
            lax.conv_general_dilated(
                h.astype(compute.dtype),
                effective.astype(compute.dtype),
                (1,) * nd,
                padding,
                dimension_numbers=_DIMENSIONS[nd],
                precision=compute.precision,
                preferred_element_type=jnp.float32,
            )
        )
    # (phases..., B, *n, C) -> (B, n1, 2, n2, 2, ..., C) -> (B, 2 n1, 2 n2, ..., C)
    y = jnp.stack(phases).reshape(*([2] * nd), *phases[0].shape)
    b, *spatial, c = phases[0].shape
    order = [nd] + [i for a in range(nd) for i in (nd + 1 + a, a)] + [2 * nd + 1]
    return y.transpose(order).reshape(b, *(2 * n for n in spatial), c)


class Denoiser(nnx.Module):
    """Base class: ``model(x)`` maps ``(B, *spatial)`` to ``(B, *spatial)`` float32.

    Attributes:
      config: the architecture.
    """

    config: DenoiserConfig

    def forward(self, h: jax.Array, compute: Compute) -> jax.Array:
        """``(B, *spatial, 1)`` in ``compute.dtype`` -> ``(B, *spatial, 1)`` float32."""
        raise NotImplementedError

    def __call__(
        self, x: jax.Array, *, compute_dtype: str | jnp.dtype | type = "float32"
    ) -> jax.Array:
        """Denoises a batch (no standardisation: that is the caller's, as in Topaz).

        Args:
          x: ``(B, *spatial)`` with ``len(spatial) == config.ndim``.
          compute_dtype: ``"float32"`` or ``"bfloat16"``.

        Returns:
          ``(B, *spatial)`` float32.

        Raises:
          ValueError: wrong number of dimensions, or a side too small to pool ``depth`` times
            (PyTorch raises too).
        """
        x = jnp.asarray(x)
        if x.ndim != self.config.ndim + 1:
            raise ValueError(
                f"x must be (batch, *{self.config.ndim} spatial dims), got shape {x.shape}"
            )
        small = [n for n in x.shape[1:] if n < self.config.multiple]
        if small:
            raise ValueError(
                f"images of shape {x.shape[1:]} are too small for this {self.config.depth}-level "
                f"U-Net: every side must be at least {self.config.multiple} pixels"
            )
        compute = compute_settings(compute_dtype)
        h = x.astype(compute.dtype)[..., None]
        return self.forward(h, compute)[..., 0]


class UNet(Denoiser):
    """Topaz's U-Net denoiser (``UDenoiseNet``, ``UDenoiseNetSmall``, ``UDenoiseNet3D``).

    With depth D: ``enc[0]`` is conv(1 -> w, base) + pool, ``enc[1..D-1]`` conv(w -> w, 3) +
    pool, ``enc[D]`` conv(w -> w, 3) (the bottom). ``dec[0]`` (Topaz's ``decD``) takes
    ``[up(bottom), p_{D-1}]`` (2w channels), ``dec[1..D-2]`` take ``[up, p_k]`` (3w), each two
    convs to 2w; ``top`` (Topaz's ``dec1``) takes ``[up, x]`` (2w + 1) through ``top_widths``
    to one channel with ``top_kernel`` kernels.

    Attributes:
      enc: the encoder convolutions (Topaz ``enc1 .. enc{D+1}``).
      dec: the decoder levels, each a list of two convolutions (Topaz ``decD .. dec2``).
      top: the last convolutions (Topaz ``dec1``).
    """

    def __init__(self, config: DenoiserConfig, *, rngs: nnx.Rngs) -> None:
        if config.arch != "unet":
            raise ConfigError(f"UNet needs arch 'unet', got {config.arch!r}")
        self.config = config
        w, nd = config.width, config.ndim
        self.enc = nnx.List(
            [Conv(1, w, config.base_kernel, nd, rngs=rngs)]
            + [Conv(w, w, 3, nd, rngs=rngs) for _ in range(config.depth)]
        )
        self.dec = nnx.List(
            [
                nnx.List(
                    [
                        Conv(2 * w if level == 0 else 3 * w, 2 * w, 3, nd, rngs=rngs),
                        Conv(2 * w, 2 * w, 3, nd, rngs=rngs),
                    ]
                )
                for level in range(config.depth - 1)
            ]
        )
        widths = (2 * w + 1, *config.top_widths, 1)
        self.top = nnx.List(
            [
                Conv(a, b, config.top_kernel, nd, rngs=rngs)
                for a, b in zip(widths[:-1], widths[1:], strict=True)
            ]
        )

    def forward(self, h: jax.Array, compute: Compute) -> jax.Array:
        nd = self.config.ndim
        skips = [h]
        for conv in self.enc[:-1]:
            h = _max_pool(_leaky(conv(h, compute)).astype(compute.dtype), nd)
            skips.append(h)
        h = _leaky(self.enc[-1](h, compute)).astype(compute.dtype)
        # p_D (the last pooled map) only feeds the bottom conv; decoding starts at p_{D-1}.
        levels = [*self.dec, self.top]
        for level, convs in enumerate(levels):
            skip = skips[len(skips) - 2 - level]
            for i, conv in enumerate(convs):
                h = conv.upsampled(h, skip, compute) if i == 0 else conv(h, compute)
                if convs is not self.top or i < len(convs) - 1:
                    h = _leaky(h).astype(compute.dtype)
        return h


class FCNN(Denoiser):
    """Topaz's ``DenoiseNet2`` (``fcnn``): three ``base_kernel`` convolutions 1 -> w -> w -> 1.

    Attributes:
      net: the three convolutions (Topaz ``net.0``, ``net.2``, ``net.4``).
    """

    def __init__(self, config: DenoiserConfig, *, rngs: nnx.Rngs) -> None:
        if config.arch != "fcnn":
            raise ConfigError(f"FCNN needs arch 'fcnn', got {config.arch!r}")
        self.config = config
        w, k, nd = config.width, config.base_kernel, config.ndim
        self.net = nnx.List(
            [
                Conv(1, w, k, nd, rngs=rngs),
                Conv(w, w, k, nd, rngs=rngs),
                Conv(w, 1, k, nd, rngs=rngs),
            ]
        )

    def forward(self, h: jax.Array, compute: Compute) -> jax.Array:
        for i, conv in enumerate(self.net):
            h = conv(h, compute)
            if i < len(self.net) - 1:
                h = _leaky(h).astype(compute.dtype)
        return h


class Affine(Denoiser):
    """Topaz's ``AffineDenoise`` (``affine``): one ``base_kernel`` filter with a bias.

    Attributes:
      filter: the convolution (Topaz ``filter``); a fresh model is zero, as in Topaz.
    """

    def __init__(self, config: DenoiserConfig, *, rngs: nnx.Rngs) -> None:
        if config.arch != "affine":
            raise ConfigError(f"Affine needs arch 'affine', got {config.arch!r}")
        self.config = config
        self.filter = Conv(1, 1, config.base_kernel, config.ndim, rngs=rngs)
        self.filter.kernel[...] = jnp.zeros_like(self.filter.kernel[...])
        self.filter.bias[...] = jnp.zeros_like(self.filter.bias[...])

    def forward(self, h: jax.Array, compute: Compute) -> jax.Array:
        return self.filter(h, compute)


_CLASSES: dict[str, type[Denoiser]] = {"unet": UNet, "fcnn": FCNN, "affine": Affine}


def build_denoiser(config: DenoiserConfig, *, rngs: nnx.Rngs) -> Denoiser:
    """A freshly initialised denoiser (PyTorch's default initialisation; affine starts at zero).

    Examples:
      >>> from flax import nnx
      >>> model = build_denoiser(DenoiserConfig(arch="fcnn", width=4, base_kernel=3),
      ...                        rngs=nnx.Rngs(0))
      >>> type(model).__name__
      'FCNN'
    """
    return _CLASSES[config.arch](config, rngs=rngs)


def abstract_denoiser(config: DenoiserConfig) -> Denoiser:
    """A denoiser whose arrays are shape placeholders (no compute), to be filled with weights."""
    return nnx.eval_shape(lambda: build_denoiser(config, rngs=nnx.Rngs(0)))
