"""Topaz's PU objectives (``jaxpick.losses.pu``) against Topaz's ``topaz/methods.py``.

Reference numbers come from the spec (section 3.3) and from ``tests/data/topaz_losses.npz``
(``tests/data/make_topaz_loss_fixtures.py``: one ``topaz.methods`` step per case, reported
values and d loss / d logits).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpick.losses import LossOutput, classification_metrics, ge_binomial, ge_kl, nnpu, pn

FIXTURES = np.load(Path(__file__).resolve().parent.parent / "data" / "topaz_losses.npz")
CASES = [str(c) for c in FIXTURES["cases"]]

FNS: dict[str, Callable[..., LossOutput]] = {
    "PN": pn,
    "GE-binomial": ge_binomial,
    "GE-KL": ge_kl,
    "PU": nnpu,
}
#: Metric keys in the order ``topaz.methods.*.step`` returns them.
ORDER = {
    "PN": ("loss", "precision", "tpr", "fpr"),
    "PU": ("loss", "precision", "tpr", "fpr"),
    "GE-binomial": ("loss", "ge_penalty", "precision", "tpr", "fpr"),
    "GE-KL": ("loss", "ge_penalty", "precision", "tpr", "fpr"),
}
SLACK = {"PN": 1.0, "GE-binomial": 1.0, "GE-KL": 10.0, "PU": 1.0}


def spec_batch() -> tuple[jax.Array, jax.Array]:
    logits = jnp.linspace(-3.0, 1.0, 18, dtype=jnp.float32)
    labels = jnp.zeros(18, jnp.int32).at[jnp.array([5, 17])].set(1)
    return logits, labels


def case(name: str) -> tuple[str, float, float, np.ndarray, np.ndarray]:
    return (
        str(FIXTURES[f"{name}/method"]),
        float(FIXTURES[f"{name}/pi"]),
        float(FIXTURES[f"{name}/slack"]),
        FIXTURES[f"{name}/logits"],
        FIXTURES[f"{name}/labels"],
    )


@jax.jit
def _value_and_grad_all(
    logits: jax.Array, labels: jax.Array, weights: jax.Array, pi: jax.Array, slack: jax.Array
) -> dict[str, tuple[jax.Array, dict[str, jax.Array], jax.Array]]:
    """Every objective's (objective, metrics, gradient), one compilation per batch shape."""
    out = {}
    for name, fn in FNS.items():

        def objective(s: jax.Array, fn: Callable[..., LossOutput] = fn) -> tuple:
            res = fn(s, labels, pi=pi, slack=slack, weights=weights)
            return res.objective, res.metrics

        (value, metrics), grad = jax.value_and_grad(objective, has_aux=True)(logits)
        out[name] = (value, metrics, grad)
    return out


def run(
    method: str,
    logits: np.ndarray | jax.Array | list[float],
    labels: np.ndarray | jax.Array | list[int],
    *,
    pi: float,
    slack: float,
    weights: np.ndarray | jax.Array | list[float] | None = None,
) -> tuple[float, dict[str, float], np.ndarray]:
    """(objective, metrics, d objective / d logits) of one method.

    The batch is padded with masked slots to a multiple of 32, so that all cases share a few
    compilations (and padding is exercised everywhere); the gradient is returned unpadded.
    """
    logits = np.asarray(logits, np.float32)
    n = len(logits)
    weights = np.ones(n, np.float32) if weights is None else np.asarray(weights, np.float32)
    extra = -n % 32
    junk = np.resize(np.array([7.0, -5.0, np.nan, 0.5], np.float32), extra)
    out = _value_and_grad_all(
        jnp.asarray(np.concatenate([logits, junk])),
        jnp.asarray(np.concatenate([np.asarray(labels, np.int32), np.arange(extra) % 2])),
        jnp.asarray(np.concatenate([weights, np.zeros(extra, np.float32)])),
        jnp.float32(pi),
        jnp.float32(slack),
    )
    value, metrics, grad = out[method]
    grad = np.asarray(grad)
    np.testing.assert_array_equal(grad[n:], 0)
    return float(value), {k: float(v) for k, v in metrics.items()}, grad[:n]


