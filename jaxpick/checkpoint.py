"""jaxpick's model checkpoints (orbax + JSON, no pickles) and model lookup by name or path.

A checkpoint is a directory::

    model_dir/
      config.json   {"format": "jaxpick-model", "format_version": 1, "model": {ModelConfig},
                     "tensors": {name: shape}, "jaxpick_version": ..., "provenance": {...}}
      params/       orbax checkpoint of a flat {name: array} dict: parameters and BN statistics

:func:`save_model` writes it into a temporary sibling directory and renames it into place, so a
directory under the final name is always complete. :func:`load_model` rebuilds the architecture
from ``config.json`` (through the model registry) and restores the arrays into it.

:func:`resolve_model` accepts what ``topaz extract -m`` accepts, plus our checkpoints: a
checkpoint directory, a Topaz ``.sav`` file (converted on the fly), or a pretrained detector
name (``resnet8``, ``resnet8_u32``, ``resnet8_u64``, ``resnet16``, ``resnet16_u32``,
``resnet16_u64``; the bare names mean the 64-unit models, as in Topaz 0.3.20). Pretrained
weights are read from an installed ``topaz-em`` package, found without importing it (importing
topaz imports torch): ``pip install --no-deps topaz-em`` provides them without torch.

Examples:
  >>> from jaxpick.checkpoint import load_model, resolve_model, save_model  # doctest: +SKIP
  >>> model, config = resolve_model("resnet16")  # doctest: +SKIP
  >>> save_model("models/resnet16_u64", model, config)  # doctest: +SKIP
  >>> model, config = load_model("models/resnet16_u64")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx

from jaxpick._version import __version__
from jaxpick.errors import ConfigError, FileFormatError
from jaxpick.io.atomic import TEMP_PREFIX
from jaxpick.models.config import ModelConfig
from jaxpick.models.picker import Picker
from jaxpick.models.registry import (
    PRETRAINED,
    PRETRAINED_ALIASES,
    abstract_model,
    pretrained_name,
)

FORMAT_NAME = "jaxpick-model"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
PARAMS_DIR = "params"

_INSTALL_HINT = (
    "install Topaz's weight files with `pip install --no-deps topaz-em` (jaxpick never imports "
    "topaz or torch), or pass the path of a .sav file or of a jaxpick checkpoint"
)


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}


def _fill(tree: Any, flat: dict[str, Any], prefix: str = "") -> Any:
    if isinstance(tree, dict):
        return {key: _fill(value, flat, f"{prefix}{key}.") for key, value in tree.items()}
    return flat[prefix[:-1]]


def model_arrays(model: nnx.Module) -> dict[str, np.ndarray]:
    """All arrays of a model (parameters and BN statistics) by dotted name, as numpy."""
    pure = nnx.to_pure_dict(nnx.state(model, (nnx.Param, nnx.BatchStat)))
    return {k: np.asarray(v) for k, v in _flatten(pure).items()}


def set_model_arrays(model: nnx.Module, arrays: dict[str, np.ndarray], *, source: str) -> None:
    """Loads :func:`model_arrays`-style arrays into ``model`` (names and shapes must match).

    ``model`` may be abstract (:func:`~jaxpick.models.registry.abstract_model`).
    """
    state = nnx.state(model, (nnx.Param, nnx.BatchStat))
    template = _flatten(nnx.to_pure_dict(state))  # arrays or ShapeDtypeStructs
    missing = sorted(set(template) - set(arrays))
    unexpected = sorted(set(arrays) - set(template))
    wrong = [
        f"{k} {list(np.shape(arrays[k]))} != {list(v.shape)}"
        for k, v in template.items()
        if k in arrays and tuple(np.shape(arrays[k])) != tuple(v.shape)
    ]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append("missing " + ", ".join(missing[:5]))
        if unexpected:
            parts.append("unexpected " + ", ".join(unexpected[:5]))
        if wrong:
            parts.append("wrong shapes " + ", ".join(wrong[:5]))
        raise FileFormatError(source, "arrays do not fit the model: " + "; ".join(parts))
    flat = {k: jax.numpy.asarray(np.asarray(arrays[k], v.dtype)) for k, v in template.items()}
    nnx.replace_by_pure_dict(state, _fill(nnx.to_pure_dict(state), flat))
    nnx.update(model, state)


def save_model(
    path: str | os.PathLike[str],
    model: nnx.Module,
    config: ModelConfig | None = None,
    *,
    provenance: dict[str, Any] | None = None,
    overwrite: bool = False,
    extra_arrays: Mapping[str, Mapping[str, np.ndarray]] | None = None,
    extra_files: Mapping[str, str] | None = None,
) -> Path:
    """Saves a picker as a checkpoint directory, atomically.

    Args:
      path: the checkpoint directory to create (it may exist if empty).
      model: the picker.
      config: its configuration (default: ``model.config``); must equal the model's.
      provenance: JSON-serialisable notes stored in ``config.json`` (e.g. the source ``.sav``
        and its sha256).
      overwrite: replace an existing checkpoint directory.
      extra_arrays: further orbax trees saved beside the parameters, ``{subfolder: {name:
        array}}`` (training writes its optimizer state here; :func:`load_arrays` reads them).
      extra_files: further text files, ``{file name: text}``.

    Returns:
      The checkpoint directory.

    Raises:
      FileFormatError: ``path`` exists and ``overwrite`` is false, or is not a checkpoint.
      ConfigError: ``config`` differs from the model's.
    """
    final = Path(path).absolute()
    model_config: ModelConfig = model.config  # type: ignore[attr-defined]
    config = model_config if config is None else config
    if config != model_config:
        raise ConfigError(f"config {config} does not describe the model ({model_config})")
    check_replaceable(final, overwrite=overwrite, hint="pass overwrite=True / --force")
    arrays = model_arrays(model)
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "jaxpick_version": __version__,
        "model": config.to_dict(),
        "receptive_field": config.receptive_field,
        "tensors": {k: list(v.shape) for k, v in arrays.items()},
        "provenance": provenance or {},
    }
    trees = {PARAMS_DIR: arrays, **{k: dict(v) for k, v in (extra_arrays or {}).items()}}
    return write_checkpoint_dir(final, meta, trees, extra_files=extra_files)


def check_replaceable(final: Path, *, overwrite: bool, hint: str) -> None:
    """Refuses to write a checkpoint over ``final`` unless it is absent, an empty folder, or
    (with ``overwrite``) a jaxpick checkpoint.

    Raises:
      FileFormatError: naming ``final`` and what is wrong.
    """
    if final.exists() and not (final.is_dir() and not any(final.iterdir())):
        if not overwrite:
            raise FileFormatError(final, f"already exists ({hint})")
        if final.is_dir() and not (final / CONFIG_FILE).is_file():
            raise FileFormatError(final, "exists and is not a jaxpick checkpoint; not replacing it")


def write_checkpoint_dir(
    final: Path,
    meta: Mapping[str, Any],
    trees: Mapping[str, Mapping[str, Any]],
    *,
    extra_files: Mapping[str, str] | None = None,
) -> Path:
    """Writes a checkpoint folder atomically: orbax ``trees`` (``{subfolder: {name: array}}``),
    text ``extra_files`` and ``config.json`` (``meta``) into a temporary sibling, then renames
    it over ``final`` (an existing checkpoint is moved aside first and removed after). A crash
    leaves either the old checkpoint or the new one, never a mix.

    Raises:
      FileFormatError: the folder cannot be written.
    """
    import orbax.checkpoint as ocp

    empty_dir = final.is_dir() and not any(final.iterdir())
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{final.name}-", dir=final.parent))
    except OSError as err:
        raise FileFormatError(final, f"cannot write: {err.strerror or err}") from err
    try:
        checkpointer = ocp.StandardCheckpointer()
        try:
            for folder, tree in trees.items():
                checkpointer.save(tmp / folder, dict(tree))
                checkpointer.wait_until_finished()
        finally:
            checkpointer.close()
        for name, content in (extra_files or {}).items():
            (tmp / name).write_text(content, encoding="utf-8")
        text = json.dumps(dict(meta), indent=2) + "\n"
        (tmp / CONFIG_FILE).write_text(text, encoding="utf-8")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        if final.exists() and not empty_dir:
            old = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{final.name}-old-", dir=final.parent))
            os.replace(final, old / final.name)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def read_checkpoint_config(path: str | os.PathLike[str]) -> tuple[ModelConfig, dict[str, Any]]:
    """The :class:`ModelConfig` and the full ``config.json`` of a checkpoint directory.

    Raises:
      FileFormatError: not a jaxpick checkpoint, or an unsupported format version.
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
        raise FileFormatError(meta_path, f"not a {FORMAT_NAME} file")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise FileFormatError(
            meta_path,
            f"format version {version!r} is not supported (this jaxpick reads {FORMAT_VERSION})",
        )
    try:
        config = ModelConfig.from_dict(meta.get("model") or {})
    except ConfigError as err:
        raise FileFormatError(meta_path, f"bad model configuration: {err}") from err
    return config, meta


