"""The objective registry: ``--method`` names, user losses, the prior and slack rules."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpick.errors import ConfigError
from jaxpick.losses import (
    DEFAULT_HEADER,
    GE_HEADER,
    LossOutput,
    Objective,
    available_objectives,
    effective_prior,
    ge_binomial,
    ge_kl,
    get_objective,
    nnpu,
    pn,
    register_objective,
    registry,
    resolve_slack,
)
from tests.losses import custom_loss_example

CUSTOM = "tests.losses.custom_loss_example:my_loss"


@pytest.mark.parametrize(
    ("method", "fn", "header", "slack", "prior", "excludes", "autoencoder"),
    [
        ("PN", pn, DEFAULT_HEADER, 1.0, "total", True, True),
        ("GE-binomial", ge_binomial, GE_HEADER, 1.0, "unlabeled", True, True),
        ("GE-KL", ge_kl, GE_HEADER, 10.0, "unlabeled", True, False),
        ("PU", nnpu, DEFAULT_HEADER, 1.0, "total", False, True),
    ],
)
def test_builtins(
    method: str,
    fn: object,
    header: tuple[str, ...],
    slack: float,
    prior: str,
    excludes: bool,
    autoencoder: bool,
) -> None:
    objective = get_objective(method)
    want = Objective(method, fn, header, slack, prior, excludes, autoencoder)  # type: ignore[arg-type]
    assert objective == want


def test_topaz_headers() -> None:
    assert DEFAULT_HEADER == ("loss", "precision", "adjusted_precision", "tpr", "fpr")
    assert GE_HEADER == ("loss", "ge_penalty", "precision", "adjusted_precision", "tpr", "fpr")


@pytest.mark.parametrize(
    ("written", "fn"),
    [("pn", pn), ("ge-BINOMIAL", ge_binomial), ("ge-kl", ge_kl), ("pu", nnpu), ("nnPU", nnpu)],
)
def test_case_insensitive_and_alias(written: str, fn: object) -> None:
    objective = get_objective(written)
    assert objective.fn is fn
    assert objective.name == written


def test_available() -> None:
    assert set(available_objectives()) >= {"PN", "GE-binomial", "GE-KL", "PU"}


def test_unknown_method() -> None:
    with pytest.raises(ConfigError, match=r"--method: unknown method 'GE-foo'.*GE-binomial"):
        get_objective("GE-foo")


def test_custom_loss_resolves_and_runs() -> None:
    objective = get_objective(CUSTOM)
    assert objective.name == CUSTOM
    assert objective.fn is custom_loss_example.my_loss
    # Overridden by the function's attributes ...
    assert objective.header == custom_loss_example.HEADER
    assert objective.default_slack == 5.0
    assert resolve_slack(objective, -1.0) == 5.0
    # ... and the defaults otherwise.
    assert objective.prior == "total"
    assert objective.excludes_positives is True
    assert objective.supports_autoencoder is True

    logits = jnp.linspace(-3.0, 1.0, 18)
    labels = jnp.zeros(18, jnp.int32).at[jnp.array([5, 17])].set(1)
    weights = jnp.ones(18, jnp.float32).at[3].set(0.0)

    @jax.jit
    def step(s: jax.Array) -> tuple[jax.Array, LossOutput]:
        out = objective.fn(s, labels, pi=0.05, slack=5.0, weights=weights)
        g = jax.grad(
            lambda x: objective.fn(x, labels, pi=0.05, slack=5.0, weights=weights).objective
        )(s)
        return g, out

    grad, out = step(logits)
    assert np.isfinite(np.asarray(grad)).all()
    assert float(grad[3]) == 0.0
    header_keys = set(objective.header) - registry.TRAINER_COLUMNS
    assert header_keys <= set(out.metrics)
    # PN part equals the built-in PN with the same mask.
    builtin = pn(logits, labels, pi=0.05, slack=1.0, weights=weights)
    assert float(out.metrics["loss"]) == pytest.approx(float(builtin.objective), rel=1e-6)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_such_module_jaxpick:fn", "cannot import module 'no_such_module_jaxpick'"),
        ("tests.losses.custom_loss_example:nope", "has no attribute 'nope'"),
        ("tests.losses.custom_loss_example:HEADER", "is not callable"),
        (":my_loss", "not of the form"),
        ("tests.losses.custom_loss_example:", "not of the form"),
        ("tests.losses.test_registry:bad_header", "header must contain 'loss'"),
        ("tests.losses.test_registry:bad_header_str", "header must be a sequence"),
        ("tests.losses.test_registry:bad_prior", "prior must be one of"),
        ("tests.losses.test_registry:bad_slack", "default_slack must be a finite number"),
        ("tests.losses.test_registry:bad_flag", "supports_autoencoder must be True or False"),
    ],
)
def test_custom_loss_errors(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match="--method") as info:
        get_objective(spec)
    assert message in str(info.value)


def _loss(logits: jax.Array, labels: jax.Array, *, pi: float, slack: float, weights=None):
    return pn(logits, labels, pi=pi, slack=slack, weights=weights)


# Custom losses with invalid override attributes (looked up by module path in the test above).
def bad_header(*args, **kwargs):
    return _loss(*args, **kwargs)


bad_header.header = ("precision", "tpr")  # type: ignore[attr-defined]


def bad_header_str(*args, **kwargs):
    return _loss(*args, **kwargs)


bad_header_str.header = "loss"  # type: ignore[attr-defined]


def bad_prior(*args, **kwargs):
    return _loss(*args, **kwargs)


bad_prior.prior = "unlabelled"  # type: ignore[attr-defined]


def bad_slack(*args, **kwargs):
    return _loss(*args, **kwargs)


bad_slack.default_slack = float("nan")  # type: ignore[attr-defined]


def bad_flag(*args, **kwargs):
    return _loss(*args, **kwargs)


bad_flag.supports_autoencoder = "no"  # type: ignore[attr-defined]


def test_register_objective(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    mine = Objective("Balanced-PN", _loss, default_slack=2.0)
    register_objective(mine)
    assert get_objective("balanced-pn") == dataclasses.replace(mine, name="balanced-pn")
    assert "Balanced-PN" in available_objectives()
    with pytest.raises(ConfigError, match="--method"):
        register_objective(Objective("a:b", _loss))
    with pytest.raises(ConfigError, match="--method"):
        register_objective(Objective("  ", _loss))


def test_register_objective_is_isolated() -> None:
    """The test above left the registry as it was."""
    with pytest.raises(ConfigError):
        get_objective("Balanced-PN")


@pytest.mark.parametrize(
    ("slack", "method", "want"),
    [
        (-1.0, "GE-KL", 10.0),
        (-1.0, "GE-binomial", 1.0),
        (-1.0, "PN", 1.0),
        (-0.5, "PU", 1.0),
        (0.0, "GE-KL", 0.0),
        (3.5, "GE-binomial", 3.5),
    ],
)
def test_resolve_slack(slack: float, method: str, want: float) -> None:
    assert resolve_slack(get_objective(method), slack) == want


def test_resolve_slack_rejects_nan() -> None:
    with pytest.raises(ConfigError, match="--slack"):
        resolve_slack(get_objective("PN"), float("nan"))


@pytest.mark.parametrize("method", ["GE-binomial", "GE-KL"])
def test_effective_prior_unlabeled(method: str) -> None:
    objective = get_objective(method)
    used, prior, warning = effective_prior(objective, 0.5, 0.125)
    assert used is objective
    assert prior == 0.375
    assert warning is None


@pytest.mark.parametrize("method", ["GE-binomial", "GE-KL"])
@pytest.mark.parametrize("pi", [0.01, 0.02])
def test_effective_prior_falls_back_to_pn(method: str, pi: float) -> None:
    used, prior, warning = effective_prior(get_objective(method), pi, 0.02)
    assert used.name == "PN"
    assert used.fn is pn
    assert prior == 0.02
    assert warning is not None
    assert f"pi={pi}" in warning
    assert method in warning
    assert "PN with pi=0.02" in warning


@pytest.mark.parametrize("method", ["PN", "PU", CUSTOM])
def test_effective_prior_total(method: str) -> None:
    objective = get_objective(method)
    assert effective_prior(objective, 0.01, 0.02) == (objective, 0.01, None)


@pytest.mark.parametrize("pi", [-0.1, 1.5, float("nan")])
def test_effective_prior_rejects_bad_pi(pi: float) -> None:
    with pytest.raises(ConfigError, match="--pi"):
        effective_prior(get_objective("PN"), pi, 0.01)
