"""Topaz's positive-unlabelled objectives (``topaz/methods.py``): PN, GE-binomial, GE-KL, nnPU.

Every objective has the same signature::

    fn(logits, labels, *, pi, slack, weights=None) -> LossOutput

``logits`` are the classifier's raw scores of one minibatch, ``labels`` mark the labelled
positives (P, nonzero) and the unlabelled samples (U, zero), ``weights`` is an optional 0/1 mask
of valid samples so that callers can pad a minibatch to a fixed size: a masked sample changes
neither the value nor the gradient (its gradient is exactly zero). ``pi`` is the prior the
objective uses: for the GE methods it is already ``pi' = pi - p_observed`` (see
:func:`jaxpick.losses.effective_prior`). ``slack`` is already resolved from its default.

Each returns a :class:`LossOutput`: the scalar ``objective`` to differentiate (without the
autoencoder and L2 terms, which the trainer adds) and the float32 ``metrics`` Topaz reports for
the step: ``loss`` (and ``ge_penalty`` for the GE methods), ``precision``, ``tpr`` and ``fpr``.

Reported values follow Topaz exactly, including its quirks:

- for GE-binomial and GE-KL the reported ``loss`` is the classifier term ``BCE(s_P, 1)`` alone;
  the GE term is reported separately as ``ge_penalty``;
- GE-binomial reports ``ge_penalty`` *before* it is multiplied by ``slack``; GE-KL reports it
  *after* (Topaz folds the slack into GE-KL's penalty);
- nnPU reports ``pi * L_pp`` when ``L_u < 0`` (it then descends on ``-L_u``);
- a mean over an empty set (a batch with no positives, or no unlabelled samples) is NaN in the
  reported values, as in torch.

The *objective* is always finite and has a finite gradient: where Topaz's loss contains a NaN
mean over an empty set, that term contributes nothing to torch's gradient, so here it is
replaced by zero (masked means with safe denominators, selected with ``jnp.where``). The
gradient therefore equals Topaz's in every case, and the objective equals Topaz's loss whenever
the latter is finite.

All objectives are pure ``jnp`` with static shapes (the GE-binomial count table spans
``k = 0..B`` for a batch of ``B``), jit- and vmap-able, float32 throughout.

Examples:
  >>> import jax.numpy as jnp
  >>> logits = jnp.linspace(-3.0, 1.0, 18)
  >>> labels = jnp.zeros(18, jnp.int32).at[jnp.array([5, 17])].set(1)
  >>> out = pn(logits, labels, pi=0.05, slack=1.0)
  >>> round(float(out.metrics["loss"]), 5)
  0.45492
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import betaln, xlog1py, xlogy
from jax.typing import ArrayLike

#: Added to the GE-binomial variance before dividing by it, as in Topaz.
GE_BINOMIAL_EPS = 1e-10


class LossOutput(NamedTuple):
    """What an objective returns (a pytree).

    Attributes:
      objective: the float32 scalar to differentiate (without the autoencoder and L2 terms).
      metrics: float32 scalars reported for the step: always ``loss`` (the value Topaz reports),
        ``precision``, ``tpr``, ``fpr``, and ``ge_penalty`` for the GE methods.
    """

    objective: jax.Array
    metrics: dict[str, jax.Array]


class _Batch(NamedTuple):
    """One minibatch split into its masked parts (internal)."""

    logits: jax.Array  # float32 [B]; masked samples replaced by 0 so they cannot inject NaN
    positive: jax.Array  # bool [B], valid labelled positives
    unlabeled: jax.Array  # bool [B], valid unlabelled samples
    valid: jax.Array  # bool [B]


def _batch(logits: ArrayLike, labels: ArrayLike, weights: ArrayLike | None) -> _Batch:
    logits = jnp.asarray(logits, jnp.float32)
    labels = jnp.asarray(labels)
    if logits.ndim != 1:
        raise ValueError(f"logits must be one-dimensional [B], got shape {logits.shape}")
    if labels.shape != logits.shape:
        raise ValueError(f"labels must have the shape of logits {logits.shape}, got {labels.shape}")
    if weights is None:
        valid = jnp.ones(logits.shape, bool)
    else:
        weights = jnp.asarray(weights)
        if weights.shape != logits.shape:
            raise ValueError(
                f"weights must have the shape of logits {logits.shape}, got {weights.shape}"
            )
        valid = weights != jnp.zeros((), weights.dtype)
    is_positive = labels != jnp.zeros((), labels.dtype)
    # A padded slot may hold anything (even NaN); replacing it keeps its gradient exactly zero.
    safe = jnp.where(valid, logits, jnp.zeros((), jnp.float32))
    return _Batch(safe, valid & is_positive, valid & ~is_positive, valid)


def _count(mask: jax.Array) -> jax.Array:
    return jnp.sum(mask, dtype=jnp.float32)


def _mean(values: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Masked mean: ``(safe, reported)``; safe is 0 and reported NaN when the mask is empty."""
    n = _count(mask)
    total = jnp.sum(jnp.where(mask, values, jnp.zeros((), values.dtype)))
    safe = total / jnp.maximum(n, 1.0)
    reported = jnp.where(n > 0, safe, jnp.float32(jnp.nan))
    return safe, reported


