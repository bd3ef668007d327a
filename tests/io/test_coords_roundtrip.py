"""Round trips: every format, every pair of formats, and random tables (hypothesis)."""

from __future__ import annotations

import itertools
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxpick.io.coords import Coordinates, read_many, write_coordinates
from jaxpick.io.names import image_name


@dataclass(frozen=True)
class Format:
    """How to write one format in a round trip, and what it keeps."""

    id: str
    format: str
    dest: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    score: bool = True
    z: bool = True
    atol: float = 1e-9

    def write(self, coords: Coordinates, folder: Path) -> list[Path]:
        kwargs = dict(self.kwargs)
        if self.format == "cs":
            # cryoSPARC stores fractions of the micrograph size.
            kwargs["image_shapes"] = {n: (8192, 8192) for n in coords.images()}
        return write_coordinates(coords, folder / self.dest, self.format, **kwargs)

    def read(self, files: list[Path]) -> Coordinates:
        return read_many(files, suffix=self.kwargs.get("suffix", ""))


FORMATS = [
    Format("coord", "coord", "c.txt"),
    Format("star", "star", "c.star"),
    Format("star-topaz", "star", "t.star", {"star_style": "topaz"}),
    Format("star-per-image", "star", "stars", {"per_image": True, "suffix": "_autopick"}),
    Format("box", "box", "boxes", {"box_size": 64}, score=False, z=False),
    Format("json", "json", "json", {"suffix": "_p"}, score=False, z=False),
    Format("cbox", "cbox", "cboxes", {"box_size": 65}),
    # float32 fractions of an 8192-pixel micrograph: about 5e-4 px.
    Format("cs", "cs", "c.cs", {"seed": 0}, z=False, atol=2e-3),
    Format("csv", "csv", "c.csv"),
    Format("csv-per-image", "csv", "csvs", {"per_image": True, "suffix": ".picks"}),
    Format("via", "via", "v.csv", z=False),
    Format("plain", "plain", "plain", score=False, z=False),
]
BY_ID = {f.id: f for f in FORMATS}


def canonical(c: Coordinates) -> Coordinates:
    """Rows grouped by image, keeping their order within each image.

    Per-image formats write one file per image (rows keep their order inside it), so this is
    the order any format gives back.
    """
    return c.select(np.argsort(c.image_name, kind="stable"))


def assert_same(got: Coordinates, want: Coordinates, *, score: bool, z: bool, atol: float) -> None:
    got, want = canonical(got), canonical(want)
    assert got.image_name.tolist() == want.image_name.tolist()
    np.testing.assert_allclose(got.x, want.x, rtol=0, atol=atol)
    np.testing.assert_allclose(got.y, want.y, rtol=0, atol=atol)
    if z:
        assert (got.z is None) == (want.z is None)
        if want.z is not None:
            np.testing.assert_allclose(got.z, want.z, rtol=0, atol=atol)  # type: ignore[arg-type]
    if score and len(want):
        assert (got.score is None) == (want.score is None)
        if want.score is not None:
            np.testing.assert_allclose(got.score, want.score, rtol=1e-6, atol=atol)  # type: ignore[arg-type]


def sample(*, score: bool = True, z: bool = False) -> Coordinates:
    """Image names with dots and dashes; integer and non-integer coordinates."""
    return Coordinates(
        image_name=["mic.001", "b-2_x", "mic.001", "1", "b-2_x"],
        x=[10, 20.5, 4095, 0, 17.125],
        y=[5, 6.75, 1, 3000, 2.5],
        z=[1, 2, 3, 4.5, 0] if z else None,
        score=[0.5, -1.25, 3.0, 1e-3, -7.5] if score else None,
    )


