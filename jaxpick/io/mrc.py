"""MRC / CCP4 image files: reading every mode micrographs come in, and writing conformant files.

Reading parses the 1024-byte header itself (with :data:`mrcfile.dtypes.HEADER_DTYPE`, so the field
layout is mrcfile's) and reads the data block with numpy. The header is checked against the file
size *before* any data is touched, so a truncated or corrupt file is reported as
:class:`~jaxpick.errors.ImageFormatError` instead of causing an allocation of whatever size the
header claims (mrcfile allocates ``nsymbt`` and the data size up front). The arrays returned are
the arrays mrcfile returns (same dtype, shape and values; see :func:`read_mrc` for the one
documented difference, volume stacks), which the tests check on every real file we have.

Byte order comes from the machine stamp. When the stamp is missing or garbage (seen in the wild,
for example in files written by cryoDRGN's old writer), the byte order is the one under which the
header is plausible: a supported mode, positive dimensions and a data block that fits in the file.
If both orders are plausible, the one whose size matches the file exactly wins, then
little-endian. A stamp contradicted by the header (valid the other way round only) is overridden
silently, as mrcfile's permissive mode does with a warning. Nothing here warns: leniency is quiet.

Header statistics (dmin/dmax/dmean/rms) are never read: many writers leave them stale or
zero. Writers here always compute them from the data.
"""

from __future__ import annotations

import bz2
import datetime
import gzip
import math
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, BinaryIO

import numpy as np
from mrcfile.dtypes import HEADER_DTYPE

from jaxpick._version import __version__
from jaxpick.errors import ImageFormatError
from jaxpick.io.atomic import atomic_path

HEADER_BYTES = HEADER_DTYPE.itemsize  # 1024

#: Stored element type per supported mode, without byte order. Mode 3 is two int16 per value.
MODE_DTYPES: dict[int, str] = {0: "i1", 1: "i2", 2: "f4", 3: "i2", 4: "c8", 6: "u2", 12: "f2"}
#: Bytes per value in the file for each supported mode.
MODE_VALUE_BYTES: dict[int, int] = {0: 1, 1: 2, 2: 4, 3: 4, 4: 8, 6: 2, 12: 2}

_MODE_NAMES = {
    0: "int8",
    1: "int16",
    2: "float32",
    3: "complex int16",
    4: "complex float32",
    6: "uint16",
    12: "float16",
}
# Modes that exist somewhere but that we refuse, with the reason shown to the user.
_REFUSED_MODES = {
    5: "not defined in MRC2014",
    16: "RGB colour; micrographs must be grayscale",
    101: "IMOD's packed 4-bit format",
}

# IMOD marks its headers with this stamp at byte 152; bit 0 of the flags at byte 156 then says
# whether mode-0 bytes are signed. IMOD files without the bit hold unsigned bytes.
_IMOD_STAMP = 1146047817
_IMOD_STAMP_OFFSET = 152
_IMOD_FLAGS_OFFSET = 156
_MAP_ID_OFFSET = 208
_STAMP_OFFSET = 212

_GZIP_MAGIC = b"\x1f\x8b"
_BZIP2_MAGIC = b"BZh"
# Decompression reads this much at a time, so memory tracks the real stream length.
_READ_CHUNK_BYTES = 1 << 20
# Statistics and writing process the data in pieces of this many bytes (of stored values).
_WORK_CHUNK_BYTES = 1 << 24

# Header statistics meaning "not determined" in MRC2014 (dmax < dmin, dmean < both, rms < 0).
_UNDETERMINED_STATS = (0.0, -1.0, -2.0, -1.0)


