"""Format dispatch: read_image / read_image_header / image_shape / write_image."""

from __future__ import annotations

import gzip
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxpick.errors import ImageFormatError
from jaxpick.io import image as image_module
from jaxpick.io.image import (
    detect_format,
    image_shape,
    read_image,
    read_image_header,
    read_mrc,
    read_raster,
    read_tiff,
    write_image,
    write_mrc,
)
from tests.conftest import real_files, real_id

IMAGE_FILES = real_files(
    "**/*.mrc",
    "**/*.mrcs",
    "**/*.map",
    "**/*.map.gz",
    "**/*.map.bz2",
    "**/*.tif",
    "prompt_sam_cryoppp/**/*.png",
)


@pytest.mark.parametrize("path", IMAGE_FILES, ids=real_id)
def test_every_real_image_reads_as_float32(real_data: Path, path: Path) -> None:
    image = read_image(path)
    assert image.data.dtype == np.float32
    assert image.data.ndim in (2, 3)
    header = read_image_header(path)
    assert header.shape == image.data.shape == image_shape(path)
    assert header.pixel_size == image.pixel_size
    assert header.format == image.format
    if image.format == "mrc":
        reference = read_mrc(path).data
    elif image.format == "tiff":
        reference = read_tiff(path)[0]
    else:
        reference = read_raster(path)
    np.testing.assert_array_equal(image.data, reference.astype(np.float32))


@pytest.mark.parametrize(
    ("name", "shape", "pixel_size", "stats"),
    [
        # PROVENANCE tables: shape, pixel size, (min, max, mean).
        ("mrcfile_testdata/epu2.9_example.mrc", (4096, 4096), 0.6666, (2790, 9661, 5612.22)),
        ("mrcfile_testdata/fei-extended.mrc", (3838, 3710), 0.8538, (302, 45804, 3521.03)),
        ("mrcfile_testdata/float16_relion.mrc", (64, 64), 3.595, (-4.33984, 3.82031, 0.0411342)),
        ("mrcfile_testdata/EMD-3197.map", (20, 20, 20), 11.4, (-4.13375, 5.57674, 0.783612)),
        ("mrcfile_testdata/EMD-3197.map.bz2", (20, 20, 20), 11.4, (-4.13375, 5.57674, 0.783612)),
        ("mrcfile_testdata/emd_3001.map.gz", (25, 43, 73), 0.4482, (-0.368143, 0.72161, 0.000533)),
        ("micrograph_cleaner_em/Ucsf_stack_1142_DW.mrc", (927, 959), 1.0, (6768.2, 6822, 6802.13)),
        ("cryodrgn/relion31.mrcs", (5, 256, 256), 1.0, (-4.38332, 4.40074, 0.0107662)),
        # Direct Electron's negative placeholder cell gives no pixel size.
        ("rosettasciio/mrc/ROI_Random_Scan_Sum.mrc", (1, 29, 12), None, (300175, 300271, 300224)),
        ("rosettasciio/mrc/20241021_00405_movie.mrc", (32, 4, 8), None, (0, 31, 15.5)),
        ("rosettasciio/mrc/HAADFscan.mrc", (16, 16), 56.79, (3923, 9399, 6066.2)),
        ("cylindra/13pf_MT.tif", (36, 206, 94), 10.52, (0, 255, 106.062)),
        (
            "rosettasciio/tiff/test_loading_image_saved_with_DM.tif",
            (68, 68),
            None,
            (2866, 3774, 3335.39),
        ),
        (
            "prompt_sam_cryoppp/10028/valid/images/065_10028.png",
            (1024, 1024),
            None,
            (30, 166, 103.319),
        ),
    ],
)
def test_real_images_against_provenance(
    real_data: Path,
    name: str,
    shape: tuple[int, ...],
    pixel_size: float | None,
    stats: tuple[float, float, float],
) -> None:
    image = read_image(real_data / name)
    assert image.data.shape == shape
    if pixel_size is None:
        assert image.pixel_size is None
    else:
        assert image.pixel_size == pytest.approx(pixel_size, abs=2e-3)  # tables round
    lo, hi, mean = stats
    assert float(image.data.min()) == pytest.approx(lo, rel=1e-5)
    assert float(image.data.max()) == pytest.approx(hi, rel=1e-5)
    assert float(image.data.mean(dtype=np.float64)) == pytest.approx(mean, rel=1e-5, abs=1e-6)


def test_mmap_float32_mrc_is_not_copied(tmp_path: Path) -> None:
    data = np.arange(24, dtype=np.float32).reshape(4, 6)
    write_mrc(tmp_path / "m.mrc", data, voxel_size=2.0)
    image = read_image(tmp_path / "m.mrc", mmap=True)
    assert isinstance(image.data, np.memmap)
    assert not image.data.flags.writeable
    np.testing.assert_array_equal(image.data, data)
    assert image.pixel_size == 2.0
    # Other stored types are converted to float32 (a copy) even with mmap.
    write_mrc(tmp_path / "u.mrc", data.astype(np.uint16))
    converted = read_image(tmp_path / "u.mrc", mmap=True)
    assert converted.data.dtype == np.float32
    assert not isinstance(converted.data, np.memmap)


