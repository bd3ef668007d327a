"""Denoisers by name or path: Topaz's seven pretrained denoisers, Topaz files, our checkpoints.

- :data:`PRETRAINED_DENOISERS`: the weight files bundled with topaz-em (``topaz/pretrained/
  denoise/``), read from an installed ``topaz-em`` without importing it (so without torch:
  ``pip install --no-deps topaz-em``).
- :func:`read_topaz_denoiser`: a Topaz ``.sav`` file, either a bare state dict (the pretrained
  files) or a whole pickled module as ``topaz denoise --save-prefix`` / ``topaz denoise3d``
  write them (``UDenoiseNet``, ``UDenoiseNetSmall``, ``UDenoiseNet3D``, ``DenoiseNet2``,
  ``AffineDenoise``, possibly wrapped in ``DataParallel``). The architecture is inferred from
  the tensor names and shapes and checked against every tensor. The file is read by
  :mod:`jaxpick.io.torch_sav`'s restricted unpickler: no code from the file runs.
- :func:`save_denoiser` / :func:`load_denoiser`: our checkpoint directory (orbax arrays +
  ``config.json``), written atomically.
- :func:`resolve_denoiser`: any of the above from one string (what ``-m`` accepts).

Examples:
  >>> from jaxpick.models.denoisers import resolve_denoiser  # doctest: +SKIP
  >>> model, config = resolve_denoiser("unet")  # doctest: +SKIP
  >>> config.base_kernel, config.top_kernel  # doctest: +SKIP
  (11, 5)
"""

from __future__ import annotations

import json
import os
import re
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from jaxpick._version import __version__
from jaxpick.checkpoint import (
    CONFIG_FILE,
    PARAMS_DIR,
    check_replaceable,
    load_arrays,
    model_arrays,
    set_model_arrays,
    topaz_package_dir,
    write_checkpoint_dir,
)
from jaxpick.errors import ConfigError, FileFormatError
from jaxpick.io.torch_sav import TorchSav, read_sav
from jaxpick.models.unet import Denoiser, DenoiserConfig, abstract_denoiser

__all__ = [
    "PRETRAINED_DENOISERS",
    "DENOISER_ALIASES",
    "PretrainedDenoiser",
    "TopazDenoiser",
    "denoiser_name",
    "infer_denoiser_config",
    "load_denoiser",
    "pretrained_denoiser_path",
    "read_topaz_denoiser",
    "resolve_denoiser",
    "save_denoiser",
    "to_topaz_state_dict",
    "torch_tensor_names",
]

FORMAT_NAME = "jaxpick-denoiser"
FORMAT_VERSION = 1

_INSTALL_HINT = (
    "install Topaz's weight files with `pip install --no-deps topaz-em` (jaxpick never imports "
    "topaz or torch), or pass the path of a .sav file or of a jaxpick denoiser checkpoint"
)


@dataclass(frozen=True)
class PretrainedDenoiser:
    """A denoiser bundled with Topaz (``topaz/pretrained/denoise/<file>``).

    Attributes:
      file: file name inside the topaz package.
      config: the architecture.
      description: what it is (training loss, Topaz version, data).
    """

    file: str
    config: DenoiserConfig
    description: str


_UNET3D = DenoiserConfig(arch="unet", ndim=3, base_kernel=7, top_kernel=3)

