"""Parity with Topaz: pretrained detectors and user-trained models, against stored Topaz outputs.

The expected values come from ``tests/data/make_topaz_model_fixtures.py`` (run once with torch
and Topaz); torch is never needed here. The pretrained weights are read from an installed
topaz-em package (``pip install --no-deps topaz-em``); those tests skip when it is absent.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
from flax import nnx

from jaxpick.checkpoint import topaz_package_dir
from jaxpick.errors import FileFormatError
from jaxpick.io.torch_sav import read_sav
from jaxpick.models import PRETRAINED, ModelConfig, build_model, layers, make_dense_scorer
from jaxpick.models.topaz_weights import (
    infer_config,
    load_topaz_model,
    read_topaz_model,
    to_state_dict,
    torch_mappings,
)
from tests.models.helpers import forward, windows

DATA = Path(__file__).resolve().parent.parent / "data"
MODELS = DATA / "topaz_models"
TOLERANCE = 1e-4  # max |logit difference| allowed versus Topaz


@pytest.fixture(scope="module")
def fixtures() -> dict[str, np.ndarray]:
    with np.load(DATA / "topaz_models.npz") as npz:
        return {k: npz[k] for k in npz.files}


def pretrained_file(name: str, fixtures: dict[str, np.ndarray]) -> Path:
    package = topaz_package_dir()
    if package is None:
        pytest.skip(
            "topaz-em is not installed: `pip install --no-deps topaz-em` provides the "
            "pretrained weights (torch is not needed)"
        )
    path = package / "pretrained" / "detector" / PRETRAINED[name].file
    if not path.is_file():
        pytest.skip(f"{path} is missing from the installed topaz-em")
    from jaxpick.models.topaz_weights import file_sha256

    digest = file_sha256(path)
    if digest != str(fixtures[f"pretrained_{name}_sha256"]):
        pytest.skip(f"the installed {path.name} is not the file the fixtures were made with")
    return path


@pytest.mark.parametrize("winograd", [False, True], ids=["direct", "winograd"])
@pytest.mark.parametrize("name", list(PRETRAINED))
def test_pretrained_detectors_match_topaz(
    name: str, winograd: bool, fixtures: dict[str, np.ndarray], monkeypatch
) -> None:
    # The fixture crop is below the size from which dense scoring takes the Winograd form on
    # CPU; with the size limit lifted its wide layers take it, and must still match Topaz.
    monkeypatch.setattr(layers, "_WINOGRAD_MIN_PIXELS", 0 if winograd else 2**62)
    calls = []
    original = layers._winograd_rows_conv
    monkeypatch.setattr(layers, "_winograd_rows_conv", lambda *a: calls.append(1) or original(*a))
    path = pretrained_file(name, fixtures)
    model, config = load_topaz_model(path)
    assert config == PRETRAINED[name].config
    image = fixtures["input"]
    expected = fixtures[f"pretrained_{name}"]
    scores = np.asarray(make_dense_scorer(model)(image[None]))[0]
    assert scores.shape == image.shape
    assert np.abs(scores - expected).max() <= TOLERANCE
    assert bool(calls) == winograd


def test_pretrained_bfloat16_is_close(fixtures: dict[str, np.ndarray]) -> None:
    path = pretrained_file("resnet8_u32", fixtures)
    model, _ = load_topaz_model(path)
    expected = fixtures["pretrained_resnet8_u32"]
    scores = np.asarray(make_dense_scorer(model, compute_dtype="bfloat16")(fixtures["input"][None]))
    # bf16 keeps ~3 significant digits; Topaz's logits here reach about +-16.
    assert np.abs(scores[0] - expected).max() <= 0.02 * np.abs(expected).max()


USER_MODELS = {
    "r8_u8_bn_max": ModelConfig(arch="resnet8", units=8, bn=True, pooling="max"),
    "r16_u8_bn": ModelConfig(arch="resnet16", units=8, bn=True),
    "r6_u8_bn": ModelConfig(arch="resnet6", units=8, bn=True, pooling="max"),
    "r8_u4_nobn_drop": ModelConfig(arch="resnet8", units=4, bn=False, dropout=0.2),
    "c31_u8_bn": ModelConfig(arch="conv31", units=8, bn=True),
    "c63_u4_nobn": ModelConfig(arch="conv63", units=4, bn=False),
    "c63_u4_nobn_legacy": ModelConfig(arch="conv63", units=4, bn=False),
    "c31_u4_bn_max_drop": ModelConfig(arch="conv31", units=4, bn=True, pooling="max", dropout=0.1),
    "c31_u4_ae": ModelConfig(arch="conv31", units=4, bn=True, unit_scaling=3),
}


@pytest.mark.parametrize("name", list(USER_MODELS))
def test_user_models_match_topaz(name: str, fixtures: dict[str, np.ndarray]) -> None:
    key = name.removesuffix("_legacy")
    model, config = load_topaz_model(MODELS / f"{name}.sav")
    # resnet6 records no pooling option; Topaz's pickle has its MaxPools.
    assert dataclasses.replace(config, pooling=USER_MODELS[name].pooling) == USER_MODELS[name]
    small = fixtures["input"][:64, :80]
    centres = [tuple(c) for c in fixtures["crop_centres"]]
    patch = np.asarray(forward(model, windows(small, config.receptive_field, centres)))
    assert np.abs(patch[:, 0, 0] - fixtures[f"{key}_patch"]).max() <= TOLERANCE
    if f"{key}_dense" in fixtures:  # Topaz's filled conv* with pooling/dropout is unsound
        dense = np.asarray(forward(model, small[None], dense=True))[0]
        assert np.abs(dense - fixtures[f"{key}_dense"]).max() <= TOLERANCE


def test_training_forward_matches_topaz(fixtures: dict[str, np.ndarray]) -> None:
    name = str(fixtures["train_model"])
    model, config = load_topaz_model(MODELS / f"{name}.sav")
    centres = [tuple(c) for c in fixtures["crop_centres"]]
    crops = windows(fixtures["input"][10:, 20:], config.receptive_field, centres) * 1.5 + 0.25
    logits = nnx.jit(lambda m, c: m(c, train=True))(model, crops)
    assert np.abs(np.asarray(logits)[:, 0, 0] - fixtures["train_logits"]).max() <= TOLERANCE
    np.testing.assert_allclose(
        np.asarray(model.features[0].bn.mean[...]), fixtures["train_bn0_running_mean"], atol=1e-6
    )
    np.testing.assert_allclose(
        np.asarray(model.features[0].bn.var[...]), fixtures["train_bn0_running_var"], rtol=1e-5
    )


def test_autoencoder_weights_are_kept_aside() -> None:
    topaz = read_topaz_model(MODELS / "c31_u4_ae.sav")
    generative = [k for k in topaz.extra if k.startswith("generative.")]
    assert generative
    assert generative[0] == "generative.layers.0.weight"
    assert "topaz.model.generative.ConvGenerator" in topaz.module_classes.values()
    assert len(topaz.sha256) == 64
    assert topaz.format == "zip"
    provenance = topaz.provenance()
    assert provenance["source_sha256"] == topaz.sha256
    assert "generative.layers.0.weight" in provenance["extra_tensors"]


@pytest.mark.parametrize("name", ["r16_u8_bn", "c31_u8_bn"])
def test_state_dict_round_trip(name: str) -> None:
    sav = read_sav(MODELS / f"{name}.sav")
    model, config = load_topaz_model(MODELS / f"{name}.sav")
    exported = to_state_dict(model)
    expected = OrderedDict(
        (k, v) for k, v in sav.state_dict.items() if not k.endswith("num_batches_tracked")
    )
    assert list(exported) == list(expected)  # same keys, same (torch) order
    for key, value in expected.items():
        np.testing.assert_array_equal(exported[key], value, err_msg=key)
    assert [m.torch_key for m in torch_mappings(config)] == list(expected)


def test_bare_state_dict_inference() -> None:
    # A user model's tensors without the pickled classes: inferred from the keys and shapes.
    sav = read_sav(MODELS / "r16_u8_bn.sav")
    bare = dataclasses.replace(sav, obj=sav.state_dict, module_classes=OrderedDict())
    assert infer_config(bare) == ModelConfig(arch="resnet16", units=8, bn=True)
    # Max pooling or dropout after each conv31 block: the same tensor names, ambiguous.
    config = ModelConfig(arch="conv31", units=2, bn=True, pooling="max")
    state = to_state_dict(build_model(config, rngs=nnx.Rngs(0)))
    bare = dataclasses.replace(sav, obj=state, state_dict=state, module_classes=OrderedDict())
    with pytest.raises(FileFormatError, match="several architectures"):
        infer_config(bare)


def test_explicit_config_mismatch_is_reported() -> None:
    with pytest.raises(FileFormatError, match=r"do not fit resnet8\(units=16") as info:
        read_topaz_model(MODELS / "r8_u8_bn_max.sav", config=ModelConfig(arch="resnet8", units=16))
    assert "features.features.0.conv.weight has shape [8, 1, 7, 7], expected [16, 1, 7, 7]" in str(
        info.value
    )


def test_non_model_files_are_rejected() -> None:
    with pytest.raises(FileFormatError, match="matches no Topaz detector"):
        read_topaz_model(MODELS / "tensors_zip.pt")
