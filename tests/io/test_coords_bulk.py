"""Large files: the bulk (numpy) paths give exactly what the value-by-value paths give."""

from __future__ import annotations

import random
import re
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxpick.errors import CoordinateFormatError
from jaxpick.io.coords import Coordinates, read_coordinates, read_star
from jaxpick.io.coords._tokens import (
    PackedTokens,
    RaggedRow,
    pack_strings,
    parse_numbers,
    split_rows,
)
from jaxpick.io.coords.table import NA_TOKENS, format_column, format_number, parse_number

ROWS = 20_000

# The grammar parse_number() accepts (table._NUMBER), written out again as the reference.
NUMBER = re.compile(
    r"[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|nan|inf|infinity)\Z",
    re.IGNORECASE | re.ASCII,
)


def particle_star(rows: int, seed: int = 0) -> str:
    """A RELION 3.1 particle file with the value formats real files hold."""
    rng = random.Random(seed)
    columns = [
        "MicrographName",
        "CoordinateX",
        "CoordinateY",
        "ImageName",
        "AutopickFigureOfMerit",
        "ClassNumber",
        "AnglePsi",
        "AngleRot",
        "OriginXAngst",
        "DefocusU",
        "LogLikeliContribution",
        "NormCorrection",
        "OpticsGroup",
        "RandomSubset",
        "HelicalTubeID",
        "ImageId",
        "Comment",
        "Tilt",
        "Flag",
        "Sparse",
    ]
    lines = [
        "",
        "# version 30001",
        "",
        "data_optics",
        "",
        "loop_",
        "_rlnOpticsGroupName #1",
        "_rlnOpticsGroup #2",
        "opticsGroup1 1",
        "",
        "",
        "# version 30001",
        "",
        "data_particles",
        "",
        "loop_",
        *(f"_rln{c} #{i + 1}" for i, c in enumerate(columns)),
    ]
    for i in range(rows):
        mic = rng.randrange(40)
        name = f"MotionCorr/job002/Movies/data_{mic:04d}.mrc"
        lines.append(
            "  ".join(
                [
                    name,
                    f"{rng.uniform(0, 4096):.6f}",
                    f"{rng.uniform(0, 4096):.6f}",
                    f"{i + 1:06d}@Extract/job010/Movies/data_{mic:04d}.mrcs",
                    repr(rng.gauss(0, 1)),  # 16-17 digits, as Python and pandas write
                    str(rng.randrange(1, 50)),
                    f"{rng.uniform(-180, 180):.6f}",
                    rng.choice(["-0.000000", "0.000000", f"{rng.uniform(-180, 180):.6f}"]),
                    rng.choice(["0", "-0", "1.5", "+2.25", ".5", "5."]),
                    f"{15000 + 100 * mic:.6f}",
                    f"{rng.uniform(1e5, 1e6):.6e}",
                    rng.choice(["1", "1.0", "0.999", "1e0", "1E-3", "1e30", "1e-30"]),
                    "1",
                    str(1 + i % 2),
                    str(rng.randrange(10**17, 10**18)),  # beyond 2^53: per-value code
                    str(9007199254740993 + i),
                    rng.choice(["ok", "data_x", "1_000", "stop", "x1"]),
                    rng.choice(["nan", "inf", "-inf", "NaN", "3.5", "Infinity"]),
                    rng.choice(["0", "1"]),
                    rng.choice(["<NA>", "2.5", "<NA>", "7"]),
                ]
            )
        )
    return "\n".join(lines) + "\n"


def reference_typed(tokens: list[str]) -> np.ndarray:
    """typed_column() value by value, as it was first written."""
    tokens = [t.strip() for t in tokens]
    if tokens and all(
        re.match(r"[+-]?\d+\Z", t, re.ASCII) and len(t.lstrip("+-")) <= 18 for t in tokens
    ):
        return np.array([int(t) for t in tokens], dtype=np.int64)
    numbers = [parse_number(t) for t in tokens]
    real = any(t not in NA_TOKENS for t in tokens) or any(t == "<NA>" for t in tokens)
    if tokens and real and all(v is not None for v in numbers):
        return np.array(numbers, dtype=np.float64)
    return np.array(tokens, dtype=np.str_)


