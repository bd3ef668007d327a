"""``jaxpick.extract``: scoring + NMS over many micrographs, outputs, restarts, validation.

Most tests use ``model="none"`` (the inputs are score maps, Topaz's ``-m none``) so that they
check the pipeline, not a network; `test_extract_with_a_model_*` run a small picker.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from jaxpick.config import ExtractConfig
from jaxpick.errors import ConfigError
from jaxpick.extract import extract, max_picks, picks_to_coordinates
from jaxpick.io.coords import Coordinates, read_coordinates, write_coordinates
from jaxpick.io.image import write_image
from jaxpick.kernels.nms import nms_reference


def spec_map() -> np.ndarray:
    """Spec 4.2's score map (40x50)."""
    i, j = np.meshgrid(np.arange(40), np.arange(50), indexing="ij")
    return (np.sin(0.1 * i) * np.cos(0.07 * j) + 0.01 * ((31 * i + 17 * j) % 13)).astype(np.float32)


def peaks_map(rng: np.random.Generator, shape: tuple[int, int], n: int) -> np.ndarray:
    """Gaussian blobs of random height at random places on low noise (a realistic map)."""
    rows, cols = np.indices(shape)
    out = rng.normal(scale=0.1, size=shape).astype(np.float32) - 3
    for _ in range(n):
        y, x = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        out += rng.uniform(2, 6) * np.exp(-((rows - y) ** 2 + (cols - x) ** 2) / 8.0)
    return out.astype(np.float32)


