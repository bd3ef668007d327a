"""NMS: jaxpick's exact XLA ``nms`` vs Topaz's ``non_maximum_suppression``, same score maps.

Score maps are smooth random fields (Gaussian-blurred white noise scaled like detector logits,
about 75% of pixels above -6), so at ``-t -6`` NMS makes Topaz-like numbers of picks: hundreds
to thousands. For each radius this times

* Topaz itself, in its reference venv (a fresh process, when ``../.venv-topaz`` exists);
* ``topaz_nms``, our NumPy transcription of Topaz's algorithm, in this process;
* jaxpick ``nms`` with each implementation in ``--implementations`` (default: ``cpu``, the
  native FFI kernel that ``nms`` uses on CPUs, and ``xla``, the pure-XLA one that it uses on
  GPUs and TPUs): lowering and compilation apart, then the median of ``--repeats`` calls under
  ``block_until_ready``;

and prints the speed-up over Topaz and whether the picks agree. They agree except where
Topaz's edge wrap-around bug (spec 4.2) suppresses a pixel in column 0; the first such
difference is reported.

    python -m bench.bench_nms [--size 1024] [--radii 7,14] [--threshold -6] [--repeats 7]
                              [--implementations cpu,xla]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from bench.harness import machine, run_side, topaz_python
from jaxpick.kernels.nms import cpu_ffi, nms, topaz_nms

# Runs Topaz's own function on a saved map; prints its timing and its picks.
_TOPAZ_SIDE = """
import numpy as np
from topaz.algorithms import non_maximum_suppression
x = np.load({path!r})
result = {{}}
def call():
    result["out"] = non_maximum_suppression(x, {radius}, threshold={threshold})
times = timed(call, repeats={repeats}, warmup=0)
scores, coords = result["out"]
print(json.dumps({{**times, "scores": scores.tolist(), "coords": coords.tolist()}}))
"""


def smooth_field(size: int, sigma: float, seed: int) -> np.ndarray:
    """A logit-like score map: Gaussian-blurred white noise, many broad peaks."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((size, size))
    freqs = np.fft.fftfreq(size)
    gain = np.exp(-2 * (np.pi * sigma) ** 2 * (freqs[:, None] ** 2 + freqs[None, :] ** 2))
    field = np.fft.ifft2(np.fft.fft2(noise) * gain).real
    return (3 * (field - field.mean()) / field.std() - 4).astype(np.float32)


def first_difference(topaz_xy: np.ndarray, ours_xy: np.ndarray) -> str:
    n = min(len(topaz_xy), len(ours_xy))
    differ = np.flatnonzero(np.any(topaz_xy[:n] != ours_xy[:n], axis=1))
    if differ.size == 0 and len(topaz_xy) == len(ours_xy):
        return "identical"
    i = int(differ[0]) if differ.size else n
    ours = tuple(ours_xy[i].tolist()) if i < len(ours_xy) else None
    theirs = tuple(topaz_xy[i].tolist()) if i < len(topaz_xy) else None
    return f"first {i} identical; pick {i} (x, y): ours {ours}, topaz {theirs}"