@pytest.mark.parametrize("mode", [3, 4])
def test_complex_mrc_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "c.mrc"
    write_mrc(path, np.ones((2, 3), np.complex64), mode=mode)
    with pytest.raises(ImageFormatError, match=f"complex-valued MRC \\(mode {mode}\\)"):
        read_image(path)
    assert read_image_header(path).dtype == np.complex64


def test_imod_unsigned_bytes_read_as_0_to_255(tmp_path: Path) -> None:
    path = tmp_path / "imod.mrc"
    write_mrc(path, np.array([[-1, -128, 5]], np.int8))
    assert read_image(path).data.tolist() == [[-1, -128, 5]]
    raw = bytearray(path.read_bytes())
    struct.pack_into("<2i", raw, 152, 1146047817, 0)  # IMOD stamp, signed-bytes flag clear
    path.write_bytes(bytes(raw))
    assert read_image(path).data.tolist() == [[255, 128, 5]]


def test_pixel_size_rules(tmp_path: Path) -> None:
    path = tmp_path / "m.mrc"
    write_mrc(path, np.zeros((3, 4), np.float32))
    assert read_image(path).pixel_size is None  # cell unset
    write_mrc(path, np.zeros((3, 4), np.float32), voxel_size=(0.9, 0.8, 1.0))
    assert read_image(path).pixel_size == pytest.approx(0.9)  # x, as stored
    raw = bytearray(path.read_bytes())
    struct.pack_into("<f", raw, 40, -3.6)  # negative cell x: a placeholder
    path.write_bytes(bytes(raw))
    assert read_image(path).pixel_size is None
    assert read_mrc(path).voxel_size == pytest.approx((-0.9, 0.8, 1.0))


# ---------------------------------------------------------------------------------------------
# Dispatch by content
# ---------------------------------------------------------------------------------------------


def make_samples(folder: Path) -> dict[str, Path]:
    data = np.arange(30, dtype=np.float32).reshape(5, 6)
    samples = {
        "mrc": folder / "s.mrc",
        "tiff": folder / "s.tif",
        "png": folder / "s.png",
        "jpeg": folder / "s.jpg",
    }
    write_image(samples["mrc"], data, pixel_size=1.5)
    write_image(samples["tiff"], data, pixel_size=1.5)
    write_image(samples["png"], data)
    write_image(samples["jpeg"], data)
    return samples


@pytest.mark.parametrize("fmt", ["mrc", "tiff", "png", "jpeg"])
@pytest.mark.parametrize("disguise", ["x.mrc", "x.tif", "x.png", "x.jpg", "x.dat", "noext"])
def test_content_decides_over_name(tmp_path: Path, fmt: str, disguise: str) -> None:
    original = make_samples(tmp_path)[fmt]
    renamed = tmp_path / "renamed" / disguise
    renamed.parent.mkdir()
    shutil.copy(original, renamed)
    assert detect_format(renamed) == fmt
    expected = read_image(original)
    image = read_image(renamed)
    assert image.format == fmt
    np.testing.assert_array_equal(image.data, expected.data)
    assert image.pixel_size == expected.pixel_size
    assert image_shape(renamed) == (5, 6)


@pytest.mark.parametrize("name", ["m.mrc.gz", "m.gz", "m"])
def test_compressed_mrc_found_by_content(tmp_path: Path, name: str) -> None:
    plain = tmp_path / "plain.mrc"
    write_mrc(plain, np.ones((3, 4), np.int16), voxel_size=2.0)
    path = tmp_path / name
    path.write_bytes(gzip.compress(plain.read_bytes()))
    image = read_image(path)
    assert (image.format, image.data.shape, image.pixel_size) == ("mrc", (3, 4), 2.0)
    assert image_shape(path) == (3, 4)


def test_mrc_header_outranks_magic_bytes(tmp_path: Path) -> None:
    # nx = 35615 spells the gzip magic; nx = 0x4e5089 would spell PNG's but is implausible.
    path = tmp_path / "wide.tif"
    write_mrc(path, np.zeros((2, 35615), np.int8))
    assert detect_format(path) == "mrc"
    assert read_image(path).data.shape == (2, 35615)


