"""jaxpick.checkpoint: save/load round trip, atomicity, resolve_model, convert-model CLI."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pytest

import jaxpick.checkpoint as checkpoint
from jaxpick.checkpoint import (
    ConvertModelConfig,
    convert_model,
    load_model,
    resolve_model,
    save_model,
)
from jaxpick.cli.main import main as cli_main
from jaxpick.errors import ConfigError, FileFormatError
from jaxpick.models import ModelConfig
from tests.models.helpers import forward, randomised

MODELS = Path(__file__).resolve().parent.parent / "data" / "topaz_models"


def test_round_trip(tmp_path: Path) -> None:
    config = ModelConfig(arch="resnet8", units=2, bn=True, pooling="max", dropout=0.1)
    model = randomised(config)
    out = save_model(tmp_path / "ckpt", model, config, provenance={"note": "test"})
    assert out == (tmp_path / "ckpt").absolute()
    meta = json.loads((out / "config.json").read_text())
    assert meta["format"] == "jaxpick-model"
    assert meta["format_version"] == 1
    assert meta["model"] == config.to_dict()
    assert meta["provenance"] == {"note": "test"}
    assert meta["tensors"]["features.0.bn.var"] == [2]
    assert not list(tmp_path.glob(".jaxpick-tmp-*"))  # nothing left behind

    loaded, loaded_config = load_model(out)
    assert loaded_config == config
    for (path, a), (_, b) in zip(
        jax.tree_util.tree_leaves_with_path(checkpoint.model_arrays(model)),
        jax.tree_util.tree_leaves_with_path(checkpoint.model_arrays(loaded)),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b, err_msg=str(path))
    x = np.random.default_rng(0).normal(size=(1, 24, 20)).astype(np.float32)
    np.testing.assert_array_equal(
        np.asarray(forward(model, x, dense=True)), np.asarray(forward(loaded, x, dense=True))
    )


def test_save_refuses_to_clobber(tmp_path: Path) -> None:
    config = ModelConfig(arch="conv31", units=1)
    model = randomised(config)
    save_model(tmp_path / "m", model)
    with pytest.raises(FileFormatError, match="already exists"):
        save_model(tmp_path / "m", model)
    other = randomised(config, seed=5)
    save_model(tmp_path / "m", other, overwrite=True)
    reloaded, _ = load_model(tmp_path / "m")
    np.testing.assert_array_equal(
        checkpoint.model_arrays(reloaded)["classifier.bias"],
        checkpoint.model_arrays(other)["classifier.bias"],
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temporary left behind
    (tmp_path / "empty").mkdir()
    save_model(tmp_path / "empty", model)  # an empty folder is fine without overwrite
    assert load_model(tmp_path / "empty")[1] == config
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.jpg").write_bytes(b"x")
    with pytest.raises(FileFormatError, match="not a jaxpick checkpoint"):
        save_model(foreign, model, overwrite=True)
    with pytest.raises(ConfigError, match="does not describe"):
        save_model(tmp_path / "n", model, ModelConfig(arch="conv31", units=2))


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(FileFormatError, match="no config.json"):
        load_model(tmp_path)
    save_model(tmp_path / "m", randomised(ModelConfig(arch="conv31", units=1)))
    meta_path = tmp_path / "m" / "config.json"
    meta = json.loads(meta_path.read_text())
    meta["format_version"] = 99
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(FileFormatError, match="version 99"):
        load_model(tmp_path / "m")
    meta["format_version"] = 1
    meta["model"]["units"] = 2  # the arrays no longer fit
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(FileFormatError, match="do not fit"):
        load_model(tmp_path / "m")


def test_resolve_model_paths(tmp_path: Path) -> None:
    model, config = resolve_model(MODELS / "c31_u8_bn.sav")
    assert config == ModelConfig(arch="conv31", units=8, bn=True)
    save_model(tmp_path / "ckpt", model)
    again, config_again = resolve_model(str(tmp_path / "ckpt"))
    assert config_again == config
    np.testing.assert_array_equal(
        checkpoint.model_arrays(again)["features.0.conv.kernel"],
        checkpoint.model_arrays(model)["features.0.conv.kernel"],
    )
    with pytest.raises(ConfigError, match="not a pretrained detector name"):
        resolve_model("resnet12")
    with pytest.raises(ConfigError, match="no such file"):
        resolve_model(tmp_path / "missing.sav")


def test_resolve_pretrained_without_topaz(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checkpoint.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileFormatError, match=r"pip install --no-deps topaz-em"):
        resolve_model("resnet16")


def test_pretrained_aliases() -> None:
    # topaz 0.3.20 factory.load_model: the bare names are the 64-unit detectors.
    if checkpoint.topaz_package_dir() is None:
        pytest.skip("topaz-em is not installed (pip install --no-deps topaz-em)")
    assert checkpoint.pretrained_path("resnet8").name == "resnet8_u64.sav"
    assert checkpoint.pretrained_path("resnet16").name == "resnet16_u64.sav"
    assert checkpoint.pretrained_path("resnet8_u32").name == "resnet8_u32.sav"
    _, config = resolve_model("resnet16_u32")
    assert config == ModelConfig(arch="resnet16", units=32, bn=False)


def test_convert_model_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "converted"
    assert cli_main(["convert-model", str(MODELS / "c63_u4_nobn_legacy.sav"), str(out)]) == 0
    assert "conv63" in capsys.readouterr().err
    meta = json.loads((out / "config.json").read_text())
    assert meta["provenance"]["source_sha256"]
    assert meta["provenance"]["source"].endswith("c63_u4_nobn_legacy.sav")
    assert "torch.nn.modules.conv.Conv2d" in meta["provenance"]["pickled_classes"]
    # An existing output is an error (one clear line), --force replaces it.
    assert cli_main(["convert-model", str(MODELS / "c63_u4_nobn.sav"), str(out)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert cli_main(["convert-model", "-f", str(MODELS / "c63_u4_nobn.sav"), str(out)]) == 0
    assert cli_main(["convert-model", str(tmp_path / "nope.sav"), str(tmp_path / "x")]) == 1
    assert "no such file" in capsys.readouterr().err


def test_convert_model_library(tmp_path: Path) -> None:
    path, config = convert_model(
        ConvertModelConfig(source=str(MODELS / "r6_u8_bn.sav"), output=str(tmp_path / "r6"))
    )
    assert config.arch == "resnet6"
    assert load_model(path)[1] == config
    with pytest.raises(ConfigError):
        ConvertModelConfig(source="", output="x")
