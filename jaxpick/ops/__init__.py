"""Numerical preprocessing of micrographs, as pure ``jnp`` functions (Topaz section 5).

* `downsample`: Fourier-crop downsampling (``topaz downsample``, ``preprocess -s``).
* `normalize`: per-micrograph GMM or affine normalisation (``topaz normalize``/``preprocess``),
  built on `fit_gmm`.

All functions take static shapes and static hyperparameters (checked eagerly with
``ConfigError``, a ``ValueError``), work on one micrograph, and compose with ``jax.jit`` and
``jax.vmap``; for example, a whole preprocessing batch in one compiled call::

    def preprocess_one(image, key):
        return normalize(downsample(image, 4), sample=10, key=key)

    preprocess_batch = jax.jit(jax.vmap(preprocess_one))
"""

from jaxpick.ops.normalize import (
    PI_INITS,
    STATUS_CONSTANT,
    STATUS_FIT_FAILED,
    STATUS_NONFINITE,
    STATUS_OK,
    GMMFit,
    NormalizeStats,
    choice_without_replacement,
    fit_gmm,
    normalize,
    sample_size,
    status_message,
)
from jaxpick.ops.resample import downsample, downsample_shape

__all__ = [
    "PI_INITS",
    "STATUS_CONSTANT",
    "STATUS_FIT_FAILED",
    "STATUS_NONFINITE",
    "STATUS_OK",
    "GMMFit",
    "NormalizeStats",
    "choice_without_replacement",
    "downsample",
    "downsample_shape",
    "fit_gmm",
    "normalize",
    "sample_size",
    "status_message",
]
