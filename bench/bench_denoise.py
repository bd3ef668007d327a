"""Denoising: ``jaxpick denoise`` vs ``topaz denoise`` with the pretrained U-Net, same inputs.

Inputs: the two real EPU micrographs in ``../shared/data/real/mrcfile_testdata/``
(epu2.9_example 4096², fei-extended 3838x3710; copied as float32 MRC, since Topaz crashes on
their uint16), centre-cropped to ``--size`` unless ``--size 0`` (whole micrographs), plus
``--num-synthetic`` simulated ``--size``² micrographs (4096² when ``--size 0``). Both commands
run end to end (start-up, reading, denoising, writing) with the same cores, twice:

- **defaults vs defaults**: ``topaz denoise`` (1024 px tiles, 500 px padding) against
  ``jaxpick denoise`` (Topaz's tiles with 128 px of context on Topaz's pooling grid, scaled by
  Topaz's window statistics);
- **Topaz's tiling**: both with ``-s 1024 -p 500`` given explicitly.

jaxpick runs with an empty compilation cache (cold) and again with the cache that run filled
(warm: what every later run of the same shapes sees). Prints wall time, micrographs/s, peak RSS,
the ratio, and the largest difference between the outputs in units of each input's σ (targets:
1e-2 for defaults vs defaults, 1e-3 with Topaz's tiling).

``--forward 1024,2048`` also times one U-Net forward pass at those sizes (median of 3 after a
warm-up) in each tool's own process, and ``--precision bfloat16`` adds a jaxpick run in bf16.

Topaz takes about 195 s per 4096² micrograph on the project's 2-core CPU, so the default run is
small (one synthetic micrograph plus the two real ones, cropped to 2048²; about 15 minutes).
A full run: ``--size 0 --num-synthetic 4``.

    python -m bench.bench_denoise [--size 2048] [--num-synthetic 1] [--threads 2]
        [--modes defaults,topaz-tiling] [--forward 1024] [--json out.json]
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
from bench.harness import SHARED, machine, require_topaz, run_side

REAL = SHARED / "data" / "real" / "mrcfile_testdata"
REAL_FILES = ("epu2.9_example.mrc", "fei-extended.mrc")

# Runs `jaxpick denoise` from this module's CLI code (whether or not `jaxpick` registers it).
_JAXPICK_RUNNER = (
    "import argparse, sys\n"
    "from jaxpick.cli import denoise as d\n"
    "p = argparse.ArgumentParser(fromfile_prefix_chars='@')\n"
    "d.add_args(p)\n"
    "sys.exit(d.main(p.parse_args(sys.argv[1:])))\n"
)

_FORWARD_JAXPICK = """
import jax, numpy as np
from flax import nnx
from jaxpick.models.denoisers import resolve_denoiser
model, _ = resolve_denoiser("unet")
graphdef, state = nnx.split(model)
f = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x, compute_dtype="{precision}"))
x = jax.numpy.asarray(np.random.default_rng(0).standard_normal((1, {n}, {n}), np.float32))
t = timed(lambda: f(state, x).block_until_ready())
print(json.dumps({{**t, "peak_rss_gib": peak_rss_gib()}}))
"""

_FORWARD_TOPAZ = """
import numpy as np, torch
from topaz.denoising.models import load_model
torch.set_num_threads({threads})
model = load_model("unet")
x = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 1, {n}, {n}), np.float32))
with torch.no_grad():
    t = timed(lambda: model(x))
