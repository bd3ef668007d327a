"""TIFF images (tifffile): single images and multi-page stacks, with the pixel size when known.

The array is what ``tifffile.imread`` returns (the first image series: pages stacked on the
leading axis, any integer or float type, big- or little-endian), converted to native byte order.
Colour images are converted to luminance (see :func:`jaxpick.io.raster.rgb_to_luminance`); only
grayscale 2-D images and 3-D stacks are accepted.

Pixel size, in Å, is reported only from sources that state a physical length, in this order:

1. ImageJ metadata: the ``unit`` in the image description (Å, nm, µm/micron, mm, cm) with the
   XResolution tag (pixels per unit). ImageJ leaves the TIFF ResolutionUnit at "none".
2. FEI/Thermo Fisher SEM metadata: ``[Scan] PixelWidth`` in metres.
3. ResolutionUnit = centimetre with XResolution (TVIPS cameras write the real pixel size so).

Inch-based resolution is never trusted: it is a print/display density (DigitalMicrograph writes
72 dpi, FEI 64 dpi), not a sample spacing. Results outside 0.001-100,000 Å are discarded as
display settings too. Anything else gives ``None``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import tifffile

from jaxpick.errors import ImageFormatError
from jaxpick.io.atomic import atomic_path
from jaxpick.io.mrc import checked_file_size
from jaxpick.io.raster import rgb_to_luminance

#: Å per unit for the length units ImageJ writes in its ``unit=`` metadata (lower case).
_IMAGEJ_UNITS_ANGSTROM: dict[str, float] = {
    "a": 1.0,
    "å": 1.0,
    "\u212b": 1.0,  # ANGSTROM SIGN
    "\\u00c5": 1.0,  # ImageJ escapes non-ASCII characters like this in the description
    "angstrom": 1.0,
    "angstroms": 1.0,
    "nm": 10.0,
    "nanometer": 10.0,
    "nanometers": 10.0,
    "micron": 1e4,
    "microns": 1e4,
    "um": 1e4,
    "µm": 1e4,
    "μm": 1e4,
    "\\u00b5m": 1e4,
    "micrometer": 1e4,
    "micrometers": 1e4,
    "mm": 1e7,
    "cm": 1e8,
}
_PLAUSIBLE_PIXEL_ANGSTROM = (1e-3, 1e5)


@dataclass(frozen=True)
class TiffInfo:
    """What :func:`read_tiff_info` learns from the tags without decoding pixels.

    Attributes:
      shape: the shape :func:`read_tiff` returns, ``(ny, nx)`` or ``(pages, ny, nx)``.
      dtype: the dtype :func:`read_tiff` returns (float32 for colour images).
      pixel_size: Å per pixel, or None when not reliably known.
    """

    shape: tuple[int, ...]
    dtype: np.dtype
    pixel_size: float | None


def _plausible(size: float) -> float | None:
    lo, hi = _PLAUSIBLE_PIXEL_ANGSTROM
    return size if math.isfinite(size) and lo <= size <= hi else None


def _pixels_per_unit(page: tifffile.TiffPage) -> float | None:
    tag = page.tags.get("XResolution")
    if tag is None:
        return None
    value = tag.value
    num, den = (value if isinstance(value, tuple) else (value, 1))[:2]
    if not num or not den:
        return None
    return float(num) / float(den)


def _pixel_size(tif: tifffile.TiffFile) -> float | None:
    page = tif.pages.first
    per_unit = _pixels_per_unit(page)
    if tif.is_imagej:
        unit = str((tif.imagej_metadata or {}).get("unit", "")).strip().lower()
        if unit in _IMAGEJ_UNITS_ANGSTROM and per_unit:
            return _plausible(_IMAGEJ_UNITS_ANGSTROM[unit] / per_unit)
    if tif.is_fei:
        scan = (tif.fei_metadata or {}).get("Scan", {})
        width = scan.get("PixelWidth") if isinstance(scan, dict) else None
        if isinstance(width, int | float) and width > 0:
            return _plausible(float(width) * 1e10)
    if per_unit and page.resolutionunit == tifffile.RESUNIT.CENTIMETER:
        return _plausible(1e8 / per_unit)
    return None


def _layout(series: tifffile.TiffPageSeries, path: str | os.PathLike[str]) -> tuple[int, ...]:
    """The grayscale shape of a series, or ImageFormatError for layouts we do not handle."""
    shape = tuple(int(n) for n in series.shape)
    axes = series.axes
    if axes.endswith("S"):
        shape = shape[:-1]
    shape = tuple(n for n in shape if n != 1) if len(shape) > 3 else shape
    if len(shape) not in (2, 3):
        raise ImageFormatError(
            path,
            f"unsupported TIFF layout: axes {axes!r} shape {tuple(series.shape)}; "
            "expected one grayscale image or a stack of them",
        )
    if min(shape) == 0:
        raise ImageFormatError(path, f"TIFF image has an empty shape {tuple(series.shape)}")
    return shape


def _check_sizes(tif: tifffile.TiffFile, path: str | os.PathLike[str], file_size: int) -> None:
    """Refuses uncompressed series whose pixels cannot fit in the file (truncated or corrupt),
    before tifffile allocates the array."""
    series = tif.series[0]
    pages = [p for p in series.pages if p is not None]
    if all(getattr(p, "compression", 1) == 1 for p in pages):
        if series.nbytes > file_size:
            raise ImageFormatError(
                path,
                f"TIFF is truncated or corrupt: {series.nbytes} bytes of pixels declared, "
                f"the file has {file_size}",
            )
        for p in pages:
            for offset, count in zip(p.dataoffsets, p.databytecounts, strict=False):
                if offset + count > file_size:
                    raise ImageFormatError(
                        path, "TIFF is truncated: image data extends past the end of the file"
                    )


def _to_grayscale(data: np.ndarray, series: tifffile.TiffPageSeries) -> np.ndarray:
    if series.axes.endswith("S"):
        samples = data.shape[-1]
        if samples >= 3:
            return rgb_to_luminance(data[..., :3])
        data = data[..., 0]  # gray + alpha (or other extra samples): keep the gray channel
    if data.ndim > 3:
        data = data.reshape(tuple(n for n in data.shape if n != 1))
    native = data.dtype.newbyteorder("=")
    return data if data.dtype == native else data.astype(native)


def _open_error(path: str | os.PathLike[str], err: Exception) -> ImageFormatError:
    return ImageFormatError(path, f"not a readable TIFF file: {type(err).__name__}: {err}")


def read_tiff(path: str | os.PathLike[str]) -> tuple[np.ndarray, float | None]:
    """Reads a TIFF image or multi-page stack.

    Args:
      path: the file.

    Returns:
      ``(data, pixel_size)``: the first series as ``tifffile.imread`` gives it (stored dtype,
      native byte order; pages on the leading axis), colour converted to float32 luminance;
      the pixel size in Å or None (see the module docstring for the sources trusted).

    Raises:
      ImageFormatError: missing/empty/unreadable file, not a TIFF, truncated or corrupt data,
        or a layout other than one grayscale image or a stack of them.
    """
    size = checked_file_size(path)
    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise ImageFormatError(path, "TIFF file contains no images")
            series = tif.series[0]
            _layout(series, path)
            _check_sizes(tif, path, size)
            data = series.asarray()
            pixel_size = _pixel_size(tif)
            data = _to_grayscale(data, series)
    except ImageFormatError:
        raise
    except Exception as err:  # tifffile raises many types on corrupt input; report them all
        raise _open_error(path, err) from err
    return data, pixel_size


def read_tiff_info(path: str | os.PathLike[str]) -> TiffInfo:
    """Shape, dtype and pixel size of a TIFF from its tags, without decoding pixels.

    Raises:
      ImageFormatError: as :func:`read_tiff`, except that truncated pixel data in compressed
        files is only found when reading.
    """
    size = checked_file_size(path)
    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise ImageFormatError(path, "TIFF file contains no images")
            series = tif.series[0]
            shape = _layout(series, path)
            _check_sizes(tif, path, size)
            colour = series.axes.endswith("S") and series.shape[-1] >= 3
            dtype = np.dtype(np.float32) if colour else np.dtype(series.dtype).newbyteorder("=")
            return TiffInfo(shape=shape, dtype=dtype, pixel_size=_pixel_size(tif))
    except ImageFormatError:
        raise
    except Exception as err:
        raise _open_error(path, err) from err


def write_tiff(
    path: str | os.PathLike[str], data: np.ndarray, *, pixel_size: float | None = None
) -> None:
    """Writes a 2-D image or 3-D stack (one page per slice) as float32 TIFF, atomically.

    Args:
      path: output file.
      data: a real 2-D or 3-D array; converted to float32.
      pixel_size: Å per pixel, stored as XResolution/YResolution in pixels per centimetre
        (read back by :func:`read_tiff`, ImageJ and most viewers); None stores no resolution.

    Raises:
      ImageFormatError: not 2-D/3-D, empty, complex, a bad pixel size, or an OS error.
    """
    arr = np.asarray(data)
    if arr.ndim not in (2, 3) or arr.size == 0:
        raise ImageFormatError(
            path, f"TIFF output needs a non-empty 2-D or 3-D array, got shape {arr.shape}"
        )
    if np.iscomplexobj(arr) or arr.dtype.kind not in "biuf":
        raise ImageFormatError(path, f"cannot write {arr.dtype} data as a float32 TIFF")
    kwargs: dict[str, object] = {}
    if pixel_size is not None:
        if not (math.isfinite(pixel_size) and pixel_size > 0):
            raise ImageFormatError(
                path, f"pixel size must be positive and finite, got {pixel_size}"
            )
        per_cm = 1e8 / float(pixel_size)
        kwargs = {"resolution": (per_cm, per_cm), "resolutionunit": "CENTIMETER"}
    try:
        with atomic_path(path) as tmp:
            tifffile.imwrite(tmp, arr.astype(np.float32), photometric="minisblack", **kwargs)
    except OSError as err:
        raise ImageFormatError(path, f"cannot write file: {err.strerror or err}") from err
