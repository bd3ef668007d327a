"""Picker networks (Topaz's ResNet6/8/16 and conv31/63/127 detectors) in Flax NNX.

Public API:

- :class:`ModelConfig` (frozen; ``to_dict``/``from_dict``; ``receptive_field``,
  ``output_stride``, ``latent_dim``) and :func:`build_model` ``(config, *, rngs) -> Picker``;
- :class:`Picker`: ``model(x, dense=False, train=False, key=None, compute_dtype="float32")``;
- :func:`make_dense_scorer`: a jitted whole-micrograph scorer;
- :data:`ARCHITECTURES`, :data:`PRETRAINED`, :func:`pretrained_name`, :func:`count_parameters`.

Topaz weights: :mod:`jaxpick.models.topaz_weights`; our checkpoints: :mod:`jaxpick.checkpoint`.
"""

from jaxpick.models.architectures import ARCHITECTURES
from jaxpick.models.config import ModelConfig
from jaxpick.models.picker import Picker, count_parameters, make_dense_scorer
from jaxpick.models.registry import (
    PRETRAINED,
    PRETRAINED_ALIASES,
    abstract_model,
    build_model,
    pretrained_name,
)

__all__ = [
    "ARCHITECTURES",
    "PRETRAINED",
    "PRETRAINED_ALIASES",
    "abstract_model",
    "ModelConfig",
    "Picker",
    "build_model",
    "count_parameters",
    "make_dense_scorer",
    "pretrained_name",
]
