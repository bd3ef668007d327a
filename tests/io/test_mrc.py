"""MRC reading and writing: real third-party files against mrcfile, every mode round trip, byte
order, leniency, and corrupt files (which must give ImageFormatError and nothing else)."""

from __future__ import annotations

import bz2
import gzip
import io
import os
import struct
import tracemalloc
import warnings
from pathlib import Path

import mrcfile
import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from mrcfile.dtypes import HEADER_DTYPE

from jaxpick._version import __version__
from jaxpick.errors import ImageFormatError
from jaxpick.io import mrc as mrc_module
from jaxpick.io.atomic import TEMP_PREFIX
from jaxpick.io.mrc import (
    MODE_DTYPES,
    MODE_VALUE_BYTES,
    MrcImage,
    read_mrc,
    read_mrc_header,
    write_mrc,
)
from tests.conftest import real_files, real_id

MRC_FILES = real_files("**/*.mrc", "**/*.mrcs", "**/*.map", "**/*.map.gz", "**/*.map.bz2")

# Header byte offsets (MRC2014).
NX, NY, NZ, MODE, MX, MY, MZ, CELLA = 0, 4, 8, 12, 28, 32, 36, 40
MAPC, DMIN, ISPG, NSYMBT, EXTTYP, IMOD_STAMP, IMOD_FLAGS, MAP, MACHST = (
    64,
    76,
    88,
    92,
    104,
    152,
    156,
    208,
    212,
)


def mrcfile_reference(path: Path) -> tuple[np.ndarray, tuple[float, float, float]]:
    """What mrcfile reads, leniently and silently: the reference our reader must match."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mrcfile.open(path, permissive=True) as m:
            vs = m.voxel_size
            return np.array(m.data), (float(vs.x), float(vs.y), float(vs.z))


def mrcfile_header(path: Path) -> np.recarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mrcfile.open(path, permissive=True, header_only=True) as m:
            return m.header.copy()


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Same shape, same dtype (ignoring byte order) and identical bytes (NaNs included)."""
    native_a = a.astype(a.dtype.newbyteorder("="))
    native_b = b.astype(b.dtype.newbyteorder("="))
    return (
        native_a.shape == native_b.shape
        and native_a.dtype == native_b.dtype
        and native_a.tobytes() == native_b.tobytes()
    )


def put_i32(path: Path, offset: int, value: int, order: str = "<") -> None:
    raw = bytearray(path.read_bytes())
    struct.pack_into(order + "i", raw, offset, value)
    path.write_bytes(bytes(raw))


def to_big_endian(raw: bytes, data_dtype: str) -> bytes:
    """An equivalent big-endian file: header fields and data byte-swapped, stamp 0x11 0x11."""
    header = np.frombuffer(raw[:1024], dtype=HEADER_DTYPE.newbyteorder("<"))
    big = header.astype(HEADER_DTYPE.newbyteorder(">"))
    big["machst"] = (0x11, 0x11, 0, 0)
    data = np.frombuffer(raw[1024:], dtype="<" + data_dtype).astype(">" + data_dtype)
    return big.tobytes() + data.tobytes()


# ---------------------------------------------------------------------------------------------
# Real files
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mmap", [False, True], ids=["read", "mmap"])
@pytest.mark.parametrize("path", MRC_FILES, ids=real_id)
def test_real_files_match_mrcfile(real_data: Path, path: Path, mmap: bool) -> None:
    ref, ref_voxel = mrcfile_reference(path)
    image = read_mrc(path, mmap=mmap)
    assert image.data.shape == ref.shape
    assert same_bits(image.data, ref)
    assert image.voxel_size == ref_voxel
    header = mrcfile_header(path)
    assert (image.nx, image.ny, image.nz) == (int(header.nx), int(header.ny), int(header.nz))
    assert image.mode == int(header.mode)
    assert image.ispg == int(header.ispg)
    assert image.nsymbt == int(header.nsymbt)
    assert image.exttyp == bytes(header.exttyp).rstrip(b"\x00").decode("ascii")
    if not mmap:
        assert image.data.dtype.isnative
        assert image.data.flags.writeable


@pytest.mark.parametrize("path", MRC_FILES, ids=real_id)
def test_real_headers_match_full_read(real_data: Path, path: Path) -> None:
    header = read_mrc_header(path)
    image = read_mrc(path)
    assert header == image.header
    assert header.shape == image.data.shape
    assert header.dtype == image.data.dtype