@pytest.mark.parametrize(("a", "b"), list(itertools.product(BY_ID, BY_ID)))
def test_every_pair_of_formats(tmp_path: Path, a: str, b: str) -> None:
    first, second = BY_ID[a], BY_ID[b]
    original = sample(score=first.score and second.score)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    via_a = first.read(first.write(original, tmp_path / "a"))
    via_b = second.read(second.write(via_a, tmp_path / "b"))
    assert_same(
        via_b,
        original,
        score=first.score and second.score,
        z=False,
        atol=max(first.atol, second.atol),
    )


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.id)
def test_single_particle_and_empty_tables(tmp_path: Path, fmt: Format) -> None:
    one = Coordinates(
        image_name="only-one.v2", x=[12.5], y=[7], score=[0.25] if fmt.score else None
    )
    assert_same(fmt.read(fmt.write(one, tmp_path)), one, score=fmt.score, z=False, atol=fmt.atol)
    empty = Coordinates.empty(score=fmt.score)
    (tmp_path / "e").mkdir()
    assert len(fmt.read(fmt.write(empty, tmp_path / "e"))) == 0


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f.z], ids=lambda f: f.id)
def test_3d_round_trip(tmp_path: Path, fmt: Format) -> None:
    original = sample(z=True)
    assert_same(fmt.read(fmt.write(original, tmp_path)), original, score=True, z=True, atol=1e-9)


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f.score], ids=lambda f: f.id)
def test_missing_scores_survive_where_the_format_keeps_scores(tmp_path: Path, fmt: Format) -> None:
    original = sample().replace(score=[0.5, np.nan, 1, 2, np.nan])
    back = fmt.read(fmt.write(original, tmp_path))
    assert_same(back, original, score=True, z=False, atol=fmt.atol)


# ----------------------------------------------------------------------------- hypothesis

names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,11}", fullmatch=True).filter(
    lambda n: image_name(n) == n
)
coordinate = st.one_of(
    st.integers(-100, 5000).map(float),
    st.floats(-100, 5000, allow_nan=False, allow_infinity=False),
)


@st.composite
def tables(draw: st.DrawFn) -> Coordinates:
    pool = draw(st.lists(names, min_size=1, max_size=3, unique=True))
    n = draw(st.integers(0, 8))
    rows = [draw(st.sampled_from(pool)) for _ in range(n)]
    xs = [draw(coordinate) for _ in range(n)]
    ys = [draw(coordinate) for _ in range(n)]
    scored = draw(st.booleans())
    scores = [draw(st.floats(-50, 50, allow_nan=False)) for _ in range(n)] if scored else None
    return Coordinates(image_name=np.array(rows, dtype=np.str_), x=xs, y=ys, score=scores)


@settings(max_examples=60, deadline=None)
@given(coords=tables())
def test_random_tables_round_trip_through_every_format(coords: Coordinates) -> None:
    folder = Path(tempfile.mkdtemp(prefix="jaxpick-rt-"))
    try:
        for fmt in FORMATS:
            back = fmt.read(fmt.write(coords, folder / fmt.id))
            if len(coords) == 0:
                assert len(back) == 0, fmt.id
                continue
            want = coords if fmt.score else coords.replace(score=None)
            assert_same(back, want, score=fmt.score, z=False, atol=fmt.atol)
    finally:
        shutil.rmtree(folder)


@settings(max_examples=50, deadline=None)
@given(coords=tables(), a=st.sampled_from(FORMATS), b=st.sampled_from(FORMATS))
def test_random_tables_round_trip_through_random_pairs(
    coords: Coordinates, a: Format, b: Format
) -> None:
    folder = Path(tempfile.mkdtemp(prefix="jaxpick-rt-"))
    try:
        (folder / "a").mkdir()
        (folder / "b").mkdir()
        back = b.read(b.write(a.read(a.write(coords, folder / "a")), folder / "b"))
        if len(coords):
            keep = a.score and b.score
            want = coords if keep else coords.replace(score=None)
            assert_same(back, want, score=keep, z=False, atol=max(a.atol, b.atol))
        else:
            assert len(back) == 0
    finally:
        shutil.rmtree(folder)
