"""The in-memory Coordinates table and the shared text helpers."""

from __future__ import annotations

import numpy as np
import pytest

from jaxpick.errors import CoordinateFormatError
from jaxpick.io.coords import MICROGRAPH_PATH, Coordinates
from jaxpick.io.coords.table import (
    format_column,
    number_column,
    parse_number,
    read_text_lines,
    stem_image_name,
    typed_column,
)


def table() -> Coordinates:
    return Coordinates(
        image_name=["b", "a", "b", "c", "a"],
        x=[1, 2, 3, 4, 5],
        y=[10, 20, 30, 40, 50],
        score=[0.5, np.nan, -1.0, 2.0, 0.0],
        extra={"ClassNumber": [1, 2, 3, 4, 5], MICROGRAPH_PATH: ["b.mrc", "a.mrc"] * 2 + ["a.mrc"]},
    )


def test_constructor_converts_and_freezes_columns() -> None:
    t = Coordinates(image_name="mic", x=[1, 2], y=(3, 4))
    assert t.image_name.tolist() == ["mic", "mic"]
    assert t.x.dtype == np.float64
    assert t.y.dtype == np.float64
    assert t.z is None
    assert t.score is None
    assert dict(t.extra) == {}
    with pytest.raises(ValueError, match="read-only"):
        t.x[0] = 5
    with pytest.raises(TypeError):
        t.extra["new"] = np.zeros(2)  # type: ignore[index]
    with pytest.raises(AttributeError):
        t.x = np.zeros(2)  # type: ignore[misc]


def test_constructor_copies_inputs() -> None:
    x = np.array([1.0, 2.0])
    t = Coordinates(image_name="m", x=x, y=x)
    x[0] = 99
    assert t.x[0] == 1
    assert x.flags.writeable


@pytest.mark.parametrize(
    "kwargs",
    [
        {"y": [1.0]},
        {"image_name": ["a"]},
        {"score": [1.0, 2.0, 3.0]},
        {"z": [1.0]},
        {"extra": {"k": [1]}},
        {"extra": {"k": 5}},
    ],
)
def test_constructor_rejects_unequal_lengths(kwargs: dict) -> None:
    args = {"image_name": ["a", "b"], "x": [1.0, 2.0], "y": [1.0, 2.0]} | kwargs
    with pytest.raises(ValueError, match="rows"):
        Coordinates(**args)


def test_constructor_rejects_2d_coordinates() -> None:
    with pytest.raises(ValueError, match="1-D"):
        Coordinates(image_name="a", x=[[1.0]], y=[[1.0]])


def test_len_images_and_per_image_keep_first_appearance_order() -> None:
    t = table()
    assert len(t) == 5
    assert t.images() == ["b", "a", "c"]
    groups = list(t.per_image())
    assert [name for name, _ in groups] == ["b", "a", "c"]
    assert groups[0][1].x.tolist() == [1, 3]
    assert groups[1][1].x.tolist() == [2, 5]
    assert groups[1][1].extra["ClassNumber"].tolist() == [2, 5]
    assert list(Coordinates.empty().per_image()) == []
    assert Coordinates.empty().images() == []


def test_empty() -> None:
    e = Coordinates.empty(z=True, score=True)
    assert len(e) == 0
    assert e.z is not None
    assert e.score is not None
    assert e.is_3d
    assert len(Coordinates.empty()) == 0
    assert not Coordinates.empty().is_3d


def test_select_by_mask_and_indices() -> None:
    t = table()
    assert t.select(t.x > 3).x.tolist() == [4, 5]
    assert t.select([4, 0]).image_name.tolist() == ["a", "b"]
    assert len(t.select([])) == 0
    with pytest.raises(ValueError, match="mask"):
        t.select(np.array([True, False]))
    with pytest.raises(TypeError):
        t.select([0.5])


def test_filter_score_keeps_ge_and_unscored_rows() -> None:
    t = table()
    kept = t.filter_score(0.0)
    # >= (Topaz convert/split), NaN rows have no score and stay.
    assert kept.x.tolist() == [1, 2, 4, 5]
    assert t.filter_score(-np.inf).equals(t)
    no_score = t.replace(score=None)
    assert no_score.filter_score(100).equals(no_score)


def test_scaled_rounds_like_topaz_and_is_noop_for_factor_one() -> None:
    t = Coordinates(image_name="m", x=[3, 5, 6924], y=[1, 7, 2481], z=[9, 11, 2])
    s = t.scaled(down=2)
    assert s.x.tolist() == [2, 2, 3462]
    assert s.y.tolist() == [0, 4, 1240]
    assert s.z is not None
    assert s.z.tolist() == [4, 6, 1]
    boxed = Coordinates(image_name="m", x=[1], y=[1], extra={"Width": [220], "Other": [220]})
    assert boxed.scaled(down=8).extra["Width"].tolist() == [28]  # 27.5 -> 28, fits the picks
    assert boxed.scaled(down=8).extra["Other"].tolist() == [220]
    frac = Coordinates(image_name="m", x=[1.25], y=[2.5])
    assert frac.scaled().equals(frac)
    assert frac.scaled(up=2).x.tolist() == [2]  # 2.5 -> 2


def test_inverted_y_with_scalar_and_per_image_heights() -> None:
    t = Coordinates(image_name=["a", "b"], x=[0, 0], y=[0, 10])
    assert t.inverted_y(100).y.tolist() == [99, 89]
    assert t.inverted_y({"a": 50, "b": 20}).y.tolist() == [49, 9]
    assert t.inverted_y(100).inverted_y(100).equals(t)
    with pytest.raises(KeyError, match="'b'"):
        t.inverted_y({"a": 50})


