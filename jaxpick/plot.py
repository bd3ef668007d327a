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


def _nice_range(values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = float(finite.min()), float(finite.max())
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    pad = 0.05 * (hi - lo)
    return lo - pad, hi + pad


def _draw_panel(
    picture: PILImage.Image,
    box: tuple[int, int, int, int],
    lines: Sequence[tuple[str, np.ndarray, np.ndarray, tuple[int, int, int]]],
    *,
    xlabel: str,
    title: str,
    y_range: tuple[float, float] | None = None,
) -> None:
    """One line chart inside ``box = (left, top, right, bottom)`` of ``picture``: axes with
    5 ticks each, a legend, the series drawn as polylines (points for single values)."""
    from PIL import ImageFont

    draw = ImageDraw.Draw(picture)
    left, top, right, bottom = box
    height = bottom - top
    font = ImageFont.load_default(size=max(10, height // 30))
    big = ImageFont.load_default(size=max(12, height // 24))
    x0, x1 = left + int(0.14 * (right - left)), right - 10
    y0, y1 = bottom - int(0.12 * height), top + int(0.1 * height)
    xs = np.concatenate([np.asarray(x, np.float64) for _, x, _, _ in lines] or [np.zeros(0)])
    ys = np.concatenate([np.asarray(y, np.float64) for _, _, y, _ in lines] or [np.zeros(0)])
    finite_x = xs[np.isfinite(xs)]
    xlo, xhi = (
        (float(finite_x.min()), float(finite_x.max()))
        if finite_x.size and finite_x.max() > finite_x.min()
        else _nice_range(xs)
    )
    ylo, yhi = y_range if y_range is not None else _nice_range(ys)

    def px(u: float, v: float) -> tuple[float, float]:
        return (
            x0 + (u - xlo) / (xhi - xlo) * (x1 - x0),
            y0 + (v - ylo) / (yhi - ylo) * (y1 - y0),
        )

    for k in range(6):
        tx = xlo + k * (xhi - xlo) / 5
        ty = ylo + k * (yhi - ylo) / 5
        gx, _ = px(tx, ylo)
        _, gy = px(xlo, ty)
        draw.line([(gx, y1), (gx, y0)], fill=(230, 230, 230))
        draw.line([(x0, gy), (x1, gy)], fill=(230, 230, 230))
        draw.text((gx, y0 + 6), f"{tx:.4g}", fill="black", font=font, anchor="mt")
        draw.text((x0 - 6, gy), f"{ty:.3g}", fill="black", font=font, anchor="rm")
    draw.rectangle([x0, y1, x1, y0], outline="black", width=1)
    draw.text(((x0 + x1) / 2, bottom - 4), xlabel, fill="black", font=font, anchor="md")
    draw.text(((x0 + x1) / 2, top + 4), title, fill="black", font=big, anchor="mt")
    for i, (label, x, y, colour) in enumerate(lines):
        pts = [
            px(float(u), float(v))
            for u, v in zip(np.asarray(x), np.asarray(y), strict=True)
            if np.isfinite(u) and np.isfinite(v)
        ]
        if len(pts) > 1:
            draw.line(pts, fill=colour, width=2)
        for cx, cy in pts if len(pts) <= 60 else []:
            draw.ellipse((cx - 3, cy - 3, cx + 3, cy + 3), fill=colour)
        ly = y1 + 8 + i * (font.size + 4)
        draw.line(
            [(x0 + 8, ly + font.size / 2), (x0 + 28, ly + font.size / 2)], fill=colour, width=3
        )
        draw.text((x0 + 32, ly), label, fill="black", font=font)


def plot_training_curves(
    path: str | os.PathLike[str],
    history: Sequence[dict[str, object]],
    *,
    size: tuple[int, int] = (1200, 480),
) -> None:
    """Writes a PNG of a training run: the training loss per update (with a running mean) on
    the left; the test AUPRCs (pixels and particles) and loss per epoch on the right.

    Args:
      path: output PNG (written atomically).
      history: the rows of ``jaxpick train``'s curve (``epoch``, ``iter``, ``split`` and the
        metric columns; ``"-"`` marks a missing value).
      size: picture ``(width, height)``.
    """

    def column(rows: Sequence[dict[str, object]], name: str) -> np.ndarray:
        out = []
        for r in rows:
            try:
                out.append(float(r.get(name, "-")))  # type: ignore[arg-type]
            except (TypeError, ValueError):  # "-": no value
                out.append(np.nan)
        return np.asarray(out, np.float64)

    train = [r for r in history if r.get("split") == "train"]
    test = [r for r in history if r.get("split") == "test"]
    width, height = size
    picture = PILImage.new("RGB", (width, height), "white")
    it = column(train, "iter")
    loss = column(train, "loss")
    window = max(1, len(loss) // 50)
    finite = np.where(np.isfinite(loss), loss, 0.0)
    counts = np.convolve(np.isfinite(loss).astype(float), np.ones(window), "same")
    smooth = np.convolve(finite, np.ones(window), "same") / np.maximum(counts, 1)
    train_lines = [
        ("loss", it, loss, (190, 190, 230)),
        (f"running mean ({window})", it, smooth, (30, 60, 200)),
    ]
    _draw_panel(
        picture, (0, 0, width // 2, height), train_lines, xlabel="update", title="training loss"
    )
    epochs = column(test, "epoch")
    test_lines = [
        ("AUPRC (pixels)", epochs, column(test, "auprc"), (200, 120, 30)),
        ("AUPRC (particles)", epochs, column(test, "particle_auprc"), (40, 160, 70)),
    ]
    if not test:
        test_lines = []
    _draw_panel(
        picture,
        (width // 2, 0, width, height),
        test_lines,
        xlabel="epoch",
        title="test set" if test else "no test set (--test-images or -k)",
        y_range=(0.0, 1.0),
    )
    with atomic_path(path) as tmp:
        picture.save(tmp, format="PNG")
