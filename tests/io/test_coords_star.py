"""STAR parsing (against starfile), the RELION mapping and the STAR writers."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from jaxpick.errors import CoordinateFormatError
from jaxpick.io.coords import (
    MICROGRAPH_PATH,
    Coordinates,
    parse_star,
    read_coordinates,
    read_star,
    write_coordinates,
)
from jaxpick.io.coords.star import quote_value, star_lines
from jaxpick.io.coords.table import parse_number
from tests.conftest import real_files, real_id

STAR_FILES = real_files("**/*.star", "**/*.cbox")


def parse(text: str):
    return parse_star(text.split("\n"), "t.star")


# ----------------------------------------------------------------------------- parser


def test_parser_handles_relion_dialect() -> None:
    star = parse(
        "# RELION; version 3.0\n"
        "\n"
        "data_general\n"
        "_rlnFinalResolution   16.36   # trailing comment\n"
        "_rlnMaskName 'my mask.mrc'\n"
        '_rlnEmpty ""\n'
        "_rlnNextLine\n"
        "   value_on_next_line\n"
        "\n"
        "data_\n"
        "loop_ \n"
        "_rlnCoordinateX #1 \n"
        "_rlnMtfFileName #2 [Modulation Transfer Function]\n"
        "_rlnMicrographName\t#3\n"
        ' 1.5\tmtf.star    "a b.mrc" \n'
        "# a comment between rows\n"
        "2\t'it's.star'  <NA>\n"
        "data_empty\n"
        "loop_\n"
        "_rlnCoordinateX\n"
        "data_one\n"
        "loop_\n"
        "_a\n"
        "_b\n"
        "x y\n"
    )
    assert [b.name for b in star.blocks] == ["general", "", "empty", "one"]
    general = star.block("general")
    assert general is not None
    assert not general.loops
    assert dict(general.pairs) == {
        "rlnFinalResolution": "16.36",
        "rlnMaskName": "my mask.mrc",
        "rlnEmpty": "",
        "rlnNextLine": "value_on_next_line",
    }
    loop = star.blocks[1].loop
    assert loop is not None
    assert loop.columns == ("rlnCoordinateX", "rlnMtfFileName", "rlnMicrographName")
    assert loop.rows == (("1.5", "mtf.star", "a b.mrc"), ("2", "it's.star", "<NA>"))
    assert loop.lines == (15, 17)
    assert len(star.block("empty").loop) == 0  # type: ignore[union-attr]
    assert star.block("one").loop.rows == (("x", "y"),)  # type: ignore[union-attr]
    assert star.block("missing") is None


def test_parser_semicolon_text_field_and_stop() -> None:
    star = parse("data_x\n_note\n;line one\nline two\n;\nloop_\n_a\n1\nstop_\n_k v\n")
    block = star.blocks[0]
    assert block.pairs["note"] == "line one\nline two"
    assert block.pairs["k"] == "v"
    assert block.loop is not None
    assert block.loop.rows == (("1",),)


def test_parser_keeps_unquoted_data_prefixed_values_inside_rows_and_pairs() -> None:
    star = parse("data_\n_rlnMicrographName data_01.mrc\nloop_\n_a\n_b\n1 data_001.mrc\n")
    assert star.blocks[0].pairs["rlnMicrographName"] == "data_01.mrc"
    assert star.blocks[0].loop.rows == (("1", "data_001.mrc"),)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("data_\nloop_\n_a\n_b\n1 2\n3\n", "line 6: loop row has 1 values but the loop has 2"),
        ("hello world\n", "line 1: 'hello' appears before the first data_ block"),
        ("data_\nloop_\ndata_x\n", "line 2: loop_ without column names"),
        ("data_\n_key\n", "line 2: _key has no value"),
        ("data_\n_key\n_other 1\n", "line 2: _key has no value"),
        ("data_\n_key 'open\n", "line 2: unterminated quoted value"),
        ("data_\nloop_\n_a\n_a\n", "line 4: loop column _a appears twice"),
        ("data_\n_k 1\n_k 2\n", "line 3: _k given twice"),
        ("data_\n_k 1 2\n", "line 2: unexpected '2'"),
        ("data_\nsave_frame\n", "line 2: STAR 'save_frame' frames are not supported"),
        ("data_\n;open text\n", "line 2: text field opened with ';' is never closed"),
        ("data_\n'stray'\n", "line 2: unexpected 'stray'"),
    ],
)
def test_parser_errors_name_file_and_line(text: str, message: str) -> None:
    with pytest.raises(CoordinateFormatError) as info:
        parse(text)
    assert str(info.value).startswith("t.star: ")
    assert message in str(info.value)


def test_parser_accepts_empty_and_comment_only_text() -> None:
    assert parse("").blocks == ()
    assert parse("# nothing\n\n").blocks == ()


@pytest.mark.parametrize(
    "value", ["plain", "a b", "", " ", "_x", "#x", "loop_", "data_x", "it's", 'say "hi"', "'q'"]
)
def test_quote_value_round_trips_through_parser(value: str) -> None:
    star = parse(f"data_\nloop_\n_a\n_b\n{quote_value(value)} end\n")
    assert star.blocks[0].loop.rows == ((value, "end"),)  # type: ignore[union-attr]


def test_quote_value_refuses_unquotable_text() -> None:
    with pytest.raises(ValueError, match="quote"):
        quote_value("a' \" b")


# ----------------------------------------------------------------------------- vs starfile


@pytest.mark.parametrize("path", STAR_FILES, ids=real_id)
def test_parser_agrees_with_starfile(real_data: Path, path: Path) -> None:
    """Same blocks, same column names, same values as the starfile package reads them."""
    try:
        import pandas as pd
        import starfile
    except ImportError as e:  # pragma: no cover - depends on the test environment
        pytest.skip(f"starfile/pandas not importable ({e}); cross-check needs jaxpick[test]")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas/starfile deprecation chatter is not our concern
        reference = starfile.read(path, always_dict=True)
    ours = read_star(path)
    assert [b.name for b in ours.blocks] == list(reference)
    for block in ours.blocks:
        expected = reference[block.name]
        if isinstance(expected, dict):
            assert not block.loops
            assert list(block.pairs) == list(expected)
            for key, value in expected.items():
                if isinstance(value, str):
                    assert block.pairs[key] == value, key
                else:
                    assert parse_number(block.pairs[key]) == pytest.approx(value, nan_ok=True)
            continue
        assert not block.pairs
        assert len(block.loops) == 1
        loop = block.loops[0]
        assert list(loop.columns) == list(expected.columns)
        assert len(loop) == len(expected)
        for column in expected.columns:
            values = loop.column(column)
            if pd.api.types.is_numeric_dtype(expected[column]):
                numbers = np.array([parse_number(v) for v in values], dtype=np.float64)
                np.testing.assert_array_equal(numbers, expected[column].to_numpy(dtype=float))
            else:
                assert values == [str(v) for v in expected[column]], column


# ----------------------------------------------------------------------------- RELION mapping


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_relion30_layout_with_legacy_particle_score(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "old.star",
        "data_images\nloop_\n_rlnMicrographName #1\n_rlnCoordinateX #2\n_rlnCoordinateY #3\n"
        "_rlnParticleScore #4\n_rlnDefocusU #5\nMics/a.mrc 10.7 20 0.5 15000\n"
        "Mics/b.tif 30 40 -1 16000.5\n",
    )
    c = read_coordinates(path)
    assert c.image_name.tolist() == ["a", "b"]
    assert c.x.tolist() == [10.7, 30]  # floats kept (Topaz truncates to 10)
    assert c.score is not None
    assert c.score.tolist() == [0.5, -1]
    assert c.extra[MICROGRAPH_PATH].tolist() == ["Mics/a.mrc", "Mics/b.tif"]
    assert c.extra["DefocusU"].tolist() == [15000, 16000.5]


def test_relion31_picks_use_data_particles_not_optics(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "p.star",
        "# version 30001\ndata_optics\nloop_\n_rlnOpticsGroup\n_rlnImagePixelSize\n1 1.4\n"
        "data_particles\nloop_\n_rlnCoordinateX\n_rlnCoordinateY\n_rlnCoordinateZ\n"
        "_rlnMicrographName\n_rlnAutopickFigureOfMerit\n_rlnOpticsGroup\n"
        "1 2 3 tomo.mrc 0.9 1\n",
    )
    c = read_coordinates(path)
    assert c.z is not None
    assert c.z.tolist() == [3]
    assert c.score is not None
    assert c.score.tolist() == [0.9]
    assert "ImagePixelSize" not in c.extra
    assert c.extra["OpticsGroup"].tolist() == [1]


def test_coordinate_file_names_come_from_the_file_stem(tmp_path: Path) -> None:
    body = "data_\nloop_\n_rlnCoordinateX\n_rlnCoordinateY\n1 2\n"
    assert read_coordinates(write(tmp_path, "mic_7_autopick.star", body)).images() == ["mic_7"]
    assert read_coordinates(write(tmp_path, "mic_8_manualpick.star", body)).images() == ["mic_8"]
    assert read_coordinates(write(tmp_path, "mic_9_picks.star", body)).images() == ["mic_9_picks"]
    picks = write(tmp_path, "mic_9_picks.star", body)
    assert read_coordinates(picks, suffix="_picks").images() == ["mic_9"]
    assert read_coordinates(picks, image_name="other").images() == ["other"]


def test_image_name_override_beats_micrograph_name(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "x.star",
        "data_\nloop_\n_rlnMicrographName\n_rlnCoordinateX\n_rlnCoordinateY\na.mrc 1 2\n",
    )
    assert read_coordinates(path, image_name="forced").images() == ["forced"]
    assert read_coordinates(path, image_name="dir/forced.mrc").images() == ["forced"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("data_general\n_rlnFinalResolution 3.2\n", "no coordinate columns"),
        ("# only a comment\n", "no data_ block"),
        (
            "data_\nloop_\n_rlnCenteredCoordinateXAngst\n_rlnCenteredCoordinateYAngst\n1 2\n",
            "RELION 5 _rlnCenteredCoordinate",
        ),
        ("data_\nloop_\n_rlnCoordinateX\n_rlnCoordinateY\n1 abc\n", "line 5: _rlnCoordinateY"),
        ("data_\nloop_\n_rlnCoordinateX\n_rlnCoordinateY\n1 <NA>\n", "finite number"),
    ],
)
def test_star_coordinate_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(CoordinateFormatError, match=message):
        read_coordinates(write(tmp_path, "bad.star", text))


# ----------------------------------------------------------------------------- writers


def picks() -> Coordinates:
    return Coordinates(
        image_name=["mic.1", "mic.1", "mic-2"],
        x=[10, 20.5, 30],
        y=[5, 6, 7],
        score=[0.5, -1.25, 2],
    )


def test_topaz_style_is_exactly_topaz_layout(tmp_path: Path) -> None:
    dest = tmp_path / "out.star"
    write_coordinates(picks(), dest, "star", star_style="topaz")
    assert dest.read_text() == (
        "data_images\n"
        "loop_\n"
        "_rlnAutopickFigureOfMerit #1\n"
        "_rlnMicrographName #2\n"
        "_rlnCoordinateX #3\n"
        "_rlnCoordinateY #4\n"
        "0.5\tmic.1.mrc\t10.0\t5\n"
        "-1.25\tmic.1.mrc\t20.5\t6\n"
        "2.0\tmic-2.mrc\t30.0\t7\n"
    )
    back = read_coordinates(dest)
    assert back.equals(picks(), check_extra=False)
    assert back.extra[MICROGRAPH_PATH].tolist() == ["mic.1.mrc", "mic.1.mrc", "mic-2.mrc"]


def test_relion_per_image_files_match_relion_autopick_layout(tmp_path: Path) -> None:
    files = write_coordinates(picks(), tmp_path, "star", per_image=True, suffix="_autopick")
    assert [f.name for f in files] == ["mic.1_autopick.star", "mic-2_autopick.star"]
    star = read_star(files[0])
    assert [b.name for b in star.blocks] == [""]
    loop = star.blocks[0].loop
    assert loop is not None
    # RELION's autopick output column order (see micrograph_cleaner_em's _autopick.star).
    assert loop.columns == (
        "rlnCoordinateX",
        "rlnCoordinateY",
        "rlnAutopickFigureOfMerit",
        "rlnClassNumber",
        "rlnAnglePsi",
    )
    back = read_coordinates(files[0])  # _autopick stripped by default
    assert back.images() == ["mic.1"]
    assert back.x.tolist() == [10, 20.5]


def test_relion_combined_uses_image_ext_or_original_path(tmp_path: Path) -> None:
    lines = star_lines(picks(), image_ext=".tiff")
    assert lines[:3] == ["", "data_particles", ""]  # no optics block, so no 3.1 version line
    assert "mic.1.tiff 10.0 5 0.5" in lines
    with_path = picks().replace(extra={MICROGRAPH_PATH: ["A/mic.1.mrc", "", "B/mic-2.mrcs"]})
    lines = star_lines(with_path, image_ext=".tiff")
    assert "A/mic.1.mrc 10.0 5 0.5" in lines
    assert "mic.1.tiff 20.5 6 -1.25" in lines


def test_star_to_star_keeps_all_particle_columns(real_data: Path, tmp_path: Path) -> None:
    source = real_data / "cryodrgn" / "relion31.star"
    original = read_coordinates(source)
    dest = tmp_path / "copy.star"
    write_coordinates(original, dest, "star")
    copy = read_coordinates(dest)
    assert copy.equals(original)
    src_loop = read_star(source).block("particles").loop  # type: ignore[union-attr]
    out_loop = read_star(dest).block("particles").loop  # type: ignore[union-attr]
    assert set(out_loop.columns) == set(src_loop.columns)  # type: ignore[union-attr]
    for column in src_loop.columns:  # type: ignore[union-attr]
        ours, theirs = out_loop.column(column), src_loop.column(column)  # type: ignore[union-attr]
        numbers = [parse_number(v) for v in theirs]
        if all(v is not None for v in numbers):
            assert [parse_number(v) for v in ours] == pytest.approx(numbers)
        else:
            assert ours == theirs, column


def test_star_writer_drops_non_relion_extras(tmp_path: Path) -> None:
    c = Coordinates(
        image_name="m",
        x=[1],
        y=[2],
        extra={
            "Width": [64],
            "location/min_dist_A": [3.0],
            "Diameter": [100],
            "DefocusU": [1.5],
            "column5": [1],
        },
    )
    loop = read_star(write_coordinates(c, tmp_path / "o.star", "star")[0]).blocks[0].loop
    assert loop is not None
    assert loop.columns == (
        "rlnMicrographName",
        "rlnCoordinateX",
        "rlnCoordinateY",
        "rlnDefocusU",
    )


def test_star_writer_quotes_names_with_spaces(tmp_path: Path) -> None:
    c = Coordinates(image_name="my mic", x=[1], y=[2])
    dest = tmp_path / "o.star"
    write_coordinates(c, dest, "star")
    assert '"my mic.mrc" 1 2' in dest.read_text()
    assert read_coordinates(dest).images() == ["my mic"]
