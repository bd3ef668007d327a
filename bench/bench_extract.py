"""Extraction: ``jaxpick extract`` vs ``topaz extract`` on the same preprocessed micrographs.

Simulates N micrographs, preprocesses them to 1024² with ``jaxpick preprocess`` (both tools
then read the same files), and runs both extract commands end to end (start-up, reading, dense
scoring, NMS, writing) with each pretrained model at radius R, with the same cores. jaxpick runs
twice: with an empty compilation cache and with the cache that run filled. Prints wall time,
micrographs/s, peak RSS, the ratio, and whether the picks agree.

    python -m bench.bench_extract [--num 8] [--models resnet8_u32,resnet16_u64] [--radius 14]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench.bench_preprocess import run_command
from bench.harness import machine, require_topaz


def _picks(path: Path) -> set[tuple[str, int, int]]:
    from jaxpick.io.coords import read_coordinates

    table = read_coordinates(path, "coord")
    return set(zip(table.image_name, table.x.astype(int), table.y.astype(int), strict=True))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=8)
    parser.add_argument("--models", default="resnet8_u32,resnet16_u64")
    parser.add_argument("--radius", type=int, default=14)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precisions", default="float32")
    parser.add_argument("--topaz-venv", default=None)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    topaz = require_topaz(args.topaz_venv)
    topaz_cli = str(Path(topaz).parent / "topaz")
    jaxpick_cli = str(Path(sys.executable).parent / "jaxpick")
    from jaxpick.simulate import SimulationConfig, write_dataset

    results: dict[str, object] = {"machine": machine(), "runs": []}
    with tempfile.TemporaryDirectory(prefix="bench-extract-") as tmp_name:
        tmp = Path(tmp_name)
        sim = SimulationConfig.preset("medium", shape=(4096, 4096), num_particles=800)
        raw = [str(p) for p in write_dataset(sim, tmp / "sim", args.num).micrographs]
        run_command(
            [jaxpick_cli, "preprocess", "-s", "4", "-o", str(tmp / "pre"), *raw], args.threads
        )
        mics = sorted(str(p) for p in (tmp / "pre").glob("*.mrc"))
        n = len(mics)
        print(f"{n} micrographs 1024² (preprocessed), radius {args.radius}, {args.threads} threads")
        print(f"{'model':<13} {'tool':<22} {'wall s':>8} {'mic/s':>7} {'peak GiB':>9} {'ratio':>7}")
        for model in args.models.split(","):
            row: dict[str, dict[str, float]] = {}
            common = ["extract", "-m", model, "-r", str(args.radius), "-d", "-1"]
            topaz_out = tmp / f"topaz-{model}.txt"
            row["topaz"] = run_command(
                [topaz_cli, *common, "-o", str(topaz_out), *mics], args.threads
            )
            agree = {}
            for precision in args.precisions.split(","):
                cache = {"JAXPICK_CACHE_DIR": str(tmp / f"xla-{model}-{precision}")}
                for phase in ("cold", "warm"):
                    out = tmp / f"jaxpick-{model}-{precision}-{phase}.txt"
                    argv = [jaxpick_cli, *common, "--precision", precision, "-o", str(out)]
                    row[f"jaxpick-{precision}-{phase}"] = run_command(
                        [*argv, "-j", str(args.threads), *mics], args.threads, cache
                    )
                ours, theirs = _picks(out), _picks(topaz_out)
                agree[precision] = len(ours & theirs) / max(1, len(ours | theirs))
            for tool, r in row.items():
                r["ratio"] = row["topaz"]["wall_s"] / r["wall_s"]
                print(
                    f"{model:<13} {tool:<22} {r['wall_s']:>8.2f} {n / r['wall_s']:>7.3f} "
                    f"{r['peak_rss_gib']:>9.2f} {r['ratio']:>6.2f}x"
                )
            for precision, fraction in agree.items():
                print(f"{model:<13} picks identical to Topaz ({precision}): {100 * fraction:.2f}%")
            results["runs"].append({"model": model, "n": n, **row, "agreement": agree})
        shutil.rmtree(tmp / "sim", ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=float))
    return 0


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    sys.exit(main())
