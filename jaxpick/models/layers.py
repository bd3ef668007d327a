"""NNX building blocks of the picker networks, with Topaz's (PyTorch's) numerics. NHWC.

Every layer takes its stride and dilation *at call time* (a
:class:`~jaxpick.models.plan.Placement`), so one parameter set serves both patch mode and dense
("filled") mode; nothing is mutated.

Convolutions are VALID, as in Topaz. On XLA:CPU a VALID convolution runs 2-3x slower than the
same convolution with any non-zero padding, so the *fast* path pads by one (or by the stride,
on the high side, for strided convolutions), convolves and crops back: bit-identical values,
since the cropped outputs are exactly those that saw the padding. Single-input-channel
convolutions (the first layer) stay VALID, which is faster there; 1x1 convolutions are einsums.
On XLA:CPU, wide float32 layers on large maps (3x3 to 7x7, >= 64 input channels, >= 512²
outputs: in dense mode the last layer of every ResNet, 62 % of a ResNet8's products, and the 64-
and 128-channel 3x3 layers) take a 1-D Winograd form instead: 2/5 of the products for 5x5, 4/9
for 3x3; 1.3-2.3x faster here, equal to the VALID convolution within ~4e-6 of the output scale
(:func:`_winograd_rows_conv`). ``tests/models`` pins that the fast path equals the plain VALID
path.

Compute precision (:class:`Compute`): float32 (``Precision.HIGHEST``, so GPUs do not fall back
to TF32) or bfloat16 (weights and activations rounded to bf16, products accumulated in float32,
normalisation, biases and the returned logits in float32).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import lax

from jaxpick.models.plan import ConvSpec, DropoutSpec, Placement, PoolSpec, ResidSpec

#: torch BatchNorm defaults.
BN_EPS = 1e-5
BN_MOMENTUM = 0.1
#: torch PReLU default slope.
PRELU_INIT = 0.25

_DIMENSIONS = ("NHWC", "HWIO", "NHWC")


@dataclass(frozen=True)
class Compute:
    """Static numerical settings of one forward pass.

    Attributes:
      dtype: ``jnp.float32`` or ``jnp.bfloat16``: dtype of weights and activations fed to the
        convolutions (accumulation is float32 either way).
      fast: use the XLA:CPU-friendly forms: padded convolutions (same values as plain VALID
        ones) and, for wide 3x3-7x7 float32 layers, the 1-D Winograd form (within float32
        rounding of them).
      differentiable: the forms whose *gradients* XLA:CPU computes fast (training): dilated
        convolutions as undilated ones over the dilation's phase sub-grids, single-channel
        inputs as one matrix product of patches, and undilated convolutions with a custom
        gradient (padded convolutions and patch GEMMs, :func:`_conv_gemm_grad`). Same
        values; forward and backward of a 3x3 layer are 2-4x faster this way on XLA:CPU.
    """

    dtype: jnp.dtype = jnp.dtype(jnp.float32)
    fast: bool = True
    differentiable: bool = False

    @property
    def precision(self) -> lax.Precision:
        if self.dtype == jnp.float32:
            return lax.Precision.HIGHEST
        return lax.Precision.DEFAULT


def compute_settings(
    compute_dtype: str | jnp.dtype | type = "float32",
    *,
    fast: bool = True,
    differentiable: bool = False,
) -> Compute:
    """Normalises a dtype name into :class:`Compute`; only float32 and bfloat16 are allowed.

    Raises:
      ValueError: another dtype.
    """
    dtype = jnp.dtype(compute_dtype)
    if dtype not in (jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16)):
        raise ValueError(f"compute_dtype must be float32 or bfloat16, got {compute_dtype!r}")
    return Compute(dtype=dtype, fast=fast, differentiable=differentiable)


def _valid_conv(
    x: jax.Array, kernel: jax.Array, stride: int, dilation: int, compute: Compute
) -> jax.Array:
    return lax.conv_general_dilated(
        x,
        kernel,
        (stride, stride),
        "VALID",
        rhs_dilation=(dilation, dilation),
        dimension_numbers=_DIMENSIONS,
        precision=compute.precision,
        preferred_element_type=jnp.float32,
    )


def _full_conv(x: jax.Array, kernel: jax.Array, compute: Compute) -> jax.Array:
    """The *full* undilated stride-1 convolution (padded by ``k - 1`` on every side, output
    ``H + k - 1``): XLA:CPU's fastest form of a 3x3 convolution on training crops (2-4x a VALID
    one, measured); its central ``H - k + 1`` outputs are the VALID convolution."""
    e = kernel.shape[0] - 1
    return lax.conv_general_dilated(
        x,
        kernel,
        (1, 1),
        ((e, e), (e, e)),
        dimension_numbers=_DIMENSIONS,
        precision=compute.precision,
        preferred_element_type=jnp.float32,
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv_gemm_grad(x: jax.Array, kernel: jax.Array, compute: Compute) -> jax.Array:
    """A VALID undilated stride-1 convolution whose gradients take XLA:CPU's fast paths.

    Forward and input gradient are padded convolutions (the input gradient is the full
    convolution of the output gradient with the flipped, transposed kernel); the weight
    gradient is ``k`` GEMMs of the output gradient with the input's patches
    (:func:`_weight_gradient`). XLA's own weight gradient of a convolution is its slowest CPU
    path (a 3x3 32->32 layer on 256 x 33²: ~1.3 s against ~0.2 s this way;
    ``bench/RESULTS.md``).
    """
    e = kernel.shape[0] - 1
    return _full_conv(x, kernel, compute)[:, e : x.shape[1], e : x.shape[2]]


def _conv_gemm_grad_fwd(
    x: jax.Array, kernel: jax.Array, compute: Compute
) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    return _conv_gemm_grad(x, kernel, compute), (x, kernel)


def _conv_gemm_grad_bwd(
    compute: Compute, residuals: tuple[jax.Array, jax.Array], g: jax.Array
) -> tuple[jax.Array, jax.Array]:
    x, kernel = residuals
    k = kernel.shape[0]
    gc = g.astype(compute.dtype)
    flipped = jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)
    gx = _full_conv(gc, flipped, compute)
    gw = _weight_gradient(x, gc, k, compute)
    return gx.astype(x.dtype), gw.astype(kernel.dtype)


def _weight_gradient(x: jax.Array, g: jax.Array, k: int, compute: Compute) -> jax.Array:
    """``gw[i, j, ci, co] = sum over pixels of x[b, y + i, x + j, ci] * g[b, y, x, co]``.

    As ``k`` GEMMs over contiguous memory instead of an im2col matrix (whose interleaving
    concatenation XLA:CPU copies at ~1 GB/s): with the flat row index ``r = (b, y, x)`` of the
    input's frame (``g`` zero-padded into it), the ``k`` taps of kernel row ``i`` are the
    ``k * C`` consecutive floats starting at row ``r + i * W`` — and for ``r = k * m + s`` those
    windows are the rows of a plain reshape of the flat input shifted by ``(i * W + s) * C``.
    """
    b, h, w, nin = x.shape
    _, ho, wo, nout = g.shape
    n = b * h * w
    m = -(-n // k)
    flat = jnp.pad(x.reshape(-1), (0, ((k - 1) * w + k * m + k - n) * nin))
    gf = jnp.pad(g, ((0, 0), (0, h - ho), (0, w - wo), (0, 0))).reshape(n, nout)
    gf = jnp.pad(gf, ((0, k * m - n), (0, 0)))
    # Rows ordered (s, m) <-> r = k * m + s, on both sides of each product.
    gs = jnp.concatenate([gf[s::k] for s in range(k)], axis=0)
    rows = []
    for i in range(k):
        windows = jnp.concatenate(
            [
                lax.slice_in_dim(flat, (i * w + s) * nin, (i * w + s + k * m) * nin).reshape(
                    m, k * nin
                )
                for s in range(k)
            ],
            axis=0,
        )
        rows.append(
            jnp.matmul(
                gs.T, windows, precision=compute.precision, preferred_element_type=jnp.float32
            )
        )
    # (i, co, (j, ci)) -> (i, j, ci, co)
    return jnp.stack(rows).reshape(k, nout, k, nin).transpose(0, 2, 3, 1)


_conv_gemm_grad.defvjp(_conv_gemm_grad_fwd, _conv_gemm_grad_bwd)


def _space_to_depth(x: jax.Array, kernel: jax.Array, s: int) -> tuple[jax.Array, jax.Array]:
    """A stride-``s`` convolution as a stride-1 one: ``s x s`` pixel blocks become channels
    and the kernel, zero-padded to a multiple of ``s``, is regrouped the same way."""
    b, h, w, c = x.shape
    k, _, nin, nout = kernel.shape
    hs, ws, ks = -(-h // s), -(-w // s), -(-k // s)
    x = jnp.pad(x, ((0, 0), (0, hs * s - h), (0, ws * s - w), (0, 0)))
    x = x.reshape(b, hs, s, ws, s, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, hs, ws, s * s * c)
    kernel = jnp.pad(kernel, ((0, ks * s - k), (0, ks * s - k), (0, 0), (0, 0)))
    kernel = kernel.reshape(ks, s, ks, s, nin, nout).transpose(0, 2, 1, 3, 4, 5)
    return x, kernel.reshape(ks, ks, s * s * nin, nout)


def _conv_for_gradients(
    x: jax.Array, kernel: jax.Array, stride: int, dilation: int, compute: Compute
) -> jax.Array:
    """VALID convolution in forms with fast gradients on XLA:CPU (see :class:`Compute`)."""
    k, _, nin, nout = kernel.shape
    h, w = x.shape[1], x.shape[2]
    out_h = (h - (k - 1) * dilation - 1) // stride + 1
    out_w = (w - (k - 1) * dilation - 1) // stride + 1
    if dilation > 1 and stride % dilation == 0:
        # Taps d apart on a grid subsampled by a multiple of d: subsample by d first.
        x = x[:, ::dilation, ::dilation]
        stride, dilation = stride // dilation, 1
    if nin == 1 and stride > 1 and dilation == 1:
        # The strided single-channel first layer: stride-1 over s x s blocks as channels.
        x, kernel = _space_to_depth(x, kernel, stride)
        k, nin, stride = kernel.shape[0], kernel.shape[2], 1
    if nin == 1:
        # One input channel: the weight gradient as a single (pixels x k^2) @ (k^2 x Cout)
        # product instead of XLA's slow single-channel convolution gradient.
        patches = lax.conv_general_dilated_patches(
            x,
            (k, k),
            (stride, stride),
            "VALID",
            rhs_dilation=(dilation, dilation),
            dimension_numbers=_DIMENSIONS,
            precision=compute.precision,
        )
        return jnp.einsum(
            "bhwp,po->bhwo",
            patches,
            kernel.reshape(k * k, nout),
            precision=compute.precision,
            preferred_element_type=jnp.float32,
        )
    if dilation > 1 and stride == 1:
        # A d-dilated convolution is an undilated one on each of the d x d phase sub-grids
        # (space-to-batch), interleaved back (batch-to-space).
        d = dilation
        b, c = x.shape[0], x.shape[3]
        hp, wp = -(-h // d) * d, -(-w // d) * d
        x = jnp.pad(x, ((0, 0), (0, hp - h), (0, wp - w), (0, 0)))
        x = x.reshape(b, hp // d, d, wp // d, d, c).transpose(0, 2, 4, 1, 3, 5)
        y = _undilated_conv(x.reshape(b * d * d, hp // d, wp // d, c), kernel, compute)
        ph, pw = y.shape[1], y.shape[2]
        y = y.reshape(b, d, d, ph, pw, nout).transpose(0, 3, 1, 4, 2, 5)
        y = y.reshape(b, ph * d, pw * d, nout)
        return y[:, :out_h, :out_w]
    if stride == 1 and dilation == 1:
        return _undilated_conv(x, kernel, compute)[:, :out_h, :out_w]
    return _valid_conv(x, kernel, stride, dilation, compute)


def _padded_conv(
    x: jax.Array, kernel: jax.Array, stride: int, dilation: int, compute: Compute
) -> jax.Array:
    """The VALID convolution, padded so XLA:CPU takes its fast path, then cropped back to the
    VALID outputs (bit-identical: they are exactly the outputs that saw no padding)."""
    extent = (kernel.shape[0] - 1) * dilation + 1
    h = (x.shape[1] - extent) // stride + 1
    w = (x.shape[2] - extent) // stride + 1
    pad = ((1, 1), (1, 1)) if stride == 1 else ((0, stride), (0, stride))
    lo = 1 if stride == 1 else 0
    y = lax.conv_general_dilated(
        x,
        kernel,
        (stride, stride),
        pad,
        rhs_dilation=(dilation, dilation),
        dimension_numbers=_DIMENSIONS,
        precision=compute.precision,
        preferred_element_type=jnp.float32,
    )
    return y[:, lo : lo + h, lo : lo + w]


def _undilated_conv(x: jax.Array, kernel: jax.Array, compute: Compute) -> jax.Array:
    """A VALID stride-1 convolution: with the custom gradient where the output map is large
    enough for the full convolution's extra border to be cheap (measured: 11² and up for 3x3
    layers), else plain VALID (small maps, e.g. the last layers of a training crop)."""
    e = kernel.shape[0] - 1
    if min(x.shape[1], x.shape[2]) - e >= 4 * e:
        return _conv_gemm_grad(x, kernel, compute)
    return _valid_conv(x, kernel, 1, 1, compute)


def conv2d(
    x: jax.Array,
    kernel: jax.Array,
    *,
    stride: int = 1,
    dilation: int = 1,
    compute: Compute = Compute(),
) -> jax.Array:
    """A VALID 2-D convolution, NHWC x HWIO -> NHWC float32.

    Args:
      x: input ``(B, H, W, Cin)``.
      kernel: ``(k, k, Cin, Cout)``.
      stride: spatial stride.
      dilation: kernel dilation.
      compute: dtype and fast/plain path (identical values, or within float32 rounding for
        the Winograd form).

    Returns:
      ``(B, H', W', Cout)`` float32 with ``H' = (H - (k - 1) * dilation - 1) // stride + 1``.
    """
    k = kernel.shape[0]
    x = x.astype(compute.dtype)
    kernel = kernel.astype(compute.dtype)
    if k == 1:
        if stride > 1:
            x = x[:, ::stride, ::stride]
        return jnp.einsum(
            "bhwi,io->bhwo",
            x,
            kernel[0, 0],
            precision=compute.precision,
            preferred_element_type=jnp.float32,
        )
    if compute.differentiable:
        return _conv_for_gradients(x, kernel, stride, dilation, compute)
    if (
        compute.fast
        and compute.dtype == jnp.float32
        and stride == 1
        and 3 <= k <= 7
        and kernel.shape[2] >= _WINOGRAD_MIN_CHANNELS
        and x.shape[1] - (k - 1) * dilation >= 4 * (9 - k) * dilation
        and (x.shape[1] - (k - 1) * dilation) * (x.shape[2] - (k - 1) * dilation)
        >= _WINOGRAD_MIN_PIXELS
    ):
        # Measured on XLA:CPU only: elsewhere (cuDNN, TPU) the library convolution stays.
        return lax.platform_dependent(
            x,
            kernel,
            cpu=lambda x, kernel: _winograd_rows_conv(x, kernel, dilation, compute),
            default=lambda x, kernel: _padded_conv(x, kernel, stride, dilation, compute),
        )
    if compute.fast and kernel.shape[2] > 1:
        return _padded_conv(x, kernel, stride, dilation, compute)
    return _valid_conv(x, kernel, stride, dilation, compute)


#: Interpolation points (and infinity) of the 8-point 1-D Winograd transforms F(9 - k, k), e.g.
#: F(6, 3) and F(4, 5): Lavin & Gray's (2016) well-conditioned choice. In float32 their outputs
#: differ from a direct convolution's by ~4e-6 of the output scale (test_conv_forms.py).
_WINOGRAD_POINTS = (0, 1, -1, 2, -2, Fraction(1, 2), Fraction(-1, 2))
#: Input channels from which the Winograd form beats XLA:CPU's direct convolution (measured
#: in dense mode: 5x5 64->128 1.65x, 128->256 2.3x, 32->64 only 1.1x; 3x3 64->64 on 1064²
#: 1.3x, 32->32 0.8x).
_WINOGRAD_MIN_CHANNELS = 64
#: Output pixels per image from which the Winograd form pays for its compilation (0.3-0.5 s per
#: layer, against 0.2-2 s saved per layer and 1024² micrograph): smaller maps, e.g. training
#: crops and small micrographs, keep the direct convolution.
_WINOGRAD_MIN_PIXELS = 512 * 512


@functools.cache
def winograd_matrices(m: int, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The matrices ``(A^T, G, B^T)`` of the 1-D Winograd correlation ``F(m, k)``.

    With ``n = m + k - 1`` interpolation points (the first ``n - 1`` of `_WINOGRAD_POINTS`, then
    infinity), for any ``d`` of length ``n`` and ``g`` of length ``k``:
    ``A^T @ ((G @ g) * (B^T @ d)) == [sum_j g[j] * d[i + j] for i in range(m)]``.
    ``A^T`` and ``G`` are Cook-Toom's (exact rationals); ``B^T`` solves that identity (float64,
    checked to 1e-9).

    Returns:
      float64 arrays ``(m, n)``, ``(n, k)``, ``(n, n)``.
    """
    n = m + k - 1
    points = [Fraction(p) for p in _WINOGRAD_POINTS[: n - 1]]
    if len(points) != n - 1:
        raise ValueError(f"F({m}, {k}) needs {n - 1} points, have {len(_WINOGRAD_POINTS)}")
    at = [[p**i for p in points] + [Fraction(int(i == m - 1))] for i in range(m)]
    g = []
    for p in points:
        f = math.prod((p - q for q in points if q != p), start=Fraction(1))
        g.append([p**i / f for i in range(k)])
    g.append([Fraction(int(i == k - 1)) for i in range(k)])
    a_t, g_mat = np.array(at, dtype=np.float64), np.array(g, dtype=np.float64)
    # sum_x A^T[i, x] G[x, j] B^T[x, t] == [t == i + j] for every output i and tap j.
    lhs = np.stack([a_t[i] * g_mat[:, j] for i in range(m) for j in range(k)])
    rhs = np.zeros((m * k, n))
    for i in range(m):
        rhs[i * k + np.arange(k), i + np.arange(k)] = 1.0
    b_t = np.linalg.lstsq(lhs, rhs, rcond=None)[0]
    if np.abs(lhs @ b_t - rhs).max() > 1e-9:  # pragma: no cover - a bad set of points
        raise ArithmeticError(f"no Winograd F({m}, {k}) transform for these points")
    b_t[np.abs(b_t) < 1e-12] = 0.0
    return a_t, g_mat, b_t


