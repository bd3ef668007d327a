"""`jaxpick precision_recall_curve` end to end: output as Topaz's, extra outputs, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jaxpick.cli.main import main
from jaxpick.io.coords import Coordinates, read_coordinates, write_coordinates
from jaxpick.metrics import evaluate_picks, format_precision_recall

FIXTURES = Path(__file__).resolve().parent.parent / "data" / "topaz_metrics.npz"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["precision_recall_curve", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def spec_files(tmp_path: Path) -> tuple[Path, Path]:
    """The spec's reference case, plus a prediction on a micrograph without targets."""
    targets = tmp_path / "targets.txt"
    targets.write_text("image_name\tx_coord\ty_coord\nm1\t10\t10\nm1\t30\t30\nm1\t50\t50\n")
    predicted = tmp_path / "predicted.txt"
    predicted.write_text(
        "image_name\tx_coord\ty_coord\tscore\n"
        "m1\t11\t10\t3\nm1\t29\t33\t1\nm1\t80\t80\t2\nm1\t50\t54\t0.5\nm2\t5\t5\t0.25\n"
    )
    return targets, predicted


# What topaz precision_recall_curve (topaz-em 0.3.20) prints for `spec_files`, -r 4.
TOPAZ_SPEC_TARGET = """\
# auprc=0.5555555555555555, mae=1.442615274452683
threshold\tprecision\trecall\tf1
3.0\t1.0\t0.3333333333333333\t0.5
2.0\t0.5\t0.3333333333333333\t0.4
1.0\t0.6666666666666666\t0.6666666666666666\t0.6666666666666666
0.5\t0.5\t0.6666666666666666\t0.5714285714285715
"""
TOPAZ_SPEC_UNION = TOPAZ_SPEC_TARGET + "0.25\t0.4\t0.6666666666666666\t0.5\n"


def test_spec_case_prints_what_topaz_prints(
    spec_files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    targets, predicted = spec_files
    args = ("--predicted", str(predicted), "--targets", str(targets), "-r", "4")
    code, out, err = run(capsys, *args)
    assert code == 0, err
    assert out == TOPAZ_SPEC_TARGET
    assert err == ""
    for mode in ("union", "predicted"):
        code, out, _ = run(capsys, *args, "--images", mode)
        assert code == 0
        assert out == TOPAZ_SPEC_UNION


@pytest.mark.parametrize("mode", ["target", "union"])
def test_output_equals_topaz_on_several_micrographs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mode: str
) -> None:
    with np.load(FIXTURES) as data:
        (tmp_path / "targets.txt").write_bytes(data["prc_targets"].item())
        (tmp_path / "predicted.txt").write_bytes(data["prc_predicted"].item())
        radius = str(int(data["prc_radius"]))
        expected = data[f"prc_out_{mode}"].item().decode()
    code, out, err = run(
        capsys,
        "--predicted",
        str(tmp_path / "predicted.txt"),
        "--targets",
        str(tmp_path / "targets.txt"),
        "--assignment-radius",
        radius,
        "--images",
        mode,
    )
    assert code == 0, err
    ours, theirs = out.splitlines(), expected.splitlines()
    assert ours[1:] == theirs[1:]
    auprc, mae = (part.split("=")[1] for part in ours[0][2:].split(", "))
    their_auprc, their_mae = (part.split("=")[1] for part in theirs[0][2:].split(", "))
    assert auprc == their_auprc
    # Topaz's running mean over micrographs in hash order differs in the last digits.
    assert float(mae) == pytest.approx(float(their_mae), rel=1e-12)


def test_output_file_plot_and_verbose(
    tmp_path: Path, spec_files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    targets, predicted = spec_files
    table, picture = tmp_path / "out" / "pr.tsv", tmp_path / "pr.png"
    code, out, err = run(
        capsys,
        "--predicted",
        str(predicted),
        "--targets",
        str(targets),
        "-r",
        "4",
        "-o",
        str(table),
        "--plot",
        str(picture),
        "-v",
    )
    assert code == 0, err
    assert table.read_text() == out == TOPAZ_SPEC_TARGET
    assert "hits=2" in err
    assert "mean_distance=2.0811" in err
    with Image.open(picture) as image:
        image.verify()
    with Image.open(picture) as image:
        assert image.format == "PNG"
        assert image.width >= 400
        assert image.height >= 300
        pixels = np.asarray(image.convert("RGB"))
    assert (pixels == 255).all(axis=2).mean() > 0.5  # mostly white
    assert (np.abs(pixels.astype(int) - (30, 90, 200)).sum(axis=2) < 30).any()  # the curve


def test_matches_library_with_other_formats(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(0)
    names = np.repeat(["mic_a", "mic_b", "mic_c"], 20)
    truth = Coordinates(image_name=names, x=rng.integers(0, 500, 60), y=rng.integers(0, 500, 60))
    picks = Coordinates(
        image_name=np.concatenate([names, np.repeat("mic_d", 10)]),
        x=np.concatenate([truth.x + rng.integers(-3, 4, 60), rng.integers(0, 500, 10)]),
        y=np.concatenate([truth.y + rng.integers(-3, 4, 60), rng.integers(0, 500, 10)]),
        score=rng.normal(size=70).round(2),
    )
    write_coordinates(truth, tmp_path / "truth.star")
    write_coordinates(picks, tmp_path / "picks.txt")
    code, out, err = run(
        capsys,
        "--predicted",
        str(tmp_path / "picks.txt"),
        "--targets",
        str(tmp_path / "truth.star"),
        "-r",
        "3",
        "--images",
        "union",
    )
    assert code == 0, err
    expected = evaluate_picks(read_coordinates(tmp_path / "truth.star"), picks, 3, images="union")
    assert out == format_precision_recall(expected)
    assert expected.num_predictions == 70
    assert 0 < expected.curve.auprc < 1


def test_errors_are_one_line_naming_the_file(
    tmp_path: Path, spec_files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    targets, predicted = spec_files
    unscored = tmp_path / "unscored.txt"
    unscored.write_text("image_name\tx_coord\ty_coord\nm1\t1\t1\n")
    empty = tmp_path / "empty.txt"
    empty.write_text("image_name\tx_coord\ty_coord\n")
    garbage = tmp_path / "garbage.txt"
    garbage.write_bytes(b"\x00\x01binary")
    cases = [
        (tmp_path / "missing.txt", targets, "missing.txt", "cannot read"),
        (unscored, targets, "unscored.txt", "score"),
        (predicted, empty, "empty.txt", "no target"),
        (garbage, targets, "garbage.txt", "binary"),
        (predicted, garbage, "garbage.txt", "binary"),
    ]
    for pred, targ, culprit, message in cases:
        code, out, err = run(capsys, "--predicted", str(pred), "--targets", str(targ), "-r", "4")
        assert code == 1
        assert out == ""
        assert err.startswith("jaxpick precision_recall_curve: error: ")
        assert culprit in err
        assert message in err
        assert len(err.strip().splitlines()) == 1


def test_bad_radius_is_a_config_error(
    spec_files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    targets, predicted = spec_files
    code, _, err = run(capsys, "--predicted", str(predicted), "--targets", str(targets), "-r", "0")
    assert code == 1
    assert "radius" in err
    with pytest.raises(SystemExit):
        main(["precision_recall_curve", "--predicted", str(predicted), "--targets", str(targets)])
    assert "--assignment-radius" in capsys.readouterr().err
