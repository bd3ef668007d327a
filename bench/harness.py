"""Shared benchmark plumbing: timing, peak memory, machine facts, and running Topaz beside us.

Each side of a comparison runs in its own fresh Python process (jaxpick in this interpreter's
environment, Topaz in its reference venv) so peak RSS is that side's alone and neither pays for
the other's imports. A side is a snippet of Python that prints one JSON object on its last line.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
DEFAULT_TOPAZ_VENV = REPO.parent / ".venv-topaz"

# Prepended to every side: a timer that reports the median of repeats and the peak RSS.
_PRELUDE = textwrap.dedent(
    """
    import json, resource, statistics, sys, time

    def timed(fn, repeats=3, warmup=1):
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return {"median_s": statistics.median(times), "min_s": min(times)}

    def peak_rss_gib():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    """
)


def topaz_python(venv: str | os.PathLike[str] | None = None) -> Path | None:
    """The reference venv's python (``$TOPAZ_VENV`` or ``../.venv-topaz``), or None if absent.

    Build it with ``bash ../shared/tools/topaz-venv.sh ../.venv-topaz``.
    """
    root = Path(venv or os.environ.get("TOPAZ_VENV", DEFAULT_TOPAZ_VENV))
    python = root / "bin" / "python"
    return python if python.exists() else None


def require_topaz(venv: str | os.PathLike[str] | None = None) -> Path:
    """`topaz_python`, or exit with a message saying how to build the reference venv."""
    python = topaz_python(venv)
    if python is None:
        raise SystemExit(
            "Topaz venv not found: bash ../shared/tools/topaz-venv.sh ../.venv-topaz "
            "(or set TOPAZ_VENV)"
        )
    return python


def run_side(python: str | os.PathLike[str], code: str, *, threads: int = 2) -> dict[str, Any]:
    """Runs ``code`` (after the timing prelude) in a fresh process; returns its last-line JSON."""
    env = dict(os.environ)
    # Same cores for both sides: torch and XLA read these.
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), JAX_PLATFORMS="cpu")
    script = _PRELUDE + "\n" + textwrap.dedent(code)
    proc = subprocess.run(
        [str(python), "-c", script], capture_output=True, text=True, env=env, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark side failed ({python}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine() -> dict[str, Any]:
    """Facts that make a figure comparable: CPU, cores, Python and package versions."""
    import importlib.metadata as md

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for package in ("jaxpick", "jax", "jaxlib", "flax", "numpy", "mrcfile", "tifffile"):
        try:
            versions[package] = md.version(package)
        except md.PackageNotFoundError:
            versions[package] = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "versions": versions,
    }
