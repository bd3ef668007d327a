"""Image names: how coordinate files refer to micrographs.

Coordinate files name micrographs in many ways (``mic_001``, ``mic_001.mrc``,
``MotionCorr/job003/mic_001.mrc``, ``>J1/imported/mic_001.mrc``). jaxpick matches them on the
*image name*: the file name without directories and without one known image extension (plus a
compression suffix such as ``.gz``). Topaz strips the same extensions but keeps directories, which
is the root of many "no training particles" reports (Topaz issues #113, #185, #221).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath

from jaxpick.errors import JaxpickError

#: Extensions of image files jaxpick reads, lower case, longest first within each family.
MRC_EXTENSIONS = (".mrc", ".mrcs", ".map", ".rec", ".st", ".ali", ".ccp4")
TIFF_EXTENSIONS = (".tiff", ".tif")
RASTER_EXTENSIONS = (".png", ".jpeg", ".jpg")
IMAGE_EXTENSIONS = MRC_EXTENSIONS + TIFF_EXTENSIONS + RASTER_EXTENSIONS
COMPRESSION_EXTENSIONS = (".gz", ".bz2")


def strip_image_extension(name: str) -> str:
    """Removes one known image extension (and a compression suffix before it), case-insensitively.

    >>> strip_image_extension("mic_001.mrc")
    'mic_001'
    >>> strip_image_extension("emd_3001.map.gz")
    'emd_3001'
    >>> strip_image_extension("stack_0005_2x_SumCorr")
    'stack_0005_2x_SumCorr'
    """
    lower = name.lower()
    for comp in COMPRESSION_EXTENSIONS:
        if lower.endswith(comp) and any(lower[: -len(comp)].endswith(e) for e in IMAGE_EXTENSIONS):
            name, lower = name[: -len(comp)], lower[: -len(comp)]
            break
    for ext in IMAGE_EXTENSIONS:
        if lower.endswith(ext) and len(name) > len(ext):
            return name[: -len(ext)]
    return name


def image_name(path_or_name: str | os.PathLike[str]) -> str:
    """The name a coordinate table uses for an image: no directories, no image extension.

    Handles POSIX and Windows separators and cryoSPARC's ``>`` project-relative marker.

    >>> image_name("MotionCorr/job003/Movies/mic_001.mrc")
    'mic_001'
    >>> image_name(">J1/imported/18jam15b_0345_ali_DW.mrcs")
    '18jam15b_0345_ali_DW'
    >>> image_name("F:\\\\data\\\\tomo_01.rec")
    'tomo_01'
    """
    text = os.fspath(path_or_name).strip()
    if text.startswith(">"):
        text = text[1:]
    base = PureWindowsPath(text).name if "\\" in text else PurePosixPath(text).name
    return strip_image_extension(base)


def is_image_path(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` has an extension jaxpick reads as an image."""
    lower = PurePath(path).name.lower()
    for comp in COMPRESSION_EXTENSIONS:
        if lower.endswith(comp):
            lower = lower[: -len(comp)]
            break
    return lower.endswith(IMAGE_EXTENSIONS)


def index_images(
    sources: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
) -> dict[str, Path]:
    """Maps image names to image files, from a folder or from a list of files and folders.

    Folders are scanned (not recursively) for files with a known image extension; files are
    taken as given. Two files with the same image name (``a.mrc`` and ``a.tiff``) are ambiguous
    and rejected rather than one of them being picked silently.

    Args:
      sources: a folder, an image file, or an iterable of either.

    Returns:
      ``{image_name: path}`` in sorted order of names.

    Raises:
      JaxpickError: a source does not exist, or two images share a name.
    """
    if isinstance(sources, str | os.PathLike):
        sources = [sources]
    found: dict[str, Path] = {}
    for source in sources:
        path = Path(source)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and is_image_path(p))
        elif path.is_file():
            files = [path]
        else:
            raise JaxpickError(f"{path}: no such image file or folder")
        for file in files:
            name = image_name(file)
            if name in found and found[name] != file:
                raise JaxpickError(
                    f"two images share the name {name!r}: {found[name]} and {file}; "
                    "keep one image per name in the folder"
                )
            found[name] = file
    return dict(sorted(found.items()))


def unmatched_names(wanted: Iterable[str], available: Iterable[str], *, limit: int = 5) -> str:
    """A readable report of the names in ``wanted`` missing from ``available`` ('' if none).

    Used wherever coordinates meet images, so that a name that matches no image is reported
    instead of silently dropped.
    """
    have = set(available)
    missing = sorted({n for n in wanted if n not in have})
    if not missing:
        return ""
    shown = ", ".join(repr(n) for n in missing[:limit])
    more = f" and {len(missing) - limit} more" if len(missing) > limit else ""
    example = next(iter(sorted(have)), None)
    hint = f" (images are named like {example!r})" if example is not None else " (no images found)"
    return f"{len(missing)} image name(s) match no image: {shown}{more}{hint}"
