"""The architecture registry: name -> plan builder. No JAX, no if/elif chains.

Examples:
  >>> from jaxpick.models.architectures import ARCHITECTURES
  >>> sorted(ARCHITECTURES)
  ['conv127', 'conv31', 'conv63', 'resnet16', 'resnet6', 'resnet8']
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

from jaxpick.models import conv, resnet
from jaxpick.models.plan import Plan

if TYPE_CHECKING:
    from jaxpick.models.config import ModelConfig

#: Architecture name (as ``topaz train -m``) -> function building its plan from a config.
ARCHITECTURES: Mapping[str, Callable[[ModelConfig], Plan]] = MappingProxyType(
    {
        "resnet6": resnet.resnet6_plan,
        "resnet8": resnet.resnet8_plan,
        "resnet16": resnet.resnet16_plan,
        "conv31": conv.conv31_plan,
        "conv63": conv.conv63_plan,
        "conv127": conv.conv127_plan,
    }
)
