"""TIFF (tifffile) and PNG/JPEG (Pillow) reading and writing."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage

from jaxpick.errors import ImageFormatError
from jaxpick.io.raster import (
    raster_shape,
    read_raster,
    rgb_to_luminance,
    to_uint8,
    write_png,
)
from jaxpick.io.tiff import read_tiff, read_tiff_info, write_tiff
from tests.conftest import real_files, real_id

TIFF_FILES = real_files("**/*.tif", "**/*.tiff")
PNG_FILES = real_files("prompt_sam_cryoppp/**/*.png")


# ---------------------------------------------------------------------------------------------
# TIFF
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", TIFF_FILES, ids=real_id)
def test_real_tiffs_match_tifffile(real_data: Path, path: Path) -> None:
    ref = tifffile.imread(path)
    data, _ = read_tiff(path)
    assert data.shape == ref.shape
    assert data.dtype == ref.dtype.newbyteorder("=")
    assert data.dtype.isnative
    np.testing.assert_array_equal(data, ref)
    info = read_tiff_info(path)
    assert info.shape == data.shape
    assert info.dtype == data.dtype


@pytest.mark.parametrize(
    ("name", "pixel_size"),
    [
        # ImageJ hyperstack, unit=nm, XResolution 0.95057 px/nm.
        ("cylindra/13pf_MT.tif", 10.52),
        # TVIPS: resolution in pixels per centimetre, agreeing with its PixelSizeX = 1.4208 nm.
        ("rosettasciio/tiff/TVIPS_bin4.tif", 14.208),
        # ImageJ, unit=micron, 5.928571 px/µm (big-endian file).
        ("rosettasciio/tiff/test_loading_image_saved_with_imageJ.tif", 1686.75),
        ("rosettasciio/tiff/test_loading_image_saved_with_imageJ_stack.tif", 1686.75),
        # FEI SEM metadata, PixelWidth 3.3724e-6 m (its 64 dpi resolution tag is ignored).
        ("rosettasciio/tiff/FEI-Helios-Ebeam-16bits.tif", 33724.0),
        # DigitalMicrograph writes 72 dpi: a display setting, not a pixel size.
        ("rosettasciio/tiff/test_loading_image_saved_with_DM.tif", None),
        ("rosettasciio/tiff/test_loading_image_saved_with_DM_stack.tif", None),
    ],
)
def test_real_tiff_pixel_sizes(real_data: Path, name: str, pixel_size: float | None) -> None:
    _, found = read_tiff(real_data / name)
    if pixel_size is None:
        assert found is None
    else:
        assert found == pytest.approx(pixel_size, rel=1e-4)
    assert read_tiff_info(real_data / name).pixel_size == found


def test_real_big_endian_tiff_values(real_data: Path) -> None:
    # The ImageJ (big-endian) and DigitalMicrograph (little-endian int32) files hold the same
    # pixels; PROVENANCE: min 2866, max 3774.
    big, _ = read_tiff(real_data / "rosettasciio/tiff/test_loading_image_saved_with_imageJ.tif")
    dm, _ = read_tiff(real_data / "rosettasciio/tiff/test_loading_image_saved_with_DM.tif")
    np.testing.assert_array_equal(big, dm.astype(np.float32))
    assert (big.min(), big.max()) == (2866, 3774)


@pytest.mark.parametrize("shape", [(6, 9), (3, 6, 9), (1, 6, 9)])
@pytest.mark.parametrize("pixel_size", [None, 0.6666, 1.06, 7.0])
def test_tiff_round_trip(tmp_path: Path, shape: tuple[int, ...], pixel_size: float | None) -> None:
    data = np.random.default_rng(1).standard_normal(shape) * 50
    path = tmp_path / "out.tif"
    write_tiff(path, data, pixel_size=pixel_size)
    back, found = read_tiff(path)
    assert back.dtype == np.float32
    assert back.shape == shape
    np.testing.assert_array_equal(back, data.astype(np.float32))
    if pixel_size is None:
        assert found is None
    else:
        assert found == pytest.approx(pixel_size, rel=1e-9)
    with tifffile.TiffFile(path) as tif:  # readable by any TIFF reader: one page per slice
        assert len(tif.pages) == (1 if len(shape) == 2 else shape[0])


@pytest.mark.parametrize("dtype", ["<u1", ">u2", "<i2", ">i4", ">f4", "<f8"])
def test_tiff_types_and_byte_orders(tmp_path: Path, dtype: str) -> None:
    data = (np.arange(2 * 5 * 7) % 100).reshape(2, 5, 7).astype(dtype)
    path = tmp_path / "t.tif"
    tifffile.imwrite(path, data, byteorder=dtype[0], photometric="minisblack")
    back, _ = read_tiff(path)
    assert back.dtype == np.dtype(dtype).newbyteorder("=")
    np.testing.assert_array_equal(back, data)


def test_tiff_multi_page_without_shape_metadata(tmp_path: Path) -> None:
    # Pages written one by one, as cameras do, still stack on the leading axis.
    path = tmp_path / "pages.tif"
    frames = [np.full((4, 5), i, np.uint16) for i in range(3)]
    with tifffile.TiffWriter(path) as tif:
        for frame in frames:
            tif.write(frame, photometric="minisblack", metadata=None)
    back, _ = read_tiff(path)
    np.testing.assert_array_equal(back, np.stack(frames))


@pytest.mark.parametrize(
    ("unit", "resolution", "expected"),
    [
        ("nm", 1 / 0.25, 2.5),
        ("micron", 1 / 0.0003, 3.0),
        ("\\u00B5m", 1 / 0.0003, 3.0),
        ("A", 1 / 1.2, 1.2),
        ("pixel", 1.0, None),
        ("inch", 300.0, None),
    ],
)
def test_imagej_units(tmp_path: Path, unit: str, resolution: float, expected: float | None) -> None:
    path = tmp_path / "ij.tif"
    tifffile.imwrite(
        path,
        np.zeros((4, 4), np.float32),
        imagej=True,
        resolution=(resolution, resolution),
        metadata={"unit": unit},
    )
    _, found = read_tiff(path)
    assert found == (None if expected is None else pytest.approx(expected, rel=1e-6))


@pytest.mark.parametrize(
    ("unit", "per_unit", "expected"),
    [("CENTIMETER", 1e8 / 1.5, 1.5), ("INCH", 72.0, None), ("CENTIMETER", 28.35, None)],
)
def test_resolution_units(
    tmp_path: Path, unit: str, per_unit: float, expected: float | None
) -> None:
    path = tmp_path / "r.tif"
    tifffile.imwrite(
        path,
        np.zeros((4, 4), np.uint8),
        resolution=(per_unit, per_unit),
        resolutionunit=unit,
        photometric="minisblack",
    )
    _, found = read_tiff(path)
    # 72 dpi and 28.35 px/cm (72 dpi in centimetres) are display densities, not EM pixels.
    assert found == (None if expected is None else pytest.approx(expected))


def test_rgb_tiff_becomes_luminance(tmp_path: Path) -> None:
    rgb = np.random.default_rng(2).integers(0, 256, (5, 6, 3)).astype(np.uint8)
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, rgb, photometric="rgb")
    data, _ = read_tiff(path)
    np.testing.assert_allclose(data, rgb_to_luminance(rgb))
    assert read_tiff_info(path).shape == (5, 6)
    assert read_tiff_info(path).dtype == np.float32


def test_tiff_with_channels_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.tif"
    tifffile.imwrite(path, np.zeros((2, 3, 4, 5), np.uint8), imagej=True, metadata={"axes": "ZCYX"})
    with pytest.raises(ImageFormatError, match="unsupported TIFF layout"):
        read_tiff(path)


@pytest.mark.parametrize("keep", [0, 4, 8, 100, 300, 700])
def test_truncated_tiff(tmp_path: Path, keep: int) -> None:
    path = tmp_path / "t.tif"
    write_tiff(path, np.ones((16, 16), np.float32))  # 1 KiB of pixels after the tags
    path.write_bytes(path.read_bytes()[:keep])
    with pytest.raises(ImageFormatError, match=r"t\.tif"):
        read_tiff(path)
    with pytest.raises(ImageFormatError, match=r"t\.tif"):
        read_tiff_info(path)


def test_tiff_missing_and_not_tiff(tmp_path: Path) -> None:
    with pytest.raises(ImageFormatError, match="not found"):
        read_tiff(tmp_path / "missing.tif")
    (tmp_path / "text.tif").write_text("hello")
    with pytest.raises(ImageFormatError, match="not a readable TIFF"):
        read_tiff(tmp_path / "text.tif")


@settings(max_examples=60, deadline=None)
@given(
    body=st.binary(min_size=0, max_size=400),
    prefix=st.sampled_from([b"", b"II*\x00", b"MM\x00*", b"II+\x00\x08\x00\x00\x00"]),
)
def test_random_bytes_tiff(
    tmp_path_factory: pytest.TempPathFactory, body: bytes, prefix: bytes
) -> None:
    path = tmp_path_factory.mktemp("tiff") / "r.tif"
    path.write_bytes(prefix + body)
    try:
        data, _ = read_tiff(path)
    except ImageFormatError as err:
        message = str(err)
    else:  # a valid TIFF by chance: it must be a sane array
        message = ""
        assert data.ndim in (2, 3)
    assert message == "" or str(path) in message


def test_tiff_write_errors(tmp_path: Path) -> None:
    with pytest.raises(ImageFormatError, match="2-D or 3-D"):
        write_tiff(tmp_path / "a.tif", np.zeros(5))
    with pytest.raises(ImageFormatError, match="complex"):
        write_tiff(tmp_path / "a.tif", np.zeros((2, 2), np.complex64))
    with pytest.raises(ImageFormatError, match="pixel size"):
        write_tiff(tmp_path / "a.tif", np.zeros((2, 2)), pixel_size=-1.0)
    assert list(tmp_path.iterdir()) == []


def test_tiff_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(path: Path, *args: object, **kwargs: object) -> None:
        Path(path).write_bytes(b"II*\x00partial")
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(tifffile, "imwrite", fail)
    with pytest.raises(ImageFormatError, match="Input/output error"):
        write_tiff(tmp_path / "out.tif", np.zeros((4, 4)))
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# PNG / JPEG
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PNG_FILES, ids=real_id)
def test_real_pngs_match_pillow(real_data: Path, path: Path) -> None:
    with PILImage.open(path) as img:
        ref = np.asarray(img).astype(np.float32)
    data = read_raster(path)
    assert data.dtype == np.float32
    np.testing.assert_array_equal(data, ref)
    assert raster_shape(path) == data.shape


def test_real_png_statistics(real_data: Path) -> None:
    # PROVENANCE: 061_10028.png min 32, max 186, mean 99.1014.
    data = read_raster(real_data / "prompt_sam_cryoppp/10028/train/images/061_10028.png")
    assert data.shape == (1024, 1024)
    assert (data.min(), data.max()) == (32, 186)
    assert float(data.mean(dtype=np.float64)) == pytest.approx(99.1014, abs=1e-4)


def test_png_16_bit(tmp_path: Path) -> None:
    values = (np.arange(20, dtype=np.uint16) * 3000).reshape(4, 5)
    PILImage.fromarray(values).save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_raster(tmp_path / "p.png"), values.astype(np.float32))


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "LA", "P", "1"])
def test_png_colour_modes_become_luminance(tmp_path: Path, mode: str) -> None:
    gray = (np.arange(30).reshape(5, 6) * 8).astype(np.uint8)
    path = tmp_path / "c.png"
    PILImage.fromarray(gray).convert(mode).save(path)
    data = read_raster(path)
    assert data.shape == (5, 6)
    if mode == "1":  # bilevel: 0 or 255
        assert set(np.unique(data)) <= {0.0, 255.0}
    else:  # a gray picture in colour modes reads back as exactly its gray values
        np.testing.assert_array_equal(data, gray.astype(np.float32))


def test_luminance_weights() -> None:
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]]], np.uint8)
    lum = rgb_to_luminance(rgb)
    np.testing.assert_allclose(lum[0], [76.245, 149.685, 29.07, 18.15], rtol=1e-6)


def test_topaz_mapping_without_standardizing() -> None:
    x = np.array([[-4.0, -3.0, -1.0, 0.0, 1.5, 3.0, 4.0]])
    # round(clip(255 (x + 3) / 6, 0, 255)): 127.5 rounds half to even, 191.25 -> 191.
    assert to_uint8(x, standardize=False).tolist() == [[0, 0, 85, 128, 191, 255, 255]]


def test_standardizing_maps_raw_micrographs_to_mid_gray() -> None:
    rng = np.random.default_rng(3)
    raw = 6800 + 9 * rng.standard_normal((64, 64))  # like the micrograph_cleaner_em file
    mapped = to_uint8(raw)
    assert abs(float(mapped.mean()) - 127.5) < 2
    assert mapped.min() < 10
    assert mapped.max() > 245
    z = (raw - raw.mean()) / raw.std()
    np.testing.assert_array_equal(mapped, to_uint8(z, standardize=False))
    assert to_uint8(np.full((3, 3), 5.0)).tolist() == [[128] * 3] * 3


@pytest.mark.parametrize("name", ["o.png", "o.PNG", "o.jpg", "o.jpeg"])
def test_write_png_and_jpeg(tmp_path: Path, name: str) -> None:
    data = np.random.default_rng(4).standard_normal((40, 50))
    path = tmp_path / name
    write_png(path, data, standardize=False)
    with PILImage.open(path) as img:
        assert img.format == ("PNG" if name.lower().endswith("png") else "JPEG")
        assert img.mode == "L"
        stored = np.asarray(img)
    expected = to_uint8(data, standardize=False)
    if img.format == "PNG":
        np.testing.assert_array_equal(stored, expected)
    else:  # lossy, but close at quality 95
        assert np.abs(stored.astype(int) - expected).mean() < 3
    np.testing.assert_array_equal(read_raster(path), stored.astype(np.float32))


def test_write_png_errors(tmp_path: Path) -> None:
    with pytest.raises(ImageFormatError, match=".png, .jpg or .jpeg"):
        write_png(tmp_path / "x.tif", np.zeros((2, 2)))
    with pytest.raises(ImageFormatError, match="2-D"):
        write_png(tmp_path / "x.png", np.zeros((2, 2, 2)))
    with pytest.raises(ImageFormatError, match="NaN"):
        write_png(tmp_path / "x.png", np.array([[np.nan, 1.0]]))
    with pytest.raises(ImageFormatError, match="complex"):
        write_png(tmp_path / "x.png", np.array([[1j]]))
    assert list(tmp_path.iterdir()) == []


def test_write_png_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(self: PILImage.Image, fp: object, *args: object, **kwargs: object) -> None:
        Path(str(fp)).write_bytes(b"\x89PNGpartial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(PILImage.Image, "save", fail)
    with pytest.raises(ImageFormatError, match="No space left"):
        write_png(tmp_path / "out.png", np.zeros((4, 4)))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("keep", [0, 8, 30, 60, 200])
def test_truncated_png(tmp_path: Path, keep: int) -> None:
    buf = io.BytesIO()
    PILImage.fromarray(np.random.default_rng(5).integers(0, 255, (32, 32)).astype(np.uint8)).save(
        buf, format="PNG"
    )
    path = tmp_path / "t.png"
    path.write_bytes(buf.getvalue()[:keep])
    with pytest.raises(ImageFormatError, match=r"t\.png"):
        read_raster(path)


@settings(max_examples=60, deadline=None)
@given(
    body=st.binary(min_size=0, max_size=300),
    prefix=st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0"]),
)
def test_random_bytes_raster(
    tmp_path_factory: pytest.TempPathFactory, body: bytes, prefix: bytes
) -> None:
    path = tmp_path_factory.mktemp("raster") / "r.png"
    path.write_bytes(prefix + body)
    try:
        data = read_raster(path)
    except ImageFormatError as err:
        message = str(err)
    else:
        message = ""
        assert data.ndim == 2
    assert message == "" or str(path) in message
