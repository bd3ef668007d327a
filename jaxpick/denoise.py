"""Denoising many micrographs (``jaxpick denoise``) and tomograms (``jaxpick denoise3d``).

The library behind the two commands: :class:`DenoiseConfig` / :class:`Denoise3dConfig` hold
Topaz's flags, :func:`denoise` / :func:`denoise3d` stream the inputs through the network:
header-only planning, skip-done, reader threads a bounded number of files ahead, one compiled
function per input shape, outputs written under temporary names and renamed when complete, and
nothing kept once written, so host memory stays bounded over any number of files.

The numerics are :mod:`jaxpick.inference.denoise` (Topaz's ``denoise_image`` and
``Denoise3D.denoise``, spec 6.2 and 6.4).

**Tiling.** ``-s/--patch-size`` and ``-p/--patch-padding`` given: exactly Topaz's windows.
Not given (2-D): Topaz's default tiles (1024 px) with 128 px of context instead of 500, each
window keeping the pooling grid and the mean and std of Topaz's window (see
:func:`~jaxpick.inference.denoise.matched_tiling`): a third less work than Topaz's default on a
4096² micrograph (windows of 1.5x the micrograph's pixels instead of 2.2x), and an output within
1e-4 σ of Topaz's default (measured on 2048² crops of two real EPU micrographs; smaller context
would cost accuracy: 96 px gives 7e-3 σ). 3-D keeps Topaz's defaults (96 / 48).

**Output names** (as Topaz): with ``-o DIR``, ``DIR/<name><suffix>.<format>`` (``<name>`` =
the input's file name without its last extension); without, next to the input as
``<path without extension><suffix or ".denoised">.<format>``. ``denoise3d`` keeps the input's
extension. MRC outputs carry the input's pixel size and true statistics.

Examples:
  >>> from jaxpick.denoise import DenoiseConfig, denoise  # doctest: +SKIP
  >>> report = denoise(DenoiseConfig(inputs=("a.mrc", "b.mrc"), output="denoised"))
  ... # doctest: +SKIP
"""

from __future__ import annotations

import collections
import functools
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jaxpick.errors import ConfigError, JaxpickError
from jaxpick.pipeline import Batch, Item, Report, Writers, batches

__all__ = [
    "DEFAULT_HALO",
    "Denoise3dConfig",
    "DenoiseConfig",
    "denoise",
    "denoise3d",
    "output_path",
    "output_path_3d",
]

#: Topaz's 2-D tiling defaults (``-s 1024 -p 500``), which jaxpick's default tiling follows.
TOPAZ_PATCH_SIZE = 1024
TOPAZ_PATCH_PADDING = 500
#: Context kept on each side of a tile by the default 2-D tiling (pixels).
DEFAULT_HALO = 128
#: Output formats of ``denoise`` (png/jpg force ``--normalize``, as in Topaz).
FORMATS = ("mrc", "tiff", "tif", "png", "jpg", "jpeg")
_RASTER = ("png", "jpg", "jpeg")
# Bytes of activations per window pixel of Topaz's U-Net in float32 (XLA's temporary buffer
# for a 1024² forward pass is 675 MB); used to size tile batches on accelerators.
_BYTES_PER_PIXEL = 700


def _check_common(precision: str, tiles_per_batch: int | None, num_readers: int) -> None:
    if precision not in ("float32", "bfloat16"):
        raise ConfigError(f"precision must be float32 or bfloat16, got {precision!r}")
    if tiles_per_batch is not None and tiles_per_batch < 1:
        raise ConfigError(f"tiles_per_batch must be >= 1, got {tiles_per_batch!r}")
    if num_readers < 1:
        raise ConfigError(f"num_readers must be >= 1, got {num_readers!r}")


