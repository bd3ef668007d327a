"""Convert particle coordinates between file formats (Topaz, RELION STAR, EMAN, crYOLO, cryoSPARC).

Same flags as ``topaz convert``. Input files are concatenated. Formats: coord (Topaz .txt), star
(RELION), box (EMAN .box, one file per micrograph), json (EMAN2 _info.json, one per micrograph),
cbox (crYOLO, one per micrograph), cs (cryoSPARC picks), csv (plain), via (Topaz's CSV).

Unlike Topaz, --invert-y and box output work, an output folder works for every per-micrograph
format, and cryoSPARC .cs files are read and written (the micrograph shapes come from
--imagedir). Coordinates whose micrograph is missing from --imagedir are reported, not dropped.

Examples:
  jaxpick convert particles.star -o particles.txt
  jaxpick convert picks.txt -o boxes/ --boxsize 128 -s 1 -x 4
  jaxpick convert picks.txt --invert-y --imagedir micrographs/ -o eman2/ --to json
"""

from __future__ import annotations

import argparse
import math

from jaxpick.config import ConvertConfig

FORMATS_IN = ("auto", "coord", "star", "box", "json", "cbox", "cs", "csv", "via")
FORMATS_OUT = ("auto", "coord", "star", "box", "json", "cbox", "cs", "csv", "via")


def _unset(value: float) -> float | None:
    # Topaz uses -1 for "not set" on these metadata flags; keep accepting that.
    return None if value is None or value < 0 else value


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", help="coordinate files to convert (concatenated)")
    parser.add_argument(
        "-o", "--output", help="output file or folder (ends with '/'); standard output if absent"
    )
    parser.add_argument(
        "--from",
        dest="from_format",
        default="auto",
        choices=FORMATS_IN,
        help="input format (default: by extension)",
    )
    parser.add_argument(
        "--to",
        dest="to_format",
        default="auto",
        choices=FORMATS_OUT,
        help="output format (default: by output extension; a folder gets box "
        "with --boxsize > 0, else json; standard output keeps the input format)",
    )
    parser.add_argument(
        "--suffix", default="", help="suffix appended to image names in per-micrograph file names"
    )
    parser.add_argument(
        "-t",
        "--threshold",
        type=float,
        default=-math.inf,
        help="keep particles with score >= threshold (default: all)",
    )
    parser.add_argument(
        "-s", "--down-scale", type=float, default=1, help="divide coordinates by this (default: 1)"
    )
    parser.add_argument(
        "-x",
        "--up-scale",
        type=float,
        default=1,
        help="multiply coordinates by this (default: 1); scaled coordinates are "
        "rounded to integers like Topaz",
    )
    parser.add_argument("--voltage", type=float, default=-1, help="voltage column for STAR output")
    parser.add_argument(
        "--detector-pixel-size",
        type=float,
        default=-1,
        help="detector pixel size column for STAR output",
    )
    parser.add_argument(
        "--magnification", type=float, default=-1, help="magnification column for STAR output"
    )
    parser.add_argument(
        "--amplitude-contrast",
        type=float,
        default=-1,
        help="amplitude contrast column for STAR output",
    )
    parser.add_argument(
        "--invert-y",
        action="store_true",
        help="flip y as height-1-y (EMAN2/TIFF convention); needs --imagedir",
    )
    parser.add_argument(
        "--imagedir",
        help="folder of the micrographs the input coordinates refer to (for "
        "--invert-y and cryoSPARC .cs output)",
    )
    parser.add_argument(
        "--image-ext",
        default=".mrc",
        help="extension appended to micrograph names in STAR/.cs output (default: .mrc)",
    )
    parser.add_argument(
        "--boxsize", type=int, default=0, help="box size in pixels for box/cbox output (default: 0)"
    )
    parser.add_argument("-v", "--verbose", type=int, default=0, help="verbosity (default: 0)")


def main(args: argparse.Namespace) -> int:
    from jaxpick.convert import convert_coordinates

    config = ConvertConfig(
        inputs=tuple(args.files),
        output=args.output,
        from_format=args.from_format,
        to_format=args.to_format,
        suffix=args.suffix,
        threshold=args.threshold,
        down_scale=args.down_scale,
        up_scale=args.up_scale,
        invert_y=args.invert_y,
        image_dir=args.imagedir,
        image_ext=args.image_ext,
        box_size=args.boxsize,
        voltage=_unset(args.voltage),
        detector_pixel_size=_unset(args.detector_pixel_size),
        magnification=_unset(args.magnification),
        amplitude_contrast=_unset(args.amplitude_contrast),
    )
    convert_coordinates(config, verbose=args.verbose > 0)
    return 0
