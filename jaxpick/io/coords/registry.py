"""Coordinate formats by name and extension; the front door for reading and writing.

======== ============================== ============ ===============================================
format   extension                      layout       notes
======== ============================== ============ ===============================================
coord    ``.txt``, ``.tab``             single file  Topaz table (alias ``topaz``)
star     ``.star``                      single file  RELION 3.0–5 / Topaz STAR; per-image on request
box      ``.box``                       per image    EMAN corners + size; needs a box size to write
json     ``_info.json``, ``.json``      per image    EMAN2 box centres
cbox     ``.cbox``                      per image    crYOLO cbox 1.0; needs a box size to write
cs       ``.cs``                        single file  cryoSPARC picks; needs image shapes to write
csv      ``.csv``                       single file  plain CSV (reads CryoPPP and VIA too)
via      (``.csv``)                     single file  VIA CSV, Topaz's ``--to csv``
plain    ``.coord``                     per image    headerless ``x y`` centres
======== ============================== ============ ===============================================

Per-image formats treat the destination as a folder and write ``<dest>/<image><suffix><ext>``
(EMAN2: ``<image><suffix>_info.json``); single-file formats write ``dest`` itself, or per image
with ``per_image=True``. Every file is written atomically (temporary name, then rename).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from jaxpick.errors import CoordinateFormatError
from jaxpick.io.coords import box, cbox, cryosparc, eman_json, star, topaz
from jaxpick.io.coords import csv as csv_format
from jaxpick.io.coords.table import Coordinates, per_image_path
from jaxpick.io.names import image_name as normalise_image_name

#: Canonical format names.
FORMATS = ("coord", "star", "box", "json", "cbox", "cs", "csv", "via", "plain")
#: Other accepted names for formats.
ALIASES = {
    "topaz": "coord",
    "txt": "coord",
    "tab": "coord",
    "relion": "star",
    "eman": "box",
    "eman2": "json",
    "cryolo": "cbox",
    "cryosparc": "cs",
}
#: Extension → format for :func:`detect_format` (case-insensitive).
EXTENSIONS = {
    ".txt": "coord",
    ".tab": "coord",
    ".star": "star",
    ".box": "box",
    ".json": "json",
    ".cbox": "cbox",
    ".cs": "cs",
    ".csv": "csv",
    ".coord": "plain",
}
#: Formats that always write one file per image into a destination folder.
PER_IMAGE_FORMATS = frozenset({"box", "json", "cbox", "plain"})


def canonical_format(name: str) -> str:
    """The canonical name of a format name or alias (case-insensitive).

    Raises:
      ValueError: unknown format (the message lists the known ones).
    """
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in FORMATS:
        known = ", ".join(list(FORMATS) + sorted(ALIASES))
        raise ValueError(f"unknown coordinate format {name!r}; known formats: {known}")
    return key


def detect_format(path: str | os.PathLike[str]) -> str:
    """The format of a coordinate file from its extension.

    ``.csv`` gives ``"csv"`` (whose reader also recognises CryoPPP and VIA files by header).

    Raises:
      CoordinateFormatError: unknown extension (the message lists the known ones).
    """
    suffix = Path(path).suffix.lower()
    if suffix in EXTENSIONS:
        return EXTENSIONS[suffix]
    known = ", ".join(EXTENSIONS)
    raise CoordinateFormatError(
        path,
        f"unknown coordinate file extension {suffix or '(none)'!r}; expected one of {known} "
        "(or name the format explicitly)",
    )


def read_coordinates(
    path: str | os.PathLike[str],
    format: str = "auto",
    *,
    image_name: str | None = None,
    suffix: str = "",
) -> Coordinates:
    """Reads one coordinate file.

    Image names are normalised with :func:`jaxpick.io.names.image_name` (no directories, no
    image extension). STAR and cryoSPARC readers keep the micrograph path as written in
    ``extra["micrograph_path"]``.

    Args:
      path: the file.
      format: a name from :data:`FORMATS` (or alias), or ``"auto"`` to detect by extension.
      image_name: use this image name for every row (overrides names in the file).
      suffix: for per-micrograph files (box, json, cbox, plain, CryoPPP CSV, coordinate STARs
        without ``_rlnMicrographName``), the suffix to remove from the file stem to get the
        image name — the same ``suffix`` given when writing. Coordinate STARs without a suffix
        lose RELION's ``_autopick``/``_manualpick``.

    Returns:
      The coordinates.

    Raises:
      CoordinateFormatError: unknown extension or any malformed content (naming the file, and
        the line where it helps).
    """
    fmt = detect_format(path) if format == "auto" else _format_or_error(format, path)
    if image_name is not None:
        image_name = normalise_image_name(image_name) or image_name
    reader = _READERS[fmt]
    try:
        return reader(path, image_name=image_name, suffix=suffix)
    except CoordinateFormatError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as e:
        # Defence in depth: the readers validate everything they know of (and the fuzz tests
        # call them directly, without this net), but a file must never surface as a traceback.
        raise CoordinateFormatError(path, f"could not be read as {fmt}: {e}") from e


def _read_cs(path: str | os.PathLike[str], *, image_name: str | None, suffix: str) -> Coordinates:
    del suffix  # cryoSPARC files name their micrographs
    return cryosparc.read_cs(path, image_name=image_name)


def _read_topaz(
    path: str | os.PathLike[str], *, image_name: str | None, suffix: str
) -> Coordinates:
    del suffix  # Topaz tables name their images
    return topaz.read_topaz(path, image_name=image_name)


_READERS: dict[str, Callable[..., Coordinates]] = {
    "coord": _read_topaz,
    "star": star.read_star_coordinates,
    "box": box.read_box,
    "json": eman_json.read_eman_json,
    "cbox": cbox.read_cbox,
    "cs": _read_cs,
    "csv": csv_format.read_csv,
    "via": csv_format.read_csv,
    "plain": box.read_plain,
}


def read_many(
    paths: Iterable[str | os.PathLike[str]],
    format: str = "auto",
    *,
    suffix: str = "",
) -> Coordinates:
    """Reads several coordinate files (each detected separately) and concatenates them."""
    return Coordinates.concat(read_coordinates(p, format, suffix=suffix) for p in paths)


def _format_or_error(format: str, path: str | os.PathLike[str]) -> str:
    try:
        return canonical_format(format)
    except ValueError as e:
        raise CoordinateFormatError(path, str(e)) from e


def _auto_output_format(dest: str | os.PathLike[str], box_size: float | None) -> str:
    text = os.fspath(dest)
    if text.endswith(("/", os.sep)) or Path(text).is_dir():
        # Topaz convert: a folder destination means box files with a box size, else EMAN2 json.
        return "box" if box_size else "json"
    return detect_format(dest)


def write_coordinates(
    coords: Coordinates,
    dest: str | os.PathLike[str],
    format: str = "auto",
    *,
    suffix: str = "",
    box_size: float | None = None,
    image_ext: str = ".mrc",
    image_shapes: Mapping[str, tuple[int, int]] | None = None,
    pixel_size: float | None = None,
    per_image: bool = False,
    star_style: star.StarStyle = "relion",
    seed: int | None = None,
) -> list[Path]:
    """Writes coordinates in a format (atomically, file by file).

    Args:
      coords: the table.
      dest: output file for single-file formats; output folder for per-image formats (box,
        json, cbox, plain) and for ``per_image=True``.
      format: a name from :data:`FORMATS` (or alias) or ``"auto"``: by ``dest``'s extension;
        a folder (existing, or ending in ``/``) means box when ``box_size`` is given, else
        json (as ``topaz convert`` decides).
      suffix: appended to the image name in per-image file names.
      box_size: box size in pixels for box and cbox (default: the table's ``Width``/``Height``
        columns, e.g. from a box or cbox file).
      image_ext: appended to image names where a format stores micrograph paths (STAR
        ``_rlnMicrographName``, cryoSPARC ``location/micrograph_path``) and the table has no
        original path; Topaz's ``--image-ext``.
      image_shapes: ``{image_name: (ny, nx)}``, needed for cryoSPARC ``.cs``.
      pixel_size: micrograph pixel size in Å (cryoSPARC ``location/micrograph_psize_A``).
      per_image: for single-file formats, write ``<dest>/<image><suffix><ext>`` per image
        (``topaz split``); for STAR this gives RELION per-micrograph coordinate files.
      star_style: ``"relion"`` or ``"topaz"`` STAR layout (see :func:`star.star_lines`).
      seed: seed for cryoSPARC's random uids.

    Returns:
      The files written, in order.

    Raises:
      CoordinateFormatError: unknown format or extension, box output without a box size
        ("pass --boxsize"), cryoSPARC output without an image's shape, 3-D picks for a 2-D-only
        format, or an image name that cannot be a file name.
    """
    fmt = (
        _auto_output_format(dest, box_size) if format == "auto" else _format_or_error(format, dest)
    )
    if fmt == "coord":
        return topaz.write_topaz(coords, dest, per_image=per_image, suffix=suffix)
    if fmt == "star":
        return star.write_star(
            coords, dest, style=star_style, per_image=per_image, suffix=suffix, image_ext=image_ext
        )
    if fmt == "box":
        return box.write_box(coords, dest, box_size=box_size, suffix=suffix)
    if fmt == "json":
        return eman_json.write_eman_json(coords, dest, suffix=suffix)
    if fmt == "cbox":
        return cbox.write_cbox(coords, dest, box_size=box_size, suffix=suffix)
    if fmt == "plain":
        return box.write_plain(coords, dest, suffix=suffix)
    if fmt == "csv":
        return csv_format.write_csv(coords, dest, per_image=per_image, suffix=suffix)
    if fmt == "via":
        return csv_format.write_via(coords, dest, per_image=per_image, suffix=suffix)
    if per_image:
        written = []
        for name, rows in coords.per_image():
            target = per_image_path(dest, name, f"{suffix}.cs")
            written += cryosparc.write_cs(
                rows,
                target,
                image_shapes=image_shapes,
                pixel_size=pixel_size,
                image_ext=image_ext,
                seed=seed,
            )
        return written
    return cryosparc.write_cs(
        coords,
        dest,
        image_shapes=image_shapes,
        pixel_size=pixel_size,
        image_ext=image_ext,
        seed=seed,
    )