@dataclass(frozen=True, kw_only=True)
class DenoiseConfig:
    """``jaxpick denoise``: Topaz's ``topaz denoise`` flags (spec 1.7), plus jaxpick's own.

    Attributes:
      inputs: micrographs (with ``stack``: one MRC stack).
      output: output folder (``-o``); empty writes next to each input. With ``stack``, the
        output file.
      suffix: appended to output names (default ``.denoised`` when ``output`` is empty).
      format: ``mrc``, ``tiff``/``tif``, ``png`` or ``jpg``/``jpeg``; png/jpg force
        ``normalize``.
      normalize: z-score the output instead of restoring the input's mean and std.
      stack: ``inputs[0]`` is a stack whose images are denoised one by one into ``output``.
      models: ``-m``: pretrained names (unet, unet-v0.2.1, unet-small, fcnn, affine), Topaz
        ``.sav`` files or jaxpick checkpoints, averaged; ``none`` = no network (filters only).
        (Topaz 0.3 ignores ``-m`` and always loads ``--arch``; jaxpick uses ``-m`` as
        documented.)
      lowpass: hard low-pass filter at ``0.5 / lowpass`` cycles/pixel first (1 = none).
      gaussian: Gaussian pre-filter σ in pixels (0 = none).
      inv_gaussian, deconvolve, deconv_patch: accepted for compatibility; Topaz crashes on
        them, and jaxpick refuses anything but the defaults.
      pixel_cutoff: after standardising, set pixels beyond this many σ to the mean (0 = off).
      patch_size, patch_padding: Topaz's tiling (``-s``, ``-p``); None = jaxpick's default
        (see the module docstring); ``patch_size < 1`` = the whole image at once.
      dir_a, dir_b, hdf, preload, holdout, save_prefix, save_interval, method, arch, optim,
        lr, criteria, crop, batch_size, num_epochs, num_workers: Noise2Noise training (Topaz
        spec 6.3); stored, not used by inference.
      device: ``-d``: -1 CPU, k >= 0 accelerator k, -2 all accelerators.
      precision: network compute dtype, ``float32`` or ``bfloat16``.
      tiles_per_batch: windows per network call; None chooses from device memory (1 on CPUs).
      num_readers: reader threads.
      overwrite: redo inputs whose output exists (otherwise they are skipped).
    """

    inputs: tuple[str, ...] = ()
    output: str = ""
    suffix: str = ""
    format: str = "mrc"
    normalize: bool = False
    stack: bool = False
    models: tuple[str, ...] = ("unet",)
    lowpass: float = 1.0
    gaussian: float = 0.0
    inv_gaussian: float = 0.0
    deconvolve: bool = False
    deconv_patch: int = 1
    pixel_cutoff: float = 0.0
    patch_size: int | None = None
    patch_padding: int | None = None
    # Noise2Noise training (Topaz's flags and defaults).
    dir_a: str | None = None
    dir_b: str | None = None
    hdf: str | None = None
    preload: bool = False
    holdout: float = 0.1
    save_prefix: str | None = None
    save_interval: int = 10
    method: str = "noise2noise"
    arch: str = "unet"
    optim: str = "adagrad"
    lr: float = 0.001
    criteria: str = "L2"
    crop: int = 800
    batch_size: int = 4
    num_epochs: int = 100
    num_workers: int = 16
    seed: int = 0
    resume: bool = False
    # Execution.
    device: int = 0
    precision: str = "float32"
    tiles_per_batch: int | None = None
    num_readers: int = 2
    overwrite: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "models", tuple(self.models))
        if self.format.lower() not in FORMATS:
            raise ConfigError(f"format must be one of {', '.join(FORMATS)}; got {self.format!r}")
        if not self.models:
            raise ConfigError("models: at least one model (or 'none') is needed")
        if not (self.lowpass >= 1 and math.isfinite(self.lowpass)):
            raise ConfigError(f"lowpass must be a number >= 1, got {self.lowpass!r}")
        if not (self.gaussian >= 0 and math.isfinite(self.gaussian)):
            raise ConfigError(f"gaussian must be >= 0, got {self.gaussian!r}")
        if not (self.pixel_cutoff >= 0 and math.isfinite(self.pixel_cutoff)):
            raise ConfigError(f"pixel_cutoff must be >= 0, got {self.pixel_cutoff!r}")
        if self.inv_gaussian:
            raise ConfigError(
                "--inv-gaussian is not supported (an unstable inverse filter; Topaz 0.3 "
                "crashes on it too)"
            )
        if self.deconvolve or self.deconv_patch != 1:
            raise ConfigError(
                "--deconvolve/--deconv-patch are not supported (Topaz 0.3 crashes on them too)"
            )
        if self.patch_padding is not None and self.patch_padding < 0:
            raise ConfigError(f"patch_padding must be >= 0, got {self.patch_padding!r}")
        _check_common(self.precision, self.tiles_per_batch, self.num_readers)

    @property
    def training(self) -> bool:
        """Whether training data were given (``-a``/``-b`` or ``--hdf``)."""
        return bool(self.dir_a or self.dir_b or self.hdf)

    @property
    def output_normalized(self) -> bool:
        """``normalize``, forced for png/jpg output (as in Topaz)."""
        return self.normalize or self.format.lower() in _RASTER