def load_model(path: str | os.PathLike[str]) -> tuple[Picker, ModelConfig]:
    """Loads a checkpoint written by :func:`save_model`.

    Returns:
      ``(model, config)``.

    Raises:
      FileFormatError: not a checkpoint, unsupported version, or arrays that do not fit.
    """
    directory = Path(path).absolute()
    config, _meta = read_checkpoint_config(directory)
    model = abstract_model(config)
    arrays = load_arrays(directory, PARAMS_DIR)
    set_model_arrays(model, arrays, source=os.fspath(directory / PARAMS_DIR))
    return model, config


def load_arrays(path: str | os.PathLike[str], folder: str) -> dict[str, np.ndarray]:
    """The ``{name: array}`` tree saved in ``folder`` of a checkpoint (the parameters, or an
    ``extra_arrays`` entry of :func:`save_model`).

    Raises:
      FileFormatError: the folder is missing or cannot be restored.
    """
    import orbax.checkpoint as ocp

    where = Path(path).absolute() / folder
    if not where.is_dir():
        raise FileFormatError(where, "missing from the checkpoint")
    checkpointer = ocp.StandardCheckpointer()
    try:
        arrays = checkpointer.restore(where)
    except Exception as err:  # orbax raises many types for damaged checkpoints
        raise FileFormatError(where, f"cannot restore: {err}") from err
    finally:
        checkpointer.close()
    if not isinstance(arrays, dict):
        raise FileFormatError(where, "unexpected content")
    return {k: np.asarray(v) for k, v in arrays.items()}