# --- the spec's reference values (section 3.3) ---------------------------------------------


def test_spec_pn() -> None:
    logits, labels = spec_batch()
    out = pn(logits, labels, pi=0.05, slack=1.0)
    got = [float(out.metrics[k]) for k in ("loss", "precision", "tpr", "fpr")]
    np.testing.assert_allclose(got, [0.454920, 0.150868, 0.435035, 0.306063], atol=1e-6)
    assert float(out.objective) == pytest.approx(0.454920, abs=1e-6)


def test_spec_ge_binomial() -> None:
    # The spec passes pi = 0.05 straight to Topaz's GE_binomial, i.e. as pi' (the trainer would
    # pass pi - p_observed). The reported loss is BCE(s_P, 1) alone, without the GE term.
    logits, labels = spec_batch()
    out = ge_binomial(logits, labels, pi=0.05, slack=1.0)
    assert float(out.metrics["loss"]) == pytest.approx(1.143232, abs=1e-6)
    assert float(out.metrics["ge_penalty"]) == pytest.approx(7.319778, abs=2e-6)
    assert float(out.objective) == pytest.approx(1.143232 + 7.319778, abs=3e-6)


def test_spec_ge_kl() -> None:
    # pi = 0.05 used directly as pi'; ge_penalty already includes slack = 10 (unlike
    # GE-binomial), and the reported loss is the same classifier term as GE-binomial's.
    logits, labels = spec_batch()
    out = ge_kl(logits, labels, pi=0.05, slack=10.0)
    assert float(out.metrics["loss"]) == pytest.approx(1.143232, abs=1e-6)
    assert float(out.metrics["ge_penalty"]) == pytest.approx(2.077885, abs=2e-6)
    assert float(out.objective) == pytest.approx(1.143232 + 2.077885, abs=3e-6)


def test_spec_nnpu() -> None:
    logits, labels = spec_batch()
    out = nnpu(logits, labels, pi=0.05, slack=1.0)
    assert float(out.metrics["loss"]) == pytest.approx(0.439282, abs=1e-6)
    assert float(out.objective) == pytest.approx(0.439282, abs=1e-6)


@pytest.mark.parametrize("method", list(FNS))
def test_spec_metrics_shared(method: str) -> None:
    logits, labels = spec_batch()
    out = FNS[method](logits, labels, pi=0.05, slack=SLACK[method])
    got = [float(out.metrics[k]) for k in ("precision", "tpr", "fpr")]
    np.testing.assert_allclose(got, [0.150868, 0.435035, 0.306063], atol=1e-6)
    assert set(out.metrics) == set(ORDER[method])
    for value in out.metrics.values():
        assert value.dtype == jnp.float32
        assert value.shape == ()
    assert out.objective.dtype == jnp.float32
    assert out.objective.shape == ()


# --- Topaz parity on every stored case ------------------------------------------------------


@pytest.mark.parametrize("name", CASES)
def test_topaz_parity(name: str) -> None:
    method, pi, slack, logits, labels = case(name)
    _, metrics, grad = run(method, logits, labels, pi=pi, slack=slack)
    want = FIXTURES[f"{name}/reported"]
    got = np.array([metrics[k] for k in ORDER[method]])
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"NaN pattern {got}")
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6, equal_nan=True)
    want_grad = FIXTURES[f"{name}/grad"]
    scale = max(float(np.abs(want_grad).max()), 1e-6)
    np.testing.assert_allclose(grad, want_grad, rtol=0, atol=2e-5 * scale)


