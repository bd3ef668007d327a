"""Particle-coordinate files: one table type, many formats (Topaz, RELION, EMAN, crYOLO, cryoSPARC).

Read any supported file into a :class:`Coordinates` table with :func:`read_coordinates`, write it
with :func:`write_coordinates`; :mod:`jaxpick.conventions` defines what the numbers mean. Nothing
here imports JAX, pandas or starfile.

>>> from jaxpick.io.coords import read_coordinates, write_coordinates  # doctest: +SKIP
>>> picks = read_coordinates("particles.star").filter_score(0.0).scaled(down=8)  # doctest: +SKIP
>>> write_coordinates(picks, "boxes/", "box", box_size=64)  # doctest: +SKIP
"""

from jaxpick.io.coords.registry import (
    ALIASES,
    EXTENSIONS,
    FORMATS,
    PER_IMAGE_FORMATS,
    canonical_format,
    detect_format,
    read_coordinates,
    read_many,
    write_coordinates,
)
from jaxpick.io.coords.star import StarBlock, StarFile, StarLoop, parse_star, read_star
from jaxpick.io.coords.table import MICROGRAPH_PATH, Coordinates

__all__ = [
    "ALIASES",
    "EXTENSIONS",
    "FORMATS",
    "MICROGRAPH_PATH",
    "PER_IMAGE_FORMATS",
    "Coordinates",
    "StarBlock",
    "StarFile",
    "StarLoop",
    "canonical_format",
    "detect_format",
    "parse_star",
    "read_coordinates",
    "read_many",
    "read_star",
    "write_coordinates",
]