@dataclass(frozen=True, kw_only=True)
class Denoise3dConfig:
    """``jaxpick denoise3d``: Topaz's ``topaz denoise3d`` flags (spec 1.8).

    Attributes:
      inputs: tomograms.
      output: output folder; empty writes next to each input.
      suffix: appended to output names (default ``.denoised`` when ``output`` is empty).
      model: ``unet-3d`` (= ``unet-3d-10a``), ``unet-3d-20a``, a Topaz ``.sav`` or a jaxpick
        checkpoint.
      gaussian: σ (voxels) of a Gaussian filter applied to the *denoised* volume (what Topaz
        documents; its code filters a discarded copy of the input instead). 0 = none.
      patch_size, patch_padding: cubes of ``patch_size`` with ``patch_padding`` context,
        zero outside the volume (Topaz's 96 / 48); ``patch_size < 1`` = the whole volume.
      even_train_path, odd_train_path, n_train, n_test, crop, base_kernel_width, optim, lr,
        criteria, momentum, batch_size, num_epochs, weight_decay, save_interval, save_prefix,
        num_workers: training (Topaz spec 6.4); stored, not used by inference.
      device: ``-d``: -2 all accelerators (Topaz's default), -1 CPU, k >= 0 accelerator k.
      precision, tiles_per_batch, num_readers, overwrite: as :class:`DenoiseConfig`.
    """

    inputs: tuple[str, ...] = ()
    output: str = ""
    suffix: str = ""
    model: str = "unet-3d"
    gaussian: float = 0.0
    patch_size: int = 96
    patch_padding: int = 48
    # Training (Topaz's flags and defaults).
    even_train_path: str | None = None
    odd_train_path: str | None = None
    n_train: int = 1000
    n_test: int = 200
    crop: int = 96
    base_kernel_width: int = 11
    optim: str = "adagrad"
    lr: float = 0.001
    criteria: str = "L2"
    momentum: float = 0.8
    batch_size: int = 10
    num_epochs: int = 500
    weight_decay: float = 0.0
    save_interval: int = 10
    save_prefix: str | None = None
    num_workers: int = 1
    seed: int = 0
    resume: bool = False
    # Execution.
    device: int = -2
    precision: str = "float32"
    tiles_per_batch: int | None = None
    num_readers: int = 1
    overwrite: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(self.inputs))
        if not (self.gaussian >= 0 and math.isfinite(self.gaussian)):
            raise ConfigError(f"gaussian must be >= 0, got {self.gaussian!r}")
        if self.patch_padding < 0:
            raise ConfigError(f"patch_padding must be >= 0, got {self.patch_padding!r}")
        _check_common(self.precision, self.tiles_per_batch, self.num_readers)

    @property
    def training(self) -> bool:
        """Whether training data were given (``-a``/``-b``)."""
        return bool(self.even_train_path or self.odd_train_path)


