"""Architecture plans: the layer lists of Topaz's detectors as plain, frozen data. No JAX.

A :class:`Plan` is the ordered list of layer specifications of one feature extractor, exactly as
Topaz builds its ``nn.Sequential`` (same order, so the torch module index of every layer is
known). Everything about the geometry follows from it without building a network:

- the receptive field (Topaz's ``insize_from_outsize(layers, 1)``) and the output stride;
- the per-layer ``(stride, dilation scale)`` table of each mode (:meth:`Plan.placements`):
  *patch* mode runs each layer with its own stride; *dense* ("filled") mode sets every stride to
  1 and multiplies each layer's dilations by the product of the strides before it, so that on an
  input zero-padded by ``receptive_field // 2`` the output has the input's size and
  ``out[y, x]`` is the patch-mode output on the window centred at ``(y, x)``.

The networks in :mod:`jaxpick.models.picker` read these tables; layers are never mutated.

Examples:
  >>> from jaxpick.models.plan import ConvSpec, Plan
  >>> plan = Plan(
  ...     layers=(
  ...         ConvSpec(nin=1, nout=8, kernel=7, stride=2, bn=False, activation="relu"),
  ...         ConvSpec(nin=8, nout=16, kernel=5, bn=False, activation="relu"),
  ...     ),
  ...     latent_dim=16,
  ... )
  >>> plan.receptive_field, plan.output_stride
  (15, 2)
  >>> [p.scale for p in plan.placements(dense=True)]
  [1, 2]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, kw_only=True)
class ConvSpec:
    """A k x k convolution (VALID), optional batch norm, then ReLU or PReLU.

    Topaz's ``resnet.BasicConv`` (``conv``/``bn``/``act``) and one conv / BN / PReLU triple of a
    ``basic.BasicConv`` (conv31/63/127) network. The conv has a bias only when BN is off.
    """

    nin: int
    nout: int
    kernel: int
    stride: int = 1
    dilation: int = 1
    bn: bool
    activation: Literal["relu", "prelu"]

    @property
    def bias(self) -> bool:
        return not self.bn

    @property
    def extent(self) -> int:
        """Receptive field of the layer on its own input (Topaz's ``kernel_size``)."""
        return (self.kernel - 1) * self.dilation + 1

    @property
    def padding(self) -> int:
        return 0


@dataclass(frozen=True, kw_only=True)
class ResidSpec:
    """Topaz's ``ResidA``: conv0 3x3 -> BN -> ReLU -> conv1 3x3 (dilation, stride) + residual.

    The residual is the input cropped by ``dil(conv0) + dil(conv1)`` per side, then a 1x1 ``proj``
    conv (no bias, same stride) when ``nin != nout``, else subsampled by the stride. BN ``bn1``
    comes after the addition, then ReLU.
    """

    nin: int
    nhidden: int
    nout: int
    dilation: int = 1
    stride: int = 1
    bn: bool

    @property
    def bias(self) -> bool:
        return not self.bn

    @property
    def has_proj(self) -> bool:
        return self.nin != self.nout

    @property
    def extent(self) -> int:
        return 2 * self.dilation + 3

    @property
    def padding(self) -> int:
        return 0


@dataclass(frozen=True, kw_only=True)
class PoolSpec:
    """Max pooling. ResNets: 3x3, stride 2, no padding; conv*: 3x3, stride 2, padding 1."""

    kernel: int = 3
    stride: int = 2
    padding: int = 0

    @property
    def extent(self) -> int:
        return self.kernel


@dataclass(frozen=True, kw_only=True)
class DropoutSpec:
    """``nn.Dropout(p)`` (inverted scaling); identity in evaluation and dense mode."""

    rate: float
    stride: int = 1

    @property
    def extent(self) -> int:
        return 1

    @property
    def padding(self) -> int:
        return 0


LayerSpec = ConvSpec | ResidSpec | PoolSpec | DropoutSpec


@dataclass(frozen=True)
class Placement:
    """How one layer runs in one mode.

    Attributes:
      stride: the layer's stride in this mode (1 everywhere in dense mode).
      scale: multiplier of all the layer's dilations (and pooling padding): 1 in patch mode, the
        product of the strides of the layers before it in dense mode.
    """

    stride: int
    scale: int


@dataclass(frozen=True, kw_only=True)
class Plan:
    """The layers of a feature extractor, in Topaz's ``nn.Sequential`` order.

    Attributes:
      layers: the layer specifications.
      latent_dim: channels of the feature map (input of the 1x1 classifier).
      family: ``"resnet"`` (one torch module per layer) or ``"conv"`` (conv / BN / PReLU / pool /
        dropout each a separate ``nn.Sequential`` entry), which fixes the torch key names.
    """

    layers: tuple[LayerSpec, ...]
    latent_dim: int
    family: Literal["resnet", "conv"] = "resnet"

    @property
    def receptive_field(self) -> int:
        """Input side that gives a 1x1 patch-mode output (Topaz's ``model.width``)."""
        size = 1
        for layer in reversed(self.layers):
            size = (size - 1) * layer.stride + layer.extent - 2 * layer.padding
        return size

    @property
    def output_stride(self) -> int:
        """Product of all strides: the pixel step of the patch-mode output map."""
        return math.prod(layer.stride for layer in self.layers)

    @property
    def dense_padding(self) -> int:
        """Zeros added on every side of the input in dense mode: ``receptive_field // 2``."""
        return self.receptive_field // 2

    def placements(self, *, dense: bool) -> tuple[Placement, ...]:
        """The per-layer ``(stride, dilation scale)`` table of patch or dense mode."""
        out = []
        cumulative = 1
        for layer in self.layers:
            if dense:
                out.append(Placement(stride=1, scale=cumulative))
                cumulative *= layer.stride
            else:
                out.append(Placement(stride=layer.stride, scale=1))
        return tuple(out)

    def patch_output_size(self, size: int) -> int:
        """Side of the patch-mode output for an input of side ``size`` (0 if too small)."""
        for layer in self.layers:
            padded = size + 2 * layer.padding
            if padded < layer.extent:
                return 0
            size = (padded - layer.extent) // layer.stride + 1
        return size