#: Topaz 0.3.20's pretrained denoisers (``topaz.denoising.models.model_name_dict``).
PRETRAINED_DENOISERS: Mapping[str, PretrainedDenoiser] = MappingProxyType(
    {
        "unet": PretrainedDenoiser(
            "unet_L2_v0.2.2.sav",
            DenoiserConfig(arch="unet", base_kernel=11, top_kernel=5),
            "U-Net, L2 loss, v0.2.2 (Topaz's default)",
        ),
        "unet-v0.2.1": PretrainedDenoiser(
            "unet_L2_v0.2.1.sav",
            DenoiserConfig(arch="unet", base_kernel=7, top_kernel=3),
            "U-Net, L2 loss, v0.2.1",
        ),
        "unet-small": PretrainedDenoiser(
            "unet_small_L1_v0.2.2.sav",
            DenoiserConfig(arch="unet", depth=3, base_kernel=11, top_kernel=5),
            "small U-Net (3 levels), L1 loss, v0.2.2",
        ),
        "fcnn": PretrainedDenoiser(
            "fcnn_L1_v0.2.2.sav",
            DenoiserConfig(arch="fcnn", width=64, base_kernel=11),
            "three 11x11 convolutions, L1 loss, v0.2.2",
        ),
        "affine": PretrainedDenoiser(
            "affine_L1_v0.2.2.sav",
            DenoiserConfig(arch="affine", base_kernel=31),
            "one 31x31 linear filter, L1 loss, v0.2.2",
        ),
        "unet-3d-10a": PretrainedDenoiser(
            "unet-3d-10a-v0.2.4.sav", _UNET3D, "3-D U-Net for tomograms at about 10 A/voxel"
        ),
        "unet-3d-20a": PretrainedDenoiser(
            "unet-3d-20a-v0.2.4.sav", _UNET3D, "3-D U-Net for tomograms at about 20 A/voxel"
        ),
    }
)

#: Other names Topaz accepts for the same files.
DENOISER_ALIASES: Mapping[str, str] = MappingProxyType({"unet-3d": "unet-3d-10a"})


def denoiser_name(name: str) -> str | None:
    """The pretrained denoiser ``name`` stands for (resolving aliases), or None."""
    name = DENOISER_ALIASES.get(name, name)
    return name if name in PRETRAINED_DENOISERS else None


def _known_names() -> str:
    return ", ".join([*PRETRAINED_DENOISERS, *DENOISER_ALIASES])


def pretrained_denoiser_path(name: str) -> Path:
    """The ``.sav`` file of a pretrained denoiser in the installed topaz-em package.

    Raises:
      ConfigError: unknown name.
      FileFormatError: topaz-em is not installed or lacks the file (the message says how to
        install it).
    """
    resolved = denoiser_name(name)
    if resolved is None:
        raise ConfigError(f"{name!r} is not a pretrained denoiser ({_known_names()})")
    file = PRETRAINED_DENOISERS[resolved].file
    package = topaz_package_dir()
    if package is None:
        raise FileFormatError(
            f"topaz/pretrained/denoise/{file}",
            f"pretrained denoiser {name!r} not found: the topaz package is not installed; "
            + _INSTALL_HINT,
        )
    path = package / "pretrained" / "denoise" / file
    if not path.is_file():
        raise FileFormatError(
            path,
            f"pretrained denoiser {name!r} is missing from the installed topaz; " + _INSTALL_HINT,
        )
    return path


# --- Topaz state dicts <-> our parameters -------------------------------------------------


@dataclass(frozen=True)
class TensorName:
    """One torch tensor and where it goes.

    Attributes:
      torch_key: the state-dict key (``enc1.0.weight``).
      path: the path in ``nnx.to_pure_dict(nnx.state(model))``.
      torch_shape: the expected torch shape (``(O, I, *k)`` for kernels).
      kernel: whether it is a convolution weight (``(O, I, *k)`` <-> ``(*k, I, O)``).
    """

    torch_key: str
    path: tuple[str | int, ...]
    torch_shape: tuple[int, ...]
    kernel: bool


def _conv(
    prefix: str, path: tuple[str | int, ...], nin: int, nout: int, k: int, ndim: int
) -> Iterator[TensorName]:
    yield TensorName(f"{prefix}.weight", (*path, "kernel"), (nout, nin, *([k] * ndim)), True)
    yield TensorName(f"{prefix}.bias", (*path, "bias"), (nout,), False)