# --- names ---------------------------------------------------------------------------------


def output_path(config: DenoiseConfig, path: str | os.PathLike[str]) -> Path:
    """Where ``denoise`` writes the result for input ``path`` (Topaz's ``denoise_stream``).

    Examples:
      >>> str(output_path(DenoiseConfig(), "data/a.mrc"))
      'data/a.denoised.mrc'
      >>> str(output_path(DenoiseConfig(output="out", suffix="_d", format="png"), "data/a.mrc"))
      'out/a_d.png'
    """
    text = os.fspath(path)
    if not config.output:
        no_ext, _ext = os.path.splitext(text)
        return Path(no_ext + (config.suffix or ".denoised") + "." + config.format)
    name, _ext = os.path.splitext(os.path.basename(text))
    return Path(config.output) / (name + config.suffix + "." + config.format)


def output_path_3d(config: Denoise3dConfig, path: str | os.PathLike[str]) -> Path:
    """Where ``denoise3d`` writes the result for input ``path`` (Topaz's ``denoise_tomogram``).

    Examples:
      >>> str(output_path_3d(Denoise3dConfig(), "tomo/t1.rec"))
      'tomo/t1.denoised.rec'
      >>> str(output_path_3d(Denoise3dConfig(output="out"), "tomo/t1.rec"))
      'out/t1.rec'
    """
    text = os.fspath(path)
    if not config.output:
        no_ext, ext = os.path.splitext(text)
        return Path(no_ext + (config.suffix or ".denoised") + ext)
    name, ext = os.path.splitext(os.path.basename(text))
    return Path(config.output) / (name + config.suffix + ext)


def _plan(
    inputs: Sequence[str],
    outputs: Callable[[str], Path],
    *,
    ndim: int,
    overwrite: bool,
    report: Report,
) -> dict[tuple[int, ...], list[Item]]:
    """Header-only planning keyed by output path (inputs next to each other may share names).

    Items are named by their input path as given. Returns ``{shape: items}``.

    Raises:
      JaxpickError: two inputs would write the same output file.
    """
    from jaxpick.io.image import read_image_header

    groups: dict[tuple[int, ...], list[Item]] = collections.defaultdict(list)
    seen: dict[Path, str] = {}
    for text in inputs:
        out = outputs(text)
        key = out.absolute()
        if key in seen:
            raise JaxpickError(
                f"{text} and {seen[key]} would both be written to {out}; use distinct file "
                "names or write next to the inputs (no -o)"
            )
        seen[key] = text
        if not overwrite and out.exists():
            report.skipped.append(text)
            continue
        try:
            header = read_image_header(text)
        except JaxpickError as err:
            report.failed[text] = str(err)
            continue
        shape = tuple(header.shape)
        if ndim == 2 and len(shape) == 3 and shape[0] == 1:
            shape = shape[1:]
        if len(shape) != ndim:
            what = "one 2-D micrograph" if ndim == 2 else "a 3-D volume"
            report.failed[text] = f"{text}: expected {what}, got shape {header.shape}"
            continue
        groups[shape].append(Item(Path(text), text, shape, header.pixel_size))
    return dict(groups)


def _read(item: Item) -> np.ndarray:
    from jaxpick.io.image import read_image

    data = read_image(item.path).data
    if data.ndim == len(item.shape) + 1 and data.shape[0] == 1:
        data = data[0]
    if data.shape != item.shape:
        raise JaxpickError(f"{item.path}: shape {data.shape} differs from its header {item.shape}")
    return data


# --- models and compiled functions ---------------------------------------------------------


@dataclass(frozen=True)
class _Models:
    """Denoisers split for jit: graph definitions (static) and parameter states (arrays)."""

    graphdefs: tuple[Any, ...]  # None for "none"
    multiple: int  # the largest pooling factor (2**depth) among them
    names: tuple[str, ...]


