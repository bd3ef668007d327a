"""PU training end to end on tiny synthetic data: the loop, determinism, resume, data
parallelism, checkpoints that extract loads, custom objectives, the autoencoder, bad input."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxpick.config import ExtractConfig, TrainConfig
from jaxpick.errors import ConfigError
from jaxpick.io.image import write_image

SHAPE = (96, 112)


def _blob_dataset(folder: Path, num: int = 5, seed: int = 0) -> tuple[Path, Path]:
    """Bright Gaussian blobs (sigma 3 px) on unit noise; all blob centres are labelled."""
    rng = np.random.default_rng(seed)
    images = folder / "images"
    images.mkdir(parents=True)
    rows = ["image_name\tx_coord\ty_coord"]
    yy, xx = np.indices(SHAPE)
    for i in range(num):
        image = rng.normal(size=SHAPE).astype(np.float32)
        centres = []
        while len(centres) < 8:
            y, x = rng.integers(8, SHAPE[0] - 8), rng.integers(8, SHAPE[1] - 8)
            if all((y - a) ** 2 + (x - b) ** 2 > 14**2 for a, b in centres):
                centres.append((y, x))
        for y, x in centres:
            image += 3.0 * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * 3.0**2))
            rows.append(f"mic{i}\t{x}\t{y}")
        write_image(images / f"mic{i}.mrc", image)
    targets = folder / "particles.txt"
    targets.write_text("\n".join(rows) + "\n")
    return images, targets


@pytest.fixture(scope="module")
def blobs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return _blob_dataset(tmp_path_factory.mktemp("blobs"))


def _config(images: Path, targets: Path, **changes: object) -> TrainConfig:
    base = TrainConfig(
        train_images=(str(images),),
        train_targets=(str(targets),),
        num_particles=16,
        radius=2,
        method="GE-binomial",
        model="conv31",
        units=4,
        pretrained=False,
        minibatch_size=32,
        minibatch_balance=0.25,
        epoch_size=6,
        num_epochs=2,
        learning_rate=3e-3,
        device=-1,
    )
    return dataclasses.replace(base, **changes)


def _params(result: object) -> list[np.ndarray]:
    from flax import nnx

    state = nnx.state(result.model, nnx.Param)  # type: ignore[attr-defined]
    return [np.asarray(x) for x in jax.tree.leaves(state)]


def _train(config: TrainConfig, **kwargs: object):  # noqa: ANN202
    from jaxpick.train import train

    return train(config, progress=False, log=io.StringIO(), **kwargs)


def test_curve_layout_and_checkpoints(blobs: tuple[Path, Path], tmp_path: Path) -> None:
    images, targets = blobs
    out = tmp_path / "curve.tsv"
    config = _config(
        images,
        targets,
        k_fold=5,
        fold=0,
        save_prefix=str(tmp_path / "ckpt" / "run"),
        output=str(out),
        eval_radius=6,
    )
    result = _train(config)
    lines = out.read_text().splitlines()
    header = lines[0].split("\t")
    assert header == [
        "epoch",
        "iter",
        "split",
        "loss",
        "ge_penalty",
        "precision",
        "adjusted_precision",
        "tpr",
        "fpr",
        "auprc",
        "particle_auprc",
    ]
    rows = [line.split("\t") for line in lines[1:]]
    train_rows = [r for r in rows if r[2] == "train"]
    test_rows = [r for r in rows if r[2] == "test"]
    assert [int(r[1]) for r in train_rows] == list(range(1, 13))  # global, 1-based
    assert [r[0] for r in test_rows] == ["1", "2"]
    assert [int(r[1]) for r in test_rows] == [7, 13]  # the next update's index, as Topaz
    assert all(r[-2] == "-" and r[-1] == "-" for r in train_rows)
    assert all(r[4] == "-" for r in test_rows)  # ge_penalty is training-only
    assert all(0 <= float(r[-1]) <= 1 and 0 <= float(r[-2]) <= 1 for r in test_rows)
    assert all(np.isfinite(float(r[3])) for r in train_rows)
    assert (tmp_path / "curve.png").stat().st_size > 1000
    assert [p.name for p in result.checkpoints] == ["run_epoch1", "run_epoch2"]
    # The checkpoint is an ordinary model folder: extract loads it and picks.
    from jaxpick.extract import extract

    picked = extract(
        ExtractConfig(
            inputs=(str(images / "mic0.mrc"),),
            model=str(result.checkpoints[-1]),
            radius=6,
            output=str(tmp_path / "picks.txt"),
            device=-1,
        ),
        progress=False,
    )
    assert not picked.report.failed
    assert len((tmp_path / "picks.txt").read_text().splitlines()) > 1


def test_learns_the_blobs(blobs: tuple[Path, Path]) -> None:
    images, targets = blobs
    config = _config(images, targets, method="PN", epoch_size=40, num_epochs=1, k_fold=5)
    result = _train(config, devices=jax.devices()[:1])
    test = result.test_rows()[-1]
    # Random scores give a pixel AUPRC near the positive fraction (~2 %).
    assert test["auprc"] > 0.2, test


def test_same_seed_same_model(blobs: tuple[Path, Path]) -> None:
    images, targets = blobs
    config = _config(images, targets, epoch_size=3, num_epochs=1)
    a, b = _params(_train(config)), _params(_train(config))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    c = _params(_train(dataclasses.replace(config, seed=1)))
    assert any(not np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_resume_equals_uninterrupted(blobs: tuple[Path, Path], tmp_path: Path) -> None:
    images, targets = blobs
    full = _train(_config(images, targets, save_prefix=str(tmp_path / "a" / "run")))
    # "Crash" after epoch 1, then resume.
    _train(_config(images, targets, num_epochs=1, save_prefix=str(tmp_path / "b" / "run")))
    resumed = _train(_config(images, targets, save_prefix=str(tmp_path / "b" / "run"), resume=True))
    for x, y in zip(_params(full), _params(resumed), strict=True):
        np.testing.assert_array_equal(x, y)
    assert [r["iter"] for r in resumed.history] == [r["iter"] for r in full.history]
    # Other settings than the checkpoint's are refused.
    with pytest.raises(ConfigError, match="other settings"):
        _train(
            _config(images, targets, save_prefix=str(tmp_path / "b" / "run"), resume=True, radius=3)
        )


def test_four_devices_equal_one(blobs: tuple[Path, Path]) -> None:
    if len(jax.devices()) < 4:
        pytest.skip("needs 4 (simulated) devices; tests/conftest.py asks for them")
    images, targets = blobs
    config = _config(images, targets, epoch_size=3, num_epochs=1, bn=True)
    one = _params(_train(config, devices=jax.devices()[:1]))
    four = _params(_train(config, devices=jax.devices()[:4]))
    for x, y in zip(one, four, strict=True):
        np.testing.assert_allclose(x, y, rtol=2e-4, atol=2e-5)


def test_custom_objective_and_autoencoder(blobs: tuple[Path, Path], tmp_path: Path) -> None:
    images, targets = blobs
    custom = _train(
        _config(
            images,
            targets,
            epoch_size=2,
            num_epochs=1,
            method="tests.losses.custom_loss_example:my_loss",
            output=str(tmp_path / "custom.tsv"),
        )
    )
    assert custom.method.endswith("my_loss")
    assert np.isfinite(custom.history[0]["loss"])
    auto = _train(
        _config(
            images,
            targets,
            model="resnet8",
            units=4,
            epoch_size=2,
            num_epochs=1,
            autoencoder=0.5,
            ngf=4,
            output=str(tmp_path / "auto.tsv"),
        )
    )
    header = (tmp_path / "auto.tsv").read_text().splitlines()[0].split("\t")
    assert header[3:6] == ["loss", "ge_penalty", "recon_error"]
    assert np.isfinite(auto.history[-1]["recon_error"])


def test_ge_falls_back_to_pn_when_pi_is_too_small(blobs: tuple[Path, Path]) -> None:
    images, targets = blobs
    log = io.StringIO()
    from jaxpick.train import train

    result = train(
        _config(images, targets, epoch_size=1, num_epochs=1, num_particles=1),
        progress=False,
        log=log,
    )
    assert result.method == "PN"
    assert "PN" in log.getvalue()


def test_bad_settings_are_refused(blobs: tuple[Path, Path], tmp_path: Path) -> None:
    images, targets = blobs
    with pytest.raises(ConfigError, match="receptive field"):
        _train(_config(images, targets, radius=16, num_particles=2, method="PN"))
    other = tmp_path / "other.txt"
    other.write_text("image_name\tx_coord\ty_coord\nnope\t5\t5\n")
    with pytest.raises(ConfigError):
        _train(_config(images, other))
    with pytest.raises(ConfigError, match="devices"):
        _train(_config(images, targets, minibatch_size=30), devices=jax.devices()[:4])
    with pytest.raises(ConfigError, match="num-particles"):
        TrainConfig(train_images=("a",), train_targets=("b",))
    with pytest.raises(ConfigError, match="fold"):
        _config(images, targets, k_fold=3, fold=3)


def test_l2_applies_to_the_picker_only() -> None:
    import jax.numpy as jnp
    import optax

    from jaxpick.train.step import make_optimizer

    params = {"picker": {"w": jnp.ones(3)}, "generator": {"w": jnp.ones(3)}}
    tx = make_optimizer(1.0, 0.5)
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zeros, tx.init(params), params)
    moved = jax.tree.map(lambda u: float(jnp.abs(u).sum()), updates)
    assert moved["picker"]["w"] > 0
    assert moved["generator"]["w"] == 0
    assert isinstance(tx, optax.GradientTransformation)


def test_step_compiles_once(blobs: tuple[Path, Path]) -> None:
    from flax import nnx

    from jaxpick.data.sampling import to_device_data
    from jaxpick.data.targets import load_training_set
    from jaxpick.losses import get_objective
    from jaxpick.models import ModelConfig, build_model
    from jaxpick.train.step import (
        StepSettings,
        Trainable,
        init_state,
        make_optimizer,
        make_train_step,
    )

    images, targets = blobs
    ts = load_training_set(str(images), str(targets), radius=2, warn=lambda _m: None)
    model = build_model(ModelConfig(arch="conv31", units=4), rngs=nnx.Rngs(0))
    tx = make_optimizer(1e-3, 0.0)
    graphdef, state = init_state(Trainable(model), tx)
    settings = StepSettings(
        objective=get_objective("PU"),
        pi=0.05,
        slack=1.0,
        autoencoder=0.0,
        est_max_prec=1.0,
        batch_size=16,
        crop_size=31,
        balance=0.25,
    )
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    step = make_train_step(graphdef, tx, settings, mesh=mesh)
    data = to_device_data(ts, sharding=replicated)
    state = jax.device_put(state, replicated)
    key = jax.random.key(0)
    for _ in range(4):
        state, metrics = step(state, data, key)
    assert int(state.step) == 4
    assert step._cache_size() == 1  # type: ignore[attr-defined]
    assert set(metrics) >= {"loss", "precision", "adjusted_precision", "tpr", "fpr"}


def test_readme_custom_loss_example(
    blobs: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's worked example of a custom objective trains as documented."""
    import re

    readme = Path(__file__).resolve().parents[2] / "README.md"
    blocks = re.findall(r"```python\n(# my_losses.py\n.*?)```", readme.read_text(), re.S)
    assert len(blocks) == 1
    (tmp_path / "my_losses.py").write_text(blocks[0])
    monkeypatch.syspath_prepend(str(tmp_path))
    images, targets = blobs
    result = _train(
        _config(images, targets, epoch_size=2, num_epochs=1, method="my_losses:prior_matching")
    )
    assert np.isfinite(result.history[-1]["prior_gap"])
    assert "prior_gap" in result.header