def assert_same_table(a: Coordinates, b: Coordinates) -> None:
    assert a.equals(b)
    assert a.image_name.dtype == b.image_name.dtype
    for name in ("x", "y", "z", "score"):
        left, right = getattr(a, name), getattr(b, name)
        if left is not None:
            np.testing.assert_array_equal(np.signbit(left), np.signbit(right))
    for key in a.extra:
        assert a.extra[key].dtype == b.extra[key].dtype, key
        if a.extra[key].dtype.kind == "f":
            np.testing.assert_array_equal(np.signbit(a.extra[key]), np.signbit(b.extra[key]))


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("large")
    plain = particle_star(ROWS)
    variants = {
        "plain": plain,
        # Quotes on every row send every line through the tokenizer.
        "quoted": plain.replace("\nMotionCorr/", "\n'MotionCorr/").replace(".mrc  ", ".mrc'  "),
        # A comment and a quoted value in the middle split the bulk reading.
        "mixed": plain.replace("\n", "\n# a comment\n", 3000).replace(
            "MotionCorr/job002/Movies/data_0007.mrc", "'MotionCorr/job002/Movies/data_0007.mrc'", 3
        ),
        "crlf": plain.replace("\n", "\r\n"),
        "unicode": plain.replace("# version 30001", "# version 30001 (µ)", 1),
    }
    paths = {}
    for name, text in variants.items():
        paths[name] = folder / f"{name}.star"
        paths[name].write_bytes(text.encode("utf-8"))
    return paths


@pytest.fixture(scope="module")
def reference(large: dict[str, Path]) -> Coordinates:
    return read_coordinates(large["quoted"])


def test_large_star_reads_in_bulk_as_the_tokenizer_reads_it(
    large: dict[str, Path], reference: Coordinates
) -> None:
    bulk = read_star(large["plain"]).block("particles").loop
    slow = read_star(large["quoted"]).block("particles").loop
    assert bulk is not None
    assert slow is not None
    # The test compares what it means to: packed columns against tokenized ones.
    assert isinstance(bulk.tokens("rlnCoordinateX"), PackedTokens)
    assert not isinstance(slow.tokens("rlnCoordinateX"), PackedTokens)
    assert bulk == slow
    assert len(bulk) == ROWS
    first = particle_star(1).split("\n").index("_rlnSparse #20") + 2
    assert bulk.lines == tuple(range(first, first + ROWS))
    table = read_coordinates(large["plain"])
    assert_same_table(table, reference)
    assert len(table) == ROWS
    # And the values are those of the value-by-value code.
    np.testing.assert_array_equal(table.x, [float(v) for v in slow.column("rlnCoordinateX")])
    for column in slow.columns:
        label = column[3:]
        if label in table.extra:
            expected = reference_typed(slow.column(column))
            assert table.extra[label].dtype == expected.dtype, label
            np.testing.assert_array_equal(table.extra[label], expected)
    assert table.extra["ImageId"].dtype == np.int64
    assert table.extra["Sparse"].dtype == np.float64  # <NA> is a missing number
    assert table.extra["Comment"].dtype.kind == "U"
    assert sorted(set(table.image_name.tolist())) == [f"data_{m:04d}" for m in range(40)]


@pytest.mark.parametrize("variant", ["mixed", "crlf", "unicode"])
def test_large_star_variants_read_the_same(
    large: dict[str, Path], reference: Coordinates, variant: str
) -> None:
    assert_same_table(read_coordinates(large[variant]), reference)


