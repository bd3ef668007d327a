"""Topaz weights -> jaxpick pickers: the key mapping, architecture inference and loading.

Two kinds of Topaz file are understood (both read by :mod:`jaxpick.io.torch_sav`, never with
torch):

- the four bundled detectors: bare state dicts of ``LinearClassifier(ResNetX(units=u,
  bn=False))`` with keys ``features.features.N.{conv,conv0,conv1,proj}.{weight,bias}`` and
  ``classifier.{weight,bias}``;
- models saved by ``topaz train``: a whole pickled ``LinearClassifier`` of any architecture, with
  BN weights and running statistics, PReLU slopes, ``proj`` convolutions, and Sequential-index
  naming for conv31/63/127 (``features.features.0.weight`` conv, ``1.*`` BN, ``2.weight`` PReLU,
  ...). An autoencoder (``generative.*``) is kept aside in :attr:`TopazModel.extra`.

The architecture comes from the pickled class names (ResNet8, BasicConv, MaxPool, Dropout with
its ``p``, BatchNorm2d) and the weight shapes (units, unit scaling); for a bare state dict, from
the file name when it is a pretrained detector's, else from the only configuration whose
expected keys and shapes match. Every expected tensor must be present with the right shape and
nothing unexpected may be left over (apart from ``num_batches_tracked`` and ``generative.*``).

Convolution weights are transposed from torch's OIHW to HWIO.

Examples:
  >>> from jaxpick.models.topaz_weights import load_topaz_model  # doctest: +SKIP
  >>> model, config = load_topaz_model("saved_models/model_epoch10.sav")  # doctest: +SKIP
  >>> config.arch, config.units, config.bn  # doctest: +SKIP
  ('resnet8', 32, True)
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import os
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxpick.errors import FileFormatError
from jaxpick.io.torch_sav import PickledObject, TorchSav, iter_modules, read_sav
from jaxpick.models.architectures import ARCHITECTURES
from jaxpick.models.config import ModelConfig
from jaxpick.models.conv import KERNELS
from jaxpick.models.picker import Picker
from jaxpick.models.plan import ConvSpec, DropoutSpec, PoolSpec, ResidSpec
from jaxpick.models.registry import PRETRAINED, abstract_model, pretrained_name

#: State-dict keys that are read but not mapped onto the picker.
IGNORED_SUFFIXES = (".num_batches_tracked",)
#: Prefixes of submodules kept aside (Topaz's autoencoder for ``--autoencoder > 0``).
EXTRA_PREFIXES = ("generative.",)

#: Topaz feature-extractor classes -> architecture ("BasicConv" is resolved by kernel count).
_FEATURE_CLASSES = {
    "ResNet6": "resnet6",
    "ResNet8": "resnet8",
    "ResNet16": "resnet16",
    "Conv127": "conv127",
    "Conv63": "conv63",
}

Kind = Literal["kernel", "vector"]


@dataclass(frozen=True)
class TensorMapping:
    """Where one torch tensor goes.

    Attributes:
      torch_key: the state-dict key.
      path: the path in ``nnx.to_pure_dict(nnx.state(model))``.
      torch_shape: the expected torch shape.
      kind: ``"kernel"`` (OIHW <-> HWIO) or ``"vector"`` (copied as is).
    """

    torch_key: str
    path: tuple[str | int, ...]
    torch_shape: tuple[int, ...]
    kind: Kind


def _conv_mappings(
    torch_prefix: str, path: tuple[str | int, ...], nin: int, nout: int, k: int, bias: bool
) -> Iterator[TensorMapping]:
    yield TensorMapping(f"{torch_prefix}weight", (*path, "kernel"), (nout, nin, k, k), "kernel")
    if bias:
        yield TensorMapping(f"{torch_prefix}bias", (*path, "bias"), (nout,), "vector")


def _bn_mappings(torch_prefix: str, path: tuple[str | int, ...], n: int) -> Iterator[TensorMapping]:
    for torch_name, ours in (
        ("weight", "scale"),
        ("bias", "bias"),
        ("running_mean", "mean"),
        ("running_var", "var"),
    ):
        yield TensorMapping(f"{torch_prefix}{torch_name}", (*path, ours), (n,), "vector")


def _resnet_layer(i: int, spec: Any) -> Iterator[TensorMapping]:
    """One ``features.features.i`` module of a ResNet (BasicConv, ResidA, MaxPool, Dropout)."""
    pre = f"features.features.{i}."
    at: tuple[str | int, ...] = ("features", i)
    if isinstance(spec, ConvSpec):
        yield from _conv_mappings(
            pre + "conv.", (*at, "conv"), spec.nin, spec.nout, spec.kernel, spec.bias
        )
        if spec.bn:
            yield from _bn_mappings(pre + "bn.", (*at, "bn"), spec.nout)
    elif isinstance(spec, ResidSpec):
        if spec.has_proj:
            yield from _conv_mappings(pre + "proj.", (*at, "proj"), spec.nin, spec.nout, 1, False)
        yield from _conv_mappings(
            pre + "conv0.", (*at, "conv0"), spec.nin, spec.nhidden, 3, spec.bias
        )
        if spec.bn:
            yield from _bn_mappings(pre + "bn0.", (*at, "bn0"), spec.nhidden)
        yield from _conv_mappings(
            pre + "conv1.", (*at, "conv1"), spec.nhidden, spec.nout, 3, spec.bias
        )
        if spec.bn:
            yield from _bn_mappings(pre + "bn1.", (*at, "bn1"), spec.nout)


def torch_mappings(config: ModelConfig) -> tuple[TensorMapping, ...]:
    """Every tensor of the Topaz model ``config`` describes, in Topaz's state-dict order."""
    plan = config.plan
    out: list[TensorMapping] = []
    if plan.family == "resnet":
        for i, spec in enumerate(plan.layers):
            out.extend(_resnet_layer(i, spec))
    else:  # conv*: conv, [BN], PReLU, [pool], [dropout] are separate Sequential entries
        index = itertools.count()
        for i, spec in enumerate(plan.layers):
            at: tuple[str | int, ...] = ("features", i)
            if isinstance(spec, ConvSpec):
                j = next(index)
                out.extend(
                    _conv_mappings(
                        f"features.features.{j}.",
                        (*at, "conv"),
                        spec.nin,
                        spec.nout,
                        spec.kernel,
                        spec.bias,
                    )
                )
                if spec.bn:
                    j = next(index)
                    out.extend(_bn_mappings(f"features.features.{j}.", (*at, "bn"), spec.nout))
                j = next(index)
                out.append(
                    TensorMapping(
                        f"features.features.{j}.weight", (*at, "act", "weight"), (1,), "vector"
                    )
                )
            elif isinstance(spec, PoolSpec | DropoutSpec):
                next(index)
    out.extend(_conv_mappings("classifier.", ("classifier",), plan.latent_dim, 1, 1, True))
    return tuple(out)


