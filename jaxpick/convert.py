"""Coordinate conversion and splitting: the library behind `jaxpick convert` and `jaxpick split`.

Order of operations (as ``topaz convert``): read and concatenate the inputs, keep particles with
score >= threshold, flip y if asked (in the frame of the input images), scale with Topaz's
``round(coord · up / down)``, add metadata columns, write.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import TextIO

import numpy as np

from jaxpick.config import ConvertConfig, SplitConfig
from jaxpick.errors import ConfigError, JaxpickError
from jaxpick.io.coords import (
    PER_IMAGE_FORMATS,
    Coordinates,
    canonical_format,
    detect_format,
    read_coordinates,
    write_coordinates,
)
from jaxpick.io.image import image_shape
from jaxpick.io.names import index_images, unmatched_names

# Output formats that can go to standard output (text, one file).
_STDOUT_FORMATS = frozenset({"coord", "star", "csv", "via"})
# The STAR columns the metadata flags add (RELION labels without the _rln prefix).
_METADATA_COLUMNS = {
    "voltage": "Voltage",
    "detector_pixel_size": "DetectorPixelSize",
    "magnification": "Magnification",
    "amplitude_contrast": "AmplitudeContrast",
}


def image_shapes_for(coords: Coordinates, image_dir: str) -> dict[str, tuple[int, int]]:
    """The (ny, nx) of each image the coordinates refer to, read from ``image_dir`` headers.

    Raises:
      JaxpickError: an image is missing (all missing names are reported) or is not 2-D.
    """
    index = index_images(image_dir)
    report = unmatched_names(coords.images(), index)
    if report:
        raise JaxpickError(f"{image_dir}: {report}")
    shapes = {}
    for name in coords.images():
        shape = image_shape(index[name])
        if len(shape) != 2:
            raise JaxpickError(f"{index[name]}: expected a 2-D micrograph, got shape {shape}")
        shapes[name] = (int(shape[0]), int(shape[1]))
    return shapes


def _output_format(config: ConvertConfig, input_format: str) -> str:
    if config.to_format != "auto":
        return canonical_format(config.to_format)
    if config.output is None:
        return input_format
    out = config.output
    if out.endswith(("/", "\\")) or Path(out).is_dir():
        return "box" if config.box_size > 0 else "json"
    return detect_format(out)


def transform_coordinates(
    coords: Coordinates,
    config: ConvertConfig,
    shapes: dict[str, tuple[int, int]] | None = None,
) -> Coordinates:
    """Applies ``convert``'s threshold, y flip, scaling and metadata columns to a table."""
    coords = coords.filter_score(config.threshold)
    if config.invert_y:
        if shapes is None:
            raise ConfigError("invert_y needs the image shapes (image_dir)")
        coords = coords.inverted_y({name: ny for name, (ny, _) in shapes.items()})
    if config.down_scale != 1 or config.up_scale != 1:
        coords = coords.scaled(config.down_scale, config.up_scale)
    extra = dict(coords.extra)
    for field, column in _METADATA_COLUMNS.items():
        value = getattr(config, field)
        if value is not None:
            extra[column] = np.full(len(coords), value, dtype=np.float64)
    return coords.replace(extra=extra)


def _scaled_shapes(
    shapes: dict[str, tuple[int, int]], config: ConvertConfig
) -> dict[str, tuple[int, int]]:
    factor = config.up_scale / config.down_scale
    return {k: (round(ny * factor), round(nx * factor)) for k, (ny, nx) in shapes.items()}


def convert_coordinates(
    config: ConvertConfig, *, verbose: bool = False, stdout: TextIO | None = None
) -> list[Path]:
    """Reads, transforms and writes coordinates as ``config`` says.

    Args:
      config: what to convert and how.
      verbose: print a summary line to standard error.
      stdout: where output goes when ``config.output`` is None (default ``sys.stdout``).

    Returns:
      The files written (empty when writing to standard output).

    Raises:
      JaxpickError: unreadable inputs, images missing from ``image_dir``, or a format that
        needs something the config lacks (box size, image shapes).
    """
    input_formats = []
    tables = []
    for path in config.inputs:
        fmt = detect_format(path) if config.from_format == "auto" else config.from_format
        input_formats.append(canonical_format(fmt))
        tables.append(read_coordinates(path, fmt))
    coords = Coordinates.concat(tables)
    out_format = _output_format(config, input_formats[0])

    needs_shapes = config.invert_y or out_format == "cs"
    if needs_shapes and config.image_dir is None:
        raise ConfigError(
            "--imagedir is needed: "
            + ("--invert-y flips y with each image's height" if config.invert_y else "")
            + (" and " if config.invert_y and out_format == "cs" else "")
            + ("cryoSPARC .cs output stores each micrograph's shape" if out_format == "cs" else "")
        )
    shapes = image_shapes_for(coords, config.image_dir) if needs_shapes else None
    n_read = len(coords)
    coords = transform_coordinates(coords, config, shapes)

    options = {
        "suffix": config.suffix,
        "box_size": config.box_size or None,
        "image_ext": config.image_ext,
        "image_shapes": None if shapes is None else _scaled_shapes(shapes, config),
    }
    if config.output is None:
        written: list[Path] = []
        _write_to_stream(coords, out_format, stdout or sys.stdout, options)
    else:
        written = write_coordinates(coords, config.output, out_format, **options)
    if verbose:
        print(
            f"# read {n_read} particles from {len(config.inputs)} file(s), "
            f"wrote {len(coords)} particles on {len(coords.images())} micrograph(s) "
            f"as {out_format} to {len(written) or 'standard output'}"
            + (" file(s)" if written else ""),
            file=sys.stderr,
        )
    return written


def _write_to_stream(coords: Coordinates, fmt: str, stream: TextIO, options: dict) -> None:
    if fmt not in _STDOUT_FORMATS:
        raise ConfigError(
            f"{fmt} output goes to files; give -o/--output "
            + ("(a folder)" if fmt in PER_IMAGE_FORMATS else "(a file)")
        )
    # Every writer is atomic and file-based; write to a private temporary file and copy it.
    with tempfile.TemporaryDirectory(prefix="jaxpick-convert-") as tmp:
        target = Path(tmp) / f"out.{ {'coord': 'txt', 'via': 'csv'}.get(fmt, fmt) }"
        write_coordinates(coords, target, fmt, **options)
        with target.open(encoding="utf-8") as f:
            shutil.copyfileobj(f, stream)


def split_coordinates(config: SplitConfig) -> list[Path]:
    """Writes one coordinate file per micrograph (``topaz split``).

    Returns:
      The files written, one per micrograph.
    """
    fmt = detect_format(config.input) if config.format == "auto" else config.format
    fmt = canonical_format(fmt)
    coords = read_coordinates(config.input).filter_score(config.threshold)
    if fmt in PER_IMAGE_FORMATS:
        return write_coordinates(coords, config.output_dir, fmt, suffix=config.suffix)
    return write_coordinates(coords, config.output_dir, fmt, suffix=config.suffix, per_image=True)
