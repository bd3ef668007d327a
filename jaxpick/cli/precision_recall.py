"""Precision-recall curve and average precision of scored picks against ground-truth coordinates.

Same flags and output as ``topaz precision_recall_curve``: a header ``# auprc=A, mae=M``, then a
tab-separated table ``threshold precision recall f1`` with one row per distinct score,
descending. A prediction is a hit when an optimal one-to-one assignment pairs it with a target
closer than the radius (d < r). N, the denominator of recall, is the number of target rows.

--images chooses whose micrographs count: target (default: predictions on micrographs without
targets are ignored), predicted or union (such predictions are misses). As in Topaz, targets on
micrographs without predictions always count in N, so predicted and union agree.

The "mae" printed is Topaz's number, the square root of the mean distance between hits and
their targets (neither a mean absolute error nor an RMSE); -v also prints the mean distance
and the RMSE to standard error.

Coordinates may be in any format jaxpick reads (by extension; Topaz tables otherwise, with
'#' comment lines allowed); image names are matched without folders and image extensions.

Examples:
  jaxpick precision_recall_curve --predicted picks.txt --targets truth.txt -r 8
  jaxpick precision_recall_curve --predicted picks.star --targets truth.txt -r 8 \\
      --images union -o pr.tsv --plot pr.png
"""

from __future__ import annotations

import argparse
import math
import sys

# Kept here (not imported from jaxpick.metrics) so that `jaxpick -h` does not load numpy.
IMAGE_SETS = ("target", "predicted", "union")
FORMATS = ("auto", "coord", "star", "box", "json", "cbox", "cs", "csv", "via", "plain")


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--predicted",
        nargs="+",
        required=True,
        help="file(s) of predicted particle coordinates with scores",
    )
    parser.add_argument(
        "--targets", nargs="+", required=True, help="file(s) of target particle coordinates"
    )
    parser.add_argument(
        "-r",
        "--assignment-radius",
        required=True,
        type=float,
        help="maximum distance between a prediction and a target for them to match (pixels)",
    )
    parser.add_argument(
        "--images",
        choices=IMAGE_SETS,
        default="target",
        help="count particles on micrographs with coordinates in the targets file, the "
        "predicted file, or either (default: target)",
    )
    parser.add_argument(
        "--predicted-format",
        default="auto",
        choices=FORMATS,
        help="format of --predicted (default: by extension, else Topaz table)",
    )
    parser.add_argument(
        "--targets-format",
        default="auto",
        choices=FORMATS,
        help="format of --targets (default: by extension, else Topaz table)",
    )
    parser.add_argument("-o", "--output", help="also write the printed table to this file")
    parser.add_argument("--plot", metavar="PNG", help="also draw the curve into this PNG file")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="print counts, mean distance and RMSE of the hits to standard error",
    )


def main(args: argparse.Namespace) -> int:
    from jaxpick.metrics import PrecisionRecallConfig, precision_recall_curve

    config = PrecisionRecallConfig(
        predicted=tuple(args.predicted),
        targets=tuple(args.targets),
        radius=args.assignment_radius,
        images=args.images,
        predicted_format=args.predicted_format,
        targets_format=args.targets_format,
        output=args.output,
        plot=args.plot,
    )
    evaluation = precision_recall_curve(config)
    if args.verbose:
        print(
            f"# targets={evaluation.num_targets}, predictions={evaluation.num_predictions}, "
            f"hits={evaluation.num_hits}, images={len(evaluation.images)}, "
            f"mean_distance={_number(evaluation.mean_distance)}, "
            f"rmse={_number(evaluation.rmse)}, topaz_mae=sqrt(mean_distance)="
            f"{_number(evaluation.topaz_mae)}",
            file=sys.stderr,
        )
    return 0


def _number(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.4f}"