def torch_tensor_names(config: DenoiserConfig) -> tuple[TensorName, ...]:
    """Every tensor of the Topaz module ``config`` describes, in Topaz's state-dict order."""
    nd, w = config.ndim, config.width
    out: list[TensorName] = []
    if config.arch == "affine":
        out += _conv("filter", ("filter",), 1, 1, config.base_kernel, nd)
    elif config.arch == "fcnn":
        k = config.base_kernel
        for i, (a, b) in enumerate(((1, w), (w, w), (w, 1))):
            out += _conv(f"net.{2 * i}", ("net", i), a, b, k, nd)
    else:
        depth = config.depth
        out += _conv("enc1.0", ("enc", 0), 1, w, config.base_kernel, nd)
        for i in range(1, depth + 1):
            out += _conv(f"enc{i + 1}.0", ("enc", i), w, w, 3, nd)
        for level in range(depth - 1):  # Topaz dec{depth} .. dec2
            name = f"dec{depth - level}"
            nin = 2 * w if level == 0 else 3 * w
            out += _conv(f"{name}.0", ("dec", level, 0), nin, 2 * w, 3, nd)
            out += _conv(f"{name}.2", ("dec", level, 1), 2 * w, 2 * w, 3, nd)
        widths = (2 * w + 1, *config.top_widths, 1)
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            out += _conv(f"dec1.{2 * i}", ("top", i), a, b, config.top_kernel, nd)
    return tuple(out)


def _mismatches(config: DenoiserConfig, state_dict: Mapping[str, np.ndarray]) -> list[str]:
    problems = []
    expected = {t.torch_key: t for t in torch_tensor_names(config)}
    for key, t in expected.items():
        if key not in state_dict:
            problems.append(f"missing {key} {list(t.torch_shape)}")
        elif tuple(np.shape(state_dict[key])) != t.torch_shape:
            problems.append(
                f"{key} has shape {list(np.shape(state_dict[key]))}, expected {list(t.torch_shape)}"
            )
    problems += [
        f"unexpected {k} {list(np.shape(v))}" for k, v in state_dict.items() if k not in expected
    ]
    return problems


def _describe(config: DenoiserConfig) -> str:
    d = config.to_dict()
    return f"{d.pop('arch')}(" + ", ".join(f"{k}={v!r}" for k, v in d.items()) + ")"


def state_dict_to_arrays(
    config: DenoiserConfig, state_dict: Mapping[str, np.ndarray], *, source: str = "state dict"
) -> dict[str, np.ndarray]:
    """Checks a Topaz state dict against ``config``; returns ``{dotted path: float32 array}``.

    The keys are those of :func:`jaxpick.checkpoint.model_arrays` (``enc.0.kernel``, ...).

    Raises:
      FileFormatError: missing, unexpected or mis-shaped tensors (listed).
    """
    problems = _mismatches(config, state_dict)
    if problems:
        shown = "; ".join(problems[:8]) + (
            f"; ... ({len(problems)} in all)" if len(problems) > 8 else ""
        )
        raise FileFormatError(source, f"weights do not fit {_describe(config)}: {shown}")
    arrays: dict[str, np.ndarray] = {}
    for t in torch_tensor_names(config):
        value = np.asarray(state_dict[t.torch_key], dtype=np.float32)
        if t.kernel:
            nd = value.ndim - 2
            value = np.ascontiguousarray(value.transpose(*range(2, 2 + nd), 1, 0))
        arrays[".".join(map(str, t.path))] = value
    return arrays


def to_topaz_state_dict(model: Denoiser) -> OrderedDict[str, np.ndarray]:
    """The Topaz (torch) state dict of ``model``: the inverse of the import."""
    arrays = model_arrays(model)
    out: OrderedDict[str, np.ndarray] = OrderedDict()
    for t in torch_tensor_names(model.config):
        value = arrays[".".join(map(str, t.path))]
        if t.kernel:
            nd = value.ndim - 2
            value = value.transpose(nd + 1, nd, *range(nd))
        out[t.torch_key] = np.ascontiguousarray(value)
    return out