def _load_models(names: Sequence[str], ndim: int) -> tuple[_Models, tuple[Any, ...]]:
    from flax import nnx

    from jaxpick.models.denoisers import resolve_denoiser

    graphdefs, states, multiple = [], [], 1
    for name in names:
        if name == "none":
            graphdefs.append(None)
            states.append(None)
            continue
        model, config = resolve_denoiser(name, ndim=ndim)
        graphdef, state = nnx.split(model)
        graphdefs.append(graphdef)
        states.append(state)
        multiple = max(multiple, config.multiple)
    return _Models(tuple(graphdefs), multiple, tuple(names)), tuple(states)


def _networks(models: _Models, states: Sequence[Any], precision: str) -> list[Any]:
    from flax import nnx

    nets: list[Any] = []
    for graphdef, state in zip(models.graphdefs, states, strict=True):
        if graphdef is None:
            nets.append(None)
            continue
        model = nnx.merge(graphdef, state)
        nets.append(functools.partial(model, compute_dtype=precision))
    return nets


def _tiling_2d(config: DenoiseConfig, shape: tuple[int, int], multiple: int) -> Any:
    from jaxpick.inference.denoise import matched_tiling, topaz_tiling

    if config.patch_size is None and config.patch_padding is None:
        return matched_tiling(
            shape, TOPAZ_PATCH_SIZE, TOPAZ_PATCH_PADDING, halo=DEFAULT_HALO, multiple=multiple
        )
    size = TOPAZ_PATCH_SIZE if config.patch_size is None else config.patch_size
    padding = TOPAZ_PATCH_PADDING if config.patch_padding is None else config.patch_padding
    return topaz_tiling(shape, size, padding)


def _tiles_per_batch(
    requested: int | None, tiling: Any, shape: tuple[int, ...], devices: Any
) -> int:
    """Windows per network call: 1 on CPUs (no gain, more memory), else from free memory."""
    if requested is not None:
        return requested
    if devices[0].platform == "cpu":
        return 1
    windows = tiling.window_shapes if tiling is not None else (shape,)
    largest = max(math.prod(w) for w in windows)
    count = tiling.count if tiling is not None else 1
    stats = devices[0].memory_stats() or {}
    free = stats.get("bytes_limit", 16 * 2**30) - stats.get("bytes_in_use", 0)
    return max(1, min(count, int(free / 2 / (largest * _BYTES_PER_PIXEL))))


@functools.lru_cache(maxsize=16)
def _compiled_2d(
    models: _Models,
    devices: tuple[Any, ...],
    tiling: Any,
    lowpass_factor: float,
    pixel_cutoff: float,
    gaussian: float,
    normalize: bool,
    precision: str,
    tiles_per_batch: int,
) -> Callable[..., Any]:
    from jaxpick.devices import batched_jit
    from jaxpick.inference.denoise import denoise_image

    def one(image: Any, states: Any) -> Any:
        return denoise_image(
            _networks(models, states, precision),
            image,
            tiling=tiling,
            lowpass_factor=lowpass_factor,
            pixel_cutoff=pixel_cutoff,
            gaussian=gaussian,
            normalize=normalize,
            batch_size=tiles_per_batch,
        )

    return batched_jit(one, devices, (0, None))


@functools.lru_cache(maxsize=8)
def _compiled_3d(
    models: _Models,
    devices: tuple[Any, ...],
    tiling: Any,
    gaussian: float,
    precision: str,
    tiles_per_batch: int,
) -> Callable[..., Any]:
    from jaxpick.devices import batched_jit
    from jaxpick.inference.denoise import denoise_volume

    def one(volume: Any, states: Any) -> Any:
        (net,) = _networks(models, states, precision)
        return denoise_volume(
            net, volume, tiling=tiling, gaussian=gaussian, batch_size=tiles_per_batch
        )

    return batched_jit(one, devices, (0, None))


# --- writing -------------------------------------------------------------------------------