def test_large_star_errors_name_the_line(tmp_path: Path) -> None:
    lines = particle_star(3000).split("\n")
    row = lines.index("_rlnSparse #20") + 2000  # the 2000th particle, 0-based
    ragged = lines.copy()
    ragged[row] += " extra"
    path = tmp_path / "ragged.star"
    path.write_text("\n".join(ragged))
    with pytest.raises(CoordinateFormatError, match=f"line {row + 1}: loop row has 21 values but"):
        read_star(path)
    for bad, message in (("abc", "got 'abc'"), ("nan", "finite number, got 'nan'")):
        broken = lines.copy()
        fields = broken[row].split("  ")
        fields[1] = bad
        broken[row] = "  ".join(fields)
        path.write_text("\n".join(broken))
        with pytest.raises(
            CoordinateFormatError, match=f"line {row + 1}: _rlnCoordinateX .*{message}"
        ):
            read_coordinates(path)


def test_large_topaz_and_csv_tables_read_in_bulk_as_line_by_line(tmp_path: Path) -> None:
    rng = random.Random(1)
    rows = [
        (f"mic_{rng.randrange(30)}.mrc", f"{rng.uniform(0, 4096):.2f}", str(rng.randrange(4096)))
        + (repr(rng.gauss(0, 1)), rng.choice(["a", "b"]))
        for _ in range(ROWS)
    ]
    header = ("image_name", "x_coord", "y_coord", "score", "source")
    txt = ["\t".join(header), *("\t".join(r) for r in rows)]
    fast = tmp_path / "fast.txt"
    fast.write_text("\n".join(txt))
    slow = tmp_path / "slow.txt"
    slow.write_text("\n".join(txt[:100] + [txt[100] + "\t"] + txt[101:]))  # trailing tab
    assert_same_table(read_coordinates(fast), read_coordinates(slow))
    csv_lines = [",".join(header), *(",".join(r) for r in rows)]
    fast_csv = tmp_path / "fast.csv"
    fast_csv.write_text("\n".join(csv_lines))
    slow_csv = tmp_path / "slow.csv"
    quoted = csv_lines[5].split(",")
    slow_csv.write_text(
        "\n".join(csv_lines[:5] + [",".join([f'"{quoted[0]}"', *quoted[1:]])] + csv_lines[6:])
    )
    table = read_coordinates(fast_csv)
    assert_same_table(table, read_coordinates(slow_csv))
    assert_same_table(table, read_coordinates(fast))
    np.testing.assert_array_equal(table.score, [float(r[3]) for r in rows])


# ----------------------------------------------------------------------------- the bulk parser

NUMBERISH = st.text(alphabet="0123456789.eE+-", max_size=24)


def check_claims(tokens: list[str]) -> None:
    packed = pack_strings(tokens)
    assert packed is not None
    floats, float_ok, int_ok = parse_numbers(packed)
    for token, value, claimed, integer in zip(tokens, floats, float_ok, int_ok, strict=True):
        if claimed:
            assert NUMBER.match(token), token
            assert value == float(token), token
            assert np.signbit(value) == np.signbit(float(token)), token
        if integer:
            assert claimed, token
            assert re.fullmatch(r"[+-]?\d+", token), token
            assert value == int(token), token


@settings(max_examples=200, deadline=None)
@given(st.lists(NUMBERISH | st.floats(allow_nan=False).map(repr), max_size=40))
def test_bulk_numbers_are_exactly_float(tokens: list[str]) -> None:
    check_claims(tokens)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(min_value=1e-12, max_value=1e18), st.integers(0, 25)).map(
            lambda t: f"{t[0]:.{t[1]}f}"
        ),
        max_size=40,
    )
)
def test_bulk_numbers_with_many_digits_are_exactly_float(tokens: list[str]) -> None:
    check_claims(tokens)


