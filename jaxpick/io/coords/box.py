"""Headerless per-micrograph text formats: EMAN ``.box`` and plain ``x y`` (``.coord``).

EMAN ``.box``: one particle per line, whitespace-separated ``x_corner y_corner width height``
(EMAN1 lower-left corner and box size; further columns, such as EMAN1's ``-3`` flag, are kept in
``extra`` as ``"column5"``…). One file per micrograph, named after it. Centres are computed with
:func:`jaxpick.conventions.box_centre` (``corner + size // 2``, Topaz's reading, exact inverse of
its writer); widths and heights are kept as ``extra["Width"]``/``extra["Height"]``. Values may be
decimals (Topaz parses with ``int()`` and fails on them) and an empty file is an empty table
(Topaz issue #13 crashes on it).

Whether y counts from the top or the bottom is not stored in the file: EMAN2 flips y for some
image types (TIFF). Use :meth:`Coordinates.inverted_y` explicitly when needed. Real files also
disagree on corner vs centre: ASPIRE's ``.box`` test file holds centres in a y-up frame.

Plain ``.coord``: one particle per line, whitespace-separated ``x y`` centres (ASPIRE, APPLE
picker); further columns are kept as ``"column3"``…; image name from the file name.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from jaxpick import conventions
from jaxpick.errors import CoordinateFormatError
from jaxpick.io.coords.table import (
    Coordinates,
    format_column,
    number_column,
    per_image_path,
    read_text_lines,
    stem_image_name,
    typed_column,
    write_lines,
)


def _read_columns(
    path: str | os.PathLike[str], min_columns: int, what: str
) -> tuple[list[list[str]], list[int]]:
    rows: list[list[str]] = []
    lines: list[int] = []
    for i, line in enumerate(read_text_lines(path)):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) < min_columns:
            raise CoordinateFormatError(
                path,
                f"line {i + 1}: {len(fields)} values, expected at least {min_columns} ({what})",
            )
        if rows and len(fields) != len(rows[0]):
            raise CoordinateFormatError(
                path, f"line {i + 1}: {len(fields)} values, but line {lines[0]} has {len(rows[0])}"
            )
        rows.append(fields)
        lines.append(i + 1)
    return rows, lines


def read_box(
    path: str | os.PathLike[str], *, image_name: str | None = None, suffix: str = ""
) -> Coordinates:
    """Reads an EMAN ``.box`` file (see the module docstring for the convention).

    Args:
      path: the file.
      image_name: the image the boxes are on (default: file stem without ``suffix``).
      suffix: removed from the end of the file stem to get the image name.

    Raises:
      CoordinateFormatError: a line with fewer than 4 values, lines of different lengths, a
        value that is not a finite number, or a negative box size.
    """
    rows, lines = _read_columns(path, 4, "x y width height")
    name = image_name if image_name is not None else stem_image_name(path, suffix=suffix)
    columns = list(zip(*rows, strict=True)) if rows else [(), (), (), ()]
    corner_x, corner_y, width, height = (
        number_column(columns[i], path=path, what=what, lines=lines, finite=True)
        for i, what in enumerate(("x", "y", "width", "height"))
    )
    if (width < 0).any() or (height < 0).any():
        row = int(np.flatnonzero((width < 0) | (height < 0))[0])
        raise CoordinateFormatError(path, f"line {lines[row]}: negative box size")
    extra = {"Width": width, "Height": height}
    for i in range(4, len(columns)):
        extra[f"column{i + 1}"] = typed_column(columns[i])
    return Coordinates(
        image_name=name,
        x=conventions.box_centre(corner_x, width),
        y=conventions.box_centre(corner_y, height),
        extra=extra,
    )


def box_sizes(
    coords: Coordinates, box_size: float | None, dest: str | os.PathLike[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Per-row box width and height: ``box_size`` if given, else ``extra["Width"/"Height"]``.

    Raises:
      CoordinateFormatError: when neither is available, telling the user to pass ``--boxsize``.
    """
    if box_size is not None:
        if not (np.isfinite(box_size) and box_size > 0):
            raise CoordinateFormatError(dest, f"box size must be positive, not {box_size!r}")
        full = np.full(len(coords), float(box_size))
        return full, full
    width, height = coords.extra.get("Width"), coords.extra.get("Height")
    if width is None or height is None or width.dtype.kind not in "iuf":
        raise CoordinateFormatError(
            dest, "writing boxes needs a box size: pass --boxsize (box_size=...)"
        )
    width, height = width.astype(np.float64), height.astype(np.float64)
    if not (np.isfinite(width).all() and np.isfinite(height).all()):
        raise CoordinateFormatError(
            dest, "some rows have no box size: pass --boxsize (box_size=...)"
        )
    return width, height


def _require_2d(coords: Coordinates, dest: str | os.PathLike[str], fmt: str) -> None:
    if coords.z is not None:
        raise CoordinateFormatError(dest, f"{fmt} files hold 2-D picks; this table has z")


def write_box(
    coords: Coordinates,
    dest: str | os.PathLike[str],
    *,
    box_size: float | None = None,
    suffix: str = "",
) -> list[Path]:
    """Writes ``<dest>/<image><suffix>.box`` per image: tab-separated ``x y w h`` corners.

    Corners are ``centre − size // 2`` (:func:`jaxpick.conventions.box_corner`), as Topaz writes.

    Args:
      coords: the table (2-D).
      dest: output folder.
      box_size: box size in pixels; default: the table's ``Width``/``Height`` columns.
      suffix: appended to each image name.

    Returns:
      The files written (none for an empty table).
    """
    _require_2d(coords, dest, "EMAN .box")
    width, height = box_sizes(coords, box_size, dest)
    with_sizes = coords.replace(extra={"Width": width, "Height": height})
    written = []
    for name, rows in with_sizes.per_image():
        w, h = rows.extra["Width"], rows.extra["Height"]
        cells = [
            format_column(conventions.box_corner(rows.x, w)),
            format_column(conventions.box_corner(rows.y, h)),
            format_column(w),
            format_column(h),
        ]
        target = per_image_path(dest, name, f"{suffix}.box")
        written.append(write_lines(target, ("\t".join(r) for r in zip(*cells, strict=True))))
    return written


def read_plain(
    path: str | os.PathLike[str], *, image_name: str | None = None, suffix: str = ""
) -> Coordinates:
    """Reads a plain ``x y`` file (``.coord``): centres, one per line, no header.

    Raises:
      CoordinateFormatError: a line with fewer than 2 values, lines of different lengths, or a
        coordinate that is not a finite number.
    """
    rows, lines = _read_columns(path, 2, "x y")
    name = image_name if image_name is not None else stem_image_name(path, suffix=suffix)
    columns = list(zip(*rows, strict=True)) if rows else [(), ()]
    x, y = (
        number_column(columns[i], path=path, what=what, lines=lines, finite=True)
        for i, what in enumerate(("x", "y"))
    )
    extra = {f"column{i + 1}": typed_column(columns[i]) for i in range(2, len(columns))}
    return Coordinates(image_name=name, x=x, y=y, extra=extra)


def write_plain(
    coords: Coordinates, dest: str | os.PathLike[str], *, suffix: str = ""
) -> list[Path]:
    """Writes ``<dest>/<image><suffix>.coord`` per image: tab-separated ``x y`` centres."""
    _require_2d(coords, dest, "plain .coord")
    written = []
    for name, rows in coords.per_image():
        cells = zip(format_column(rows.x), format_column(rows.y), strict=True)
        target = per_image_path(dest, name, f"{suffix}.coord")
        written.append(write_lines(target, ("\t".join(r) for r in cells)))
    return written
