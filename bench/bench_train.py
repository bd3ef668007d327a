"""Training: parameter updates per second, ``jaxpick train`` vs ``topaz train``, same data.

Data: the 4 EMPIAR-10028 training micrographs (real, ``../shared/data/real``) preprocessed once
with ``jaxpick preprocess -s SCALE`` and written as MRC (Topaz's ``train`` reads only MRC), with
the particle centres recovered from the masks (``bench.quality_data``). A seeded fraction of the
particles (``--label-fraction``, default half) is labelled and ``-n`` is the true mean per
micrograph, so the GE methods really run (with every particle labelled and ``-n`` the true mean,
both tools fall back to PN). Same settings for both tools: resnet8, 32 units, pretrained,
GE-binomial, minibatch 256, radius 3 by default.

Measured, each in its own process with the same cores:

* Topaz: ``topaz train`` (CLI) with the curve on standard output; every TSV line (one per update,
  flushed) is timestamped as it arrives, and the per-update time is the median interval after
  the first ``--warmup`` updates.
* jaxpick, steady state: the library's own training step (built exactly as
  ``jaxpick.train.loop.train`` builds it, from its internals), lowered and compiled ahead of
  time (both timed), then ``--steps`` calls each under ``jax.block_until_ready``; median after
  ``--warmup``. (The CLI writes its curve in chunks of 50 lines, so its lines cannot be timed.)
* Both CLIs end to end (start-up, reading, compiling, training) for the same number of
  updates: wall time and peak RSS; jaxpick with an empty compilation cache (``cold``) and with
  the cache that run filled (``warm``).

    python -m bench.bench_train [--steps 100] [--minibatch-size 256] [--method GE-binomial]
        [--model resnet8] [--units 32] [--no-pretrained] [--bn on|off] [--radius 3]
        [--device -1] [--tools jaxpick,topaz] [--cli cold,warm] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import machine, require_topaz

# ------------------------------------------------------------------------------ processes


def stream_command(
    argv: list[str], threads: int, extra_env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Runs a command, timestamping each line of its standard output as it arrives.

    Returns ``wall_s``, ``peak_rss_gib`` (the child's rusage), ``lines`` (text) with
    ``times`` (seconds since the start, per line) and ``stderr``. Raises on a non-zero exit.
    """
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env.update(extra_env or {})
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=err, bufsize=0)
        assert proc.stdout is not None
        lines: list[str] = []
        times: list[float] = []
        for raw in iter(proc.stdout.readline, b""):
            times.append(time.perf_counter() - start)
            lines.append(raw.decode(errors="replace").rstrip("\n"))
        proc.stdout.close()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:2])} failed ({proc.returncode}):\n{stderr[-4000:]}")
    return {
        "wall_s": wall,
        "peak_rss_gib": usage.ru_maxrss / 2**20,
        "lines": lines,
        "times": times,
        "stderr": stderr,
    }


def train_lines(result: dict[str, Any]) -> tuple[list[float], int]:
    """Arrival times of the curve's ``train`` lines and their count."""
    out = [
        t for line, t in zip(result["lines"], result["times"], strict=True) if "\ttrain\t" in line
    ]
    return out, len(out)


def topaz_effective(stderr: str, method: str) -> tuple[str, float | None]:
    """The method Topaz trained with (after its GE -> PN rule) and its π."""
    pi = re.search(r"Setting pi = ([0-9.eE+-]+)", stderr)
    value = float(pi.group(1)) if pi else None
    if "setting method to PN" in stderr:
        return "PN", value
    return method, value


def jaxpick_effective(stderr: str) -> tuple[str | None, float | None, float | None]:
    """``# pi = X, method M with prior P`` from ``jaxpick train``'s log."""
    m = re.search(r"# pi = ([0-9.eE+-]+), method (\S+) with prior ([0-9.eE+-]+)", stderr)
    if not m:
        return None, None, None
    return m.group(2), float(m.group(1)), float(m.group(3))


def _summary(times: list[float]) -> dict[str, float]:
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "mean_s": statistics.fmean(times),
        "rel_spread": (statistics.pstdev(times) / statistics.median(times)) if times else 0.0,
        "n": len(times),
    }


# ------------------------------------------------------------------- the jaxpick library


