"""Downsample and normalise micrographs (same flags as ``topaz preprocess``).

Fourier-crop downsampling by -s, then per-micrograph normalisation with Topaz's two-component
Gaussian mixture (or --affine z-scoring), on the accelerator, in batches. Outputs are float32
<destdir>/<name>.<format> with the true pixel size and statistics in MRC headers. Finished
micrographs are skipped on a rerun (--overwrite redoes them); an unreadable micrograph is
reported by name and the others go on (exit code 1 at the end, listing the failures).

Unlike Topaz, the pixel subsampling of --sample is seeded (--seed), so runs are reproducible.

Example:
  jaxpick preprocess -s 4 -o processed/ raw/*.mrc
  jaxpick preprocess -s 8 -o processed/ @micrographs.txt --format mrc,png
"""

from __future__ import annotations

import argparse

from jaxpick.cli.common import (
    add_device_args,
    apply_threads,
    enable_compilation_cache,
    split_formats,
)

DEFAULT_SCALE = 1


def add_args(parser: argparse.ArgumentParser, *, default_scale: int = DEFAULT_SCALE) -> None:
    parser.add_argument("files", nargs="+", help="micrographs to process")
    parser.add_argument(
        "-s",
        "--scale",
        type=float,
        default=default_scale,
        help=f"downsampling factor (default: {default_scale})",
    )
    parser.add_argument(
        "--affine", action="store_true", help="normalise with a plain z-score instead of the GMM"
    )
    parser.add_argument(
        "--sample",
        type=int,
        default=10,
        help="fit the GMM on a random 1/sample of the pixels (default: 10)",
    )
    parser.add_argument(
        "--niters", type=int, default=100, help="maximum EM iterations (default: 100)"
    )
    parser.add_argument(
        "-a",
        "--alpha",
        type=float,
        default=900,
        help="Beta prior alpha on the background weight (default: 900)",
    )
    parser.add_argument(
        "-b",
        "--beta",
        type=float,
        default=1,
        help="Beta prior beta on the background weight (default: 1)",
    )
    parser.add_argument(
        "--metadata",
        action="store_true",
        help="write <name>.metadata.json with the fitted parameters",
    )
    parser.add_argument("-o", "--destdir", required=True, help="output folder")
    parser.add_argument(
        "--format",
        dest="format_",
        default="mrc",
        help="output formats, comma-separated: mrc, tiff, png, jpg (default: mrc)",
    )
    parser.add_argument(
        "-t", "--num-workers", type=int, default=0, help="reader threads (default: 0 = 2)"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="micrographs per device batch (default: from memory)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the --sample pixel subsampling (default: 0)"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="redo micrographs whose outputs already exist"
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="no progress bar if unset and not a terminal; always print the summary",
    )
    add_device_args(parser, device_default=-1)


def main(args: argparse.Namespace) -> int:
    return run(args, normalize=True, verb="preprocessed")


def run(args: argparse.Namespace, *, normalize: bool, verb: str) -> int:
    apply_threads(args.num_threads)
    enable_compilation_cache()
    import sys

    from jaxpick.config import PreprocessConfig
    from jaxpick.preprocess import preprocess

    config = PreprocessConfig(
        inputs=tuple(args.files),
        destdir=args.destdir,
        scale=args.scale,
        normalize=normalize,
        affine=args.affine,
        sample=args.sample,
        niters=args.niters,
        alpha=args.alpha,
        beta=args.beta,
        metadata=args.metadata,
        formats=split_formats(args.format_),
        seed=args.seed,
        batch_size=args.batch_size,
        num_readers=args.num_workers if args.num_workers > 0 else 2,
        overwrite=args.overwrite,
        device=args.device,
    )
    report = preprocess(config, progress=args.verbose or sys.stderr.isatty())
    print(report.summary(verb), file=sys.stderr if not report.ok else sys.stdout)
    return 0 if report.ok else 1
