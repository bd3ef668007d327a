"""The command line end to end: parsing, @file arguments, errors, and each command on real files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from jaxpick import __version__
from jaxpick.cli.main import build_parser, main
from jaxpick.io.coords import Coordinates, read_coordinates, read_many, write_coordinates
from jaxpick.io.image import write_image


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"jaxpick {__version__}"


def test_help_lists_every_command_with_its_docstring(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["-h"])
    text = capsys.readouterr().out
    for command in ("convert", "split", "simulate", "demo"):
        assert command in text
    assert "Convert particle coordinates between file formats" in text


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name in sub.choices:
        with pytest.raises(SystemExit) as exit_info:
            main([name, "-h"])
        assert exit_info.value.code == 0
        assert capsys.readouterr().out.startswith("usage: jaxpick " + name)


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys)
    assert code == 2
    assert "commands" in out


@pytest.fixture
def picks(tmp_path: Path) -> Path:
    """A Topaz coordinate file over two 64x80 micrographs written as MRC files."""
    images = tmp_path / "mics"
    for name in ("mic_a", "mic_b"):
        write_image(images / f"{name}.mrc", np.zeros((64, 80), np.float32), pixel_size=2.0)
    coords = Coordinates(
        image_name=["mic_a", "mic_a", "mic_b"],
        x=[10, 20, 30],
        y=[5, 40, 63],
        score=[1.5, -2.0, 0.25],
    )
    path = tmp_path / "picks.txt"
    write_coordinates(coords, path)
    return path


def test_at_file_arguments(tmp_path: Path, picks: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = tmp_path / "args.txt"
    out = tmp_path / "out.star"
    # One argument per line, blank lines ignored: what `ls *.mrc > files.txt` produces.
    args.write_text(f"convert\n{picks}\n\n-o\n{out}\n")
    code, _, err = run(capsys, f"@{args}")
    assert code == 0, err
    assert len(read_coordinates(out)) == 3


def test_convert_to_stdout_keeps_the_input_format(
    picks: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "convert", str(picks), "-t", "0")
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].split("\t") == ["image_name", "x_coord", "y_coord", "score"]
    assert [line.split("\t")[0] for line in lines[1:]] == ["mic_a", "mic_b"]


def test_convert_scales_like_topaz(
    tmp_path: Path, picks: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "scaled.txt"
    assert run(capsys, "convert", str(picks), "-s", "4", "-x", "2", "-o", str(out))[0] == 0
    back = read_coordinates(out)
    # round(c * 2 / 4), round half to even: 10->5, 20->10, 30->15; 5->2 (2.5), 40->20, 63->32
    assert back.x.tolist() == [5, 10, 15]
    assert back.y.tolist() == [2, 20, 32]


def test_convert_invert_y_uses_image_heights(
    tmp_path: Path, picks: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "flipped.txt"
    code, _, err = run(
        capsys,
        "convert",
        str(picks),
        "--invert-y",
        "--imagedir",
        str(tmp_path / "mics"),
        "-o",
        str(out),
    )
    assert code == 0, err
    assert read_coordinates(out).y.tolist() == [63 - 5, 63 - 40, 63 - 63]


def test_convert_invert_y_without_imagedir_is_a_clear_error(
    picks: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "convert", str(picks), "--invert-y")
    assert code == 1
    assert "image_dir" in err or "imagedir" in err


def test_convert_reports_images_missing_from_imagedir(
    tmp_path: Path, picks: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "mics" / "mic_b.mrc").unlink()
    code, _, err = run(
        capsys, "convert", str(picks), "--invert-y", "--imagedir", str(tmp_path / "mics")
    )
    assert code == 1
    assert "'mic_b'" in err
    assert "match no image" in err


def test_convert_to_box_folder_needs_and_uses_boxsize(
    tmp_path: Path, picks: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "boxes"
    code, _, err = run(capsys, "convert", str(picks), "--to", "box", "-o", str(folder))
    assert code == 1
    assert "boxsize" in err.replace("box size", "boxsize").replace("--boxsize", "boxsize")
    code, _, err = run(capsys, "convert", str(picks), "-o", f"{folder}/", "--boxsize", "16")
    assert code == 0, err
    files = sorted(folder.glob("*.box"))
    assert [f.name for f in files] == ["mic_a.box", "mic_b.box"]
    assert files[0].read_text().split()[:4] == ["2", "-3", "16", "16"]  # corner = centre - 8
    back = read_many(files)
    assert back.x.tolist() == [10, 20, 30]


def test_convert_to_cryosparc_needs_shapes(
    tmp_path: Path, picks: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "picks.cs"
    code, _, err = run(capsys, "convert", str(picks), "-o", str(out))
    assert code == 1
    assert "imagedir" in err
    code, _, err = run(
        capsys, "convert", str(picks), "-o", str(out), "--imagedir", str(tmp_path / "mics")
    )
    assert code == 0, err
    table = np.load(out)
    assert table["location/micrograph_shape"].tolist() == [[64, 80]] * 3
    np.testing.assert_allclose(table["location/center_x_frac"], np.array([10, 20, 30]) / 80)
    back = read_coordinates(out)
    np.testing.assert_allclose(back.x, [10, 20, 30], atol=1e-4)


def test_convert_metadata_columns_reach_star(
    tmp_path: Path, picks: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.star"
    code, _, err = run(
        capsys,
        "convert",
        str(picks),
        "-o",
        str(out),
        "--voltage",
        "300",
        "--detector-pixel-size",
        "5",
        "--image-ext",
        ".tiff",
    )
    assert code == 0, err
    text = out.read_text()
    assert "_rlnVoltage" in text
    assert "_rlnDetectorPixelSize" in text
    assert "_rlnMagnification" not in text  # -1 = not set, as in Topaz
    assert "mic_a.tiff" in text
    back = read_coordinates(out)
    assert back.extra["Voltage"].astype(float).tolist() == [300.0] * 3


def test_convert_unreadable_input_names_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "broken.star"
    bad.write_text("data_\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n1 2\n3\n")
    code, _, err = run(capsys, "convert", str(bad))
    assert code == 1
    assert str(bad) in err
    missing = tmp_path / "missing.txt"
    code, _, err = run(capsys, "convert", str(missing))
    assert code == 1
    assert str(missing) in err


def test_split_writes_one_file_per_micrograph(
    tmp_path: Path, picks: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "split"
    code, _, err = run(capsys, "split", str(picks), "-o", str(folder), "--suffix", "_p", "-t", "0")
    assert code == 0, err
    files = sorted(p.name for p in folder.iterdir())
    assert files == ["mic_a_p.txt", "mic_b_p.txt"]
    assert len(read_coordinates(folder / "mic_a_p.txt")) == 1  # score -2.0 < 0 dropped


def test_simulate_writes_a_dataset_and_skips_existing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sim"
    argv = [
        "simulate",
        "-o",
        str(out),
        "-n",
        "2",
        "--size",
        "96",
        "128",
        "--preset",
        "easy",
        "--num-particles",
        "3",
        "--pairs",
        "--coords",
        "coord,star,box",
    ]
    code, stdout, err = run(capsys, *argv)
    assert code == 0, err
    assert "wrote 2 micrographs (96x128" in stdout
    for folder in ("micrographs", "even", "odd", "clean"):
        assert sorted(p.name for p in (out / folder).iterdir()) == ["sim_0000.mrc", "sim_0001.mrc"]
    truth = read_coordinates(out / "particles.txt")
    assert truth.images() == ["sim_0000", "sim_0001"]
    assert len(read_many(sorted((out / "particles_box").glob("*.box")))) == len(truth)
    meta = json.loads((out / "simulation.json").read_text())
    assert meta["config"]["shape"] == [96, 128]
    before = (out / "micrographs" / "sim_0000.mrc").stat().st_mtime_ns
    code, stdout, _ = run(capsys, *argv)
    assert code == 0
    assert "2 existed and were kept" in stdout
    assert (out / "micrographs" / "sim_0000.mrc").stat().st_mtime_ns == before


def test_simulate_bad_setting_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "simulate", "-o", str(tmp_path), "--snr", "-1")
    assert code == 1
    assert "snr" in err
    assert "Traceback" not in err


def test_demo_runs_every_stage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    code, stdout, err = run(
        capsys,
        "demo",
        *("-o", str(out), "-n", "2", "--size", "128", "--train-steps", "4"),
        *("--minibatch-size", "8"),
    )
    assert code == 0, err
    results = json.loads((out / "results.json").read_text())
    stages = results["stages"]
    assert list(stages) == [
        "simulate",
        "read-back",
        "convert",
        "picture",
        "preprocess",
        "train",
        "pick",
    ]
    assert stages["read-back"]["images_identical"] == 2 * 4
    assert stages["convert"]["formats"] == 7
    assert stages["convert"]["worst_err_px"] < 1e-3
    assert (out / "overlay.png").stat().st_size > 1000
    assert "[convert]" in stdout
    pre = stages["preprocess"]
    assert pre["micrographs"] == 2
    assert pre["pixel_size"] == pytest.approx(2 * stages["read-back"]["pixel_size"])
    assert abs(pre["background_mean"]) < 0.1
    assert abs(pre["background_std"] - 1.0) < 0.1
    trained = stages["train"]
    assert trained["updates"] == 4
    assert (trained["training_micrographs"], trained["held_out_micrographs"]) == (1, 1)
    assert 0.0 <= trained["test_particle_auprc"] <= 1.0
    assert (out / "training_curve.png").stat().st_size > 1000
    assert Path(trained["checkpoint"], "config.json").is_file()
    pick = stages["pick"]
    assert 0.0 <= pick["auprc"] <= 1.0
    assert pick["micrographs"] == 1
    assert 0 < pick["targets"] < stages["simulate"]["particles"]  # the held-out micrograph's
    assert (out / "precision_recall.png").stat().st_size > 1000
    assert (out / "picks.png").stat().st_size > 1000
