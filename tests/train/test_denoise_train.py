"""Noise2Noise training on tiny synthetic pairs: the losses and L0 schedule, learning (val loss
falls, PSNR rises), determinism, exact resume, data parallelism, checkpoints that ``jaxpick
denoise`` loads, movie stacks split into even/odd sums, 3-D cube sampling and training, and the
errors for bad pairs."""

from __future__ import annotations

import dataclasses
import io
import math
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpick.errors import ConfigError, FileFormatError
from jaxpick.io.image import read_image, write_image
from jaxpick.losses.denoise import criterion_loss, l0_gamma, l0_loss, l1_loss, l2_loss
from jaxpick.models.unet import DenoiserConfig
from jaxpick.train.denoise import (
    Noise2NoiseConfig,
    Noise2NoiseResult,
    augment_pair,
    find_pairs,
    load_pairs,
    make_denoise_optimizer,
    sample_tile_corners,
    split_movie,
    standardize,
    train_noise2noise,
)

SHAPE = (64, 64)
NOISE = 0.5
ARCH = DenoiserConfig(arch="unet", width=4, depth=2, base_kernel=3, top_kernel=3, top_widths=(4,))
ARCH_3D = DenoiserConfig(arch="fcnn", ndim=3, width=2, base_kernel=3)  # compiles fast


# --- losses ----------------------------------------------------------------------------------


def test_losses_match_numpy() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(2, 3, 5, 6)).astype(np.float32)
    d = x - y
    np.testing.assert_allclose(l2_loss(x, y), np.mean(d**2), rtol=1e-6)
    np.testing.assert_allclose(l1_loss(x, y), np.mean(np.abs(d)), rtol=1e-6)
    np.testing.assert_allclose(l0_loss(x, y, 0.7), np.mean((np.abs(d) + 1e-8) ** 0.7), rtol=1e-6)
    np.testing.assert_allclose(l2_loss(x, y, axis=(1, 2)), np.mean(d**2, axis=(1, 2)), rtol=1e-6)
    np.testing.assert_allclose(criterion_loss("L0", x, y, gamma=2.0), l2_loss(x, y), rtol=1e-5)
    assert l2_loss(x, y).dtype == jnp.float32
    with pytest.raises(ValueError, match="L3"):
        criterion_loss("L3", x, y)
    with pytest.raises(ValueError, match="same shape"):
        l2_loss(x, y[:, :2])


@pytest.mark.parametrize("num_epochs", [1, 3, 7, 100])
def test_l0_schedule_is_topaz(num_epochs: int) -> None:
    # Topaz's train_model: gamma = 2 - (epoch-1)*2/num_epochs for the 0-based epoch.
    expected = [2 - (epoch - 1) * 2 / num_epochs for epoch in range(num_epochs)]
    assert [l0_gamma(epoch, num_epochs) for epoch in range(num_epochs)] == expected
    traced = jax.jit(l0_gamma, static_argnums=1)(jnp.arange(num_epochs), num_epochs)
    assert traced.dtype == jnp.float32
    np.testing.assert_allclose(traced, expected, rtol=0, atol=1e-6)
    assert l0_gamma(0, num_epochs) > 2


def test_optimizers_follow_pytorch() -> None:
    params = {"w": jnp.array([1.0, -2.0, 0.0])}
    grads = {"w": jnp.array([0.5, -1.0, 0.0])}
    tx = make_denoise_optimizer("adagrad", 0.1)
    state = tx.init(params)
    updates, state = tx.update(grads, state)
    updates, state = tx.update(grads, state)  # second step: sum = 2 g^2
    g = np.array([0.5, -1.0, 0.0])
    np.testing.assert_allclose(
        updates["w"], -0.1 * g / (np.sqrt(2 * g * g) + 1e-10), rtol=1e-6, atol=1e-12
    )
    # SGD (Nesterov 0.9): first update -lr * (g + 0.9 g).
    tx = make_denoise_optimizer("sgd", 0.1)
    updates, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(updates["w"], -0.1 * 1.9 * g, rtol=1e-6)
    with pytest.raises(ConfigError, match="rmsprop"):
        make_denoise_optimizer("rmsprop", 0.1)


