"""Architecture plans and ModelConfig: parameter counts, receptive fields, strides, JSON."""

from __future__ import annotations

import json

import pytest
from flax import nnx

from jaxpick.errors import ConfigError
from jaxpick.models import ARCHITECTURES, ModelConfig, build_model, count_parameters


# Topaz spec 2.2 (bn on, units 32, CLI defaults).
@pytest.mark.parametrize(
    ("arch", "count"),
    [
        ("resnet8", 329_249),
        ("resnet16", 458_913),
        ("conv31", 258_148),
        ("conv63", 1_077_989),
        ("conv127", 4_356_070),
    ],
)
def test_parameter_counts_match_topaz(arch: str, count: int) -> None:
    model = nnx.eval_shape(lambda: build_model(ModelConfig(arch=arch), rngs=nnx.Rngs(0)))
    assert count_parameters(model) == count


@pytest.mark.parametrize(
    ("arch", "pooling", "rf", "stride", "latent"),
    [
        ("resnet8", "none", 71, 4, 128),
        ("resnet8", "max", 77, 4, 128),
        ("resnet16", "none", 91, 4, 128),
        ("resnet16", "max", 97, 4, 128),
        ("resnet6", "none", 71, 4, 128),
        ("conv31", "none", 31, 4, 128),
        ("conv63", "none", 63, 8, 256),
        ("conv127", "none", 127, 16, 512),
        ("conv31", "max", 31, 4, 128),
    ],
)
def test_geometry(arch: str, pooling: str, rf: int, stride: int, latent: int) -> None:
    config = ModelConfig(arch=arch, pooling=pooling)
    assert config.receptive_field == rf
    assert config.output_stride == stride
    assert config.latent_dim == latent
    assert config.plan.patch_output_size(rf) == 1
    assert config.plan.patch_output_size(rf - 1) == 0
    assert config.plan.patch_output_size(rf + stride) == 2
    # Dense mode: no strides; the dilation scales are the cumulative strides.
    dense = config.plan.placements(dense=True)
    assert all(p.stride == 1 for p in dense)
    assert dense[0].scale == 1
    assert all(p.scale == 1 for p in config.plan.placements(dense=False))


def test_resnet8_filled_table_matches_the_spec() -> None:
    # spec 2.3: conv7 dil 1; ResidA dil 2/4; ResidA dil 2/4 (+proj); ResidA dil 4/8; conv5 dil 4.
    plan = ModelConfig(arch="resnet8", bn=False).plan
    scales = [p.scale for p in plan.placements(dense=True)]
    assert scales == [1, 2, 2, 4, 4]
    dilations = [
        getattr(spec, "dilation", 1) * s for spec, s in zip(plan.layers, scales, strict=True)
    ]
    assert dilations == [1, 4, 4, 8, 4]


def test_units_and_unit_scaling() -> None:
    plan = ModelConfig(arch="conv63", units=4, unit_scaling=3).plan
    widths = [spec.nout for spec in plan.layers]
    assert widths == [4, 12, 36, 108]
    assert plan.latent_dim == 108
    assert ModelConfig(arch="resnet16", units=5).latent_dim == 20


def test_config_json_round_trip() -> None:
    config = ModelConfig(arch="conv127", units=8, bn=False, dropout=0.25, pooling="max")
    data = json.loads(json.dumps(config.to_dict()))
    assert ModelConfig.from_dict(data) == config
    assert hash(ModelConfig.from_dict(data)) == hash(config)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"arch": "resnet9"}, "unknown architecture"),
        ({"arch": "resnet8", "units": 0}, "units"),
        ({"arch": "resnet8", "dropout": 1.0}, "dropout"),
        ({"arch": "resnet8", "pooling": "avg"}, "pooling"),
        ({"arch": "conv31", "unit_scaling": 0}, "unit_scaling"),
        ({"arch": "resnet8", "bn": "yes"}, "bn"),
    ],
)
def test_config_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ModelConfig(**kwargs)


def test_from_dict_errors() -> None:
    with pytest.raises(ConfigError, match="unknown model config keys: colour"):
        ModelConfig.from_dict({"arch": "resnet8", "colour": "red"})
    with pytest.raises(ConfigError, match="arch"):
        ModelConfig.from_dict({"units": 3})


def test_registry_names() -> None:
    assert set(ARCHITECTURES) == {"resnet6", "resnet8", "resnet16", "conv31", "conv63", "conv127"}
