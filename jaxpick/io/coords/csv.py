"""CSV coordinate files: plain CSV, CryoPPP ground truth and Topaz's VIA CSV.

Reading recognises the kind by its header:

* **plain** (jaxpick's ``csv`` format): ``image_name,x_coord,y_coord[,z_coord][,score]``, the
  Topaz table with commas; other columns go to ``extra``. Without an ``image_name`` column the
  image name comes from the file name.
* **CryoPPP** ground truth: ``X-Coordinate,Y-Coordinate,Diameter,Angle-Psi,...`` per
  micrograph (particle centres, x = column, y = row); the image name is the file stem and every
  other column is kept in ``extra`` under its header text (``"Diameter"``, ``"Defocus U"``…).
* **VIA** (VGG Image Annotator), what Topaz calls ``csv``: ``filename,file_size,
  file_attributes,region_count,region_id,region_shape_attributes,region_attributes`` with
  point regions ``{"name":"point","cx":…,"cy":…}`` and optional ``{"score":"…"}``; rows with
  ``region_count`` 0 (images without particles) are skipped.

Writing: :func:`write_csv` writes the plain layout; :func:`write_via` writes VIA exactly as
Topaz's ``write_via_csv`` does (``<name>.png`` file names, ``file_size`` −1, per-image region
ids, scores as strings) — use the ``via`` format for ``topaz convert --to csv`` compatibility.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable
from operator import methodcaller
from pathlib import Path

import numpy as np

from jaxpick.errors import CoordinateFormatError
from jaxpick.io.atomic import write_text_atomic
from jaxpick.io.coords.table import (
    Coordinates,
    format_column,
    map_unique,
    nonblank_lines,
    number_column,
    per_image_path,
    read_text_lines,
    stem_image_name,
    typed_column,
)
from jaxpick.io.names import image_name as normalise_image_name

VIA_COLUMNS = (
    "filename",
    "file_size",
    "file_attributes",
    "region_count",
    "region_id",
    "region_shape_attributes",
    "region_attributes",
)
CRYOPPP_X = "X-Coordinate"
CRYOPPP_Y = "Y-Coordinate"


def _columns(path: str | os.PathLike[str]) -> tuple[list[str], list[list[str]], np.ndarray]:
    """The header, the fields column by column, and each row's line number."""
    lines = read_text_lines(path)
    nonblank = nonblank_lines(lines)
    if not nonblank:
        raise CoordinateFormatError(path, "empty file: a CSV coordinate file needs a header line")
    text = "\n".join([lines[i] for i in nonblank])
    if '"' not in text:
        # Without quotes a CSV record is its line split at commas: no csv module (and no
        # Python list per row) needed.
        header = [h.strip() for h in lines[nonblank[0]].split(",")]
        numbers = np.array(nonblank[1:], dtype=np.int64) + 1
        body = [lines[i] for i in nonblank[1:]]
        counts = list(map(methodcaller("count", ","), body))
        _check_lengths(path, header, [c + 1 for c in counts], numbers)
        fields = ",".join(body).split(",") if body else []
        return header, [fields[c :: len(header)] for c in range(len(header))], numbers
    try:
        parsed = list(csv.reader(io.StringIO(text), strict=True))
    except csv.Error as e:
        raise CoordinateFormatError(path, f"malformed CSV: {e}") from e
    if len(parsed) != len(nonblank):
        # A quoted field spanning lines: fall back to record numbers for messages.
        numbers = np.arange(2, len(parsed) + 1)
    else:
        numbers = np.array(nonblank[1:], dtype=np.int64) + 1
    header = [h.strip() for h in parsed[0]]
    rows = parsed[1:]
    _check_lengths(path, header, list(map(len, rows)), numbers)
    columns = [list(c) for c in zip(*rows, strict=True)] if rows else [[] for _ in header]
    return header, columns, numbers


def _check_lengths(
    path: str | os.PathLike[str], header: list[str], lengths: list[int], numbers: np.ndarray
) -> None:
    if any(n != len(header) for n in lengths):
        for lineno, n in zip(numbers.tolist(), lengths, strict=True):
            if n != len(header):
                raise CoordinateFormatError(
                    path, f"line {lineno}: {n} fields, but the header has {len(header)}"
                )
    if len(set(header)) != len(header):
        raise CoordinateFormatError(path, f"duplicate column names in header {header}")