def _bce_one(s: jax.Array) -> jax.Array:
    """Binary cross-entropy of logits against label 1 (torch's stable form)."""
    return jax.nn.softplus(-s)


def _bce_zero(s: jax.Array) -> jax.Array:
    """Binary cross-entropy of logits against label 0."""
    return jax.nn.softplus(s)


def classification_metrics(
    logits: ArrayLike, labels: ArrayLike, *, weights: ArrayLike | None = None
) -> dict[str, jax.Array]:
    """Topaz's per-step metrics on ``sigma(logits)`` of the whole (valid) batch.

    ``precision = sum_P sigma / sum_all sigma``, ``tpr = mean_P sigma``, ``fpr = mean_U sigma``
    (NaN when P or U is empty, as in Topaz). Not differentiated. For custom objectives.

    Args:
      logits: float32 scores ``[B]``.
      labels: ``[B]``, nonzero = labelled positive, zero = unlabelled.
      weights: optional 0/1 mask ``[B]`` of valid samples (``None``: all valid).

    Returns:
      float32 scalars ``precision``, ``tpr``, ``fpr``.

    Raises:
      ValueError: ``logits`` not one-dimensional, or ``labels``/``weights`` of another shape.
    """
    return _metrics(_batch(logits, labels, weights))


def _metrics(batch: _Batch) -> dict[str, jax.Array]:
    p = jax.nn.sigmoid(jax.lax.stop_gradient(batch.logits))
    zero = jnp.zeros((), jnp.float32)
    sum_p = jnp.sum(jnp.where(batch.positive, p, zero))
    sum_all = jnp.sum(jnp.where(batch.valid, p, zero))
    precision = jnp.where(sum_all > 0, sum_p / jnp.where(sum_all > 0, sum_all, 1.0), jnp.nan)
    _, tpr = _mean(p, batch.positive)
    _, fpr = _mean(p, batch.unlabeled)
    return {"precision": precision, "tpr": tpr, "fpr": fpr}


def pn(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    pi: ArrayLike,
    slack: ArrayLike = 1.0,
    weights: ArrayLike | None = None,
) -> LossOutput:
    """Positive-negative learning: unlabelled samples are negatives, classes weighted by ``pi``.

    ``L = pi * BCE(s_P, 1) + (1 - pi) * BCE(s_U, 0)``; reported ``loss = L`` (NaN when the
    batch has no positive or no unlabelled sample, as in Topaz; the objective then keeps the
    finite term).

    Args:
      logits: float32 scores ``[B]``.
      labels: ``[B]``, nonzero = labelled positive, zero = unlabelled.
      pi: the positive-class weight (the total prior pi).
      slack: unused (the common signature).
      weights: optional 0/1 mask ``[B]`` of valid samples (``None``: all valid).

    Returns:
      :class:`LossOutput` with metrics ``loss``, ``precision``, ``tpr``, ``fpr``.

    Raises:
      ValueError: ``logits`` not one-dimensional, or ``labels``/``weights`` of another shape.
    """
    del slack
    batch = _batch(logits, labels, weights)
    pi = jnp.asarray(pi, jnp.float32)
    pos_safe, pos = _mean(_bce_one(batch.logits), batch.positive)
    neg_safe, neg = _mean(_bce_zero(batch.logits), batch.unlabeled)
    objective = pi * pos_safe + (1 - pi) * neg_safe
    loss = pi * pos + (1 - pi) * neg
    return LossOutput(objective, {"loss": loss, **_metrics(batch)})