# nnPU's objective differs from its reported loss when clipped: its own tests below.
@pytest.mark.parametrize("name", [c for c in CASES if str(FIXTURES[f"{c}/method"]) != "PU"])
def test_objective_matches_reported(name: str) -> None:
    """The objective is Topaz's backpropagated loss whenever that is finite."""
    method, pi, slack, logits, labels = case(name)
    value, metrics, _ = run(method, logits, labels, pi=pi, slack=slack)
    assert math.isfinite(value)
    if method == "GE-binomial":
        expected = metrics["loss"] + slack * metrics["ge_penalty"]
    elif method == "GE-KL":
        expected = metrics["loss"] + metrics["ge_penalty"]
    else:
        expected = metrics["loss"]
    if math.isfinite(expected):
        assert value == pytest.approx(expected, rel=1e-6, abs=1e-6)


def test_nnpu_clipped_branch() -> None:
    method, pi, _, logits, labels = case("PU_clipped")
    value, metrics, _ = run(method, logits, labels, pi=pi, slack=1.0)
    s = logits.astype(np.float64)
    pos, unl = labels == 1, labels == 0
    l_pp = np.mean(np.logaddexp(0, -s[pos]))
    l_pn = np.mean(np.logaddexp(0, s[pos]))
    l_un = np.mean(np.logaddexp(0, s[unl]))
    l_u = l_un - pi * l_pn
    assert l_u < 0
    assert value == pytest.approx(-l_u, rel=1e-5)
    assert metrics["loss"] == pytest.approx(pi * l_pp, rel=1e-5)


def test_nnpu_unclipped_branch() -> None:
    method, pi, _, logits, labels = case("b64_PU")
    value, metrics, _ = run(method, logits, labels, pi=pi, slack=1.0)
    assert value == pytest.approx(metrics["loss"], rel=1e-6)


# --- empty sets: NaN reported as Topaz, finite objective and gradient ------------------------


@pytest.mark.parametrize("method", list(FNS))
@pytest.mark.parametrize(
    ("labels", "nan_keys"),
    [
        (np.zeros(12, np.int32), {"PN": {"loss", "tpr"}, "PU": {"loss", "tpr"}}),
        (
            np.ones(12, np.int32),
            {"PN": {"loss", "fpr"}, "PU": {"loss", "fpr"}, "GE-KL": {"ge_penalty", "fpr"}},
        ),
    ],
    ids=["no-positives", "all-positive"],
)
def test_empty_sets(method: str, labels: np.ndarray, nan_keys: dict[str, set[str]]) -> None:
    logits = np.linspace(-4, 2, 12, dtype=np.float32)
    value, metrics, grad = run(method, logits, labels, pi=0.1, slack=SLACK[method])
    assert math.isfinite(value)
    assert np.isfinite(grad).all()
    no_positives = not labels.any()
    expected_nan = set(nan_keys.get(method, set()))
    if method.startswith("GE"):
        expected_nan |= {"loss", "tpr"} if no_positives else {"fpr"}
    assert {k for k, v in metrics.items() if math.isnan(v)} == expected_nan


@pytest.mark.parametrize("method", list(FNS))
@pytest.mark.parametrize("label", [0, 1])
def test_single_sample(method: str, label: int) -> None:
    value, _, grad = run(method, [0.3], [label], pi=0.2, slack=SLACK[method])
    assert math.isfinite(value)
    assert np.isfinite(grad).all()


@pytest.mark.parametrize("method", list(FNS))
def test_all_masked(method: str) -> None:
    value, metrics, grad = run(
        method, [0.3, -1.0, 2.0], [1, 0, 0], pi=0.2, slack=SLACK[method], weights=[0, 0, 0]
    )
    assert math.isfinite(value)
    np.testing.assert_array_equal(grad, 0)
    assert math.isnan(metrics["tpr"])
    assert math.isnan(metrics["fpr"])


@pytest.mark.parametrize("method", list(FNS))
def test_saturated_logits(method: str) -> None:
    """Extreme scores (sigma exactly 0 or 1 in float32) keep the gradient finite."""
    logits = np.array([200.0, 50.0, -200.0, -120.0, -90.0, 30.0, -1e4, 1e4], np.float32)
    labels = np.array([1, 1, 0, 0, 0, 0, 0, 1], np.int32)
    value, _, grad = run(method, logits, labels, pi=0.05, slack=SLACK[method])
    assert math.isfinite(value)
    assert np.isfinite(grad).all()