def _winograd_rows_conv(
    x: jax.Array, kernel: jax.Array, dilation: int, compute: Compute
) -> jax.Array:
    """A VALID stride-1 convolution, Winograd ``F(m, k)`` along rows, direct along columns.

    Output rows come in tiles of ``m`` (``dilation`` apart, so each dilation phase is tiled on
    its own): the ``n = 8`` input rows of a tile are transformed by ``B^T``, each of the ``n``
    transformed row sets is convolved along the columns with one row-transformed kernel
    ``(G @ kernel)[xi]`` (a ``1 x k`` convolution with ``k * Cin`` terms per output: still one
    efficient GEMM on XLA:CPU), and ``A^T`` maps the ``n`` results back to the ``m`` rows.
    ``n / (m k)`` of the direct convolution's products (4/9 for 3x3, 2/5 for 5x5); the
    full 2-D transform would leave GEMMs with only ``Cin`` terms, which run at a third of the
    speed here.
    """
    k, _, nin, nout = kernel.shape
    m = 9 - k  # n = m + k - 1 = 8
    d = dilation
    a_t, g_mat, b_t = winograd_matrices(m, k)
    n = m + k - 1
    b, h, w, _ = x.shape
    out_h, out_w = h - (k - 1) * d, w - (k - 1) * d
    step = d * m  # rows between the starts of two tiles of one phase
    tiles = -(-out_h // step)
    # Rows split by phase (row mod d): (b, d, rows // d, w, nin), one copy of the input.
    per_phase = tiles * m + n - 1
    x = jnp.pad(x, ((0, 0), (0, max(0, per_phase * d - h)), (0, 0), (0, 0)))[:, : per_phase * d]
    x = x.reshape(b, per_phase, d, w, nin).transpose(0, 2, 1, 3, 4)

    def rows(a: int) -> jax.Array:
        """Row ``a`` of every tile of every phase, ``(d * b, tiles, w, nin)``."""
        block = lax.slice_in_dim(x, a, a + m * (tiles - 1) + 1, stride=m, axis=2)
        return block.reshape(b * d, tiles, w, nin)

    taps = [rows(a) for a in range(n)]
    out: list[jax.Array | None] = [None] * m
    for xi in range(n):
        t = sum(float(b_t[xi, a]) * taps[a] for a in range(n) if b_t[xi, a] != 0)
        row_kernel = jnp.einsum(
            "j,jkio->kio", g_mat[xi].astype(np.float32), kernel, precision=compute.precision
        )
        y = lax.conv_general_dilated(
            t,
            row_kernel[None],
            (1, 1),
            ((0, 0), (1, 1)),  # padded: XLA:CPU's fast path (see the module docstring)
            rhs_dilation=(1, d),
            dimension_numbers=_DIMENSIONS,
            precision=compute.precision,
            preferred_element_type=jnp.float32,
        )[:, :, 1 : 1 + out_w]
        for p in range(m):
            if a_t[p, xi] != 0:
                term = float(a_t[p, xi]) * y
                out[p] = term if out[p] is None else out[p] + term
    # (p, b, phase, tile, w, c) -> output row tile * step + p * d + phase
    y = jnp.stack(out).reshape(m, b, d, tiles, out_w, nout).transpose(1, 3, 0, 2, 4, 5)
    return y.reshape(b, tiles * step, out_w, nout)[:, :out_h]


def _torch_uniform(key: jax.Array, shape: tuple[int, ...], fan_in: int) -> jax.Array:
    """torch's Conv2d default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), weight and bias.

    (``kaiming_uniform(a=sqrt(5))`` reduces to that bound.) With a concrete key the numbers are
    drawn on the host by numpy, seeded by the key: building a model then compiles nothing
    (one XLA compilation of the threefry sampler per weight shape dominated model construction
    on XLA:CPU). Under a trace (``jit``, ``nnx.eval_shape``) it falls back to ``jax.random``.
    """
    bound = 1.0 / math.sqrt(fan_in)
    try:
        seed = np.asarray(jax.random.key_data(key)).ravel()
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return jax.random.uniform(key, shape, jnp.float32, -bound, bound)
    draw = np.random.default_rng(seed.astype(np.uint64)).uniform(-bound, bound, shape)
    return jnp.asarray(draw, jnp.float32)


class Conv2d(nnx.Module):
    """A k x k convolution with torch's default initialisation; stride/dilation at call time.

    Attributes:
      kernel: ``(k, k, Cin, Cout)`` (HWIO).
      bias: ``(Cout,)`` or ``None``.
    """

    def __init__(self, nin: int, nout: int, kernel: int, *, bias: bool, rngs: nnx.Rngs) -> None:
        fan_in = nin * kernel * kernel
        self.kernel = nnx.Param(_torch_uniform(rngs.params(), (kernel, kernel, nin, nout), fan_in))
        self.bias = nnx.Param(_torch_uniform(rngs.params(), (nout,), fan_in)) if bias else None

    def __call__(
        self, x: jax.Array, *, stride: int = 1, dilation: int = 1, compute: Compute = Compute()
    ) -> jax.Array:
        y = conv2d(x, self.kernel[...], stride=stride, dilation=dilation, compute=compute)
        if self.bias is not None:
            y = y + self.bias[...]
        return y


class BatchNorm2d(nnx.Module):
    """Batch normalisation over (B, H, W) with torch semantics.

    Training normalises with the biased batch variance and updates the running statistics with
    momentum 0.1 using the *unbiased* batch variance; evaluation uses the running statistics.
    eps = 1e-5. Statistics are float32 whatever the compute dtype.
    """

    def __init__(self, n: int) -> None:
        self.scale = nnx.Param(jnp.ones((n,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((n,), jnp.float32))
        self.mean = nnx.BatchStat(jnp.zeros((n,), jnp.float32))
        self.var = nnx.BatchStat(jnp.ones((n,), jnp.float32))

    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        x = x.astype(jnp.float32)
        if train:
            count = x.shape[0] * x.shape[1] * x.shape[2]
            mean = jnp.mean(x, axis=(0, 1, 2))
            var = jnp.mean(jnp.square(x - mean), axis=(0, 1, 2))
            unbiased = var * (count / max(count - 1, 1))
            self.mean[...] = (1 - BN_MOMENTUM) * self.mean[...] + BN_MOMENTUM * lax.stop_gradient(
                mean
            )
            self.var[...] = (1 - BN_MOMENTUM) * self.var[...] + BN_MOMENTUM * lax.stop_gradient(
                unbiased
            )
        else:
            mean, var = self.mean[...], self.var[...]
        inv = lax.rsqrt(var + BN_EPS) * self.scale[...]
        return (x - mean) * inv + self.bias[...]


class PReLU(nnx.Module):
    """``nn.PReLU()``: one learnable negative slope shared by all channels (init 0.25)."""

    def __init__(self) -> None:
        self.weight = nnx.Param(jnp.full((1,), PRELU_INIT, jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.where(x >= 0, x, self.weight[...][0] * x)


class ConvBlock(nnx.Module):
    """conv -> [BN] -> ReLU/PReLU (:class:`~jaxpick.models.plan.ConvSpec`)."""

    def __init__(self, spec: ConvSpec, *, rngs: nnx.Rngs) -> None:
        self.spec = spec
        self.conv = Conv2d(spec.nin, spec.nout, spec.kernel, bias=spec.bias, rngs=rngs)
        self.bn = BatchNorm2d(spec.nout) if spec.bn else None
        self.act = PReLU() if spec.activation == "prelu" else None

    def __call__(
        self,
        x: jax.Array,
        place: Placement,
        *,
        train: bool,
        key: jax.Array | None,
        compute: Compute,
    ) -> jax.Array:
        y = self.conv(
            x, stride=place.stride, dilation=self.spec.dilation * place.scale, compute=compute
        )
        if self.bn is not None:
            y = self.bn(y, train=train)
        y = jax.nn.relu(y) if self.act is None else self.act(y)
        return y.astype(compute.dtype)


class ResidBlock(nnx.Module):
    """Topaz's ``ResidA`` (:class:`~jaxpick.models.plan.ResidSpec`)."""

    def __init__(self, spec: ResidSpec, *, rngs: nnx.Rngs) -> None:
        self.spec = spec
        # Creation order = torch's registration order (proj first), so a fresh model draws
        # its random weights in the same order as Topaz.
        self.proj = Conv2d(spec.nin, spec.nout, 1, bias=False, rngs=rngs) if spec.has_proj else None
        self.conv0 = Conv2d(spec.nin, spec.nhidden, 3, bias=spec.bias, rngs=rngs)
        self.bn0 = BatchNorm2d(spec.nhidden) if spec.bn else None
        self.conv1 = Conv2d(spec.nhidden, spec.nout, 3, bias=spec.bias, rngs=rngs)
        self.bn1 = BatchNorm2d(spec.nout) if spec.bn else None

    def __call__(
        self,
        x: jax.Array,
        place: Placement,
        *,
        train: bool,
        key: jax.Array | None,
        compute: Compute,
    ) -> jax.Array:
        d0 = place.scale
        d1 = self.spec.dilation * place.scale
        h = self.conv0(x, dilation=d0, compute=compute)
        if self.bn0 is not None:
            h = self.bn0(h, train=train)
        h = jax.nn.relu(h).astype(compute.dtype)
        y = self.conv1(h, stride=place.stride, dilation=d1, compute=compute)
        edge = d0 + d1
        residual = x[:, edge:-edge, edge:-edge]
        if self.proj is not None:
            residual = self.proj(residual, stride=place.stride, compute=compute)
        elif place.stride > 1:
            residual = residual[:, :: place.stride, :: place.stride]
        y = y + residual.astype(jnp.float32)
        if self.bn1 is not None:
            y = self.bn1(y, train=train)
        return jax.nn.relu(y).astype(compute.dtype)


class MaxPool(nnx.Module):
    """Max pooling (:class:`~jaxpick.models.plan.PoolSpec`); padding counts as -inf, like torch."""

    def __init__(self, spec: PoolSpec, *, rngs: nnx.Rngs) -> None:
        self.spec = spec

    def __call__(
        self,
        x: jax.Array,
        place: Placement,
        *,
        train: bool,
        key: jax.Array | None,
        compute: Compute,
    ) -> jax.Array:
        k, d = self.spec.kernel, place.scale
        p = self.spec.padding * place.scale
        return lax.reduce_window(
            x,
            jnp.array(-jnp.inf, x.dtype),
            lax.max,
            (1, k, k, 1),
            (1, place.stride, place.stride, 1),
            ((0, 0), (p, p), (p, p), (0, 0)),
            window_dilation=(1, d, d, 1),
        )


class Dropout(nnx.Module):
    """``nn.Dropout(p)``: in training, zero with probability p and scale by 1/(1-p)."""

    def __init__(self, spec: DropoutSpec, *, rngs: nnx.Rngs) -> None:
        self.spec = spec

    def __call__(
        self,
        x: jax.Array,
        place: Placement,
        *,
        train: bool,
        key: jax.Array | None,
        compute: Compute,
    ) -> jax.Array:
        rate = self.spec.rate
        if not train or rate == 0:
            return x
        if key is None:
            raise ValueError("key: a PRNG key is needed for dropout in training mode")
        keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
        return jnp.where(keep, x / jnp.asarray(1.0 - rate, x.dtype), jnp.zeros((), x.dtype))


#: Plan layer type -> module class (the builder's dispatch table).
LAYER_MODULES: dict[type, type[nnx.Module]] = {
    ConvSpec: ConvBlock,
    ResidSpec: ResidBlock,
    PoolSpec: MaxPool,
    DropoutSpec: Dropout,
}
