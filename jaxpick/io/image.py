"""Reading and writing images whatever their format: MRC, TIFF, PNG, JPEG.

The format is decided from the content first and the name second: TIFF, PNG and JPEG files are
recognised by their magic bytes, gzip/bzip2 files are taken as compressed MRC (the only format
we read compressed), and anything else is MRC when the name says so or its header is plausible.
So ``mic.mrc`` that is really a TIFF is read as a TIFF, and a micrograph saved without an
extension is still found.

Every reader returns float32 data and the pixel size in Å when the file states one:

* MRC: the x voxel size when positive and finite; None when the cell is unset (0) or negative
  (Direct Electron writes -10 as a placeholder). A stated 1.0 is returned as is, although some
  writers use it as a placeholder (e.g. the micrograph_cleaner_em test file): it is what the
  header says, and callers let users override it.
* TIFF: see :mod:`jaxpick.io.tiff` (ImageJ unit metadata, FEI metadata, centimetre resolution).
* PNG/JPEG: always None.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import PurePath

import numpy as np

from jaxpick.errors import ImageFormatError
from jaxpick.io.mrc import (
    HEADER_BYTES,
    MrcHeader,
    MrcImage,
    checked_file_size,
    looks_like_mrc,
    plausible_mrc_header,
    read_mrc,
    read_mrc_header,
    write_mrc,
)
from jaxpick.io.names import (
    COMPRESSION_EXTENSIONS,
    MRC_EXTENSIONS,
    RASTER_EXTENSIONS,
    TIFF_EXTENSIONS,
)
from jaxpick.io.raster import raster_shape, read_raster, rgb_to_luminance, to_uint8, write_png
from jaxpick.io.tiff import TiffInfo, read_tiff, read_tiff_info, write_tiff

__all__ = [
    "Image",
    "ImageHeader",
    "MrcHeader",
    "MrcImage",
    "TiffInfo",
    "detect_format",
    "image_shape",
    "raster_shape",
    "read_image",
    "read_image_header",
    "read_mrc",
    "read_mrc_header",
    "read_raster",
    "read_tiff",
    "read_tiff_info",
    "rgb_to_luminance",
    "to_uint8",
    "write_image",
    "write_mrc",
    "write_png",
    "write_tiff",
]

#: Format names returned by :func:`detect_format` and stored in :attr:`Image.format`.
FORMATS = ("mrc", "tiff", "png", "jpeg")

_MAGIC = (
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"II+\x00", "tiff"),  # BigTIFF
    (b"MM\x00+", "tiff"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x1f\x8b", "mrc"),  # gzip: compressed MRC
    (b"BZh", "mrc"),  # bzip2: compressed MRC
)


@dataclass(frozen=True, eq=False)
class Image:
    """An image as the rest of jaxpick uses it.

    Attributes:
      data: float32, ``(ny, nx)`` or ``(nz, ny, nx)`` (MRC stacks/volumes and multi-page TIFFs
        are returned whole). With ``read_image(..., mmap=True)`` on a float32 MRC this is a
        read-only memory map.
      pixel_size: Å per pixel (x), or None when the file does not say (see the module notes).
      format: one of :data:`FORMATS`.
    """

    data: np.ndarray
    pixel_size: float | None
    format: str


@dataclass(frozen=True)
class ImageHeader:
    """An image's shape, stored dtype and pixel size, read without decoding the pixels.

    Attributes:
      shape: the shape :func:`read_image` returns.
      dtype: the stored element type (what the format-specific reader returns).
      pixel_size: as :attr:`Image.pixel_size`.
      format: one of :data:`FORMATS`.
    """

    shape: tuple[int, ...]
    dtype: np.dtype
    pixel_size: float | None
    format: str


def _extension_format(path: str | os.PathLike[str]) -> str | None:
    name = PurePath(path).name.lower()
    for comp in COMPRESSION_EXTENSIONS:
        if name.endswith(comp):
            return "mrc" if name[: -len(comp)].endswith(MRC_EXTENSIONS) else None
    if name.endswith(MRC_EXTENSIONS):
        return "mrc"
    if name.endswith(TIFF_EXTENSIONS):
        return "tiff"
    if name.endswith(RASTER_EXTENSIONS):
        return "png" if name.endswith(".png") else "jpeg"
    return None


def detect_format(path: str | os.PathLike[str]) -> str:
    """The format of an image file: ``"mrc"``, ``"tiff"``, ``"png"`` or ``"jpeg"``.

    Magic bytes win over the extension (a misnamed file is read for what it is); MRC, which has
    no magic number at offset 0, is recognised by its header (``MAP`` at byte 208, or a header
    that is plausible for the file size) or, failing that, by an MRC extension, in which case
    the MRC reader reports what is wrong with it.

    Raises:
      ImageFormatError: missing, empty or unreadable file, or content matching no format.
    """
    size = checked_file_size(path)
    try:
        with open(path, "rb") as f:
            head = f.read(HEADER_BYTES)
    except OSError as err:
        raise ImageFormatError(path, f"cannot read file: {err.strerror or err}") from None
    # A real MRC header (identifier and a size that matches) outranks magic bytes that its
    # first field may spell by chance; then magic bytes outrank the name.
    if head[208:211] == b"MAP" and plausible_mrc_header(head, size):
        return "mrc"
    for magic, fmt in _MAGIC:
        if head.startswith(magic):
            return fmt
    by_name = _extension_format(path)
    if by_name == "mrc" or looks_like_mrc(head, size):
        return "mrc"
    shown = head[:8].hex(" ")
    if by_name is not None:
        raise ImageFormatError(
            path, f"not a {by_name.upper()} file (content starts with bytes {shown})"
        )
    raise ImageFormatError(
        path,
        f"unrecognised image format (content starts with bytes {shown}); "
        "jaxpick reads MRC, TIFF, PNG and JPEG",
    )


def _mrc_pixel_size(header: MrcHeader) -> float | None:
    if header.voxel_size is None:
        return None
    x = header.voxel_size[0]
    return x if x > 0 else None


def _mrc_float32(path: str | os.PathLike[str], image: MrcImage) -> np.ndarray:
    header = image.header
    if header.mode in (3, 4):
        raise ImageFormatError(
            path,
            f"complex-valued MRC (mode {header.mode}) is not an image; "
            "micrographs and tomograms must be real",
        )
    data = image.data
    if header.imod_unsigned_bytes:
        data = data.view(np.uint8)
    if data.dtype == np.float32 and data.dtype.isnative:
        return data
    # np.array, not astype: astype on a memmap returns an (in-memory) object still typed memmap.
    return np.array(data, dtype=np.float32)


def read_image(path: str | os.PathLike[str], *, mmap: bool = False) -> Image:
    """Reads any supported image as float32 with its pixel size.

    Args:
      path: an MRC (optionally .gz/.bz2), TIFF, PNG or JPEG file.
      mmap: memory-map MRC data (uncompressed files). A float32 MRC in native byte order is then
        returned without a copy; other types are converted (copied) to float32 anyway. Ignored
        for other formats.

    Returns:
      The image; see :class:`Image`.

    Raises:
      ImageFormatError: unreadable, corrupt or unsupported file, or complex MRC data (the
        message names the file and the problem).
    """
    fmt = detect_format(path)
    if fmt == "mrc":
        image = read_mrc(path, mmap=mmap)
        return Image(_mrc_float32(path, image), _mrc_pixel_size(image.header), fmt)
    if fmt == "tiff":
        data, pixel_size = read_tiff(path)
        return Image(data.astype(np.float32, copy=False), pixel_size, fmt)
    return Image(read_raster(path), None, fmt)


def read_image_header(path: str | os.PathLike[str]) -> ImageHeader:
    """Shape, stored dtype and pixel size of an image, cheaply.

    Reads the MRC header (1024 bytes, plus the first 1024 decompressed bytes of .gz/.bz2
    files), the TIFF tags, or the PNG/JPEG header; no pixel data.

    Raises:
      ImageFormatError: as :func:`read_image` for problems visible in the header.
    """
    fmt = detect_format(path)
    if fmt == "mrc":
        header = read_mrc_header(path)
        return ImageHeader(header.shape, header.dtype, _mrc_pixel_size(header), fmt)
    if fmt == "tiff":
        info = read_tiff_info(path)
        return ImageHeader(info.shape, info.dtype, info.pixel_size, fmt)
    shape = raster_shape(path)
    return ImageHeader(shape, np.dtype(np.float32), None, fmt)


def image_shape(path: str | os.PathLike[str]) -> tuple[int, ...]:
    """The shape :func:`read_image` would return, ``(ny, nx)`` or ``(nz, ny, nx)``, from the
    header only (see :func:`read_image_header`)."""
    return read_image_header(path).shape


def write_image(
    path: str | os.PathLike[str], data: np.ndarray, *, pixel_size: float | None = None
) -> None:
    """Writes a real image in the format its extension names, atomically.

    * ``.mrc``, ``.mrcs`` and the other MRC extensions: float32 MRC (mode 2), voxel size =
      ``pixel_size`` on all axes; 3-D ``.mrcs`` is an image stack, other 3-D MRC a volume.
    * ``.tif``/``.tiff``: float32 TIFF, pixel size as centimetre resolution.
    * ``.png``/``.jpg``/``.jpeg``: 8-bit, z-scored then mapped like Topaz (±3 σ); 2-D only; the
      pixel size is not stored.

    Args:
      path: output file.
      data: a real 2-D array (3-D for MRC and TIFF too).
      pixel_size: Å per pixel, or None.

    Raises:
      ImageFormatError: unknown or compressed extension, complex data, a shape the format
        cannot hold, or a write error.
    """
    arr = np.asarray(data)
    if np.iscomplexobj(arr):
        raise ImageFormatError(path, "images must be real; got complex data")
    name = PurePath(path).name.lower()
    if name.endswith(COMPRESSION_EXTENSIONS):
        raise ImageFormatError(path, "writing compressed (.gz/.bz2) images is not supported")
    fmt = _extension_format(path)
    if fmt == "mrc":
        if arr.dtype.kind not in "biuf":
            raise ImageFormatError(path, f"cannot write {arr.dtype} data as an image")
        write_mrc(path, arr.astype(np.float32, copy=False), voxel_size=pixel_size)
    elif fmt == "tiff":
        write_tiff(path, arr, pixel_size=pixel_size)
    elif fmt in ("png", "jpeg"):
        write_png(path, arr)
    else:
        raise ImageFormatError(
            path,
            "unknown output image format; use .mrc, .mrcs, .tif, .tiff, .png, .jpg or .jpeg",
        )
