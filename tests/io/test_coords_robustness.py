"""Malformed input only ever raises CoordinateFormatError; failed writes leave nothing behind."""

from __future__ import annotations

import errno
import io
import json
import pathlib
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jaxpick.errors import CoordinateFormatError
from jaxpick.io.atomic import TEMP_PREFIX
from jaxpick.io.coords import (
    Coordinates,
    box,
    cbox,
    cryosparc,
    eman_json,
    read_coordinates,
    star,
    topaz,
    write_coordinates,
)
from jaxpick.io.coords import csv as csv_format

EXTENSIONS = [".txt", ".tab", ".star", ".box", ".json", ".cbox", ".cs", ".csv", ".coord"]

# The format readers themselves, without read_coordinates' last-resort wrapping, so that a
# reader bug (an unexpected exception type) makes these tests fail.
READERS: dict[str, Callable[[Path], Coordinates]] = {
    ".txt": topaz.read_topaz,
    ".tab": topaz.read_topaz,
    ".star": star.read_star_coordinates,
    ".box": box.read_box,
    ".json": eman_json.read_eman_json,
    ".cbox": cbox.read_cbox,
    ".cs": cryosparc.read_cs,
    ".csv": csv_format.read_csv,
    ".coord": box.read_plain,
}

FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def read_or_format_error(path: Path) -> None:
    """Reading must give a table or a CoordinateFormatError naming the file: nothing else."""
    for reader in (READERS[path.suffix], read_coordinates):
        try:
            result = reader(path)
        except CoordinateFormatError as e:
            message = str(e)
        else:
            assert isinstance(result, Coordinates)
            assert np.isfinite(result.x).all()
            assert np.isfinite(result.y).all()
            continue
        assert str(path) in message


def fuzz_file(suffix: str, data: bytes) -> None:
    folder = Path(tempfile.mkdtemp(prefix="jaxpick-fuzz-"))
    try:
        path = folder / f"mic_01{suffix}"
        path.write_bytes(data)
        read_or_format_error(path)
    finally:
        shutil.rmtree(folder)


@FUZZ
@given(suffix=st.sampled_from(EXTENSIONS), text=st.text(max_size=300))
def test_random_text_never_raises_anything_else(suffix: str, text: str) -> None:
    fuzz_file(suffix, text.encode("utf-8", errors="surrogatepass"))


@FUZZ
@given(suffix=st.sampled_from(EXTENSIONS), data=st.binary(max_size=300))
def test_random_bytes_never_raise_anything_else(suffix: str, data: bytes) -> None:
    fuzz_file(suffix, data)


# Fragments that drive the parsers deep: valid syntax in invalid combinations.
STAR_TOKENS = [
    "data_",
    "data_particles",
    "data_optics",
    "data_cryolo",
    "data_global",
    "loop_",
    "stop_",
    "save_x",
    "_rlnCoordinateX",
    "_rlnCoordinateY",
    "_rlnCoordinateZ",
    "_rlnMicrographName",
    "_rlnAutopickFigureOfMerit",
    "_rlnParticleScore",
    "_CoordinateX",
    "_CoordinateY",
    "_CoordinateZ",
    "_Width",
    "_Height",
    "_Confidence",
    "_cbox_format_version",
    "#1",
    "# comment",
    "1",
    "-2.5",
    "1e309",
    "nan",
    "<NA>",
    "mic.mrc",
    "'a b'",
    '""',
    "'",
    '"',
    ";",
    "\n",
    "\n;",
    "\t",
    "99999999999999999999999",
]
TEXT_TOKENS = [
    "image_name",
    "x_coord",
    "y_coord",
    "z_coord",
    "score",
    "source",
    "X-Coordinate",
    "Y-Coordinate",
    "filename",
    "region_count",
    "region_shape_attributes",
    "region_attributes",
    '"{""name"":""point"",""cx"":1,""cy"":2}"',
    '"{""cx"":""a""}"',
    '"{""score"":""x""}"',
    "{}",
    "[]",
    "0",
    "1",
    "2.5",
    "-inf",
    "nan",
    "mic",
    ",",
    "\t",
    " ",
    "\n",
    '"',
    "\r\n",
]


