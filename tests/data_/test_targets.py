"""Tests of training-data loading, statistics, π and k-fold splits (`jaxpick.data.targets`)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from jaxpick.data.targets import (
    TrainingSet,
    data_statistics,
    disc_offsets,
    format_statistics,
    list_images,
    load_training_set,
    positive_pixels,
    prior_from_particles,
    split_folds,
)
from jaxpick.errors import ConfigError, FileFormatError
from jaxpick.io.coords import Coordinates, write_coordinates
from jaxpick.io.image import write_image

SHAPES = {"mic_a": (40, 50), "mic_b": (32, 32), "mic_c": (24, 36)}


def _image(shape: tuple[int, int], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Three micrographs in three formats (MRC, TIFF, PNG)."""
    images = tmp_path / "images"
    images.mkdir()
    write_image(images / "mic_a.mrc", _image(SHAPES["mic_a"], 0))
    write_image(images / "mic_b.tiff", _image(SHAPES["mic_b"], 1))
    write_image(images / "mic_c.png", _image(SHAPES["mic_c"], 2))
    (images / "notes.txt").write_text("not an image\n")
    return images


def _targets(tmp_path: Path, rows: list[tuple[str, float, float]], name: str = "t.txt") -> Path:
    table = Coordinates(
        image_name=np.array([r[0] for r in rows]),
        x=np.array([r[1] for r in rows], float),
        y=np.array([r[2] for r in rows], float),
    )
    path = tmp_path / name
    write_coordinates(table, path)
    return path


def _collect() -> tuple[list[str], object]:
    messages: list[str] = []
    return messages, messages.append


# --------------------------------------------------------------------------------- images


def test_list_images_folder_any_format(folder: Path) -> None:
    listed = list_images(folder)
    assert [(n, Path(p).name, s) for n, p, s in listed] == [
        ("mic_a", "mic_a.mrc", 0),
        ("mic_b", "mic_b.tiff", 0),
        ("mic_c", "mic_c.png", 0),
    ]


def test_list_images_explicit_files_and_folder_mix(folder: Path) -> None:
    listed = list_images([str(folder / "mic_b.tiff"), str(folder / "mic_a.mrc")])
    assert [n for n, _, _ in listed] == ["mic_b", "mic_a"]
    # The same file twice (a file and its folder) counts once.
    assert len(list_images([str(folder), str(folder / "mic_a.mrc")])) == 3


def test_list_images_topaz_list(folder: Path, tmp_path: Path, monkeypatch) -> None:
    listing = tmp_path / "lists" / "images.txt"
    listing.parent.mkdir()
    listing.write_text(
        "image_name\tpath\tsource\n"
        f"mic_a\t{folder / 'mic_a.mrc'}\t1\n"
        "mic_b.tiff\t../images/mic_b.tiff\t0\n"  # relative to the list's folder; name stripped
        "\n"
        f"mic_c   {folder / 'mic_c.png'}   1\n"  # any whitespace
    )
    monkeypatch.chdir(tmp_path / "lists")
    listed = list_images(str(listing))
    assert [(n, s) for n, _, s in listed] == [("mic_a", 1), ("mic_b", 0), ("mic_c", 1)]
    monkeypatch.chdir(tmp_path)
    assert Path(list_images(str(listing))[1][1]).resolve() == (folder / "mic_b.tiff").resolve()


def test_list_images_text_sources(folder: Path, tmp_path: Path) -> None:
    listing = tmp_path / "images.txt"
    listing.write_text(
        "image_name path source\n"
        f"mic_a {folder / 'mic_a.mrc'} krios\n"
        f"mic_b {folder / 'mic_b.tiff'} glacios\n"
        f"mic_c {folder / 'mic_c.png'} krios\n"
    )
    assert [s for _, _, s in list_images(str(listing))] == [1, 0, 1]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty image list"),
        ("name file\nmic_a x.mrc\n", "image_name path"),
        ("image_name path\nmic_a\n", "line 2: 1 fields for 2 columns"),
        ("image_name path\nmic_a nowhere/mic_a.mrc\n", "line 2: image 'nowhere/mic_a.mrc' not"),
    ],
)
def test_list_images_bad_list(tmp_path: Path, content: str, message: str) -> None:
    listing = tmp_path / "images.lst"
    listing.write_text(content)
    with pytest.raises(FileFormatError, match=message) as info:
        list_images(str(listing))
    assert str(listing) in str(info.value)


