"""Pictures people look at: micrographs with picks drawn on them. Pillow only (no matplotlib).

Colours follow a fixed legend so pictures from different commands read the same way: ground
truth in green, picks in magenta (or red/blue for false/true positives when both are known).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from PIL import Image as PILImage
from PIL import ImageDraw

from jaxpick.io.atomic import atomic_path
from jaxpick.io.raster import to_uint8

GREEN = (40, 220, 90)
MAGENTA = (235, 60, 220)


def overlay_picks(
    path: str | os.PathLike[str],
    image: npt.ArrayLike,
    layers: Sequence[tuple[npt.ArrayLike, float, tuple[int, int, int]]],
    *,
    max_size: int = 1024,
    line_width: int = 2,
) -> None:
    """Writes a PNG of ``image`` (z-scored, ±3σ gray) with circles drawn at coordinates.

    Args:
      path: output PNG (written atomically).
      image: 2-D micrograph, ``[y, x]``.
      layers: ``(xy, radius, rgb)`` triples: ``xy`` is ``(N, 2)`` in (x, y) = (column, row)
        pixels of ``image``, ``radius`` in those pixels.
      max_size: the longer side of the picture is shrunk to this (circles scale with it).
      line_width: circle outline width in picture pixels.
    """
    gray = to_uint8(np.asarray(image, dtype=np.float32))
    if gray.ndim != 2:
        raise ValueError(f"overlay_picks needs a 2-D image, got shape {gray.shape}")
    picture = PILImage.fromarray(gray, mode="L").convert("RGB")
    scale = min(1.0, max_size / max(gray.shape))
    if scale < 1.0:
        size = (max(1, round(gray.shape[1] * scale)), max(1, round(gray.shape[0] * scale)))
        picture = picture.resize(size, PILImage.Resampling.BILINEAR)
    draw = ImageDraw.Draw(picture)
    for xy, radius, colour in layers:
        points = np.asarray(xy, dtype=np.float64).reshape(-1, 2) * scale
        r = max(radius * scale, 2.0)
        for x, y in points:
            draw.ellipse((x - r, y - r, x + r, y + r), outline=colour, width=line_width)
    with atomic_path(path) as tmp:
        picture.save(tmp, format="PNG")