def test_real_file_details(real_data: Path) -> None:
    epu = read_mrc_header(real_data / "mrcfile_testdata/epu2.9_example.mrc")
    assert epu.exttyp == "FEI2"
    assert epu.nsymbt == 909312
    assert epu.mode == 6
    assert epu.voxel_size is not None
    assert epu.voxel_size[0] == pytest.approx(0.6666, abs=1e-4)
    assert epu.voxel_size[2] == 0.0

    fei = read_mrc_header(real_data / "mrcfile_testdata/fei-extended.mrc")
    assert (fei.exttyp, fei.nsymbt, fei.shape) == ("FEI1", 786432, (3838, 3710))

    emd = read_mrc_header(real_data / "mrcfile_testdata/EMD-3001.map")
    assert emd.axis_order == (3, 1, 2)
    assert emd.ispg == 4
    assert emd.nsymbt == 160
    assert emd.labels == ("::::EMDATABANK.org::::EMD-3001::::",)

    # Written without the MAP identifier and with a zero machine stamp: read leniently.
    drgn = read_mrc_header(real_data / "cryodrgn/relion31.mrcs")
    assert not drgn.has_map_id
    assert drgn.machine_stamp == b"\x00\x00\x00\x00"
    assert drgn.byte_order == "<"
    assert drgn.shape == (5, 256, 256)

    # One-section file with ispg=1 stays 3-D, like mrcfile; the negative cell is kept.
    roi = read_mrc_header(real_data / "rosettasciio/mrc/ROI_Random_Scan_Sum.mrc")
    assert roi.shape == (1, 29, 12)
    assert roi.voxel_size == (-10.0, -10.0, 0.0)

    f16 = read_mrc(real_data / "mrcfile_testdata/float16_relion.mrc")
    assert f16.data.dtype == np.float16
    assert f16.voxel_size is not None
    assert f16.voxel_size[0] == pytest.approx(3.595, abs=1e-3)


def test_real_statistics_come_from_data_not_header(real_data: Path) -> None:
    # This file's header statistics are all 0; the values are around 6800.
    image = read_mrc(real_data / "micrograph_cleaner_em/Ucsf_stack_1142_DW.mrc")
    assert float(image.data.mean(dtype=np.float64)) == pytest.approx(6802.13, abs=0.01)
    assert float(image.data.min()) == pytest.approx(6768.2, abs=0.05)


# ---------------------------------------------------------------------------------------------
# Writing: every mode round-trips bit-exactly; mrcfile agrees
# ---------------------------------------------------------------------------------------------