def read_csv(
    path: str | os.PathLike[str], *, image_name: str | None = None, suffix: str = ""
) -> Coordinates:
    """Reads a plain, CryoPPP or VIA CSV file, recognised by its header.

    Args:
      path: the file.
      image_name: use this image name for every row.
      suffix: for files whose rows do not name their image (CryoPPP, plain without
        ``image_name``), removed from the file stem to get the image name.

    Raises:
      CoordinateFormatError: empty file, unrecognised header, ragged rows, bad numbers or
        unparsable VIA region JSON (naming the line).
    """
    header, columns, lines = _columns(path)
    table = dict(zip(header, columns, strict=True))
    if "filename" in table and "region_shape_attributes" in table:
        return _read_via(path, table, lines, image_name)
    if CRYOPPP_X in table and CRYOPPP_Y in table:
        x_name, y_name, z_name, score_name, image_column = CRYOPPP_X, CRYOPPP_Y, None, None, None
    elif "x_coord" in table and "y_coord" in table:
        x_name, y_name, z_name, score_name, image_column = (
            "x_coord",
            "y_coord",
            "z_coord",
            "score",
            "image_name",
        )
    else:
        raise CoordinateFormatError(
            path,
            f"unrecognised CSV header {header}: expected image_name,x_coord,y_coord[,score], "
            "CryoPPP (X-Coordinate,Y-Coordinate,...) or VIA (filename,...,"
            "region_shape_attributes,region_attributes)",
        )

    def numbers(name: str, *, finite: bool) -> np.ndarray:
        return number_column(table[name], path=path, what=name, lines=lines, finite=finite)

    if image_name is not None:
        names = np.array([image_name] * len(lines), dtype=np.str_)
    elif image_column is not None and image_column in table:
        names = map_unique(table[image_column], lambda n: normalise_image_name(n) or n.strip())
    else:
        names = np.array([stem_image_name(path, suffix=suffix)] * len(lines), dtype=np.str_)
    known = {x_name, y_name, z_name, score_name, image_column}
    return Coordinates._adopt(
        image_name=names,
        x=numbers(x_name, finite=True),
        y=numbers(y_name, finite=True),
        z=numbers(z_name, finite=False) if z_name in table else None,
        score=numbers(score_name, finite=False) if score_name in table else None,
        extra={h: typed_column(table[h]) for h in header if h not in known},
    )


def _read_via(
    path: str | os.PathLike[str],
    table: dict[str, list[str]],
    lines: np.ndarray,
    image_name: str | None,
) -> Coordinates:
    missing = [c for c in ("region_count", "region_attributes") if c not in table]
    if missing:
        raise CoordinateFormatError(path, f"VIA CSV without column(s) {', '.join(missing)}")
    names, xs, ys, scores = [], [], [], []
    for i, lineno in enumerate(lines.tolist()):
        count = number_column(
            [table["region_count"][i]], path=path, what="region_count", lines=[lineno]
        )[0]
        if count == 0:
            continue
        try:
            shape = json.loads(table["region_shape_attributes"][i])
            attributes = json.loads(table["region_attributes"][i] or "{}")
        except (ValueError, RecursionError) as e:
            raise CoordinateFormatError(path, f"line {lineno}: invalid region JSON: {e}") from e
        if not isinstance(shape, dict) or not isinstance(attributes, dict):
            raise CoordinateFormatError(path, f"line {lineno}: region attributes must be objects")
        point = [shape.get("cx"), shape.get("cy")]
        if not all(isinstance(v, int | float | str) and not isinstance(v, bool) for v in point):
            raise CoordinateFormatError(
                path,
                f"line {lineno}: region has no point cx/cy: {table['region_shape_attributes'][i]}",
            )
        x, y = number_column(
            [str(v) for v in point], path=path, what="cx/cy", lines=[lineno, lineno], finite=True
        )
        score = attributes.get("score")
        if score is None:
            scores.append(np.nan)
        elif isinstance(score, int | float | str) and not isinstance(score, bool):
            scores.append(number_column([str(score)], path=path, what="score", lines=[lineno])[0])
        else:
            raise CoordinateFormatError(path, f"line {lineno}: score is {score!r}, not a number")
        raw = table["filename"][i]
        names.append(image_name if image_name is not None else normalise_image_name(raw) or raw)
        xs.append(x)
        ys.append(y)
    has_score = not np.isnan(np.array(scores, dtype=np.float64)).all() if scores else False
    return Coordinates(
        image_name=np.array(names, dtype=np.str_),
        x=np.array(xs, dtype=np.float64),
        y=np.array(ys, dtype=np.float64),
        score=np.array(scores, dtype=np.float64) if has_score else None,
    )


