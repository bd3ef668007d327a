"""Preprocessing of many micrographs on the accelerator: Fourier-crop downsampling and
per-micrograph normalisation, batched, sharded over local devices, streamed from disk.

The library behind ``jaxpick preprocess``, ``jaxpick normalize`` and ``jaxpick downsample``.
One jitted function per distinct micrograph shape does ``downsample → normalise`` for a whole
batch (``vmap``); :mod:`jaxpick.pipeline` keeps it fed (prefetch, fixed-size padded batches,
atomic writes, skip-done, per-file failures).
"""

from __future__ import annotations

import collections
import functools
import json
import math
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from jaxpick.config import PreprocessConfig
from jaxpick.devices import batch_size_for, batched_jit, select_devices
from jaxpick.io.atomic import write_text_atomic
from jaxpick.io.image import write_image
from jaxpick.io.raster import write_png
from jaxpick.ops.normalize import STATUS_OK, status_message
from jaxpick.pipeline import Batch, Item, Report, Writers, batches, plan

_EXTENSIONS = {
    "mrc": ".mrc",
    "tiff": ".tiff",
    "tif": ".tif",
    "png": ".png",
    "jpg": ".jpg",
    "jpeg": ".jpeg",
}
# Host bytes one device batch may take on several CPU devices (one CPU device takes one
# micrograph per batch: `jaxpick.devices.batch_size_for`); accelerators size batches from free
# memory. 64 MiB is one 4096² float32 micrograph.
_CPU_BATCH_BYTES = 64 * 2**20


def output_paths(config: PreprocessConfig, name: str) -> list[Path]:
    """Every file ``config`` writes for micrograph ``name`` (it is done when all exist)."""
    dest = Path(config.destdir)
    paths = [dest / f"{name}{_EXTENSIONS[f]}" for f in config.formats]
    if config.metadata and config.normalize:
        paths.append(dest / f"{name}.metadata.json")
    return paths


def name_hash(name: str) -> int:
    """A stable 31-bit number per image name: its subsampling key does not depend on order."""
    return zlib.crc32(name.encode("utf-8")) & 0x7FFFFFFF


def choose_batch_size(shape: tuple[int, ...], devices: list[Any], requested: int | None) -> int:
    """Micrographs per batch for micrographs of ``shape`` (see `jaxpick.devices.batch_size_for`)."""
    # FFT intermediates take a few times the input.
    return batch_size_for(
        4 * math.prod(shape), devices, requested, cpu_budget=_CPU_BATCH_BYTES, overhead=6
    )


def _numerics(config: PreprocessConfig) -> PreprocessConfig:
    """The part of a config that defines the computation (the compile-cache key)."""
    return PreprocessConfig(
        inputs=("-",),
        destdir="-",
        scale=config.scale,
        normalize=config.normalize,
        affine=config.affine,
        sample=config.sample,
        niters=config.niters,
        alpha=config.alpha,
        beta=config.beta,
        seed=config.seed,
    )


@functools.lru_cache(maxsize=32)
def _compiled(config: PreprocessConfig, devices: tuple[Any, ...]) -> Callable[..., Any]:
    """The jitted batch function (jit itself compiles once per input shape)."""
    import jax

    from jaxpick.ops.normalize import normalize
    from jaxpick.ops.resample import downsample

    def one(x: jax.Array, h: jax.Array) -> tuple[jax.Array, Any]:
        if config.scale > 1:
            x = downsample(x, config.scale)
        if not config.normalize:
            return x, None
        key = jax.random.fold_in(jax.random.key(config.seed), h)
        return normalize(
            x,
            key=key,
            method="affine" if config.affine else "gmm",
            sample=config.sample,
            niters=config.niters,
            alpha=config.alpha,
            beta=config.beta,
        )

    return batched_jit(one, devices, (0, 0))


def _stats_json(stats: dict[str, np.ndarray], index: int, config: PreprocessConfig) -> str:
    """Topaz's ``--metadata`` JSON keys for one micrograph."""
    pick = {k: np.asarray(v)[index] for k, v in stats.items()}
    if config.affine:
        meta = {"mu": float(pick["mu"]), "std": float(pick["std"]), "pi": 1.0}
    else:
        meta = {k: float(pick[k]) for k in ("mu", "std", "pi", "logp")}
        meta |= {
            k: np.asarray(pick[k], dtype=float).tolist() for k in ("mus", "stds", "pis", "logps")
        }
        meta |= {"alpha": config.alpha, "beta": config.beta, "sample": config.sample}
    return json.dumps(meta, indent=2) + "\n"


