"""EMAN2 ``info/<micrograph>_info.json`` box lists.

EMAN2's ``e2boxer.py`` keeps picks per micrograph as ``{"boxes": [[x, y, "manual"], ...]}``:
box **centres** and a picker tag. Topaz writes this format (``coordinates_to_eman2_json``:
integers, tag ``"manual"``, ``indent=0``) but cannot read it; we do both. Other keys of the info
file (EMAN2 also stores CTF and quality data there) are ignored on reading. The tag is kept as
``extra["box_type"]`` and written back; the y axis is stored as given (see
:meth:`Coordinates.inverted_y` for EMAN2's TIFF convention).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from jaxpick.errors import CoordinateFormatError
from jaxpick.io.atomic import write_text_atomic
from jaxpick.io.coords.table import Coordinates, per_image_path, read_text_lines, stem_image_name

#: File-name ending EMAN2 uses for per-micrograph info files.
INFO_ENDING = "_info.json"


def read_eman_json(
    path: str | os.PathLike[str], *, image_name: str | None = None, suffix: str = ""
) -> Coordinates:
    """Reads an EMAN2 ``_info.json`` file's ``"boxes"``.

    Args:
      path: the file.
      image_name: the image the boxes are on (default: the file name without ``_info.json``
        and ``suffix``).
      suffix: removed from the end of the file stem to get the image name.

    Raises:
      CoordinateFormatError: not JSON, no ``"boxes"`` list, or a box that does not start with
        two finite numbers.
    """
    text = "\n".join(read_text_lines(path))
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise CoordinateFormatError(path, f"not valid JSON: {e}") from e
    if not isinstance(document, dict) or not isinstance(document.get("boxes"), list):
        raise CoordinateFormatError(
            path, 'has no "boxes" list: not an EMAN2 _info.json file with picks'
        )
    xs, ys, tags = [], [], []
    for i, box in enumerate(document["boxes"]):
        ok = isinstance(box, list) and len(box) >= 2
        ok = ok and all(isinstance(v, int | float) and not isinstance(v, bool) for v in box[:2])
        try:
            x, y = (float(box[0]), float(box[1])) if ok else (np.nan, np.nan)
        except OverflowError:  # a JSON integer too large for a float
            x = y = np.nan
        if not (np.isfinite(x) and np.isfinite(y)):
            shown = repr(box) if len(repr(box)) < 80 else repr(box)[:77] + "..."
            raise CoordinateFormatError(
                path, f"box {i + 1} is {shown}: expected [x, y, tag] with finite numbers x, y"
            )
        xs.append(x)
        ys.append(y)
        tags.append(str(box[2]) if len(box) > 2 else "")
    if image_name is None:
        image_name = stem_image_name(path, suffix=suffix, ending=INFO_ENDING)
    return Coordinates(
        image_name=image_name,
        x=np.array(xs, dtype=np.float64),
        y=np.array(ys, dtype=np.float64),
        extra={"box_type": np.array(tags, dtype=np.str_)},
    )


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


def write_eman_json(
    coords: Coordinates, dest: str | os.PathLike[str], *, suffix: str = ""
) -> list[Path]:
    """Writes ``<dest>/<image><suffix>_info.json`` per image (atomically).

    Integral coordinates are written as JSON integers (as Topaz does), others as floats; the tag
    is ``extra["box_type"]`` when present and non-empty, else ``"manual"``.

    Returns:
      The files written (none for an empty table).
    """
    if coords.z is not None:
        raise CoordinateFormatError(dest, "EMAN2 _info.json boxes are 2-D; this table has z")
    written = []
    for name, rows in coords.per_image():
        tags = rows.extra.get("box_type")
        boxes = [
            [
                _number(rows.x[i]),
                _number(rows.y[i]),
                str(tags[i]) if tags is not None and str(tags[i]) else "manual",
            ]
            for i in range(len(rows))
        ]
        target = per_image_path(dest, name, suffix + INFO_ENDING)
        write_text_atomic(target, json.dumps({"boxes": boxes}, indent=0) + "\n")
        written.append(target)
    return written
