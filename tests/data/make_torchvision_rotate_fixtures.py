"""Regenerates ``torchvision_rotate.npz``: Topaz's crop augmentation applied to a labelled window.

Run with a Python environment that has Topaz's dependencies (torch, torchvision, numpy; jaxpick
is not needed), from the repository root::

    /path/to/topaz-venv/bin/python tests/data/make_torchvision_rotate_fixtures.py

The stored values were produced with torch 2.13 (CPU) and torchvision 0.28, the versions
topaz-em 0.3.20 ran with. ``tests/data_/test_augment.py`` compares jaxpick's crop geometry with
them, so the tests never need torch.

What Topaz does per sample (``topaz/utils/data/memory_mapped_data.py``,
``MultipleImageSetDataset.__getitem__``): take a window of odd side ``W`` centred on the sample
pixel, ``torchvision.transforms.functional.rotate`` it by ``angle`` degrees, cut the centred
``CROP`` window out of it (``[d // 2 : d // 2 + CROP]`` with ``d = W - CROP``), then ``hflip``
and ``vflip`` it when drawn. Here the window holds the distinct values ``0 .. W*W - 1`` so every
output pixel says where it came from (0 also marks zero fill; the value at offset ``(-15, -15)``
is never reached).

Contents:

* ``window``: int16 ``[W, W]``, ``W = 31`` (``2 * (ceil(21 * sqrt 2) // 2) + 1``, Topaz's
  window for a 21-pixel crop);
* ``angle``: float64 ``[K]`` degrees; ``hflip``, ``vflip``: bool ``[K]``;
* ``crop``: int16 ``[K, 21, 21]``, Topaz's augmented crop for each ``(angle, hflip, vflip)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torchvision
import torchvision.transforms.functional as tvf

OUT = Path(__file__).resolve().parent / "torchvision_rotate.npz"
CROP = 21
WINDOW = 2 * (int(np.ceil(CROP * np.sqrt(2))) // 2) + 1


def cases() -> list[tuple[float, bool, bool]]:
    """Every flip at 0, 90, 180, 270 and one odd angle; then random angles and flips."""
    rng = np.random.default_rng(20240611)
    out = [
        (a, h, v)
        for a in (0.0, 90.0, 180.0, 270.0, 33.3)
        for h in (False, True)
        for v in (False, True)
    ]
    for _ in range(40):
        out.append((float(rng.uniform(0, 360)), bool(rng.random() < 0.5), bool(rng.random() < 0.5)))
    return out


def topaz_crop(window: np.ndarray, angle: float, hflip: bool, vflip: bool) -> np.ndarray:
    crop = torch.from_numpy(window.astype(np.float32))[None]
    crop = tvf.rotate(crop, angle)
    d = crop.shape[-1] - CROP
    crop = crop[..., d // 2 : d // 2 + CROP, d // 2 : d // 2 + CROP]
    if hflip:
        crop = tvf.hflip(crop)
    if vflip:
        crop = tvf.vflip(crop)
    return crop[0].numpy()


def main() -> None:
    window = np.arange(WINDOW * WINDOW, dtype=np.int16).reshape(WINDOW, WINDOW)
    table = cases()
    crops = np.stack([topaz_crop(window, a, h, v) for a, h, v in table]).astype(np.int16)
    np.savez_compressed(
        OUT,
        window=window,
        angle=np.array([a for a, _, _ in table]),
        hflip=np.array([h for _, h, _ in table]),
        vflip=np.array([v for _, _, v in table]),
        crop=crops,
    )
    print(
        f"wrote {OUT} ({len(table)} cases; torch {torch.__version__}, "
        f"torchvision {torchvision.__version__})"
    )


if __name__ == "__main__":
    main()