def checked_file_size(path: str | os.PathLike[str]) -> int:
    """Returns the size of a regular, readable file, or raises :class:`ImageFormatError`.

    Shared by the image readers so a missing file, a folder or an empty file is reported the
    same way whatever the format.

    Args:
      path: the file.

    Returns:
      Its size in bytes (at least 1).

    Raises:
      ImageFormatError: missing, a folder, not a regular file, unreadable, or empty.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ImageFormatError(path, "file not found") from None
    except OSError as err:
        raise ImageFormatError(path, f"cannot access file: {err.strerror or err}") from None
    if os.path.isdir(path):
        raise ImageFormatError(path, "is a folder, not an image file")
    if not os.path.isfile(path):
        raise ImageFormatError(path, "not a regular file")
    if not os.access(path, os.R_OK):
        raise ImageFormatError(path, "file is not readable (permission denied)")
    if st.st_size == 0:
        raise ImageFormatError(path, "empty file (0 bytes)")
    return st.st_size


@dataclass(frozen=True)
class MrcHeader:
    """The parts of an MRC header callers need, already decoded with the right byte order.

    Attributes:
      nx: columns (fastest axis).
      ny: rows.
      nz: sections (images in a stack, or slices of a volume).
      mode: the MRC data mode.
      mx: sampling along x (voxel size x = cell x / mx).
      my: sampling along y.
      mz: sampling along z.
      cell: cell lengths (xlen, ylen, zlen) in Å, as stored.
      ispg: space group; 0 = image or image stack, 1 = volume, 401-630 = volume stack.
      nsymbt: bytes of extended header between the header and the data.
      exttyp: extended header type, e.g. ``"FEI1"``; empty when unset.
      nversion: MRC format version (20140/20141 for MRC2014, 0 for older files).
      axis_order: (mapc, mapr, maps). Stored order is kept; readers ignore this field (as
        mrcfile and Topaz do), it is reported for callers that care.
      origin: (xorg, yorg, zorg) in Å.
      labels: the non-empty text labels.
      byte_order: ``"<"`` or ``">"``, as decided from the stamp or the fallback.
      has_map_id: whether the ``MAP`` identifier is present (files without it are still read).
      machine_stamp: the four stamp bytes as stored.
      imod_unsigned_bytes: mode 0 data written by IMOD as *unsigned* bytes (IMOD stamp present,
        signed-bytes flag clear). :func:`read_mrc` still returns int8 (as mrcfile does);
        :func:`jaxpick.io.image.read_image` reinterprets the bytes as uint8.
      voxel_size: (x, y, z) in Å computed as mrcfile does (cell / m, in float32), negative values
        kept as stored, an axis with m == 0 or a non-finite result reported as 0.0, and ``None``
        when all three are 0 (cell unset).
    """

    nx: int
    ny: int
    nz: int
    mode: int
    mx: int
    my: int
    mz: int
    cell: tuple[float, float, float]
    ispg: int
    nsymbt: int
    exttyp: str
    nversion: int
    axis_order: tuple[int, int, int]
    origin: tuple[float, float, float]
    labels: tuple[str, ...]
    byte_order: str
    has_map_id: bool
    machine_stamp: bytes
    imod_unsigned_bytes: bool
    voxel_size: tuple[float, float, float] | None

    @property
    def shape(self) -> tuple[int, ...]:
        """The array shape :func:`read_mrc` returns.

        ``(ny, nx)`` for a single image (nz == 1 and ispg == 0), else ``(nz, ny, nx)``: like
        mrcfile, a one-section file whose space group says "volume" (ispg != 0) stays 3-D.
        """
        if self.nz == 1 and self.ispg == 0:
            return (self.ny, self.nx)
        return (self.nz, self.ny, self.nx)

    @property
    def dtype(self) -> np.dtype:
        """The dtype of the returned data, in native byte order (complex64 for mode 3)."""
        if self.mode == 3:
            return np.dtype(np.complex64)
        return np.dtype(MODE_DTYPES[self.mode])

    @property
    def data_offset(self) -> int:
        """Byte offset of the data block (header plus extended header)."""
        return HEADER_BYTES + self.nsymbt

    @property
    def data_nbytes(self) -> int:
        """Size of the data block in bytes."""
        return self.nx * self.ny * self.nz * MODE_VALUE_BYTES[self.mode]


@dataclass(frozen=True, eq=False)
class MrcImage:
    """An MRC file's data and header.

    Attributes:
      data: the stored values with the stored dtype (int8, int16, float32, complex64, uint16 or
        float16), shaped as :attr:`MrcHeader.shape`. Native byte order and writeable, except with
        ``mmap=True`` where it is a read-only :class:`numpy.memmap` in the file's byte order.
      header: the decoded header.
    """

    data: np.ndarray
    header: MrcHeader

    @property
    def voxel_size(self) -> tuple[float, float, float] | None:
        """(x, y, z) voxel size in Å as the header says; see :class:`MrcHeader`."""
        return self.header.voxel_size

    @property
    def mode(self) -> int:
        """The MRC mode."""
        return self.header.mode

    @property
    def nx(self) -> int:
        """Columns."""
        return self.header.nx

    @property
    def ny(self) -> int:
        """Rows."""
        return self.header.ny

    @property
    def nz(self) -> int:
        """Sections."""
        return self.header.nz

    @property
    def ispg(self) -> int:
        """Space group."""
        return self.header.ispg

    @property
    def exttyp(self) -> str:
        """Extended header type."""
        return self.header.exttyp

    @property
    def nsymbt(self) -> int:
        """Extended header size in bytes."""
        return self.header.nsymbt


# --------------------------------------------------------------------------------------------
# Header parsing and byte-order decision
# --------------------------------------------------------------------------------------------


def _parse(raw: bytes, order: str) -> np.void:
    return np.frombuffer(raw, dtype=HEADER_DTYPE.newbyteorder(order), count=1)[0]


def _mode_problem(mode: int) -> str:
    supported = ", ".join(f"{m} ({name})" for m, name in _MODE_NAMES.items())
    reason = _REFUSED_MODES.get(mode, "unknown mode")
    return f"unsupported MRC mode {mode} ({reason}); supported modes are {supported}"


def _header_problem(h: np.void, file_size: int | None) -> str | None:
    """Why ``h`` cannot describe this file, or None if it can. ``file_size`` None skips sizes."""
    mode = int(h["mode"])
    if mode not in MODE_DTYPES:
        return _mode_problem(mode)
    nx, ny, nz = int(h["nx"]), int(h["ny"]), int(h["nz"])
    if nx <= 0 or ny <= 0 or nz <= 0:
        return f"invalid dimensions nx={nx}, ny={ny}, nz={nz} in the header (must be positive)"
    nsymbt = int(h["nsymbt"])
    if nsymbt < 0:
        return f"invalid extended header size nsymbt={nsymbt} (negative)"
    if file_size is None:
        return None
    data_offset = HEADER_BYTES + nsymbt
    if data_offset > file_size:
        return (
            f"extended header of nsymbt={nsymbt} bytes extends past the end of the file "
            f"({file_size} bytes)"
        )
    needed = nx * ny * nz * MODE_VALUE_BYTES[mode]
    have = file_size - data_offset
    if needed > have:
        return (
            f"file is truncated or the header is corrupt: {nx}x{ny}x{nz} values in mode {mode} "
            f"need {needed} bytes of data after byte {data_offset}, but only {have} remain"
        )
    return None


def _stamp_byte_order(stamp: bytes) -> str | None:
    if stamp[0] == 0x44 and stamp[1] in (0x44, 0x41):
        return "<"
    if stamp[0] == 0x11 and stamp[1] == 0x11:
        return ">"
    return None


def _exact_size(h: np.void, file_size: int | None) -> bool:
    if file_size is None:
        return False
    nbytes = int(h["nx"]) * int(h["ny"]) * int(h["nz"]) * MODE_VALUE_BYTES[int(h["mode"])]
    return HEADER_BYTES + int(h["nsymbt"]) + nbytes == file_size


def _decide(path: str | os.PathLike[str], raw: bytes, file_size: int | None) -> MrcHeader:
    """Chooses the byte order and decodes the header, or raises ImageFormatError."""
    if len(raw) < HEADER_BYTES:
        raise ImageFormatError(
            path,
            f"file is too short for an MRC file: {len(raw)} bytes, "
            f"but the MRC header alone is {HEADER_BYTES} bytes",
        )
    raw = raw[:HEADER_BYTES]
    stamp_order = _stamp_byte_order(raw[_STAMP_OFFSET : _STAMP_OFFSET + 4])
    orders = (stamp_order, "<" if stamp_order == ">" else ">") if stamp_order else ("<", ">")
    parsed = {order: _parse(raw, order) for order in orders}
    problems = {order: _header_problem(parsed[order], file_size) for order in orders}
    good = [order for order in orders if problems[order] is None]
    if not good:
        # Report the reading whose mode at least makes sense, else the stamp's (or little-endian).
        with_mode = [o for o in orders if int(parsed[o]["mode"]) in MODE_DTYPES]
        order = with_mode[0] if with_mode else orders[0]
        raise ImageFormatError(path, problems[order] or "corrupt header")
    if len(good) == 2 and stamp_order is None:
        exact = [o for o in good if _exact_size(parsed[o], file_size)]
        order = exact[0] if len(exact) == 1 else "<"
    else:
        order = good[0]
    return _to_header(parsed[order], order, raw)


def _decode_text(value: bytes) -> str:
    return bytes(value).split(b"\x00", 1)[0].decode("ascii", errors="replace").strip()


def _voxel_size(h: np.void) -> tuple[float, float, float] | None:
    sizes = []
    for axis, m_field in (("x", "mx"), ("y", "my"), ("z", "mz")):
        m = int(h[m_field])
        # Same arithmetic as mrcfile (float32 cell / int32 m, promoted to float64, stored as
        # float32) so the values agree bit for bit.
        size = float(np.float32(np.float64(h["cella"][axis]) / m)) if m != 0 else 0.0
        sizes.append(size if math.isfinite(size) else 0.0)
    if all(s == 0.0 for s in sizes):
        return None
    return (sizes[0], sizes[1], sizes[2])


def _to_header(h: np.void, order: str, raw: bytes) -> MrcHeader:
    mode = int(h["mode"])
    int_dtype = np.dtype(order + "i4")
    imod_stamp = int(np.frombuffer(raw, int_dtype, count=1, offset=_IMOD_STAMP_OFFSET)[0])
    imod_flags = int(np.frombuffer(raw, int_dtype, count=1, offset=_IMOD_FLAGS_OFFSET)[0])
    labels = tuple(text for text in (_decode_text(lab) for lab in h["label"]) if text)
    return MrcHeader(
        nx=int(h["nx"]),
        ny=int(h["ny"]),
        nz=int(h["nz"]),
        mode=mode,
        mx=int(h["mx"]),
        my=int(h["my"]),
        mz=int(h["mz"]),
        cell=tuple(float(h["cella"][a]) for a in "xyz"),  # type: ignore[arg-type]
        ispg=int(h["ispg"]),
        nsymbt=int(h["nsymbt"]),
        exttyp=_decode_text(h["exttyp"]),
        nversion=int(h["nversion"]),
        axis_order=(int(h["mapc"]), int(h["mapr"]), int(h["maps"])),
        origin=tuple(float(h["origin"][a]) for a in "xyz"),  # type: ignore[arg-type]
        labels=labels,
        byte_order=order,
        has_map_id=raw[_MAP_ID_OFFSET : _MAP_ID_OFFSET + 3] == b"MAP",
        machine_stamp=bytes(raw[_STAMP_OFFSET : _STAMP_OFFSET + 4]),
        imod_unsigned_bytes=mode == 0 and imod_stamp == _IMOD_STAMP and not imod_flags & 1,
        voxel_size=_voxel_size(h),
    )


def plausible_mrc_header(raw: bytes, file_size: int | None) -> bool:
    """Whether ``raw`` (the first 1024+ bytes of a file) is a usable MRC header in either byte
    order: supported mode, positive dimensions, data that fits ``file_size`` (None: unchecked)."""
    if len(raw) < HEADER_BYTES:
        return False
    return any(_header_problem(_parse(raw[:HEADER_BYTES], o), file_size) is None for o in "<>")


def looks_like_mrc(raw: bytes, file_size: int | None) -> bool:
    """Whether the first bytes of a file look like an MRC header (for format sniffing).

    True when the ``MAP`` identifier is present, or when :func:`plausible_mrc_header` holds.

    Args:
      raw: at least the first 1024 bytes of the (decompressed) file.
      file_size: the file size in bytes, or None to skip the size check.
    """
    if len(raw) >= HEADER_BYTES and raw[_MAP_ID_OFFSET : _MAP_ID_OFFSET + 3] == b"MAP":
        return True
    return plausible_mrc_header(raw, file_size)


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def _compression(path: str | os.PathLike[str], file_size: int) -> str | None:
    """ "gzip", "bzip2" or None, from the content (not the name: names lie)."""
    try:
        with open(path, "rb") as f:
            head = f.read(HEADER_BYTES)
    except OSError as err:
        raise ImageFormatError(path, f"cannot read file: {err.strerror or err}") from None
    if head[:2] == _GZIP_MAGIC:
        compression = "gzip"
    elif head[:3] == _BZIP2_MAGIC:
        compression = "bzip2"
    else:
        return None
    # An uncompressed MRC with nx = 35615 (+ k * 65536) starts with the gzip magic bytes; its
    # header is plausible for the file size, a compressed stream's almost never is.
    return None if plausible_mrc_header(head, file_size) else compression


def _open_decompressed(path: str | os.PathLike[str], compression: str) -> IO[bytes]:
    if compression == "gzip":
        return gzip.open(path, "rb")
    return bz2.open(path, "rb")


def _read_up_to(f: BinaryIO | IO[bytes], limit: int) -> bytearray:
    """Reads at most ``limit`` bytes in chunks, so memory follows what the stream really holds
    rather than what a corrupt header claims."""
    buf = bytearray()
    while len(buf) < limit:
        chunk = f.read(min(_READ_CHUNK_BYTES, limit - len(buf)))
        if not chunk:
            break
        buf += chunk
    return buf


_DECOMPRESSION_ERRORS = (OSError, EOFError, zlib.error, ValueError)


def read_mrc_header(path: str | os.PathLike[str]) -> MrcHeader:
    """Reads and checks an MRC header without reading the data.

    For uncompressed files the data block size is checked against the file size. For gzip or
    bzip2 files only the first 1024 bytes are decompressed, so a truncated data block is only
    detected by :func:`read_mrc`.

    Args:
      path: an MRC file, optionally gzip- or bzip2-compressed (detected from the content).

    Returns:
      The decoded header.

    Raises:
      ImageFormatError: unreadable file, header shorter than 1024 bytes, unsupported mode,
        impossible dimensions, or (uncompressed) data block larger than the file.
    """
    size = checked_file_size(path)
    compression = _compression(path, size)
    try:
        if compression is None:
            with open(path, "rb") as f:
                return _decide(path, f.read(HEADER_BYTES), size)
        with _open_decompressed(path, compression) as f:
            raw = _read_up_to(f, HEADER_BYTES)
    except ImageFormatError:
        raise
    except _DECOMPRESSION_ERRORS as err:
        raise ImageFormatError(path, f"cannot read {compression or 'file'}: {err}") from None
    return _decide(path, bytes(raw), None)


def _mode3_to_complex(pairs: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    pairs = pairs.reshape(*shape, 2)
    out = np.empty(shape, dtype=np.complex64)
    out.real = pairs[..., 0]
    out.imag = pairs[..., 1]
    return out


def _finish(raw_values: np.ndarray, header: MrcHeader) -> np.ndarray:
    """Shapes raw values read from the file and converts them to native byte order."""
    if header.mode == 3:
        return _mode3_to_complex(raw_values, header.shape)
    data = raw_values.reshape(header.shape)
    native = data.dtype.newbyteorder("=")
    if data.dtype != native:
        data = data.astype(native)
    return data


def read_mrc(path: str | os.PathLike[str], *, mmap: bool = False) -> MrcImage:
    """Reads an MRC / CCP4 file (image, stack or volume), optionally memory-mapped.

    The array is what ``mrcfile.open(path, permissive=True).data`` gives (same dtype up to byte
    order, shape and values) with one deliberate difference: volume stacks (ispg 401-630),
    which mrcfile returns as 4-D, are returned 3-D ``(nz, ny, nx)``; the header keeps ispg and
    mz for callers that need to split them. The axis order fields (mapc/mapr/maps) are ignored,
    as mrcfile and Topaz do.

    Args:
      path: the file; gzip- and bzip2-compressed files are recognised by their content.
      mmap: map the data instead of reading it. Ignored (the data is read) for compressed files
        and for mode 3, whose int16 pairs must be converted to complex64.

    Returns:
      The data and header. See :class:`MrcImage` for dtype, byte order and writeability.

    Raises:
      ImageFormatError: missing/empty/unreadable file, header shorter than 1024 bytes,
        unsupported mode (the message names the mode), impossible dimensions, an extended header
        or data block extending past the end of the file, or corrupt compressed data.
    """
    size = checked_file_size(path)
    compression = _compression(path, size)
    try:
        if compression is not None:
            return _read_compressed(path, compression)
        with open(path, "rb") as f:
            header = _decide(path, f.read(HEADER_BYTES), size)
            stored = np.dtype(header.byte_order + MODE_DTYPES[header.mode])
            count = header.nx * header.ny * header.nz * (2 if header.mode == 3 else 1)
            if mmap and header.mode != 3:
                data = np.memmap(
                    path, dtype=stored, mode="r", offset=header.data_offset, shape=header.shape
                )
                return MrcImage(data=data, header=header)
            f.seek(header.data_offset)
            values = np.fromfile(f, dtype=stored, count=count)
    except OSError as err:
        raise ImageFormatError(path, f"cannot read file: {err.strerror or err}") from None
    if values.size != count:  # the file shrank between the size check and the read
        raise ImageFormatError(path, "file is truncated: data block ended early")
    return MrcImage(data=_finish(values, header), header=header)


def _read_compressed(path: str | os.PathLike[str], compression: str) -> MrcImage:
    try:
        with _open_decompressed(path, compression) as f:
            raw = bytes(_read_up_to(f, HEADER_BYTES))
            if len(raw) < HEADER_BYTES:
                _decide(path, raw, None)  # raises "too short"
            # Bound the read by the largest size a plausible header reading asks for; the
            # decompressed size is unknown until the stream is read.
            limits = [
                int(h["nsymbt"])
                + int(h["nx"]) * int(h["ny"]) * int(h["nz"]) * MODE_VALUE_BYTES[int(h["mode"])]
                for h in (_parse(raw, o) for o in "<>")
                if _header_problem(h, None) is None
            ]
            if not limits:
                _decide(path, raw, None)  # raises with the right message
            body = _read_up_to(f, max(limits) + 1)
    except ImageFormatError:
        raise
    except _DECOMPRESSION_ERRORS as err:
        raise ImageFormatError(path, f"corrupt or truncated {compression} data: {err}") from None
    header = _decide(path, raw, HEADER_BYTES + len(body))
    stored = np.dtype(header.byte_order + MODE_DTYPES[header.mode])
    count = header.nx * header.ny * header.nz * (2 if header.mode == 3 else 1)
    values = np.frombuffer(body, dtype=stored, count=count, offset=header.nsymbt)
    # frombuffer over a bytearray gives a writeable array, like the uncompressed path.
    return MrcImage(data=_finish(values, header), header=header)


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------

_DEFAULT_MODE_FOR_DTYPE = {
    "i1": 0,
    "i2": 1,
    "f4": 2,
    "f8": 2,
    "c8": 4,
    "c16": 4,
    "u1": 6,  # widened to uint16, lossless (mrcfile does the same)
    "u2": 6,
    "f2": 12,
}


def _default_mode(path: str | os.PathLike[str], dtype: np.dtype) -> int:
    key = f"{dtype.kind}{dtype.itemsize}"
    if key not in _DEFAULT_MODE_FOR_DTYPE:
        raise ImageFormatError(
            path,
            f"no MRC mode stores {dtype} data; convert it (e.g. to float32) or pass mode=",
        )
    return _DEFAULT_MODE_FOR_DTYPE[key]


def _check_integral(path: str | os.PathLike[str], values: np.ndarray, mode: int) -> None:
    """Raises unless every value is an integer representable in the mode's integer type."""
    info = np.iinfo(MODE_DTYPES[mode])
    if values.dtype.kind in "iub":
        lo, hi = (int(values.min()), int(values.max())) if values.size else (0, 0)
        if lo < info.min or hi > info.max:
            raise ImageFormatError(
                path, f"values {lo}..{hi} do not fit mode {mode} ({info.min}..{info.max})"
            )
        return
    finite = np.isfinite(values)
    if not finite.all():
        raise ImageFormatError(path, f"NaN or infinite values cannot be stored in mode {mode}")
    if not np.array_equal(values, np.round(values)):
        raise ImageFormatError(
            path, f"mode {mode} stores integers but the data has fractional values"
        )
    lo, hi = float(values.min()), float(values.max())
    if lo < info.min or hi > info.max:
        raise ImageFormatError(
            path, f"values {lo:g}..{hi:g} do not fit mode {mode} ({info.min}..{info.max})"
        )