def sample_data(mode: int, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if mode == 0:
        return rng.integers(-128, 128, shape).astype(np.int8)
    if mode == 1:
        return rng.integers(-32768, 32768, shape).astype(np.int16)
    if mode == 2:
        return (rng.standard_normal(shape) * 100).astype(np.float32)
    if mode == 3:
        re = rng.integers(-32768, 32768, shape)
        im = rng.integers(-32768, 32768, shape)
        return (re + 1j * im).astype(np.complex64)
    if mode == 4:
        return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
    if mode == 6:
        return rng.integers(0, 65536, shape).astype(np.uint16)
    assert mode == 12
    return rng.standard_normal(shape).astype(np.float16)


ALL_MODES = [0, 1, 2, 3, 4, 6, 12]
SHAPES = [(7, 5), (3, 7, 5), (1, 4, 6)]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("mode", ALL_MODES)
def test_round_trip_every_mode(tmp_path: Path, mode: int, shape: tuple[int, ...]) -> None:
    data = sample_data(mode, shape)
    path = tmp_path / "out.mrc"
    write_mrc(path, data, voxel_size=(1.5, 2.25, 4.0), mode=mode if mode == 3 else None)
    for mmap in (False, True):
        image = read_mrc(path, mmap=mmap)
        assert image.mode == mode
        assert same_bits(image.data, data)
        assert image.voxel_size == (1.5, 2.25, 4.0)
    header = read_mrc_header(path)
    assert header.has_map_id
    assert header.machine_stamp == b"\x44\x44\x00\x00"
    assert header.nversion == (20141 if mode == 12 else 20140)
    assert header.labels[0].startswith(f"jaxpick {__version__} ")
    if mode != 3:  # mrcfile has no mode 3
        ref, ref_voxel = mrcfile_reference(path)
        assert same_bits(ref, data)
        assert ref_voxel == (1.5, 2.25, 4.0)
        assert mrcfile.validate(str(path), print_file=io.StringIO())


def test_mode3_file_layout_is_int16_pairs(tmp_path: Path) -> None:
    data = np.array([[1 - 2j, -32768 + 32767j], [0 + 0j, 5 + 7j]], dtype=np.complex64)
    path = tmp_path / "c.mrc"
    write_mrc(path, data, mode=3)
    raw = path.read_bytes()
    assert struct.unpack_from("<i", raw, MODE)[0] == 3
    pairs = np.frombuffer(raw, dtype="<i2", offset=1024)
    assert pairs.tolist() == [1, -2, -32768, 32767, 0, 0, 5, 7]
    assert len(raw) == 1024 + 4 * data.size


def test_mode3_rejects_values_that_do_not_fit(tmp_path: Path) -> None:
    with pytest.raises(ImageFormatError, match="do not fit mode 3"):
        write_mrc(tmp_path / "a.mrc", np.array([[40000 + 0j]], np.complex64), mode=3)
    with pytest.raises(ImageFormatError, match="fractional"):
        write_mrc(tmp_path / "b.mrc", np.array([[1.5 + 0j]], np.complex64), mode=3)
    with pytest.raises(ImageFormatError, match="NaN"):
        write_mrc(tmp_path / "c.mrc", np.array([[np.nan + 0j]], np.complex64), mode=3)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("dtype", "mode"),
    [
        (np.int8, 0),
        (np.int16, 1),
        (np.float32, 2),
        (np.float64, 2),
        (np.complex64, 4),
        (np.complex128, 4),
        (np.uint8, 6),
        (np.uint16, 6),
        (np.float16, 12),
    ],
)
def test_mode_chosen_from_dtype(tmp_path: Path, dtype: type, mode: int) -> None:
    data = np.arange(12).reshape(3, 4).astype(dtype)
    write_mrc(tmp_path / "m.mrc", data)
    image = read_mrc(tmp_path / "m.mrc")
    assert image.mode == mode
    np.testing.assert_array_equal(image.data, data)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint32, np.bool_])
def test_dtypes_without_a_mode_are_refused(tmp_path: Path, dtype: type) -> None:
    with pytest.raises(ImageFormatError, match="no MRC mode stores"):
        write_mrc(tmp_path / "m.mrc", np.zeros((2, 2), dtype))


def test_explicit_mode_converts_only_when_lossless(tmp_path: Path) -> None:
    path = tmp_path / "m.mrc"
    write_mrc(path, np.array([[1.0, -3.0]]), mode=1)
    assert read_mrc(path).data.dtype == np.int16
    with pytest.raises(ImageFormatError, match="fractional"):
        write_mrc(path, np.array([[1.5]]), mode=1)
    with pytest.raises(ImageFormatError, match="do not fit mode 0"):
        write_mrc(path, np.array([[200]], np.int64), mode=0)
    with pytest.raises(ImageFormatError, match="do not fit mode 6"):
        write_mrc(path, np.array([[-1]], np.int64), mode=6)
    with pytest.raises(ImageFormatError, match="overflow"):
        write_mrc(path, np.array([[1e6]], np.float32), mode=12)
    with pytest.raises(ImageFormatError, match="complex"):
        write_mrc(path, np.array([[1j]]), mode=2)
    with pytest.raises(ImageFormatError, match="unsupported MRC mode 5"):
        write_mrc(path, np.zeros((2, 2), np.float32), mode=5)
    # Real data in a complex mode is fine.
    write_mrc(path, np.array([[1.0, 2.0]], np.float32), mode=4)
    np.testing.assert_array_equal(read_mrc(path).data, np.array([[1, 2]], np.complex64))


@pytest.mark.parametrize("shape", [(5,), (2, 2, 2, 2), (0, 4), (2, 0, 3)])
def test_write_refuses_bad_shapes(tmp_path: Path, shape: tuple[int, ...]) -> None:
    with pytest.raises(ImageFormatError):
        write_mrc(tmp_path / "m.mrc", np.zeros(shape, np.float32))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("voxel", [0.0, -1.0, float("nan"), float("inf"), (1.0, 2.0)])
def test_write_refuses_bad_voxel_sizes(tmp_path: Path, voxel: object) -> None:
    with pytest.raises(ImageFormatError, match="voxel size"):
        write_mrc(tmp_path / "m.mrc", np.zeros((2, 2), np.float32), voxel_size=voxel)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", [0, 1, 2, 6, 12])