def state_to_arrays(state: Any) -> dict[str, np.ndarray]:
    """A training state pytree as ``{index: array}`` for ``save_model(extra_arrays=...)``."""
    leaves = jax.tree_util.tree_leaves(jax.device_get(state))
    return {f"{i:05d}": np.asarray(leaf) for i, leaf in enumerate(leaves)}


def arrays_to_state(template: Any, arrays: dict[str, np.ndarray], where: Path) -> Any:
    """The inverse of :func:`state_to_arrays`, shaped like ``template`` (a fresh state).

    Raises:
      FileFormatError: the arrays do not fit the template (another model or optimizer).
    """
    leaves, treedef = jax.tree_util.tree_flatten(template)
    if len(arrays) != len(leaves):
        raise FileFormatError(where, "training state does not match this model and optimizer")
    restored = []
    for i, leaf in enumerate(leaves):
        value = arrays[f"{i:05d}"]
        if value.shape != np.shape(leaf):
            raise FileFormatError(where, "training state does not match this model and optimizer")
        restored.append(value.astype(np.asarray(leaf).dtype))
    return jax.tree_util.tree_unflatten(treedef, restored)


def topaz_package_dir() -> Path | None:
    """The installed ``topaz`` package directory, found without importing it (or ``None``)."""
    try:
        spec = importlib.util.find_spec("topaz")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def pretrained_path(name: str) -> Path:
    """The ``.sav`` file of a pretrained detector inside the installed topaz-em package.

    Raises:
      ConfigError: unknown name.
      FileFormatError: topaz-em is not installed or lacks the file (the message says how to
        install it).
    """
    resolved = pretrained_name(name)
    if resolved is None:
        known = ", ".join([*PRETRAINED_ALIASES, *PRETRAINED])
        raise ConfigError(f"model {name!r} is not a pretrained detector name ({known})")
    package = topaz_package_dir()
    if package is None:
        raise FileFormatError(
            f"topaz/pretrained/detector/{PRETRAINED[resolved].file}",
            f"pretrained detector {name!r} not found: the topaz package is not installed; "
            + _INSTALL_HINT,
        )
    path = package / "pretrained" / "detector" / PRETRAINED[resolved].file
    if not path.is_file():
        raise FileFormatError(
            path,
            f"pretrained detector {name!r} is missing from the installed topaz; " + _INSTALL_HINT,
        )
    return path


