"""Downsample micrographs by Fourier cropping (``topaz downsample``, for many files at once).

Keeps the low frequencies (no aliasing), writes float32 with the true pixel size in the MRC
header (Topaz keeps the old one). With one input and -o ending in an image extension the output
is that file, as in Topaz; otherwise -o is a folder of <name>.<format> files.

Example:
  jaxpick downsample -s 4 -o binned.mrc micrograph.mrc
  jaxpick downsample -s 8 -o binned/ raw/*.mrc
"""

from __future__ import annotations

import argparse
import sys

from jaxpick.cli.common import add_device_args, apply_threads, enable_compilation_cache
from jaxpick.io.names import is_image_path


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", help="micrographs to downsample")
    parser.add_argument(
        "-s", "--scale", type=float, default=4, help="downsampling factor (default: 4)"
    )
    parser.add_argument("-o", "--output", required=True, help="output file (one input) or folder")
    parser.add_argument(
        "--format",
        dest="format_",
        default="mrc",
        help="output formats for a folder, comma-separated (default: mrc)",
    )
    parser.add_argument("--overwrite", action="store_true", help="redo existing outputs")
    parser.add_argument("-v", "--verbose", action="store_true", help="show progress")
    add_device_args(parser, device_default=-1)


def main(args: argparse.Namespace) -> int:
    apply_threads(args.num_threads)
    enable_compilation_cache()
    from jaxpick.cli.common import split_formats
    from jaxpick.config import PreprocessConfig
    from jaxpick.preprocess import downsample_file, preprocess

    if len(args.files) == 1 and is_image_path(args.output):
        downsample_file(args.files[0], args.output, args.scale, device=args.device)
        return 0
    config = PreprocessConfig(
        inputs=tuple(args.files),
        destdir=args.output,
        scale=args.scale,
        normalize=False,
        formats=split_formats(args.format_),
        overwrite=args.overwrite,
        device=args.device,
    )
    report = preprocess(config, progress=args.verbose or sys.stderr.isatty())
    print(report.summary("downsampled"), file=sys.stderr if not report.ok else sys.stdout)
    return 0 if report.ok else 1
