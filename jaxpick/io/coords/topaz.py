"""Topaz's native coordinate table (``.txt``/``.tab``).

Tab-separated text with a header line: ``image_name``, ``x_coord``, ``y_coord``, optionally
``z_coord`` (3-D) and ``score`` (Topaz ``extract`` writes the raw logit). Topaz reads it with
``pandas.read_csv(sep='\\t')`` and writes only name, x, y (z) and score. Topaz's ``split`` and
``train_test_split`` may add a ``source`` column; any column beyond the known ones is kept in
``extra``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from jaxpick.errors import CoordinateFormatError
from jaxpick.io.coords.table import (
    Coordinates,
    format_column,
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
    numbered = [(i + 1, line) for i, line in enumerate(lines) if line.strip()]
    if not numbered:
        raise CoordinateFormatError(
            path,
            "empty file: a Topaz coordinate file starts with a header line "
            "(image_name, x_coord, y_coord[, score])",
        )
    header_line, header = numbered[0]
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
    rows: list[list[str]] = []
    row_lines: list[int] = []
    for lineno, line in numbered[1:]:
        fields = _split(line, tabbed)
        if tabbed and len(fields) > len(columns) and not "".join(fields[len(columns) :]).strip():
            fields = fields[: len(columns)]  # trailing tabs (spreadsheet exports)
        if len(fields) != len(columns):
            raise CoordinateFormatError(
                path, f"line {lineno}: {len(fields)} fields, but the header has {len(columns)}"
            )
        rows.append(fields)
        row_lines.append(lineno)
    table = {c: [r[i] for r in rows] for i, c in enumerate(columns)}

    def numbers(name: str, *, finite: bool) -> np.ndarray:
        return number_column(table[name], path=path, what=name, lines=row_lines, finite=finite)

    if image_name is not None:
        names = [image_name] * len(rows)
    else:
        names = [normalise_image_name(n) or n.strip() for n in table[IMAGE]]
    known = {IMAGE, X, Y, Z, SCORE}
    return Coordinates(
        image_name=np.array(names, dtype=np.str_),
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
    columns = [
        [str(n) for n in coords.image_name],
        format_column(coords.x),
        format_column(coords.y),
    ]
    if coords.z is not None:
        header.append(Z)
        columns.append(format_column(coords.z))
    if coords.score is not None:
        header.append(SCORE)
        columns.append(format_column(coords.score))
    bad = [n for n in coords.image_name if "\t" in n or "\n" in n]
    if bad:
        raise ValueError(f"image name {bad[0]!r} contains a tab or newline")
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
