"""``jaxpick preprocess`` / ``normalize`` / ``downsample`` end to end on small files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from jaxpick.cli.main import main
from jaxpick.io.image import read_image, write_image
from jaxpick.ops.normalize import normalize
from jaxpick.ops.resample import downsample


@pytest.fixture
def mics(tmp_path: Path) -> Path:
    """Four 64x96 micrographs (pixel size 1.5 Å), one 48x48, one truncated, one constant."""
    folder = tmp_path / "raw"
    rng = np.random.default_rng(0)
    for i in range(4):
        image = 10.0 + rng.normal(size=(64, 96)).astype(np.float32)
        image[20:30, 30 + i : 40 + i] -= 3.0  # a dark "particle"
        write_image(folder / f"mic_{i}.mrc", image, pixel_size=1.5)
    write_image(folder / "small.tiff", rng.normal(size=(48, 48)).astype(np.float32))
    write_image(folder / "flat.mrc", np.full((64, 96), 7.0, np.float32), pixel_size=1.5)
    broken = folder / "broken.mrc"
    write_image(broken, np.zeros((64, 96), np.float32))
    broken.write_bytes(broken.read_bytes()[:2000])
    return folder


def good(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.iterdir() if p.stem not in ("flat", "broken"))


def test_preprocess_writes_normalised_downsampled_outputs(
    mics: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    argv = [
        "preprocess",
        "-s",
        "2",
        "--sample",
        "1",
        "--metadata",
        "--format",
        "mrc,png",
        "-o",
        str(out),
        *good(mics),
    ]
    assert main(argv) == 0
    assert "preprocessed 5 micrograph(s)" in capsys.readouterr().out
    image = read_image(out / "mic_0.mrc")
    assert image.data.shape == (32, 48)
    assert image.pixel_size == pytest.approx(3.0)  # true pixel size, unlike Topaz
    assert read_image(out / "small.mrc").data.shape == (24, 24)
    assert (out / "mic_0.png").exists()
    # Same numbers as the library functions on the same input.
    raw = read_image(mics / "mic_0.mrc").data
    expected, stats = normalize(downsample(raw, 2), sample=1)
    np.testing.assert_allclose(image.data, np.asarray(expected), atol=1e-5)
    meta = json.loads((out / "mic_0.metadata.json").read_text())
    assert set(meta) == {
        "mu",
        "std",
        "pi",
        "logp",
        "mus",
        "stds",
        "pis",
        "logps",
        "alpha",
        "beta",
        "sample",
    }
    assert meta["mu"] == pytest.approx(float(stats.mu), rel=1e-5)
    assert len(meta["logps"]) == 12


def test_preprocess_reports_bad_files_and_keeps_the_rest(
    mics: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    files = sorted(str(p) for p in mics.iterdir())
    assert main(["preprocess", "-s", "2", "--sample", "1", "-o", str(out), *files]) == 1
    err = capsys.readouterr().err
    assert "5 micrograph(s)" in err
    assert "FAILED broken:" in err
    assert "broken.mrc" in err
    assert "FAILED flat:" in err
    assert "constant" in err
    assert sorted(p.name for p in out.iterdir()) == [
        "mic_0.mrc",
        "mic_1.mrc",
        "mic_2.mrc",
        "mic_3.mrc",
        "small.mrc",
    ]


def test_rerun_skips_finished_and_overwrite_redoes(
    mics: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    argv = ["preprocess", "--affine", "-o", str(out), *good(mics)]
    assert main(argv) == 0
    stamp = (out / "mic_1.mrc").stat().st_mtime_ns
    (out / "mic_2.mrc").unlink()  # as if the first run was killed before mic_2 was written
    capsys.readouterr()
    assert main(argv) == 0
    assert "preprocessed 1 micrograph(s)" in capsys.readouterr().out
    assert (out / "mic_1.mrc").stat().st_mtime_ns == stamp
    assert (out / "mic_2.mrc").exists()
    assert main([*argv, "--overwrite"]) == 0
    assert "preprocessed 5 micrograph(s)" in capsys.readouterr().out
    # --affine: every output is a plain z-score.
    data = read_image(out / "mic_3.mrc").data
    assert abs(float(data.mean())) < 1e-5
    assert float(data.std()) == pytest.approx(1.0, abs=1e-5)
    assert not any(p.name.startswith(".jaxpick-tmp") for p in out.iterdir())


def test_seeded_subsampling_is_reproducible(mics: Path, tmp_path: Path) -> None:
    files = good(mics)[:2]
    for run in ("a", "b"):
        assert (
            main(["normalize", "--sample", "4", "--seed", "3", "-o", str(tmp_path / run), *files])
            == 0
        )
    a = read_image(tmp_path / "a" / "mic_0.mrc").data
    b = read_image(tmp_path / "b" / "mic_0.mrc").data
    np.testing.assert_array_equal(a, b)


def test_downsample_one_file_and_many(
    mics: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    single = tmp_path / "binned.mrc"
    assert main(["downsample", "-s", "4", "-o", str(single), str(mics / "mic_0.mrc")]) == 0
    image = read_image(single)
    assert image.data.shape == (16, 24)
    assert image.pixel_size == pytest.approx(6.0)
    raw = read_image(mics / "mic_0.mrc").data
    np.testing.assert_allclose(image.data, np.asarray(downsample(raw, 4)), atol=1e-5)
    # Downsampling alone keeps the mean (not normalised).
    assert float(image.data.mean()) == pytest.approx(float(raw.mean()), rel=1e-5)
    folder = tmp_path / "many"
    assert main(["downsample", "-s", "2", "-o", str(folder), *good(mics)]) == 0
    assert len(list(folder.glob("*.mrc"))) == 5


def test_bad_flags_are_one_line_errors(
    mics: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["preprocess", "-s", "0.5", "-o", str(tmp_path), *good(mics)]) == 1
    assert "scale must be >= 1" in capsys.readouterr().err
    assert main(["preprocess", "--format", "gif", "-o", str(tmp_path), *good(mics)]) == 1
    assert "format" in capsys.readouterr().err


def test_batches_shard_over_devices_with_the_same_result(mics: Path, tmp_path: Path) -> None:
    import jax

    from jaxpick.config import PreprocessConfig
    from jaxpick.preprocess import preprocess

    cpus = jax.devices("cpu")
    if len(cpus) < 2:
        pytest.skip("needs several (simulated) CPU devices")
    files = tuple(good(mics)[:4])
    base = dict(inputs=files, scale=2.0, sample=1)
    one = preprocess(PreprocessConfig(destdir=str(tmp_path / "one"), **base), progress=False)
    assert one.ok
    from jaxpick import preprocess as module

    run = module._compiled(module._numerics(PreprocessConfig(destdir="-", **base)), tuple(cpus[:2]))
    batch = np.stack([read_image(f).data for f in files])
    hashes = np.array([module.name_hash(Path(f).stem) for f in files], dtype=np.uint32)
    images, _ = run(batch, hashes)
    assert len(images.sharding.device_set) == 2
    for index, f in enumerate(files):
        expected = read_image(tmp_path / "one" / f"{Path(f).stem}.mrc").data
        np.testing.assert_allclose(np.asarray(images[index]), expected, atol=1e-5)
