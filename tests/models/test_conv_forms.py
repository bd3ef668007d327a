"""The other forms of the convolution give the plain VALID convolution's values: the training
forms (phase sub-grids for dilation, space-to-depth for the strided first layer, patches for one
input channel, the custom full-convolution/GEMM gradient) and their gradients, and the 1-D
Winograd form that dense scoring uses for wide 3x3 to 7x7 layers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpick.models import layers
from jaxpick.models.layers import Compute, conv2d, winograd_matrices

CASES = [
    # (height, nin, nout, kernel, stride, dilation)
    (71, 1, 8, 7, 2, 1),  # resnet first layer: space-to-depth, then the custom gradient
    (29, 1, 4, 5, 3, 1),  # space-to-depth with a stride not dividing the kernel or the size
    (30, 3, 4, 3, 4, 2),  # stride a multiple of the dilation: subsample, then strided
    (33, 8, 8, 3, 1, 1),  # undilated, large map: full convolutions + windowed weight gradient
    (30, 4, 6, 5, 1, 1),  # the same with a 5x5 kernel
    (40, 1, 4, 5, 1, 2),  # one channel, dilated
    (33, 8, 8, 3, 1, 2),  # ResidA conv1: phases
    (30, 8, 4, 3, 1, 3),  # phases with a height not divisible by the dilation
    (25, 8, 16, 3, 2, 2),  # stride = dilation: subsample
    (9, 16, 8, 3, 2, 1),  # plain strided
    (5, 16, 32, 5, 1, 1),  # the last resnet8 layer
]


@pytest.mark.parametrize(("height", "nin", "nout", "kernel", "stride", "dilation"), CASES)
def test_training_forms_equal_valid(
    height: int, nin: int, nout: int, kernel: int, stride: int, dilation: int
) -> None:
    rng = np.random.default_rng(height + nin)
    x = jnp.asarray(rng.normal(size=(2, height, height + 3, nin)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(kernel, kernel, nin, nout)), jnp.float32)

    def loss(w: jax.Array, x: jax.Array, compute: Compute) -> jax.Array:
        y = conv2d(x, w, stride=stride, dilation=dilation, compute=compute)
        return jnp.sum(y * jnp.cos(y))

    plain, trained = Compute(fast=False), Compute(differentiable=True)
    want = conv2d(x, w, stride=stride, dilation=dilation, compute=plain)
    got = conv2d(x, w, stride=stride, dilation=dilation, compute=trained)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    g_want = jax.grad(loss, argnums=(0, 1))(w, x, plain)
    g_got = jax.grad(loss, argnums=(0, 1))(w, x, trained)
    for a, b in zip(g_got, g_want, strict=True):
        scale = float(jnp.abs(b).max())
        np.testing.assert_allclose(a, b, rtol=0, atol=2e-5 * scale)


@pytest.mark.parametrize(("m", "k"), [(4, 5), (2, 7), (3, 6), (6, 3)])
def test_winograd_matrices_compute_a_correlation(m: int, k: int) -> None:
    a_t, g, b_t = winograd_matrices(m, k)
    n = m + k - 1
    assert (a_t.shape, g.shape, b_t.shape) == ((m, n), (n, k), (n, n))
    rng = np.random.default_rng(m * k)
    for _ in range(5):
        d, taps = rng.normal(size=m + k - 1), rng.normal(size=k)
        want = np.correlate(d, taps, mode="valid")
        np.testing.assert_allclose(a_t @ ((g @ taps) * (b_t @ d)), want, rtol=0, atol=1e-12)


WINOGRAD_CASES = [
    # (height, width, nin, nout, kernel, dilation): dense-scoring layers, taking the Winograd
    # form (kernel 3-7, >= 64 input channels, >= 4 tiles of output rows).
    (40, 37, 64, 8, 5, 1),  # heights that are not a multiple of the tile (4 rows)
    (97, 41, 64, 16, 5, 4),  # resnet8's last layer in dense mode: dilation 4, 4 phases per tile
    (61, 30, 64, 8, 5, 2),
    (30, 25, 64, 8, 7, 1),  # F(2, 7)
    (75, 30, 64, 8, 3, 2),  # F(6, 3): the 64-channel 3x3 layers of the ResNets
    (40, 33, 72, 8, 6, 1),  # F(3, 6)
]


@pytest.mark.parametrize(("height", "width", "nin", "nout", "kernel", "dilation"), WINOGRAD_CASES)
def test_winograd_form_equals_valid(
    height: int, width: int, nin: int, nout: int, kernel: int, dilation: int, monkeypatch
) -> None:
    monkeypatch.setattr(layers, "_WINOGRAD_MIN_PIXELS", 0)  # small maps, for the test's speed
    calls = []
    original = layers._winograd_rows_conv
    monkeypatch.setattr(layers, "_winograd_rows_conv", lambda *a: calls.append(a) or original(*a))
    rng = np.random.default_rng(height + width)
    x = jnp.asarray(rng.normal(size=(2, height, width, nin)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(kernel, kernel, nin, nout)) / (kernel * nin**0.5), jnp.float32)
    want = conv2d(x, w, dilation=dilation, compute=Compute(fast=False))
    got = conv2d(x, w, dilation=dilation, compute=Compute())
    assert calls, "the Winograd form was not used"
    assert got.shape == want.shape
    # Float32 rounding of the transforms: ~4e-6 of the output scale (a direct convolution's own
    # rounding is ~1e-6); the pretrained detectors' score maps stay within 2e-5 of Topaz's.
    scale = float(jnp.abs(want).max())
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * scale)


def test_winograd_form_is_not_used_where_it_is_slower(monkeypatch) -> None:
    monkeypatch.setattr(layers, "_winograd_rows_conv", lambda *a: pytest.fail("Winograd used"))
    conv2d(jnp.ones((1, 100, 100, 64)), jnp.ones((5, 5, 64, 4)), compute=Compute())  # small map
    monkeypatch.setattr(layers, "_WINOGRAD_MIN_PIXELS", 0)
    x = jnp.ones((1, 40, 40, 64), jnp.float32)
    conv2d(x[..., :32], jnp.ones((5, 5, 32, 4)), compute=Compute())  # few input channels
    conv2d(x[..., :32], jnp.ones((3, 3, 32, 4)), compute=Compute())
    conv2d(x[:, :18], jnp.ones((5, 5, 64, 4)), compute=Compute())  # 14 output rows: < 4 tiles
    conv2d(x, jnp.ones((5, 5, 64, 4)), compute=Compute(dtype=jnp.dtype(jnp.bfloat16)))
    conv2d(x, jnp.ones((5, 5, 64, 4)), compute=Compute(differentiable=True))  # training


def test_winograd_form_is_cpu_only(monkeypatch) -> None:
    # Chosen by the lowering platform: GPUs and TPUs keep their library convolution.
    monkeypatch.setattr(layers, "_WINOGRAD_MIN_PIXELS", 0)
    x, w = jnp.ones((1, 80, 80, 64)), jnp.ones((5, 5, 64, 8))
    traced = jax.jit(lambda x, w: conv2d(x, w, dilation=2)).trace(x, w)
    for platform, convolutions in (("cpu", 8), ("cuda", 1), ("tpu", 1)):
        text = traced.lower(lowering_platforms=(platform,)).as_text()
        assert text.count("stablehlo.convolution") == convolutions, platform
