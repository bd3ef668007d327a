"""The denoising networks: architecture, Topaz parity, weight import, checkpoints.

Expected values come from ``tests/data/make_topaz_denoise_fixtures.py`` (run once with torch and
Topaz); torch is never needed here. Pretrained weights are read from an installed topaz-em
(``pip install --no-deps topaz-em``); those tests skip when it is absent.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxpick.errors import ConfigError, FileFormatError
from jaxpick.models.denoisers import (
    PRETRAINED_DENOISERS,
    load_denoiser,
    pretrained_denoiser_path,
    read_denoiser_config,
    read_topaz_denoiser,
    resolve_denoiser,
    save_denoiser,
    state_dict_to_arrays,
    to_topaz_state_dict,
)
from jaxpick.models.unet import (
    DenoiserConfig,
    UNet,
    build_denoiser,
    nearest_indices,
)

DATA = Path(__file__).resolve().parent.parent / "data"
TOLERANCE = 1e-4  # max |difference| to Topaz on unit-σ inputs
MODELS_2D = ("unet", "unet-v0.2.1", "unet-small", "fcnn", "affine")
MODELS_3D = ("unet-3d-10a", "unet-3d-20a")


@pytest.fixture(scope="module")
def fixtures() -> dict[str, np.ndarray]:
    with np.load(DATA / "topaz_denoise.npz") as npz:
        return {k: npz[k] for k in npz.files}


def spec_map(n: int, m: int) -> np.ndarray:
    """Spec 6.1's f(i, j) (i = row)."""
    i, j = np.meshgrid(np.arange(n), np.arange(m), indexing="ij")
    return (np.sin(0.1 * i) * np.cos(0.07 * j) + 0.01 * ((31 * i + 17 * j) % 13)).astype(np.float32)


def torch_standardized(x: np.ndarray) -> np.ndarray:
    return ((x - x.mean()) / x.std(ddof=1)).astype(np.float32)


def pretrained(name: str):
    try:
        pretrained_denoiser_path(name)
    except FileFormatError as err:
        pytest.skip(f"pretrained denoisers not installed ({err.problem[:60]}...)")
    return resolve_denoiser(name)


def forward(model, x, **kwargs) -> jax.Array:
    """``model(x)`` compiled once (eager convolutions compile op by op: slow on CPU)."""
    graphdef, state = nnx.split(model)
    return jax.jit(lambda s, x: nnx.merge(graphdef, s)(x, **kwargs))(state, jnp.asarray(x))


def tiny_unet(depth: int = 3, ndim: int = 2, seed: int = 0) -> UNet:
    config = DenoiserConfig(
        arch="unet",
        ndim=ndim,
        width=4,
        depth=depth,
        base_kernel=5,
        top_kernel=3,
        top_widths=(6, 5),
    )
    model = build_denoiser(config, rngs=nnx.Rngs(seed))
    assert isinstance(model, UNet)
    return model


# --- architecture ---------------------------------------------------------------------------


def test_nearest_indices_follow_pytorch() -> None:
    assert nearest_indices(4, 4).tolist() == [0, 1, 2, 3]
    assert nearest_indices(3, 6).tolist() == [0, 0, 1, 1, 2, 2]
    # Odd targets: floor(i * n / (2n + 1)) is (i - 1) // 2, a one-pixel shift, not i // 2.
    for n in (1, 2, 5, 12, 63, 126, 381):
        got = nearest_indices(n, 2 * n + 1)
        expected = np.maximum(np.arange(2 * n + 1) - 1, 0) // 2
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("shape", [(1, 32, 32), (2, 37, 45), (1, 8, 91)])
def test_unet_keeps_shape_and_batch_independence(shape: tuple[int, ...]) -> None:
    model = tiny_unet()
    x = jax.random.normal(jax.random.key(1), shape)
    y = forward(model, x)
    assert y.shape == shape
    assert y.dtype == jnp.float32
    np.testing.assert_allclose(forward(model, x[:1]), y[:1], atol=1e-6)


def test_unet_3d_and_too_small_inputs() -> None:
    model = tiny_unet(depth=2, ndim=3)
    assert forward(model, jnp.zeros((1, 9, 8, 5))).shape == (1, 9, 8, 5)
    with pytest.raises(ValueError, match="too small"):
        forward(model, jnp.zeros((1, 9, 8, 3)))
    with pytest.raises(ValueError, match="spatial"):
        forward(model, jnp.zeros((9, 8, 5)))