#: Topaz module classes we can rebuild (pickled by ``topaz denoise --save-prefix``).
_MODULE_CLASSES = {
    "UDenoiseNet": "unet",
    "UDenoiseNetSmall": "unet",
    "UDenoiseNet3D": "unet",
    "DenoiseNet2": "fcnn",
    "AffineDenoise": "affine",
}
#: Topaz classes that exist but that we refuse, with the reason.
_REFUSED_CLASSES = {
    "UDenoiseNet2": "a U-Net without skip connections (Topaz's --arch unet2, which never loads)",
    "UDenoiseNet3": "a residual U-Net (Topaz's --arch unet3, which never loads)",
    "DenoiseNet": "Topaz's fcnet, whose channel counts do not fit (it cannot run in Topaz)",
}
_ENC = re.compile(r"^enc(\d+)\.0\.weight$")


def infer_denoiser_config(
    state_dict: Mapping[str, np.ndarray], *, source: str = "state dict"
) -> DenoiserConfig:
    """The architecture of a Topaz denoiser state dict, from its tensor names and shapes.

    Raises:
      FileFormatError: the tensors fit no supported denoiser (the message names ``source``).
    """
    keys = set(state_dict)
    shape = {k: tuple(np.shape(v)) for k, v in state_dict.items()}
    if "enc1.0.weight" in keys and "dec1.0.weight" in keys:
        first = shape["enc1.0.weight"]
        levels = sorted(int(m.group(1)) for k in keys if (m := _ENC.match(k)))
        top = [shape[k] for k in (f"dec1.{i}.weight" for i in range(0, 16, 2)) if k in shape]
        if len(first) not in (4, 5) or levels != list(range(1, len(levels) + 1)) or len(top) < 2:
            raise FileFormatError(source, "a U-Net state dict with an unexpected layout")
        config = DenoiserConfig(
            arch="unet",
            ndim=len(first) - 2,
            width=first[0],
            depth=len(levels) - 1,
            base_kernel=first[2],
            top_kernel=top[0][2],
            top_widths=tuple(s[0] for s in top[:-1]),
        )
    elif "net.0.weight" in keys:
        first = shape["net.0.weight"]
        config = DenoiserConfig(
            arch="fcnn", ndim=len(first) - 2, width=first[0], base_kernel=first[2]
        )
    elif "filter.weight" in keys:
        first = shape["filter.weight"]
        config = DenoiserConfig(arch="affine", ndim=len(first) - 2, base_kernel=first[2])
    else:
        shown = ", ".join(sorted(keys)[:6]) + (", ..." if len(keys) > 6 else "")
        raise FileFormatError(
            source,
            "not a Topaz denoiser this jaxpick knows (U-Net, U-Net small/3-D, fcnn, affine): "
            f"tensors {shown or 'none'}",
        )
    problems = _mismatches(config, state_dict)
    if problems:
        raise FileFormatError(
            source, f"weights do not fit {_describe(config)}: " + "; ".join(problems[:8])
        )
    return config


@dataclass(frozen=True)
class TopazDenoiser:
    """A Topaz denoiser file read and checked, not yet turned into a model.

    Attributes:
      source: the file path.
      format: ``"zip"`` or ``"legacy"`` torch serialisation.
      config: the architecture.
      state_dict: the tensors (numpy, torch naming, without a ``module.`` prefix).
      module_class: the pickled root class name (``""`` for a bare state dict).
    """

    source: str
    format: str
    config: DenoiserConfig
    state_dict: OrderedDict[str, np.ndarray]
    module_class: str

    def build(self) -> Denoiser:
        """The :class:`~jaxpick.models.unet.Denoiser` with these weights."""
        model = abstract_denoiser(self.config)
        set_model_arrays(
            model,
            state_dict_to_arrays(self.config, self.state_dict, source=self.source),
            source=self.source,
        )
        return model

    def provenance(self) -> dict[str, Any]:
        """JSON-ready description of the source (for checkpoints)."""
        from jaxpick.models.topaz_weights import file_sha256

        return {
            "source": os.path.abspath(self.source),
            "source_sha256": file_sha256(self.source),
            "source_format": f"topaz .sav ({self.format} torch serialization)",
            "pickled_class": self.module_class,
        }


