"""``jaxpick denoise`` / ``denoise3d`` command lines on tiny synthetic files.

A tiny U-Net checkpoint made here stands in for Topaz's weights, so these run without topaz-em
(except the test of the "not installed" message, which fakes its absence).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from types import ModuleType

import mrcfile
import numpy as np
import pytest
from flax import nnx
from PIL import Image as PILImage

from jaxpick.cli import denoise as denoise_cli
from jaxpick.cli import denoise3d as denoise3d_cli
from jaxpick.errors import FileFormatError
from jaxpick.io.image import read_image
from jaxpick.io.mrc import write_mrc
from jaxpick.models.denoisers import save_denoiser
from jaxpick.models.unet import DenoiserConfig, build_denoiser


def run(module: ModuleType, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(fromfile_prefix_chars="@")
    module.add_args(parser)
    return module.main(parser.parse_args(argv))


def parse(module: ModuleType, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    module.add_args(parser)
    return parser.parse_args(argv)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> str:
    config = DenoiserConfig(
        arch="unet", width=4, depth=2, base_kernel=3, top_kernel=3, top_widths=(4,)
    )
    path = tmp_path_factory.mktemp("models") / "tiny"
    return str(save_denoiser(path, build_denoiser(config, rngs=nnx.Rngs(0))))


@pytest.fixture
def mics(tmp_path: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(2):
        path = tmp_path / "raw" / f"m{i}.mrc"
        path.parent.mkdir(exist_ok=True)
        write_mrc(path, (rng.standard_normal((36, 40)) * 3 + 50).astype(np.float32), voxel_size=3.2)
        paths.append(path)
    return paths


def test_defaults_follow_topaz() -> None:
    args = parse(denoise_cli, ["a.mrc"])
    assert args.model == ["unet"]
    assert args.device == 0
    assert args.format_ == "mrc"
    assert args.patch_size is None
    assert args.patch_padding is None
    assert (args.batch_size, args.num_epochs, args.crop, args.lr) == (4, 100, 800, 0.001)
    assert (args.optim, args.criteria, args.holdout, args.lowpass) == ("adagrad", "L2", 0.1, 1)
    args3 = parse(denoise3d_cli, ["t.mrc"])
    assert (args3.model, args3.device, args3.patch_size, args3.patch_padding) == (
        "unet-3d",
        -2,
        96,
        48,
    )
    assert (args3.N_train, args3.N_test, args3.batch_size, args3.num_epochs) == (1000, 200, 10, 500)
    assert denoise_cli.__doc__
    assert denoise3d_cli.__doc__


def test_mrc_next_to_inputs_then_skip(mics: list[Path], model: str) -> None:
    argv = [*map(str, mics), "-m", model, "-d", "-1"]
    assert run(denoise_cli, argv) == 0
    out = mics[0].with_name("m0.denoised.mrc")
    image = read_image(out)
    assert image.data.shape == (36, 40)
    assert image.pixel_size == pytest.approx(3.2)
    with mrcfile.open(out, header_only=True) as f:  # true statistics, not the input's
        assert float(f.header.dmax) == pytest.approx(float(image.data.max()))
        assert float(f.header.dmean) == pytest.approx(float(image.data.mean()), rel=1e-5)
    before = out.stat().st_mtime_ns
    assert run(denoise_cli, argv) == 0  # skipped: outputs exist
    assert out.stat().st_mtime_ns == before
    assert run(denoise_cli, [*argv, "--overwrite", "--suffix", "_x"]) == 0
    assert mics[0].with_name("m0_x.mrc").exists()


def test_output_folder_tiff_png_and_explicit_tiling(
    mics: list[Path], model: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    common = [*map(str, mics), "-m", model, "-d", "-1", "-o", str(out), "-s", "16", "-p", "8"]
    assert run(denoise_cli, [*common, "--format", "tiff"]) == 0
    assert read_image(out / "m1.tiff").data.shape == (36, 40)
    assert run(denoise_cli, [*common, "--format", "png", "--suffix", "_d"]) == 0
    with PILImage.open(out / "m0_d.png") as png:
        assert png.mode == "L"
        assert png.size == (40, 36)


def test_stack(tmp_path: Path, model: str) -> None:
    stack = tmp_path / "s.mrcs"
    write_mrc(stack, np.random.default_rng(1).standard_normal((4, 32, 32)).astype(np.float32))
    out = tmp_path / "d.mrcs"
    assert run(denoise_cli, [str(stack), "--stack", "-o", str(out), "-m", model, "-d", "-1"]) == 0
    assert read_image(out).data.shape == (4, 32, 32)


def test_bad_input_is_named_and_others_go_on(
    mics: list[Path], model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "raw" / "bad.mrc"
    bad.write_bytes(b"\x00" * 100)
    code = run(denoise_cli, [str(bad), *map(str, mics), "-m", model, "-d", "-1"])
    assert code == 1
    assert "bad.mrc" in capsys.readouterr().err
    assert mics[1].with_name("m1.denoised.mrc").exists()


def test_training_flags_reach_the_trainer(mics: list[Path]) -> None:
    from jaxpick.errors import JaxpickError

    args = parse(denoise_cli, ["-a", "A", "-b", "B", "--optim", "adam", "--criteria", "L1"])
    assert (args.dir_a, args.optim, args.criteria, args.seed) == ("A", "adam", "L1", 0)
    with pytest.raises(JaxpickError, match="A"):  # the missing training folder is named
        denoise_cli.main(args)
    with pytest.raises(JaxpickError, match="even"):
        run(denoise3d_cli, ["-a", "even/", "-b", "odd/", "--N-train", "10"])


def test_train_then_denoise(mics: list[Path], model: str, tmp_path: Path) -> None:
    """Topaz's ``denoise -a A -b B ... inputs``: trains (here fine-tunes the tiny model for one
    epoch), saves the model, then denoises the inputs with it."""
    rng = np.random.default_rng(1)
    for half in ("even", "odd"):
        (tmp_path / half).mkdir()
    for i in range(3):
        clean = rng.standard_normal((48, 48)).astype(np.float32)
        for half in ("even", "odd"):
            noisy = clean + rng.standard_normal((48, 48)).astype(np.float32)
            write_mrc(tmp_path / half / f"p{i}.mrc", noisy)
    prefix = tmp_path / "models" / "n2n"
    common = ["-d", "-1", "-o", str(tmp_path / "out"), *map(str, mics)]
    argv = ["-a", str(tmp_path / "even"), "-b", str(tmp_path / "odd"), "-m", model]
    argv += ["--num-epochs", "1", "-c", "32", "--batch-size", "2", "--optim", "adam"]
    argv += ["--lr", "0.01", "--save-prefix", str(prefix), "--save-interval", "1", *common]
    assert run(denoise_cli, argv) == 0
    assert any(p.name.startswith("n2n") for p in prefix.parent.iterdir())  # model saved
    trained = [read_image(tmp_path / "out" / f"m{i}.mrc").data for i in range(2)]
    assert run(denoise_cli, ["-m", model, "--overwrite", *common]) == 0
    untrained = [read_image(tmp_path / "out" / f"m{i}.mrc").data for i in range(2)]
    for a, b in zip(trained, untrained, strict=True):
        assert a.shape == b.shape == (36, 40)
        assert np.all(np.isfinite(a))
        assert not np.allclose(a, b)  # the inputs went through the trained weights


def test_model_not_installed(monkeypatch: pytest.MonkeyPatch, mics: list[Path]) -> None:
    import jaxpick.models.denoisers as denoisers

    monkeypatch.setattr(denoisers, "topaz_package_dir", lambda: None)
    with pytest.raises(FileFormatError, match=r"pip install --no-deps topaz-em"):
        run(denoise_cli, [str(mics[0]), "-m", "unet", "-d", "-1"])


def test_denoise3d(tmp_path: Path) -> None:
    config = DenoiserConfig(
        arch="unet", ndim=3, width=2, depth=2, base_kernel=3, top_kernel=3, top_widths=(4,)
    )
    checkpoint = save_denoiser(tmp_path / "m3", build_denoiser(config, rngs=nnx.Rngs(0)))
    volume = tmp_path / "v.mrc"
    write_mrc(volume, np.random.default_rng(2).standard_normal((9, 10, 11)).astype(np.float32))
    argv = [str(volume), "-m", str(checkpoint), "-s", "4", "-p", "2", "-d", "-1", "-o", "o"]
    out_dir = tmp_path / "o"
    assert run(denoise3d_cli, [*argv[:-1], str(out_dir), "--suffix", "_d"]) == 0
    assert read_image(out_dir / "v_d.mrc").data.shape == (9, 10, 11)