def _convert_for_mode(path: str | os.PathLike[str], data: np.ndarray, mode: int) -> np.ndarray:
    """Returns the array to store, little-endian, shaped like ``data`` (mode 3: ``(..., 2)``)."""
    complex_in = np.iscomplexobj(data)
    if mode not in MODE_DTYPES:
        raise ImageFormatError(path, _mode_problem(mode))
    if data.dtype.kind not in "biufc":
        raise ImageFormatError(path, f"cannot store {data.dtype} data in an MRC file")
    target = np.dtype("<" + MODE_DTYPES[mode])
    if mode == 3:
        real = np.real(data)
        imag = np.imag(data) if complex_in else np.zeros_like(real)
        _check_integral(path, real, 3)
        _check_integral(path, imag, 3)
        pairs = np.empty((*data.shape, 2), dtype=target)
        pairs[..., 0] = real
        pairs[..., 1] = imag
        return pairs
    if complex_in and mode != 4:
        raise ImageFormatError(
            path, f"complex data can only be written in mode 3 or 4, not mode {mode}"
        )
    if mode in (0, 1, 6):
        _check_integral(path, data, mode)
        return data.astype(target)
    with np.errstate(over="ignore", invalid="ignore"):
        out = data.astype(target)
    # Rounding to float32/float16 is accepted (float64 input is normal); overflow is not.
    if not np.array_equal(np.isfinite(out), np.isfinite(data)):
        raise ImageFormatError(
            path, f"values overflow {_MODE_NAMES[mode]} (mode {mode}); rescale the data first"
        )
    return out


