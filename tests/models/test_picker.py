"""The picker network: dense == patch on windows, fast == plain, jit/vmap, bf16, train mode."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxpick.models import ModelConfig, Picker, build_model, make_dense_scorer
from jaxpick.models.layers import BN_EPS, BatchNorm2d, Compute, conv2d
from tests.models.helpers import CENTRES, assert_close, forward, randomised, windows

CONFIGS = [
    ModelConfig(arch="resnet8", units=2, bn=True),
    ModelConfig(arch="resnet8", units=2, bn=False, pooling="max", dropout=0.3),
    ModelConfig(arch="resnet16", units=2, bn=True, pooling="max"),
    ModelConfig(arch="resnet16", units=2, bn=False),
    ModelConfig(arch="resnet6", units=2, bn=True),
    ModelConfig(arch="conv31", units=2, bn=True),
    ModelConfig(arch="conv63", units=2, bn=False, dropout=0.1),
    ModelConfig(arch="conv127", units=1, bn=True, unit_scaling=1),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.arch}-{c.pooling}-bn{int(c.bn)}")
def test_dense_equals_patch_on_centred_windows(config: ModelConfig) -> None:
    model = randomised(config)
    image = np.random.default_rng(1).normal(size=(24, 28)).astype(np.float32)
    dense = np.asarray(forward(model, image[None], dense=True))[0]
    assert dense.shape == image.shape
    assert dense.dtype == np.float32
    crops = windows(image, config.receptive_field, CENTRES)
    patch = np.asarray(forward(model, crops))
    assert patch.shape == (len(CENTRES), 1, 1)
    assert_close(patch[:, 0, 0], dense[tuple(np.array(CENTRES).T)])


def test_conv_pooling_dense_is_centred_and_same_size() -> None:
    # Topaz's filled conv* with max pooling is misaligned (unscaled pool padding); ours keeps the
    # input size. Max pooling with padding makes dense != patch near the padded border of a
    # window, so only the size and a finite map are checked here.
    model = randomised(ModelConfig(arch="conv31", units=2, bn=True, pooling="max"))
    dense = forward(model, jnp.ones((2, 20, 22)), dense=True)
    assert dense.shape == (2, 20, 22)
    assert bool(jnp.all(jnp.isfinite(dense)))


def test_fast_path_equals_plain_valid() -> None:
    # Same values; bit-identical for most shapes, float32 rounding apart for a few (XLA picks
    # its convolution algorithm by shape).
    config = ModelConfig(arch="resnet8", units=3, bn=True)
    model = randomised(config, seed=3)
    x = jax.random.normal(jax.random.key(0), (2, 33, 41))
    assert_close(forward(model, x, dense=True), forward(model, x, dense=True, fast=False))
    # Patch mode with strided layers, crops bigger than the receptive field (odd and even).
    size = config.receptive_field + 6
    crops = jax.random.normal(jax.random.key(1), (2, size, size + 3))
    assert_close(forward(model, crops), forward(model, crops, fast=False))


@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("dilation", [1, 4])
def test_padded_conv_equals_valid_conv(stride: int, dilation: int) -> None:
    # The XLA:CPU trick the fast path relies on: pad, convolve, crop == VALID.
    kx, kw = jax.random.split(jax.random.key(stride * 10 + dilation))
    x = jax.random.normal(kx, (1, 29, 26, 32))
    w = jax.random.normal(kw, (3, 3, 32, 8))
    conv = jax.jit(conv2d, static_argnames=("stride", "dilation", "compute"))
    fast = conv(x, w, stride=stride, dilation=dilation, compute=Compute(fast=True))
    plain = conv(x, w, stride=stride, dilation=dilation, compute=Compute(fast=False))
    assert fast.shape == plain.shape
    assert_close(fast, plain, rel=1e-6)


def test_jit_and_vmap() -> None:
    config = ModelConfig(arch="resnet8", units=2, bn=True)
    model = randomised(config)
    x = jax.random.normal(jax.random.key(0), (3, 1, 30, 26))
    reference = np.stack([np.asarray(forward(model, xi, dense=True)) for xi in x])
    scorer = make_dense_scorer(model)
    batched = jax.vmap(scorer)(x)
    assert batched.shape == (3, 1, 30, 26)
    assert_close(batched, reference)
    crops = jax.random.normal(jax.random.key(2), (4, 71, 71))
    assert forward(model, crops).shape == (4, 1, 1)


def test_bfloat16_scoring_is_close() -> None:
    model = randomised(ModelConfig(arch="resnet8", units=4, bn=True))
    x = jax.random.normal(jax.random.key(0), (1, 40, 36))
    ref = np.asarray(forward(model, x, dense=True))
    scorer = make_dense_scorer(model, compute_dtype="bfloat16")
    low = scorer(x)
    assert low.dtype == jnp.float32
    assert low.shape == ref.shape
    assert np.abs(np.asarray(low) - ref).max() <= 0.05 * np.abs(ref).max()
    with pytest.raises(ValueError, match="float32 or bfloat16"):
        make_dense_scorer(model, compute_dtype="float16")


def test_batchnorm_has_torch_semantics() -> None:
    bn = BatchNorm2d(3)
    bn.scale[...] = jnp.array([1.0, 2.0, 0.5])
    bn.bias[...] = jnp.array([0.0, -1.0, 0.25])
    x = np.random.default_rng(0).normal(2.0, 3.0, size=(4, 5, 6, 3)).astype(np.float32)
    y = np.asarray(bn(jnp.asarray(x), train=True))
    mean = x.mean(axis=(0, 1, 2))
    var = x.var(axis=(0, 1, 2))  # biased: used to normalise
    want = (x - mean) / np.sqrt(var + BN_EPS) * [1.0, 2.0, 0.5] + [0.0, -1.0, 0.25]
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4)
    n = x.size // 3
    np.testing.assert_allclose(np.asarray(bn.mean[...]), 0.1 * mean, rtol=1e-5)
    # running variance: momentum 0.1 towards the *unbiased* batch variance
    np.testing.assert_allclose(np.asarray(bn.var[...]), 0.9 + 0.1 * var * n / (n - 1), rtol=1e-5)
    # evaluation uses the running statistics
    y_eval = np.asarray(bn(jnp.asarray(x), train=False))
    rm, rv = np.asarray(bn.mean[...]), np.asarray(bn.var[...])
    np.testing.assert_allclose(
        y_eval,
        (x - rm) / np.sqrt(rv + BN_EPS) * [1.0, 2.0, 0.5] + [0.0, -1.0, 0.25],
        rtol=1e-4,
        atol=1e-4,
    )


def test_train_mode_updates_statistics_and_uses_dropout() -> None:
    config = ModelConfig(arch="conv31", units=2, bn=True, dropout=0.5)
    model = build_model(config, rngs=nnx.Rngs(0))
    crops = jax.random.normal(jax.random.key(0), (4, 31, 31))
    before = np.asarray(model.features[0].bn.mean[...])

    @nnx.jit
    def train_forward(model: Picker, crops: jax.Array, key: jax.Array) -> jax.Array:
        return model(crops, train=True, key=key)

    with pytest.raises(ValueError, match="key"):
        model(crops, train=True)
    a = train_forward(model, crops, jax.random.key(1))
    b = train_forward(model, crops, jax.random.key(2))
    assert not np.allclose(np.asarray(a), np.asarray(b))  # dropout masks differ
    assert not np.allclose(np.asarray(model.features[0].bn.mean[...]), before)
    # Evaluation is deterministic and needs no key.
    np.testing.assert_array_equal(
        np.asarray(forward(model, crops)), np.asarray(forward(model, crops))
    )
    with pytest.raises(ValueError, match="inference only"):
        model(crops, dense=True, train=True)


def test_gradients_flow_in_train_mode() -> None:
    model = build_model(ModelConfig(arch="conv31", units=2, bn=True), rngs=nnx.Rngs(0))
    crops = jax.random.normal(jax.random.key(0), (3, 31, 31))

    def loss(model: Picker) -> jax.Array:
        return jnp.mean(model(crops, train=True) ** 2)

    grads = nnx.jit(nnx.grad(loss))(model)
    norms = [float(jnp.abs(g).sum()) for g in jax.tree.leaves(nnx.state(grads, nnx.Param))]
    assert all(np.isfinite(norms))
    assert sum(norms) > 0


@pytest.mark.parametrize("shape", [(1, 40, 40), (2, 40, 41, 1)], ids=["BHW", "BHW1"])
def test_input_layouts(shape: tuple[int, ...]) -> None:
    model = build_model(ModelConfig(arch="conv31", units=2), rngs=nnx.Rngs(0))
    out = forward(model, jnp.zeros(shape, jnp.float16), dense=True)
    assert out.shape == shape[:3]
    assert out.dtype == jnp.float32


def test_input_errors() -> None:
    model = build_model(ModelConfig(arch="conv31", units=2), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="expected"):
        model(jnp.zeros((40, 40)), dense=True)
    with pytest.raises(ValueError, match="expected"):
        model(jnp.zeros((1, 40, 40, 3)), dense=True)
    with pytest.raises(ValueError, match="at least 31"):
        model(jnp.zeros((1, 30, 40)))


def test_model_properties() -> None:
    model = build_model(ModelConfig(arch="resnet16", units=2, pooling="max"), rngs=nnx.Rngs(0))
    assert model.receptive_field == 97
    assert model.output_stride == 4