def _write_2d(path: Path, image: np.ndarray, pixel_size: float | None, fmt: str) -> None:
    from jaxpick.io.image import write_image
    from jaxpick.io.mrc import write_mrc
    from jaxpick.io.raster import write_png

    fmt = fmt.lower()
    if fmt in _RASTER:
        # Already z-scored (png/jpg force --normalize): Topaz's ±3σ mapping of the values.
        write_png(path, image, standardize=False)
    elif fmt == "mrc":
        write_mrc(path, image, voxel_size=pixel_size)
    else:
        write_image(path, image, pixel_size=pixel_size)


# --- the commands --------------------------------------------------------------------------


def _train_first(config: Any, ndim: int, progress: bool) -> Any:
    """Noise2Noise training from ``-a/-b`` (:mod:`jaxpick.train.denoise`), then the config
    that denoises the inputs with the trained model (Topaz: train, then denoise the listed
    files). Without ``--save-prefix`` the model is kept in a temporary folder."""
    import dataclasses
    import sys
    import tempfile

    from jaxpick.models.denoisers import save_denoiser
    from jaxpick.train.denoise import Noise2NoiseConfig, train_noise2noise

    if ndim == 2:
        n2n = Noise2NoiseConfig.from_denoise_config(config, seed=config.seed, resume=config.resume)
    else:
        n2n = Noise2NoiseConfig.from_denoise3d_config(
            config, seed=config.seed, resume=config.resume
        )
    result = train_noise2noise(n2n, progress=progress, log=sys.stderr)
    model = result.last_checkpoint
    if model is None:
        model = save_denoiser(Path(tempfile.mkdtemp(prefix="jaxpick-n2n-")) / "model", result.model)
    if ndim == 2:
        return dataclasses.replace(config, models=(str(model),), dir_a=None, dir_b=None, hdf=None)
    return dataclasses.replace(config, model=str(model), even_train_path=None, odd_train_path=None)


def denoise(config: DenoiseConfig, *, progress: bool = True) -> Report:
    """Denoises every input micrograph (or the images of one stack); see the module docstring.

    Returns:
      What was done, skipped and failed (one reason per failed file). Failing files never stop
      the others; every written output is complete.

    Raises:
      ConfigError: bad options (e.g. training flags, no inputs, a model of the wrong kind).
      FileFormatError: a model that cannot be read, or pretrained weights not installed.
    """
    if config.training:
        config = _train_first(config, 2, progress)
        if not config.inputs:
            return Report()
    if not config.inputs:
        raise ConfigError("no micrographs given")
    if config.stack:
        return _denoise_stack(config, progress=progress)
    import jax
    from tqdm.auto import tqdm

    from jaxpick.devices import select_devices

    report = Report()
    start = time.perf_counter()
    models, states = _load_models(config.models, 2)
    groups = _plan(
        config.inputs,
        lambda text: output_path(config, text),
        ndim=2,
        overwrite=config.overwrite,
        report=report,
    )
    total = sum(len(v) for v in groups.values())
    devices = tuple(select_devices(config.device))
    bar = tqdm(total=total, unit="mic", desc="denoise", disable=not progress, smoothing=0.1)
    readers = ThreadPoolExecutor(max_workers=config.num_readers, thread_name_prefix="jaxpick-read")
    writers = Writers(threads=2, limit=4)
    if len(devices) == 1:
        states = jax.device_put(states, devices[0])
    try:
        for shape, items in groups.items():
            try:
                run = _runner_2d(config, models, devices, shape)
            except (ValueError, JaxpickError) as err:  # e.g. smaller than the U-Net can pool
                for item in items:
                    report.failed[item.name] = f"{item.path}: {err}"
                    bar.update(1)
                continue
            size = len(devices)  # one micrograph per device; its windows make the batch
            in_flight: collections.deque[tuple[Batch, Any]] = collections.deque()
            for batch in batches(items, size, readers=readers, report=report, read=_read):
                in_flight.append((batch, run(batch.data, states)))
                if len(in_flight) > 1:
                    done, result = in_flight.popleft()
                    _dispatch_2d(done, jax.device_get(result), config, writers, report, bar)
            while in_flight:
                done, result = in_flight.popleft()
                _dispatch_2d(done, jax.device_get(result), config, writers, report, bar)
        writers.drain(report)
    finally:
        writers.close()
        readers.shutdown(wait=True)
        bar.close()
    report.seconds = time.perf_counter() - start
    return report