def library_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Times jaxpick's training step in this process (run as ``--library-worker SPEC``).

    The step is built as ``jaxpick.train.loop.train`` builds it; it is lowered and compiled
    ahead of time (reported separately) and then called ``warmup + steps`` times, each call
    under ``jax.block_until_ready``.
    """
    from jaxpick.cli.common import apply_threads

    apply_threads(spec["threads"])
    import resource

    import jax
    import numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    from jaxpick.config import TrainConfig
    from jaxpick.data.sampling import to_device_data
    from jaxpick.data.targets import data_statistics, load_training_set, prior_from_particles
    from jaxpick.devices import select_devices
    from jaxpick.losses import effective_prior, get_objective, resolve_slack
    from jaxpick.train import initial_picker
    from jaxpick.train.step import (
        StepSettings,
        Trainable,
        init_state,
        make_optimizer,
        make_train_step,
    )

    t_start = time.perf_counter()
    config = TrainConfig(
        train_images=(spec["train_images"],),
        train_targets=(spec["train_targets"],),
        num_particles=spec["num_particles"],
        radius=spec["radius"],
        method=spec["method"],
        minibatch_size=spec["minibatch_size"],
        epoch_size=spec["steps"],
        num_epochs=1,
        pretrained=spec["pretrained"],
        model=spec["model"],
        units=spec["units"],
        bn=spec["bn"],
        seed=spec["seed"],
        device=spec["device"],
    )
    train_set = load_training_set(
        config.train_images, config.train_targets, radius=config.radius, warn=lambda m: None
    )
    stats = data_statistics(train_set)
    pi = prior_from_particles(config.num_particles, train_set)
    objective, pi_used, _ = effective_prior(get_objective(config.method), pi, stats.p_observed)
    slack = resolve_slack(objective, config.slack)
    picker, model_config, description = initial_picker(config)
    optimizer = make_optimizer(config.learning_rate, config.l2)
    graphdef, state = init_state(Trainable(picker, None), optimizer)
    devices = select_devices(config.device)
    mesh = Mesh(np.array(devices), ("data",))
    replicated = NamedSharding(mesh, PartitionSpec())
    data = to_device_data(train_set, sharding=replicated)
    key = jax.random.key(config.seed)
    settings = StepSettings(
        objective=objective,
        pi=pi_used,
        slack=slack,
        autoencoder=0.0,
        est_max_prec=stats.p_observed / pi,
        batch_size=config.minibatch_size,
        crop_size=model_config.receptive_field,
        balance=config.minibatch_balance,
    )
    step_fn = make_train_step(graphdef, optimizer, settings, mesh=mesh)
    state = jax.block_until_ready(jax.device_put(state, replicated))
    setup_s = time.perf_counter() - t_start

    t0 = time.perf_counter()
    lowered = step_fn.lower(state, data, key)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    times = []
    losses = []
    for _ in range(spec["warmup"] + spec["steps"]):
        t = time.perf_counter()
        state, metrics = compiled(state, data, key)
        jax.block_until_ready((state, metrics))
        times.append(time.perf_counter() - t)
        losses.append(float(metrics["loss"]))
    steady = times[spec["warmup"] :]
    finite = [v for v in losses if np.isfinite(v)]
    return {
        "device": str(devices[0].device_kind),
        "platform": devices[0].platform,
        "model": description,
        "method": objective.name,
        "pi": pi,
        "pi_used": pi_used,
        "setup_s": setup_s,
        "lower_s": t1 - t0,
        "compile_s": t2 - t1,
        "first_call_s": times[0],
        "step": _summary(steady),
        "loss_first": finite[0] if finite else None,
        "loss_last": finite[-1] if finite else None,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "jax_version": jax.__version__,
    }


def run_library(spec: dict[str, Any]) -> dict[str, Any]:
    """`library_worker` in a fresh process (its own peak RSS, its own thread pool)."""
    env = dict(
        os.environ,
        OMP_NUM_THREADS=str(spec["threads"]),
        MKL_NUM_THREADS=str(spec["threads"]),
        JAXPICK_CACHE_DIR="off",
    )
    if spec["device"] == -1:
        env["JAX_PLATFORMS"] = "cpu"
    repo = Path(__file__).resolve().parent.parent
    proc = subprocess.run(
        [sys.executable, "-m", "bench.bench_train", "--library-worker", json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
        cwd=repo,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"jaxpick library side failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------ the bench


def _common_flags(args: argparse.Namespace, prep: Any, targets: Path, n: float) -> list[str]:
    return [
        "--train-images", str(prep.train_dir),
        "--train-targets", str(targets),
        "-n", repr(n),
        "-r", str(args.radius),
        "--method", args.method,
        "--minibatch-size", str(args.minibatch_size),
        "--epoch-size", str(args.warmup + args.steps),
        "--num-epochs", "1",
        "-m", args.model,
        "--units", str(args.units),
        "--pretrained" if args.pretrained else "--no-pretrained",
    ]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="timed updates (after warm-up)")
    parser.add_argument("--warmup", type=int, default=5, help="updates not timed")
    parser.add_argument("--minibatch-size", type=int, default=256)
    parser.add_argument("--method", default="GE-binomial")
    parser.add_argument("-m", "--model", default="resnet8")
    parser.add_argument("--units", type=int, default=32)
    parser.add_argument("--pretrained", dest="pretrained", action="store_true", default=True)
    parser.add_argument("--no-pretrained", dest="pretrained", action="store_false")
    parser.add_argument("--bn", choices=("on", "off"), default="on", help="(without pretrained)")
    parser.add_argument("-r", "--radius", type=int, default=3)
    parser.add_argument("--scale", type=int, default=4, help="downsampling of the 1024² PNGs")
    parser.add_argument(
        "--label-fraction", type=float, default=0.5, help="fraction of particles labelled"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", type=int, default=-1, help="jaxpick's -d (-1: CPU)")
    parser.add_argument("--topaz-device", type=int, default=-1, help="topaz's -d (-1: CPU)")
    parser.add_argument("--tools", default="jaxpick,topaz")
    parser.add_argument(
        "--cli", default="cold,warm", help="jaxpick CLI runs: cold,warm (or 'none')"
    )
    parser.add_argument("--topaz-venv", default=None)
    parser.add_argument("--workdir", help="keep the data here (default: a temporary folder)")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--library-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.library_worker:
        print(json.dumps(library_worker(json.loads(args.library_worker))))
        return 0

    tools = {t.strip() for t in args.tools.split(",") if t.strip()}
    cli_runs = [c for c in args.cli.split(",") if c in ("cold", "warm")]
    jaxpick_cli = str(Path(sys.executable).parent / "jaxpick")
    topaz_cli = (
        str(Path(require_topaz(args.topaz_venv)).parent / "topaz") if "topaz" in tools else None
    )

    from bench.quality_data import prepare, sample_particles, write_targets

    results: dict[str, Any] = {"machine": machine(), "settings": {}, "runs": {}}
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp_name:
        tmp = Path(args.workdir or tmp_name)
        tmp.mkdir(parents=True, exist_ok=True)
        prep = prepare(tmp / "data", scale=args.scale, threads=args.threads)
        n_true = prep.mean_particles
        total = prep.num_train_particles
        labelled = sample_particles(
            prep.train_centres, round(args.label_fraction * total), args.seed
        )
        targets = tmp / "labelled.txt"
        num_labelled = write_targets(targets, labelled)
        settings = {
            "micrographs": len(prep.train_images),
            "shape": list(prep.shape),
            "labelled": num_labelled,
            "particles": total,
            "num_particles": n_true,
            "model": args.model,
            "units": args.units,
            "pretrained": args.pretrained,
            "bn": args.bn,
            "method": args.method,
            "minibatch_size": args.minibatch_size,
            "radius": args.radius,
            "steps": args.steps,
            "warmup": args.warmup,
            "threads": args.threads,
        }
        results["settings"] = settings
        print(
            f"{len(prep.train_images)} micrographs {prep.shape[0]}x{prep.shape[1]} (EMPIAR-10028 "
            f"/{args.scale}), {num_labelled} of {total} particles labelled, -n {n_true:g}, "
            f"{args.model} u{args.units} "
            f"{'pretrained' if args.pretrained else 'new, bn ' + args.bn}, "
            f"{args.method}, minibatch {args.minibatch_size}, -r {args.radius}, "
            f"{args.warmup}+{args.steps} updates, {args.threads} threads"
        )
        flags = _common_flags(args, prep, targets, n_true)
        runs: dict[str, Any] = results["runs"]

        if "topaz" in tools:
            assert topaz_cli is not None
            argv = [topaz_cli, "train", *flags, "--bn", args.bn]
            argv += ["-d", str(args.topaz_device), "-j", str(args.threads)]
            r = stream_command(argv, args.threads)
            times, count = train_lines(r)
            intervals = [b - a for a, b in zip(times, times[1:], strict=False)]
            method, pi = topaz_effective(r["stderr"], args.method)
            runs["topaz_cli"] = {
                "wall_s": r["wall_s"],
                "peak_rss_gib": r["peak_rss_gib"],
                "updates": count,
                "to_first_update_s": times[0] if times else None,
                "training_s": (times[-1] - r["times"][0]) if times else None,
                "step": _summary(intervals[args.warmup :] or intervals),
                "method": method,
                "pi": pi,
            }
            print(f"# topaz: method {method}, pi {pi}")

        if "jaxpick" in tools:
            spec = {
                "train_images": str(prep.train_dir),
                "train_targets": str(targets),
                "num_particles": n_true,
                "radius": args.radius,
                "method": args.method,
                "minibatch_size": args.minibatch_size,
                "steps": args.steps,
                "warmup": args.warmup,
                "pretrained": args.pretrained,
                "model": args.model,
                "units": args.units,
                "bn": args.bn == "on",
                "seed": args.seed,
                "device": args.device,
                "threads": args.threads,
            }
            runs["jaxpick_step"] = run_library(spec)
            lib = runs["jaxpick_step"]
            print(
                f"# jaxpick: method {lib['method']}, pi {lib['pi']:.6g} "
                f"(prior {lib['pi_used']:.6g}) "
                f"on {lib['platform']} ({lib['device']}); "
                f"loss {lib['loss_first']} -> {lib['loss_last']}"
            )
            cache = tmp / "xla-cache"
            for phase in cli_runs:
                if phase == "cold":
                    shutil.rmtree(cache, ignore_errors=True)
                argv = [jaxpick_cli, "train", *flags, "--bn" if args.bn == "on" else "--no-bn"]
                argv += ["-d", str(args.device), "-j", str(args.threads)]
                r = stream_command(argv, args.threads, {"JAXPICK_CACHE_DIR": str(cache)})
                times, count = train_lines(r)
                method, pi, _ = jaxpick_effective(r["stderr"])
                runs[f"jaxpick_cli_{phase}"] = {
                    "wall_s": r["wall_s"],
                    "peak_rss_gib": r["peak_rss_gib"],
                    "updates": count,
                    # the header is printed before the first (compiling) step
                    "training_s": (times[-1] - r["times"][0]) if times else None,
                    "method": method,
                    "pi": pi,
                }

        _report(runs, args)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=float))
    return 0


def _report(runs: dict[str, Any], args: argparse.Namespace) -> None:
    total = args.warmup + args.steps
    topaz_step = runs.get("topaz_cli", {}).get("step", {}).get("median_s")
    print()
    print("Steady state (median per update):")
    print(
        f"{'side':<34} {'s/update':>9} {'updates/s':>10} {'spread':>7} {'peak GiB':>9} {'ratio':>7}"
    )
    if "topaz_cli" in runs:
        s = runs["topaz_cli"]["step"]
        print(
            f"{'topaz train (CLI line intervals)':<34} {s['median_s']:>9.4f} "
            f"{1 / s['median_s']:>10.2f} {s['rel_spread']:>7.2f} "
            f"{runs['topaz_cli']['peak_rss_gib']:>9.2f} {1.0:>6.2f}x"
        )
    if "jaxpick_step" in runs:
        lib = runs["jaxpick_step"]
        s = lib["step"]
        ratio = f"{topaz_step / s['median_s']:>6.2f}x" if topaz_step else f"{'-':>7}"
        print(
            f"{'jaxpick step (library, ' + lib['platform'] + ')':<34} {s['median_s']:>9.4f} "
            f"{1 / s['median_s']:>10.2f} {s['rel_spread']:>7.2f} "
            f"{lib['peak_rss_gib']:>9.2f} {ratio}"
        )
        print(
            f"jaxpick step: lowering {lib['lower_s']:.2f} s, compiling {lib['compile_s']:.2f} s, "
            f"first call {lib['first_call_s']:.3f} s"
        )
    print()
    print(f"End to end, {total} updates (CLI):")
    print(f"{'command':<22} {'wall s':>8} {'training s':>11} {'peak GiB':>9} {'ratio':>7}  method")
    topaz_wall = runs.get("topaz_cli", {}).get("wall_s")
    for name in ("topaz_cli", "jaxpick_cli_cold", "jaxpick_cli_warm"):
        if name not in runs:
            continue
        r = runs[name]
        ratio = f"{topaz_wall / r['wall_s']:>6.2f}x" if topaz_wall else f"{'-':>7}"
        training = f"{r['training_s']:>11.2f}" if r["training_s"] is not None else f"{'-':>11}"
        if r["updates"] != total:
            print(f"# warning: {name} printed {r['updates']} update lines, expected {total}")
        print(
            f"{name:<22} {r['wall_s']:>8.2f} {training} {r['peak_rss_gib']:>9.2f} {ratio}  "
            f"{r['method']} (pi {r['pi']})"
        )


if __name__ == "__main__":
    sys.exit(main())