print(json.dumps({{**t, "peak_rss_gib": peak_rss_gib()}}))
"""


def _inputs(tmp: Path, size: int, num_synthetic: int, real_files: tuple[str, ...]) -> list[str]:
    from jaxpick.io.image import read_image
    from jaxpick.io.mrc import write_mrc
    from jaxpick.simulate import SimulationConfig, write_dataset

    paths: list[str] = []
    for name in real_files:
        path = REAL / name
        if not path.exists():
            print(f"# {path} not found; skipped")
            continue
        # Always a float32 copy: Topaz 0.3.20 crashes on uint16 (mode 6) micrographs (its
        # standardisation turns them into float64, which the network refuses).
        image = read_image(path)
        h, w = image.data.shape
        if size > 0:
            y0, x0 = max(0, (h - size) // 2), max(0, (w - size) // 2)
            crop = np.ascontiguousarray(image.data[y0 : y0 + size, x0 : x0 + size])
            out = tmp / "real" / f"{Path(name).stem}_crop{size}.mrc"
        else:
            crop = image.data
            out = tmp / "real" / f"{Path(name).stem}.mrc"
        out.parent.mkdir(parents=True, exist_ok=True)
        write_mrc(out, crop, voxel_size=image.pixel_size)
        paths.append(str(out))
    side = size if size > 0 else 4096
    if num_synthetic > 0:
        sim = SimulationConfig.preset("medium", shape=(side, side), num_particles=side // 5)
        data = write_dataset(sim, tmp / "sim", num_synthetic)
        paths += [str(p) for p in data.micrographs]
    return paths


def _max_error(inputs: list[str], ours: Path, theirs: Path) -> float:
    from jaxpick.io.image import read_image

    worst = 0.0
    for path in inputs:
        name = Path(path).stem
        sigma = float(read_image(path).data.std())
        a = read_image(ours / f"{name}.mrc").data
        b = read_image(theirs / f"{name}.mrc").data
        worst = max(worst, float(np.max(np.abs(a - b))) / sigma)
    return worst


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048, help="crop/synthetic side; 0 = whole")
    parser.add_argument("--num-synthetic", type=int, default=1)
    parser.add_argument(
        "--real", default=",".join(REAL_FILES), help="real micrographs to use ('' for none)"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--modes", default="defaults,topaz-tiling")
    parser.add_argument("--precision", default="float32", help="also bfloat16 for a bf16 run")
    parser.add_argument("--forward", default="", help="forward-pass sizes, e.g. 1024,2048")
    parser.add_argument("--topaz-venv", default=None)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    topaz = require_topaz(args.topaz_venv)
    topaz_cli = str(Path(topaz).parent / "topaz")
    jaxpick_argv = [sys.executable, "-c", _JAXPICK_RUNNER]
    results: dict[str, object] = {"machine": machine(), "runs": [], "forward": []}

    for n in (int(s) for s in args.forward.split(",") if s):
        row: dict[str, object] = {"size": n}
        row["jaxpick"] = run_side(
            sys.executable, _FORWARD_JAXPICK.format(n=n, precision="float32"), threads=args.threads
        )
        if "bfloat16" in args.precision:
            row["jaxpick_bf16"] = run_side(
                sys.executable,
                _FORWARD_JAXPICK.format(n=n, precision="bfloat16"),
                threads=args.threads,
            )
        row["topaz"] = run_side(
            topaz, _FORWARD_TOPAZ.format(n=n, threads=args.threads), threads=args.threads
        )
        ours, theirs = row["jaxpick"]["median_s"], row["topaz"]["median_s"]  # type: ignore[index]
        speedup = theirs / ours
        print(f"U-Net forward {n}²: jaxpick {ours:.2f} s, topaz {theirs:.2f} s, {speedup:.2f}x")
        results["forward"].append(row)  # type: ignore[union-attr]

    modes = [m for m in args.modes.split(",") if m]
    with tempfile.TemporaryDirectory(prefix="bench-denoise-") as tmp_name:
        if not modes:
            return _finish(results, args.json)
        tmp = Path(tmp_name)
        real = tuple(f for f in args.real.split(",") if f)
        mics = _inputs(tmp, args.size, args.num_synthetic, real)
        n = len(mics)
        print(f"{n} micrographs ({', '.join(Path(m).name for m in mics)}), {args.threads} threads")
        print(f"{'mode':<13} {'tool':<17} {'wall s':>8} {'mic/s':>7} {'peak GiB':>9} {'ratio':>7}")
        for mode in modes:
            tiling = ["-s", "1024", "-p", "500"] if mode == "topaz-tiling" else []
            row = {}
            cache = {"JAXPICK_CACHE_DIR": str(tmp / f"xla-cache-{mode}")}
            sides = [("topaz", [topaz_cli])]
            sides += [("jaxpick-cold", jaxpick_argv), ("jaxpick-warm", jaxpick_argv)]
            if "bfloat16" in args.precision:
                sides.append(("jaxpick-bf16", jaxpick_argv))
            for tool, command in sides:
                out = tmp / f"{mode}-{tool}"
                argv = [*command, "denoise"] if tool == "topaz" else list(command)
                argv += ["-d", "-1", "-j", str(args.threads), "-o", str(out), *tiling, *mics]
                if tool == "jaxpick-bf16":
                    argv += ["--precision", "bfloat16"]
                row[tool] = run_command(argv, args.threads, cache)
                if tool != "topaz" and tool != "jaxpick-warm":
                    row[tool]["max_error_sigma"] = _max_error(mics, out, tmp / f"{mode}-topaz")
                if tool not in ("topaz", "jaxpick-cold"):
                    shutil.rmtree(out, ignore_errors=True)
            for tool, r in row.items():
                r["ratio"] = row["topaz"]["wall_s"] / r["wall_s"]
                error = r.get("max_error_sigma")
                note = "" if error is None else f"  max |diff| = {error:.1e} σ"
                print(
                    f"{mode:<13} {tool:<17} {r['wall_s']:>8.1f} {n / r['wall_s']:>7.3f} "
                    f"{r['peak_rss_gib']:>9.2f} {r['ratio']:>6.2f}x{note}"
                )
            results["runs"].append({"mode": mode, "n": n, **row})  # type: ignore[union-attr]
    return _finish(results, args.json)


def _finish(results: dict[str, object], path: str | None) -> int:
    if path:
        Path(path).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