def _log_binomial_pmf(k: jax.Array, n: jax.Array, pi: jax.Array) -> jax.Array:
    """``log Binom(k; n, pi)`` for ``0 <= k <= n`` (float32; undefined elsewhere).

    ``log C(n, k) = -log(n + 1) - log B(n - k + 1, k + 1)``: ``betaln`` is several times more
    accurate in float32 than a difference of three ``gammaln`` of size ~n log n.
    """
    k_safe = jnp.minimum(k, n)
    log_choose = -jnp.log(n + 1) - betaln(n - k_safe + 1, k_safe + 1)
    return log_choose + xlogy(k_safe, pi) + xlog1py(n - k_safe, -pi)


def _ge_binomial_penalty(batch: _Batch, pi: jax.Array) -> jax.Array:
    """``-sum_k q_k log Binom(k; N_U, pi)`` with q the discretised normal approximation."""
    p = jax.nn.sigmoid(batch.logits)
    zero = jnp.zeros((), jnp.float32)
    mu = jnp.sum(jnp.where(batch.unlabeled, p, zero))
    var = jnp.sum(jnp.where(batch.unlabeled, p * (1 - p), zero))
    n = _count(batch.unlabeled)
    # The table covers every possible count 0..B (static shape); counts above N_U are masked.
    k = jnp.arange(batch.logits.shape[0] + 1, dtype=jnp.float32)
    inside = k <= n
    scores = -0.5 * jnp.square(mu - k) / (var + GE_BINOMIAL_EPS)
    q = jax.nn.softmax(jnp.where(inside, scores, -jnp.inf))
    log_binom = jnp.where(inside, _log_binomial_pmf(k, n, pi), zero)
    return -jnp.sum(jnp.where(inside, q * log_binom, zero))


def ge_binomial(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    pi: ArrayLike,
    slack: ArrayLike = 1.0,
    weights: ArrayLike | None = None,
) -> LossOutput:
    """Generalized expectation with a binomial count prior (Topaz's default method).

    Over the ``N`` unlabelled samples, ``mu = sum sigma(s_U)``, ``v = sum sigma(1 - sigma)``,
    ``q_k = softmax_k(-(mu - k)^2 / (2 (v + 1e-10)))`` for ``k = 0..N`` and
    ``GE = -sum_k q_k log Binom(k; N, pi)``. Objective ``BCE(s_P, 1) + slack * GE``.

    Reported (as Topaz): ``loss = BCE(s_P, 1)`` (the classifier term only; NaN without
    positives) and ``ge_penalty = GE`` *not* multiplied by ``slack``.

    Args:
      logits: float32 scores ``[B]``.
      labels: ``[B]``, nonzero = labelled positive, zero = unlabelled.
      pi: expected positive fraction among the *unlabelled* samples (pi' = pi - p_observed).
      slack: weight of the GE term (Topaz's default 1).
      weights: optional 0/1 mask ``[B]`` of valid samples (``None``: all valid).

    Returns:
      :class:`LossOutput` with metrics ``loss``, ``ge_penalty``, ``precision``, ``tpr``,
      ``fpr``.

    Raises:
      ValueError: ``logits`` not one-dimensional, or ``labels``/``weights`` of another shape.
    """
    batch = _batch(logits, labels, weights)
    pi = jnp.asarray(pi, jnp.float32)
    slack = jnp.asarray(slack, jnp.float32)
    cls_safe, cls = _mean(_bce_one(batch.logits), batch.positive)
    ge = _ge_binomial_penalty(batch, pi)
    objective = cls_safe + slack * ge
    return LossOutput(objective, {"loss": cls, "ge_penalty": ge, **_metrics(batch)})


