"""The autoencoder generator (``jaxpick.models.generator``) against Topaz's ``ConvGenerator``.

torch outputs come from ``tests/data/topaz_losses.npz``
(``tests/data/make_topaz_loss_fixtures.py``).
"""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxpick.models import ModelConfig
from jaxpick.models.generator import (
    Generator,
    conv_transpose2d,
    generator_depth,
    output_side,
    reconstruction_loss,
)

FIXTURES = np.load(Path(__file__).resolve().parent.parent / "data" / "topaz_losses.npz")
DECONV_CASES = sorted({k.split("/")[0] for k in FIXTURES.files if k.startswith("deconv")})


def conv_transpose_reference(x: np.ndarray, weight: np.ndarray, stride: int, padding: int):
    """torch's ConvTranspose2d by its definition: scatter each input pixel times the kernel.

    ``x`` NHWC, ``weight`` torch's ``[in, out, k, k]``; returns NHWC float64.
    """
    b, h, w, _ = x.shape
    _, cout, k, _ = weight.shape
    full = np.zeros((b, (h - 1) * stride + k, (w - 1) * stride + k, cout))
    for iy in range(h):
        for ix in range(w):
            # (b, cin) x (cin, cout, k, k) -> (b, k, k, cout)
            patch = np.einsum("bi,iokl->bklo", x[:, iy, ix].astype(np.float64), weight)
            full[:, iy * stride : iy * stride + k, ix * stride : ix * stride + k] += patch
    ho = (h - 1) * stride - 2 * padding + k
    wo = (w - 1) * stride - 2 * padding + k
    return full[:, padding : padding + ho, padding : padding + wo]


@pytest.mark.parametrize(
    ("arch", "pooling", "depth", "side"),
    [
        ("resnet8", "none", 3, 63),
        ("resnet8", "max", 3, 63),
        ("resnet16", "none", 3, 63),
        ("resnet6", "none", 3, 63),
        ("conv31", "none", 2, 31),
        ("conv63", "none", 3, 63),
        ("conv127", "none", 4, 127),
    ],
)
def test_depth_and_side(arch: str, pooling: str, depth: int, side: int) -> None:
    config = ModelConfig(arch=arch, units=4, pooling=pooling)
    assert generator_depth(config.receptive_field) == depth
    assert output_side(depth) == side
    assert side <= config.receptive_field


def test_depth_errors() -> None:
    assert generator_depth(7) == 0
    with pytest.raises(ValueError, match="receptive_field"):
        generator_depth(5)
    with pytest.raises(ValueError, match="depth"):
        output_side(-1)


@pytest.mark.parametrize("name", DECONV_CASES)
def test_conv_transpose_matches_torch(name: str) -> None:
    x = FIXTURES[f"{name}/x"]
    weight = FIXTURES[f"{name}/weight"]
    stride, padding = int(FIXTURES[f"{name}/stride"]), int(FIXTURES[f"{name}/padding"])
    want = FIXTURES[f"{name}/out"]
    got = conv_transpose2d(x, weight.transpose(2, 3, 0, 1), stride=stride, padding=padding)
    assert got.shape == want.shape
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)
    reference = conv_transpose_reference(x, weight, stride, padding)
    np.testing.assert_allclose(reference, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("k", "stride", "padding", "n", "want"),
    [(4, 1, 0, 1, 4), (4, 2, 1, 4, 8), (4, 2, 1, 7, 14), (3, 2, 1, 32, 63), (3, 2, 1, 5, 9)],
)
def test_conv_transpose_sizes(k: int, stride: int, padding: int, n: int, want: int) -> None:
    rng = np.random.default_rng(n)
    x = rng.normal(size=(1, n, n + 1, 2)).astype(np.float32)
    weight = rng.normal(size=(2, 3, k, k)).astype(np.float32)
    got = conv_transpose2d(x, weight.transpose(2, 3, 0, 1), stride=stride, padding=padding)
    assert got.shape == (1, want, want + stride, 3)
    reference = conv_transpose_reference(x, weight, stride, padding)
    np.testing.assert_allclose(np.asarray(got), reference, rtol=1e-5, atol=1e-5)


