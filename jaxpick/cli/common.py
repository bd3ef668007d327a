"""Flags shared by several commands, and what they do before JAX starts."""

from __future__ import annotations

import argparse
import os
import sys


def add_device_args(parser: argparse.ArgumentParser, *, device_default: int) -> None:
    """Topaz's ``-d/--device`` and ``-j/--num-threads``."""
    parser.add_argument(
        "-d",
        "--device",
        type=int,
        default=device_default,
        help="-1: CPU; k >= 0: accelerator k; -2: all local accelerators "
        f"(default: {device_default})",
    )
    parser.add_argument(
        "-j",
        "--num-threads",
        type=int,
        default=0,
        help="CPU threads: 0 = all available (default), N > 0 = the first N cores, "
        "N < 0 = all cores",
    )


def apply_threads(num_threads: int) -> None:
    """Limits this process to ``num_threads`` cores before JAX starts (XLA sizes its CPU thread
    pool from the cores it may use). Must run before the first JAX computation."""
    if num_threads <= 0 or not hasattr(os, "sched_setaffinity"):
        return
    cores = sorted(os.sched_getaffinity(0))
    if num_threads < len(cores):
        os.sched_setaffinity(0, cores[:num_threads])
    elif num_threads > len(cores):
        print(f"# -j {num_threads}: only {len(cores)} core(s) available", file=sys.stderr)


def split_formats(text: str) -> tuple[str, ...]:
    """``"mrc,png"`` → ``("mrc", "png")``."""
    return tuple(f.strip().lower() for f in text.split(",") if f.strip())


def enable_compilation_cache() -> None:
    """Keeps compiled XLA programs on disk between runs (``$JAXPICK_CACHE_DIR`` or
    ``~/.cache/jaxpick/xla``), so a second run on same-shaped micrographs skips compilation.
    Only the CLI calls this: library code never touches ``jax.config``."""
    cache = os.environ.get("JAXPICK_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "jaxpick", "xla"
    )
    if cache.lower() in ("", "0", "off", "none"):
        return
    import jax

    try:
        os.makedirs(cache, exist_ok=True)
    except OSError:
        return  # a read-only home: run without the cache
    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