def test_header_statistics_are_computed_from_data(tmp_path: Path, mode: int) -> None:
    data = sample_data(mode, (6, 9, 11), seed=3)
    if mode == 2:
        data = data + np.float32(6800)  # a large offset, as in real micrographs
    path = tmp_path / "s.mrc"
    write_mrc(path, data)
    h = mrcfile_header(path)
    wide = data.astype(np.float64)
    # float64 accumulation, rounded once to the header's float32.
    assert h.dmin == np.float32(wide.min())
    assert h.dmax == np.float32(wide.max())
    assert h.dmean == np.float32(wide.mean())
    assert h.rms == np.float32(wide.std())


def test_statistics_undetermined_for_nan_and_complex(tmp_path: Path) -> None:
    data = np.ones((3, 3), np.float32)
    data[1, 1] = np.nan
    write_mrc(tmp_path / "n.mrc", data)
    h = mrcfile_header(tmp_path / "n.mrc")
    assert (float(h.dmin), float(h.dmax), float(h.dmean), float(h.rms)) == (0, -1, -2, -1)
    assert np.isnan(read_mrc(tmp_path / "n.mrc").data[1, 1])

    c = np.array([[1 + 1j, 3 - 1j]], np.complex64)
    write_mrc(tmp_path / "c.mrc", c)
    h = mrcfile_header(tmp_path / "c.mrc")
    assert float(h.dmax) < float(h.dmin)
    assert float(h.rms) == pytest.approx(float(np.std(c.astype(np.complex128))))


def test_stack_or_volume_header(tmp_path: Path) -> None:
    data = sample_data(2, (4, 6, 8))
    write_mrc(tmp_path / "s.mrcs", data, voxel_size=2.0)
    write_mrc(tmp_path / "v.mrc", data, voxel_size=2.0)
    stack, volume = mrcfile_header(tmp_path / "s.mrcs"), mrcfile_header(tmp_path / "v.mrc")
    assert (int(stack.ispg), int(stack.mz)) == (0, 1)
    assert (int(volume.ispg), int(volume.mz)) == (1, 4)
    assert (int(stack.mx), int(stack.my)) == (8, 6)
    for name in ("s.mrcs", "v.mrc"):
        assert read_mrc(tmp_path / name).voxel_size == (2.0, 2.0, 2.0)
        assert mrcfile.validate(str(tmp_path / name), print_file=io.StringIO())
    # An explicit choice overrides the extension; a one-section 3-D array stays 3-D.
    write_mrc(tmp_path / "one.mrcs", data[:1], stack=True)
    assert read_mrc(tmp_path / "one.mrcs").data.shape == (1, 6, 8)
    write_mrc(tmp_path / "v.mrcs", data, stack=False)
    assert int(mrcfile_header(tmp_path / "v.mrcs").ispg) == 1


def test_no_voxel_size_reads_as_none(tmp_path: Path) -> None:
    write_mrc(tmp_path / "m.mrc", np.zeros((3, 4), np.float32))
    assert read_mrc(tmp_path / "m.mrc").voxel_size is None


def test_labels(tmp_path: Path) -> None:
    write_mrc(tmp_path / "m.mrc", np.zeros((3, 4), np.float32), label="denoised with unet")
    labels = read_mrc_header(tmp_path / "m.mrc").labels
    assert len(labels) == 2
    assert labels[0].startswith(f"jaxpick {__version__} 20")
    assert labels[1] == "denoised with unet"
    assert mrcfile.validate(str(tmp_path / "m.mrc"), print_file=io.StringIO())


@settings(max_examples=80, deadline=None)
@given(
    voxel=st.floats(min_value=0.05, max_value=500.0),
    nx=st.integers(1, 12000),
)
def test_voxel_size_reads_back_within_one_float32_ulp(voxel: float, nx: int) -> None:
    # The cell is chosen so that cell / nx (what every reader computes) is the float32 nearest
    # to the requested size; exact float32(voxel) is reachable in most, not all, cases.
    cell = mrc_module._cell_length(voxel, nx)
    back = np.float32(np.float64(cell) / nx)
    target = np.float32(voxel)
    assert abs(float(back) - float(target)) <= float(np.spacing(target))
    if nx & (nx - 1) == 0:  # powers of two divide exactly
        assert back == target


