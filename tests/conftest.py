"""Shared fixtures. Test-only JAX settings live here, never in library code."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Four CPU devices so sharded code paths are exercised without a GPU. Must be set before JAX
# initialises its backends; harmless if JAX is never imported.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The CLI keeps compiled programs on disk; tests stay hermetic without it.
os.environ["JAXPICK_CACHE_DIR"] = "off"
if "--xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
    ).strip()

REPO_ROOT = Path(__file__).resolve().parent.parent
REAL_DATA = REPO_ROOT.parent / "shared" / "data" / "real"


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The third-party data folder ``../shared/data/real``; skips the test when it is absent."""
    if not REAL_DATA.is_dir():
        pytest.skip(
            f"real third-party data not found at {REAL_DATA} "
            "(it sits beside the repository in the team checkout; user checkouts lack it)"
        )
    return REAL_DATA


def real_files(*patterns: str) -> list[Path]:
    """Files under the real-data folder matching glob ``patterns`` (empty if the folder is absent).

    For ``pytest.mark.parametrize``; pair with the ``real_data`` fixture so a missing folder
    skips rather than silently collecting nothing.
    """
    if not REAL_DATA.is_dir():
        return []
    found: set[Path] = set()
    for pattern in patterns:
        found.update(p for p in REAL_DATA.glob(pattern) if p.is_file())
    return sorted(found)


def real_id(path: Path) -> str:
    return str(path.relative_to(REAL_DATA)) if REAL_DATA in path.parents else path.name