def test_mrc_without_map_stamp_and_odd_name(real_data: Path, tmp_path: Path) -> None:
    # No MAP identifier and no machine stamp: recognised by its plausible header alone.
    target = tmp_path / "particles.bin"
    shutil.copy(real_data / "cryodrgn/relion31.mrcs", target)
    assert detect_format(target) == "mrc"
    assert read_image(target).data.shape == (5, 256, 256)


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("empty.mrc", b"", "empty file"),
        ("text.mrc", b"hello world\n", "too short"),
        ("text.tif", b"hello world\n" * 200, "not a TIFF file"),
        ("text.png", b"hello world\n", "not a PNG file"),
        ("text.xyz", b"hello world\n" * 200, "unrecognised image format"),
        ("fake.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 50, "fake.png"),
        ("fake.jpg", b"\xff\xd8\xff\xe0" + b"\x00" * 50, "fake.jpg"),
        ("fake.tif", b"II*\x00" + b"\xff" * 50, "fake.tif"),
    ],
)
def test_unreadable_files(tmp_path: Path, name: str, content: bytes, problem: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    for read in (read_image, read_image_header, image_shape):
        with pytest.raises(ImageFormatError) as info:
            read(path)
        assert str(path) in str(info.value)
        assert problem in str(info.value)


def test_missing_and_folder(tmp_path: Path) -> None:
    with pytest.raises(ImageFormatError, match="file not found"):
        read_image(tmp_path / "missing.mrc")
    with pytest.raises(ImageFormatError, match="is a folder"):
        read_image(tmp_path)
    with pytest.raises(ImageFormatError, match="file not found"):
        image_shape(tmp_path / "missing.png")


@settings(max_examples=80, deadline=None)
@given(
    body=st.binary(min_size=0, max_size=1500),
    name=st.sampled_from(["r.mrc", "r.mrcs", "r.tif", "r.png", "r.jpg", "r"]),
    prefix=st.sampled_from([b"", b"II*\x00", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"\x1f\x8b"]),
)
def test_random_bytes_never_crash(
    tmp_path_factory: pytest.TempPathFactory, body: bytes, name: str, prefix: bytes
) -> None:
    path = tmp_path_factory.mktemp("random") / name
    path.write_bytes(prefix + body)
    try:
        image = read_image(path)
    except ImageFormatError as err:
        problem = str(err)
    else:  # a valid image by chance must still honour the contract
        problem = ""
        assert image.data.dtype == np.float32
        assert image.data.ndim in (2, 3)
    assert problem == "" or str(path) in problem
    try:
        header = read_image_header(path)
    except ImageFormatError as err:
        problem = str(err)
    else:
        problem = ""
        assert len(header.shape) in (2, 3)
    assert problem == "" or str(path) in problem


# ---------------------------------------------------------------------------------------------
# write_image
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["o.mrc", "o.mrcs", "o.map", "o.tif", "o.tiff"])
@pytest.mark.parametrize("shape", [(6, 7), (3, 6, 7)])
def test_write_image_lossless_formats(tmp_path: Path, name: str, shape: tuple[int, ...]) -> None:
    data = np.random.default_rng(0).standard_normal(shape)  # float64 in, float32 stored
    path = tmp_path / name
    write_image(path, data, pixel_size=1.06)
    image = read_image(path)
    np.testing.assert_array_equal(image.data, data.astype(np.float32))
    assert image.pixel_size == pytest.approx(1.06, rel=1e-6)
    if name.startswith("o.m"):
        assert read_mrc(path).mode == 2
        assert read_mrc(path).header.ispg == (1 if len(shape) == 3 and name != "o.mrcs" else 0)


@pytest.mark.parametrize("name", ["o.png", "o.jpg", "o.jpeg"])
def test_write_image_8_bit(tmp_path: Path, name: str) -> None:
    data = 6800 + 9 * np.random.default_rng(1).standard_normal((32, 40))
    path = tmp_path / name
    write_image(path, data, pixel_size=1.0)  # pixel size not storable: ignored
    image = read_image(path)
    assert image.pixel_size is None
    assert image.data.shape == (32, 40)
    assert 100 < float(image.data.mean()) < 155  # z-scored: centred on mid-gray


@pytest.mark.parametrize(
    ("name", "data", "problem"),
    [
        ("o.mrc.gz", np.zeros((2, 2)), "compressed"),
        ("o.xyz", np.zeros((2, 2)), "unknown output image format"),
        ("o", np.zeros((2, 2)), "unknown output image format"),
        ("o.mrc", np.zeros((2, 2), np.complex64), "must be real"),
        ("o.png", np.zeros((2, 2, 2)), "2-D"),
        ("o.mrc", np.zeros((2, 2, 2, 2)), "2-D or 3-D"),
    ],
)
def test_write_image_errors(tmp_path: Path, name: str, data: np.ndarray, problem: str) -> None:
    with pytest.raises(ImageFormatError, match=problem):
        write_image(tmp_path / name, data)
    assert list(tmp_path.iterdir()) == []


def test_write_image_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from jaxpick.io import mrc as mrc_module

    def fail(f: object, stored: np.ndarray) -> None:
        raise OSError(122, "Disk quota exceeded")

    monkeypatch.setattr(mrc_module, "_write_values", fail)
    with pytest.raises(ImageFormatError, match="Disk quota exceeded"):
        write_image(tmp_path / "o.mrc", np.zeros((3, 3)))
    assert list(tmp_path.iterdir()) == []


def test_public_names_exported() -> None:
    for name in image_module.__all__:
        assert hasattr(image_module, name), name