def _is_extra(key: str) -> bool:
    return key.startswith(EXTRA_PREFIXES) or key.endswith(IGNORED_SUFFIXES)


def _mismatches(config: ModelConfig, state_dict: Mapping[str, np.ndarray]) -> list[str]:
    """Human-readable differences between a config's expected tensors and a state dict."""
    problems = []
    expected = {m.torch_key: m for m in torch_mappings(config)}
    for key, m in expected.items():
        if key not in state_dict:
            problems.append(f"missing {key} {list(m.torch_shape)}")
        elif np.shape(state_dict[key]) != m.torch_shape:
            problems.append(
                f"{key} has shape {list(np.shape(state_dict[key]))}, expected {list(m.torch_shape)}"
            )
    for key in state_dict:
        if key not in expected and not _is_extra(key):
            problems.append(f"unexpected {key} {list(np.shape(state_dict[key]))}")
    return problems


def state_dict_to_pure(
    config: ModelConfig, state_dict: Mapping[str, np.ndarray], *, source: str = "state dict"
) -> dict[str, Any]:
    """Checks a Topaz state dict against ``config`` and converts it to a nested pure dict.

    Returns:
      A nested dict in the layout of ``nnx.to_pure_dict(nnx.state(model))`` (float32 numpy).

    Raises:
      FileFormatError: missing, unexpected or mis-shaped tensors (all listed).
    """
    problems = _mismatches(config, state_dict)
    if problems:
        shown = "; ".join(problems[:8]) + (
            f"; ... ({len(problems)} in all)" if len(problems) > 8 else ""
        )
        raise FileFormatError(source, f"weights do not fit {_describe(config)}: {shown}")
    pure: dict[str, Any] = {}
    for m in torch_mappings(config):
        value = np.asarray(state_dict[m.torch_key], dtype=np.float32)
        if m.kind == "kernel":
            value = np.ascontiguousarray(value.transpose(2, 3, 1, 0))
        node = pure
        for part in m.path[:-1]:
            node = node.setdefault(part, {})
        node[m.path[-1]] = value
    return pure