def test_conv_transpose_errors() -> None:
    with pytest.raises(ValueError, match="padding"):
        conv_transpose2d(jnp.zeros((1, 2, 2, 1)), jnp.zeros((3, 3, 1, 1)), stride=1, padding=3)
    with pytest.raises(ValueError, match="stride"):
        conv_transpose2d(jnp.zeros((1, 2, 2, 1)), jnp.zeros((3, 3, 1, 1)), stride=0, padding=1)


def topaz_generator() -> Generator:
    """Our generator carrying the fixture's torch ``ConvGenerator(6, units=4, depth=1)`` state."""
    generator = Generator(6, units=4, depth=1, rngs=nnx.Rngs(0))
    state = {k.removeprefix("generator/state/"): FIXTURES[k] for k in FIXTURES.files}
    for j, deconv in enumerate(generator.deconvs):
        weight = state[f"layers.{3 * j}.weight"]
        assert deconv.kernel[...].shape == weight.transpose(2, 3, 0, 1).shape
        deconv.kernel[...] = jnp.asarray(weight.transpose(2, 3, 0, 1))
    for j, bn in enumerate(generator.bns):
        prefix = f"layers.{3 * j + 1}"
        bn.scale[...] = jnp.asarray(state[f"{prefix}.weight"])
        bn.bias[...] = jnp.asarray(state[f"{prefix}.bias"])
        bn.mean[...] = jnp.asarray(state[f"{prefix}.running_mean"])
        bn.var[...] = jnp.asarray(state[f"{prefix}.running_var"])
    return generator


@functools.partial(nnx.jit, static_argnames=("train",))
def generate(generator: Generator, z: jax.Array, *, train: bool) -> jax.Array:
    return generator(z, train=train)


def test_generator_matches_topaz_eval() -> None:
    generator = topaz_generator()
    z = jnp.asarray(FIXTURES["generator/z"])
    want = FIXTURES["generator/out_eval"]
    got = generate(generator, z, train=False)
    assert got.shape == want.shape == (3, int(FIXTURES["generator/width"]), 15)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)
    # The picker's (B, 1, 1, latent) features are accepted as they are.
    got4 = generate(generator, z[:, None, None, :], train=False)
    np.testing.assert_array_equal(np.asarray(got4), np.asarray(got))


def test_generator_matches_topaz_train() -> None:
    generator = topaz_generator()
    z = jnp.asarray(FIXTURES["generator/z"])
    got = generate(generator, z, train=True)
    np.testing.assert_allclose(np.asarray(got), FIXTURES["generator/out_train"], atol=1e-4)
    for j, bn in enumerate(generator.bns):
        prefix = f"generator/state_after/layers.{3 * j + 1}"
        np.testing.assert_allclose(
            np.asarray(bn.mean[...]), FIXTURES[f"{prefix}.running_mean"], rtol=1e-5, atol=1e-6
        )
        np.testing.assert_allclose(
            np.asarray(bn.var[...]), FIXTURES[f"{prefix}.running_var"], rtol=1e-5, atol=1e-6
        )


def test_parameter_count_matches_topaz() -> None:
    generator = nnx.eval_shape(lambda: Generator(128, units=32, depth=3, rngs=nnx.Rngs(0)))
    count = sum(x.size for x in jax.tree.leaves(nnx.state(generator, nnx.Param)))
    assert count == int(FIXTURES["generator/params_resnet8_u32"])


def test_torch_initialisation_bounds() -> None:
    generator = Generator(16, units=8, depth=1, rngs=nnx.Rngs(3))
    for deconv in generator.deconvs:
        kernel = np.asarray(deconv.kernel[...])
        k, _, _, nout = kernel.shape
        bound = 1 / np.sqrt(nout * k * k)  # torch's fan-in of a transposed weight: out * k * k
        assert np.abs(kernel).max() <= bound
        assert np.abs(kernel).max() > 0.9 * bound


@pytest.mark.parametrize(("depth", "side"), [(0, 7), (2, 31), (4, 127)])
def test_generator_shapes(depth: int, side: int) -> None:
    generator = Generator(5, units=2, depth=depth, rngs=nnx.Rngs(0))
    assert generator.side == side
    assert len(generator.deconvs) == depth + 2
    assert len(generator.bns) == depth + 1
    out = generate(generator, jnp.ones((2, 5)), train=False)
    assert out.shape == (2, side, side)
    assert out.dtype == jnp.float32


