"""The frozen description of a picker network: :class:`ModelConfig`. No JAX.

Everything needed to rebuild a network (with :func:`jaxpick.models.build_model`) and to
reason about its geometry (receptive field, output stride) without building it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from jaxpick.errors import ConfigError
from jaxpick.models.plan import Plan

POOLINGS = ("none", "max")


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """A Topaz-style detector: feature extractor + 1x1 linear classifier.

    Attributes:
      arch: ``resnet6``, ``resnet8``, ``resnet16``, ``conv31``, ``conv63`` or ``conv127``.
      units: base width ``u``; ResNets use ``[u, 2u, 4u]``.
      bn: batch normalisation after every conv (convs then have no bias). Topaz's ``train``
        default is on; the pretrained detectors have it off.
      dropout: dropout rate after the pooling points and the last conv (0 = none).
      pooling: ``"none"`` (strided convs) or ``"max"`` (unstrided convs + 3x3/2 max pools).
        ``resnet6`` always max-pools and ignores it, as in Topaz.
      unit_scaling: conv* only: width multiplier after every strided/pooled layer.

    Examples:
      >>> config = ModelConfig(arch="resnet8", units=32, bn=False)
      >>> config.receptive_field, config.output_stride, config.latent_dim
      (71, 4, 128)
      >>> ModelConfig.from_dict(config.to_dict()) == config
      True
    """

    arch: str
    units: int = 32
    bn: bool = True
    dropout: float = 0.0
    pooling: str = "none"
    unit_scaling: int = 2

    def __post_init__(self) -> None:
        from jaxpick.models.architectures import ARCHITECTURES

        if self.arch not in ARCHITECTURES:
            raise ConfigError(
                f"arch: unknown architecture {self.arch!r} (known: {', '.join(ARCHITECTURES)})"
            )
        if not (isinstance(self.units, int) and not isinstance(self.units, bool)) or self.units < 1:
            raise ConfigError(f"units must be a positive integer, got {self.units!r}")
        if not isinstance(self.bn, bool):
            raise ConfigError(f"bn must be true or false, got {self.bn!r}")
        if not (isinstance(self.dropout, int | float) and 0 <= self.dropout < 1):
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.pooling not in POOLINGS:
            raise ConfigError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if not isinstance(self.unit_scaling, int) or self.unit_scaling < 1:
            raise ConfigError(f"unit_scaling must be a positive integer, got {self.unit_scaling!r}")
        object.__setattr__(self, "dropout", float(self.dropout))

    @cached_property
    def plan(self) -> Plan:
        """The layer plan (see :mod:`jaxpick.models.plan`)."""
        from jaxpick.models.architectures import ARCHITECTURES

        return ARCHITECTURES[self.arch](self)

    @property
    def receptive_field(self) -> int:
        """Crop side that gives one patch-mode logit (Topaz's ``model.width``)."""
        return self.plan.receptive_field

    @property
    def output_stride(self) -> int:
        """Pixel step of the patch-mode output map."""
        return self.plan.output_stride

    @property
    def latent_dim(self) -> int:
        """Channels of the feature map fed to the classifier."""
        return self.plan.latent_dim

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary of the fields."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        """The inverse of :meth:`to_dict`; unknown keys are an error.

        Raises:
          ConfigError: unknown keys or invalid values.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown model config keys: {', '.join(unknown)}")
        if "arch" not in data:
            raise ConfigError("model config: 'arch' is required")
        return cls(**dict(data))