def test_with_image_names_forms_and_drops_stale_paths() -> None:
    t = table()
    renamed = t.with_image_names({"a": "A"})
    assert renamed.image_name.tolist() == ["b", "A", "b", "c", "A"]
    assert MICROGRAPH_PATH not in renamed.extra
    assert "ClassNumber" in renamed.extra
    assert t.with_image_names("z").images() == ["z"]
    assert t.with_image_names(list("vwxyz")).image_name.tolist() == list("vwxyz")
    with pytest.raises(ValueError, match="rows"):
        t.with_image_names(["too", "few"])


def test_concat_fills_missing_columns() -> None:
    a = Coordinates(image_name="a", x=[1], y=[2], score=[0.5], extra={"ClassNumber": [3]})
    b = Coordinates(image_name="b", x=[4], y=[5], z=[6], extra={MICROGRAPH_PATH: ["b.mrc"]})
    c = Coordinates.concat([a, b])
    assert c.image_name.tolist() == ["a", "b"]
    assert c.score is not None
    assert c.score[0] == 0.5
    assert np.isnan(c.score[1])
    assert c.z is not None
    assert np.isnan(c.z[0])
    assert c.z[1] == 6
    assert c.extra["ClassNumber"][0] == 3
    assert np.isnan(c.extra["ClassNumber"][1])
    assert c.extra[MICROGRAPH_PATH].tolist() == ["", "b.mrc"]
    assert len(Coordinates.concat([])) == 0
    assert Coordinates.concat([a]) is a
    ints = Coordinates.concat([a, a])
    assert ints.extra["ClassNumber"].dtype == np.int64


def test_equals_detects_differences() -> None:
    t = table()
    assert t.equals(t)
    assert not t.equals(t.replace(x=t.x + 1e-3))
    assert t.equals(t.replace(x=t.x + 1e-3), atol=1e-2)
    assert not t.equals(t.replace(score=None))
    assert t.equals(t.replace(score=None), check_score=False)
    assert not t.equals(t.replace(extra={}))
    assert t.equals(t.replace(extra={}), check_extra=False)
    assert not t.equals(t.with_image_names("q"), check_extra=False)
    assert not t.equals(t.select([0, 1]))
    assert "5 rows" in repr(t)
    assert "scored" in repr(t)


def test_parse_number_is_strict_ascii_decimal() -> None:
    assert parse_number("1.5e3") == 1500
    assert parse_number(" -2 ") == -2
    assert np.isnan(parse_number("<NA>"))  # type: ignore[arg-type]
    assert np.isnan(parse_number("nan"))  # type: ignore[arg-type]
    assert parse_number("inf") == np.inf
    for bad in ("1_000", "0x10", "١٢", "abc", "1.2.3", "--1"):
        assert parse_number(bad) is None, bad


def test_number_column_error_names_file_line_and_column() -> None:
    with pytest.raises(CoordinateFormatError, match=r"f\.txt: line 7: x_coord .* 'abc'"):
        number_column(["1", "abc"], path="f.txt", what="x_coord", lines=[6, 7])
    with pytest.raises(CoordinateFormatError, match="finite"):
        number_column(["nan"], path="f", what="x", finite=True)
    np.testing.assert_array_equal(number_column(["1", "<NA>"], path="f", what="s")[:1], [1])


def test_typed_column() -> None:
    assert typed_column(["1", "2"]).dtype == np.int64
    assert typed_column(["1", "2.5"]).dtype == np.float64
    assert np.isnan(typed_column(["<NA>", "<NA>"])).all()
    assert typed_column(["1", "x"]).tolist() == ["1", "x"]
    assert typed_column(["", ""]).dtype.kind == "U"
    assert typed_column(["99999999999999999999"]).dtype == np.float64
    assert typed_column([]).dtype.kind == "U"


def test_format_column() -> None:
    assert format_column(np.array([1.0, 2.0])) == ["1", "2"]
    assert format_column(np.array([1.5, np.nan, -np.inf])) == ["1.5", "nan", "-inf"]
    assert format_column(np.array([0.1 + 0.2])) == ["0.30000000000000004"]
    assert format_column(np.array([3, 4])) == ["3", "4"]
    assert format_column(np.array([b"ab"])) == ["ab"]


def test_read_text_lines_handles_bom_crlf_and_rejects_binary(tmp_path) -> None:
    p = tmp_path / "f.txt"
    p.write_bytes(b"\xef\xbb\xbfa\r\nb\rc\n")
    assert read_text_lines(p) == ["a", "b", "c"]
    p.write_bytes(b"a\x00b")
    with pytest.raises(CoordinateFormatError, match="NUL"):
        read_text_lines(p)
    p.write_bytes(b"\xff\xfe")
    with pytest.raises(CoordinateFormatError, match="UTF-8"):
        read_text_lines(p)
    with pytest.raises(CoordinateFormatError, match="cannot read"):
        read_text_lines(tmp_path / "missing.txt")
    with pytest.raises(CoordinateFormatError, match="cannot read"):
        read_text_lines(tmp_path)


def test_stem_image_name() -> None:
    assert stem_image_name("d/mic_01.box") == "mic_01"
    assert stem_image_name("d/mic_01.mrc.box") == "mic_01"
    assert stem_image_name("mic_01_picks.box", suffix="_picks") == "mic_01"
    assert stem_image_name("mic_01_autopick.star", strip=("_autopick",)) == "mic_01"
    assert stem_image_name("mic_01_autopick.star", suffix="_x", strip=("_autopick",)) == (
        "mic_01_autopick"
    )
    assert stem_image_name("mic_info.json", ending="_info.json") == "mic"
    assert stem_image_name("_autopick.star", strip=("_autopick",)) == "_autopick"