def test_bulk_numbers_leave_double_rounding_cases_alone() -> None:
    # Decimals halfway between two doubles: rounding them twice (to a wider type, then to
    # float64) could go the wrong way, so the bulk parser must not claim them.
    rng = random.Random(2)
    tokens = ["9007199254740993", "9007199254740995", "18014398509481986.0"]
    for _ in range(2000):
        value = rng.uniform(1, 1e6) * 10.0 ** rng.randint(-6, 12)
        midpoint = (Decimal(value) + Decimal(float(np.nextafter(value, np.inf)))) / 2
        tokens.append(format(midpoint.normalize(), "f"))
    check_claims(tokens)
    check_claims(["-" + t for t in tokens])


def test_bulk_numbers_claim_plain_decimals() -> None:
    tokens = ["1", "-2.5", "17.250000", "3.244984e+05", "0.5795465611111111", "+.5", "5.", "-0"]
    floats, claimed, integer = parse_numbers(pack_strings(tokens))
    assert claimed.all()
    assert integer.tolist() == [True, False, False, False, False, False, False, True]
    np.testing.assert_array_equal(floats, [float(t) for t in tokens])
    _, claimed, _ = parse_numbers(pack_strings(["nan", "<NA>", "", "1_0", "1e", "1" * 25, "x"]))
    assert not claimed.any()


LINE_PIECES = st.sampled_from(
    ["a", "1", "_k", "data_x", "Loop_", "x\x01y", "\x7f", "stop_z", "dat"]
)
BLANKS = st.sampled_from([" ", "\t", "  ", "\x0b", "\x0c", "\r", "\x1c", "\x1f"])


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.lists(st.tuples(BLANKS, LINE_PIECES), max_size=4), min_size=1, max_size=12),
    st.integers(1, 3),
    st.booleans(),
)
def test_bulk_row_splitting_is_str_split(
    lines: list[list[tuple[str, str]]], ncols: int, newline_at_end: bool
) -> None:
    text = "\n".join("".join(b + t for b, t in line) for line in lines)
    text += "\n" if newline_at_end else ""
    if not text:
        return  # no line at all
    data = text.encode("ascii")
    buffer = np.frombuffer(data, dtype=np.uint8)
    text_lines = text.split("\n")
    if text.endswith("\n"):
        text_lines.pop()  # a final newline ends the last line; no line follows it
    expected_rows, expected_lines, stop, ragged = [], [], len(text_lines), None
    for i, line in enumerate(text_lines):
        fields = line.split()
        if fields and (
            fields[0].startswith("_")
            or re.match(r"(data_|loop_|save_|global_|stop_)", fields[0], re.I)
        ):
            stop = i
            break
        if fields and len(fields) != ncols:
            ragged = i
            break
        if fields:
            expected_rows.append(fields)
            expected_lines.append(i)
    if ragged is not None:
        with pytest.raises(RaggedRow) as info:
            split_rows(buffer, 0, len(data), ncols)
        assert info.value.line == ragged
        return
    starts, ends, rows, _, count = split_rows(buffer, 0, len(data), ncols)
    assert ragged is None
    got = [
        [data[s:e].decode() for s, e in zip(r1, r2, strict=True)]
        for r1, r2 in zip(starts, ends, strict=True)
    ]
    assert got == expected_rows
    assert rows.tolist() == expected_lines
    assert count == stop


# ----------------------------------------------------------------------------- writing


def test_format_column_of_repeated_values_is_per_value() -> None:
    rng = np.random.default_rng(3)
    values = rng.choice([0.5, 2.0, -7.25, 1e-7, 3e20, np.nan, np.inf, -np.inf], 5000)
    assert format_column(values) == [repr(float(v)) for v in values]
    whole = rng.choice([1.0, -3.0, 0.0, np.nan, 2.0**52], 5000)
    assert format_column(whole) == [format_number(v) for v in whole]
    signed = values.copy()
    signed[::7] = -0.0
    assert format_column(signed) == [repr(float(v)) for v in signed]
    ints = rng.integers(-5, 5, 5000)
    assert format_column(ints) == [str(int(v)) for v in ints]
