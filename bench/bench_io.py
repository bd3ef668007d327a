"""File I/O: jaxpick vs Topaz reading micrographs, writing MRC, and converting coordinates.

Same inputs, same 2 threads, one fresh process per side; prints median times, the ratio
(Topaz time / jaxpick time, > 1 means jaxpick is faster) and each side's peak RSS.

Inputs: the two real EPU micrographs in ../shared/data/real/mrcfile_testdata (uint16, FEI
extended headers), N synthetic 4096² float32 MRC micrographs, and the 1500 Topaz tutorial picks
(RELION STAR and Topaz .txt).

    python -m bench.bench_io [--num-synthetic 4] [--topaz-venv ../.venv-topaz] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from bench.harness import SHARED, machine, require_topaz, run_side

JAXPICK_SIDE = """
import numpy as np
from jaxpick.io.image import read_image, write_image
from jaxpick.io.coords import read_coordinates, write_coordinates
mics, star, txt, out = {mics!r}, {star!r}, {txt!r}, {out!r}
res = {{}}
res["read_mrc"] = timed(lambda: [read_image(p).data for p in mics])
arr = read_image(mics[-1]).data
res["write_mrc"] = timed(lambda: write_image(out + "/j.mrc", arr, pixel_size=1.0))
def convert():
    write_coordinates(read_coordinates(star), out + "/j.txt")
    write_coordinates(read_coordinates(txt), out + "/j.star")
res["convert_coords"] = timed(convert, repeats=5)
res["peak_rss_gib"] = peak_rss_gib()
print(json.dumps(res))
"""

TOPAZ_SIDE = """
import numpy as np
from topaz.utils.data.loader import load_mrc
from topaz import mrc
from topaz.utils.files import read_coordinates, write_coordinates
mics, star, txt, out = {mics!r}, {star!r}, {txt!r}, {out!r}
res = {{}}
# Topaz returns the stored dtype; jaxpick returns float32, so convert for a like-for-like read.
res["read_mrc"] = timed(lambda: [load_mrc(p)[0].astype(np.float32) for p in mics])
arr = load_mrc(mics[-1])[0].astype(np.float32)
def write():
    # Topaz's writer wants 3-D arrays (its own callers add the axis).
    with open(out + "/t.mrc", "wb") as f:
        mrc.write(f, arr[None])
res["write_mrc"] = timed(write)
def convert():
    write_coordinates(out + "/t.txt", read_coordinates(star))
    write_coordinates(out + "/t.star", read_coordinates(txt))
res["convert_coords"] = timed(convert, repeats=5)
res["peak_rss_gib"] = peak_rss_gib()
print(json.dumps(res))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-synthetic", type=int, default=4)
    parser.add_argument("--topaz-venv", default=None)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    real = SHARED / "data" / "real"
    epu = [real / "mrcfile_testdata" / n for n in ("epu2.9_example.mrc", "fei-extended.mrc")]
    labels = real / "topaz_empiar10025_labels"
    if not all(p.exists() for p in epu):
        print(f"real micrographs not found under {real}", file=sys.stderr)
        return 1
    topaz = require_topaz(args.topaz_venv)

    from jaxpick.simulate import SimulationConfig, write_dataset

    with tempfile.TemporaryDirectory(prefix="bench-io-") as tmp:
        sim = SimulationConfig.preset("easy", shape=(4096, 4096), num_particles=400)
        synthetic = write_dataset(sim, Path(tmp) / "sim", args.num_synthetic).micrographs
        mics = [str(p) for p in (*epu, *synthetic)]
        fmt = {
            "mics": mics,
            "star": str(labels / "particles.star"),
            "txt": str(labels / "particles.txt"),
            "out": tmp,
        }
        ours = run_side(sys.executable, JAXPICK_SIDE.format(**fmt))
        theirs = run_side(topaz, TOPAZ_SIDE.format(**fmt))

    print(
        f"inputs: {len(mics)} micrographs (2 real EPU uint16 ~4k², {args.num_synthetic} "
        "synthetic 4096² float32); 1500 picks STAR->txt and txt->STAR"
    )
    print(f"{'operation':<16} {'jaxpick s':>10} {'Topaz s':>10} {'ratio':>7}")
    for op in ("read_mrc", "write_mrc", "convert_coords"):
        j, t = ours[op]["median_s"], theirs[op]["median_s"]
        print(f"{op:<16} {j:>10.4f} {t:>10.4f} {t / j:>6.2f}x")
    print(f"{'peak RSS GiB':<16} {ours['peak_rss_gib']:>10.2f} {theirs['peak_rss_gib']:>10.2f}")
    report = {"machine": machine(), "jaxpick": ours, "topaz": theirs, "inputs": len(mics)}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
