"""Tiled denoising (Topaz parity of the 2-D and 3-D tilings, filters) and the streaming library.

Expected values come from ``tests/data/make_topaz_denoise_fixtures.py`` (Topaz 0.3.20). The
parity tests need the pretrained weights (``pip install --no-deps topaz-em``) and skip without
them; the library tests use a tiny U-Net checkpoint made here.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import mrcfile
import numpy as np
import pytest
from flax import nnx

from jaxpick.denoise import (
    DEFAULT_HALO,
    Denoise3dConfig,
    DenoiseConfig,
    denoise,
    denoise3d,
    output_path,
    output_path_3d,
)
from jaxpick.errors import ConfigError, FileFormatError
from jaxpick.inference.denoise import (
    cube_tiling,
    denoise_image,
    denoise_volume,
    fixed_tiling,
    gaussian_kernel,
    lowpass,
    matched_tiling,
    tiled_call,
    topaz_tiling,
)
from jaxpick.io.image import read_image, write_image
from jaxpick.io.mrc import read_mrc_header, write_mrc
from jaxpick.models.denoisers import pretrained_denoiser_path, resolve_denoiser, save_denoiser
from jaxpick.models.unet import DenoiserConfig, build_denoiser

DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="module")
def fixtures() -> dict[str, np.ndarray]:
    with np.load(DATA / "topaz_denoise.npz") as npz:
        return {k: npz[k] for k in npz.files}


def pretrained(name: str):
    try:
        pretrained_denoiser_path(name)
    except FileFormatError:
        pytest.skip("pretrained denoisers not installed: pip install --no-deps topaz-em")
    return resolve_denoiser(name)[0]


def relative_error(ours: np.ndarray, theirs: np.ndarray, sigma: float) -> float:
    return float(np.max(np.abs(np.asarray(ours) - theirs)) / sigma)


# --- tilings --------------------------------------------------------------------------------


def test_topaz_tiling_matches_topaz_loop() -> None:
    tiling = topaz_tiling((92, 68), 40, 20)
    assert tiling is not None
    assert tiling.axes[0].starts == (0, 20, 60)
    assert tiling.axes[0].sizes == (60, 72, 32)
    assert tiling.axes[1].starts == (0, 20)
    assert tiling.axes[1].sizes == (60, 48)
    assert len(tiling.window_shapes) == 6
    # Topaz tiles only when patch + padding is smaller than a side; -s < 1 is the whole image.
    assert topaz_tiling((1524, 1524), 1024, 500) is None
    assert topaz_tiling((1525, 100), 1024, 500) is not None
    assert topaz_tiling((4096, 4096), 0, 500) is None
    with pytest.raises(ConfigError):
        topaz_tiling((64, 64), 16, -1)


@pytest.mark.parametrize("shape", [(4096, 4096), (3838, 3710), (1600, 1600), (5760, 4092)])
@pytest.mark.parametrize("halo", [0, 64, DEFAULT_HALO, 600])
def test_matched_tiling_keeps_topaz_structure(shape: tuple[int, int], halo: int) -> None:
    topaz = topaz_tiling(shape, 1024, 500)
    ours = matched_tiling(shape, 1024, 500, halo=halo, multiple=32)
    assert topaz is not None
    assert ours is not None
    for t, o in zip(topaz.axes, ours.axes, strict=True):
        assert t.tile == o.tile
        for r in range(t.count):
            ts, te = t.starts[r], t.starts[r] + t.sizes[r]
            os_, oe = o.starts[r], o.starts[r] + o.sizes[r]
            lo, hi = r * t.tile, min(t.length, (r + 1) * t.tile)
            assert ts <= os_
            assert oe <= te
            assert os_ % 32 == ts % 32
            assert oe % 32 == te % 32
            assert (os_ == 0) == (ts == 0)
            assert (oe == t.length) == (te == t.length)
            assert os_ <= max(0, lo - min(halo, 500))
            assert oe >= min(t.length, hi + min(halo, 500))
    assert ours.work <= topaz.work


def test_fixed_and_cube_tilings() -> None:
    t = fixed_tiling((4096, 3838), 2048, 128)
    assert t is not None
    assert len(t.window_shapes) == 1
    assert fixed_tiling((500, 300), 400, 64) is None
    c = cube_tiling((20, 24, 18), 12, 10)
    assert c is not None
    assert c.window_shapes == ((32, 32, 32),)
    assert c.axes[0].starts == (-10, 2)
    assert c.axes[0].pad_low == 10
    assert cube_tiling((20, 24, 18), 0, 10) is None


@pytest.mark.parametrize(
    "tiling",
    [
        topaz_tiling((70, 53), 16, 8),
        matched_tiling((70, 53), 16, 20, halo=6, multiple=4),
        fixed_tiling((70, 53), 24, 5),
        None,
    ],
)
@pytest.mark.parametrize("batch_size", [1, 3])
def test_identity_network_gives_back_the_image(tiling, batch_size: int) -> None:
    x = jax.random.normal(jax.random.key(0), (70, 53)) * 2 + 1
    y = tiled_call(lambda b: b, x, tiling, batch_size=batch_size)
    np.testing.assert_allclose(np.asarray(y), np.asarray(x), atol=1e-5)


def test_tile_batches_do_not_change_results() -> None:
    model = build_denoiser(DenoiserConfig(arch="fcnn", width=3, base_kernel=3), rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (45, 38))
    tiling = topaz_tiling(x.shape, 12, 6)
    one = jax.jit(lambda x: tiled_call(model, x, tiling, batch_size=1))(x)
    many = jax.jit(lambda x: tiled_call(model, x, tiling, batch_size=4))(x)
    np.testing.assert_allclose(np.asarray(one), np.asarray(many), atol=1e-6)


# --- Topaz parity ---------------------------------------------------------------------------


def test_tiled_2d_matches_topaz(fixtures: dict[str, np.ndarray]) -> None:
    net = pretrained("unet")
    image = fixtures["image"].astype(np.float32)
    tiling = topaz_tiling(image.shape, 40, 20)
    ours = jax.jit(lambda x: denoise_image([net], x, tiling=tiling))(image)
    assert relative_error(ours, fixtures["tiled_unet"], float(image.std())) <= 1e-3


def test_filters_cutoff_normalize_and_averaging_match_topaz(
    fixtures: dict[str, np.ndarray],
) -> None:
    nets = [pretrained("unet-small"), pretrained("affine")]
    image = fixtures["image"].astype(np.float32)
    ours = denoise_image(nets, image, pixel_cutoff=2.5, gaussian=1.5, normalize=True)
    assert relative_error(ours, fixtures["combo"], 1.0) <= 1e-3


def test_lowpass_matches_topaz_function(fixtures: dict[str, np.ndarray]) -> None:
    x = fixtures["net_input"].astype(np.float32)
    assert relative_error(lowpass(jnp.asarray(x), 2.5), fixtures["lowpass"], 1.0) <= 1e-5
    assert lowpass(jnp.asarray(x), 1.0) is not None
    spectrum = np.abs(np.fft.fft2(np.asarray(lowpass(jnp.asarray(x), 4.0))))
    freq = np.abs(np.fft.fftfreq(40))[:, None] > 0.125
    assert spectrum[np.broadcast_to(freq, spectrum.shape)].max() < 1e-3


def test_gaussian_kernel_is_topaz_width() -> None:
    g = gaussian_kernel(1.5)
    assert g.shape == (1 + 2 * 8,)
    assert abs(float(g.sum()) - 1) < 1e-6


@pytest.mark.parametrize(("name", "patch", "padding"), [("10a", 12, 10), ("20a", 16, 8)])
def test_tiled_3d_matches_topaz(
    name: str, patch: int, padding: int, fixtures: dict[str, np.ndarray]
) -> None:
    net = pretrained(f"unet-3d-{name}")
    volume = fixtures["volume"].astype(np.float32)
    tiling = cube_tiling(volume.shape, patch, padding)
    ours = jax.jit(lambda v: denoise_volume(net, v, tiling=tiling))(volume)
    assert relative_error(ours, fixtures[f"tiled3d_{name}"], float(volume.std())) <= 1e-4


@pytest.mark.slow
def test_default_tiling_is_close_to_topaz_default(
    real_data: Path, fixtures: dict[str, np.ndarray]
) -> None:
    """jaxpick's default tiling vs Topaz's default command on a real 1600² micrograph crop."""
    path = real_data / "mrcfile_testdata" / "epu2.9_example.mrc"
    if not path.exists() or "real_samples" not in fixtures:
        pytest.skip(f"{path} or its fixture is missing")
    net = pretrained("unet")
    y0, x0 = (int(v) for v in fixtures["real_origin"])
    crop = read_image(path).data[y0 : y0 + 1600, x0 : x0 + 1600]
    assert abs(float(crop.std()) - float(fixtures["real_std"])) < 1e-3 * float(crop.std())
    tiling = matched_tiling(crop.shape, 1024, 500, halo=DEFAULT_HALO, multiple=32)
    assert tiling is not None
    assert tiling.work < 0.6 * topaz_tiling(crop.shape, 1024, 500).work
    ours = np.asarray(jax.jit(lambda x: denoise_image([net], x, tiling=tiling))(crop))
    rows, cols = fixtures["real_rows"], fixtures["real_cols"]
    error = relative_error(ours[np.ix_(rows, cols)], fixtures["real_samples"], float(crop.std()))
    assert error <= 1e-2


# --- the streaming library ------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = build_denoiser(
        DenoiserConfig(arch="unet", width=4, depth=2, base_kernel=3, top_kernel=3, top_widths=(4,)),
        rngs=nnx.Rngs(0),
    )
    return save_denoiser(tmp_path_factory.mktemp("ckpt") / "tiny", model)


def micrographs(folder: Path, count: int = 2, shape: tuple[int, int] = (40, 36)) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        path = folder / f"mic{i}.mrc"
        write_mrc(path, (rng.standard_normal(shape) * 5 + 100).astype(np.float32), voxel_size=1.5)
        paths.append(str(path))
    return paths


def test_output_names_follow_topaz() -> None:
    assert output_path(DenoiseConfig(), "a/b.c.mrc") == Path("a/b.c.denoised.mrc")
    assert output_path(DenoiseConfig(suffix="_x", format="tiff"), "b.mrc") == Path("b_x.tiff")
    assert output_path(DenoiseConfig(output="o"), "a/b.mrc") == Path("o/b.mrc")
    assert output_path_3d(Denoise3dConfig(suffix="_d"), "t.rec") == Path("t_d.rec")
    assert output_path_3d(Denoise3dConfig(output="o", suffix="_d"), "x/t.rec") == Path("o/t_d.rec")


def test_denoise_streams_and_skips_done(tmp_path: Path, tiny_checkpoint: Path) -> None:
    paths = micrographs(tmp_path / "in", 3)
    config = DenoiseConfig(
        inputs=tuple(paths),
        output=str(tmp_path / "out"),
        models=(str(tiny_checkpoint),),
        device=-1,
        patch_size=16,
        patch_padding=8,
    )
    report = denoise(config, progress=False)
    assert report.ok
    assert sorted(report.done) == sorted(paths)
    out = read_image(tmp_path / "out" / "mic0.mrc")
    assert out.pixel_size == pytest.approx(1.5)
    with mrcfile.open(tmp_path / "out" / "mic0.mrc", header_only=True) as f:
        assert float(f.header.dmean) == pytest.approx(float(out.data.mean()), rel=1e-5)
        assert float(f.header.rms) == pytest.approx(float(out.data.std()), rel=1e-4)
    # Restored scale: about the input's mean and std.
    assert abs(float(out.data.mean()) - 100) < 2
    again = denoise(config, progress=False)
    assert again.skipped == paths
    assert not again.done


def test_denoise_matches_the_single_image_function(tmp_path: Path, tiny_checkpoint: Path) -> None:
    (path,) = micrographs(tmp_path, 1, (50, 44))
    config = DenoiseConfig(
        inputs=(path,),
        models=(str(tiny_checkpoint), "none"),
        device=-1,
        gaussian=1.0,
        normalize=True,
        patch_size=20,
        patch_padding=6,
    )
    denoise(config, progress=False)
    written = read_image(output_path(config, path)).data
    model = resolve_denoiser(tiny_checkpoint)[0]
    expected = denoise_image(
        [model, None],
        read_image(path).data,
        tiling=topaz_tiling((50, 44), 20, 6),
        gaussian=1.0,
        normalize=True,
    )
    np.testing.assert_allclose(written, np.asarray(expected), atol=1e-5)


def test_denoise_reports_bad_files_by_name(tmp_path: Path, tiny_checkpoint: Path) -> None:
    paths = micrographs(tmp_path, 1)
    bad = tmp_path / "broken.mrc"
    bad.write_bytes(b"not an mrc file at all" * 10)
    config = DenoiseConfig(inputs=(str(bad), *paths), models=(str(tiny_checkpoint),), device=-1)
    report = denoise(config, progress=False)
    assert report.done == paths
    assert str(bad) in report.failed
    assert "broken.mrc" in report.failed[str(bad)]


def test_denoise_training_data_missing_and_bad_options(tmp_path: Path) -> None:
    from jaxpick.errors import JaxpickError

    # -a/-b train first (jaxpick.train.denoise): missing training folders are named.
    with pytest.raises(JaxpickError, match="A"):
        denoise(DenoiseConfig(inputs=("a.mrc",), dir_a="A", dir_b="B"))
    with pytest.raises(JaxpickError, match="e"):
        denoise3d(Denoise3dConfig(inputs=("t.mrc",), even_train_path="e", odd_train_path="o"))
    with pytest.raises(ConfigError, match="no micrographs"):
        denoise(DenoiseConfig())
    with pytest.raises(ConfigError, match="format"):
        DenoiseConfig(format="gif")
    with pytest.raises(ConfigError, match="inv-gaussian"):
        DenoiseConfig(inv_gaussian=1.0)


def test_denoise_stack(tmp_path: Path, tiny_checkpoint: Path) -> None:
    rng = np.random.default_rng(1)
    stack = (rng.standard_normal((3, 32, 28)) + 5).astype(np.float32)
    source = tmp_path / "stack.mrcs"
    write_mrc(source, stack, voxel_size=2.0)
    out = tmp_path / "out.mrcs"
    config = DenoiseConfig(
        inputs=(str(source),),
        output=str(out),
        stack=True,
        models=(str(tiny_checkpoint),),
        device=-1,
    )
    assert denoise(config, progress=False).ok
    result = read_image(out)
    assert result.data.shape == (3, 32, 28)
    assert result.pixel_size == pytest.approx(2.0)
    model = resolve_denoiser(tiny_checkpoint)[0]
    np.testing.assert_allclose(
        result.data[1], np.asarray(denoise_image([model], stack[1])), atol=1e-5
    )


def test_denoise3d_streams_volumes(tmp_path: Path) -> None:
    model = build_denoiser(
        DenoiserConfig(
            arch="unet", ndim=3, width=2, depth=2, base_kernel=3, top_kernel=3, top_widths=(4,)
        ),
        rngs=nnx.Rngs(0),
    )
    checkpoint = save_denoiser(tmp_path / "tiny3d", model)
    rng = np.random.default_rng(2)
    volume = (rng.standard_normal((10, 12, 9)) * 2 + 3).astype(np.float32)
    source = tmp_path / "tomo.rec"
    write_mrc(source, volume, voxel_size=(4.0, 4.0, 5.0))
    config = Denoise3dConfig(
        inputs=(str(source),), model=str(checkpoint), patch_size=4, patch_padding=2, device=-1
    )
    assert denoise3d(config, progress=False).ok
    out = tmp_path / "tomo.denoised.rec"
    header = read_mrc_header(out)
    assert header.voxel_size == pytest.approx((4.0, 4.0, 5.0))
    expected = denoise_volume(model, volume, tiling=cube_tiling(volume.shape, 4, 2))
    np.testing.assert_allclose(read_image(out).data, np.asarray(expected), atol=1e-5)
    with pytest.raises(ConfigError, match="2-D denoiser"):
        denoise3d(Denoise3dConfig(inputs=(str(source),), model="unet", device=-1))


def test_too_small_windows_fail_by_name(tmp_path: Path, tiny_checkpoint: Path) -> None:
    paths = micrographs(tmp_path, 1, (40, 36))
    config = DenoiseConfig(
        inputs=tuple(paths),
        models=(str(tiny_checkpoint),),
        device=-1,
        patch_size=2,
        patch_padding=0,
    )
    report = denoise(config, progress=False)
    assert paths[0] in report.failed
    assert "too small" in report.failed[paths[0]]


def test_write_formats(tmp_path: Path, tiny_checkpoint: Path) -> None:
    paths = micrographs(tmp_path, 1)
    for fmt in ("tiff", "png"):
        config = DenoiseConfig(
            inputs=tuple(paths),
            models=(str(tiny_checkpoint),),
            device=-1,
            format=fmt,
            output=str(tmp_path / fmt),
        )
        assert denoise(config, progress=False).ok
        written = read_image(tmp_path / fmt / f"mic0.{fmt}")
        assert written.data.shape == (40, 36)
    assert write_image is not None