def _runner_2d(
    config: DenoiseConfig, models: _Models, devices: tuple[Any, ...], shape: tuple[int, int]
) -> Callable[..., Any]:
    tiling = _tiling_2d(config, shape, models.multiple)
    windows = tiling.window_shapes if tiling is not None else (shape,)
    small = [w for w in windows if min(w) < models.multiple]
    if small:
        raise ConfigError(
            f"windows of {small[0]} pixels are too small for the network (every side must be "
            f"at least {models.multiple}); use a larger -s/-p or -s 0 for whole images"
        )
    return _compiled_2d(
        models,
        devices,
        tiling,
        float(config.lowpass),
        float(config.pixel_cutoff),
        float(config.gaussian),
        config.output_normalized,
        config.precision,
        _tiles_per_batch(config.tiles_per_batch, tiling, shape, devices),
    )


def _dispatch_2d(
    batch: Batch,
    images: np.ndarray,
    config: DenoiseConfig,
    writers: Writers,
    report: Report,
    bar: Any,
) -> None:
    for index, item in enumerate(batch.items):
        image = np.array(images[index], dtype=np.float32)
        if not np.isfinite(image).all():
            report.failed[item.name] = f"{item.path}: the denoised image is not finite"
            bar.update(1)
            continue
        path = output_path(config, item.path)

        def job(path: Path = path, image: np.ndarray = image, item: Item = item) -> None:
            _write_2d(path, image, item.pixel_size, config.format)

        def done(name: str = item.name) -> None:
            report.done.append(name)

        writers.submit(item.name, job, done, report)
        bar.update(1)


def _stack_output(config: DenoiseConfig) -> Path:
    if config.output:
        return Path(config.output)
    no_ext, ext = os.path.splitext(config.inputs[0])
    return Path(no_ext + (config.suffix or ".denoised") + (ext or ".mrc"))


def _denoise_stack(config: DenoiseConfig, *, progress: bool) -> Report:
    """``--stack``: every image of one MRC stack, in device batches, into one output stack."""
    import jax
    from tqdm.auto import tqdm

    from jaxpick.devices import select_devices
    from jaxpick.io.image import read_image
    from jaxpick.io.mrc import write_mrc
    from jaxpick.io.names import MRC_EXTENSIONS

    report = Report()
    start = time.perf_counter()
    source = config.inputs[0]
    out = _stack_output(config)
    if not config.overwrite and out.exists():
        report.skipped.append(source)
        return report
    models, states = _load_models(config.models, 2)
    image = read_image(source, mmap=True)
    data = image.data if image.data.ndim == 3 else image.data[None]
    shape = (int(data.shape[1]), int(data.shape[2]))
    devices = tuple(select_devices(config.device))
    run = _runner_2d(config, models, devices, shape)
    size = len(devices)
    result = np.empty(data.shape, np.float32)
    if size == 1:
        states = jax.device_put(states, devices[0])
    bar = tqdm(total=len(data), unit="img", desc="denoise", disable=not progress)
    try:
        pending: collections.deque[tuple[int, int, Any]] = collections.deque()
        for first in range(0, len(data), size):
            chunk = np.zeros((size, *shape), np.float32)
            count = min(size, len(data) - first)
            chunk[:count] = data[first : first + count]
            pending.append((first, count, run(chunk, states)))
            if len(pending) > 1:
                i, n, y = pending.popleft()
                result[i : i + n] = jax.device_get(y)[:n]
                bar.update(n)
        while pending:
            i, n, y = pending.popleft()
            result[i : i + n] = jax.device_get(y)[:n]
            bar.update(n)
    finally:
        bar.close()
    if out.name.lower().endswith(MRC_EXTENSIONS):
        write_mrc(out, result, voxel_size=image.pixel_size, stack=True)
    else:
        from jaxpick.io.image import write_image

        write_image(out, result, pixel_size=image.pixel_size)
    report.done.append(source)
    report.seconds = time.perf_counter() - start
    return report