def _write_outputs(
    item: Item, image: np.ndarray, meta: str | None, config: PreprocessConfig
) -> None:
    dest = Path(config.destdir)
    # True pixel size of the output (Topaz leaves the input's in the header).
    pixel_size = (
        None if item.pixel_size is None else item.pixel_size * item.shape[1] / image.shape[1]
    )
    for fmt in config.formats:
        path = dest / f"{item.name}{_EXTENSIONS[fmt]}"
        if fmt in ("png", "jpg", "jpeg"):
            # Normalised output is already in σ units: map ±3σ exactly as Topaz does.
            write_png(path, image, standardize=not config.normalize)
        else:
            write_image(path, image, pixel_size=pixel_size)
    if meta is not None:
        write_text_atomic(dest / f"{item.name}.metadata.json", meta)


def preprocess(config: PreprocessConfig, *, progress: bool = True) -> Report:
    """Downsamples and/or normalises every input micrograph; see the module docstring.

    Returns:
      What was done, skipped and failed (one reason per failed file). Failing files never stop
      the others; outputs of finished micrographs are complete files.
    """
    import jax
    from tqdm.auto import tqdm

    report = Report()
    start = time.perf_counter()
    groups = plan(
        config.inputs,
        lambda name: output_paths(config, name),
        overwrite=config.overwrite,
        report=report,
    )
    total = sum(len(v) for v in groups.values())
    devices = tuple(select_devices(config.device))
    bar = tqdm(total=total, unit="mic", desc="preprocess", disable=not progress, smoothing=0.1)
    readers = ThreadPoolExecutor(max_workers=config.num_readers, thread_name_prefix="jaxpick-read")
    writers = Writers(threads=2, limit=8)
    try:
        for shape, items in groups.items():
            # Never pad beyond the work there is: a group of 5 runs as one batch of 5.
            size = min(
                choose_batch_size(shape, list(devices), config.batch_size),
                -(-len(items) // len(devices)) * len(devices),
            )
            run = _compiled(_numerics(config), devices)
            # Two batches in flight: the next one is dispatched (asynchronously) before the
            # results of the previous one are fetched, so the device never waits for the host
            # and, on a CPU, two micrographs can use the cores one alone leaves idle.
            in_flight: collections.deque[tuple[Batch, Any]] = collections.deque()
            for batch in batches(items, size, readers=readers, report=report):
                hashes = np.zeros(size, dtype=np.uint32)
                hashes[: len(batch.items)] = [name_hash(i.name) for i in batch.items]
                in_flight.append((batch, run(batch.data, hashes)))
                if len(in_flight) > 1:
                    done, result = in_flight.popleft()
                    _dispatch(done, *jax.device_get(result), config, writers, report, bar)
            while in_flight:
                done, result = in_flight.popleft()
                _dispatch(done, *jax.device_get(result), config, writers, report, bar)
        writers.drain(report)
    finally:
        writers.close()
        readers.shutdown(wait=True)
        bar.close()
    report.seconds = time.perf_counter() - start
    return report


def _dispatch(
    batch: Batch,
    images: np.ndarray,
    stats: Any,
    config: PreprocessConfig,
    writers: Writers,
    report: Report,
    bar: Any,
) -> None:
    stats_np = None if stats is None else {k: np.asarray(v) for k, v in stats._asdict().items()}
    for index, item in enumerate(batch.items):
        if stats_np is not None and int(stats_np["status"][index]) != STATUS_OK:
            problem = status_message(int(stats_np["status"][index]))
            report.failed[item.name] = f"{item.path}: {problem}"
            bar.update(1)
            continue
        meta = _stats_json(stats_np, index, config) if config.metadata and stats_np else None
        image = np.array(images[index], dtype=np.float32)

        def job(item: Item = item, image: np.ndarray = image, meta: str | None = meta) -> None:
            _write_outputs(item, image, meta, config)

        def done(name: str = item.name) -> None:
            report.done.append(name)

        writers.submit(item.name, job, done, report)
        bar.update(1)


def downsample_file(
    source: str | Path, destination: str | Path, scale: float, *, device: int = -1
) -> Path:
    """Downsamples one micrograph into one output file (``topaz downsample FILE -o OUT``).

    The output format follows ``destination``'s extension; MRC headers get the true pixel size.

    Raises:
      ImageFormatError: unreadable input or unsupported output extension.
      ConfigError: a bad scale.
    """
    import jax

    from jaxpick.errors import ConfigError, ImageFormatError
    from jaxpick.io.image import read_image
    from jaxpick.ops.resample import downsample

    if not (scale >= 1 and math.isfinite(scale)):
        raise ConfigError(f"scale must be >= 1, got {scale!r}")
    image = read_image(source)
    if image.data.ndim != 2:
        raise ImageFormatError(source, f"expected one 2-D micrograph, got shape {image.data.shape}")
    device_ = select_devices(device)[0]
    x = jax.device_put(image.data, device_)
    out = np.asarray(jax.jit(downsample, static_argnums=1)(x, scale)) if scale > 1 else image.data
    pixel_size = (
        None if image.pixel_size is None else image.pixel_size * image.data.shape[1] / out.shape[1]
    )
    write_image(destination, out, pixel_size=pixel_size)
    return Path(destination)
