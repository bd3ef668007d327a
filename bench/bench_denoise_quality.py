"""Denoising quality on simulated even/odd pairs with known clean images: PSNR against the truth.

Data (``jaxpick.simulate``, seeded): ``--train`` micrographs of ``--size``² whose even/odd
half-dose copies are the Noise2Noise training pairs, and ``--test`` other micrographs (another
seed) on which everything is evaluated. Each half has noise variance ``2 / snr`` around the
clean image (particles after the CTF, in signal units).

Rows, each the PSNR of a test micrograph's even half (or its denoised version) against its
clean image, ``10 log10(peak² / MSE)`` with ``peak = max(clean) - min(clean)``, averaged over
the test micrographs, the gain over the noisy input, and the Pearson correlation with the clean
image (blind to scale and offset):

- ``noisy (even half)``: the input;
- ``constant (input mean)``: a flat image. Micrographs are mostly background, so a flat image
  already scores far above the noisy input in PSNR: a denoiser must beat this row, and its
  correlation (0 here) says whether it kept the particles;
- ``pretrained unet``: ``jaxpick denoise -m unet`` (Topaz's unet_L2_v0.2.2);
- ``fine-tuned unet``: that network after ``--epochs`` of Noise2Noise training here on the
  training pairs (``train_noise2noise``: Topaz's defaults but ``--crop``, ``--batch-size``,
  ``--epochs``, ``--lr``), the final checkpoint denoised the same way;
- ``fresh <arch>`` (``--scratch``): a small freshly initialised U-Net trained the same way.

Denoising goes through the library behind ``jaxpick denoise`` (whole micrographs, ``-s 0``)
with the output restored to the input's mean and σ, so it is in the clean image's units.

    python -m bench.bench_denoise_quality [--size 512] [--train 10] [--test 2] [--epochs 4]
        [--crop 256] [--batch-size 4] [--snr 0.1] [--scratch] [--json out.json]

The smoke run ``--size 128 --train 4 --test 1 --epochs 1 --crop 96`` takes about a minute;
the defaults take about 4 minutes on the project's 2-core CPU.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import machine


def psnr(estimate: np.ndarray, clean: np.ndarray) -> float:
    """``10 log10(peak² / MSE)`` with the clean image's peak-to-peak range."""
    clean64 = np.asarray(clean, np.float64)
    mse = float(np.mean((np.asarray(estimate, np.float64) - clean64) ** 2))
    peak = float(clean64.max() - clean64.min())
    return 10 * math.log10(peak * peak / mse)


def correlation(estimate: np.ndarray, clean: np.ndarray) -> float:
    """Pearson correlation with the clean image (blind to scale and offset; 0 for a constant)."""
    e = np.asarray(estimate, np.float64).ravel()
    c = np.asarray(clean, np.float64).ravel()
    e, c = e - e.mean(), c - c.mean()
    norm = math.sqrt(float(e @ e) * float(c @ c))
    return float(e @ c) / norm if norm > 0 else 0.0


