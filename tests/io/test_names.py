from pathlib import Path

import pytest

from jaxpick.errors import JaxpickError
from jaxpick.io.names import (
    image_name,
    index_images,
    is_image_path,
    strip_image_extension,
    unmatched_names,
)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("mic_001", "mic_001"),
        ("mic_001.mrc", "mic_001"),
        ("mic_001.MRC", "mic_001"),
        ("stack.mrcs", "stack"),
        ("a/b/c/mic_001.tiff", "mic_001"),
        ("mic.001.tif", "mic.001"),
        ("emd_3001.map.gz", "emd_3001"),
        ("mic_001.png", "mic_001"),
        ("mic_001.jpeg", "mic_001"),
        (">J1/imported/18jam15b_0345_ali_DW.mrcs", "18jam15b_0345_ali_DW"),
        ("F:\\data\\tomo_01.rec", "tomo_01"),
        ("Micrographs/14sep05c_00024sq_00003hl.frames.mrc", "14sep05c_00024sq_00003hl.frames"),
        # Only one image extension is removed, and unknown ones are kept.
        ("a.mrc.mrc", "a.mrc"),
        ("mic_001.star", "mic_001.star"),
        # A bare extension is a name, not an empty string.
        (".mrc", ".mrc"),
        ("  padded.mrc ", "padded"),
    ],
)
def test_image_name(given: str, expected: str) -> None:
    assert image_name(given) == expected


def test_strip_only_compression_of_images() -> None:
    assert strip_image_extension("notes.txt.gz") == "notes.txt.gz"
    assert strip_image_extension("vol.rec.bz2") == "vol"


def test_is_image_path() -> None:
    assert is_image_path("x/y.mrc")
    assert is_image_path("y.TIF")
    assert is_image_path("y.map.gz")
    assert not is_image_path("y.star")
    assert not is_image_path("y.gz")


def test_index_images(tmp_path: Path) -> None:
    for name in ("b.mrc", "a.tiff", "c.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.mrc").write_bytes(b"")
    index = index_images(tmp_path)
    assert list(index) == ["a", "b", "c"]
    assert index["b"] == tmp_path / "b.mrc"
    # Files and folders mix; the same file twice is fine.
    mixed = index_images([tmp_path / "sub" / "d.mrc", tmp_path, tmp_path / "b.mrc"])
    assert list(mixed) == ["a", "b", "c", "d"]


def test_index_images_rejects_ambiguous_and_missing(tmp_path: Path) -> None:
    (tmp_path / "a.mrc").write_bytes(b"")
    (tmp_path / "a.tiff").write_bytes(b"")
    with pytest.raises(JaxpickError, match="two images share the name 'a'"):
        index_images(tmp_path)
    with pytest.raises(JaxpickError, match="no such image file or folder"):
        index_images(tmp_path / "missing")


def test_unmatched_names_reports() -> None:
    assert unmatched_names(["a", "b"], ["a", "b", "c"]) == ""
    report = unmatched_names(["a", "x1", "x2"], ["a"])
    assert report.startswith("2 image name(s) match no image: 'x1', 'x2'")
    assert "named like 'a'" in report
    many = unmatched_names([f"m{i}" for i in range(9)], [], limit=3)
    assert "and 6 more" in many
    assert "no images found" in many
