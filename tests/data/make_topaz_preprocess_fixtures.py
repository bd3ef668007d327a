"""Regenerates ``topaz_preprocess.npz``: Topaz's downsampling and normalisation outputs.

Run with a Python environment that has Topaz installed (it needs topaz, torch, numpy, scipy;
jaxpick is not needed), from the repository root::

    /path/to/topaz-venv/bin/python tests/data/make_topaz_preprocess_fixtures.py

The stored values were produced with topaz-em 0.3.20, torch 2.13 (CPU), numpy 2.4 and
scipy 1.17. ``tests/ops/test_resample.py`` and ``tests/ops/test_normalize.py`` compare jaxpick
with them, so the tests never need torch or Topaz.

Contents (``i`` = image number, ``f`` = downsampling factor):

* ``image{i}``: the float32 input images (seeded numpy, see `make_images`);
* ``down{i}_f{f}``: ``topaz.utils.image.downsample(image, f)`` for f in 2, 3, 4;
* ``gmm{i}_{key}``: ``topaz.stats.normalize(image, sample=1)`` metadata (mu, std, pi, logp,
  mus, stds, pis, logps) and ``gmm{i}_out``, the normalised image;
* ``affine{i}_mu``, ``affine{i}_std``, ``affine{i}_out``: the same with ``method="affine"``;
* ``{case}_{key}`` for the extra cases in `EXTRA_CASES` (other niters / alpha / beta).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import scipy
import topaz
import torch
from topaz.stats import normalize
from topaz.utils.image import downsample

OUT = Path(__file__).resolve().parent / "topaz_preprocess.npz"
FACTORS = (2, 3, 4)
GMM_KEYS = ("mu", "std", "pi", "logp", "mus", "stds", "pis", "logps")
# name -> (image index, normalize keyword arguments)
EXTRA_CASES = {
    "niters3": (3, {"num_iters": 3}),
    "niters0": (3, {"num_iters": 0}),
    "alpha2beta2": (1, {"alpha": 2.0, "beta": 2.0}),
    "alpha50": (2, {"alpha": 50.0, "beta": 1.0, "num_iters": 20}),
}


def make_images() -> list[np.ndarray]:
    """Four small float32 test images with different statistics (all seeded)."""
    rng = np.random.default_rng(20240611)
    images = []
    h, w = 96, 128
    i, j = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")

    def disks(count: int, radius: float) -> np.ndarray:
        mask = np.zeros((h, w), bool)
        for cy, cx in rng.uniform([8, 8], [h - 8, w - 8], size=(count, 2)):
            mask |= ((i - cy) ** 2 + (j - cx) ** 2) <= radius**2
        return mask

    # 0: 96 x 128, a clear two-component mixture: dark particle disks well below noisy ice.
    # EM converges in a few tens of iterations and all initialisations agree.
    image = 5.0 + 0.3 * np.sin(i / 17.0) * np.cos(j / 23.0) + 0.4 * rng.standard_normal((h, w))
    image -= 3.0 * disks(14, 6.0)
    images.append(image.astype(np.float32))

    # 1: 130 x 100 heavy-tailed noise around a negative mean (odd height, nearly one mode).
    image = -2.0 + 0.7 * rng.standard_t(df=5, size=(130, 100))
    images.append(image.astype(np.float32))

    # 2: 96 x 128 photon counts (integers stored as float32: many tied values, which exercises
    # the quantile split of the initialisation), with a brighter band (carbon edge).
    image = rng.poisson(np.where(j > 90, 30.0, 20.0)).astype(np.float32)
    images.append(image)

    # 3: 96 x 128, overlapping components (dark disks only 3.75 noise sigmas deep, fighting the
    # Beta(900, 1) prior): EM creeps, so where each initialisation stops depends on float32
    # rounding of the log-likelihood (its spacing there is about tol = 1e-3).
    image = 5.0 + 0.3 * np.sin(i / 17.0) * np.cos(j / 23.0) + 0.4 * rng.standard_normal((h, w))
    image -= 1.5 * disks(12, 6.0)
    images.append(image.astype(np.float32))
    return images


def main() -> None:
    data: dict[str, np.ndarray] = {}
    images = make_images()
    for index, image in enumerate(images):
        data[f"image{index}"] = image
        for factor in FACTORS:
            data[f"down{index}_f{factor}"] = downsample(image, factor)
        out, meta = normalize(image.copy(), sample=1)
        for key in GMM_KEYS:
            data[f"gmm{index}_{key}"] = np.asarray(meta[key], np.float64)
        data[f"gmm{index}_out"] = out
        out, meta = normalize(image.copy(), method="affine")
        data[f"affine{index}_mu"] = np.float64(meta["mu"])
        data[f"affine{index}_std"] = np.float64(meta["std"])
        data[f"affine{index}_out"] = out
    for name, (index, kwargs) in EXTRA_CASES.items():
        out, meta = normalize(images[index].copy(), sample=1, **kwargs)
        for key in GMM_KEYS:
            data[f"{name}_{key}"] = np.asarray(meta[key], np.float64)
    data["versions"] = np.array(
        f"topaz {topaz.__version__}, torch {torch.__version__}, numpy {np.__version__}, "
        f"scipy {scipy.__version__}, python {sys.version.split()[0]}"
    )
    np.savez_compressed(OUT, **data)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