def test_receptive_field_bounds_the_influence() -> None:
    model = tiny_unet(depth=2)
    rf = model.config.receptive_field
    n = 2 * rf + 8
    x = jax.random.normal(jax.random.key(2), (1, n, n))
    bumped = x.at[0, n // 2, n // 2].add(5.0)
    changed = np.abs(np.asarray(forward(model, bumped) - forward(model, x)))[0] > 0
    rows, cols = np.nonzero(changed)
    assert changed[n // 2, n // 2]
    assert rows.max() - rows.min() < rf
    assert cols.max() - cols.min() < rf


def test_config_round_trip_and_validation() -> None:
    config = DenoiserConfig(arch="unet", ndim=3, depth=4, top_widths=(8, 4))
    assert DenoiserConfig.from_dict(config.to_dict()) == config
    assert config.multiple == 16
    assert DenoiserConfig(arch="unet").receptive_field == 298
    with pytest.raises(ConfigError, match="arch"):
        DenoiserConfig(arch="resnet")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="odd"):
        DenoiserConfig(arch="unet", base_kernel=4)
    with pytest.raises(ConfigError, match="unknown"):
        DenoiserConfig.from_dict({"arch": "unet", "colour": 1})


def test_bfloat16_is_close_to_float32() -> None:
    model = tiny_unet()
    x = jax.random.normal(jax.random.key(3), (1, 48, 40))
    full = forward(model, x)
    half = forward(model, x, compute_dtype="bfloat16")
    assert half.dtype == jnp.float32
    assert float(jnp.max(jnp.abs(full - half))) < 0.05 * float(jnp.std(full)) + 1e-3


# --- Topaz parity ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODELS_2D)
def test_spec_reference_2d(name: str, fixtures: dict[str, np.ndarray]) -> None:
    model, _config = pretrained(name)
    y = np.asarray(forward(model, torch_standardized(spec_map(128, 128))[None]))[0]
    assert abs(y[64, 64] - fixtures[f"spec_{name}_center"]) < 1e-5
    assert abs(y.mean() - fixtures[f"spec_{name}_mean"]) < 1e-5


def test_spec_reference_values_as_published() -> None:
    model, _config = pretrained("unet")
    y = np.asarray(forward(model, torch_standardized(spec_map(128, 128))[None]))[0]
    assert round(float(y[64, 64]), 6) == 0.055537
    assert round(float(y.mean()), 6) == 0.088816


@pytest.mark.parametrize("name", MODELS_3D)
def test_spec_reference_3d(name: str, fixtures: dict[str, np.ndarray]) -> None:
    model, config = pretrained(name)
    assert config.ndim == 3
    v = np.stack([spec_map(32, 32) * (k + 1) / 8 for k in range(32)])
    y = np.asarray(forward(model, torch_standardized(v)[None]))[0]
    assert abs(y[16, 16, 16] - fixtures[f"spec_{name}_center"]) < 1e-5


@pytest.mark.parametrize("name", MODELS_2D)
def test_network_matches_topaz(name: str, fixtures: dict[str, np.ndarray]) -> None:
    model, _config = pretrained(name)
    x = fixtures["net_input"].astype(np.float32)
    y = np.asarray(forward(model, x[None]))[0]
    assert np.max(np.abs(y - fixtures[f"net_{name}"])) <= TOLERANCE


def test_pretrained_table_and_aliases() -> None:
    assert set(PRETRAINED_DENOISERS) == {*MODELS_2D, *MODELS_3D}
    _model, config = pretrained("unet-3d")
    assert config == PRETRAINED_DENOISERS["unet-3d-10a"].config
    with pytest.raises(ConfigError, match="3-D denoiser"):
        resolve_denoiser("unet-3d", ndim=2)


# --- Topaz files ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "arch", "ndim"),
    [("small", "unet", 2), ("fcnn", "fcnn", 2), ("affine", "affine", 2), ("unet3d", "unet", 3)],
)
def test_pickled_topaz_modules(
    name: str, arch: str, ndim: int, fixtures: dict[str, np.ndarray], tmp_path: Path
) -> None:
    path = tmp_path / "model_epoch10.sav"
    path.write_bytes(fixtures[f"sav_{name}"].tobytes())
    topaz = read_topaz_denoiser(path)
    assert topaz.config.arch == arch
    assert topaz.config.ndim == ndim
    assert topaz.module_class
    model = topaz.build()
    if ndim == 2:
        y = np.asarray(forward(model, fixtures["net_input"].astype(np.float32)[None]))[0]
    else:
        v = np.stack([spec_map(32, 32) * (k + 1) / 8 for k in range(32)])
        y = np.asarray(forward(model, torch_standardized(v)[None]))[0, 16]
    assert np.max(np.abs(y - fixtures[f"sav_{name}_out"])) <= TOLERANCE
    # resolve_denoiser takes the path too; a 3-D file is refused for micrographs.
    if ndim == 3:
        with pytest.raises(ConfigError, match="3-D"):
            resolve_denoiser(path, ndim=2)
    else:
        assert resolve_denoiser(path, ndim=2)[1] == topaz.config