@pytest.fixture
def maps(tmp_path: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = [tmp_path / "maps" / "spec.mrc"]
    write_image(paths[0], spec_map())
    for k in range(3):
        path = tmp_path / "maps" / f"mic{k}.mrc"
        write_image(path, peaks_map(rng, (48, 64), 12))
        paths.append(path)
    return paths


def config(paths: list[Path], **kwargs: object) -> ExtractConfig:
    base: dict[str, object] = {
        "inputs": tuple(str(p) for p in paths),
        "model": "none",
        "radius": 5,
        "threshold": 0.5,
        "device": -1,
    }
    base.update(kwargs)
    return ExtractConfig(**base)  # type: ignore[arg-type]


def expected_picks(path: Path, radius: int, threshold: float) -> Coordinates:
    from jaxpick.io.image import read_image

    score_map = read_image(path).data
    k = max_picks(score_map.shape, radius)
    ref = nms_reference(score_map, radius=radius, max_particles=k, threshold=threshold)
    return picks_to_coordinates(path.stem, *map(np.asarray, ref))


def test_spec_reference_picks_through_extract(
    maps: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Spec 4.2's first five picks (no edge effect among them), through the whole command."""
    result = extract(config(maps[:1]), progress=False)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "image_name\tx_coord\ty_coord\tscore"
    rows = [line.split("\t") for line in out[1:6]]
    assert [(int(r[1]), int(r[2])) for r in rows] == [(1, 17), (0, 12), (7, 15), (6, 21), (0, 22)]
    np.testing.assert_allclose(
        [float(r[3]) for r in rows], [1.099236, 1.012039, 1.000123, 0.908187, 0.868496], atol=1e-6
    )
    assert result.report.done == ["spec"]


def test_single_file_equals_reference_and_keeps_input_order(
    maps: list[Path], tmp_path: Path
) -> None:
    out = tmp_path / "picks.txt"
    result = extract(config(maps, output=str(out)), progress=False)
    assert result.report.ok
    assert result.written == [out]
    table = read_coordinates(out, "coord")
    assert list(dict.fromkeys(table.image_name)) == [p.stem for p in maps]
    for path in maps:
        ours = table.select(table.image_name == path.stem)
        ref = expected_picks(path, 5, 0.5)
        np.testing.assert_array_equal(ours.x, ref.x)
        np.testing.assert_array_equal(ours.y, ref.y)
        np.testing.assert_allclose(ours.score, ref.score, rtol=1e-6)
    assert not (tmp_path / ".picks.txt.parts").exists()


def test_output_folder_gets_topaz_file_name(maps: list[Path], tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    result = extract(config(maps[:2], output=str(folder)), progress=False)
    assert result.written == [folder / "extracted_particles.txt"]


def test_scaling_rounds_like_topaz(maps: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "scaled.txt"
    extract(config(maps[1:2], output=str(out), up_scale=4, down_scale=3), progress=False)
    table = read_coordinates(out, "coord")
    ref = expected_picks(maps[1], 5, 0.5)
    np.testing.assert_array_equal(table.x, np.round(ref.x * 4 / 3))
    np.testing.assert_array_equal(table.y, np.round(ref.y * 4 / 3))


@pytest.mark.parametrize("fmt", ["coord", "star", "box", "json", "csv"])
def test_per_micrograph_outputs_and_skip_done(maps: list[Path], tmp_path: Path, fmt: str) -> None:
    folder = tmp_path / "per"
    kwargs = {"output": str(folder) + "/", "per_micrograph": True, "format": fmt, "suffix": "_p"}
    first = extract(config(maps, **kwargs), progress=False)
    assert sorted(first.report.done) == sorted(p.stem for p in maps)
    files = sorted(folder.iterdir())
    ending = "_info.json" if fmt == "json" else f".{fmt}"  # EMAN2's json naming
    assert [f.name for f in files] == sorted(f"{p.stem}_p{ending}" for p in maps)
    back = read_coordinates(folder / f"mic0_p{ending}", fmt, suffix="_p")
    ref = expected_picks(maps[1], 5, 0.5)
    np.testing.assert_allclose(np.sort(back.x), np.sort(ref.x), atol=0.5)
    again = extract(config(maps, **kwargs), progress=False)
    assert again.report.done == []
    assert sorted(again.report.skipped) == sorted(p.stem for p in maps)


def test_existing_single_output_is_kept_without_overwrite(maps: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "picks.txt"
    out.write_text("precious\n")
    result = extract(config(maps[:1], output=str(out)), progress=False)
    assert out.read_text() == "precious\n"
    assert result.report.done == []
    extract(config(maps[:1], output=str(out), overwrite=True), progress=False)
    assert out.read_text().startswith("image_name\t")


def test_interrupted_run_resumes_from_parts(maps: list[Path], tmp_path: Path) -> None:
    """Finished micrographs of a crashed run are kept as parts and not scored again."""
    out = tmp_path / "picks.txt"
    whole = tmp_path / "whole.txt"
    extract(config(maps, output=str(whole)), progress=False)
    # Simulate a crash after two micrographs: their parts exist, the output does not.
    cfg = config(maps, output=str(out))
    from jaxpick.extract import _fingerprint, _prepare_parts

    parts = tmp_path / ".picks.txt.parts"
    _prepare_parts(parts, _fingerprint(cfg), overwrite=False)
    table = read_coordinates(whole, "coord")
    for path in maps[:2]:
        write_coordinates(table.select(table.image_name == path.stem), parts / f"{path.stem}.txt")
    result = extract(cfg, progress=False)
    assert sorted(result.report.skipped) == sorted(p.stem for p in maps[:2])
    assert sorted(result.report.done) == sorted(p.stem for p in maps[2:])
    assert out.read_text() == whole.read_text()
    assert not parts.exists()


def test_parts_from_other_settings_are_discarded(maps: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "picks.txt"
    parts = tmp_path / ".picks.txt.parts"
    parts.mkdir()
    (parts / "settings").write_text("something else")
    (parts / "spec.txt").write_text("image_name\tx_coord\ty_coord\tscore\nspec\t0\t0\t99\n")
    result = extract(config(maps[:1], output=str(out)), progress=False)
    assert result.report.done == ["spec"]
    assert "\t99" not in out.read_text()


def test_unreadable_micrograph_is_reported_and_others_finish(
    maps: list[Path], tmp_path: Path
) -> None:
    broken = tmp_path / "maps" / "broken.mrc"
    write_image(broken, np.zeros((48, 64), np.float32))
    broken.write_bytes(broken.read_bytes()[:1500])
    out = tmp_path / "picks.txt"
    result = extract(config([*maps, broken], output=str(out)), progress=False)
    assert list(result.report.failed) == ["broken"]
    assert "broken.mrc" in result.report.failed["broken"]
    assert set(read_coordinates(out, "coord").image_name) == {p.stem for p in maps}


def test_validation_and_radius_search(
    maps: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Targets = the reference picks at radius 6: the search finds AUPRC 1 there."""
    truth = Coordinates.concat(expected_picks(p, 6, 0.5) for p in maps[1:])
    targets = tmp_path / "targets.txt"
    write_coordinates(truth, targets)
    out = tmp_path / "picks.txt"
    result = extract(
        config(
            maps,
            radius=None,
            targets=(str(targets),),
            min_radius=2,
            max_radius=10,
            step_radius=4,
            assignment_radius=1.0,
            output=str(out),
        ),
        progress=False,
    )
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("# radius")]
    assert [e.radius for e in result.evaluations] == [2, 6, 10]
    assert len(lines) == 3
    best = max(result.evaluations, key=lambda e: e.auprc)
    assert best.radius == 6
    assert result.radius == 6
    assert math.isclose(best.auprc, 1.0)
    assert best.targets == len(truth)
    assert best.hits == len(truth)
    # Output at the chosen radius, all micrographs (the spec map has no targets).
    written = read_coordinates(out, "coord")
    assert set(written.image_name) == {p.stem for p in maps}


def test_only_validate_writes_nothing(
    maps: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    truth = expected_picks(maps[1], 5, 0.5)
    targets = tmp_path / "targets.txt"
    write_coordinates(truth, targets)
    out = tmp_path / "picks.txt"
    result = extract(
        config(maps[1:2], targets=(str(targets),), only_validate=True, output=str(out)),
        progress=False,
    )
    assert not out.exists()
    assert result.evaluations[0].auprc == pytest.approx(1.0)
    assert "# radius=5, auprc=1.0" in capsys.readouterr().out


def test_max_picks_is_an_upper_bound() -> None:
    rng = np.random.default_rng(3)
    for radius in (0, 1, 2, 3, 5, 8):
        score_map = rng.normal(size=(30, 41)).astype(np.float32)
        bound = max_picks(score_map.shape, radius)
        picks = nms_reference(score_map, radius=radius, max_particles=30 * 41, threshold=-np.inf)
        assert int(np.asarray(picks.valid).sum()) <= bound


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"radius": None}, "radius is required"),
        ({"radius": -1}, "radius must be >= 0"),
        ({"format": "cbox"}, "format must be one of"),
        ({"per_micrograph": True}, "needs -o"),
        ({"only_validate": True}, "needs --targets"),
        ({"precision": "float16"}, "precision"),
    ],
)
def test_bad_settings(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        config([Path("a.mrc")], **kwargs)


# ------------------------------------------------------------------------- with a real model

EXTRACT_FIXTURES = Path(__file__).parent / "data" / "topaz_extract.npz"
MODEL_FIXTURES = Path(__file__).parent / "data" / "topaz_models.npz"


def _pretrained_or_skip(name: str) -> None:
    from jaxpick.checkpoint import pretrained_path
    from jaxpick.errors import FileFormatError

    try:
        pretrained_path(name)
    except FileFormatError as err:
        pytest.skip(f"Topaz's pretrained weights are not installed: {err}")


@pytest.fixture(scope="module")
def crop_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The normalised 96x112 real-micrograph crop the Topaz fixtures were made from."""
    path = tmp_path_factory.mktemp("crop") / "crop.mrc"
    with np.load(MODEL_FIXTURES) as data:
        write_image(path, data["input"].astype(np.float32))
    return path


@pytest.mark.parametrize("radius", [3, 8])
@pytest.mark.parametrize("model", ["resnet8_u32", "resnet16_u64"])
def test_picks_equal_topaz_extract(
    crop_file: Path, tmp_path: Path, model: str, radius: int
) -> None:
    """Same picks as ``topaz extract -r R -t -6`` (tests/data/make_topaz_extract_fixtures.py).

    Topaz's NMS wraps suppression from the right edge into the next row; no pick in these
    fixtures is within ``radius`` of the right or bottom edge of a higher pick's disc in a way
    that changes the result, so the sets are equal (the NMS kernel tests cover the bug itself).
    """
    _pretrained_or_skip(model)
    out = tmp_path / "picks.txt"
    extract(
        ExtractConfig(
            inputs=(str(crop_file),), model=model, radius=radius, output=str(out), device=-1
        ),
        progress=False,
    )
    ours = read_coordinates(out, "coord")
    with np.load(EXTRACT_FIXTURES) as data:
        theirs = data[f"{model}_r{radius}"]
    assert len(ours) == len(theirs)
    np.testing.assert_array_equal(ours.x, theirs[:, 0])
    np.testing.assert_array_equal(ours.y, theirs[:, 1])
    np.testing.assert_allclose(ours.score, theirs[:, 2], atol=1e-4)


def test_tiled_scoring_gives_the_same_picks(crop_file: Path, tmp_path: Path) -> None:
    """-p 40 (tiles with a receptive-field halo) gives whole-image scoring's picks."""
    _pretrained_or_skip("resnet8_u32")
    outs = []
    for patch in (0, 40):
        out = tmp_path / f"p{patch}.txt"
        extract(
            ExtractConfig(
                inputs=(str(crop_file),),
                model="resnet8_u32",
                radius=8,
                patch_size=patch,
                output=str(out),
                device=-1,
            ),
            progress=False,
        )
        outs.append(read_coordinates(out, "coord"))
    np.testing.assert_array_equal(outs[0].x, outs[1].x)
    np.testing.assert_array_equal(outs[0].y, outs[1].y)
    np.testing.assert_allclose(outs[0].score, outs[1].score, atol=1e-4)


def test_segment_writes_topaz_score_maps(crop_file: Path, tmp_path: Path) -> None:
    from jaxpick.config import SegmentConfig
    from jaxpick.extract import segment
    from jaxpick.io.image import read_image

    _pretrained_or_skip("resnet8_u32")
    report = segment(
        SegmentConfig(
            inputs=(str(crop_file),), destdir=str(tmp_path), model="resnet8_u32", device=-1
        ),
        progress=False,
    )
    assert report.done == ["crop"]
    score_map = read_image(tmp_path / "crop.tiff").data
    with np.load(MODEL_FIXTURES) as data:
        np.testing.assert_allclose(score_map, data["pretrained_resnet8_u32"], atol=1e-4)
