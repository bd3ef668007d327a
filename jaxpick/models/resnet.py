"""Topaz's ResNet feature extractors (``topaz/model/features/resnet.py``) as plans. No JAX.

``units = u`` expands to ``[u, 2u, 4u]``. The layer order is Topaz's ``nn.Sequential`` order
(dropout and pooling included), so list index == torch module index.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jaxpick.models.plan import ConvSpec, DropoutSpec, LayerSpec, Plan, PoolSpec, ResidSpec

if TYPE_CHECKING:
    from jaxpick.models.config import ModelConfig


def _pool_and_dropout(config: ModelConfig, *, pool: bool) -> list[LayerSpec]:
    layers: list[LayerSpec] = [PoolSpec()] if pool else []
    if config.dropout > 0:
        layers.append(DropoutSpec(rate=config.dropout))
    return layers


def resnet8_plan(config: ModelConfig) -> Plan:
    """ResNet8: conv7 (stride 2 unless pooling) · 3 ResidA (dilation 2) · conv5; RF 71 / 77."""
    u0, u1, u2 = config.units, 2 * config.units, 4 * config.units
    bn = config.bn
    pooled = config.pooling == "max"
    s = 1 if pooled else 2
    layers: list[LayerSpec] = [
        ConvSpec(nin=1, nout=u0, kernel=7, stride=s, bn=bn, activation="relu"),
        *_pool_and_dropout(config, pool=pooled),
        ResidSpec(nin=u0, nhidden=u0, nout=u0, dilation=2, bn=bn),
        ResidSpec(nin=u0, nhidden=u0, nout=u1, dilation=2, stride=s, bn=bn),
        *_pool_and_dropout(config, pool=pooled),
        ResidSpec(nin=u1, nhidden=u1, nout=u1, dilation=2, bn=bn),
        ConvSpec(nin=u1, nout=u2, kernel=5, bn=bn, activation="relu"),
        *_pool_and_dropout(config, pool=False),
    ]
    return Plan(layers=tuple(layers), latent_dim=u2, family="resnet")


def resnet16_plan(config: ModelConfig) -> Plan:
    """ResNet16: conv7 · 8 ResidA (two strided unless pooling) · conv5; RF 91 / 97."""
    u0, u1, u2 = config.units, 2 * config.units, 4 * config.units
    bn = config.bn
    pooled = config.pooling == "max"
    s = 1 if pooled else 2
    layers: list[LayerSpec] = [
        ConvSpec(nin=1, nout=u0, kernel=7, bn=bn, activation="relu"),
        ResidSpec(nin=u0, nhidden=u0, nout=u0, stride=s, bn=bn),
        *_pool_and_dropout(config, pool=pooled),
        ResidSpec(nin=u0, nhidden=u0, nout=u0, bn=bn),
        ResidSpec(nin=u0, nhidden=u0, nout=u0, bn=bn),
        ResidSpec(nin=u0, nhidden=u0, nout=u0, bn=bn),
        ResidSpec(nin=u0, nhidden=u0, nout=u1, stride=s, bn=bn),
        *_pool_and_dropout(config, pool=pooled),
        ResidSpec(nin=u1, nhidden=u1, nout=u1, bn=bn),
        ResidSpec(nin=u1, nhidden=u1, nout=u1, bn=bn),
        ConvSpec(nin=u1, nout=u2, kernel=5, bn=bn, activation="relu"),
        *_pool_and_dropout(config, pool=False),
    ]
    return Plan(layers=tuple(layers), latent_dim=u2, family="resnet")


def resnet6_plan(config: ModelConfig) -> Plan:
    """ResNet6: conv5 · pool · ResidA (dilation 4) · pool · ResidA (dilation 2) · conv5; RF 71.

    It always max-pools (``pooling`` is ignored, as in Topaz). Topaz itself crashes building a
    ResNet6 with dropout > 0 (``list += nn.Dropout``); here the dropout layers are where the
    code intends them.
    """
    u0, u1, u2 = config.units, 2 * config.units, 4 * config.units
    bn = config.bn
    layers: list[LayerSpec] = [
        ConvSpec(nin=1, nout=u0, kernel=5, bn=bn, activation="relu"),
        *_pool_and_dropout(config, pool=True),
        ResidSpec(nin=u0, nhidden=u0, nout=u1, dilation=4, bn=bn),
        *_pool_and_dropout(config, pool=True),
        ResidSpec(nin=u1, nhidden=u1, nout=u1, dilation=2, bn=bn),
        ConvSpec(nin=u1, nout=u2, kernel=5, bn=bn, activation="relu"),
        *_pool_and_dropout(config, pool=False),
    ]
    return Plan(layers=tuple(layers), latent_dim=u2, family="resnet")