def _unwrap(sav: TorchSav) -> tuple[OrderedDict[str, np.ndarray], str]:
    """The state dict without DataParallel's ``module.`` prefix, and the model class name."""
    state = sav.state_dict
    root = sav.module_classes.get("", "")
    short = root.rsplit(".", 1)[-1]
    if short == "DataParallel":
        root = sav.module_classes.get("module", "")
        short = root.rsplit(".", 1)[-1]
    if state and all(k.startswith("module.") for k in state):
        state = OrderedDict((k[len("module.") :], v) for k, v in state.items())
    if sav.is_module:
        if short in _REFUSED_CLASSES:
            raise FileFormatError(sav.path, f"holds {short}, {_REFUSED_CLASSES[short]}")
        if short not in _MODULE_CLASSES:
            raise FileFormatError(
                sav.path,
                f"holds a pickled {root or 'object'}, not a Topaz denoiser "
                f"({', '.join(_MODULE_CLASSES)})",
            )
    return state, short if sav.is_module else ""


def read_topaz_denoiser(
    path: str | os.PathLike[str], *, config: DenoiserConfig | None = None
) -> TopazDenoiser:
    """Reads a Topaz denoiser ``.sav`` and works out (or checks) its architecture.

    Args:
      path: a pretrained denoiser file, or a model saved by ``topaz denoise --save-prefix`` /
        ``topaz denoise3d`` (a pickled module).
      config: the architecture if known; otherwise inferred from the tensors.

    Raises:
      FileFormatError: unreadable or unsafe file, unknown architecture, or weights that do not
        fit (the message names the file).
    """
    sav = read_sav(path)
    state, module_class = _unwrap(sav)
    if config is None:
        config = infer_denoiser_config(state, source=sav.path)
        if module_class and _MODULE_CLASSES[module_class] != config.arch:
            raise FileFormatError(
                sav.path, f"a pickled {module_class} whose tensors look like {config.arch}"
            )
    else:
        problems = _mismatches(config, state)
        if problems:
            raise FileFormatError(
                sav.path, f"weights do not fit {_describe(config)}: " + "; ".join(problems[:8])
            )
    return TopazDenoiser(
        source=sav.path,
        format=sav.format,
        config=config,
        state_dict=state,
        module_class=module_class,
    )


# --- our checkpoints -----------------------------------------------------------------------