# --- masking and padding ---------------------------------------------------------------------


@pytest.mark.parametrize("method", list(FNS))
def test_padding_changes_nothing(method: str) -> None:
    """Masked slots (holding anything, even NaN or inf) leave value and gradient unchanged."""
    _, pi, slack, logits, labels = case("b16_GE-binomial_slack2.5")
    value, metrics, grad = run(method, logits, labels, pi=pi, slack=slack)
    junk = np.array([np.nan, np.inf, -np.inf, 50.0, -3.0, 0.0, 1e30, -7.0], np.float32)
    junk_labels = np.array([1, 0, 1, 0, 1, 0, 0, 1], np.int32)
    # Interleave the junk so padding is not only at the end.
    order = np.random.default_rng(0).permutation(len(logits) + len(junk))
    all_logits = np.concatenate([logits, junk])[order]
    all_labels = np.concatenate([labels, junk_labels])[order]
    weights = np.concatenate([np.ones(len(logits)), np.zeros(len(junk))])[order]
    p_value, p_metrics, p_grad = run(
        method, all_logits, all_labels, pi=pi, slack=slack, weights=weights
    )
    assert p_value == pytest.approx(value, rel=1e-6, abs=1e-7)
    for key in metrics:
        assert p_metrics[key] == pytest.approx(metrics[key], rel=1e-6, abs=1e-7, nan_ok=True)
    real = weights > 0
    np.testing.assert_array_equal(p_grad[~real], 0)
    # The unpadded order of the real samples is order[real] (sorted indices).
    np.testing.assert_allclose(p_grad[real], grad[order[real]], rtol=1e-5, atol=1e-8)


def test_weights_accept_bool_and_float() -> None:
    logits, labels = spec_batch()
    mask = jnp.arange(18) % 3 != 0
    a = pn(logits, labels, pi=0.05, slack=1.0, weights=mask)
    b = pn(logits, labels, pi=0.05, slack=1.0, weights=mask.astype(jnp.float32))
    c = pn(logits[mask], labels[mask], pi=0.05, slack=1.0)
    assert float(a.objective) == float(b.objective)
    assert float(a.objective) == pytest.approx(float(c.objective), rel=1e-6)


def test_bool_labels() -> None:
    logits, labels = spec_batch()
    for fn in FNS.values():
        a = fn(logits, labels, pi=0.05, slack=1.0)
        b = fn(logits, labels.astype(bool), pi=0.05, slack=1.0)
        assert float(a.objective) == float(b.objective)


# --- GE-binomial against a float64 reference of the formula ----------------------------------


def ge_binomial_reference(logits: np.ndarray, labels: np.ndarray, pi: float) -> float:
    s = logits[labels == 0].astype(np.float64)
    n = len(s)
    p = 1 / (1 + np.exp(-s))
    mu, var = p.sum(), (p * (1 - p)).sum()
    k = np.arange(n + 1)
    scores = -0.5 * (mu - k) ** 2 / (var + 1e-10)
    q = np.exp(scores - scores.max())
    q /= q.sum()
    log_choose = np.array(
        [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) for i in k]
    )
    log_binom = log_choose + k * np.log(pi) + (n - k) * np.log1p(-pi)
    return float(-(q * log_binom).sum())


@pytest.mark.parametrize(("b", "n_pos", "pi"), [(256, 16, 0.03), (256, 0, 0.2), (40, 39, 0.5)])
def test_ge_binomial_reference(b: int, n_pos: int, pi: float) -> None:
    rng = np.random.default_rng(b + n_pos)
    logits = (rng.normal(size=b) * 2 - 2).astype(np.float32)
    labels = np.zeros(b, np.int32)
    labels[rng.choice(b, n_pos, replace=False)] = 1
    # Pad with masked unlabelled slots: the count table must stop at the valid N_U.
    padded = np.concatenate([logits, np.zeros(20, np.float32)])
    padded_labels = np.concatenate([labels, np.zeros(20, np.int32)])
    weights = np.concatenate([np.ones(b), np.zeros(20)])
    _, metrics, _ = run("GE-binomial", padded, padded_labels, pi=pi, slack=1.0, weights=weights)
    want = ge_binomial_reference(logits, labels, pi)
    assert metrics["ge_penalty"] == pytest.approx(want, rel=1e-5, abs=1e-5)


