"""Pick particles: score micrographs with a picker and run non-maximum suppression.

Same flags as ``topaz extract``. Micrographs should be preprocessed as the model expects
(``jaxpick preprocess``). Picks go to standard output, to a file, or with --per-micrograph to
one file per micrograph in the -o folder. With --targets the picks are evaluated against known
coordinates (``# radius=…, auprc=…`` lines); without -r the radius is searched over
--min-radius..--max-radius and the best one is used.

Unlike Topaz: -o may be a folder; --targets works with any paths; the tie order of equal scores
is defined and the NMS has no edge wrap-around; a crash mid-run keeps every finished micrograph
(rerun to finish). --precision bfloat16 is meant for GPUs and CPUs with AMX (not measured
yet); on AVX2 CPUs float32 is the faster (bench/RESULTS.md).

Example:
  jaxpick extract -m resnet16 -r 14 -x 4 -o particles.txt processed/*.mrc
  jaxpick extract -m model.sav -r 7 --per-micrograph --format star -o picks/ processed/*.mrc
  jaxpick extract -m model.sav --targets val.txt --only-validate processed/*.mrc
"""

from __future__ import annotations

import argparse
import sys

from jaxpick.cli.common import add_device_args, apply_threads, enable_compilation_cache
from jaxpick.config import EXTRACT_FORMATS


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths", nargs="*", help="micrographs (default: one path per line on standard input)"
    )
    parser.add_argument(
        "-m",
        "--model",
        default="resnet16",
        help="resnet8/resnet16 (Topaz's pretrained, _u32/_u64), a Topaz .sav file, a jaxpick "
        "checkpoint folder, or none (inputs are score maps) (default: resnet16)",
    )
    parser.add_argument("-r", "--radius", type=int, help="NMS radius in pixels")
    parser.add_argument(
        "-t", "--threshold", type=float, default=-6, help="score threshold (default: -6)"
    )
    parser.add_argument("-s", "--down-scale", type=float, default=1, help="divide coordinates")
    parser.add_argument("-x", "--up-scale", type=float, default=1, help="multiply coordinates")
    parser.add_argument(
        "-p", "--patch-size", type=int, default=0, help="score in tiles of this size (default: 0)"
    )
    parser.add_argument("--targets", nargs="+", help="known coordinates, for validation")
    parser.add_argument("--min-radius", type=int, default=5)
    parser.add_argument("--max-radius", type=int, default=100)
    parser.add_argument("--step-radius", type=int, default=5)
    parser.add_argument(
        "--assignment-radius", type=float, help="match radius for validation (default: -r)"
    )
    parser.add_argument("--only-validate", action="store_true", help="write no picks")
    parser.add_argument("-o", "--output", help="output file or folder (default: stdout)")
    parser.add_argument("--per-micrograph", action="store_true", help="a file per micrograph")
    parser.add_argument("--suffix", default="", help="per-micrograph file name suffix")
    parser.add_argument("--format", dest="format_", choices=EXTRACT_FORMATS, default="coord")
    parser.add_argument(
        "--boxsize",
        type=int,
        help="box size in box files (default: 2 x radius; Topaz writes 0)",
    )
    parser.add_argument(
        "--max-particles", type=int, help="picks per micrograph at most (default: no limit)"
    )
    parser.add_argument(
        "--precision",
        choices=("float32", "bfloat16"),
        default="float32",
        help="network arithmetic (default: float32; bfloat16 rounds weights and activations, "
        "for GPUs and AMX CPUs)",
    )
    parser.add_argument("--batch-size", type=int, help="micrographs per device batch")
    parser.add_argument("--num-workers", type=int, default=0, help="reader threads (0 = 2)")
    parser.add_argument("--overwrite", action="store_true", help="redo existing outputs")
    parser.add_argument("--dims", type=int, choices=(2,), default=2, help="2 (micrographs)")
    parser.add_argument("-v", "--verbose", action="store_true", help="show progress")
    add_device_args(parser, device_default=0)


def main(args: argparse.Namespace) -> int:
    apply_threads(args.num_threads)
    enable_compilation_cache()
    from jaxpick.config import ExtractConfig
    from jaxpick.extract import extract

    paths = args.paths or [line.strip() for line in sys.stdin if line.strip()]
    config = ExtractConfig(
        inputs=tuple(paths),
        model=args.model,
        radius=args.radius,
        threshold=args.threshold,
        down_scale=args.down_scale,
        up_scale=args.up_scale,
        patch_size=args.patch_size,
        output=args.output,
        per_micrograph=args.per_micrograph,
        suffix=args.suffix,
        format=args.format_,
        box_size=args.boxsize,
        targets=tuple(args.targets or ()),
        min_radius=args.min_radius,
        max_radius=args.max_radius,
        step_radius=args.step_radius,
        assignment_radius=args.assignment_radius,
        only_validate=args.only_validate,
        max_particles=args.max_particles,
        precision=args.precision,
        batch_size=args.batch_size,
        num_readers=args.num_workers if args.num_workers > 0 else 2,
        overwrite=args.overwrite,
        device=args.device,
    )
    result = extract(config, progress=args.verbose or sys.stderr.isatty())
    report = result.report
    print(report.summary("extracted"), file=sys.stderr)
    return 0 if report.ok else 1