def load_state_dict(
    model: nnx.Module, state_dict: Mapping[str, np.ndarray], *, source: str = "state dict"
) -> None:
    """Copies a Topaz state dict into ``model`` (in place); see :func:`state_dict_to_pure`.

    ``model`` may be abstract (:func:`~jaxpick.models.registry.abstract_model`): every array
    of the picker has a Topaz counterpart, so all of them are replaced.
    """
    config: ModelConfig = model.config  # type: ignore[attr-defined]
    pure = state_dict_to_pure(config, state_dict, source=source)
    state = nnx.state(model)
    nnx.replace_by_pure_dict(state, jax.tree.map(jnp.asarray, pure))
    nnx.update(model, state)


def to_state_dict(model: nnx.Module) -> OrderedDict[str, np.ndarray]:
    """The Topaz (torch) state dict of ``model``: the inverse of :func:`load_state_dict`.

    ``num_batches_tracked`` is not tracked here and is omitted.
    """
    config: ModelConfig = model.config  # type: ignore[attr-defined]
    pure = nnx.to_pure_dict(nnx.state(model))
    out: OrderedDict[str, np.ndarray] = OrderedDict()
    for m in torch_mappings(config):
        node: Any = pure
        for part in m.path:
            node = node[part]
        value = np.asarray(node)
        out[m.torch_key] = value.transpose(3, 2, 0, 1).copy() if m.kind == "kernel" else value
    return out


def _describe(config: ModelConfig) -> str:
    d = config.to_dict()
    return f"{d.pop('arch')}(" + ", ".join(f"{k}={v!r}" for k, v in d.items()) + ")"


