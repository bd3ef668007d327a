"""Building models by name: the architecture table, Topaz's pretrained detectors, ``build_model``.

Examples:
  >>> from flax import nnx
  >>> from jaxpick.models.registry import PRETRAINED, build_model, pretrained_name
  >>> pretrained_name("resnet16")  # Topaz's default model
  'resnet16_u64'
  >>> PRETRAINED["resnet8_u32"].config.receptive_field
  71
  >>> build_model(PRETRAINED["resnet8_u32"].config, rngs=nnx.Rngs(0)).receptive_field
  71
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from flax import nnx

from jaxpick.errors import ConfigError
from jaxpick.models.architectures import ARCHITECTURES
from jaxpick.models.config import ModelConfig
from jaxpick.models.picker import Picker


@dataclass(frozen=True)
class PretrainedDetector:
    """One of the detectors bundled with Topaz (``topaz/pretrained/detector/<file>``).

    Attributes:
      file: the file name inside the topaz package.
      config: the architecture (``LinearClassifier(ResNetX(units=u, bn=False))``).
      size: file size in bytes in topaz-em 0.3.20.
      sha256: file digest in topaz-em 0.3.20 (recorded in provenance, not enforced).
    """

    file: str
    config: ModelConfig
    size: int
    sha256: str


#: The four pretrained detectors of topaz-em 0.3.20.
PRETRAINED: Mapping[str, PretrainedDetector] = MappingProxyType(
    {
        "resnet8_u32": PretrainedDetector(
            "resnet8_u32.sav",
            ModelConfig(arch="resnet8", units=32, bn=False),
            1_319_025,
            "c1e4e6fdf4cd5368f95198baf27b49f777c3cf6f92330322e7d4e5ef3fcc6423",
        ),
        "resnet8_u64": PretrainedDetector(
            "resnet8_u64.sav",
            ModelConfig(arch="resnet8", units=64, bn=False),
            5_247_485,
            "d8de1df60ce9f18c62b24a936ef8c45e06a06e3e67fc14709d329245985c16f5",
        ),
        "resnet16_u32": PretrainedDetector(
            "resnet16_u32.sav",
            ModelConfig(arch="resnet16", units=32, bn=False),
            1_839_890,
            "476d210960bf273d406295dba76bf1f45ed8021e4c5bda46d2376d250ca3bd56",
        ),
        "resnet16_u64": PretrainedDetector(
            "resnet16_u64.sav",
            ModelConfig(arch="resnet16", units=64, bn=False),
            7_317_922,
            "00d224629a5dc0c2dc122cca11e47c25f5f850d08f9e7f71f54bcf8037d52c46",
        ),
    }
)

#: Short names accepted by ``topaz extract -m`` (topaz/model/factory.py::load_model, 0.3.20):
#: both bare names mean the 64-unit models.
PRETRAINED_ALIASES: Mapping[str, str] = MappingProxyType(
    {"resnet8": "resnet8_u64", "resnet16": "resnet16_u64"}
)


def pretrained_name(name: str) -> str | None:
    """The pretrained detector a model name refers to (aliases resolved), or ``None``."""
    name = PRETRAINED_ALIASES.get(name, name)
    return name if name in PRETRAINED else None


def build_model(config: ModelConfig, *, rngs: nnx.Rngs) -> Picker:
    """A freshly initialised picker (torch-like default initialisation).

    Args:
      config: the architecture.
      rngs: random streams; ``rngs.params`` draws the weights.

    Raises:
      ConfigError: an architecture missing from the registry.
    """
    if config.arch not in ARCHITECTURES:
        raise ConfigError(f"arch: unknown architecture {config.arch!r}")
    return Picker(config, rngs=rngs)


def abstract_model(config: ModelConfig) -> Picker:
    """A picker whose arrays are ``jax.ShapeDtypeStruct`` placeholders (nothing computed).

    For loaders: fill it with ``nnx.update`` (see :func:`jaxpick.checkpoint.set_model_arrays`).
    """
    return nnx.eval_shape(lambda: build_model(config, rngs=nnx.Rngs(0)))