def _flat_chunks(values: np.ndarray) -> Iterator[np.ndarray]:
    flat = values.reshape(-1)
    step = max(1, _WORK_CHUNK_BYTES // max(1, flat.itemsize))
    for start in range(0, flat.size, step):
        yield flat[start : start + step]


def _stats(stored: np.ndarray, mode: int) -> tuple[float, float, float, float]:
    """dmin, dmax, dmean, rms of the stored values with float64 accumulation, in chunks so a
    large volume never needs a float64 copy of itself."""
    if mode in (3, 4):
        values = _mode3_to_complex(stored, stored.shape[:-1]) if mode == 3 else stored
        wide_type: type = np.complex128
    else:
        values, wide_type = stored, np.float64
    n = values.size
    total = sum(complex(chunk.sum(dtype=wide_type)) for chunk in _flat_chunks(values))
    mean = total / n if mode in (3, 4) else total.real / n
    sq = 0.0
    for chunk in _flat_chunks(values):
        dev = chunk.astype(wide_type) - mean
        sq += float(np.vdot(dev, dev).real)  # sum of |x - mean|^2, via BLAS
    rms = math.sqrt(sq / n) if math.isfinite(sq) else math.nan
    if mode in (3, 4):
        # MRC2014 defines no min/max/mean for complex data: mark them undetermined and keep the
        # rms, as mrcfile does.
        dmin, dmax, dmean, _ = _UNDETERMINED_STATS
        return (dmin, dmax, dmean, rms if math.isfinite(rms) else -1.0)
    lo = min(float(chunk.min()) for chunk in _flat_chunks(values))
    hi = max(float(chunk.max()) for chunk in _flat_chunks(values))
    if not all(math.isfinite(v) for v in (lo, hi, float(mean.real), rms)):
        return _UNDETERMINED_STATS
    return (lo, hi, float(mean.real), rms)


def _cell_length(voxel: float, m: int) -> np.float32:
    """The float32 cell length whose voxel size (cell / m, as readers compute it) is nearest to
    ``voxel``. With m = n (the convention) the exact float32(voxel) is not always reachable;
    then the result is within one float32 ulp."""
    base = np.float32(voxel * m)
    candidates = [base]
    up = down = base
    for _ in range(2):
        up = np.nextafter(up, np.float32(np.inf))
        down = np.nextafter(down, np.float32(-np.inf))
        candidates += [up, down]

    def error(c: np.float32) -> float:
        return abs(float(np.float32(np.float64(c) / m)) - voxel)

    return min(candidates, key=error)


def _voxel_triple(
    path: str | os.PathLike[str], voxel_size: float | tuple[float, float, float] | None
) -> tuple[float, float, float] | None:
    if voxel_size is None:
        return None
    if isinstance(voxel_size, tuple | list | np.ndarray):
        values = tuple(float(v) for v in voxel_size)
        if len(values) != 3:
            raise ImageFormatError(path, f"voxel size needs 3 values (x, y, z), got {voxel_size}")
    else:
        values = (float(voxel_size),) * 3
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise ImageFormatError(path, f"voxel size must be positive and finite, got {voxel_size}")
    return values  # type: ignore[return-value]


def _label_bytes(text: str) -> bytes:
    return text.encode("ascii", errors="replace")[:80]


def _build_header(
    shape: tuple[int, ...],
    mode: int,
    voxel: tuple[float, float, float] | None,
    stats: tuple[float, float, float, float],
    stack: bool,
    label: str | None,
) -> np.ndarray:
    if len(shape) == 2:
        nz, (ny, nx) = 1, shape
        ispg, mz = 0, 1
    else:
        nz, ny, nx = shape
        # A one-section 3-D array must be written as a volume or readers return it 2-D.
        is_stack = stack and nz > 1
        ispg, mz = (0, 1) if is_stack else (1, nz)
    h = np.zeros((), dtype=HEADER_DTYPE.newbyteorder("<"))
    h["nx"], h["ny"], h["nz"] = nx, ny, nz
    h["mode"] = mode
    h["mx"], h["my"], h["mz"] = nx, ny, mz
    if voxel is not None:
        for axis, v, m in zip("xyz", voxel, (nx, ny, mz), strict=True):
            h["cella"][axis] = _cell_length(v, m)
    h["cellb"]["alpha"] = h["cellb"]["beta"] = h["cellb"]["gamma"] = 90.0
    h["mapc"], h["mapr"], h["maps"] = 1, 2, 3
    h["dmin"], h["dmax"], h["dmean"], h["rms"] = stats
    h["ispg"] = ispg
    h["nsymbt"] = 0
    # 20141 is the MRC2014 revision that added mode 12; older readers accept 20140 for the rest.
    h["nversion"] = 20141 if mode == 12 else 20140
    h["map"] = b"MAP "
    h["machst"] = (0x44, 0x44, 0, 0)
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    labels = [f"jaxpick {__version__} {stamp}"] + ([label] if label else [])
    for i, text in enumerate(labels):
        h["label"][i] = _label_bytes(text)
    h["nlabl"] = len(labels)
    return h


def _write_values(f: BinaryIO, stored: np.ndarray) -> None:
    for chunk in _flat_chunks(np.ascontiguousarray(stored)):
        chunk.tofile(f)


def write_mrc(
    path: str | os.PathLike[str],
    data: np.ndarray,
    *,
    voxel_size: float | tuple[float, float, float] | None = None,
    mode: int | None = None,
    label: str | None = None,
    stack: bool | None = None,
) -> None:
    """Writes a 2-D image or a 3-D stack/volume as an MRC2014 file, atomically.

    The header has the right nx/ny/nz and mode, mx/my/mz = nx/ny/(nz for volumes, 1 for stacks)
    with the cell set so that ``cell / m`` reads back as the voxel size (within one float32 ulp;
    exact whenever a float32 cell allows it), dmin/dmax/dmean/rms computed from the data with
    float64 accumulation (undetermined markers when the data holds NaN/inf, and min/max/mean
    undetermined for complex modes, as mrcfile does), the ``MAP`` identifier, a little-endian
    machine stamp, nversion 20140 (20141 for mode 12) and a label "jaxpick <version> <date>".

    Args:
      path: output file. Written to a temporary name beside it, renamed when complete.
      data: a 2-D or 3-D array.
      voxel_size: Å per voxel, one value or (x, y, z); None leaves the cell zero ("unset").
      mode: the MRC mode; by default from the dtype: int8→0, int16→1, float32/float64→2,
        complex64/complex128→4, uint8/uint16→6, float16→12. Mode 3 stores complex values as
        int16 pairs (real, imaginary). Integer modes require integer values in range; float
        modes accept rounding (float64 → float32) but not overflow.
      label: optional extra text label (ASCII, up to 80 characters).
      stack: whether 3-D data is an image stack (ispg 0, mz 1) rather than a volume (ispg 1,
        mz nz). Default: a stack when the file name ends in ``.mrcs``.

    Raises:
      ImageFormatError: not 2-D/3-D, empty, a dtype no mode stores, values that do not fit the
        requested mode, a bad voxel size, or an OS error while writing.
    """
    arr = np.asarray(data)
    if arr.ndim not in (2, 3):
        raise ImageFormatError(path, f"MRC files hold 2-D or 3-D arrays, got shape {arr.shape}")
    if arr.size == 0:
        raise ImageFormatError(path, f"cannot write an empty array (shape {arr.shape})")
    if mode is None:
        mode = _default_mode(path, arr.dtype)
    stored = _convert_for_mode(path, arr, mode)
    voxel = _voxel_triple(path, voxel_size)
    if stack is None:
        stack = os.fspath(path).lower().endswith(".mrcs")
    header = _build_header(arr.shape, mode, voxel, _stats(stored, mode), stack, label)
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            f.write(header.tobytes())
            _write_values(f, stored)
    except OSError as err:
        raise ImageFormatError(path, f"cannot write file: {err.strerror or err}") from err
