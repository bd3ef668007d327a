"""PNG and JPEG images (Pillow): grayscale reading as float32, and Topaz's 8-bit export.

Reading returns the pixel values as stored (8-bit 0..255, 16-bit PNG 0..65535, 32-bit integer or
float modes as they are), converted to float32. Colour is converted to luminance with the
ITU-R BT.601 weights Pillow uses for ``convert("L")`` (0.299 R + 0.587 G + 0.114 B), computed in
float64 without Pillow's rounding to integers, so a gray image stored as RGB reads back exactly.
Alpha is ignored. These files carry no pixel size.

Writing quantises like Topaz: ``round(clip(255 * (x + 3) / 6, 0, 255))`` to uint8, i.e. the range
-3..+3 maps onto 0..255. Topaz expects already-normalised input; by default we z-score the data
first (population standard deviation) so raw micrographs also come out sensible.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from jaxpick.errors import ImageFormatError
from jaxpick.io.atomic import atomic_path
from jaxpick.io.mrc import checked_file_size

#: ITU-R BT.601 luma weights (R, G, B), as Pillow's ``convert("L")``.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)

# Pillow modes read directly as one channel of numbers.
_GRAY_MODES = {"L", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"}
# JPEG quality for exports: well above Pillow's default 75, these are figures to look at.
_JPEG_QUALITY = 95


def rgb_to_luminance(rgb: np.ndarray) -> np.ndarray:
    """Luminance of an ``(..., 3)`` RGB array as float32 (BT.601 weights, float64 arithmetic)."""
    wide = np.asarray(rgb, dtype=np.float64)
    r, g, b = LUMA_WEIGHTS
    return (r * wide[..., 0] + g * wide[..., 1] + b * wide[..., 2]).astype(np.float32)


def _decode(img: PILImage.Image) -> np.ndarray:
    mode = img.mode
    if mode in _GRAY_MODES:
        return np.asarray(img).astype(np.float32)
    if mode == "1":
        return np.asarray(img.convert("L")).astype(np.float32)
    if mode == "LA":
        return np.asarray(img)[..., 0].astype(np.float32)
    if mode in ("RGB", "RGBA", "RGBX"):
        return rgb_to_luminance(np.asarray(img)[..., :3])
    # Palette, CMYK, YCbCr, LAB, HSV, ...: let Pillow produce RGB first.
    return rgb_to_luminance(np.asarray(img.convert("RGB")))


def _open_error(path: str | os.PathLike[str], err: Exception) -> ImageFormatError:
    if isinstance(err, UnidentifiedImageError):
        return ImageFormatError(path, "not a PNG or JPEG image (Pillow cannot identify it)")
    if isinstance(err, PILImage.DecompressionBombError):
        return ImageFormatError(path, f"image is implausibly large: {err}")
    return ImageFormatError(path, f"corrupt or truncated image: {type(err).__name__}: {err}")


def read_raster(path: str | os.PathLike[str]) -> np.ndarray:
    """Reads a PNG or JPEG (or another single-image format Pillow knows) as a float32 2-D array.

    Args:
      path: the file.

    Returns:
      ``(height, width)`` float32 values as stored; colour converted to luminance.

    Raises:
      ImageFormatError: missing/empty/unreadable, not an image, truncated or corrupt, or so large
        that Pillow's decompression-bomb guard refuses it (over about 179 million pixels).
    """
    checked_file_size(path)
    try:
        # Pillow warns above ~89 Mpx (a large K3 micrograph can get there) and refuses above
        # twice that; the warning is noise for our users, the refusal becomes our error.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            with PILImage.open(path) as img:
                img.load()
                return _decode(img)
    except Exception as err:  # Pillow raises OSError, SyntaxError, ValueError, ... on bad input
        raise _open_error(path, err) from err


def raster_shape(path: str | os.PathLike[str]) -> tuple[int, int]:
    """``(height, width)`` of a PNG/JPEG from its header, without decoding the pixels.

    Raises:
      ImageFormatError: as :func:`read_raster` for files whose header is bad.
    """
    checked_file_size(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            with PILImage.open(path) as img:
                width, height = img.size
    except Exception as err:
        raise _open_error(path, err) from err
    return (height, width)


def to_uint8(data: np.ndarray, *, standardize: bool = True) -> np.ndarray:
    """Topaz's 8-bit mapping ``round(clip(255 * (x + 3) / 6, 0, 255))``, optionally z-scored first.

    Args:
      data: real values, all finite.
      standardize: subtract the mean and divide by the population standard deviation first
        (a constant image maps to mid-gray). False gives Topaz's mapping of the raw values.

    Returns:
      uint8 array of the same shape.

    Raises:
      ValueError: complex, non-numeric or non-finite data.
    """
    x = np.asarray(data)
    if np.iscomplexobj(x) or x.dtype.kind not in "biuf":
        raise ValueError(f"cannot map {x.dtype} data to 8-bit gray")
    x = x.astype(np.float64)
    if not np.isfinite(x).all():
        raise ValueError("data contains NaN or infinite values")
    if standardize and x.size:
        x = x - x.mean()
        std = x.std()
        if std > 0:
            x = x / std
    # np.round rounds halves to even, like numpy-based Topaz.
    return np.round(np.clip(255.0 * (x + 3.0) / 6.0, 0.0, 255.0)).astype(np.uint8)


def write_png(path: str | os.PathLike[str], data: np.ndarray, *, standardize: bool = True) -> None:
    """Writes a 2-D array as an 8-bit grayscale PNG, or JPEG when the name ends in .jpg/.jpeg.

    The mapping is :func:`to_uint8`. Written atomically.

    Args:
      path: output file; ``.png``, ``.jpg`` or ``.jpeg`` (case-insensitive).
      data: a real 2-D array with finite values.
      standardize: z-score before mapping (default); False for Topaz's exact mapping of
        already-normalised data.

    Raises:
      ImageFormatError: other extension, not 2-D, empty, complex or non-finite data, OS error.
    """
    suffix = os.fspath(path).lower().rsplit(".", 1)[-1]
    formats = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG"}
    if suffix not in formats:
        raise ImageFormatError(path, "write_png writes .png, .jpg or .jpeg files only")
    arr = np.asarray(data)
    if arr.ndim != 2 or arr.size == 0:
        raise ImageFormatError(
            path, f"PNG/JPEG output holds one non-empty 2-D image, got shape {arr.shape}"
        )
    try:
        pixels = to_uint8(arr, standardize=standardize)
    except ValueError as err:
        raise ImageFormatError(path, str(err)) from None
    options = {"quality": _JPEG_QUALITY} if formats[suffix] == "JPEG" else {}
    try:
        with atomic_path(path) as tmp:
            PILImage.fromarray(pixels).save(tmp, format=formats[suffix], **options)
    except OSError as err:
        raise ImageFormatError(path, f"cannot write file: {err.strerror or err}") from err
