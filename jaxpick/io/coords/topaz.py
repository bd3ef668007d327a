"""Topaz's native coordinate table (``.txt``/``.tab``).

Tab-separated text with a header line: ``image_name``, ``x_coord``, ``y_coord``, optionally
``z_coord`` (3-D) and ``score`` (Topaz ``extract`` writes the raw logit). Topaz reads it with
``pandas.read_csv(sep='\\t')`` and writes only name, x, y (z) and score. Topaz's ``split`` and
``train_test_split`` may add a ``source`` column; any column beyond the known ones is kept in
``extra``.
"""

from __future__ import annotations

import os
from operator import methodcaller
from pathlib import Path

import numpy as np

from jaxpick.errors import CoordinateFormatError
from jaxpick.io.coords.table import (
    Coordinates,
    format_column,
    map_unique,
    nonblank_lines,
    number_column,
    per_image_path,
    read_text_lines,
    typed_column,
    write_lines,
)
from jaxpick.io.names import image_name as normalise_image_name

IMAGE = "image_name"
X = "x_coord"
Y = "y_coord"
Z = "z_coord"
SCORE = "score"


def _split(line: str, tabbed: bool) -> list[str]:
    # Topaz files are tab-separated (image names may contain spaces); hand-written files with
    # only spaces in the header are read as whitespace-separated.
    return line.split("\t") if tabbed else line.split()


def _columns(
    path: str | os.PathLike[str], lines: list[str], body: list[int], ncols: int, tabbed: bool
) -> list[list[str]]:
    """The fields of the body lines (indices into ``lines``), column by column."""
    rows = [lines[i] for i in body]
    if not rows:
        return [[] for _ in range(ncols)]
    if tabbed:
        if all(n == ncols - 1 for n in map(methodcaller("count", "\t"), rows)):
            fields = "\t".join(rows).split("\t")
            return [fields[c::ncols] for c in range(ncols)]
    elif all(n == ncols for n in map(len, map(str.split, rows))):
        fields = " ".join(rows).split()
        return [fields[c::ncols] for c in range(ncols)]
    # Ragged rows or trailing tabs: line by line.
    split_rows: list[list[str]] = []
    for i, line in zip(body, rows, strict=True):
        fields = _split(line, tabbed)
        if tabbed and len(fields) > ncols and not "".join(fields[ncols:]).strip():
            fields = fields[:ncols]  # trailing tabs (spreadsheet exports)
        if len(fields) != ncols:
            raise CoordinateFormatError(
                path, f"line {i + 1}: {len(fields)} fields, but the header has {ncols}"
            )
        split_rows.append(fields)
    return [[r[c] for r in split_rows] for c in range(ncols)]


def read_topaz(path: str | os.PathLike[str], *, image_name: str | None = None) -> Coordinates:
    """Reads a Topaz coordinate table.

    Args:
      path: the ``.txt``/``.tab`` file.
      image_name: use this image name for every row (then the ``image_name`` column may be
        absent).

    Raises:
      CoordinateFormatError: empty file (no header), missing ``x_coord``/``y_coord``/
        ``image_name`` columns, duplicate columns, a row with the wrong number of fields, or a
        coordinate/score that is not a number (naming the line).
    """
    lines = read_text_lines(path)
    nonblank = nonblank_lines(lines)
    if not nonblank:
        raise CoordinateFormatError(
            path,
            "empty file: a Topaz coordinate file starts with a header line "
            "(image_name, x_coord, y_coord[, score])",
        )
    header_line, header = nonblank[0] + 1, lines[nonblank[0]]
    tabbed = "\t" in header
    columns = [c.strip() for c in _split(header, tabbed)]
    if len(set(columns)) != len(columns):
        raise CoordinateFormatError(path, f"line {header_line}: duplicate column names {columns}")
    required = [X, Y] if image_name is not None else [IMAGE, X, Y]
    missing = [c for c in required if c not in columns]
    if missing:
        raise CoordinateFormatError(
            path,
            f"line {header_line}: missing column(s) {', '.join(missing)} in header {columns}; "
            "a Topaz coordinate file has a tab-separated header "
            "image_name, x_coord, y_coord[, score]",
        )
    body = nonblank[1:]
    table = dict(zip(columns, _columns(path, lines, body, len(columns), tabbed), strict=True))
    row_lines = np.array(body, dtype=np.int64) + 1

    def numbers(name: str, *, finite: bool) -> np.ndarray:
        return number_column(table[name], path=path, what=name, lines=row_lines, finite=finite)

    if image_name is not None:
        names = np.array([image_name] * len(body), dtype=np.str_)
    else:
        names = map_unique(table[IMAGE], lambda n: normalise_image_name(n) or n.strip())
    known = {IMAGE, X, Y, Z, SCORE}
    return Coordinates._adopt(
        names,
        x=numbers(X, finite=True),
        y=numbers(Y, finite=True),
        z=numbers(Z, finite=False) if Z in table else None,
        score=numbers(SCORE, finite=False) if SCORE in table else None,
        extra={c: typed_column(table[c]) for c in columns if c not in known},
    )


def topaz_lines(coords: Coordinates) -> list[str]:
    """Topaz's layout: header and tab-separated ``image_name x_coord y_coord [z_coord] [score]``.

    Numbers print as integers when a whole column is integral, else as the shortest repr.
    """
    header = [IMAGE, X, Y]
    names = coords.image_name.tolist()
    columns = [names, format_column(coords.x), format_column(coords.y)]
    if coords.z is not None:
        header.append(Z)
        columns.append(format_column(coords.z))
    if coords.score is not None:
        header.append(SCORE)
        columns.append(format_column(coords.score))
    joined = "".join(names)
    if "\t" in joined or "\n" in joined:
        bad = next(n for n in names if "\t" in n or "\n" in n)
        raise ValueError(f"image name {bad!r} contains a tab or newline")
    return ["\t".join(header), *("\t".join(row) for row in zip(*columns, strict=True))]


def write_topaz(
    coords: Coordinates,
    dest: str | os.PathLike[str],
    *,
    per_image: bool = False,
    suffix: str = "",
    extension: str = ".txt",
) -> list[Path]:
    """Writes a Topaz coordinate table, atomically.

    Args:
      coords: the table.
      dest: the output file, or with ``per_image`` the output folder.
      per_image: write ``<dest>/<image><suffix><extension>`` per image (like ``topaz split``).
      suffix: see ``per_image``.
      extension: file extension for ``per_image`` files.

    Returns:
      The files written.
    """
    try:
        if not per_image:
            return [write_lines(dest, topaz_lines(coords))]
        return [
            write_lines(per_image_path(dest, name, suffix + extension), topaz_lines(rows))
            for name, rows in coords.per_image()
        ]
    except ValueError as e:
        if isinstance(e, CoordinateFormatError):
            raise
        raise CoordinateFormatError(dest, str(e)) from e
