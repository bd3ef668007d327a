"""Coordinate conventions: the one place that says what a particle coordinate means.

jaxpick (like Topaz) uses **pixel-index coordinates**: ``x`` is the column index and ``y`` the row
index of the image array as read from the file (``image[y, x]``), with the origin at the top-left
pixel, which is pixel ``(0, 0)``; tomograms add ``z`` = slice index (``volume[z, y, x]``).
Coordinates are floats; integer values denote pixel centres.

Other programs differ, and every conversion lives here so that it is written (and tested) once:

* **y inversion** (:func:`invert_y`): EMAN2 reads some image types (TIFF) with the y axis
  flipped, so its coordinates for them count rows from the bottom. Topaz's ``--invert-y`` maps
  ``y' = height − 1 − y`` (row ``0`` ↔ row ``height − 1``), which is its own inverse.
* **box corners** (:func:`box_corner`, :func:`box_centre`): EMAN ``.box`` and crYOLO ``.cbox``
  files store the corner of a box rather than its centre.
* **scaling** (:func:`scale_coordinates`): Topaz's ``-s/--down-scale`` and ``-x/--up-scale``
  rescale coordinates to a binned (or unbinned) micrograph and round to whole pixels.
* **physical units** (:func:`pixels_to_angstrom`, :func:`angstrom_to_pixels`).

Standard library and numpy only.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

ArrayLike = npt.ArrayLike


def invert_y(y: ArrayLike, height: ArrayLike) -> np.ndarray:
    """Mirrors row coordinates top-to-bottom: ``height − 1 − y``.

    This is Topaz's ``--invert-y`` (``topaz/utils/conversions.py::mirror_y_axis``) and the
    EMAN2 convention for images it reads bottom-up: pixel row ``0`` maps to row ``height − 1``
    and vice versa, so pixel centres stay pixel centres. Applying it twice gives back ``y``.

    Args:
      y: row coordinates (pixels).
      height: image height in pixels (number of rows); a scalar or one value per coordinate.

    Returns:
      The mirrored coordinates as float64.
    """
    return np.asarray(height, dtype=np.float64) - 1.0 - np.asarray(y, dtype=np.float64)


HalfMode = Literal["floor", "exact"]


def _half(size: ArrayLike, half: HalfMode) -> np.ndarray:
    size = np.asarray(size, dtype=np.float64)
    if half == "floor":
        return np.floor_divide(size, 2.0)
    if half == "exact":
        return size / 2.0
    raise ValueError(f"half must be 'floor' or 'exact', not {half!r}")


def box_corner(centre: ArrayLike, size: ArrayLike, *, half: HalfMode = "floor") -> np.ndarray:
    """The (lower-coordinate) corner of a box of ``size`` pixels centred on ``centre``.

    ``half="floor"`` (default) gives ``centre − size // 2``: what Topaz writes to EMAN ``.box``
    files (``coordinates_to_boxes``) and the top-left pixel of the ``size``-pixel window that
    Topaz and RELION extract around a pixel ``centre``. ``half="exact"`` gives
    ``centre − size / 2``, crYOLO's ``.cbox`` convention (napari-boxmanager writes
    ``x − boxsize / 2``).

    Args:
      centre: centre coordinates (pixels).
      size: box size along the same axis (pixels); a scalar or one value per coordinate.
      half: how half the box size is computed (see above).

    Returns:
      Corner coordinates as float64; integral for integral inputs with ``half="floor"``.
    """
    return np.asarray(centre, dtype=np.float64) - _half(size, half)


def box_centre(corner: ArrayLike, size: ArrayLike, *, half: HalfMode = "floor") -> np.ndarray:
    """The centre of a box of ``size`` pixels with corner ``corner``; inverse of :func:`box_corner`.

    ``half="floor"`` (default, EMAN ``.box``) gives ``corner + size // 2``, exactly what Topaz's
    box reader computes (it parses integers; we accept float corners and sizes too).
    Decision: for odd sizes this is the middle *pixel* of the box (a 5-pixel box at 10 spans
    pixels 10..14, centre 12), and it is the exact inverse of Topaz's writer for every size, so a
    Topaz → box → jaxpick round trip never drifts by half a pixel. For even sizes it equals the
    geometric ``corner + size / 2`` that EMAN documents. ``half="exact"`` gives
    ``corner + size / 2``, crYOLO's ``.cbox`` convention (napari-boxmanager adds
    ``_Width / 2``).

    Args:
      corner: corner coordinates (pixels).
      size: box size along the same axis (pixels); a scalar or one value per coordinate.
      half: how half the box size is computed (see above).

    Returns:
      Centre coordinates as float64.
    """
    return np.asarray(corner, dtype=np.float64) + _half(size, half)


def scale_coordinates(values: ArrayLike, down: float = 1, up: float = 1) -> np.ndarray:
    """Topaz's coordinate scaling: ``np.round(values · (up / down))``, whole pixels as float64.

    Matches ``topaz convert``/``extract`` exactly: the factor is computed first
    (``scale = up_scale / down_scale``), then multiplied, then rounded with ``np.round``, which
    rounds halves to the nearest *even* integer (``0.5 → 0``, ``1.5 → 2``, ``2.5 → 2``). As in
    Topaz, nothing happens (no rounding either) when the factor is exactly 1.

    Args:
      values: coordinates in pixels.
      down: ``-s/--down-scale`` factor (divides). Must be positive.
      up: ``-x/--up-scale`` factor (multiplies). Must be positive.

    Returns:
      The scaled coordinates as float64 (integral unless the factor is 1).

    Raises:
      ValueError: if a factor is not a positive finite number.
    """
    for name, factor in (("down", down), ("up", up)):
        if not (np.isfinite(factor) and factor > 0):
            raise ValueError(f"{name}-scale factor must be a positive number, not {factor!r}")
    values = np.asarray(values, dtype=np.float64)
    scale = float(up) / float(down)
    if scale == 1:
        return values.copy()
    return np.round(scale * values)


def pixels_to_angstrom(values: ArrayLike, pixel_size: float) -> np.ndarray:
    """Converts pixel distances or coordinates to ångström (``values · pixel_size``)."""
    return np.asarray(values, dtype=np.float64) * _check_pixel_size(pixel_size)


def angstrom_to_pixels(values: ArrayLike, pixel_size: float) -> np.ndarray:
    """Converts ångström distances or coordinates to pixels (``values / pixel_size``)."""
    return np.asarray(values, dtype=np.float64) / _check_pixel_size(pixel_size)


def _check_pixel_size(pixel_size: float) -> float:
    if not (np.isfinite(pixel_size) and pixel_size > 0):
        raise ValueError(f"pixel size must be a positive number of Å/pixel, not {pixel_size!r}")
    return float(pixel_size)