def test_typical_pixel_sizes_read_back(tmp_path: Path) -> None:
    path = tmp_path / "m.mrc"
    for voxel in (0.6666, 0.8538, 1.0, 1.06, 3.595, 11.4):
        # Power-of-two sizes (K2/K3/Falcon 4096, binned 1024...) always read back exactly.
        write_mrc(path, np.zeros((2, 4, 1024), np.float32), voxel_size=voxel)
        assert read_mrc(path).voxel_size == (np.float32(voxel),) * 3
        # Other sizes: the nearest value a float32 cell allows, at most one float32 ulp off.
        write_mrc(path, np.zeros((3, 7, 3838), np.uint8), voxel_size=voxel)
        back = read_mrc_header(path).voxel_size
        assert back is not None
        for value in back:
            assert abs(value - np.float32(voxel)) <= np.spacing(np.float32(voxel))


# ---------------------------------------------------------------------------------------------
# Byte order and leniency
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [1, 2, 6, 12])
@pytest.mark.parametrize(
    "stamp", [b"\x11\x11\x00\x00", b"\x00\x00\x00\x00", b"\xab\xcd\xef\x01", b"\x44\x44\x00\x00"]
)
def test_big_endian_files(tmp_path: Path, mode: int, stamp: bytes) -> None:
    # Correct stamp, missing stamp, garbage stamp and a stamp that lies (says little-endian):
    # all read correctly because only big-endian makes the header plausible.
    data = sample_data(mode, (3, 5, 7))
    little = tmp_path / "little.mrc"
    write_mrc(little, data, voxel_size=1.25)
    raw = bytearray(to_big_endian(little.read_bytes(), MODE_DTYPES[mode]))
    raw[MACHST : MACHST + 4] = stamp
    big = tmp_path / "big.mrc"
    big.write_bytes(bytes(raw))
    for mmap in (False, True):
        image = read_mrc(big, mmap=mmap)
        assert image.header.byte_order == ">"
        assert same_bits(image.data, data)
        assert image.voxel_size == (1.25, 1.25, 1.25)
    assert read_mrc(big).data.dtype.isnative
    assert read_mrc(big, mmap=True).data.dtype.byteorder == ">"


def test_big_endian_mode3(tmp_path: Path) -> None:
    data = sample_data(3, (2, 3))
    little = tmp_path / "little.mrc"
    write_mrc(little, data, mode=3)
    big = tmp_path / "big.mrc"
    big.write_bytes(to_big_endian(little.read_bytes(), "i2"))
    assert same_bits(read_mrc(big).data, data)


@pytest.mark.parametrize("stamp", [b"\x00\x00\x00\x00", b"\x12\x34\x56\x78", b"\x44\x41\x00\x00"])
def test_little_endian_with_odd_stamps(tmp_path: Path, stamp: bytes) -> None:
    path = tmp_path / "m.mrc"
    data = sample_data(2, (4, 5))
    write_mrc(path, data)
    raw = bytearray(path.read_bytes())
    raw[MACHST : MACHST + 4] = stamp
    raw[MAP : MAP + 4] = b"\x00\x00\x00\x00"  # and no MAP identifier either
    path.write_bytes(bytes(raw))
    image = read_mrc(path)
    assert image.header.byte_order == "<"
    assert not image.header.has_map_id
    assert same_bits(image.data, data)


def test_stampless_ambiguity_prefers_exact_size_then_little_endian() -> None:
    # A header plausible in both byte orders needs terabyte-sized data, so the tie-break is
    # tested on the decision function with claimed file sizes. Mode 0 reads 0 either way; the
    # dimension and nsymbt bytes are chosen so that both readings are positive.
    raw = bytearray(1024)
    raw[NX : NX + 4] = b"\x00\x01\x00\x00"  # 256 little-endian, 65536 big-endian
    raw[NY : NY + 4] = b"\x00\x00\x01\x00"  # 65536 / 256
    raw[NZ : NZ + 4] = b"\x00\x01\x01\x00"  # 65792 both ways
    raw[NSYMBT : NSYMBT + 4] = b"\x00\x01\x00\x00"  # 256 / 65536
    data_bytes = 256 * 65536 * 65792
    little_size, big_size = 1024 + 256 + data_bytes, 1024 + 65536 + data_bytes
    decide = mrc_module._decide
    assert decide("f.mrc", bytes(raw), little_size).byte_order == "<"  # only little fits
    assert decide("f.mrc", bytes(raw), big_size).byte_order == ">"  # both fit, big exactly
    assert decide("f.mrc", bytes(raw), big_size + 1).byte_order == "<"  # neither exact
    assert decide("f.mrc", bytes(raw), None).byte_order == "<"
    # A valid stamp decides whenever its reading is plausible.
    raw[MACHST : MACHST + 2] = b"\x11\x11"
    assert decide("f.mrc", bytes(raw), big_size + 1).byte_order == ">"
    raw[MACHST : MACHST + 2] = b"DD"
    assert decide("f.mrc", bytes(raw), big_size).byte_order == "<"