def test_list_images_errors(tmp_path: Path, folder: Path) -> None:
    with pytest.raises(FileFormatError, match="no such image file"):
        list_images(str(tmp_path / "missing"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="no image files in this folder"):
        list_images(str(empty))
    other = tmp_path / "other"
    other.mkdir()
    write_image(other / "mic_a.tif", _image((8, 8), 3))
    with pytest.raises(ConfigError, match="two images share the name 'mic_a'"):
        list_images([str(folder), str(other)])


# -------------------------------------------------------------------------------- targets


def test_load_training_set_matches_names_and_rounds(folder: Path, tmp_path: Path) -> None:
    targets = _targets(
        tmp_path,
        [
            ("mic_a.mrc", 10.4, 20.6),  # extension in the target name
            ("Micrographs/mic_a", 2.5, 3.5),  # folders too; half to even: (4, 2)
            ("mic_c", 35.0, 23.0),
        ],
    )
    messages, warn = _collect()
    ts = load_training_set(str(folder), str(targets), radius=2, warn=warn)
    assert ts.names == ("mic_a", "mic_b", "mic_c")
    assert ts.radius == 2
    assert [im.shape for im in ts.images] == [SHAPES[n] for n in ts.names]
    assert all(im.dtype == np.float32 for im in ts.images)
    np.testing.assert_array_equal(ts.images[0], _image(SHAPES["mic_a"], 0))
    assert ts.coords[0].dtype == np.int32
    assert ts.coords[0].tolist() == [[21, 10], [4, 2]]
    assert ts.coords[1].shape == (0, 2)
    assert ts.coords[2].tolist() == [[23, 35]]
    assert ts.num_particles == 3
    assert ts.total_pixels == sum(h * w for h, w in SHAPES.values())
    assert ts.sources == (0, 0, 0)
    assert messages == []


def test_load_training_set_any_coordinate_format(folder: Path, tmp_path: Path) -> None:
    table = Coordinates(image_name=np.array(["mic_a", "mic_b"]), x=[30.0, 20.0], y=[30.0, 25.0])
    star = tmp_path / "picks.star"
    write_coordinates(table, star)
    boxes = tmp_path / "boxes"
    write_coordinates(table, boxes, "box", box_size=10)
    for spec in (str(star), str(boxes), [str(p) for p in sorted(boxes.iterdir())]):
        ts = load_training_set(str(folder), spec, radius=1, warn=lambda m: None)
        assert ts.coords[0].tolist() == [[30, 30]]
        assert ts.coords[1].tolist() == [[25, 20]]


def test_load_training_set_warnings(folder: Path, tmp_path: Path) -> None:
    targets = _targets(
        tmp_path,
        [
            ("mic_a", 45.0, 35.0),
            ("mic_a", 50.0, 10.0),  # x == width: out of bounds
            ("mic_b", -1.0, 5.0),  # out of bounds
            ("ghost_1", 1.0, 1.0),
            ("ghost_1", 2.0, 2.0),
            ("ghost_2", 1.0, 1.0),
        ],
    )
    messages, warn = _collect()
    ts = load_training_set(str(folder), str(targets), radius=3, warn=warn)
    assert ts.num_particles == 1
    assert len(messages) == 2
    assert "3 particles for 2 images with no matching micrograph" in messages[0]
    assert "'ghost_1', 'ghost_2'" in messages[0]
    assert "2 particles out of bounds" in messages[1]
    assert "mic_a (1)" in messages[1]
    assert "mic_b (1)" in messages[1]


def test_load_training_set_scaling_warning(folder: Path, tmp_path: Path) -> None:
    # Everything in the top-left corner: coordinates probably not scaled to the micrographs.
    targets = _targets(tmp_path, [("mic_a", 5.0, 5.0), ("mic_b", 20.0, 20.0)])
    messages, warn = _collect()
    load_training_set(str(folder), str(targets), radius=3, warn=warn)
    assert len(messages) == 1
    assert "70%" in messages[0]
    assert "scale" in messages[0]
    # One coordinate beyond 70 % of its image's width is enough.
    targets = _targets(tmp_path, [("mic_a", 5.0, 5.0), ("mic_b", 23.0, 5.0)], "u.txt")
    messages, warn = _collect()
    load_training_set(str(folder), str(targets), radius=3, warn=warn)
    assert messages == []


def test_load_training_set_default_warns_on_stderr(folder: Path, tmp_path: Path, capsys) -> None:
    targets = _targets(tmp_path, [("mic_a", 45.0, 35.0), ("nope", 1.0, 1.0)])
    load_training_set(str(folder), str(targets), radius=3)
    assert "WARNING: 1 particles for 1 images" in capsys.readouterr().err


def test_load_training_set_errors(folder: Path, tmp_path: Path) -> None:
    quiet = lambda m: None  # noqa: E731
    good = _targets(tmp_path, [("mic_a", 45.0, 35.0)])
    with pytest.raises(ConfigError, match="radius"):
        load_training_set(str(folder), str(good), radius=-1, warn=quiet)
    nomatch = _targets(tmp_path, [("x1", 1.0, 1.0), ("x2", 1.0, 1.0)], "n.txt")
    with pytest.raises(ConfigError, match="no image name") as info:
        load_training_set(str(folder), str(nomatch), radius=3, warn=quiet)
    text = str(info.value)
    assert "'x1', 'x2'" in text
    assert "'mic_a'" in text
    assert str(nomatch) in text
    outside = _targets(tmp_path, [("mic_a", 500.0, 35.0)], "o.txt")
    with pytest.raises(ConfigError, match="no particle .* inside"):
        load_training_set(str(folder), str(outside), radius=3, warn=quiet)
    empty = tmp_path / "empty.txt"
    empty.write_text("image_name\tx_coord\ty_coord\n")
    with pytest.raises(ConfigError, match="no particle coordinates"):
        load_training_set(str(folder), str(empty), radius=3, warn=quiet)
    with pytest.raises(FileFormatError, match="no such coordinate file"):
        load_training_set(str(folder), str(tmp_path / "gone.star"), radius=3, warn=quiet)
    bad = tmp_path / "bad.star"
    bad.write_text("this is not a star file\n")
    with pytest.raises(FileFormatError) as info:
        load_training_set(str(folder), str(bad), radius=3, warn=quiet)
    assert str(bad) in str(info.value)
    volume = tmp_path / "vol"
    volume.mkdir()
    write_image(volume / "mic_a.mrc", np.zeros((3, 8, 8), np.float32))
    with pytest.raises(FileFormatError, match="2-D micrograph"):
        load_training_set(str(volume), str(good), radius=3, warn=quiet)


def test_training_set_subset(folder: Path, tmp_path: Path) -> None:
    targets = _targets(tmp_path, [("mic_a", 45.0, 35.0), ("mic_c", 30.0, 20.0)])
    ts = load_training_set(str(folder), str(targets), radius=3, warn=lambda m: None)
    sub = ts.subset([2, 0])
    assert sub.names == ("mic_c", "mic_a")
    assert sub.num_particles == 2
    assert sub.radius == 3


# ------------------------------------------------------------------------- discs, π, stats


@pytest.mark.parametrize(
    ("radius", "area", "legacy"), [(0, 1, 1), (1, 5, 15), (2, 13, 65), (3, 29, 203), (5, 81, 891)]
)
def test_disc_area(radius: int, area: int, legacy: int) -> None:
    offsets = disc_offsets(radius)
    assert offsets.dtype == np.int32
    assert offsets.shape == (area, 2)
    assert (np.sum(offsets.astype(np.int64) ** 2, axis=1) <= radius**2).all()
    assert len({tuple(o) for o in offsets.tolist()}) == area
    assert positive_pixels(radius) == area
    assert positive_pixels(radius, legacy=True) == legacy


def test_disc_offsets_row_major() -> None:
    # Topaz's expand_target_points order: (dy, dx) rows of the mask, row-major.
    assert disc_offsets(1).tolist() == [[-1, 0], [0, -1], [0, 0], [0, 1], [1, 0]]


def _toy_set() -> TrainingSet:
    images = (
        np.zeros((100, 100), np.float32),
        np.zeros((50, 40), np.float32),
        np.zeros((10, 10), np.float32),
    )
    coords = (
        np.array([[5, 5], [50, 50]], np.int32),
        np.zeros((0, 2), np.int32),
        np.array([[3, 3]], np.int32),
    )
    return TrainingSet(("a", "b", "c"), ("a.mrc", "b.mrc", "c.mrc"), images, (0, 1, 0), coords, 3)


def test_data_statistics_and_table() -> None:
    ts = _toy_set()
    stats = data_statistics(ts)
    assert stats.total_pixels == 12100
    assert stats.num_particles == 3
    assert stats.positive_pixels == 3 * 29
    assert stats.p_observed == pytest.approx(87 / 12100)
    assert [
        (r.source, r.num_images, r.positive_pixels, r.total_pixels) for r in stats.per_source
    ] == [(0, 2, 87, 10100), (1, 1, 0, 2000)]
    legacy = data_statistics(ts, legacy_pi=True)
    assert legacy.positive_pixels == 3 * 203
    assert legacy.pixels_per_particle == 203
    text = format_statistics(stats, legacy)
    assert text == (
        "# source\tsplit\tp_observed\tnum_positive_regions\ttotal_regions\n"
        "# 0\ttrain\t8.61386e-03\t87\t10100\n"
        "# 1\ttrain\t0.00000e+00\t0\t2000\n"
        "# 0\ttest\t6.02970e-02\t609\t10100\n"
        "# 1\ttest\t0.00000e+00\t0\t2000\n"
    )
    assert format_statistics(stats).count("\n") == 3


def test_statistics_row_matches_topaz_format() -> None:
    # topaz/training.py: report(f'{source}\t{mode}\t{p_observed:.5e}\t{positives}\t{total}')
    source, mode, positives, total = 0, "train", 609, 12100
    topaz_line = "# " + f"{source}\t{mode}\t{positives / total:.5e}\t{positives}\t{total}"
    ts = TrainingSet(
        ("a",),
        ("a.mrc",),
        (np.zeros((110, 110), np.float32),),
        (0,),
        (np.array([[1, 1], [2, 2], [3, 3]], np.int32),),
        3,
    )
    assert format_statistics(data_statistics(ts, legacy_pi=True)).splitlines()[1] == topaz_line


def test_prior_from_particles() -> None:
    ts = _toy_set()
    # spec 3.1 step 5: pi = P(r) * n * num_images / total_pixels
    assert prior_from_particles(10, ts) == pytest.approx(29 * 10 * 3 / 12100)
    assert prior_from_particles(10, ts, legacy=True) == pytest.approx(203 * 10 * 3 / 12100)
    with pytest.raises(ConfigError, match="num-particles"):
        prior_from_particles(0, ts)
    with pytest.raises(ConfigError, match=">= 1"):
        prior_from_particles(1000, ts)


def test_prior_matches_topaz_legacy_formula() -> None:
    # topaz.stats.calculate_pi(n * num_images, r, total) with its pixels_given_radius.
    def pixels_given_radius(radius: int) -> int:
        grid = np.linspace(-radius, radius, 2 * radius + 1)
        xx, yy, _ = np.meshgrid(grid, grid, grid)
        return int(((xx**2 + yy**2) <= radius**2).sum())

    ts = _toy_set()
    for radius in (1, 2, 3, 5):
        ts_r = TrainingSet(ts.names, ts.paths, ts.images, ts.sources, ts.coords, radius)
        expected = pixels_given_radius(radius) * (2.5 * 3) / ts.total_pixels
        assert prior_from_particles(2.5, ts_r, legacy=True) == pytest.approx(expected)


# ----------------------------------------------------------------------------------- folds


@pytest.mark.parametrize(("n", "k"), [(10, 3), (7, 7), (5, 2), (12, 4)])
def test_split_folds_partition(n: int, k: int) -> None:
    names = [f"mic_{i:03d}" for i in range(n)]
    tests = []
    for fold in range(k):
        train, test = split_folds(names, k, fold)
        assert sorted(train + test) == list(range(n))
        assert not set(train) & set(test)
        assert train == sorted(train)
        assert test == sorted(test)
        assert len(test) in (n // k, -(-n // k))
        tests.extend(test)
    assert sorted(tests) == list(range(n))  # every image is held out exactly once


def test_split_folds_deterministic_and_order_free() -> None:
    names = [f"mic_{i:03d}" for i in range(20)]
    a = split_folds(names, 4, 1, seed=7)
    assert a == split_folds(names, 4, 1, seed=7)
    assert a != split_folds(names, 4, 1, seed=8)
    # The same images listed in another order give the same held-out names.
    reordered = names[::-1]
    _, test = split_folds(reordered, 4, 1, seed=7)
    assert sorted(reordered[i] for i in test) == sorted(names[i] for i in a[1])


def test_split_folds_no_cv_and_errors() -> None:
    assert split_folds(["a", "b"], 0, 0) == ([0, 1], [])
    assert split_folds(["a", "b"], 1, 5) == ([0, 1], [])
    with pytest.raises(ConfigError, match="--fold"):
        split_folds(["a", "b", "c"], 3, 3)
    with pytest.raises(ConfigError, match="--fold"):
        split_folds(["a", "b", "c"], 3, -1)
    with pytest.raises(ConfigError, match="more folds than the 3 images"):
        split_folds(["a", "b", "c"], 4, 0)


def test_targets_module_does_not_import_jax() -> None:
    import subprocess

    code = "import sys, jaxpick.data.targets, jaxpick.data; print('jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