def test_ge_kl_reference() -> None:
    _, _, _, logits, labels = case("b64_PN")
    pi, slack = 0.04, 3.0
    _, metrics, _ = run("GE-KL", logits, labels, pi=pi, slack=slack)
    p = np.mean(1 / (1 + np.exp(-logits[labels == 0].astype(np.float64))))
    kl = pi * np.log(pi / p) + (1 - pi) * np.log((1 - pi) / (1 - p))
    assert metrics["ge_penalty"] == pytest.approx(slack * kl, rel=1e-5)


# --- transformations and dtype rules -----------------------------------------------------------


@pytest.mark.parametrize("method", list(FNS))
def test_jit_vmap_traced_prior(method: str) -> None:
    rng = np.random.default_rng(1)
    logits = jnp.asarray(rng.normal(size=(3, 10)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 2, size=(3, 10)), jnp.int32)
    pis = jnp.array([0.05, 0.1, 0.3], jnp.float32)
    fn = FNS[method]

    @jax.jit
    def batched(logits: jax.Array, labels: jax.Array, pis: jax.Array) -> LossOutput:
        return jax.vmap(lambda s, y, p: fn(s, y, pi=p, slack=2.0))(logits, labels, pis)

    out = batched(logits, labels, pis)
    assert out.objective.shape == (3,)
    for i in range(3):
        single = fn(logits[i], labels[i], pi=float(pis[i]), slack=2.0)
        assert float(out.objective[i]) == pytest.approx(float(single.objective), rel=1e-6)
        for key, value in single.metrics.items():
            assert float(out.metrics[key][i]) == pytest.approx(float(value), rel=1e-6, nan_ok=True)


@pytest.mark.parametrize("method", list(FNS))
def test_strict_promotion(method: str) -> None:
    logits, labels = spec_batch()
    fn = FNS[method]
    weights = jnp.ones(18, jnp.float32)
    with jax.numpy_dtype_promotion("strict"), jax.numpy_rank_promotion("raise"):
        # Promotion rules apply while tracing, so compiling here checks every operation.
        out = jax.jit(lambda s: fn(s, labels, pi=0.05, slack=1.0, weights=weights))(logits)
        grad = jax.jit(jax.grad(lambda s: fn(s, labels, pi=0.05, slack=1.0).objective))(logits)
    assert out.objective.dtype == jnp.float32
    assert np.isfinite(np.asarray(grad)).all()


@pytest.mark.parametrize("method", list(FNS))
def test_shape_errors(method: str) -> None:
    with pytest.raises(ValueError, match="logits"):
        FNS[method](jnp.zeros((2, 3)), jnp.zeros((2, 3)), pi=0.1, slack=1.0)
    with pytest.raises(ValueError, match="labels"):
        FNS[method](jnp.zeros(3), jnp.zeros(4), pi=0.1, slack=1.0)
    with pytest.raises(ValueError, match="weights"):
        FNS[method](jnp.zeros(3), jnp.zeros(3), pi=0.1, slack=1.0, weights=jnp.ones(2))


def test_classification_metrics() -> None:
    logits, labels = spec_batch()
    metrics = classification_metrics(logits, labels)
    got = [float(metrics[k]) for k in ("precision", "tpr", "fpr")]
    np.testing.assert_allclose(got, [0.150868, 0.435035, 0.306063], atol=1e-6)
    no_pos = classification_metrics(logits, jnp.zeros(18, jnp.int32))
    assert float(no_pos["precision"]) == 0.0
    assert math.isnan(float(no_pos["tpr"]))
