"""Picking quality after training: particle-level AUPRC, jaxpick vs Topaz, on real EMPIAR-10028.

Data (``bench.quality_data``): the 4 training micrographs of EMPIAR-10028 (CryoPPP, 1024² PNGs)
preprocessed once with ``jaxpick preprocess -s SCALE`` (Fourier crop + GMM normalisation,
written as MRC), the particle centres recovered from the disc masks, and the validation
micrograph (065_10028) with its centres as the ground truth.

For each seed, each N (labelled particles in total over the training micrographs, drawn with
the seed; ``all`` = every particle) and each objective, both tools train from the same files
with the same settings: ``-n`` the true mean particles per training micrograph, ``-r`` the
training radius, the same minibatch size and number of updates (one epoch), the same model
(pretrained resnet8 u32 by default). jaxpick gets ``--seed SEED``; Topaz has no seed (its runs
are not reproducible). Both final models are then evaluated the same way, with jaxpick's
extraction (a Topaz ``.sav`` loads in ``jaxpick extract``, with Topaz's own scores): NMS at the
particle radius on the validation micrograph and picks matched to the true centres within that
radius, so only the training differs. Picks scoring at least ``--threshold`` (-6, extract's
default) are evaluated; the AUPRC of every pick is also in the JSON (``auprc_all``). The
pretrained model without any training is evaluated as a reference.

The training radius (``-r``, default 3, Topaz's default) is smaller than the particle radius
(7 px at /4): with ``-r 7`` Topaz's inflated π (below) would exceed 1 for this dataset.

π: both tools get the same ``-n``, but Topaz 0.3 turns it into π with a disc area inflated
(2r+1)x (spec 3.1); jaxpick uses the true disc area unless ``--legacy-pi``. ``--jaxpick-pi
true,legacy`` trains jaxpick both ways. With every particle labelled (N = all) and ``-n`` the
true mean, π equals the observed positive fraction and both tools train the GE objectives as PN
(Topaz's rule); such cells are marked ``→PN``.

    python -m bench.bench_quality [--updates 200] [--minibatch-size 64]
        [--methods PN,GE-binomial,GE-KL,PU] [--n 10,100,all] [--tools jaxpick,topaz]
        [--seeds 0] [--json bench-quality.json]

The defaults (both tools, 4 objectives x 3 N, 200 updates of 64) take about 35-45 minutes on
the project's 2-core CPU when nothing else runs.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.bench_train import jaxpick_effective, stream_command, topaz_effective
from bench.harness import machine, require_topaz
from bench.quality_data import MASK_RADIUS, prepare, sample_particles, write_targets

EXTRACT_FLOOR = -1000.0  # extraction threshold: every pick NMS makes (in practice)


def evaluate_model(
    model: str,
    images: list[Path],
    targets: Path,
    radius: int,
    *,
    threshold: float = -6.0,
    device: int = -1,
) -> dict[str, Any]:
    """Particle-level AUPRC of ``model`` on ``images``: ``jaxpick extract -m model -r radius
    -t threshold --targets targets`` through the library.

    Extraction runs once at `EXTRACT_FLOOR`; the picks scoring at least ``threshold`` are
    exactly those an extraction with that threshold makes (NMS is greedy from the top score),
    and are evaluated as ``extract --targets`` does (``auprc``). ``auprc_all`` evaluates every
    pick: it can be lower, since matching pairs picks and targets by distance, not by score,
    so extra low-scoring picks can take matches from higher-scoring ones.
    """
    from jaxpick.config import ExtractConfig
    from jaxpick.extract import extract
    from jaxpick.io.coords import read_coordinates
    from jaxpick.metrics import evaluate_picks

    config = ExtractConfig(
        inputs=tuple(str(p) for p in images),
        model=model,
        radius=radius,
        threshold=min(threshold, EXTRACT_FLOOR),
        targets=(str(targets),),
        only_validate=True,
        device=device,
    )
    with contextlib.redirect_stdout(io.StringIO()):
        result = extract(config, progress=False, log=io.StringIO())
    picks = result.picks
    assert picks is not None
    assert picks.score is not None
    truth = read_coordinates(targets)
    truth = truth.select(np.isin(truth.image_name, [p.stem for p in images]))
    above = picks.select(np.asarray(picks.score) >= threshold)
    ev = evaluate_picks(truth, above, radius)
    return {
        "auprc": ev.curve.auprc if len(above) else 0.0,
        "hits": ev.num_hits if len(above) else 0,
        "targets": len(truth),
        "picks": len(above),
        "rmse": ev.rmse if len(above) else math.nan,
        "auprc_all": result.evaluations[0].auprc,
        "picks_all": len(picks),
    }


def _last_checkpoint(prefix: Path, pattern: str) -> Path:
    found = sorted(prefix.parent.glob(prefix.name + pattern))
    if not found:
        raise RuntimeError(f"no checkpoint {prefix}{pattern} written")
    return found[-1]


def _mean_loss(lines: list[str], last: int) -> float | None:
    """Mean of the finite ``loss`` column over the last ``last`` train lines of a curve."""
    header = next((line.split("\t") for line in lines if line.startswith("epoch\t")), None)
    if header is None or "loss" not in header:
        return None
    col = header.index("loss")
    values = []
    for line in lines:
        parts = line.split("\t")
        if len(parts) > col and parts[2:3] == ["train"]:
            with contextlib.suppress(ValueError):
                values.append(float(parts[col]))
    tail = [v for v in values[-last:] if math.isfinite(v)]
    return statistics.fmean(tail) if tail else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=200, help="parameter updates per run")
    parser.add_argument("--minibatch-size", type=int, default=64)
    parser.add_argument("--methods", default="PN,GE-binomial,GE-KL,PU")
    parser.add_argument("--n", default="10,100,all", help="labelled particles in total")
    parser.add_argument("--tools", default="jaxpick,topaz")
    parser.add_argument("--seeds", default="0", help="comma-separated; one full set per seed")
    parser.add_argument(
        "--jaxpick-pi",
        default="true",
        help="true (true disc area), legacy (--legacy-pi, Topaz's π), or both: true,legacy",
    )
    parser.add_argument("-m", "--model", default="resnet8")
    parser.add_argument("--units", type=int, default=32)
    parser.add_argument("--pretrained", dest="pretrained", action="store_true", default=True)
    parser.add_argument("--no-pretrained", dest="pretrained", action="store_false")
    parser.add_argument("--scale", type=int, default=4, help="downsampling of the 1024² PNGs")
    parser.add_argument("--train-radius", type=int, default=3, help="-r of both trainers")
    parser.add_argument(
        "--eval-radius", type=int, help="NMS and matching radius (default: the particle radius)"
    )
    parser.add_argument(
        "--threshold", type=float, default=-6.0,
        help="score threshold of the evaluated picks (default: -6, extract's default; the "
        "AUPRC of every pick is also in the JSON as auprc_all)",
    )  # fmt: skip
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", type=int, default=-1, help="jaxpick's -d (-1: CPU)")
    parser.add_argument("--topaz-device", type=int, default=-1)
    parser.add_argument("--topaz-venv", default=None)
    parser.add_argument("--workdir", help="keep data and models here (default: temporary)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    seeds = [int(s) for s in args.seeds.split(",")]
    n_values: list[int | None] = [
        None if v.strip() == "all" else int(v) for v in args.n.split(",") if v.strip()
    ]
    pi_modes = [p.strip() for p in args.jaxpick_pi.split(",") if p.strip()]
    if any(p not in ("true", "legacy") for p in pi_modes):
        raise SystemExit("--jaxpick-pi: true, legacy or true,legacy")
    eval_radius = args.eval_radius or max(1, round(MASK_RADIUS / args.scale))
    jaxpick_cli = str(Path(sys.executable).parent / "jaxpick")
    topaz_cli = (
        str(Path(require_topaz(args.topaz_venv)).parent / "topaz") if "topaz" in tools else None
    )
    sides: list[tuple[str, str | None]] = []
    for tool in tools:
        if tool == "jaxpick":
            sides += [("jaxpick" if p == "true" else "jaxpick-legacy-pi", p) for p in pi_modes]
        elif tool == "topaz":
            sides.append(("topaz", None))
        else:
            raise SystemExit(f"--tools: unknown tool {tool!r}")

    start = time.perf_counter()
    results: dict[str, Any] = {"machine": machine(), "settings": {}, "runs": []}
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as tmp_name:
        tmp = Path(args.workdir or tmp_name)
        tmp.mkdir(parents=True, exist_ok=True)
        prep = prepare(tmp / "data", scale=args.scale, threads=args.threads)
        n_true = prep.mean_particles
        total = prep.num_train_particles
        settings = {
            "train_micrographs": {k: len(v) for k, v in prep.train_centres.items()},
            "valid_micrographs": {k: len(v) for k, v in prep.valid_centres.items()},
            "shape": list(prep.shape),
            "scale": args.scale,
            "num_particles": n_true,
            "train_radius": args.train_radius,
            "eval_radius": eval_radius,
            "threshold": args.threshold,
            "updates": args.updates,
            "minibatch_size": args.minibatch_size,
            "model": args.model,
            "units": args.units,
            "pretrained": args.pretrained,
            "methods": methods,
            "n": [("all" if n is None else n) for n in n_values],
            "seeds": seeds,
            "sides": [s for s, _ in sides],
            "threads": args.threads,
        }
        results["settings"] = settings
        print(
            f"EMPIAR-10028 /{args.scale} ({prep.shape[0]}x{prep.shape[1]}): "
            f"{len(prep.train_images)} training micrographs with {total} particles "
            f"(-n {n_true:g}), validation {sum(settings['valid_micrographs'].values())} particles; "
            f"train -r {args.train_radius}, evaluation radius {eval_radius}; "
            f"{args.updates} updates of {args.minibatch_size}; {args.threads} threads "
            f"(data prepared in {prep.prep_seconds:.1f} s)",
            flush=True,
        )
        if args.pretrained and args.model in ("resnet8", "resnet16"):
            name = f"{args.model}_u{args.units}"
            base = evaluate_model(
                name, prep.valid_images, prep.valid_targets, eval_radius,
                threshold=args.threshold, device=args.device,
            )  # fmt: skip
            results["pretrained"] = {"model": name, **base}
            print(f"untrained {name}: AUPRC {base['auprc']:.4f}", flush=True)

        cache = tmp / "xla-cache"
        for seed in seeds:
            for n in n_values:
                labelled = sample_particles(prep.train_centres, n, seed)
                targets = tmp / f"targets_n{'all' if n is None else n}_s{seed}.txt"
                num_labelled = write_targets(targets, labelled)
                for method in methods:
                    common = [
                        "--train-images", str(prep.train_dir),
                        "--train-targets", str(targets),
                        "-n", repr(n_true),
                        "-r", str(args.train_radius),
                        "--method", method,
                        "--minibatch-size", str(args.minibatch_size),
                        "--epoch-size", str(args.updates),
                        "--num-epochs", "1",
                        "-m", args.model,
                        "--units", str(args.units),
                        "--pretrained" if args.pretrained else "--no-pretrained",
                    ]  # fmt: skip
                    for side, pi_mode in sides:
                        tag = f"{side}_{method}_n{'all' if n is None else n}_s{seed}"
                        prefix = tmp / "models" / tag
                        prefix.parent.mkdir(parents=True, exist_ok=True)
                        if side == "topaz":
                            assert topaz_cli is not None
                            argv = [topaz_cli, "train", *common, "--save-prefix", str(prefix)]
                            argv += ["-d", str(args.topaz_device), "-j", str(args.threads)]
                            run = stream_command(argv, args.threads)
                            used, pi = topaz_effective(run["stderr"], method)
                            model = _last_checkpoint(prefix, "_epoch*.sav")
                        else:
                            argv = [jaxpick_cli, "train", *common, "--save-prefix", str(prefix)]
                            argv += ["--seed", str(seed), "-d", str(args.device)]
                            argv += ["-j", str(args.threads)]
                            if pi_mode == "legacy":
                                argv.append("--legacy-pi")
                            run = stream_command(
                                argv, args.threads, {"JAXPICK_CACHE_DIR": str(cache)}
                            )
                            used, pi, _ = jaxpick_effective(run["stderr"])
                            model = _last_checkpoint(prefix, "_epoch*")
                        t0 = time.perf_counter()
                        ev = evaluate_model(
                            str(model), prep.valid_images, prep.valid_targets, eval_radius,
                            threshold=args.threshold, device=args.device,
                        )  # fmt: skip
                        row = {
                            "side": side,
                            "method": method,
                            "method_used": used,
                            "pi": pi,
                            "n": "all" if n is None else n,
                            "labelled": num_labelled,
                            "seed": seed,
                            "train_wall_s": run["wall_s"],
                            "train_peak_rss_gib": run["peak_rss_gib"],
                            "final_loss": _mean_loss(run["lines"], max(1, args.updates // 10)),
                            "eval_s": time.perf_counter() - t0,
                            **ev,
                        }
                        results["runs"].append(row)
                        print(
                            f"[{time.perf_counter() - start:7.0f} s] seed {seed} N {row['n']:>4} "
                            f"{method:<12} {side:<17} AUPRC {ev['auprc']:.4f} "
                            f"(all picks: {ev['auprc_all']:.4f}) "
                            f"train {run['wall_s']:6.1f} s  {used} pi={pi}",
                            flush=True,
                        )
    results["total_s"] = time.perf_counter() - start
    table = markdown_table(results)
    results["table"] = table
    print()
    print(table)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=float))
    return 0


def _cell(values: list[float], digits: int) -> str:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.fmean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def markdown_table(results: dict[str, Any]) -> str:
    """Objective × N: each side's AUPRC (mean ± sd over seeds) and training wall time."""
    s = results["settings"]
    sides = s["sides"]
    runs = results["runs"]
    head = ["objective", "N"]
    head += [f"{side} AUPRC" for side in sides]
    head += [f"{side} train s" for side in sides]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method in s["methods"]:
        for n in s["n"]:
            cells = [method, str(n)]
            times = []
            for side in sides:
                rows = [r for r in runs if (r["side"], r["method"], r["n"]) == (side, method, n)]
                cell = _cell([r["auprc"] for r in rows], 3)
                if any(r["method_used"] not in (None, method) for r in rows):
                    cell += " (→" + ",".join(sorted({str(r["method_used"]) for r in rows})) + ")"
                cells.append(cell)
                times.append(_cell([r["train_wall_s"] for r in rows], 0))
            lines.append("| " + " | ".join(cells + times) + " |")
    notes = [
        f"EMPIAR-10028, {s['shape'][0]}² (/{s['scale']}), {sum(s['train_micrographs'].values())} "
        f"training particles on {len(s['train_micrographs'])} micrographs, validation "
        f"{sum(s['valid_micrographs'].values())} particles; -n {s['num_particles']:g}, "
        f"train -r {s['train_radius']}, NMS/match radius {s['eval_radius']}, picks scoring "
        f">= {s['threshold']:g}; "
        f"{s['model']} u{s['units']} {'pretrained' if s['pretrained'] else 'from scratch'}, "
        f"{s['updates']} updates of {s['minibatch_size']}; seeds {s['seeds']}; "
        f"{s['threads']} threads."
    ]
    if "pretrained" in results:
        p = results["pretrained"]
        notes.append(f"Untrained {p['model']}: AUPRC {p['auprc']:.3f}.")
    return "\n".join(lines) + "\n\n" + " ".join(notes) + "\n"


if __name__ == "__main__":
    sys.exit(main())