def _module_tree_config(sav: TorchSav) -> ModelConfig:
    """The configuration of a pickled ``LinearClassifier`` from its classes and weights."""
    path = sav.path
    root = sav.obj
    assert isinstance(root, PickledObject)
    if root.short_name != "LinearClassifier":
        raise FileFormatError(
            path, f"holds a pickled {root.class_name}, not a Topaz LinearClassifier"
        )
    features = (root.get("_modules") or {}).get("features")
    if not isinstance(features, PickledObject):
        raise FileFormatError(path, "the pickled LinearClassifier has no feature extractor")
    modules = [m for _, m in iter_modules(features)][1:]
    names = [m.short_name for m in modules]
    convs = [m for m in modules if m.short_name == "Conv2d"]
    sd = sav.state_dict
    first = sd.get("features.features.0.weight", sd.get("features.features.0.conv.weight"))
    if first is None or first.ndim != 4:
        raise FileFormatError(path, "cannot find the first convolution's weight")
    arch = _FEATURE_CLASSES.get(features.short_name)
    if arch is None and features.short_name == "BasicConv":
        kernels = tuple(_kernel_size(m) for m in convs)
        arch = next((name for name, ks in KERNELS.items() if ks == kernels), None)
        if arch is None:
            raise FileFormatError(path, f"a conv network with kernels {kernels} is not supported")
    if arch is None:
        raise FileFormatError(
            path, f"unsupported feature extractor {features.class_name} (Topaz 2-D detectors only)"
        )
    if any(n in ("AvgPool2d", "AvgPool3d", "MaxPool3d", "Conv3d") for n in names):
        raise FileFormatError(path, "average pooling and 3-D models are not supported")
    dropouts = [m for m in modules if m.short_name == "Dropout"]
    unit_scaling = 2  # ResNets ignore it
    if arch.startswith("conv"):
        unit_scaling = _unit_scaling(sd) or 2
    activations = {
        n for n in names if n in ("ReLU", "PReLU", "LeakyReLU", "ELU", "Tanh", "Sigmoid")
    }
    wanted = {"prelu" if arch.startswith("conv") else "relu"}
    if {a.lower() for a in activations} - wanted:
        raise FileFormatError(
            path, f"activations {sorted(activations)} are not the default of {arch}"
        )
    return ModelConfig(
        arch=arch,
        units=int(first.shape[0]),
        bn=any(n == "BatchNorm2d" for n in names),
        dropout=float(dropouts[0].get("p", 0.5)) if dropouts else 0.0,
        pooling="max" if any(n in ("MaxPool", "MaxPool2d") for n in names) else "none",
        unit_scaling=unit_scaling,
    )


def _unit_scaling(state_dict: Mapping[str, np.ndarray]) -> int | None:
    """conv*: output width of the second convolution over the first's (None if not whole)."""
    widths = [
        int(v.shape[0]) for k, v in state_dict.items() if k.startswith("features.") and v.ndim == 4
    ]
    if len(widths) >= 2 and widths[0] > 0 and widths[1] % widths[0] == 0:
        return widths[1] // widths[0]
    return None


def _kernel_size(conv: PickledObject) -> int:
    size = conv.get("kernel_size", (0,))
    return int(size[0] if isinstance(size, tuple | list) else size)


def _candidate_configs(state_dict: Mapping[str, np.ndarray]) -> Iterator[ModelConfig]:
    first = state_dict.get("features.features.0.weight")
    if first is None:
        first = state_dict.get("features.features.0.conv.weight")
    if first is None or first.ndim != 4:
        return
    units = int(first.shape[0])
    bn = any(k.endswith("running_mean") for k in state_dict)
    scalings = {2, _unit_scaling(state_dict) or 2}
    for arch, pooling, dropout, scaling in itertools.product(
        ARCHITECTURES, ("none", "max"), (0.0, 0.5), sorted(scalings)
    ):
        if scaling != 2 and not arch.startswith("conv"):
            continue
        yield ModelConfig(
            arch=arch, units=units, bn=bn, dropout=dropout, pooling=pooling, unit_scaling=scaling
        )


