"""Split one coordinate file into one file per micrograph (same flags as ``topaz split``).

Writes ``<output>/<image_name><suffix><ext>``; the extension is the input's unless --format asks
for another format. STAR input is grouped by micrograph name with directories and image
extensions stripped.

Example:
  jaxpick split particles.txt -o per_micrograph/ --suffix _picks
"""

from __future__ import annotations

import argparse
import math

from jaxpick.config import SplitConfig


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="coordinate file to split")
    parser.add_argument("-o", "--output", required=True, help="output folder")
    parser.add_argument(
        "--format",
        default="auto",
        choices=("auto", "coord", "star", "json", "csv"),
        help="output format (default: the input's)",
    )
    parser.add_argument("--suffix", default="", help="suffix appended to image names")
    parser.add_argument(
        "-t",
        "--threshold",
        type=float,
        default=-math.inf,
        help="keep particles with score >= threshold (default: all)",
    )


def main(args: argparse.Namespace) -> int:
    from jaxpick.convert import split_coordinates

    config = SplitConfig(
        input=args.file,
        output_dir=args.output,
        format=args.format,
        suffix=args.suffix,
        threshold=args.threshold,
    )
    split_coordinates(config)
    return 0