def test_augment_pair_moves_both_alike(key: jax.Array) -> None:
    x = jnp.arange(36.0).reshape(6, 6)
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(24))
    many = jax.jit(jax.vmap(lambda k: augment_pair(k, x, x + 100.0, swap=True)))(keys)
    seen = set()
    for a, b in zip(*many, strict=True):
        assert sorted(np.asarray(a).ravel() % 100) == sorted(np.asarray(x).ravel())
        np.testing.assert_array_equal(np.asarray(a) % 100, np.asarray(b) % 100)
        seen.add((float(a[0, 0] % 100), bool(a[0, 0] >= 100)))
    assert len(seen) > 4  # corners land anywhere; swaps happen
    v = jnp.arange(64.0).reshape(4, 4, 4)
    a, b = jax.jit(lambda k: augment_pair(k, v, -v, swap=False))(key)
    np.testing.assert_array_equal(a, -b)  # no swap in 3-D


@pytest.fixture
def key() -> jax.Array:
    return jax.random.key(0)


def test_crops_of_mixed_sizes_stay_inside_each_image(key: jax.Array) -> None:
    from jaxpick.train.denoise import PairData, StepPlan, _draw

    shapes = np.array([[20, 30], [40, 24]], np.int32)
    a = np.zeros((2, 40, 30), np.float32)
    for i, (h, w) in enumerate(shapes):
        a[i, :h, :w] = 1.0 + i  # padding stays 0
    items = np.array([[0, 0, 0], [1, 0, 0]] * 16, np.int32)
    data = PairData(jnp.asarray(a), jnp.asarray(-a), jnp.asarray(shapes), items, items)
    plan = StepPlan(
        ndim=2, tile=16, batch_size=32, padded_batch=32, num_items=2, steps_per_epoch=1,
        num_epochs=1, criteria="L2", optim="adam", lr=1e-3, random_origin=True, swap=True,
    )  # fmt: skip
    keys = jax.random.split(key, len(items))
    x, y = jax.jit(jax.vmap(lambda k, item: _draw(k, item, data, plan)))(keys, jnp.asarray(items))
    expected = 1.0 + items[:, 0]
    np.testing.assert_array_equal(np.abs(x).min(axis=(1, 2)), expected)
    np.testing.assert_array_equal(np.abs(x).max(axis=(1, 2)), expected)
    np.testing.assert_array_equal(x, -y)


# --- data --------------------------------------------------------------------------------------


