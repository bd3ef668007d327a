"""Denoise micrographs with Topaz's pretrained networks (same flags as ``topaz denoise``).

Each micrograph is standardised, optionally low-pass/Gaussian filtered, passed through the
denoiser(s) of -m in windows (tiles with context), and restored to its mean and σ (or
z-scored with --normalize; png/jpg always are). Outputs go to -o DIR as <name><suffix>.<format>,
or next to each input as <name><suffix or .denoised>.<format>; MRC outputs keep the input's
pixel size and carry true header statistics. Finished micrographs are skipped on a rerun
(--overwrite redoes them); an unreadable micrograph is reported by name, the others go on.

Tiling: -s/-p given: exactly Topaz's windows. Not given: Topaz's default tiles (1024) with 128
pixels of context instead of 500, laid out on Topaz's pooling grid and scaled by Topaz's window
statistics (a third less work; output within 1e-4 σ of Topaz's default). -s 0: whole images.

Unlike Topaz: -m is used (several models are averaged; "none" = filters only), --lowpass works,
outputs are written atomically and finished ones skipped. --inv-gaussian and --deconvolve
(which crash in Topaz) are refused. Training (-a/-b, --hdf) is not available yet.

Example:
  jaxpick denoise -o denoised/ micrographs/*.mrc
  jaxpick denoise -m unet-small --format png -o pngs/ micrographs/*.mrc
  jaxpick denoise --stack -o stack_denoised.mrcs stack.mrcs
"""

from __future__ import annotations

import argparse
import sys

from jaxpick.cli.common import add_device_args, apply_threads, enable_compilation_cache


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("micrographs", nargs="*", help="micrographs to denoise")
    parser.add_argument(
        "-o", "--output", default="", help="output folder (default: next to each input)"
    )
    parser.add_argument(
        "--suffix",
        default="",
        help="appended to output names (default: none with -o, else .denoised)",
    )
    parser.add_argument(
        "--format",
        dest="format_",
        default="mrc",
        choices=("mrc", "tiff", "tif", "png", "jpg", "jpeg"),
        help="output format (default: mrc); png and jpg imply --normalize",
    )
    parser.add_argument(
        "--normalize", action="store_true", help="z-score outputs instead of restoring the scale"
    )
    parser.add_argument(
        "--stack",
        action="store_true",
        help="the (first) input is an MRC stack; -o is the output file",
    )
    parser.add_argument("--save-prefix", help="training: path prefix of saved models")
    parser.add_argument(
        "--save-interval", type=int, default=10, help="training: save every N epochs (10)"
    )
    parser.add_argument(
        "-m",
        "--model",
        nargs="+",
        default=["unet"],
        help="denoiser(s), averaged: unet, unet-v0.2.1, unet-small, fcnn, affine (Topaz's "
        "pretrained), a Topaz .sav file, a jaxpick checkpoint, or none (default: unet)",
    )
    parser.add_argument("-a", "--dir-a", help="training: folder of images, part A")
    parser.add_argument("-b", "--dir-b", help="training: folder of images, part B")
    parser.add_argument("--hdf", help="training: HDF5 image stack instead of -a/-b")
    parser.add_argument("--preload", action="store_true", help="training: preload images")
    parser.add_argument(
        "--holdout", type=float, default=0.1, help="training: validation fraction (0.1)"
    )
    parser.add_argument(
        "--lowpass",
        type=float,
        default=1,
        help="hard low-pass filter at 0.5/LOWPASS cycles/pixel before denoising (default: 1 = "
        "none)",
    )
    parser.add_argument(
        "--gaussian", type=float, default=0, help="Gaussian pre-filter σ in pixels (default: 0)"
    )
    parser.add_argument(
        "--inv-gaussian", type=float, default=0, help="not supported (crashes in Topaz)"
    )
    parser.add_argument("--deconvolve", action="store_true", help="not supported")
    parser.add_argument("--deconv-patch", type=int, default=1, help="not supported")
    parser.add_argument(
        "--pixel-cutoff",
        type=float,
        default=0,
        help="set pixels more than this many σ from the mean to the mean (default: 0 = off)",
    )
    parser.add_argument(
        "-s",
        "--patch-size",
        type=int,
        default=None,
        help="denoise in tiles of this size, < 1: whole images (default: Topaz's 1024 tiles "
        "with jaxpick's reduced context)",
    )
    parser.add_argument(
        "-p",
        "--patch-padding",
        type=int,
        default=None,
        help="context around each tile (Topaz's default: 500; with neither -s nor -p, 128 "
        "laid out on Topaz's grid)",
    )
    parser.add_argument(
        "--method", choices=("noise2noise", "masked"), default="noise2noise", help="training"
    )
    parser.add_argument(
        "--arch",
        choices=("unet", "unet-small", "unet2", "unet3", "fcnet", "fcnet2", "affine"),
        default="unet",
        help="training: architecture (default: unet)",
    )
    parser.add_argument(
        "--optim", choices=("adam", "adagrad", "sgd"), default="adagrad", help="training"
    )
    parser.add_argument("--lr", type=float, default=0.001, help="training: learning rate")
    parser.add_argument(
        "--criteria", choices=("L0", "L1", "L2"), default="L2", help="training: loss (L2)"
    )
    parser.add_argument("-c", "--crop", type=int, default=800, help="training: crop size (800)")
    parser.add_argument("--batch-size", type=int, default=4, help="training: batch size (4)")
    parser.add_argument("--num-epochs", type=int, default=100, help="training: epochs (100)")
    parser.add_argument(
        "--num-workers", type=int, default=16, help="reader threads (capped at 4 for inference)"
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
        help="windows per network call (default: 1 on CPUs, from free memory on GPUs)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="redo micrographs whose output exists"
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="progress bar even when not a terminal"
    )
    parser.add_argument("--seed", type=int, default=0, help="training: random seed (0)")
    parser.add_argument(
        "--resume", action="store_true", help="training: continue from the last checkpoint"
    )
    add_device_args(parser, device_default=0)


def main(args: argparse.Namespace) -> int:
    apply_threads(args.num_threads)
    enable_compilation_cache()
    from jaxpick.denoise import DenoiseConfig, denoise, print_summary

    config = DenoiseConfig(
        inputs=tuple(args.micrographs),
        output=args.output,
        suffix=args.suffix,
        format=args.format_,
        normalize=args.normalize,
        stack=args.stack,
        models=tuple(args.model),
        lowpass=args.lowpass,
        gaussian=args.gaussian,
        inv_gaussian=args.inv_gaussian,
        deconvolve=args.deconvolve,
        deconv_patch=args.deconv_patch,
        pixel_cutoff=args.pixel_cutoff,
        patch_size=args.patch_size,
        patch_padding=args.patch_padding,
        dir_a=args.dir_a,
        dir_b=args.dir_b,
        hdf=args.hdf,
        preload=args.preload,
        holdout=args.holdout,
        save_prefix=args.save_prefix,
        save_interval=args.save_interval,
        method=args.method,
        arch=args.arch,
        optim=args.optim,
        lr=args.lr,
        criteria=args.criteria,
        crop=args.crop,
        batch_size=args.batch_size,
        num_epochs=args.num_epochs,
        num_workers=args.num_workers,
        device=args.device,
        precision=args.precision,
        tiles_per_batch=args.tiles_per_batch,
        num_readers=max(1, min(args.num_workers, 4)),
        overwrite=args.overwrite,
        seed=args.seed,
        resume=args.resume,
    )
    report = denoise(config, progress=args.verbose or sys.stderr.isatty())
    print_summary(report, "denoised")
    return 0 if report.ok else 1