def save_denoiser(
    path: str | os.PathLike[str],
    model: Denoiser,
    *,
    provenance: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Saves a denoiser as a checkpoint directory (``config.json`` + orbax ``params/``),
    atomically: written beside the target and renamed into place when complete.

    Args:
      path: the checkpoint directory (may exist if empty).
      model: the denoiser.
      provenance: JSON-serialisable notes stored in ``config.json``.
      overwrite: replace an existing checkpoint.

    Returns:
      The checkpoint directory.

    Raises:
      FileFormatError: ``path`` exists (and ``overwrite`` is false, or it is not a checkpoint),
        or it cannot be written.
    """
    final = Path(path).absolute()
    check_replaceable(final, overwrite=overwrite, hint="pass overwrite=True")
    arrays = model_arrays(model)
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "jaxpick_version": __version__,
        "model": model.config.to_dict(),
        "receptive_field": model.config.receptive_field,
        "tensors": {k: list(v.shape) for k, v in arrays.items()},
        "provenance": provenance or {},
    }
    return write_checkpoint_dir(final, meta, {PARAMS_DIR: arrays})


def read_denoiser_config(path: str | os.PathLike[str]) -> tuple[DenoiserConfig, dict[str, Any]]:
    """The :class:`DenoiserConfig` and the full ``config.json`` of a denoiser checkpoint.

    Raises:
      FileFormatError: not a jaxpick denoiser checkpoint, or an unsupported format version.
    """
    directory = Path(path)
    meta_path = directory / CONFIG_FILE
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileFormatError(directory, f"not a jaxpick checkpoint (no {CONFIG_FILE})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise FileFormatError(meta_path, f"unreadable: {err}") from err
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        kind = meta.get("format") if isinstance(meta, dict) else None
        raise FileFormatError(
            meta_path,
            f"not a {FORMAT_NAME} checkpoint"
            + (" (it is a picker checkpoint)" if kind == "jaxpick-model" else ""),
        )
    if meta.get("format_version") != FORMAT_VERSION:
        raise FileFormatError(
            meta_path,
            f"format version {meta.get('format_version')!r} is not supported "
            f"(this jaxpick reads {FORMAT_VERSION})",
        )
    try:
        config = DenoiserConfig.from_dict(meta.get("model") or {})
    except ConfigError as err:
        raise FileFormatError(meta_path, f"bad model configuration: {err}") from err
    return config, meta


def load_denoiser(path: str | os.PathLike[str]) -> tuple[Denoiser, DenoiserConfig]:
    """Loads a checkpoint written by :func:`save_denoiser`: ``(model, config)``.

    Raises:
      FileFormatError: not a checkpoint, unsupported version, or arrays that do not fit.
    """
    directory = Path(path).absolute()
    config, _meta = read_denoiser_config(directory)
    model = abstract_denoiser(config)
    arrays = load_arrays(directory, PARAMS_DIR)
    set_model_arrays(model, arrays, source=os.fspath(directory / PARAMS_DIR))
    return model, config


def resolve_denoiser(
    name_or_path: str | os.PathLike[str], *, ndim: int | None = None
) -> tuple[Denoiser, DenoiserConfig]:
    """A denoiser from a pretrained name, a Topaz ``.sav`` file or a jaxpick checkpoint.

    Args:
      name_or_path: ``unet`` (= unet_L2_v0.2.2), ``unet-v0.2.1``, ``unet-small``, ``fcnn``,
        ``affine``, ``unet-3d`` (= ``unet-3d-10a``), ``unet-3d-20a``; or a path.
      ndim: if given, the dimensionality the caller needs (2 for micrographs, 3 for tomograms).

    Returns:
      ``(model, config)``.

    Raises:
      ConfigError: neither an existing path nor a pretrained name, or the wrong dimensionality.
      FileFormatError: an unreadable file or checkpoint, or pretrained weights not installed.
    """
    text = os.fspath(name_or_path)
    path = Path(text)
    if path.is_dir():
        model, config = load_denoiser(path)
    elif path.is_file():
        topaz = read_topaz_denoiser(path)
        model, config = topaz.build(), topaz.config
    elif denoiser_name(text) is not None:
        resolved = denoiser_name(text)
        assert resolved is not None
        topaz = read_topaz_denoiser(
            pretrained_denoiser_path(resolved), config=PRETRAINED_DENOISERS[resolved].config
        )
        model, config = topaz.build(), topaz.config
    else:
        raise ConfigError(
            f"model {text!r}: no such file or checkpoint directory, and not a pretrained "
            f"denoiser name ({_known_names()})"
        )
    if ndim is not None and config.ndim != ndim:
        kind = {2: "micrographs (2-D)", 3: "tomograms (3-D)"}
        raise ConfigError(
            f"model {text!r} is a {config.ndim}-D denoiser; this command denoises {kind[ndim]}"
        )
    return model, config