def _smooth(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    grids = np.indices(shape)
    image = np.zeros(shape)
    for _ in range(12):
        centre = [rng.uniform(0, n) for n in shape]
        sigma = rng.uniform(3, 8)
        r2 = sum((g - c) ** 2 for g, c in zip(grids, centre, strict=True))
        image += rng.choice([-1.0, 1.0]) * np.exp(-r2 / (2 * sigma**2))
    return image.astype(np.float32)


def _pairs(folder: Path, num: int = 6, seed: int = 0, shape: tuple[int, ...] = SHAPE) -> Path:
    rng = np.random.default_rng(seed)
    for kind in ("a", "b", "clean"):
        (folder / kind).mkdir(parents=True, exist_ok=True)
    for i in range(num):
        clean = _smooth(rng, shape)
        write_image(folder / "clean" / f"m{i}.mrc", clean)
        for kind in ("a", "b"):
            noisy = clean + rng.normal(0, NOISE, shape).astype(np.float32)
            write_image(folder / kind / f"m{i}.mrc", noisy)
    return folder


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _pairs(tmp_path_factory.mktemp("pairs"))


def _config(root: Path, **changes: object) -> Noise2NoiseConfig:
    base = Noise2NoiseConfig(
        dir_a=str(root / "a"),
        dir_b=str(root / "b"),
        model="none",
        arch=ARCH,
        crop=48,
        batch_size=2,
        num_epochs=6,
        optim="adam",
        lr=3e-3,
        holdout=0.34,
        device=-1,
    )
    return dataclasses.replace(base, **changes)


def _train(config: Noise2NoiseConfig, **kwargs: object) -> Noise2NoiseResult:
    return train_noise2noise(config, progress=False, log=io.StringIO(), **kwargs)  # type: ignore[arg-type]


def _params(model: object) -> list[np.ndarray]:
    from flax import nnx

    return [np.asarray(x) for x in jax.tree.leaves(nnx.state(model, nnx.Param))]  # type: ignore[arg-type]


def test_standardize_and_cutoff() -> None:
    x = np.array([[0.0, 1.0], [2.0, 13.0]], np.float32)
    z = standardize(x)
    np.testing.assert_allclose([z.mean(), z.std()], [0.0, 1.0], atol=1e-6)
    cut = standardize(x, cutoff=1.5)
    assert cut[1, 1] == 0
    assert cut[0, 0] == z[0, 0]
    with pytest.raises(FileFormatError, match="flat.mrc.*constant"):
        standardize(np.ones((4, 4)), source="flat.mrc")


def test_pairs_are_matched_and_checked(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    image = np.random.default_rng(0).normal(size=(40, 40)).astype(np.float32)
    for folder in (a, b):
        write_image(folder / "x.mrc", image)
    assert [n for n, _, _ in find_pairs(a, b)] == ["x"]
    write_image(a / "lonely.mrc", image)
    with pytest.raises(FileFormatError, match=r"lonely\.mrc.*no partner.*b/lonely\.mrc"):
        find_pairs(a, b)
    (a / "lonely.mrc").unlink()
    write_image(b / "y.mrc", image)
    write_image(a / "y.mrc", image[:, :30])
    config = Noise2NoiseConfig(dir_a=str(a), dir_b=str(b), crop=32)
    with pytest.raises(FileFormatError, match=r"a/y\.mrc.*\(40, 30\).*b/y\.mrc.*\(40, 40\)"):
        load_pairs(config)
    with pytest.raises(FileFormatError, match="no such"):
        find_pairs(tmp_path / "missing", b)
    with pytest.raises(ConfigError, match="-a was given without -b"):
        Noise2NoiseConfig(dir_a=str(a))
    with pytest.raises(ConfigError, match="no training data"):
        Noise2NoiseConfig()
    with pytest.raises(ConfigError, match="resume needs save_prefix"):
        Noise2NoiseConfig(dir_a=str(a), dir_b=str(b), resume=True)


def test_crop_larger_than_an_image_names_it(pairs: Path) -> None:
    with pytest.raises(ConfigError, match=r"crop 65 is larger than image 'm0'"):
        _train(_config(pairs, crop=65))


def test_movie_stacks_split_into_even_and_odd_sums(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    frames = rng.normal(size=(5, 48, 40)).astype(np.float32)
    movies = tmp_path / "movies"
    movies.mkdir()
    write_image(movies / "mov1.mrcs", frames)
    write_image(movies / "mov2.tif", frames[:4] * 2)
    even, odd = split_movie(movies / "mov1.mrcs")
    np.testing.assert_allclose(even, frames[0] + frames[2] + frames[4], rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(odd, frames[1] + frames[3], rtol=1e-6, atol=1e-5)
    loaded = load_pairs(Noise2NoiseConfig(movies=(str(movies),)))
    assert loaded.names == ("mov1", "mov2")
    np.testing.assert_allclose(loaded.a[0], standardize(even), atol=1e-5)
    np.testing.assert_allclose(loaded.b[1], standardize(2 * (frames[1] + frames[3])), atol=1e-5)
    write_image(movies / "single.mrc", frames[0])
    with pytest.raises(FileFormatError, match=r"single\.mrc.*at least 2 frames"):
        load_pairs(Noise2NoiseConfig(movies=(str(movies),)))


# --- training ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(
    pairs: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Noise2NoiseResult, Path]:
    prefix = tmp_path_factory.mktemp("ckpt") / "n2n"
    result = _train(_config(pairs, save_prefix=str(prefix), save_interval=1))
    return result, prefix


def _mse(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean((np.asarray(x, np.float64) - y) ** 2))


def test_training_learns_to_denoise(
    trained: tuple[Noise2NoiseResult, Path], pairs: Path, tmp_path: Path
) -> None:
    from jaxpick.denoise import DenoiseConfig, denoise

    result, prefix = trained
    rows = result.history
    assert [r["epoch"] for r in rows] == list(range(1, 7))
    assert rows[-1]["val_loss"] < 0.8 * rows[0]["val_loss"]
    assert all(math.isfinite(r["train_loss"]) for r in rows)
    assert len(result.val_names) == 2
    assert len(result.train_names) == 4
    assert not set(result.train_names) & set(result.val_names)
    # Checkpoints every epoch; the last one is the final model and jaxpick denoise loads it.
    assert result.checkpoints == [Path(f"{prefix}_epoch{e}") for e in range(1, 7)]
    final = result.last_checkpoint
    assert final is not None
    report = denoise(
        DenoiseConfig(
            inputs=(str(pairs / "a" / "m0.mrc"),),
            output=str(tmp_path),
            models=(str(final),),
            patch_size=0,
            device=-1,
        ),
        progress=False,
    )
    assert report.ok
    clean = read_image(pairs / "clean" / "m0.mrc").data
    noisy = read_image(pairs / "a" / "m0.mrc").data
    denoised = read_image(tmp_path / "m0.mrc").data
    gain = 10 * math.log10(_mse(noisy, clean) / _mse(denoised, clean))
    assert gain > 3.0, gain
    # Better than a flat image too (which a network that only learnt the mean would give).
    assert _mse(denoised, clean) < 0.5 * _mse(np.full_like(clean, noisy.mean()), clean)


def test_same_seed_same_model(trained: tuple[Noise2NoiseResult, Path], pairs: Path) -> None:
    result, _ = trained
    again = _train(_config(pairs))
    for x, y in zip(_params(result.model), _params(again.model), strict=True):
        np.testing.assert_array_equal(x, y)
    assert [r["val_loss"] for r in again.history] == [r["val_loss"] for r in result.history]


def test_resume_equals_uninterrupted(
    trained: tuple[Noise2NoiseResult, Path], pairs: Path, tmp_path: Path
) -> None:
    result, prefix = trained
    copy = tmp_path / "n2n"
    for epoch in (1, 2, 3):  # "interrupted" after epoch 3
        shutil.copytree(f"{prefix}_epoch{epoch}", f"{copy}_epoch{epoch}")
    log = io.StringIO()
    resumed = train_noise2noise(
        _config(pairs, save_prefix=str(copy), save_interval=1, resume=True),
        progress=False,
        log=log,
    )
    assert "resuming after epoch 3" in log.getvalue()
    assert [r["epoch"] for r in resumed.history] == list(range(1, 7))
    assert resumed.checkpoints == [Path(f"{copy}_epoch{e}") for e in (4, 5, 6)]
    for x, y in zip(_params(result.model), _params(resumed.model), strict=True):
        np.testing.assert_array_equal(x, y)
    with pytest.raises(ConfigError, match=r"other settings \(lr\)"):
        _train(_config(pairs, save_prefix=str(copy), resume=True, lr=1e-2))


def test_four_devices_equal_one(trained: tuple[Noise2NoiseResult, Path], pairs: Path) -> None:
    devices = jax.devices()
    if len(devices) < 4:
        pytest.skip("needs 4 (simulated) devices")
    one, _ = trained
    # Batches of 2 on 4 devices: two masked slots per step.
    four = _train(_config(pairs), devices=devices[:4])
    for x, y in zip(_params(one.model), _params(four.model), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        [r["val_loss"] for r in one.history], [r["val_loss"] for r in four.history], rtol=1e-4
    )


# --- 3-D -----------------------------------------------------------------------------------------


def test_cube_sampling_keeps_train_and_validation_apart() -> None:
    shape, patch = (32, 40, 36), 8
    for seed in range(5):
        train, val = sample_tile_corners(np.random.default_rng(seed), shape, patch, 300, 50)
        assert train.shape == (300, 3)
        assert val.shape == (50, 3)
        for corners in (train, val):
            assert np.all(corners >= 0)
            assert np.all(corners + patch <= np.array(shape))
        # No voxel in a training and a validation cube: separated by a cube in some axis.
        gap = np.abs(train[:, None, :] - val[None, :, :])
        assert np.all(np.any(gap >= patch, axis=-1))
    with pytest.raises(ConfigError, match=r"tomo.*too small"):
        sample_tile_corners(np.random.default_rng(0), (6, 40, 40), 8, 10, 10, source="tomo")


def test_3d_training_runs(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    for kind in ("even", "odd"):
        (tmp_path / kind).mkdir()
    clean = _smooth(rng, (24, 32, 32))
    for kind in ("even", "odd"):
        noisy = clean + rng.normal(0, NOISE, clean.shape).astype(np.float32)
        write_image(tmp_path / kind / "tomo.mrc", noisy)
    config = Noise2NoiseConfig(
        dir_a=str(tmp_path / "even"),
        dir_b=str(tmp_path / "odd"),
        ndim=3,
        model="none",
        arch=ARCH_3D,
        patch_size=8,
        n_train=6,
        n_test=4,
        batch_size=3,
        num_epochs=2,
        criteria="L0",
        optim="adagrad",
        lr=1e-2,
        device=-1,
    )
    result = _train(config)
    assert [r["gamma"] for r in result.history] == [2 + 2 / 2, 2.0]
    assert all(math.isfinite(r["val_loss"]) for r in result.history)
    assert result.config.ndim == 3
    with pytest.raises(ConfigError, match="2-D"):
        _train(dataclasses.replace(config, model="none", arch="unet"))


def test_configs_from_the_denoise_commands() -> None:
    from jaxpick.denoise import Denoise3dConfig, DenoiseConfig

    two = Noise2NoiseConfig.from_denoise_config(
        DenoiseConfig(dir_a="A", dir_b="B", crop=256, criteria="L0", optim="sgd"), seed=3
    )
    assert (two.dir_a, two.dir_b, two.model_name, two.crop, two.criteria, two.optim, two.seed) == (
        "A", "B", "unet", 256, "L0", "sgd", 3,
    )  # fmt: skip
    assert (
        Noise2NoiseConfig.from_denoise_config(
            DenoiseConfig(dir_a="A", dir_b="B", arch="fcnet2")
        ).model_name
        == "fcnn"
    )
    fresh = Noise2NoiseConfig.from_denoise_config(
        DenoiseConfig(dir_a="A", dir_b="B", models=("none",), arch="unet-small")
    )
    assert (fresh.model_name, fresh.arch) == ("none", "unet-small")
    with pytest.raises(ConfigError, match="unet3"):
        Noise2NoiseConfig.from_denoise_config(DenoiseConfig(dir_a="A", dir_b="B", arch="unet3"))
    with pytest.raises(ConfigError, match="masked"):
        Noise2NoiseConfig.from_denoise_config(DenoiseConfig(dir_a="A", dir_b="B", method="masked"))
    with pytest.raises(ConfigError, match="--hdf"):
        Noise2NoiseConfig.from_denoise_config(DenoiseConfig(hdf="x.h5"))
    three = Noise2NoiseConfig.from_denoise3d_config(
        Denoise3dConfig(even_train_path="e.mrc", odd_train_path="o.mrc", patch_size=64)
    )
    assert (three.ndim, three.model_name, three.patch_size, three.batch_size) == (
        3, "unet-3d", 64, 10,
    )  # fmt: skip
    assert (three.num_epochs, three.n_train, three.n_test, three.device) == (500, 1000, 200, -2)