def denoise3d(config: Denoise3dConfig, *, progress: bool = True) -> Report:
    """Denoises every input tomogram, one at a time, with the next one read ahead.

    Returns:
      What was done, skipped and failed.

    Raises:
      ConfigError: bad options (training flags, no inputs, a 2-D model).
      FileFormatError: a model that cannot be read, or pretrained weights not installed.
    """
    if config.training:
        config = _train_first(config, 3, progress)
        if not config.inputs:
            return Report()
    if not config.inputs:
        raise ConfigError("no volumes given")
    import jax
    from tqdm.auto import tqdm

    from jaxpick.devices import select_devices
    from jaxpick.inference.denoise import cube_tiling

    report = Report()
    start = time.perf_counter()
    models, states = _load_models([config.model], 3)
    groups = _plan(
        config.inputs,
        lambda text: output_path_3d(config, text),
        ndim=3,
        overwrite=config.overwrite,
        report=report,
    )
    total = sum(len(v) for v in groups.values())
    devices = tuple(select_devices(config.device))[:1]
    bar = tqdm(total=total, unit="vol", desc="denoise3d", disable=not progress)
    readers = ThreadPoolExecutor(max_workers=config.num_readers, thread_name_prefix="jaxpick-read")
    writers = Writers(threads=1, limit=1)
    states = jax.device_put(states, devices[0])
    try:
        for shape, items in groups.items():
            tiling = cube_tiling(shape, config.patch_size, config.patch_padding)
            windows = tiling.window_shapes if tiling is not None else (shape,)
            if min(min(w) for w in windows) < models.multiple:
                for item in items:
                    report.failed[item.name] = (
                        f"{item.path}: windows of {windows[0]} voxels are too small for the "
                        f"network (every side must be at least {models.multiple})"
                    )
                    bar.update(1)
                continue
            run = _compiled_3d(
                models,
                devices,
                tiling,
                float(config.gaussian),
                config.precision,
                _tiles_per_batch(config.tiles_per_batch, tiling, shape, devices),
            )
            for batch in batches(items, 1, readers=readers, report=report, lookahead=1, read=_read):
                volume = np.array(jax.device_get(run(batch.data, states))[0], dtype=np.float32)
                item = batch.items[0]
                path = output_path_3d(config, item.path)

                def job(path: Path = path, volume: np.ndarray = volume, item: Item = item) -> None:
                    _write_3d(path, volume, item)

                def done(name: str = item.name) -> None:
                    report.done.append(name)

                writers.submit(item.name, job, done, report)
                bar.update(1)
        writers.drain(report)
    finally:
        writers.close()
        readers.shutdown(wait=True)
        bar.close()
    report.seconds = time.perf_counter() - start
    return report


def _write_3d(path: Path, volume: np.ndarray, item: Item) -> None:
    from jaxpick.io.image import read_image_header
    from jaxpick.io.mrc import read_mrc_header, write_mrc

    voxel: Any = item.pixel_size
    if read_image_header(item.path).format == "mrc":
        voxel = read_mrc_header(item.path).voxel_size or voxel
        if voxel is not None and not all(v > 0 for v in np.atleast_1d(voxel)):
            voxel = item.pixel_size
    write_mrc(path, volume, voxel_size=voxel, stack=False)


def print_summary(report: Report, verb: str) -> None:
    """The one-line summary (and failures) on standard output, or standard error on failure."""
    print(report.summary(verb), file=sys.stderr if not report.ok else sys.stdout)