def _csv_text(rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    # pandas' to_csv (which Topaz uses) quotes minimally and ends lines with "\n".
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerows(rows)
    return buffer.getvalue()


def csv_text(coords: Coordinates) -> str:
    """The plain CSV text: ``image_name,x_coord,y_coord[,z_coord][,score]``."""
    header = ["image_name", "x_coord", "y_coord"]
    columns = [coords.image_name.tolist(), format_column(coords.x), format_column(coords.y)]
    if coords.z is not None:
        header.append("z_coord")
        columns.append(format_column(coords.z))
    if coords.score is not None:
        header.append("score")
        columns.append(format_column(coords.score))
    return _csv_text([header, *(list(r) for r in zip(*columns, strict=True))])


def via_text(coords: Coordinates) -> str:
    """The VIA CSV text, laid out as Topaz's ``write_via_csv`` writes it."""
    region_ids = np.zeros(len(coords), dtype=np.int64)
    counts = np.zeros(len(coords), dtype=np.int64)
    positions: dict[str, list[int]] = {}
    for i, name in enumerate(coords.image_name):
        positions.setdefault(str(name), []).append(i)
    for rows in positions.values():
        counts[rows] = len(rows)
        region_ids[rows] = np.arange(len(rows))
    out = [list(VIA_COLUMNS)]
    cxs, cys = format_column(coords.x), format_column(coords.y)
    scores = format_column(coords.score) if coords.score is not None else None
    for i, name in enumerate(coords.image_name):
        shape = f'{{"name":"point","cx":{cxs[i]},"cy":{cys[i]}}}'
        attributes = f'{{"score":"{scores[i]}"}}' if scores is not None else "{}"
        out.append(
            [f"{name}.png", "-1", "{}", str(counts[i]), str(region_ids[i]), shape, attributes]
        )
    return _csv_text(out)


def _write(
    coords: Coordinates,
    dest: str | os.PathLike[str],
    render: Callable[[Coordinates], str],
    *,
    per_image: bool,
    suffix: str,
) -> list[Path]:
    if not per_image:
        write_text_atomic(dest, render(coords))
        return [Path(dest)]
    written = []
    for name, rows in coords.per_image():
        target = per_image_path(dest, name, f"{suffix}.csv")
        write_text_atomic(target, render(rows))
        written.append(target)
    return written


def write_csv(
    coords: Coordinates, dest: str | os.PathLike[str], *, per_image: bool = False, suffix: str = ""
) -> list[Path]:
    """Writes plain CSV (``image_name,x_coord,y_coord[,z_coord][,score]``), atomically.

    With ``per_image``, ``dest`` is a folder and ``<dest>/<image><suffix>.csv`` is written per
    image. Returns the files written.
    """
    return _write(coords, dest, csv_text, per_image=per_image, suffix=suffix)


def write_via(
    coords: Coordinates, dest: str | os.PathLike[str], *, per_image: bool = False, suffix: str = ""
) -> list[Path]:
    """Writes VIA CSV as ``topaz convert --to csv`` does (2-D only), atomically.

    Returns the files written.
    """
    if coords.z is not None:
        raise CoordinateFormatError(dest, "VIA CSV point regions are 2-D; this table has z")
    return _write(coords, dest, via_text, per_image=per_image, suffix=suffix)
