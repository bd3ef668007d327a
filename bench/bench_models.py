"""Dense scoring of a whole micrograph: jaxpick (float32, bfloat16) vs Topaz, same weights.

For each pretrained detector (default resnet8_u32 and resnet16_u64, read from the topaz-em
package installed in the Topaz venv), scores one N x N float32 image (default 1024²):

- Topaz: ``load_model(name)``, ``eval()``, ``fill()``, ``model(x)`` under ``no_grad`` (what
  ``topaz extract`` does per micrograph);
- jaxpick: the same weights through :func:`jaxpick.checkpoint.resolve_model`, one ``jax.jit``
  of the dense forward pass per compute dtype; lowering + compilation timed apart from the runs.

Each side runs in its own fresh process with the same thread count; reported: median and min of
``--repeats`` runs after one warm-up, compile time, peak RSS of the process, XLA's temporary
buffer size, and the largest difference of the score map from Topaz's.

    python -m bench.bench_models [--size 1024] [--models resnet8_u32,resnet16_u64]
        [--dtypes float32,bfloat16] [--repeats 3] [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench.harness import REPO, machine, require_topaz, run_side

_TOPAZ_SIDE = """
import numpy as np, torch
torch.set_num_threads({threads})
from topaz.model.factory import load_model
model = load_model({name!r})
model.eval()
model.fill()
x = torch.from_numpy(np.load({image!r}))[None, None]
with torch.no_grad():
    stats = timed(lambda: model(x), repeats={repeats})
    np.save({out!r}, model(x)[0, 0].numpy())
stats["peak_rss_gib"] = peak_rss_gib()
print(json.dumps(stats))
"""

_JAXPICK_SIDE = """
import sys
sys.path.insert(0, {repo!r})
import numpy as np, jax
from flax import nnx
from jaxpick.checkpoint import resolve_model
model, config = resolve_model({name!r})
graphdef, state = nnx.split(model)
score = jax.jit(lambda state, x: nnx.merge(graphdef, state)(x, dense=True,
                                                            compute_dtype={dtype!r}))
x = jax.numpy.asarray(np.load({image!r}))[None]
t0 = time.perf_counter()
compiled = score.lower(state, x).compile()
compile_s = time.perf_counter() - t0
stats = timed(lambda: compiled(state, x).block_until_ready(), repeats={repeats})
np.save({out!r}, np.asarray(compiled(state, x))[0])
stats["compile_s"] = compile_s
memory = compiled.memory_analysis()
stats["xla_temp_gib"] = None if memory is None else memory.temp_size_in_bytes / 2**30
stats["peak_rss_gib"] = peak_rss_gib()
stats["device"] = jax.devices()[0].device_kind
print(json.dumps(stats))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--models", default="resnet8_u32,resnet16_u64")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--topaz-venv", default=None)
    parser.add_argument("--no-topaz", action="store_true", help="time jaxpick only")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    topaz = None if args.no_topaz else require_topaz(args.topaz_venv)
    results: dict[str, object] = {"machine": machine(), "size": args.size, "runs": []}
    runs: list[dict[str, object]] = results["runs"]  # type: ignore[assignment]
    print(f"dense scoring of one {args.size}² float32 image, {args.threads} threads")
    print(
        f"{'model':<13} {'side':<17} {'median s':>9} {'min s':>7} {'compile s':>9} "
        f"{'peak GiB':>8} {'max|diff|':>10} {'vs Topaz':>9}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-models-") as tmp_name:
        tmp = Path(tmp_name)
        image = tmp / "image.npy"
        rng = np.random.default_rng(0)
        np.save(image, rng.standard_normal((args.size, args.size), dtype=np.float32))
        for name in args.models.split(","):
            reference = None
            topaz_median = None
            if topaz is not None:
                out = tmp / f"topaz-{name}.npy"
                code = _TOPAZ_SIDE.format(
                    threads=args.threads,
                    name=name,
                    image=str(image),
                    out=str(out),
                    repeats=args.repeats,
                )
                stats = run_side(topaz, code, threads=args.threads)
                reference = np.load(out)
                topaz_median = stats["median_s"]
                runs.append({"model": name, "side": "topaz", **stats})
                print(
                    f"{name:<13} {'topaz (torch)':<17} {stats['median_s']:>9.3f} "
                    f"{stats['min_s']:>7.3f} {'':>9} {stats['peak_rss_gib']:>8.2f}"
                )
            for dtype in args.dtypes.split(","):
                out = tmp / f"jaxpick-{name}-{dtype}.npy"
                code = _JAXPICK_SIDE.format(
                    repo=str(REPO),
                    name=name,
                    dtype=dtype,
                    image=str(image),
                    out=str(out),
                    repeats=args.repeats,
                )
                stats = run_side(sys.executable, code, threads=args.threads)
                diff = None if reference is None else float(np.abs(np.load(out) - reference).max())
                ratio = None if topaz_median is None else topaz_median / stats["median_s"]
                runs.append(
                    {"model": name, "side": f"jaxpick-{dtype}", **stats, "max_abs_diff": diff}
                )
                print(
                    f"{name:<13} {'jaxpick ' + dtype:<17} {stats['median_s']:>9.3f} "
                    f"{stats['min_s']:>7.3f} {stats['compile_s']:>9.2f} "
                    f"{stats['peak_rss_gib']:>8.2f} "
                    f"{'' if diff is None else f'{diff:.1e}':>10} "
                    f"{'' if ratio is None else f'{ratio:.2f}x':>9}"
                )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
