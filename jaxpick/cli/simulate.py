"""Simulate micrographs with known particle centres (and even/odd pairs for Noise2Noise).

Particles are projections of a 3-D object at random orientations, modulated by a CTF, in white
noise at a chosen SNR; optional ice gradient, ice blobs and carbon edges act as distractors.
Writes micrographs (MRC with pixel size, or TIFF/PNG), the ground truth in any coordinate
format, and simulation.json. Same seed, same data.

Presets: easy (every picker looks perfect: smoke tests), medium (development), hard (SNR 0.01,
small particles, distractors: for comparing pickers). Flags override the preset.

Examples:
  jaxpick simulate -o sim/ -n 20 --preset hard --size 1024
  jaxpick simulate -o pairs/ -n 8 --pairs --snr 0.05 --coords coord,star
"""

from __future__ import annotations

import argparse

from jaxpick.io.coords import FORMATS


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", required=True, help="output folder")
    parser.add_argument(
        "-n", "--num-micrographs", type=int, default=10, help="number of micrographs (default: 10)"
    )
    parser.add_argument(
        "--preset",
        choices=("easy", "medium", "hard"),
        default="medium",
        help="difficulty preset (default: medium)",
    )
    parser.add_argument(
        "--size",
        type=int,
        nargs="+",
        metavar="N",
        help="micrograph size: N (square) or NY NX (default: 1024)",
    )
    parser.add_argument("--num-particles", type=int, help="particles per micrograph")
    parser.add_argument("-r", "--radius", type=float, help="particle radius in pixels")
    parser.add_argument(
        "--snr", type=float, help="signal variance over the particles / noise variance"
    )
    parser.add_argument("--pixel-size", type=float, help="pixel size in Å (header only)")
    parser.add_argument("--ice-blobs", type=int, help="ice blobs per micrograph")
    parser.add_argument(
        "--carbon-edge", type=float, help="probability that a micrograph has a carbon edge"
    )
    parser.add_argument(
        "--pairs",
        action="store_true",
        help="also write even/ and odd/ half-dose copies and clean/ images",
    )
    parser.add_argument(
        "--coords",
        default="coord,star",
        help="ground-truth formats, comma-separated, from: "
        + ", ".join(FORMATS)
        + " (default: coord,star)",
    )
    parser.add_argument(
        "--format",
        default="mrc",
        choices=("mrc", "tiff", "png"),
        help="micrograph file format (default: mrc)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--overwrite", action="store_true", help="rewrite micrographs that already exist"
    )


def main(args: argparse.Namespace) -> int:
    from jaxpick.errors import ConfigError
    from jaxpick.simulate import SimulationConfig, write_dataset

    overrides: dict[str, object] = {}
    if args.size is not None:
        if len(args.size) not in (1, 2):
            raise ConfigError(f"--size takes N or NY NX, got {args.size}")
        overrides["shape"] = (args.size[0], args.size[-1])
    for flag, field in (
        ("num_particles", "num_particles"),
        ("radius", "particle_radius"),
        ("snr", "snr"),
        ("pixel_size", "pixel_size"),
        ("ice_blobs", "ice_blobs"),
        ("carbon_edge", "carbon_edge"),
    ):
        if getattr(args, flag) is not None:
            overrides[field] = getattr(args, flag)
    overrides.setdefault("shape", (1024, 1024))
    config = SimulationConfig.preset(args.preset, seed=args.seed, **overrides)
    formats = tuple(f.strip() for f in args.coords.split(",") if f.strip())
    dataset = write_dataset(
        config,
        args.output,
        args.num_micrographs,
        pairs=args.pairs,
        coordinate_formats=formats,
        image_ext={"mrc": ".mrc", "tiff": ".tiff", "png": ".png"}[args.format],
        overwrite=args.overwrite,
        progress=True,
    )
    n = len(dataset.coordinates)
    print(
        f"wrote {len(dataset.micrographs)} micrographs ({config.shape[0]}x{config.shape[1]}, "
        f"{n} particles, preset {args.preset}, SNR {config.snr:g}) to {dataset.root}"
        + (f"; {dataset.skipped} existed and were kept" if dataset.skipped else "")
    )
    return 0
