"""Makes ``topaz_extract.npz``: Topaz's picks on the parity crop with each pretrained detector.

Run with the Topaz reference venv (topaz-em 0.3.20):

    /work/.venv-topaz/bin/python tests/data/make_topaz_extract_fixtures.py

Input: the normalised 96x112 crop stored in ``topaz_models.npz`` (``input``). For each of the
four pretrained detectors and radii 3 and 8 it runs ``topaz extract -d -1 -t -6`` and stores
the picks (x, y, score). Topaz's NMS wraps suppression across rows at the right and bottom
edges; the test says where that matters.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
TOPAZ = Path(sys.executable).parent / "topaz"
MODELS = ("resnet8_u32", "resnet8_u64", "resnet16_u32", "resnet16_u64")
RADII = (3, 8)


def main() -> None:
    image = np.load(HERE / "topaz_models.npz")["input"].astype(np.float32)
    out: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmp:
        mic = Path(tmp) / "crop.mrc"
        with mrcfile.new(mic) as f:
            f.set_data(image)
        for model in MODELS:
            for radius in RADII:
                picks = Path(tmp) / f"{model}_{radius}.txt"
                subprocess.run(
                    [
                        str(TOPAZ),
                        "extract",
                        "-m",
                        model,
                        "-r",
                        str(radius),
                        "-t",
                        "-6",
                        "-d",
                        "-1",
                        "-o",
                        str(picks),
                        str(mic),
                    ],
                    check=True,
                    capture_output=True,
                )
                table = pd.read_csv(picks, sep="\t")
                out[f"{model}_r{radius}"] = table[["x_coord", "y_coord", "score"]].to_numpy(
                    np.float64
                )
    np.savez_compressed(HERE / "topaz_extract.npz", **out)
    print({k: v.shape for k, v in out.items()})


if __name__ == "__main__":
    main()
