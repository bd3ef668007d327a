"""Write the dense score map (logits) of each micrograph (same flags as ``topaz segment``).

Each map is float32, the size of its micrograph: <destdir>/<name>.tiff (or .mrc with
--format mrc). Unlike Topaz, -p/--patch-size works (tiled scoring gives the same map).

Example:
  jaxpick segment -m resnet16 -o scores/ processed/*.mrc
"""

from __future__ import annotations

import argparse
import sys

from jaxpick.cli.common import add_device_args, apply_threads, enable_compilation_cache


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", help="micrographs")
    parser.add_argument("-m", "--model", default="resnet16", help="as in extract")
    parser.add_argument("-o", "--destdir", required=True, help="output folder")
    parser.add_argument("--format", dest="format_", choices=("tiff", "mrc"), default="tiff")
    parser.add_argument("-p", "--patch-size", type=int, default=0, help="tile size (0: whole)")
    parser.add_argument("--precision", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--batch-size", type=int, help="micrographs per device batch")
    parser.add_argument("--overwrite", action="store_true", help="redo existing outputs")
    parser.add_argument("-v", "--verbose", action="store_true", help="show progress")
    add_device_args(parser, device_default=0)


def main(args: argparse.Namespace) -> int:
    apply_threads(args.num_threads)
    enable_compilation_cache()
    from jaxpick.config import SegmentConfig
    from jaxpick.extract import segment

    config = SegmentConfig(
        inputs=tuple(args.paths),
        destdir=args.destdir,
        model=args.model,
        format=args.format_,
        patch_size=args.patch_size,
        precision=args.precision,
        batch_size=args.batch_size,
        overwrite=args.overwrite,
        device=args.device,
    )
    report = segment(config, progress=args.verbose or sys.stderr.isatty())
    print(report.summary("segmented"), file=sys.stderr if not report.ok else sys.stdout)
    return 0 if report.ok else 1
