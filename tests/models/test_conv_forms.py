"""The training forms of the convolution (phase sub-grids for dilation, space-to-depth for the
strided first layer, patches for one input channel, the custom full-convolution/GEMM gradient)
give the values and gradients of the plain VALID convolution."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpick.models.layers import Compute, conv2d

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
