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


def plot_precision_recall(
    path: str | os.PathLike[str],
    recall: npt.ArrayLike,
    precision: npt.ArrayLike,
    *,
    title: str = "",
    size: tuple[int, int] = (720, 540),
) -> None:
    """Writes a PNG of a precision-recall curve: axes from 0 to 1, ticks, grid, labels, title.

    Args:
      path: output PNG (written atomically).
      recall: recall after each score bucket, in descending score order (x axis).
      precision: precision after each bucket (y axis).
      title: drawn above the plot (e.g. the AUPRC).
      size: picture ``(width, height)`` in pixels.
    """
    from PIL import ImageFont

    x = np.asarray(recall, dtype=np.float64).reshape(-1)
    y = np.asarray(precision, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"recall and precision differ in length: {x.shape} and {y.shape}")
    width, height = size
    picture = PILImage.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default(size=max(10, height // 36))
    big = ImageFont.load_default(size=max(12, height // 30))
    left, right, top, bottom = (
        int(width * 0.12),
        int(width * 0.04),
        int(height * 0.1),
        height - int(height * 0.13),
    )
    x0, x1, y0, y1 = left, width - right, bottom, top  # pixel extents of 0..1 on each axis

    def px(u: float, v: float) -> tuple[float, float]:
        return x0 + u * (x1 - x0), y0 + v * (y1 - y0)

    for k in range(6):  # grid, ticks and tick labels at 0, 0.2, ..., 1
        t = k / 5
        gx, _ = px(t, 0)
        _, gy = px(0, t)
        draw.line([(gx, y1), (gx, y0)], fill=(225, 225, 225))
        draw.line([(x0, gy), (x1, gy)], fill=(225, 225, 225))
        draw.line([(gx, y0), (gx, y0 + 5)], fill="black", width=1)
        draw.line([(x0 - 5, gy), (x0, gy)], fill="black", width=1)
        label = f"{t:.1f}"
        draw.text((gx, y0 + 8), label, fill="black", font=font, anchor="mt")
        draw.text((x0 - 8, gy), label, fill="black", font=font, anchor="rm")
    draw.rectangle([x0, y1, x1, y0], outline="black", width=1)
    draw.text(((x0 + x1) / 2, height - 6), "Recall", fill="black", font=big, anchor="md")
    # The y label, drawn on its own canvas and turned upright.
    box = draw.textbbox((0, 0), "Precision", font=big)
    label = PILImage.new("RGB", (box[2] - box[0] + 4, box[3] - box[1] + 4), "white")
    ImageDraw.Draw(label).text((2 - box[0], 2 - box[1]), "Precision", fill="black", font=big)
    label = label.rotate(90, expand=True)
    picture.paste(label, (4, int((y0 + y1) / 2 - label.height / 2)))
    if title:
        draw.text(((x0 + x1) / 2, top / 2), title, fill="black", font=big, anchor="mm")
    if len(x):
        points = [px(float(u), float(v)) for u, v in zip(x, y, strict=True)]
        points.insert(0, px(0.0, float(y[0])))  # the curve starts at recall 0
        draw.line(points, fill=(30, 90, 200), width=2, joint="curve")
        if len(x) <= 60:
            for cx, cy in points[1:]:
                draw.ellipse((cx - 3, cy - 3, cx + 3, cy + 3), fill=(30, 90, 200))
    else:
        draw.text(
            ((x0 + x1) / 2, (y0 + y1) / 2), "no predictions", fill="gray", font=big, anchor="mm"
        )
    with atomic_path(path) as tmp:
        picture.save(tmp, format="PNG")
