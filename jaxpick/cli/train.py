"""Train a particle picker from labelled particles and unlabelled micrographs (PU learning).

Same flags and defaults as ``topaz train``. Differences, all deliberate:
  * --train-images takes a folder of images in any supported format (MRC, TIFF, PNG, JPEG), a
    Topaz image list (image_name path [source]) or the image files themselves;
  * --train-targets takes any coordinate format jaxpick reads;
  * -n sets π from the true disc area around each particle (Topaz 0.3 inflates it (2r+1)x;
    --legacy-pi reproduces that);
  * -k/--fold cross-validation works (Topaz ignores them);
  * --method also takes ``package.module:function``, your own objective (see the README);
  * checkpoints are jaxpick model folders <prefix>_epoch<N>/ that ``jaxpick extract -m``
    loads, and --resume continues a crashed run from the last one with the same result;
  * the curve TSV has one extra column, particle_auprc: the test set's picks (NMS with
    --eval-radius) matched to its particles, and a PNG of the curves is written beside -o.

Example:
  jaxpick train --train-images processed/ --train-targets particles.star -n 300 -r 3 \\
      -k 5 --fold 0 --save-prefix models/run1 -o models/run1.tsv
"""

from __future__ import annotations

import argparse
import sys

from jaxpick.cli.common import add_device_args, apply_threads, enable_compilation_cache


def _bool_flag(parser: argparse.ArgumentParser, name: str, default: bool, help: str) -> None:
    dest = name.replace("-", "_")
    group = parser.add_mutually_exclusive_group()
    group.add_argument(f"--{name}", dest=dest, action="store_true", help=help)
    group.add_argument(f"--no-{name}", dest=dest, action="store_false", help=f"not {help}")
    parser.set_defaults(**{dest: default})


def add_args(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data")
    data.add_argument(
        "--train-images", nargs="+", required=True, help="folder, image list or files"
    )
    data.add_argument("--train-targets", nargs="+", required=True, help="particle coordinates")
    data.add_argument("--test-images", nargs="+", default=[], help="held-out images")
    data.add_argument("--test-targets", nargs="+", default=[], help="held-out particles")
    data.add_argument(
        "--format", dest="format_", default="auto", help="coordinate format (read by extension)"
    )
    data.add_argument("--image-ext", default="", help="accepted for Topaz compatibility")
    data.add_argument("-k", "--k-fold", type=int, default=0, help="cross-validation folds")
    data.add_argument("--fold", type=int, default=0, help="the fold held out as test set")
    data.add_argument("--cross-validation-seed", type=int, default=42)
    data.add_argument("--num-workers", type=int, default=0, help="ignored: sampling is on device")
    data.add_argument("--preload", default="auto", help="ignored: images are always on device")

    method = parser.add_argument_group("training method")
    method.add_argument(
        "-n", "--num-particles", type=float, default=-1, help="expected particles per micrograph"
    )
    method.add_argument("--pi", type=float, help="fraction of pixels expected positive")
    method.add_argument(
        "--legacy-pi", action="store_true", help="Topaz 0.3's (2r+1)x inflated π from -n"
    )
    method.add_argument("-r", "--radius", type=int, default=3, help="positive radius (px)")
    method.add_argument(
        "--method",
        default="GE-binomial",
        help="PN, GE-KL, GE-binomial, PU, or package.module:function (default: GE-binomial)",
    )
    method.add_argument("--slack", type=float, default=-1, help="GE weight (<0: default)")
    method.add_argument("--autoencoder", type=float, default=0, help="reconstruction weight")
    method.add_argument("--l2", type=float, default=0.0, help="L2 penalty")
    method.add_argument("--learning-rate", type=float, default=2e-4)
    method.add_argument("--natural", action="store_true", help="not supported (crashes Topaz)")
    method.add_argument("--minibatch-size", type=int, default=256)
    method.add_argument("--minibatch-balance", type=float, default=0.0625)
    method.add_argument("--epoch-size", type=int, default=1000, help="updates per epoch")
    method.add_argument("--num-epochs", type=int, default=10)
    method.add_argument("--seed", type=int, default=0, help="same seed, same model")

    model = parser.add_argument_group("model")
    _bool_flag(model, "pretrained", True, "start from Topaz's pretrained detector")
    model.add_argument(
        "-m", "--model", default="resnet8", help="architecture, or a model file to continue"
    )
    model.add_argument("--units", type=int, default=32)
    model.add_argument("--dropout", type=float, default=0.0)
    _bool_flag(model, "bn", True, "batch normalisation")
    model.add_argument("--pooling", default="none", choices=("none", "max"))
    model.add_argument("--unit-scaling", type=int, default=2)
    model.add_argument("--ngf", type=int, default=32, help="generator width (autoencoder)")
    model.add_argument("-s", "--patch-size", type=int, default=96, help="accepted; 3-D only")
    model.add_argument("-p", "--patch-padding", type=int, default=48, help="accepted; 3-D only")
    model.add_argument("--describe", action="store_true", help="print the model and exit")

    output = parser.add_argument_group("output")
    output.add_argument("--save-prefix", help="checkpoints <prefix>_epoch<N>/")
    output.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    output.add_argument("-o", "--output", help="training curve TSV (default: stdout)")
    output.add_argument(
        "--eval-radius", type=int, help="NMS/matching radius of particle_auprc (default: -r)"
    )
    output.add_argument("--test-batch-size", type=int, default=1, help="accepted; unused")
    output.add_argument("-v", "--verbose", action="store_true", help="always show progress")
    add_device_args(parser, device_default=0)


def main(args: argparse.Namespace) -> int:
    apply_threads(args.num_threads)
    from jaxpick.config import TrainConfig
    from jaxpick.errors import ConfigError

    if args.natural:
        raise ConfigError("--natural: unbalanced minibatches are not supported (Topaz crashes)")
    config = TrainConfig(
        train_images=tuple(args.train_images),
        train_targets=tuple(args.train_targets),
        test_images=tuple(args.test_images),
        test_targets=tuple(args.test_targets),
        num_particles=args.num_particles,
        pi=args.pi,
        legacy_pi=args.legacy_pi,
        radius=args.radius,
        method=args.method,
        slack=args.slack,
        autoencoder=args.autoencoder,
        l2=args.l2,
        learning_rate=args.learning_rate,
        minibatch_size=args.minibatch_size,
        minibatch_balance=args.minibatch_balance,
        epoch_size=args.epoch_size,
        num_epochs=args.num_epochs,
        pretrained=args.pretrained,
        model=args.model,
        units=args.units,
        dropout=args.dropout,
        bn=args.bn,
        pooling=args.pooling,
        unit_scaling=args.unit_scaling,
        ngf=args.ngf,
        k_fold=args.k_fold,
        fold=args.fold,
        cross_validation_seed=args.cross_validation_seed,
        save_prefix=args.save_prefix,
        resume=args.resume,
        output=args.output,
        eval_radius=args.eval_radius,
        seed=args.seed,
        device=args.device,
    )
    if args.describe:
        from jaxpick.models import count_parameters
        from jaxpick.train import initial_picker

        model, model_config, description = initial_picker(config)
        print(f"{description}: {model_config}")
        print(
            f"receptive field {model_config.receptive_field} px, "
            f"{count_parameters(model):,} parameters"
        )
        return 0
    enable_compilation_cache()
    from jaxpick.train import train

    result = train(config, progress=args.verbose or sys.stderr.isatty())
    for path in result.checkpoints[-1:]:
        print(f"# last checkpoint: {path}", file=sys.stderr)
    return 0