def time_ours(
    x: np.ndarray,
    radius: int,
    max_particles: int,
    threshold: float,
    repeats: int,
    implementation: str,
):
    t0 = time.perf_counter()
    lowered = nms.lower(
        x,
        radius=radius,
        max_particles=max_particles,
        threshold=threshold,
        implementation=implementation,
    )
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    x_dev = jax.device_put(x)
    picks = jax.block_until_ready(compiled(x_dev, threshold=threshold))  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(x_dev, threshold=threshold))
        times.append(time.perf_counter() - start)
    n = int(picks.valid.sum())
    return {
        "lower_s": t1 - t0,
        "compile_s": t2 - t1,
        "median_s": statistics.median(times),
        "min_s": min(times),
        "spread": statistics.pstdev(times) / statistics.median(times),
        "temp_mib": compiled.memory_analysis().temp_size_in_bytes / 2**20,
        "n": n,
        "xy": np.asarray(picks.coords[:n, ::-1]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--radii", default="7,14")
    parser.add_argument("--threshold", type=float, default=-6.0)
    parser.add_argument("--sigma", type=float, default=3.0, help="blur of the random field, px")
    parser.add_argument("--max-particles", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--topaz-repeats", type=int, default=2)
    parser.add_argument("--topaz-venv", default=None)
    parser.add_argument("--implementations", default="cpu,xla", help="comma-separated")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    info = machine()
    topaz = topaz_python(args.topaz_venv)
    print(f"{info['cpu']}, {info['cores']} cores, jax {info['versions']['jax']}")
    print(
        f"{args.size}x{args.size} smooth random score maps (sigma {args.sigma} px), "
        f"threshold {args.threshold}, max_particles {args.max_particles}"
    )
    if topaz is None:
        print("Topaz venv not found (bash ../shared/tools/topaz-venv.sh ../.venv-topaz):")
        print("timing only our NumPy transcription of Topaz's algorithm.")
    implementations = [name.strip() for name in args.implementations.split(",") if name.strip()]
    if "cpu" in implementations and not cpu_ffi.available():
        print(f"native CPU kernel unavailable ({cpu_ffi.build_error()}): skipping 'cpu'")
        implementations.remove("cpu")
    header = f"{'radius':>6} {'impl':>4} {'picks':>6} {'topaz s':>8} {'transcr s':>9}"
    print(header + f" {'compile s':>9} {'ours ms':>8} {'speed-up':>8}  picks vs Topaz")

    rows = []
    for radius in (int(r) for r in args.radii.split(",")):
        x = smooth_field(args.size, args.sigma, seed=radius)
        ours_by_impl = {
            name: time_ours(x, radius, args.max_particles, args.threshold, args.repeats, name)
            for name in implementations
        }

        times = []
        for _ in range(args.topaz_repeats):
            start = time.perf_counter()
            t_scores, t_xy = topaz_nms(x, radius, args.threshold)
            times.append(time.perf_counter() - start)
        transcription_s = statistics.median(times)

        topaz_s = None
        if topaz is not None:
            with tempfile.TemporaryDirectory(prefix="bench-nms-") as tmp:
                path = str(Path(tmp) / "map.npy")
                np.save(path, x)
                side = run_side(
                    topaz,
                    _TOPAZ_SIDE.format(
                        path=path,
                        radius=radius,
                        threshold=args.threshold,
                        repeats=args.topaz_repeats,
                    ),
                )
            topaz_s = side["median_s"]
            real_xy = np.asarray(side["coords"], dtype=np.int32).reshape(-1, 2)
            assert np.array_equal(real_xy, t_xy), "transcription differs from Topaz"

        baseline = topaz_s if topaz_s is not None else transcription_s
        topaz_col = f"{topaz_s:8.2f}" if topaz_s is not None else f"{'-':>8}"
        for name, ours in ours_by_impl.items():
            speedup = baseline / ours["median_s"]
            agreement = f"{len(t_xy)} vs {ours['n']}: {first_difference(t_xy, ours['xy'])}"
            print(
                f"{radius:>6} {name:>4} {ours['n']:>6} {topaz_col} {transcription_s:>9.2f} "
                f"{ours['lower_s'] + ours['compile_s']:>9.2f} {1e3 * ours['median_s']:>8.1f} "
                f"{speedup:>7.0f}x  {agreement}"
            )
            rows.append(
                {
                    "radius": radius,
                    "implementation": name,
                    "size": args.size,
                    "threshold": args.threshold,
                    "picks_ours": ours["n"],
                    "picks_topaz": len(t_xy),
                    "topaz_s": topaz_s,
                    "transcription_s": transcription_s,
                    **{k: v for k, v in ours.items() if k not in ("xy", "n")},
                    "speedup": speedup,
                    "agreement": agreement,
                }
            )
        if len(ours_by_impl) > 1:
            picks = [ours["xy"] for ours in ours_by_impl.values()]
            same = all(np.array_equal(picks[0], p) for p in picks[1:])
            print(f"{'':>6} implementations agree pick for pick: {same}")
    print("(median of runs; the machine may be shared, so expect noise of tens of percent)")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "runs": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