def test_no_warnings_for_lenient_reads(tmp_path: Path) -> None:
    path = tmp_path / "m.mrc"
    write_mrc(path, np.zeros((2, 2), np.float32))
    raw = bytearray(path.read_bytes())
    raw[MAP : MAP + 4] = b"XXXX"
    raw[MACHST : MACHST + 4] = b"\x00\x00\x00\x00"
    path.write_bytes(bytes(raw))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_mrc(path)
        read_mrc(path, mmap=True)
        read_mrc_header(path)


def test_imod_unsigned_bytes_flag(tmp_path: Path) -> None:
    path = tmp_path / "m.mrc"
    write_mrc(path, np.array([[-1, 5]], np.int8))
    assert not read_mrc_header(path).imod_unsigned_bytes
    put_i32(path, IMOD_STAMP, 1146047817)
    put_i32(path, IMOD_FLAGS, 0)
    image = read_mrc(path)
    assert image.header.imod_unsigned_bytes
    assert image.data.dtype == np.int8  # stored type, as mrcfile; read_image reinterprets
    put_i32(path, IMOD_FLAGS, 1)
    assert not read_mrc_header(path).imod_unsigned_bytes


def test_extended_header_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "m.mrc"
    data = sample_data(1, (3, 4))
    write_mrc(path, data)
    raw = bytearray(path.read_bytes())
    struct.pack_into("<i", raw, NSYMBT, 96)
    raw[EXTTYP : EXTTYP + 4] = b"FEI1"
    path.write_bytes(bytes(raw[:1024]) + b"\xee" * 96 + bytes(raw[1024:]))
    image = read_mrc(path)
    assert (image.nsymbt, image.exttyp) == (96, "FEI1")
    assert same_bits(image.data, data)
    assert same_bits(mrcfile_reference(path)[0], data)


@pytest.mark.parametrize("compression", ["gzip", "bzip2"])
def test_compressed_files(tmp_path: Path, compression: str) -> None:
    plain = tmp_path / "m.mrc"
    data = sample_data(6, (3, 4, 5))
    write_mrc(plain, data, voxel_size=0.5)
    packed = (gzip.compress if compression == "gzip" else bz2.compress)(plain.read_bytes())
    # Named without any hint: compression is detected from the content.
    path = tmp_path / "compressed.mrc"
    path.write_bytes(packed)
    for mmap in (False, True):
        image = read_mrc(path, mmap=mmap)
        assert same_bits(image.data, data)
        assert image.data.flags.writeable
        assert image.voxel_size == (0.5, 0.5, 0.5)
    assert read_mrc_header(path) == read_mrc_header(plain)
    # Truncated compressed stream, and a stream whose content lacks data.
    path.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(ImageFormatError, match=r"compressed\.mrc"):
        read_mrc(path)
    short = (gzip.compress if compression == "gzip" else bz2.compress)(plain.read_bytes()[:1100])
    path.write_bytes(short)
    with pytest.raises(ImageFormatError, match="truncated"):
        read_mrc(path)
    path.write_bytes((gzip.compress if compression == "gzip" else bz2.compress)(b"x" * 100))
    with pytest.raises(ImageFormatError, match="too short"):
        read_mrc(path)


def test_plain_file_whose_header_starts_like_gzip(tmp_path: Path) -> None:
    # nx = 35615 = 0x8b1f: the little-endian header begins with the gzip magic bytes.
    data = (np.arange(2 * 35615) % 100).astype(np.int8).reshape(2, 35615)
    path = tmp_path / "wide.mrc"
    write_mrc(path, data)
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    assert same_bits(read_mrc(path).data, data)
    assert read_mrc_header(path).shape == (2, 35615)


