"""Denoise tomograms with Topaz's pretrained 3-D U-Nets (same flags as ``topaz denoise3d``).

Each volume is standardised, cut into cubes of -s voxels with -p voxels of context (zero
outside the volume, as in Topaz), denoised cube by cube and restored to its mean and σ.
Outputs keep the input's extension: -o DIR/<name><suffix><ext>, or next to the input as
<name><suffix or .denoised><ext>; the MRC header carries the input's voxel size and true
statistics. Finished volumes are skipped on a rerun (--overwrite redoes them).

Unlike Topaz: -g smooths the denoised output as documented (Topaz filters a discarded copy of
the input). Training (-a/-b) is not available yet.

Example:
  jaxpick denoise3d -o denoised/ tomograms/*.rec
  jaxpick denoise3d -m unet-3d-20a -s 64 -p 32 tomo.mrc
"""

from __future__ import annotations

import argparse
import sys

from jaxpick.cli.common import add_device_args, apply_threads, enable_compilation_cache


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("volumes", nargs="*", help="volumes to denoise")
    parser.add_argument(
        "-o", "--output", default="", help="output folder (default: next to each input)"
    )
    parser.add_argument(
        "--suffix",
        default="",
        help="appended to output names (default: none with -o, else .denoised)",
    )
    parser.add_argument(
        "-m",
        "--model",
        default="unet-3d",
        help="unet-3d (= unet-3d-10a), unet-3d-20a, a Topaz .sav file or a jaxpick checkpoint "
        "(default: unet-3d)",
    )
    parser.add_argument("-a", "--even-train-path", help="training: even tomogram(s)")
    parser.add_argument("-b", "--odd-train-path", help="training: odd tomogram(s)")
    parser.add_argument(
        "--N-train", type=int, default=1000, help="training: sub-volumes per tomogram (1000)"
    )
    parser.add_argument(
        "--N-test", type=int, default=200, help="training: test sub-volumes per tomogram (200)"
    )
    parser.add_argument("-c", "--crop", type=int, default=96, help="training: tile size (96)")
    parser.add_argument(
        "--base-kernel-width",
        type=int,
        default=11,
        help="training: first kernel width of a new U-Net (11); loaded models carry theirs",
    )
    parser.add_argument(
        "--optim", choices=("adam", "adagrad", "sgd"), default="adagrad", help="training"
    )
    parser.add_argument("--lr", type=float, default=0.001, help="training: learning rate")
    parser.add_argument(
        "--criteria", choices=("L1", "L2"), default="L2", help="training: loss (L2)"
    )
    parser.add_argument("--momentum", type=float, default=0.8, help="training: momentum")
    parser.add_argument("--batch-size", type=int, default=10, help="training: batch size (10)")
    parser.add_argument("--num-epochs", type=int, default=500, help="training: epochs (500)")
    parser.add_argument(
        "-w", "--weight_decay", type=float, default=0, help="training: weight decay (0)"
    )
    parser.add_argument(
        "--save-interval", type=int, default=10, help="training: save every N epochs (10)"
    )
    parser.add_argument("--save-prefix", help="training: path prefix of saved models")
    parser.add_argument("--num-workers", type=int, default=1, help="reader threads (1)")
    parser.add_argument(
        "-g",
        "--gaussian",
        type=float,
        default=0,
        help="σ of a Gaussian filter on the denoised volume, in voxels (default: 0 = none)",
    )
    parser.add_argument(
        "-s",
        "--patch-size",
        type=int,
        default=96,
        help="denoise in cubes of this size, < 1: whole volumes (default: 96)",
    )
    parser.add_argument(
        "-p", "--patch-padding", type=int, default=48, help="context around each cube (48)"
    )
    parser.add_argument(
        "--precision",
        choices=("float32", "bfloat16"),
        default="float32",
        help="network compute precision (default: float32)",
    )
    parser.add_argument(
        "--tiles-per-batch",
        type=int,
        default=None,
        help="cubes per network call (default: 1 on CPUs, from free memory on GPUs)",
    )
    parser.add_argument("--overwrite", action="store_true", help="redo volumes whose output exists")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="progress bar even when not a terminal"
    )
    parser.add_argument("--seed", type=int, default=0, help="training: random seed (0)")
    parser.add_argument(
        "--resume", action="store_true", help="training: continue from the last checkpoint"
    )
    add_device_args(parser, device_default=-2)


def main(args: argparse.Namespace) -> int:
    apply_threads(args.num_threads)
    enable_compilation_cache()
    from jaxpick.denoise import Denoise3dConfig, denoise3d, print_summary

    config = Denoise3dConfig(
        inputs=tuple(args.volumes),
        output=args.output,
        suffix=args.suffix,
        model=args.model,
        gaussian=args.gaussian,
        patch_size=args.patch_size,
        patch_padding=args.patch_padding,
        even_train_path=args.even_train_path,
        odd_train_path=args.odd_train_path,
        n_train=args.N_train,
        n_test=args.N_test,
        crop=args.crop,
        base_kernel_width=args.base_kernel_width,
        optim=args.optim,
        lr=args.lr,
        criteria=args.criteria,
        momentum=args.momentum,
        batch_size=args.batch_size,
        num_epochs=args.num_epochs,
        weight_decay=args.weight_decay,
        save_interval=args.save_interval,
        save_prefix=args.save_prefix,
        num_workers=args.num_workers,
        device=args.device,
        precision=args.precision,
        tiles_per_batch=args.tiles_per_batch,
        num_readers=max(1, min(args.num_workers, 2)),
        overwrite=args.overwrite,
        seed=args.seed,
        resume=args.resume,
    )
    report = denoise3d(config, progress=args.verbose or sys.stderr.isatty())
    print_summary(report, "denoised")
    return 0 if report.ok else 1
