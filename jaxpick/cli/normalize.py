"""Normalise (and optionally downsample) micrographs: ``topaz normalize``, the same as preprocess.

Per-micrograph normalisation with Topaz's two-component Gaussian mixture (or --affine), after
Fourier-crop downsampling by -s (default 1: none). See ``jaxpick preprocess -h``.
"""

from __future__ import annotations

import argparse

from jaxpick.cli import preprocess


def add_args(parser: argparse.ArgumentParser) -> None:
    preprocess.add_args(parser)


def main(args: argparse.Namespace) -> int:
    return preprocess.run(args, normalize=True, verb="normalised")
