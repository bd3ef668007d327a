"""The error types jaxpick raises for bad input. Standard library only."""

from __future__ import annotations

import os


class JaxpickError(Exception):
    """Base class for every error jaxpick raises on purpose (bad input, bad arguments).

    The CLI prints these as one clear line and exits non-zero; anything else is a bug.
    """


class FileFormatError(JaxpickError, ValueError):
    """A file could not be read or written: unreadable, truncated, corrupt or unsupported.

    The message always names the file and what is wrong with it.
    """

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ImageFormatError(FileFormatError):
    """An image file (MRC, TIFF, PNG, JPEG) is unreadable, corrupt or of an unsupported kind."""


class CoordinateFormatError(FileFormatError):
    """A coordinate file (Topaz, STAR, BOX, JSON, CBOX, CS, CSV) is malformed or unsupported."""


class ConfigError(JaxpickError, ValueError):
    """An invalid combination or value of options (the message names the option)."""
