"""Format-by-format behaviour: exact layouts, quirks, and clear errors on malformed input."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest

from jaxpick.errors import CoordinateFormatError
from jaxpick.io.coords import (
    FORMATS,
    Coordinates,
    canonical_format,
    detect_format,
    read_coordinates,
    read_many,
    read_star,
    write_coordinates,
)
from jaxpick.io.coords.cbox import CBOX_COLUMNS
from jaxpick.io.coords.cryosparc import load_cs


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def picks(score: bool = True) -> Coordinates:
    return Coordinates(
        image_name=["mic.1", "mic.1", "mic-2"],
        x=[10, 20.5, 30],
        y=[5, 6, 7.25],
        score=[0.5, -1.25, 2] if score else None,
    )


# ----------------------------------------------------------------------------- registry


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("a.txt", "coord"),
        ("a.TAB", "coord"),
        ("d/a.star", "star"),
        ("a.box", "box"),
        ("a_info.json", "json"),
        ("a.cbox", "cbox"),
        ("a.cs", "cs"),
        ("a.csv", "csv"),
        ("a.coord", "plain"),
    ],
)
def test_detect_format(name: str, fmt: str) -> None:
    assert detect_format(name) == fmt


@pytest.mark.parametrize("name", ["a.xyz", "noext", "a.mrc"])
def test_detect_format_rejects_unknown_extensions(name: str) -> None:
    with pytest.raises(CoordinateFormatError, match="unknown coordinate file extension") as info:
        detect_format(name)
    assert name in str(info.value)


def test_format_names_and_aliases() -> None:
    assert canonical_format("Topaz") == "coord"
    assert canonical_format("relion") == "star"
    assert {canonical_format(f) for f in FORMATS} == set(FORMATS)
    with pytest.raises(ValueError, match="unknown coordinate format"):
        canonical_format("pdf")
    with pytest.raises(CoordinateFormatError, match="unknown coordinate format"):
        read_coordinates("a.txt", "pdf")


def test_auto_output_format_follows_topaz_convert(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    assert write_coordinates(picks(), folder, box_size=32)[0].suffix == ".box"
    assert write_coordinates(picks(), folder)[0].name.endswith("_info.json")
    assert write_coordinates(picks(), tmp_path / "a.star")[0].suffix == ".star"
    with pytest.raises(CoordinateFormatError, match="extension"):
        write_coordinates(picks(), tmp_path / "a.bin")


# ----------------------------------------------------------------------------- Topaz coord


def test_topaz_writer_layout(tmp_path: Path) -> None:
    c = Coordinates(image_name=["m", "m"], x=[1.0, 2.0], y=[3, 4.5], score=[1.0, 2.0])
    dest = tmp_path / "c.txt"
    write_coordinates(c, dest, "coord")
    # A column with one fraction is written as floats throughout, as pandas (Topaz) does.
    assert dest.read_text() == "image_name\tx_coord\ty_coord\tscore\nm\t1\t3.0\t1\nm\t2\t4.5\t2\n"
    three_d = c.replace(z=[7, 8], score=None, extra={"source": ["a", "b"]})
    write_coordinates(three_d, dest, "coord")
    assert dest.read_text().splitlines()[0] == "image_name\tx_coord\ty_coord\tz_coord"


def test_topaz_reader_tolerates_extra_columns_crlf_and_extensions(tmp_path: Path) -> None:
    text = (
        "image_name\tx_coord\ty_coord\tscore\tsource\r\n"
        "dir/mic_1.mrc\t10\t20\t-0.5\ttrain\r\n"
        "\r\n"
        "1\t30.5\t40\tnan\ttest\t\r\n"
    )
    c = read_coordinates(write(tmp_path, "p.txt", text))
    assert c.image_name.tolist() == ["mic_1", "1"]  # integer names stay strings
    assert c.x.tolist() == [10, 30.5]
    assert c.score is not None
    assert c.score[0] == -0.5
    assert np.isnan(c.score[1])
    assert c.extra["source"].tolist() == ["train", "test"]
    spaced = read_coordinates(write(tmp_path, "s.txt", "image_name x_coord y_coord\nm 1 2\n"))
    assert spaced.x.tolist() == [1]
    header_only = read_coordinates(write(tmp_path, "h.txt", "image_name\tx_coord\ty_coord\n"))
    assert len(header_only) == 0
    assert header_only.score is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty file"),
        ("\n\n", "empty file"),
        ("image_name\tx\ty\n", "missing column(s) x_coord, y_coord"),
        ("x_coord\ty_coord\n1\t2\n", "missing column(s) image_name"),
        ("image_name\tx_coord\ty_coord\nm\t1\n", "line 2: 2 fields, but the header has 3"),
        ("image_name\tx_coord\ty_coord\nm\t1\t2\nm\tone\t2\n", "line 3: x_coord"),
        ("image_name\tx_coord\ty_coord\nm\t1\tinf\n", "finite"),
        ("image_name\tx_coord\tx_coord\n", "duplicate column"),
    ],
)
def test_topaz_reader_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(CoordinateFormatError, match=re.escape(message)):
        read_coordinates(write(tmp_path, "bad.txt", text))


def test_topaz_per_image_like_topaz_split(tmp_path: Path) -> None:
    files = write_coordinates(picks(), tmp_path, "coord", per_image=True, suffix="_s")
    assert [f.name for f in files] == ["mic.1_s.txt", "mic-2_s.txt"]
    assert read_many(files).equals(picks())


def test_topaz_writer_rejects_tabs_in_names(tmp_path: Path) -> None:
    with pytest.raises(CoordinateFormatError, match="tab"):
        write_coordinates(Coordinates(image_name="a\tb", x=[1], y=[2]), tmp_path / "o.txt")


# ----------------------------------------------------------------------------- EMAN box


def test_box_reader_empty_decimals_and_extra_columns(tmp_path: Path) -> None:
    empty = read_coordinates(write(tmp_path, "mic_3.box", ""))  # Topaz issue #13 crashes here
    assert len(empty) == 0
    assert empty.images() == []
    c = read_coordinates(write(tmp_path, "mic_4.box", "10.5 20 64 64 -3\n\n30\t40\t65\t65\t-3\n"))
    assert c.images() == ["mic_4"]
    assert c.x.tolist() == [42.5, 62]
    assert c.y.tolist() == [52, 72]
    assert c.extra["column5"].tolist() == [-3, -3]
    assert c.extra["Width"].tolist() == [64, 65]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1 2 3\n", "line 1: 3 values, expected at least 4"),
        ("1 2 3 4\n1 2 3 4 5\n", "line 2: 5 values, but line 1 has 4"),
        ("1 2 x 4\n", "line 1: width"),
        ("1 2 -3 4\n", "negative box size"),
    ],
)
def test_box_reader_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(CoordinateFormatError, match=message):
        read_coordinates(write(tmp_path, "b.box", text))


def test_box_writer_is_topaz_layout_and_needs_a_box_size(tmp_path: Path) -> None:
    with pytest.raises(CoordinateFormatError, match="--boxsize"):
        write_coordinates(picks(), tmp_path, "box")
    files = write_coordinates(picks(), tmp_path, "box", box_size=64, suffix="_x")
    assert [f.name for f in files] == ["mic.1_x.box", "mic-2_x.box"]
    assert files[0].read_text() == "-22.0\t-27\t64\t64\n-11.5\t-26\t64\t64\n"
    back = read_many(files, suffix="_x")
    assert back.equals(picks(), check_score=False, check_extra=False)
    # A box file read back knows its box size, so it can be written again without one.
    again = write_coordinates(back, tmp_path / "again", "box")
    assert again[0].read_text() == files[0].read_text()


def test_box_odd_size_round_trip_is_exact(tmp_path: Path) -> None:
    c = Coordinates(image_name="m", x=[100, 7], y=[50, 3])
    back = read_many(write_coordinates(c, tmp_path, "box", box_size=65))
    assert back.equals(c, check_extra=False)


def test_box_rejects_3d_and_bad_names(tmp_path: Path) -> None:
    with pytest.raises(CoordinateFormatError, match="z"):
        write_coordinates(picks().replace(z=[1, 2, 3]), tmp_path, "box", box_size=10)
    with pytest.raises(CoordinateFormatError, match="not a plain file name"):
        write_coordinates(
            Coordinates(image_name="../up", x=[1], y=[1]), tmp_path, "box", box_size=4
        )


# ----------------------------------------------------------------------------- EMAN2 json


def test_json_round_trip_and_topaz_layout(tmp_path: Path) -> None:
    files = write_coordinates(picks(), tmp_path, "json")
    assert [f.name for f in files] == ["mic.1_info.json", "mic-2_info.json"]
    assert files[1].read_text() == '{\n"boxes": [\n[\n30,\n7.25,\n"manual"\n]\n]\n}\n'
    back = read_many(files)
    assert back.equals(picks(), check_score=False, check_extra=False)
    assert back.extra["box_type"].tolist() == ["manual"] * 3


def test_json_reader_accepts_other_eman2_keys(tmp_path: Path) -> None:
    doc = {"ctf": [1, 2], "boxes": [[1.5, 2, "auto", 0.3], [3, 4]]}
    c = read_coordinates(write(tmp_path, "mic_info.json", json.dumps(doc)))
    assert c.images() == ["mic"]
    assert c.x.tolist() == [1.5, 3]
    assert c.extra["box_type"].tolist() == ["auto", ""]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not valid JSON"),
        ("[]", 'no "boxes" list'),
        ('{"ctf": 1}', 'no "boxes" list'),
        ('{"boxes": [[1]]}', "box 1"),
        ('{"boxes": [[1, "2"]]}', "box 1"),
        ('{"boxes": [[1, 2], [true, 2]]}', "box 2"),
        ('{"boxes": [[NaN, 2]]}', "finite"),
    ],
)
def test_json_reader_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(CoordinateFormatError, match=message):
        read_coordinates(write(tmp_path, "m_info.json", text))


# ----------------------------------------------------------------------------- crYOLO cbox


def test_cbox_writer_layout(tmp_path: Path) -> None:
    files = write_coordinates(picks(), tmp_path, "cbox", box_size=64)
    star = read_star(files[0])
    assert [b.name for b in star.blocks] == ["global", "cryolo", "cryolo_include"]
    assert dict(star.blocks[0].pairs) == {"cbox_format_version": "1.0"}
    loop = star.blocks[1].loop
    assert loop is not None
    assert loop.columns == CBOX_COLUMNS
    assert loop.rows[0] == ("-22.0", "-27", "<NA>", "64", "64", "<NA>") + ("<NA>",) * 2 + (
        "0.5",
        "<NA>",
        "<NA>",
    )
    assert len(star.blocks[2].loop) == 0  # type: ignore[arg-type]
    back = read_many(files)
    assert back.equals(picks(), check_extra=False)


def test_cbox_3d_and_filament_columns(tmp_path: Path) -> None:
    c = Coordinates(
        image_name="tomo",
        x=[10, 20],
        y=[10, 20],
        z=[5, 7],
        extra={"filamentid": [0, 1], "Width": [16, 16], "Height": [16, 16]},
    )
    files = write_coordinates(c, tmp_path, "cbox")
    star = read_star(files[0])
    assert star.blocks[1].loop.columns[-1] == "filamentid"  # type: ignore[union-attr]
    assert star.blocks[2].loop.rows == (("5",), ("7",))  # type: ignore[union-attr]
    back = read_coordinates(files[0])
    assert back.z is not None
    assert back.z.tolist() == [5, 7]
    assert back.extra["filamentid"].tolist() == [0, 1]
    assert back.extra["Depth"].tolist() == [16, 16]


def test_cbox_reader_errors(tmp_path: Path) -> None:
    with pytest.raises(CoordinateFormatError, match="data_cryolo loop"):
        read_coordinates(write(tmp_path, "a.cbox", "data_cryolo\nloop_\n_CoordinateX\n1\n"))
    with pytest.raises(CoordinateFormatError, match="line 7: _Width"):
        read_coordinates(
            write(
                tmp_path,
                "b.cbox",
                "data_cryolo\nloop_\n_CoordinateX\n_CoordinateY\n_Width\n_Height\n1 2 <NA> 3\n",
            )
        )


# ----------------------------------------------------------------------------- cryoSPARC


def test_cs_writer_needs_shapes_and_is_seedable(tmp_path: Path) -> None:
    shapes = {"mic.1": (100, 200), "mic-2": (300, 400)}
    with pytest.raises(CoordinateFormatError, match="'mic-2'"):
        write_coordinates(picks(), tmp_path / "a.cs", "cs", image_shapes={"mic.1": (1, 1)})
    a = write_coordinates(picks(), tmp_path / "a.cs", "cs", image_shapes=shapes, seed=3)[0]
    b = write_coordinates(picks(), tmp_path / "b.cs", "cs", image_shapes=shapes, seed=3)[0]
    assert a.read_bytes() == b.read_bytes()
    array = load_cs(a)
    assert array["location/micrograph_path"].tolist() == [b"mic.1.mrc", b"mic.1.mrc", b"mic-2.mrc"]
    assert array["location/micrograph_shape"].tolist() == [[100, 200], [100, 200], [300, 400]]
    assert array["location/center_x_frac"][0] == np.float32(10 / 200)
    assert array["location/center_y_frac"][2] == np.float32(7.25 / 300)
    uids = array["location/micrograph_uid"]
    assert uids[0] == uids[1] != uids[2]
    assert len(set(array["uid"].tolist())) == 3
    np.testing.assert_array_equal(array["pick_stats/ncc_score"], [0.5, -1.25, 2])
    back = read_coordinates(a)
    assert back.equals(picks(), atol=1e-4, check_extra=False)
    # Reading and writing again keeps the uids and needs no shapes.
    again = load_cs(write_coordinates(back, tmp_path / "c.cs", "cs")[0])
    np.testing.assert_array_equal(again["uid"], array["uid"])
    np.testing.assert_array_equal(again["location/micrograph_uid"], uids)


def test_cs_writer_pixel_size_and_3d(tmp_path: Path) -> None:
    shapes = {"mic.1": (100, 200), "mic-2": (300, 400)}
    path = write_coordinates(picks(), tmp_path / "a.cs", "cs", image_shapes=shapes, pixel_size=1.5)
    assert load_cs(path[0])["location/micrograph_psize_A"].tolist() == [1.5] * 3
    with pytest.raises(CoordinateFormatError, match="2-D"):
        write_coordinates(
            picks().replace(z=[1, 2, 3]), tmp_path / "z.cs", "cs", image_shapes=shapes
        )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "no numpy .npy header"),
        (b"\x94CSDAT\x00\x01", "compressed dataset format"),
        (b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f8',", "corrupt"),
    ],
)
def test_cs_reader_errors(tmp_path: Path, data: bytes, message: str) -> None:
    with pytest.raises(CoordinateFormatError, match=message):
        read_coordinates(write(tmp_path, "a.cs", data))


def test_cs_reader_rejects_plain_arrays_and_truncation(tmp_path: Path) -> None:
    path = tmp_path / "plain.cs"
    with open(path, "wb") as f:
        np.save(f, np.zeros(3))
    with pytest.raises(CoordinateFormatError, match="structured"):
        read_coordinates(path)
    shapes = {"mic.1": (100, 200), "mic-2": (300, 400)}
    good = write_coordinates(picks(), tmp_path / "g.cs", "cs", image_shapes=shapes)[0]
    truncated = write(tmp_path, "t.cs", good.read_bytes()[:-10])
    with pytest.raises(CoordinateFormatError, match="truncated"):
        read_coordinates(truncated)
    # A header that declares 10**12 rows must not make us allocate them.
    buffer = io.BytesIO()
    dtype = load_cs(good).dtype
    header = {"descr": dtype.descr, "fortran_order": False, "shape": (10**12,)}
    np.lib.format.write_array_header_1_0(buffer, header)
    huge = write(tmp_path, "h.cs", buffer.getvalue() + b"\0" * dtype.itemsize)
    with pytest.raises(CoordinateFormatError, match="truncated"):
        read_coordinates(huge)


# ----------------------------------------------------------------------------- CSV, VIA, plain


def test_plain_csv_round_trip_and_layout(tmp_path: Path) -> None:
    dest = tmp_path / "p.csv"
    write_coordinates(picks(), dest, "csv")
    assert dest.read_text().splitlines()[:2] == [
        "image_name,x_coord,y_coord,score",
        "mic.1,10.0,5.0,0.5",
    ]
    assert read_coordinates(dest).equals(picks())
    commas = Coordinates(image_name=['a,"b"'], x=[1], y=[2])
    write_coordinates(commas, dest, "csv")
    assert read_coordinates(dest).images() == ['a,"b"']


def test_csv_without_image_column_uses_file_stem(tmp_path: Path) -> None:
    c = read_coordinates(write(tmp_path, "mic_5.csv", "x_coord,y_coord,score\n1,2,0.5\n"))
    assert c.images() == ["mic_5"]


def test_via_writer_is_topaz_layout_and_reads_back(tmp_path: Path) -> None:
    dest = tmp_path / "v.csv"
    write_coordinates(picks(), dest, "via")
    assert dest.read_text().splitlines() == [
        "filename,file_size,file_attributes,region_count,region_id,region_shape_attributes,"
        "region_attributes",
        'mic.1.png,-1,{},2,0,"{""name"":""point"",""cx"":10.0,""cy"":5.0}","{""score"":""0.5""}"',
        'mic.1.png,-1,{},2,1,"{""name"":""point"",""cx"":20.5,""cy"":6.0}","{""score"":""-1.25""}"',
        'mic-2.png,-1,{},1,0,"{""name"":""point"",""cx"":30.0,""cy"":7.25}","{""score"":""2.0""}"',
    ]
    assert read_coordinates(dest).equals(picks())
    write_coordinates(picks(score=False), dest, "via")
    assert dest.read_text().splitlines()[1].endswith(",{}")
    assert read_coordinates(dest).equals(picks(score=False))


def test_via_reader_skips_images_without_regions(tmp_path: Path) -> None:
    text = (
        "filename,file_size,file_attributes,region_count,region_id,region_shape_attributes,"
        "region_attributes\n"
        "empty.png,1,{},0,0,{},{}\n"
        'a.png,1,{},1,0,"{""name"":""point"",""cx"":3,""cy"":4}","{""score"":1.5}"\n'
    )
    c = read_coordinates(write(tmp_path, "v.csv", text))
    assert c.images() == ["a"]
    assert c.score is not None
    assert c.score.tolist() == [1.5]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty file"),
        ("a,b\n1,2\n", "unrecognised CSV header"),
        ("x_coord,y_coord\n1\n", "line 2: 1 fields"),
        ("x_coord,y_coord\n1,\n", "line 2: y_coord"),
        ('x_coord,y_coord\n"1,2\n', "malformed CSV"),
        (
            "filename,region_count,region_shape_attributes,region_attributes\na,1,{,{}\n",
            "line 2: invalid region JSON",
        ),
        (
            'filename,region_count,region_shape_attributes,region_attributes\na,1,"{""cx"":1}",{}\n',
            "no point cx/cy",
        ),
    ],
)
def test_csv_reader_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(CoordinateFormatError, match=message):
        read_coordinates(write(tmp_path, "c.csv", text))


def test_plain_coord_files(tmp_path: Path) -> None:
    c = read_coordinates(write(tmp_path, "m.coord", "1 2\n3.5\t4\n"))
    assert c.images() == ["m"]
    assert c.x.tolist() == [1, 3.5]
    files = write_coordinates(picks(), tmp_path / "out", "plain")
    assert files[0].read_text() == "10.0\t5\n20.5\t6\n"
    assert read_many(files).equals(picks(), check_score=False)
    with pytest.raises(CoordinateFormatError, match="line 1: 1 values"):
        read_coordinates(write(tmp_path, "bad.coord", "1\n"))