def _denoise_files(model: str, inputs: list[Path], out: Path) -> list[np.ndarray]:
    from jaxpick.denoise import DenoiseConfig, denoise
    from jaxpick.io.image import read_image

    report = denoise(
        DenoiseConfig(
            inputs=tuple(str(p) for p in inputs),
            output=str(out),
            models=(model,),
            patch_size=0,
            device=-1,
            overwrite=True,
        ),
        progress=False,
    )
    if not report.ok:
        raise SystemExit(f"denoising with {model} failed: {report.failed}")
    return [read_image(out / p.name).data for p in inputs]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=512, help="micrograph side (512)")
    parser.add_argument("--train", type=int, default=10, help="training pairs (10; 1 held out)")
    parser.add_argument("--test", type=int, default=2, help="test micrographs (2)")
    parser.add_argument("--snr", type=float, default=0.1, help="simulation SNR (0.1)")
    parser.add_argument("--particles", type=int, default=None, help="particles per micrograph")
    parser.add_argument("--epochs", type=int, default=4, help="fine-tuning epochs (4)")
    parser.add_argument("--crop", type=int, default=256, help="training crop (256)")
    parser.add_argument("--batch-size", type=int, default=4, help="training batch (4)")
    parser.add_argument("--lr", type=float, default=0.001, help="learning rate (0.001)")
    parser.add_argument("--optim", default="adagrad", help="optimizer (adagrad)")
    parser.add_argument("--scratch", action="store_true", help="also train a small fresh U-Net")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--keep", type=Path, default=None, help="work folder to keep")
    args = parser.parse_args(argv)

    from jaxpick.models.unet import DenoiserConfig
    from jaxpick.simulate import SimulationConfig, write_dataset
    from jaxpick.train.denoise import Noise2NoiseConfig, train_noise2noise

    particles = args.particles or max(1, int(120 * (args.size / 512) ** 2))
    sim = SimulationConfig(shape=(args.size, args.size), num_particles=particles, snr=args.snr)
    work_context = tempfile.TemporaryDirectory(prefix="bench-denoise-quality-")
    work = args.keep if args.keep is not None else Path(work_context.name)
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    write_dataset(sim, work / "train", args.train, seed=args.seed, pairs=True)
    test_set = write_dataset(sim, work / "test", args.test, seed=args.seed + 1000, pairs=True)
    from jaxpick.io.image import read_image

    clean = [read_image(p).data for p in test_set.clean]
    noisy = [read_image(p).data for p in test_set.even]
    print(
        f"# simulated {args.train} training pairs and {args.test} test micrographs of "
        f"{args.size}² (snr {args.snr}, {particles} particles) in "
        f"{time.perf_counter() - started:.1f} s",
        file=sys.stderr,
    )

    rows: list[dict[str, Any]] = []

    def row(name: str, estimates: list[np.ndarray], seconds: float, **extra: Any) -> None:
        pairs = list(zip(estimates, clean, strict=True))
        rows.append(
            {
                "method": name,
                "psnr": float(np.mean([psnr(e, c) for e, c in pairs])),
                "corr": float(np.mean([correlation(e, c) for e, c in pairs])),
                "seconds": seconds,
                **extra,
            }
        )

    row("noisy (even half)", noisy, 0.0)
    # A flat image scores a high PSNR on sparse micrographs: the floor any denoiser must beat.
    row("constant (input mean)", [np.full_like(n, n.mean()) for n in noisy], 0.0)
    t = time.perf_counter()
    row("pretrained unet", _denoise_files("unet", list(test_set.even), work / "out_unet"), 0.0)
    rows[-1]["seconds"] = time.perf_counter() - t

    runs: list[tuple[str, str, Any]] = [("fine-tuned unet", "unet", None)]
    if args.scratch:
        small = DenoiserConfig(arch="unet", width=16, depth=3, base_kernel=5, top_kernel=3)
        runs.append(("fresh unet (w16, depth 3)", "none", small))
    for name, model, arch in runs:
        log = io.StringIO()
        config = Noise2NoiseConfig(
            dir_a=str(work / "train" / "even"),
            dir_b=str(work / "train" / "odd"),
            model=model,
            arch=arch,
            crop=min(args.crop, args.size),
            batch_size=args.batch_size,
            num_epochs=args.epochs,
            optim=args.optim,
            lr=args.lr,
            seed=args.seed,
            save_prefix=str(work / name.split()[0] / "n2n"),
            save_interval=max(1, args.epochs),
            device=-1,
        )
        t = time.perf_counter()
        result = train_noise2noise(config, progress=False, log=log)
        train_seconds = time.perf_counter() - t
        assert result.last_checkpoint is not None
        t = time.perf_counter()
        estimates = _denoise_files(
            str(result.last_checkpoint), list(test_set.even), work / f"out_{name.split()[0]}"
        )
        row(
            f"{name} ({args.epochs} ep.)",
            estimates,
            time.perf_counter() - t,
            train_seconds=train_seconds,
            history=result.history,
        )

    base = rows[0]["psnr"]
    print(f"{'method':36s} {'PSNR dB':>8s} {'gain dB':>8s} {'corr':>6s} {'train s':>8s}")
    for r in rows:
        train_s = r.get("train_seconds")
        print(
            f"{r['method']:36s} {r['psnr']:8.2f} {r['psnr'] - base:8.2f} {r['corr']:6.3f} "
            f"{'' if train_s is None else f'{train_s:8.1f}'}"
        )
    for r in rows:
        for h in r.get("history", []):
            print(
                f"# {r['method']}: epoch {h['epoch']} train {h['train_loss']:.4f} "
                f"val {h['val_loss']:.4f}",
                file=sys.stderr,
            )
    record = {
        "bench": "denoise_quality",
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "particles": particles,
        "rows": rows,
        "seconds": time.perf_counter() - started,
        "machine": machine(),
    }
    if args.json is not None:
        args.json.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    work_context.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
