"""An example of a training objective of one's own, for ``jaxpick train --method``.

Select it with ``--method tests.losses.custom_loss_example:my_loss`` (any importable
``package.module:function`` works). The function has the signature of the built-in objectives
(:func:`jaxpick.losses.pn`): it gets the minibatch's logits, labels (1 = labelled positive,
0 = unlabelled), the prior ``pi`` (may be a traced scalar), the resolved ``slack`` and an
optional 0/1 ``weights`` mask of valid samples (padding), and returns a
:class:`jaxpick.losses.LossOutput`. It must be pure ``jnp`` (it is traced inside the jitted
training step) and give finite gradients; masked samples must not affect the result.

Optional attributes on the function override the defaults of its
:class:`jaxpick.losses.Objective`: ``header`` (the TSV columns; every one except
``adjusted_precision`` must be a key of the returned metrics, and ``loss`` is required),
``default_slack`` (used when ``--slack`` is negative), ``prior`` (``"total"``: ``pi`` as given;
``"unlabeled"``: ``pi - p_observed``, with the fallback to PN), ``excludes_positives`` and
``supports_autoencoder``.

This one is PN plus ``slack`` times the squared gap between the mean predicted probability of
the unlabelled samples and ``pi``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxpick.losses import LossOutput, classification_metrics


def my_loss(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    pi: ArrayLike,
    slack: ArrayLike,
    weights: ArrayLike | None = None,
) -> LossOutput:
    """PN with a squared penalty on the unlabelled samples' mean probability minus ``pi``.

    Args:
      logits: float32 scores ``[B]``.
      labels: ``[B]``, 1 = labelled positive, 0 = unlabelled.
      pi: the prior.
      slack: weight of the penalty.
      weights: optional 0/1 mask ``[B]`` of valid samples.

    Returns:
      The objective and the metrics ``loss``, ``prior_gap``, ``precision``, ``tpr``, ``fpr``.
    """
    logits = jnp.asarray(logits, jnp.float32)
    valid = jnp.ones(logits.shape, bool) if weights is None else jnp.asarray(weights) > 0
    positive = valid & (jnp.asarray(labels) > 0)
    unlabeled = valid & ~positive
    zero = jnp.zeros((), jnp.float32)
    s = jnp.where(valid, logits, zero)  # padded slots may hold anything

    def mean(values: jax.Array, mask: jax.Array) -> jax.Array:
        # Safe denominator: an empty set gives 0, never NaN, so gradients stay finite.
        total = jnp.sum(jnp.where(mask, values, zero))
        return total / jnp.maximum(jnp.sum(mask, dtype=jnp.float32), 1.0)

    pi = jnp.asarray(pi, jnp.float32)
    pn_loss = pi * mean(jax.nn.softplus(-s), positive) + (1 - pi) * mean(
        jax.nn.softplus(s), unlabeled
    )
    gap = jnp.square(mean(jax.nn.sigmoid(s), unlabeled) - pi)
    objective = pn_loss + jnp.asarray(slack, jnp.float32) * gap
    metrics = {
        "loss": pn_loss,
        "prior_gap": gap,
        **classification_metrics(logits, labels, weights=weights),
    }
    return LossOutput(objective, metrics)


HEADER = ("loss", "prior_gap", "precision", "adjusted_precision", "tpr", "fpr")

my_loss.header = HEADER  # type: ignore[attr-defined]
my_loss.default_slack = 5.0  # type: ignore[attr-defined]
my_loss.prior = "total"  # type: ignore[attr-defined]
