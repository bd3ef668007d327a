"""crYOLO ``.cbox`` files (cbox format 1.0).

A ``.cbox`` file is STAR: ``data_global`` (``_cbox_format_version 1.0``), ``data_cryolo`` with a
loop ``_CoordinateX _CoordinateY _CoordinateZ _Width _Height _Depth _EstWidth _EstHeight
_Confidence _NumBoxes _Angle`` (filament mode adds ``_filamentid``) and ``data_cryolo_include``
(slice indices for 3-D, often an empty loop). ``<NA>`` marks missing values.

``_CoordinateX/Y`` are box **corners**; the centre is ``corner + Width / 2`` (``Height / 2``), as
napari-boxmanager (the crYOLO team's viewer) reads it and the inverse of its writer
(``x − boxsize / 2``); see :func:`jaxpick.conventions.box_centre` with ``half="exact"``.
``_CoordinateZ`` is the slice index itself (no depth offset; all ``<NA>`` means 2-D).
``_Confidence`` becomes the score (all ``<NA>`` means no score); the other columns are kept in
``extra`` under their names without ``_`` (``"Width"``, ``"filamentid"``…), except columns that
are ``<NA>`` in every row. One file per micrograph, named after it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from jaxpick import conventions
from jaxpick.errors import CoordinateFormatError
from jaxpick.io.coords.box import box_sizes
from jaxpick.io.coords.star import StarFile, quote_value, read_star
from jaxpick.io.coords.table import (
    Coordinates,
    format_column,
    number_column,
    per_image_path,
    stem_image_name,
    typed_column,
    write_lines,
)

#: The 11 columns of a cbox 1.0 ``data_cryolo`` loop, in crYOLO's order.
CBOX_COLUMNS = (
    "CoordinateX",
    "CoordinateY",
    "CoordinateZ",
    "Width",
    "Height",
    "Depth",
    "EstWidth",
    "EstHeight",
    "Confidence",
    "NumBoxes",
    "Angle",
)


def cbox_to_coordinates(
    star: StarFile, *, image_name: str | None = None, suffix: str = ""
) -> Coordinates:
    """Maps a parsed ``.cbox`` file to a coordinate table (centres; see the module docstring).

    Raises:
      CoordinateFormatError: no ``data_cryolo`` loop with ``_CoordinateX/Y``, ``_Width`` and
        ``_Height``, or values that are not numbers.
    """
    path = star.path
    block = star.block("cryolo")
    loop = block.loop if block is not None else None
    needed = ("CoordinateX", "CoordinateY", "Width", "Height")
    if loop is None or any(c not in loop.columns for c in needed):
        raise CoordinateFormatError(
            path,
            "not a crYOLO cbox file: needs a data_cryolo loop with _CoordinateX, _CoordinateY, "
            "_Width and _Height",
        )

    lines = loop.row_lines()

    def numbers(name: str, *, finite: bool) -> np.ndarray:
        return number_column(
            loop.tokens(name), path=path, what=f"_{name}", lines=lines, finite=finite
        )

    width = numbers("Width", finite=True)
    height = numbers("Height", finite=True)
    x = conventions.box_centre(numbers("CoordinateX", finite=True), width, half="exact")
    y = conventions.box_centre(numbers("CoordinateY", finite=True), height, half="exact")
    z = None
    if "CoordinateZ" in loop.columns:
        z = numbers("CoordinateZ", finite=False)
        if len(z) == 0 or np.isnan(z).all():
            z = None
    score = numbers("Confidence", finite=False) if "Confidence" in loop.columns else None
    if score is not None and np.isnan(score).all():
        score = None  # all <NA>: the boxes have no confidences (manual picks)
    extra: dict[str, np.ndarray] = {"Width": width, "Height": height}
    used = {"CoordinateX", "CoordinateY", "CoordinateZ", "Confidence", "Width", "Height"}
    for column in loop.columns:
        if column not in used:
            values = typed_column(loop.tokens(column))
            # An all-<NA> column holds nothing; dropping it keeps tables comparable.
            if not (values.dtype.kind == "f" and np.isnan(values).all()):
                extra[column] = values
    if image_name is None:
        image_name = stem_image_name(path, suffix=suffix)
    return Coordinates(image_name=image_name, x=x, y=y, z=z, score=score, extra=extra)


def read_cbox(
    path: str | os.PathLike[str], *, image_name: str | None = None, suffix: str = ""
) -> Coordinates:
    """Reads a crYOLO ``.cbox`` file (see :func:`cbox_to_coordinates`)."""
    return cbox_to_coordinates(read_star(path), image_name=image_name, suffix=suffix)


def _column(rows: Coordinates, name: str, n: int) -> list[str]:
    values = rows.extra.get(name)
    if values is None or values.ndim != 1:
        return ["<NA>"] * n
    return ["<NA>" if text in ("nan", "") else quote_value(text) for text in format_column(values)]


def cbox_lines(rows: Coordinates, width: np.ndarray, height: np.ndarray) -> list[str]:
    """The lines of one cbox 1.0 file for ``rows`` with the given box sizes."""
    n = len(rows)
    corner_x = conventions.box_corner(rows.x, width, half="exact")
    corner_y = conventions.box_corner(rows.y, height, half="exact")

    def na(values: np.ndarray | None) -> list[str]:
        if values is None:
            return ["<NA>"] * n
        return ["<NA>" if t == "nan" else t for t in format_column(values)]

    depth = rows.extra.get("Depth")
    columns = {
        "CoordinateX": na(corner_x),
        "CoordinateY": na(corner_y),
        "CoordinateZ": na(rows.z),
        "Width": na(width),
        "Height": na(height),
        # A 3-D box is a cube unless the source said otherwise.
        "Depth": _column(rows, "Depth", n)
        if depth is not None
        else na(None if rows.z is None else width),
        "EstWidth": _column(rows, "EstWidth", n),
        "EstHeight": _column(rows, "EstHeight", n),
        "Confidence": na(rows.score),
        "NumBoxes": _column(rows, "NumBoxes", n),
        "Angle": _column(rows, "Angle", n),
    }
    if "filamentid" in rows.extra:
        columns["filamentid"] = _column(rows, "filamentid", n)
    lines = ["", "data_global", "", "_cbox_format_version 1.0", "", "data_cryolo", "", "loop_"]
    lines += [f"_{name} #{i + 1}" for i, name in enumerate(columns)]
    lines += [" ".join(row) for row in zip(*columns.values(), strict=True)]
    lines += ["", "data_cryolo_include", "", "loop_", "_slice_index #1"]
    if rows.z is not None:
        slices = np.unique(rows.z[~np.isnan(rows.z)])
        lines += format_column(slices)
    return lines


def write_cbox(
    coords: Coordinates,
    dest: str | os.PathLike[str],
    *,
    box_size: float | None = None,
    suffix: str = "",
) -> list[Path]:
    """Writes ``<dest>/<image><suffix>.cbox`` per image in cbox 1.0 layout (atomically).

    All 11 columns are written (plus ``_filamentid`` when the table has it), ``<NA>`` where a
    value is unknown; ``data_cryolo_include`` lists the z slices of 3-D picks and is empty for
    2-D picks.

    Args:
      coords: the table.
      dest: output folder.
      box_size: box size in pixels; default: the table's ``Width``/``Height`` columns.
      suffix: appended to each image name.

    Returns:
      The files written (none for an empty table).
    """
    width, height = box_sizes(coords, box_size, dest)
    extra = dict(coords.extra)
    extra["Width"], extra["Height"] = width, height
    sized = coords.replace(extra=extra)
    written = []
    for name, rows in sized.per_image():
        target = per_image_path(dest, name, f"{suffix}.cbox")
        lines = cbox_lines(rows, rows.extra["Width"], rows.extra["Height"])
        written.append(write_lines(target, lines))
    return written