def infer_config(sav: TorchSav) -> ModelConfig:
    """The :class:`ModelConfig` of a Topaz model file.

    Pickled models: from their classes and weight shapes. Bare state dicts: the pretrained
    detector named by the file (``resnet8_u32.sav`` ...), else the single configuration whose
    tensors match exactly. A bare state dict does not record a dropout rate; when its tensor
    names show dropout layers, ``dropout`` is set to 0.5 (it only matters for training).

    Raises:
      FileFormatError: unsupported, ambiguous or inconsistent model.
    """
    if sav.is_module:
        config = _module_tree_config(sav)
        problems = _mismatches(config, sav.state_dict)
        if problems:
            raise FileFormatError(
                sav.path, f"weights do not fit {_describe(config)}: " + "; ".join(problems[:8])
            )
        return config
    name = pretrained_name(Path(sav.path).stem)
    if name is not None and not _mismatches(PRETRAINED[name].config, sav.state_dict):
        return PRETRAINED[name].config
    matches = [c for c in _candidate_configs(sav.state_dict) if not _mismatches(c, sav.state_dict)]
    # ResNet6 ignores `pooling`: its two spellings are the same network.
    unique = list(
        dict.fromkeys(
            dataclasses.replace(c, pooling="none") if c.arch == "resnet6" else c for c in matches
        )
    )
    if len(unique) == 1:
        return unique[0]
    if not unique:
        raise FileFormatError(
            sav.path,
            "the state dict matches no Topaz detector architecture (resnet6/8/16, conv31/63/127)",
        )
    raise FileFormatError(
        sav.path,
        "the state dict fits several architectures ("
        + ", ".join(_describe(c) for c in unique)
        + "); pass the configuration explicitly",
    )


@dataclass(frozen=True)
class TopazModel:
    """A Topaz model file read and checked, not yet turned into a picker.

    Attributes:
      source: the file path.
      sha256: hex digest of the file.
      format: ``"zip"`` or ``"legacy"`` torch serialisation.
      config: the architecture.
      state_dict: every tensor of the file (numpy, torch naming).
      extra: tensors the picker does not use: ``generative.*`` (autoencoder) and
        ``num_batches_tracked``.
      module_classes: class name of every pickled submodule (empty for a bare state dict).
    """

    source: str
    sha256: str
    format: str
    config: ModelConfig
    state_dict: OrderedDict[str, np.ndarray]
    extra: OrderedDict[str, np.ndarray]
    module_classes: OrderedDict[str, str]

    def build(self) -> Picker:
        """A :class:`~jaxpick.models.picker.Picker` with these weights."""
        model = abstract_model(self.config)
        load_state_dict(model, self.state_dict, source=self.source)
        return model

    def provenance(self) -> dict[str, Any]:
        """JSON-ready description of the source (for checkpoints)."""
        return {
            "source": os.path.abspath(self.source),
            "source_sha256": self.sha256,
            "source_format": f"topaz .sav ({self.format} torch serialization)",
            "pickled_classes": sorted(set(self.module_classes.values())),
            "extra_tensors": list(self.extra),
        }


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_topaz_model(
    path: str | os.PathLike[str], *, config: ModelConfig | None = None
) -> TopazModel:
    """Reads a Topaz ``.sav`` file and works out (or checks) its architecture.

    Args:
      path: a pretrained detector or a model saved by ``topaz train``.
      config: the architecture, if known; otherwise inferred (see :func:`infer_config`).

    Raises:
      FileFormatError: unreadable or unsafe file, unsupported model, or weights that do not
        fit the (given or inferred) configuration.
    """
    sav = read_sav(path)
    if config is None:
        config = infer_config(sav)
    else:
        problems = _mismatches(config, sav.state_dict)
        if problems:
            raise FileFormatError(
                sav.path, f"weights do not fit {_describe(config)}: " + "; ".join(problems[:8])
            )
    extra = OrderedDict((k, v) for k, v in sav.state_dict.items() if _is_extra(k))
    return TopazModel(
        source=sav.path,
        sha256=file_sha256(sav.path),
        format=sav.format,
        config=config,
        state_dict=sav.state_dict,
        extra=extra,
        module_classes=sav.module_classes,
    )


def load_topaz_model(
    path: str | os.PathLike[str], *, config: ModelConfig | None = None
) -> tuple[Picker, ModelConfig]:
    """Reads a Topaz ``.sav`` file into a picker: ``(model, config)``.

    Examples:
      >>> model, config = load_topaz_model("resnet16_u64.sav")  # doctest: +SKIP
      >>> scores = model(images, dense=True)  # doctest: +SKIP
    """
    topaz = read_topaz_model(path, config=config)
    return topaz.build(), topaz.config
