"""Convert a Topaz model (.sav file or pretrained name) into a jaxpick checkpoint directory.

The input is a model saved by ``topaz train`` (any architecture: resnet6/8/16, conv31/63/127,
with or without batch norm, pooling or dropout), one of Topaz's pretrained detectors as a .sav
file, or a pretrained name (resnet8, resnet8_u32, resnet8_u64, resnet16, resnet16_u32,
resnet16_u64; read from an installed topaz-em package, `pip install --no-deps topaz-em`).
The file is read without torch and without running any code stored in it. The architecture is
inferred from the file; the checkpoint records it with the source path and its sha256.

Any jaxpick command taking a model accepts the .sav file directly too; converting once saves
the conversion at every start and leaves no pickle in the pipeline.

Examples:
  jaxpick convert-model saved_models/model_epoch10.sav models/my_picker/
  jaxpick convert-model resnet16 models/resnet16_u64/
"""

from __future__ import annotations

import argparse
import sys

from jaxpick.checkpoint import ConvertModelConfig


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="Topaz .sav file or pretrained model name")
    parser.add_argument("output", help="checkpoint directory to write")
    parser.add_argument(
        "-f", "--force", action="store_true", help="replace an existing checkpoint directory"
    )


def main(args: argparse.Namespace) -> int:
    from jaxpick.checkpoint import convert_model

    config = ConvertModelConfig(source=args.model, output=args.output, overwrite=args.force)
    path, model_config = convert_model(config)
    fields = ", ".join(f"{k}={v}" for k, v in model_config.to_dict().items() if k != "arch")
    print(
        f"{model_config.arch} ({fields}; receptive field {model_config.receptive_field} px) "
        f"-> {path}",
        file=sys.stderr,
    )
    return 0
