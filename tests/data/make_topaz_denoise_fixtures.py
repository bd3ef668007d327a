"""Regenerates ``tests/data/topaz_denoise.npz``: Topaz's denoiser outputs for the parity tests.

Run with a Python environment that has Topaz and torch (jaxpick is not needed), from the
repository root::

    /path/to/topaz-venv/bin/python tests/data/make_topaz_denoise_fixtures.py

Produced with topaz-em 0.3.20 and torch 2.13 (CPU, 2 threads). ``tests/models/test_unet.py`` and
``tests/test_denoise.py`` compare jaxpick with this file, so the tests never need torch.

Inputs are stored as float16 values (exact in float32) to keep the file small; Topaz gets them
as float32. Keys:

* ``spec_{name}_center``, ``spec_{name}_mean`` (2-D) and ``spec_{name}_center`` (3-D): the raw
  network output of each of the seven pretrained denoisers on spec 6.1's inputs (``z`` = the
  128x128 map ``f(i, j) = float32(sin(0.1 i) cos(0.07 j) + 0.01 ((31 i + 17 j) mod 13))``
  standardised with torch's mean and unbiased std; 3-D: ``v[k, i, j] = f(i, j) (k + 1) / 8``,
  32^3, standardised), at ``[64, 64]`` / ``[16, 16, 16]``; the tests rebuild the inputs.
* ``net_input`` (40x52, standardised) and ``net_{name}``: the raw network output of each 2-D
  pretrained denoiser on it (odd sizes at every U-Net level).
* ``image`` (92x68, raw units, mean ~7, std ~3) and, with ``topaz.denoise.denoise_image``:
  ``tiled_unet`` (unet, patch 40, padding 20: clipped border windows of six shapes);
  ``combo`` (models [unet-small, affine] averaged, pixel cutoff 2.5, Gaussian σ 1.5,
  normalize, whole image); ``lowpass`` (``topaz.denoise.lowpass(net_input, 2.5)``).
* ``volume`` (16x20x18, raw units) and ``tiled3d_{10a,20a}``: ``Denoise3D.denoise`` with
  unet-3d-10a (patch 12, padding 10) and unet-3d-20a (patch 16, padding 8): 32^3 cubes reaching
  outside the volume.
* ``sav_{name}``: whole pickled modules as ``topaz denoise --save-prefix`` writes them
  (``torch.save(model)``, zip format), small and seeded: ``small`` (UDenoiseNetSmall nf=4,
  width 5, top width 1), ``fcnn`` (DenoiseNet2 4 filters, width 3), ``affine`` (AffineDenoise
  5), ``unet3d`` (UDenoiseNet3D nf=2, base 3, top 1); ``sav_{name}_out``: their raw outputs on
  ``net_input`` (2-D) or on the 3-D spec input (its central slice ``[16]``).
* ``real_*``: Topaz's *default* command (``denoise_image`` with patch 1024, padding 500) on a
  1600x1600 crop (``real_origin`` = top-left (y, x)) of
  ``../shared/data/real/mrcfile_testdata/epu2.9_example.mrc`` (``real_sha256``), as float32:
  ``real_samples`` = the output at ``real_rows`` x ``real_cols`` (a 50-pixel grid through the
  window seams and borders); ``real_std``, ``real_mean`` = the input crop's std and mean.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import torch
from topaz.denoise import Denoise, Denoise3D, denoise_image, lowpass
from topaz.denoising.models import (
    DenoiseNet2,
    UDenoiseNet3D,
    UDenoiseNetSmall,
    load_model,
)
from topaz.filters import AffineDenoise, GaussianDenoise

HERE = Path(__file__).resolve().parent
OUT = HERE / "topaz_denoise.npz"
REAL = HERE.parents[2] / "shared/data/real/mrcfile_testdata/epu2.9_example.mrc"
MODELS_2D = ("unet", "unet-v0.2.1", "unet-small", "fcnn", "affine")
MODELS_3D = ("unet-3d-10a", "unet-3d-20a")


def f(n: int, m: int) -> np.ndarray:
    i, j = np.meshgrid(np.arange(n), np.arange(m), indexing="ij")
    return (np.sin(0.1 * i) * np.cos(0.07 * j) + 0.01 * ((31 * i + 17 * j) % 13)).astype(np.float32)


def standardized(x: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(x)
    return (t - t.mean()) / t.std()


@torch.no_grad()
def raw(model: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    model.eval()
    return model(x[None, None])[0, 0].numpy()


def f16(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float16).astype(np.float32)


def saved(model: torch.nn.Module) -> np.ndarray:
    buffer = io.BytesIO()
    torch.save(model, buffer)
    return np.frombuffer(buffer.getvalue(), dtype=np.uint8)


def main() -> None:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    out: dict[str, np.ndarray] = {}

    z = standardized(f(128, 128))
    for name in MODELS_2D:
        y = raw(load_model(name), z)
        out[f"spec_{name}_center"] = np.float32(y[64, 64])
        out[f"spec_{name}_mean"] = np.float32(y.mean())
    v = standardized(np.stack([f(32, 32) * (k + 1) / 8 for k in range(32)]))
    for name in MODELS_3D:
        out[f"spec_{name}_center"] = np.float32(raw(load_model(name), v)[16, 16, 16])

    # A smooth random field plus noise: structure at several scales, like a micrograph.
    base = rng.standard_normal((40, 52)).astype(np.float32)
    smooth = np.cumsum(np.cumsum(rng.standard_normal((40, 52)), 0), 1) / 20
    net_input = f16(((base + smooth) - (base + smooth).mean()) / (base + smooth).std())
    out["net_input"] = net_input.astype(np.float16)
    for name in MODELS_2D:
        out[f"net_{name}"] = raw(load_model(name), torch.from_numpy(net_input))

    image = rng.standard_normal((92, 68)).astype(np.float32) * 3 + 7
    image[30:50, 20:40] += 4  # an edge for the filters
    image = f16(image)
    out["image"] = image.astype(np.float16)
    unet, small, affine = Denoise("unet"), Denoise("unet-small"), Denoise("affine")
    out["tiled_unet"] = denoise_image(image.copy(), [unet], patch_size=40, padding=20)
    out["combo"] = denoise_image(
        image.copy(),
        [small, affine],
        cutoff=2.5,
        gaus=GaussianDenoise(1.5),
        patch_size=-1,
        normalize=True,
    )
    out["lowpass"] = lowpass(net_input.copy(), 2.5)

    volume = rng.standard_normal((16, 20, 18)).astype(np.float32) * 2 + 1
    volume[5:12, 6:14, 4:10] += 3
    volume = f16(volume)
    out["volume"] = volume.astype(np.float16)
    for name, patch, padding in (("10a", 12, 10), ("20a", 16, 8)):
        d3 = Denoise3D(f"unet-3d-{name}", dims=3)
        out[f"tiled3d_{name}"] = d3.denoise(
            volume.copy(), patch_size=patch, padding=padding, verbose=False
        )

    modules = {
        "small": UDenoiseNetSmall(nf=4, width=5, top_width=1),
        "fcnn": DenoiseNet2(4, width=3),
        "affine": AffineDenoise(max_size=5),
        "unet3d": UDenoiseNet3D(nf=2, base_width=3, top_width=1),
    }
    with torch.no_grad():
        modules["affine"].filter.weight.normal_(0, 0.1)
        modules["affine"].filter.bias.fill_(0.05)
    for name, module in modules.items():
        module.eval()
        out[f"sav_{name}"] = saved(module)
        if name == "unet3d":
            out[f"sav_{name}_out"] = raw(module, v)[16]
        else:
            out[f"sav_{name}_out"] = raw(module, torch.from_numpy(net_input))

    if REAL.exists():
        from topaz.utils.data.loader import load_image

        mic, _header, _extended = load_image(str(REAL), make_image=False)
        y0, x0 = 1248, 1248
        crop = np.ascontiguousarray(mic[y0 : y0 + 1600, x0 : x0 + 1600].astype(np.float32))
        denoised = denoise_image(crop.copy(), [unet], patch_size=1024, padding=500)
        rows = np.arange(0, 1600, 50)
        rows = np.unique(np.concatenate([rows, [1, 523, 524, 1023, 1024, 1523, 1524, 1598, 1599]]))
        out["real_origin"] = np.array([y0, x0])
        out["real_rows"] = rows
        out["real_cols"] = rows
        out["real_samples"] = denoised[np.ix_(rows, rows)].astype(np.float32)
        out["real_std"] = np.float32(crop.std())
        out["real_mean"] = np.float32(crop.mean())
        out["real_sha256"] = np.array(hashlib.sha256(REAL.read_bytes()).hexdigest())

    np.savez_compressed(OUT, **out)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