# ---------------------------------------------------------------------------------------------
# Unsupported modes and corrupt files
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [5, 7, 16, 101, -1, 2**31 - 1])
def test_unsupported_modes(tmp_path: Path, mode: int) -> None:
    path = tmp_path / f"mode{mode}.mrc"
    write_mrc(path, np.zeros((4, 4), np.float32))
    put_i32(path, MODE, mode)
    for read in (read_mrc, read_mrc_header, lambda p: read_mrc(p, mmap=True)):
        with pytest.raises(ImageFormatError) as info:
            read(path)
        message = str(info.value)
        assert f"mode {mode}" in message
        assert str(path) in message


def test_mode5_message_explains(tmp_path: Path) -> None:
    path = tmp_path / "m.mrc"
    write_mrc(path, np.zeros((4, 4), np.float32))
    put_i32(path, MODE, 5)
    with pytest.raises(ImageFormatError, match=r"mode 5 \(not defined in MRC2014\)"):
        read_mrc(path)


def valid_file(tmp_path: Path) -> Path:
    path = tmp_path / "v.mrc"
    write_mrc(path, sample_data(2, (3, 4, 5)))
    return path


@pytest.mark.parametrize(
    ("offset", "value", "message"),
    [
        (NX, -4, "invalid dimensions"),
        (NZ, 0, "invalid dimensions"),
        (NY, 2**31 - 1, "truncated"),
        (NSYMBT, -8, "nsymbt=-8"),
        (NSYMBT, 10**6, "extends past the end"),
        (NSYMBT, 8, "truncated"),
    ],
)
def test_corrupt_headers(tmp_path: Path, offset: int, value: int, message: str) -> None:
    path = valid_file(tmp_path)
    put_i32(path, offset, value)
    with pytest.raises(ImageFormatError, match=message):
        read_mrc(path)
    with pytest.raises(ImageFormatError, match=message):
        read_mrc(path, mmap=True)


@pytest.mark.parametrize("keep", [0, 1, 100, 1023, 1024, 1025, 1024 + 239])
def test_truncated_files(tmp_path: Path, keep: int) -> None:
    path = valid_file(tmp_path)
    path.write_bytes(path.read_bytes()[:keep])
    with pytest.raises(ImageFormatError, match=r"v\.mrc"):
        read_mrc(path)


def test_absurd_dimensions_do_not_allocate(tmp_path: Path) -> None:
    path = valid_file(tmp_path)
    for offset in (NX, NY, NZ):
        put_i32(path, offset, 2**31 - 1)
    gz = tmp_path / "v.mrc.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    tracemalloc.start()
    try:
        for target in (path, gz):
            with pytest.raises(ImageFormatError):
                read_mrc(target)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000


def test_missing_folder_and_empty(tmp_path: Path) -> None:
    with pytest.raises(ImageFormatError, match="not found"):
        read_mrc(tmp_path / "nope.mrc")
    with pytest.raises(ImageFormatError, match="folder"):
        read_mrc(tmp_path)
    (tmp_path / "empty.mrc").write_bytes(b"")
    with pytest.raises(ImageFormatError, match="empty"):
        read_mrc(tmp_path / "empty.mrc")


def expected_decode(raw: bytes, order: str) -> tuple[tuple[int, ...], np.ndarray] | None:
    """Independent decoding of a (fuzzed) file in one byte order; None if not a valid MRC."""
    if len(raw) < 1024:
        return None
    nx, ny, nz, mode = struct.unpack_from(order + "4i", raw, 0)
    ispg, nsymbt = struct.unpack_from(order + "2i", raw, ISPG)
    if mode not in MODE_DTYPES or min(nx, ny, nz) <= 0 or nsymbt < 0:
        return None
    start = 1024 + nsymbt
    if start + nx * ny * nz * MODE_VALUE_BYTES[mode] > len(raw):
        return None
    shape = (ny, nx) if nz == 1 and ispg == 0 else (nz, ny, nx)
    count = nx * ny * nz * (2 if mode == 3 else 1)
    values = np.frombuffer(raw, dtype=order + MODE_DTYPES[mode], count=count, offset=start)
    if mode == 3:
        pairs = values.reshape(-1, 2).astype(np.float32)
        values = (pairs[:, 0] + 1j * pairs[:, 1]).astype(np.complex64)
    return shape, values.reshape(shape)


int32s = st.integers(-(2**31), 2**31 - 1)


def maybe(strategy: st.SearchStrategy) -> st.SearchStrategy:
    """None (keep the valid file's value) half the time, so that reads succeed often enough."""
    return st.one_of(st.none(), strategy)


