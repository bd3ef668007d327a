"""Coordinate conventions: y inversion, box corners, Topaz scaling, pixel sizes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxpick import conventions

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
sizes = st.integers(min_value=1, max_value=1024)


def test_invert_y_maps_first_row_to_last_row() -> None:
    assert conventions.invert_y(0, 100) == 99
    assert conventions.invert_y(99, 100) == 0
    assert conventions.invert_y(49.5, 100) == 49.5  # the middle of an even-height image
    np.testing.assert_array_equal(conventions.invert_y([0, 10], [5, 20]), [4, 9])


@settings(max_examples=100, deadline=None)
@given(y=finite, height=sizes)
def test_invert_y_twice_is_identity(y: float, height: int) -> None:
    assert conventions.invert_y(conventions.invert_y(y, height), height) == pytest.approx(y)


def test_box_corner_is_topaz_centre_minus_floor_half() -> None:
    # Topaz coordinates_to_boxes: corner = centre - boxsize // 2.
    assert conventions.box_corner(100, 64) == 68
    assert conventions.box_corner(100, 65) == 68
    assert conventions.box_centre(68, 64) == 100
    assert conventions.box_centre(68, 65) == 100
    # A 5-pixel box at 10 covers pixels 10..14; its middle pixel is 12.
    assert conventions.box_centre(10, 5) == 12


def test_box_exact_half_is_cryolo_convention() -> None:
    assert conventions.box_corner(100, 65, half="exact") == 67.5
    assert conventions.box_centre(11.6877, 25, half="exact") == pytest.approx(24.1877)


def test_box_even_sizes_agree_between_conventions_and_keep_integers() -> None:
    centres = np.array([0, 7, 128, 4095])
    for size in (2, 64, 256):
        floor = conventions.box_corner(centres, size)
        exact = conventions.box_corner(centres, size, half="exact")
        np.testing.assert_array_equal(floor, exact)
        assert np.all(floor == np.round(floor))


def test_box_rejects_unknown_half_mode() -> None:
    with pytest.raises(ValueError, match="half"):
        conventions.box_corner(1, 2, half="round")  # type: ignore[arg-type]


@settings(max_examples=100, deadline=None)
@given(
    centre=finite,
    size=st.one_of(sizes, st.floats(0.5, 1000)),
    half=st.sampled_from(["floor", "exact"]),
)
def test_box_corner_centre_round_trip(centre: float, size: float, half: str) -> None:
    corner = conventions.box_corner(centre, size, half=half)  # type: ignore[arg-type]
    back = conventions.box_centre(corner, size, half=half)  # type: ignore[arg-type]
    assert back == pytest.approx(centre, abs=1e-9)


@pytest.mark.parametrize(
    ("value", "down", "up", "expected"),
    [
        (3, 2, 1, 2),  # 1.5 rounds to even 2
        (5, 2, 1, 2),  # 2.5 rounds to even 2 (Python round() agrees, int(x + 0.5) would say 3)
        (1, 2, 1, 0),  # 0.5 -> 0
        (7, 2, 1, 4),  # 3.5 -> 4
        (-3, 2, 1, -2),  # -1.5 -> -2
        (1, 2, 3, 2),  # 1 * 3/2 = 1.5 -> 2
        (6924, 8, 1, 866),  # 865.5 -> 866 (Topaz tutorial: particles.txt at -s 8)
        (2481, 8, 1, 310),  # 310.125 -> 310
        (103, 1, 4, 412),
        (10.4, 1, 1, 10.4),  # factor 1: Topaz leaves coordinates untouched (no rounding)
        # Topaz computes scale = up / down first: (1 / 0.7) * 43.75 is exactly 62.5 -> 62,
        # whereas 43.75 / 0.7 = 62.50000000000001 would round to 63.
        (43.75, 0.7, 1, 62),
    ],
)
def test_scale_coordinates_matches_topaz_np_round(
    value: float, down: float, up: float, expected: float
) -> None:
    assert conventions.scale_coordinates(value, down, up) == expected


@pytest.mark.parametrize(("down", "up"), [(0, 1), (1, -2), (float("nan"), 1), (1, float("inf"))])
def test_scale_coordinates_rejects_bad_factors(down: float, up: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        conventions.scale_coordinates([1.0], down, up)


def test_pixel_size_conversions() -> None:
    assert conventions.pixels_to_angstrom(100, 1.5) == 150
    assert conventions.angstrom_to_pixels(150, 1.5) == 100
    np.testing.assert_allclose(
        conventions.angstrom_to_pixels(conventions.pixels_to_angstrom([1, 2.5], 0.6575), 0.6575),
        [1, 2.5],
    )
    with pytest.raises(ValueError, match="pixel size"):
        conventions.angstrom_to_pixels(1, 0)