@FUZZ
@given(
    suffix=st.sampled_from([".star", ".cbox"]),
    tokens=st.lists(st.sampled_from(STAR_TOKENS), max_size=60),
    separators=st.lists(st.sampled_from([" ", "\n", "\t", "  \n"]), min_size=1, max_size=60),
)
def test_star_like_garbage(suffix: str, tokens: list[str], separators: list[str]) -> None:
    text = "".join(t + separators[i % len(separators)] for i, t in enumerate(tokens))
    fuzz_file(suffix, text.encode())


@FUZZ
@given(
    suffix=st.sampled_from([".txt", ".csv", ".box", ".coord"]),
    tokens=st.lists(st.sampled_from(TEXT_TOKENS), max_size=60),
)
def test_table_like_garbage(suffix: str, tokens: list[str]) -> None:
    fuzz_file(suffix, "".join(tokens).encode())


# Mostly numbers (so many files parse and reach the mapping code), some junk.
VALUE_TOKENS = ["1", "-2.5", "0", "1e3", "17.25"] * 4 + [
    "nan",
    "inf",
    "<NA>",
    "x.mrc",
    "a/b.mrc",
    "''",
    '"q r"',
]


@st.composite
def table_text(
    draw: st.DrawFn, required: list[str], optional: list[str], sep: str
) -> tuple[list[str], list[str]]:
    """A header (usually with the required columns) and rows of mostly numeric values, a few of
    the wrong length."""
    header = draw(st.lists(st.sampled_from(optional), max_size=4, unique=True))
    if draw(st.integers(0, 9)):
        header = required + [c for c in header if c not in required]
    header = draw(st.permutations(header)) if header else [required[0]]
    rows = []
    for _ in range(draw(st.integers(0, 5))):
        width = len(header) + draw(st.sampled_from([0] * 9 + [-1, 1]))
        rows.append(sep.join(draw(st.sampled_from(VALUE_TOKENS)) for _ in range(width)))
    return list(header), rows


@FUZZ
@given(data=st.data(), kind=st.sampled_from(["star", "cbox", "txt", "csv"]))
def test_well_formed_tables_with_random_values(data: st.DataObject, kind: str) -> None:
    """Valid layouts with random values and row lengths: exercises number parsing and mapping."""
    if kind == "star":
        required = ["_rlnCoordinateX", "_rlnCoordinateY"]
        optional = [
            "_rlnCoordinateZ",
            "_rlnMicrographName",
            "_rlnAutopickFigureOfMerit",
            "_rlnParticleScore",
            "_rlnClassNumber",
            "_rlnDefocusU",
        ]
        header, rows = data.draw(table_text(required, optional, " "))
        text = "data_particles\nloop_\n" + "\n".join(header) + "\n" + "\n".join(rows)
    elif kind == "cbox":
        required = ["_CoordinateX", "_CoordinateY", "_Width", "_Height"]
        optional = ["_CoordinateZ", "_Confidence", "_filamentid", "_EstWidth", "_Depth"]
        header, rows = data.draw(table_text(required, optional, " "))
        text = "data_global\n_cbox_format_version 1.0\ndata_cryolo\nloop_\n" + "\n".join(header)
        text += "\n" + "\n".join(rows) + "\ndata_cryolo_include\nloop_\n_slice_index\n"
    elif kind == "txt":
        required = ["image_name", "x_coord", "y_coord"]
        header, rows = data.draw(table_text(required, ["z_coord", "score", "source"], "\t"))
        text = "\t".join(header) + "\n" + "\n".join(rows)
    else:
        required = data.draw(
            st.sampled_from(
                [["image_name", "x_coord", "y_coord"], ["X-Coordinate", "Y-Coordinate"]]
            )
        )
        header, rows = data.draw(table_text(required, ["score", "z_coord", "Diameter"], ","))
        text = ",".join(header) + "\n" + "\n".join(rows)
    fuzz_file(f".{kind}", text.encode())


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=12,
)


@FUZZ
@given(value=json_values, wrap=st.booleans())
def test_json_like_garbage(value: object, wrap: bool) -> None:
    document = {"boxes": value} if wrap else value
    fuzz_file("_info.json", json.dumps(document).encode())