@settings(max_examples=100, deadline=None)
@given(
    mode=maybe(st.one_of(st.sampled_from([0, 1, 2, 3, 4, 5, 6, 12, 16, 101]), int32s)),
    dims=st.tuples(*[maybe(st.one_of(st.integers(-2, 30), int32s))] * 3),
    nsymbt=maybe(st.one_of(st.integers(-4, 600), int32s)),
    mapc=maybe(st.integers(-3, 5)),
    ispg=maybe(st.sampled_from([0, 1, 401, -7])),
    stamp=st.one_of(
        st.sampled_from([b"DD\x00\x00", b"DA\x00\x00", b"\x11\x11\x00\x00"]),
        st.binary(min_size=4, max_size=4),
    ),
    cut=maybe(st.integers(0, 1024 + 240 + 600)),
    mmap=st.booleans(),
)
def test_fuzzed_headers_read_correctly_or_fail_cleanly(
    tmp_path_factory: pytest.TempPathFactory,
    mode: int | None,
    dims: tuple[int | None, int | None, int | None],
    nsymbt: int | None,
    mapc: int | None,
    ispg: int | None,
    stamp: bytes,
    cut: int | None,
    mmap: bool,
) -> None:
    folder = tmp_path_factory.mktemp("fuzz", numbered=True)
    path = folder / "f.mrc"
    write_mrc(path, sample_data(2, (3, 4, 5)))
    raw = bytearray(path.read_bytes() + bytes(range(256)) * 2 + bytes(88))  # spare bytes
    for offset, value in [
        (NX, dims[0]),
        (NY, dims[1]),
        (NZ, dims[2]),
        (MODE, mode),
        (MAPC, mapc),
        (ISPG, ispg),
        (NSYMBT, nsymbt),
    ]:
        if value is not None:
            struct.pack_into("<i", raw, offset, value)
    raw[MACHST : MACHST + 4] = stamp
    data = bytes(raw[:cut] if cut is not None else raw)
    path.write_bytes(data)

    tracemalloc.start()
    try:
        outcome: MrcImage | ImageFormatError = read_mrc(path, mmap=mmap)
    except ImageFormatError as err:
        outcome = err
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < 1_000_000 + 4 * len(data)
    readings = {order: expected_decode(data, order) for order in "<>"}
    if isinstance(outcome, ImageFormatError):
        event("refused")
        assert str(path) in str(outcome)
        assert readings == {"<": None, ">": None}
        return
    event(f"read, {'big' if outcome.header.byte_order == '>' else 'little'}-endian")
    image = outcome
    order = image.header.byte_order
    expected = readings[order]
    assert expected is not None
    shape, values = expected
    assert image.data.shape == shape
    assert same_bits(image.data, values)
    stamp_order = {b"DD": "<", b"DA": "<", b"\x11\x11": ">"}.get(stamp[:2])
    if stamp_order is not None and readings[stamp_order] is not None:
        assert order == stamp_order


# ---------------------------------------------------------------------------------------------
# Atomic writing
# ---------------------------------------------------------------------------------------------


def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail_midway(f: io.BufferedWriter, stored: np.ndarray) -> None:
        f.write(b"partial data")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mrc_module, "_write_values", fail_midway)
    target = tmp_path / "out.mrc"
    with pytest.raises(ImageFormatError, match="No space left"):
        write_mrc(target, np.zeros((4, 4), np.float32))
    assert list(tmp_path.iterdir()) == []

    # An existing file under the final name survives a failed overwrite untouched.
    target.write_bytes(b"previous")
    with pytest.raises(ImageFormatError):
        write_mrc(target, np.zeros((4, 4), np.float32))
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["out.mrc"]


def test_interrupted_write_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupt(f: io.BufferedWriter, stored: np.ndarray) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(mrc_module, "_write_values", interrupt)
    with pytest.raises(KeyboardInterrupt):
        write_mrc(tmp_path / "out.mrc", np.zeros((4, 4), np.float32))
    assert not any(p.name.startswith(TEMP_PREFIX) for p in tmp_path.iterdir())
    assert list(tmp_path.iterdir()) == []


def test_written_file_permissions_follow_umask(tmp_path: Path) -> None:
    write_mrc(tmp_path / "m.mrc", np.zeros((2, 2), np.float32))
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "m.mrc").stat().st_mode & 0o777 == 0o666 & ~umask
