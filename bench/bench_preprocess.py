"""Preprocessing: ``jaxpick preprocess`` vs ``topaz preprocess`` on the same micrographs.

Runs both commands end to end (start-up, reading, downsampling, GMM normalisation, writing) on
N synthetic 4096² float32 micrographs plus the real 4096² EPU micrograph, at each scale, with the
same cores; prints micrographs/s, wall time, peak RSS of each command and the ratio. Then runs
both with --sample 1 (no random subsampling) on a few micrographs and reports the largest
difference between their normalised outputs (target: within 1e-3).

    python -m bench.bench_preprocess [--num-synthetic 16] [--scales 4,8] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.harness import SHARED, machine, require_topaz


def run_command(
    argv: list[str], threads: int, extra_env: dict[str, str] | None = None
) -> dict[str, float]:
    """Runs a command; returns its wall time and peak RSS (GiB), from the child's rusage."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env.update(extra_env or {})
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    out, err = proc.communicate()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(argv[:3])} failed:\n{err.decode()[-3000:]}")
    return {"wall_s": wall, "peak_rss_gib": usage.ru_maxrss / 2**20}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-synthetic", type=int, default=16)
    parser.add_argument("--scales", default="4,8")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--parity-files", type=int, default=3)
    parser.add_argument("--topaz-venv", default=None)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    topaz = require_topaz(args.topaz_venv)
    topaz_cli = str(Path(topaz).parent / "topaz")
    jaxpick_cli = str(Path(sys.executable).parent / "jaxpick")
    epu = SHARED / "data" / "real" / "mrcfile_testdata" / "epu2.9_example.mrc"

    from jaxpick.io.image import read_image
    from jaxpick.simulate import SimulationConfig, write_dataset

    results: dict[str, object] = {"machine": machine(), "runs": []}
    with tempfile.TemporaryDirectory(prefix="bench-preprocess-") as tmp_name:
        tmp = Path(tmp_name)
        sim = SimulationConfig.preset("medium", shape=(4096, 4096), num_particles=800)
        mics = [str(p) for p in write_dataset(sim, tmp / "sim", args.num_synthetic).micrographs]
        if epu.exists():
            mics.append(str(epu))
        n = len(mics)
        print(
            f"{n} micrographs 4096² ({args.num_synthetic} synthetic float32"
            f"{', 1 real EPU uint16' if epu.exists() else ''}), {args.threads} threads"
        )
        print(f"{'scale':>5} {'tool':<13} {'wall s':>8} {'mic/s':>7} {'peak GiB':>9} {'ratio':>7}")
        for scale in (int(s) for s in args.scales.split(",")):
            row = {}
            # jaxpick twice: with an empty compilation cache (a first run: compiling included)
            # and again with the cache that run filled (every later run of the same shapes).
            cache = {"JAXPICK_CACHE_DIR": str(tmp / f"xla-cache-{scale}")}
            sides = (("jaxpick-cold", jaxpick_cli), ("jaxpick-warm", jaxpick_cli))
            for tool, cli in (*sides, ("topaz", topaz_cli)):
                out = tmp / f"{tool}-{scale}"
                argv = [cli, "preprocess", "-s", str(scale), "-o", str(out), *mics]
                if tool == "topaz":
                    argv += ["-d", "-1", "-j", str(args.threads)]
                else:
                    argv += ["-j", str(args.threads)]
                row[tool] = run_command(argv, args.threads, cache)
                shutil.rmtree(out, ignore_errors=True)
            for tool in row:
                r = row[tool]
                r["ratio"] = row["topaz"]["wall_s"] / r["wall_s"]
                print(
                    f"{scale:>5} {tool:<13} {r['wall_s']:>8.2f} {n / r['wall_s']:>7.2f} "
                    f"{r['peak_rss_gib']:>9.2f} {r['ratio']:>6.2f}x"
                )
            # Steady state (what 10^4 micrographs see): the same commands on one micrograph
            # give each tool's fixed cost (start-up, imports); the rest is per micrograph.
            marginal = {}
            for tool, cli in (("jaxpick-warm", jaxpick_cli), ("topaz", topaz_cli)):
                out = tmp / f"{tool}-{scale}-one"
                argv = [cli, "preprocess", "-s", str(scale), "-o", str(out), mics[0]]
                argv += ["-d", "-1"] if tool == "topaz" else []
                one = run_command([*argv, "-j", str(args.threads)], args.threads, cache)
                shutil.rmtree(out, ignore_errors=True)
                marginal[tool] = (row[tool]["wall_s"] - one["wall_s"]) / (n - 1)
                row[tool]["one_micrograph_wall_s"] = one["wall_s"]
                row[tool]["steady_s_per_micrograph"] = marginal[tool]
            steady = marginal["topaz"] / marginal["jaxpick-warm"]
            print(
                f"{scale:>5} steady state: jaxpick {marginal['jaxpick-warm']:.3f} s/mic, "
                f"topaz {marginal['topaz']:.3f} s/mic, {steady:.2f}x"
            )
            results["runs"].append({"scale": scale, "n": n, **row, "steady_ratio": steady})

        # Parity: same inputs, no subsampling on either side.
        subset = mics[: args.parity_files] + ([str(epu)] if epu.exists() else [])
        worst = 0.0
        for tool, cli in (("jaxpick", jaxpick_cli), ("topaz", topaz_cli)):
            argv = [
                cli,
                "preprocess",
                "-s",
                "4",
                "--sample",
                "1",
                "-o",
                str(tmp / f"p-{tool}"),
                *subset,
            ]
            run_command(argv + ["-j", str(args.threads)], args.threads)
        for path in subset:
            name = Path(path).stem
            ours = read_image(tmp / "p-jaxpick" / f"{name}.mrc").data
            theirs = read_image(tmp / "p-topaz" / f"{name}.mrc").data
            worst = max(worst, float(np.max(np.abs(ours - theirs))))
        print(
            f"parity (--sample 1, -s 4, {len(subset)} micrographs): "
            f"max |jaxpick - topaz| = {worst:.2e}"
        )
        results["parity_max_abs_diff"] = worst
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
