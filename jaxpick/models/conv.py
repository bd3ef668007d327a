"""Topaz's plain convolutional feature extractors conv31/63/127 (``features/basic.py``). No JAX.

For every kernel but the last: conv (stride 2, or 1 when pooling) -> BN -> PReLU -> [max pool
3x3, stride 2, padding 1] -> [dropout]; then ``units *= unit_scaling``. The last kernel: conv
(stride 1) -> BN -> PReLU -> [dropout]. Receptive fields 31, 63, 127.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from jaxpick.models.plan import ConvSpec, DropoutSpec, LayerSpec, Plan, PoolSpec

if TYPE_CHECKING:
    from jaxpick.models.config import ModelConfig

#: Kernel sizes of each architecture.
KERNELS: dict[str, tuple[int, ...]] = {
    "conv31": (7, 5, 5),
    "conv63": (7, 5, 5, 5),
    "conv127": (7, 5, 5, 5, 5),
}


def conv_plan(config: ModelConfig, kernels: Sequence[int]) -> Plan:
    """The plan of a ``basic.BasicConv`` network with the given kernel sizes."""
    pooled = config.pooling == "max"
    stride = 1 if pooled else 2
    layers: list[LayerSpec] = []
    nin, units = 1, config.units
    for kernel in kernels[:-1]:
        layers.append(
            ConvSpec(
                nin=nin, nout=units, kernel=kernel, stride=stride, bn=config.bn, activation="prelu"
            )
        )
        if pooled:
            layers.append(PoolSpec(padding=1))
        if config.dropout > 0:
            layers.append(DropoutSpec(rate=config.dropout))
        nin, units = units, units * config.unit_scaling
    layers.append(
        ConvSpec(nin=nin, nout=units, kernel=kernels[-1], bn=config.bn, activation="prelu")
    )
    if config.dropout > 0:
        layers.append(DropoutSpec(rate=config.dropout))
    return Plan(layers=tuple(layers), latent_dim=units, family="conv")


def conv31_plan(config: ModelConfig) -> Plan:
    return conv_plan(config, KERNELS["conv31"])


def conv63_plan(config: ModelConfig) -> Plan:
    return conv_plan(config, KERNELS["conv63"])


def conv127_plan(config: ModelConfig) -> Plan:
    return conv_plan(config, KERNELS["conv127"])