CS_FIELDS = {
    "location/center_x_frac": ["<f4", "<f8", "<i4", "|S4", ("<f4", (2,))],
    "location/center_y_frac": ["<f4", "<u2", "|S2", ("<f4", (3,))],
    "location/micrograph_shape": [("<u4", (2,)), ("<u4", (3,)), "<u4", ("|S2", (2,))],
    "location/micrograph_path": ["|S8", "<U4", "<f4", ("|S3", (2,))],
    "pick_stats/ncc_score": ["<f4", "|S3"],
    "blob/path": ["|S5"],
    "uid": ["<u8"],
}


@FUZZ
@given(
    fields=st.lists(st.sampled_from(sorted(CS_FIELDS)), unique=True, max_size=7).flatmap(
        lambda names: st.tuples(*(st.sampled_from(CS_FIELDS[n]) for n in names)).map(
            lambda types: list(zip(names, types, strict=True))
        )
    ),
    rows=st.integers(0, 4),
    data=st.binary(min_size=64, max_size=64),
)
def test_cs_like_garbage(fields: list, rows: int, data: bytes) -> None:
    if not fields:
        fields = [("uid", "<u8")]
    dtype = np.dtype([(name, *(t if isinstance(t, tuple) else (t,))) for name, t in fields])
    raw = (data * (rows * dtype.itemsize // 64 + 1))[: rows * dtype.itemsize]
    array = np.frombuffer(raw, dtype=dtype, count=rows)
    buffer = io.BytesIO()
    np.save(buffer, array)
    fuzz_file(".cs", buffer.getvalue())


# ----------------------------------------------------------------------------- atomic writes


def picks() -> Coordinates:
    return Coordinates(image_name=["a", "a", "b"], x=[1, 2, 3], y=[4, 5, 6], score=[1, 2, 3])


WRITES = [
    ("coord", "out.txt", {}),
    ("star", "out.star", {}),
    ("csv", "out.csv", {}),
    ("via", "out.csv", {}),
    ("box", "out", {"box_size": 8}),
    ("json", "out", {}),
    ("cbox", "out", {"box_size": 8}),
    ("plain", "out", {}),
]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.startswith(TEMP_PREFIX))


@pytest.mark.parametrize(("fmt", "dest", "kwargs"), WRITES, ids=[w[0] for w in WRITES])
def test_failed_text_write_leaves_nothing_under_the_final_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str, dest: str, kwargs: dict
) -> None:
    real_write_text = pathlib.Path.write_text

    def disk_full(self: Path, text: str, *args, **kw) -> int:
        real_write_text(self, text[: len(text) // 2], *args, **kw)  # half the file...
        raise OSError(errno.ENOSPC, "No space left on device")  # ...then the disk is full

    monkeypatch.setattr(pathlib.Path, "write_text", disk_full)
    with pytest.raises(OSError, match="No space"):
        write_coordinates(picks(), tmp_path / dest, fmt, **kwargs)
    monkeypatch.undo()
    assert not (tmp_path / dest).is_file()
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
    assert leftovers(tmp_path) == []


def test_failed_write_keeps_the_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "picks.star"
    write_coordinates(picks(), dest, "star")
    before = dest.read_bytes()

    def broken(self: Path, text: str, *args, **kw) -> int:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(pathlib.Path, "write_text", broken)
    with pytest.raises(OSError, match="I/O"):
        write_coordinates(picks().select([0]), dest, "star")
    assert dest.read_bytes() == before
    assert leftovers(tmp_path) == []


def test_failed_cs_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_save = np.save

    def half_save(file, array, *args, **kwargs) -> None:
        buffer = io.BytesIO()
        real_save(buffer, array, *args, **kwargs)
        file.write(buffer.getvalue()[:100])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "save", half_save)
    with pytest.raises(OSError, match="No space"):
        write_coordinates(
            picks(), tmp_path / "p.cs", "cs", image_shapes={"a": (10, 10), "b": (10, 10)}
        )
    assert list(tmp_path.iterdir()) == []


def test_per_image_failure_keeps_finished_files_complete(tmp_path: Path) -> None:
    bad = Coordinates(image_name=["good", "bad/name"], x=[1, 2], y=[1, 2])
    with pytest.raises(CoordinateFormatError, match="not a plain file name"):
        write_coordinates(bad, tmp_path, "box", box_size=4)
    assert [p.name for p in tmp_path.iterdir()] == ["good.box"]
    assert (tmp_path / "good.box").read_text() == "-1\t-1\t4\t4\n"