def test_small_unet_architecture_is_inferred(
    fixtures: dict[str, np.ndarray], tmp_path: Path
) -> None:
    path = tmp_path / "small.sav"
    path.write_bytes(fixtures["sav_small"].tobytes())
    config = read_topaz_denoiser(path).config
    assert (config.width, config.depth, config.base_kernel, config.top_kernel) == (4, 3, 5, 1)
    assert config.top_widths == (64, 32)


def test_state_dict_round_trip() -> None:
    model = tiny_unet()
    state = to_topaz_state_dict(model)
    assert next(iter(state)) == "enc1.0.weight"
    assert state["enc1.0.weight"].shape == (4, 1, 5, 5)
    assert state["dec3.0.weight"].shape == (8, 8, 3, 3)  # first decoder: [up, p2]
    assert state["dec2.0.weight"].shape == (8, 12, 3, 3)
    assert state["dec1.4.weight"].shape == (1, 5, 3, 3)
    arrays = state_dict_to_arrays(model.config, state)
    assert arrays["enc.0.kernel"].shape == (5, 5, 1, 4)
    np.testing.assert_array_equal(arrays["enc.0.kernel"], np.asarray(model.enc[0].kernel[...]))


def test_refuses_malicious_pickles(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self):  # noqa: ANN204
            return (print, ("pwned",))

    path = tmp_path / "evil.sav"
    path.write_bytes(pickle.dumps(Evil(), protocol=2))
    with pytest.raises(FileFormatError, match="evil.sav.*refusing"):
        read_topaz_denoiser(path)


def test_unknown_architectures_name_the_file(tmp_path: Path) -> None:
    detector = DATA / "topaz_models" / "r8_u8_bn_max.sav"
    with pytest.raises(FileFormatError, match="r8_u8_bn_max.sav.*not a Topaz denoiser"):
        read_topaz_denoiser(detector)
    legacy = DATA / "topaz_models" / "tensors_zip.pt"
    with pytest.raises(FileFormatError, match="tensors_zip.pt.*not a Topaz denoiser"):
        read_topaz_denoiser(legacy)


def test_missing_topaz_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import jaxpick.models.denoisers as denoisers

    monkeypatch.setattr(denoisers, "topaz_package_dir", lambda: None)
    with pytest.raises(FileFormatError, match=r"pip install --no-deps topaz-em"):
        resolve_denoiser("unet-small")
    with pytest.raises(ConfigError, match="not a pretrained denoiser name"):
        resolve_denoiser("no-such-model")


# --- our checkpoints ------------------------------------------------------------------------


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    model = tiny_unet(seed=5)
    path = save_denoiser(tmp_path / "ckpt", model, provenance={"note": "test"})
    config, meta = read_denoiser_config(path)
    assert config == model.config
    assert meta["provenance"] == {"note": "test"}
    loaded, loaded_config = load_denoiser(path)
    x = jax.random.normal(jax.random.key(4), (1, 24, 28))
    np.testing.assert_array_equal(np.asarray(forward(loaded, x)), np.asarray(forward(model, x)))
    assert resolve_denoiser(path)[1] == loaded_config
    with pytest.raises(FileFormatError, match="already exists"):
        save_denoiser(path, model)
    save_denoiser(path, tiny_unet(seed=6), overwrite=True)
    replaced = forward(load_denoiser(path)[0], x)
    assert not np.array_equal(np.asarray(replaced), np.asarray(forward(model, x)))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".jaxpick-tmp")]
    with pytest.raises(FileFormatError, match="not a jaxpick checkpoint"):
        load_denoiser(tmp_path)


def test_unet_depth_below_two_is_refused() -> None:
    from jaxpick.errors import ConfigError
    from jaxpick.models.unet import DenoiserConfig

    with pytest.raises(ConfigError, match="depth"):
        DenoiserConfig(arch="unet", depth=1)