def ge_kl(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    pi: ArrayLike,
    slack: ArrayLike = 10.0,
    weights: ArrayLike | None = None,
) -> LossOutput:
    """Generalized expectation with a KL penalty on the mean unlabelled posterior.

    ``p = mean sigma(s_U)``, ``GE = slack * KL(pi || p) = slack * [-pi log p - (1 - pi)
    log(1 - p) + pi log pi + (1 - pi) log(1 - pi)]``; objective ``BCE(s_P, 1) + GE``. The logs
    of ``p`` are computed as log-mean-exp of log-sigmoids, so saturated logits stay finite.

    Reported (as Topaz): ``loss = BCE(s_P, 1)`` (the classifier term only) and
    ``ge_penalty = GE`` *including* ``slack``; both NaN when their set is empty.

    Args:
      logits: float32 scores ``[B]``.
      labels: ``[B]``, nonzero = labelled positive, zero = unlabelled.
      pi: expected positive fraction among the *unlabelled* samples (pi' = pi - p_observed).
      slack: weight of the KL term (Topaz's default 10).
      weights: optional 0/1 mask ``[B]`` of valid samples (``None``: all valid).

    Returns:
      :class:`LossOutput` with metrics ``loss``, ``ge_penalty``, ``precision``, ``tpr``,
      ``fpr``.

    Raises:
      ValueError: ``logits`` not one-dimensional, or ``labels``/``weights`` of another shape.
    """
    batch = _batch(logits, labels, weights)
    pi = jnp.asarray(pi, jnp.float32)
    slack = jnp.asarray(slack, jnp.float32)
    cls_safe, cls = _mean(_bce_one(batch.logits), batch.positive)
    n = _count(batch.unlabeled)
    log_n = jnp.log(jnp.maximum(n, 1.0))
    has_u = jnp.any(batch.unlabeled)
    # Without unlabelled samples the logsumexp would be -inf; feed it a harmless mask instead.
    mask = batch.unlabeled | ~has_u
    log_p = jax.nn.logsumexp(jax.nn.log_sigmoid(batch.logits), where=mask) - log_n
    log_1mp = jax.nn.logsumexp(jax.nn.log_sigmoid(-batch.logits), where=mask) - log_n
    entropy = xlogy(pi, pi) + xlog1py(1 - pi, -pi)
    kl = -pi * log_p - (1 - pi) * log_1mp + entropy
    ge_safe = jnp.where(has_u, slack * kl, jnp.zeros((), jnp.float32))
    ge = jnp.where(has_u, ge_safe, jnp.float32(jnp.nan))
    objective = cls_safe + ge_safe
    return LossOutput(objective, {"loss": cls, "ge_penalty": ge, **_metrics(batch)})


def nnpu(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    pi: ArrayLike,
    slack: ArrayLike = 1.0,
    weights: ArrayLike | None = None,
) -> LossOutput:
    """Non-negative PU learning (Kiryo et al. 2017, beta = 0), Topaz's ``PU`` method.

    ``L_pp = BCE(s_P, 1)``, ``L_pn = BCE(s_P, 0)``, ``L_un = BCE(s_U, 0)``,
    ``L_u = L_un - pi * L_pn``. When ``L_u < 0`` the objective is ``-L_u`` (a step that pushes
    the unlabelled risk back up) and the reported loss ``pi * L_pp``; otherwise both are
    ``pi * L_pp + L_u``. As in Topaz, an ``L_u`` that is NaN (no positive or no unlabelled
    sample in the batch) takes the second branch.

    Args:
      logits: float32 scores ``[B]``.
      labels: ``[B]``, nonzero = labelled positive, zero = unlabelled (positives included).
      pi: the total prior pi.
      slack: unused (the common signature).
      weights: optional 0/1 mask ``[B]`` of valid samples (``None``: all valid).

    Returns:
      :class:`LossOutput` with metrics ``loss``, ``precision``, ``tpr``, ``fpr``.

    Raises:
      ValueError: ``logits`` not one-dimensional, or ``labels``/``weights`` of another shape.
    """
    del slack
    batch = _batch(logits, labels, weights)
    pi = jnp.asarray(pi, jnp.float32)
    pp_safe, pp = _mean(_bce_one(batch.logits), batch.positive)
    pn_safe, pn_ = _mean(_bce_zero(batch.logits), batch.positive)
    un_safe, un = _mean(_bce_zero(batch.logits), batch.unlabeled)
    lu_safe = un_safe - pi * pn_safe
    lu = un - pi * pn_
    clipped = lu < 0  # False for NaN, as Topaz's `loss_u.item() < -beta`
    objective = jnp.where(clipped, -lu_safe, pi * pp_safe + lu_safe)
    loss = jnp.where(clipped, pi * pp, pi * pp + lu)
    return LossOutput(objective, {"loss": loss, **_metrics(batch)})
