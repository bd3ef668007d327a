"""The picker network: a feature extractor plus Topaz's 1x1 linear classifier.

One parameter set, two modes chosen by the static ``dense`` argument:

- **patch mode** (``dense=False``, training and crops): the unpadded, strided network. A
  ``receptive_field``-sized crop gives one logit; a larger crop gives the strided VALID map.
- **dense mode** (``dense=True``, scoring whole micrographs): Topaz's "filled" network. All
  strides become 1, each layer's dilations are multiplied by the product of the strides before
  it, and the input is zero-padded by ``receptive_field // 2``: the logit map has the input's
  size and ``out[y, x]`` is the patch-mode logit of the window centred at ``(y, x)``.
  Always evaluation semantics (running BN statistics, no dropout).

Examples:
  >>> import jax.numpy as jnp
  >>> from flax import nnx
  >>> from jaxpick.models import ModelConfig, build_model
  >>> model = build_model(ModelConfig(arch="conv31", units=4), rngs=nnx.Rngs(0))
  >>> model(jnp.zeros((2, 40, 48)), dense=True).shape
  (2, 40, 48)
  >>> model(jnp.zeros((2, 31, 31))).shape
  (2, 1, 1)
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from jaxpick.models.config import ModelConfig
from jaxpick.models.layers import LAYER_MODULES, Conv2d, compute_settings


class Picker(nnx.Module):
    """Feature extractor + 1x1 classifier, NHWC, built from a :class:`ModelConfig`.

    Attributes:
      config: the model configuration (static).
      features: the layers of ``config.plan``, in Topaz's ``nn.Sequential`` order.
      classifier: the 1x1 convolution latent -> 1 logit, with bias.
    """

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs) -> None:
        self.config = config
        plan = config.plan
        self.features = nnx.List(
            [LAYER_MODULES[type(spec)](spec, rngs=rngs) for spec in plan.layers]
        )
        self.classifier = Conv2d(plan.latent_dim, 1, 1, bias=True, rngs=rngs)

    @property
    def receptive_field(self) -> int:
        """Input side giving a single patch-mode logit (71 for resnet8)."""
        return self.config.receptive_field

    @property
    def output_stride(self) -> int:
        """Pixel step of the patch-mode output."""
        return self.config.output_stride

    def feature_map(
        self,
        x: jax.Array,
        *,
        dense: bool = False,
        train: bool = False,
        key: jax.Array | None = None,
        compute_dtype: str | jnp.dtype | type = "float32",
        fast: bool = True,
    ) -> jax.Array:
        """The latent feature map ``(B, H', W', latent_dim)`` (float32); see :meth:`__call__`."""
        if dense and train:
            raise ValueError("dense=True is inference only; use train=False")
        if train and key is None and self.config.dropout > 0:
            raise ValueError("key: a PRNG key is needed to train a model with dropout")
        compute = compute_settings(compute_dtype, fast=fast, differentiable=train and fast)
        x = jnp.asarray(x)
        if x.ndim == 3:
            x = x[..., None]
        if x.ndim != 4 or x.shape[-1] != 1:
            raise ValueError(f"x: expected (B, H, W) or (B, H, W, 1), got shape {x.shape}")
        x = x.astype(jnp.float32)
        plan = self.config.plan
        if dense:
            p = plan.dense_padding
            x = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
        elif min(x.shape[1], x.shape[2]) < plan.receptive_field:
            raise ValueError(
                f"x: patch mode needs crops of at least {plan.receptive_field} px, "
                f"got {x.shape[1]}x{x.shape[2]}"
            )
        h = x.astype(compute.dtype)
        for i, (layer, place) in enumerate(
            zip(self.features, plan.placements(dense=dense), strict=True)
        ):
            layer_key = None if key is None else jax.random.fold_in(key, i)
            h = layer(h, place, train=train, key=layer_key, compute=compute)
        return h.astype(jnp.float32)

    def __call__(
        self,
        x: jax.Array,
        *,
        dense: bool = False,
        train: bool = False,
        key: jax.Array | None = None,
        compute_dtype: str | jnp.dtype | type = "float32",
        fast: bool = True,
    ) -> jax.Array:
        """Logits.

        Args:
          x: ``(B, H, W)`` or ``(B, H, W, 1)`` images (cast to float32).
          dense: dense ("filled") mode, for whole micrographs; else patch mode.
          train: training mode (batch statistics, updating the running ones; dropout). Patch
            mode only.
          key: PRNG key for dropout (needed only when training a model with dropout > 0).
          compute_dtype: ``"float32"`` or ``"bfloat16"`` (weights and activations; float32
            accumulation and output).
          fast: XLA:CPU-friendly convolution forms (padded: identical values; 1-D Winograd
            for wide 3x3-7x7 layers: within float32 rounding); ``False`` runs plain VALID
            convolutions, the reference.

        Returns:
          ``(B, H, W)`` float32 logits in dense mode; ``(B, H', W')`` in patch mode
          (``(B, 1, 1)`` for receptive-field crops).

        Raises:
          ValueError: bad input shape, a crop smaller than the receptive field, ``dense`` with
            ``train``, or dropout training without ``key``.
        """
        z = self.feature_map(
            x, dense=dense, train=train, key=key, compute_dtype=compute_dtype, fast=fast
        )
        return self.classify(z, compute_dtype=compute_dtype, fast=fast)

    def classify(
        self,
        z: jax.Array,
        *,
        compute_dtype: str | jnp.dtype | type = "float32",
        fast: bool = True,
    ) -> jax.Array:
        """Logits ``(B, H', W')`` of a feature map from :meth:`feature_map` (the 1x1 classifier).

        Training with the autoencoder needs both the features and the logits of one forward pass.
        """
        compute = compute_settings(compute_dtype, fast=fast)
        return self.classifier(z.astype(compute.dtype), compute=compute)[..., 0]


def count_parameters(model: nnx.Module) -> int:
    """Number of trainable parameters (BN running statistics excluded), as torch counts them."""
    state = nnx.state(model, nnx.Param)
    return sum(int(v.size) for v in jax.tree.leaves(state))


def make_dense_scorer(
    model: Picker, *, compute_dtype: str | jnp.dtype | type = "float32", fast: bool = True
) -> Callable[[jax.Array], jax.Array]:
    """A jitted ``images (B, H, W) -> logits (B, H, W)`` function for a fixed model.

    The model is split once; its state is an argument of the jitted function (not a baked-in
    constant), so compiling is fast and one compiled program serves each input shape.

    Examples:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from jaxpick.models import ModelConfig, build_model, make_dense_scorer
      >>> model = build_model(ModelConfig(arch="resnet8", units=4), rngs=nnx.Rngs(0))
      >>> make_dense_scorer(model)(jnp.zeros((1, 64, 80))).shape
      (1, 64, 80)
    """
    compute_settings(compute_dtype, fast=fast)  # validate eagerly
    graphdef, state = nnx.split(model)

    @jax.jit
    def score(state: nnx.State, images: jax.Array) -> jax.Array:
        net = nnx.merge(graphdef, state)
        return net(images, dense=True, compute_dtype=compute_dtype, fast=fast)

    return functools.partial(score, state)