def test_generator_rejects_bad_latent() -> None:
    generator = Generator(5, units=2, depth=0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="z must be"):
        generator(jnp.ones((2, 4)), train=False)
    with pytest.raises(ValueError, match="z must be"):
        generator(jnp.ones((2, 2, 2, 5)), train=False)
    with pytest.raises(ValueError, match="latent_dim"):
        Generator(0, depth=1, rngs=nnx.Rngs(0))


def test_reconstruction_loss_matches_topaz_formula() -> None:
    rng = np.random.default_rng(0)
    crops = rng.normal(size=(3, 71, 71)).astype(np.float32)
    recon = rng.normal(size=(3, 63, 63)).astype(np.float32)
    # topaz/methods.py::autoencoder_loss: pad = (71 - 63) // 2 = 4, X[:, pad:-pad, pad:-pad]
    want = np.mean(np.sum((crops[:, 4:-4, 4:-4] - recon).astype(np.float64) ** 2, axis=(1, 2)))
    got = reconstruction_loss(crops, recon)
    assert float(got) == pytest.approx(want, rel=1e-6)
    # No cropping when the sides agree (conv31/63/127).
    same = reconstruction_loss(crops[:, 4:-4, 4:-4], recon)
    assert float(same) == pytest.approx(want, rel=1e-6)


def test_reconstruction_loss_masking() -> None:
    rng = np.random.default_rng(1)
    crops = rng.normal(size=(4, 31, 31)).astype(np.float32)
    recon = rng.normal(size=(4, 31, 31)).astype(np.float32)
    recon[2] = np.nan  # a padded slot may hold anything
    weights = jnp.array([1.0, 1.0, 0.0, 1.0])
    keep = np.array([0, 1, 3])

    def loss(r: jax.Array) -> jax.Array:
        return reconstruction_loss(crops, r, weights=weights)

    value, grad = jax.value_and_grad(loss)(jnp.asarray(recon))
    want = reconstruction_loss(crops[keep], recon[keep])
    assert float(value) == pytest.approx(float(want), rel=1e-6)
    grad = np.asarray(grad)
    np.testing.assert_array_equal(grad[2], 0)
    want_grad = jax.grad(lambda r: reconstruction_loss(crops[keep], r))(jnp.asarray(recon[keep]))
    np.testing.assert_allclose(grad[keep], np.asarray(want_grad), rtol=1e-6)


def test_reconstruction_loss_shape_errors() -> None:
    with pytest.raises(ValueError, match="do not match"):
        reconstruction_loss(jnp.zeros((2, 70, 70)), jnp.zeros((2, 63, 63)))
    with pytest.raises(ValueError, match="share B"):
        reconstruction_loss(jnp.zeros((2, 71, 71)), jnp.zeros((3, 63, 63)))
    with pytest.raises(ValueError, match="weights"):
        reconstruction_loss(jnp.zeros((2, 71, 71)), jnp.zeros((2, 63, 63)), weights=jnp.ones(3))


def test_generator_gradients_finite() -> None:
    """Training-mode generator + reconstruction loss: finite gradients for every parameter."""
    config = ModelConfig(arch="conv31", units=2)
    latent = config.latent_dim
    generator = Generator(latent, units=2, depth=generator_depth(31), rngs=nnx.Rngs(1))
    crops = jax.random.normal(jax.random.key(0), (4, 31, 31))
    features = jax.random.normal(jax.random.key(1), (4, 1, 1, latent))

    @nnx.jit
    def step(generator: Generator, features: jax.Array) -> tuple[jax.Array, nnx.State]:
        def loss(generator: Generator, features: jax.Array) -> jax.Array:
            return reconstruction_loss(crops, generator(features, train=True))

        return nnx.value_and_grad(loss)(generator, features)

    value, grads = step(generator, features)
    assert np.isfinite(float(value))
    for leaf in jax.tree.leaves(grads):
        assert np.isfinite(np.asarray(leaf)).all()
