"""Run the whole jaxpick pipeline on a built-in simulated dataset and report what it measured.

Simulates a small dataset with exact ground truth, then runs every stage that exists on it
(writing and reading micrographs, coordinate conversion to every format, preprocessing,
training a picker on most micrographs, picking the held-out ones and evaluating the picks
against the truth), checks each stage's output against the truth, prints a summary and saves
results.json, the pictures (overlay.png, training_curve.png, precision_recall.png, picks.png)
and all intermediate files in the output folder.
"""

from __future__ import annotations

import argparse


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o", "--output", default="jaxpick-demo", help="output folder (default: jaxpick-demo)"
    )
    parser.add_argument(
        "-n", "--num-micrographs", type=int, default=8, help="micrographs to simulate (default: 8)"
    )
    parser.add_argument(
        "--size", type=int, default=512, help="micrograph side in pixels (default: 512)"
    )
    parser.add_argument(
        "--preset",
        choices=("easy", "medium", "hard"),
        default="medium",
        help="simulation difficulty (default: medium)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--train-steps", type=int, default=240, help="training updates (default: 240)"
    )
    parser.add_argument(
        "--minibatch-size", type=int, default=32, help="crops per update (default: 32)"
    )


def main(args: argparse.Namespace) -> int:
    from jaxpick.config import DemoConfig
    from jaxpick.demo import run_demo

    run_demo(
        DemoConfig(
            output_dir=args.output,
            num_micrographs=args.num_micrographs,
            size=args.size,
            preset=args.preset,
            seed=args.seed,
            train_steps=args.train_steps,
            minibatch_size=args.minibatch_size,
        )
    )
    return 0