def _read_topaz(name_or_path: str) -> Any:
    from jaxpick.models.topaz_weights import read_topaz_model

    resolved = pretrained_name(name_or_path)
    if resolved is not None and not os.path.exists(name_or_path):
        return read_topaz_model(pretrained_path(resolved), config=PRETRAINED[resolved].config)
    return read_topaz_model(name_or_path)


def resolve_model(name_or_path: str | os.PathLike[str]) -> tuple[Picker, ModelConfig]:
    """A picker from a checkpoint directory, a Topaz ``.sav`` file or a pretrained name.

    Args:
      name_or_path: a jaxpick checkpoint directory; a Topaz model file (a pretrained detector or
        one saved by ``topaz train``); or ``resnet8``, ``resnet8_u32``, ``resnet8_u64``,
        ``resnet16``, ``resnet16_u32``, ``resnet16_u64`` (``resnet8``/``resnet16`` are the
        64-unit models, as in Topaz).

    Returns:
      ``(model, config)``.

    Raises:
      ConfigError: neither an existing path nor a pretrained name.
      FileFormatError: an unreadable file or checkpoint, or pretrained weights not installed.
    """
    text = os.fspath(name_or_path)
    path = Path(text)
    if path.is_dir():
        return load_model(path)
    if path.is_file() or pretrained_name(text) is not None:
        topaz = _read_topaz(text)
        return topaz.build(), topaz.config
    known = ", ".join([*PRETRAINED_ALIASES, *PRETRAINED])
    raise ConfigError(
        f"model {text!r}: no such file or checkpoint directory, and not a pretrained "
        f"detector name ({known})"
    )


@dataclass(frozen=True, kw_only=True)
class ConvertModelConfig:
    """``jaxpick convert-model``: a Topaz model -> a jaxpick checkpoint.

    Attributes:
      source: a Topaz ``.sav`` file or a pretrained detector name.
      output: the checkpoint directory to write.
      overwrite: replace an existing checkpoint.
    """

    source: str
    output: str
    overwrite: bool = False

    def __post_init__(self) -> None:
        if not self.source:
            raise ConfigError("source: a .sav file or a pretrained model name is needed")
        if not self.output:
            raise ConfigError("output: a checkpoint directory is needed")


def convert_model(config: ConvertModelConfig) -> tuple[Path, ModelConfig]:
    """Converts a Topaz model into a jaxpick checkpoint (with its provenance).

    Returns:
      ``(checkpoint directory, model config)``.
    """
    source = config.source
    if not os.path.exists(source) and pretrained_name(source) is None:
        raise FileFormatError(source, "no such file (and not a pretrained detector name)")
    topaz = _read_topaz(source)
    provenance = topaz.provenance()
    resolved = pretrained_name(source)
    if resolved is not None and not os.path.exists(source):
        provenance["pretrained_name"] = resolved
    path = save_model(
        config.output,
        topaz.build(),
        topaz.config,
        provenance=provenance,
        overwrite=config.overwrite,
    )
    return path, topaz.config
