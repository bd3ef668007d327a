"""jaxpick: particle picking and denoising for cryo-EM, compatible with Topaz.

Run ``jaxpick <command> -h`` for a command's options. Arguments can be read from a file with
``@args.txt`` (one argument per line), which avoids "Argument list too long" on big datasets:
``ls micrographs/*.mrc > files.txt; jaxpick preprocess @files.txt -o out/``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from types import ModuleType

from jaxpick._version import __version__
from jaxpick.cli import (
    convert,
    convert_model,
    demo,
    denoise,
    denoise3d,
    downsample,
    extract,
    normalize,
    precision_recall,
    preprocess,
    segment,
    simulate,
    split,
    train,
)
from jaxpick.errors import JaxpickError

# The explicit command list (the cryodrgn pattern): (group title, modules). Each module has a
# docstring (its help text), `add_args(parser)` and `main(args) -> int | None`.
COMMAND_GROUPS: tuple[tuple[str, tuple[tuple[str, ModuleType], ...]], ...] = (
    (
        "Particle picking",
        (
            ("train", train),
            ("extract", extract),
            ("segment", segment),
            ("precision_recall_curve", precision_recall),
            ("convert-model", convert_model),
        ),
    ),
    (
        "Image processing",
        (
            ("downsample", downsample),
            ("normalize", normalize),
            ("preprocess", preprocess),
            ("denoise", denoise),
            ("denoise3d", denoise3d),
        ),
    ),
    ("File utilities", (("convert", convert), ("split", split))),
    ("Synthetic data and demonstration", (("simulate", simulate), ("demo", demo))),
)


class _ArgumentFileParser(argparse.ArgumentParser):
    """Reads ``@file`` arguments like Topaz: one argument per line; blank lines are ignored."""

    def convert_arg_line_to_args(self, arg_line: str) -> list[str]:
        line = arg_line.strip()
        return [line] if line else []


def _summary(module: ModuleType) -> str:
    doc = (module.__doc__ or "").strip()
    return doc.splitlines()[0] if doc else ""


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-parser per command."""
    parser = _ArgumentFileParser(
        prog="jaxpick",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        fromfile_prefix_chars="@",
    )
    parser.add_argument("--version", action="version", version=f"jaxpick {__version__}")
    sub = parser.add_subparsers(title="commands", dest="command", metavar="<command>")
    for _group, commands in COMMAND_GROUPS:
        for name, module in commands:
            p = sub.add_parser(
                name,
                help=_summary(module),
                description=module.__doc__,
                formatter_class=argparse.RawDescriptionHelpFormatter,
                fromfile_prefix_chars="@",
            )
            module.add_args(p)
            p.set_defaults(_main=module.main)
    # Show the groups in the top-level help, the way `topaz -h` does.
    parser.epilog = "\n".join(
        f"{title}: " + ", ".join(name for name, _ in commands) for title, commands in COMMAND_GROUPS
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``jaxpick`` console script. Returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_main", None) is None:
        parser.print_help()
        return 2
    try:
        code = args._main(args)
    except JaxpickError as err:
        print(f"jaxpick {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"jaxpick {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
