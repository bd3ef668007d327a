"""Shared helpers of the model tests."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxpick.models import ModelConfig, Picker, build_model


def randomised(config: ModelConfig, seed: int = 0) -> Picker:
    """A model with every parameter and BN statistic random (no identity BN, no 0.25 slopes)."""
    model = build_model(config, rngs=nnx.Rngs(seed))
    rng = np.random.default_rng(seed)
    state = nnx.state(model)
    leaves, treedef = jax.tree.flatten(state)
    new = []
    for leaf in leaves:
        noise = rng.uniform(-0.5, 0.5, leaf.shape).astype(np.float32)
        if leaf.ndim == 1 and leaf.shape != (1,):  # BN scales/variances, biases: keep positive
            noise = np.abs(np.asarray(leaf)) + noise + 0.6
        else:
            noise = np.asarray(leaf) + noise
        new.append(jnp.asarray(noise))
    nnx.update(model, jax.tree.unflatten(treedef, new))
    return model


@functools.partial(nnx.jit, static_argnames=("dense", "fast", "compute_dtype"))
def forward(
    model: Picker,
    x: jax.Array,
    *,
    dense: bool = False,
    fast: bool = True,
    compute_dtype: str = "float32",
) -> jax.Array:
    """``model(x, ...)`` compiled as one program (eager op-by-op dispatch is slow in tests)."""
    return model(x, dense=dense, fast=fast, compute_dtype=compute_dtype)


def assert_close(actual: jax.Array, desired: np.ndarray, rel: float = 1e-5) -> None:
    """Equal up to float32 reassociation: tolerance relative to the map's largest value."""
    desired = np.asarray(desired)
    scale = max(float(np.abs(desired).max()), 1e-6)
    np.testing.assert_allclose(np.asarray(actual), desired, rtol=0, atol=rel * scale)


def windows(image: np.ndarray, size: int, centres: list[tuple[int, int]]) -> np.ndarray:
    """``size`` x ``size`` crops of the zero-padded image centred at ``centres``."""
    pad = size // 2
    padded = np.pad(image, pad)
    return np.stack([padded[y : y + size, x : x + size] for y, x in centres])


CENTRES = [(0, 0), (5, 17), (12, 3), (20, 25), (23, 27)]
