"""Noise2Noise training losses (Topaz spec 6.3): L2, L1 and the annealed L0, pure ``jnp``.

Each loss compares a prediction with a target of the same shape and returns the mean over the
reduced axes (all by default), in float32:

- ``L2``: mean squared error (``torch.nn.MSELoss``);
- ``L1``: mean absolute error (``torch.nn.L1Loss``);
- ``L0``: mean of ``(|pred - target| + 1e-8) ** gamma`` (Topaz's ``L0Loss``), with ``gamma``
  annealed per epoch by :func:`l0_gamma`: ``2 - (e - 1) * 2 / num_epochs`` for the 0-based
  epoch ``e``, so the first epoch uses ``2 + 2 / num_epochs`` (slightly above 2, as in Topaz,
  whose formula is written for 1-based epochs but called with 0-based ones) and the last
  ``4 / num_epochs``.

``axis`` lets a caller keep the batch axis (``axis=(1, 2)`` on ``(B, H, W)``) to weight or
mask examples; :func:`criterion_loss` picks one of the three by name.

Examples:
  >>> import jax.numpy as jnp
  >>> float(l2_loss(jnp.zeros(4), jnp.full(4, 2.0)))
  4.0
  >>> float(l1_loss(jnp.zeros(4), jnp.full(4, 2.0)))
  2.0
  >>> l0_gamma(0, 10), l0_gamma(1, 10), l0_gamma(5, 10)
  (2.2, 2.0, 1.2)
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

__all__ = ["CRITERIA", "L0_EPS", "criterion_loss", "l0_gamma", "l0_loss", "l1_loss", "l2_loss"]

#: The ``--criteria`` names.
CRITERIA = ("L0", "L1", "L2")
#: Topaz's ``L0Loss`` epsilon.
L0_EPS = 1e-8

Axis = int | Sequence[int] | None


def _difference(pred: ArrayLike, target: ArrayLike) -> jax.Array:
    pred = jnp.asarray(pred, jnp.float32)
    target = jnp.asarray(target, jnp.float32)
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target must have the same shape, got {pred.shape} and {target.shape}"
        )
    return pred - target


def _axis(axis: Axis) -> int | tuple[int, ...] | None:
    return tuple(axis) if isinstance(axis, Sequence) else axis


def l2_loss(pred: ArrayLike, target: ArrayLike, *, axis: Axis = None) -> jax.Array:
    """Mean squared error, float32.

    Args:
      pred: the network output.
      target: the other noisy copy, same shape.
      axis: axes to average over (default: all).

    Returns:
      The mean over ``axis``.

    Raises:
      ValueError: ``pred`` and ``target`` differ in shape.
    """
    d = _difference(pred, target)
    return jnp.mean(d * d, axis=_axis(axis))


def l1_loss(pred: ArrayLike, target: ArrayLike, *, axis: Axis = None) -> jax.Array:
    """Mean absolute error, float32 (arguments as :func:`l2_loss`)."""
    return jnp.mean(jnp.abs(_difference(pred, target)), axis=_axis(axis))


def l0_loss(
    pred: ArrayLike,
    target: ArrayLike,
    gamma: ArrayLike,
    *,
    eps: float = L0_EPS,
    axis: Axis = None,
) -> jax.Array:
    """Topaz's L0 surrogate: the mean of ``(|pred - target| + eps) ** gamma``, float32.

    Args:
      pred, target: as :func:`l2_loss`.
      gamma: the exponent (a scalar, may be traced); see :func:`l0_gamma`.
      eps: added to the absolute difference (Topaz: 1e-8).
      axis: axes to average over (default: all).
    """
    d = jnp.abs(_difference(pred, target)) + jnp.float32(eps)
    return jnp.mean(d ** jnp.asarray(gamma, jnp.float32), axis=_axis(axis))


def l0_gamma(epoch: ArrayLike, num_epochs: int) -> jax.Array | float:
    """Topaz's L0 exponent for 0-based ``epoch``: ``2 - (epoch - 1) * 2 / num_epochs``.

    Python numbers give a Python float (bit-equal to Topaz's double arithmetic); arrays
    (e.g. an epoch derived from a traced step) give float32.

    Raises:
      ValueError: ``num_epochs`` is not a positive integer.
    """
    if not isinstance(num_epochs, int) or num_epochs < 1:
        raise ValueError(f"num_epochs must be a positive int, got {num_epochs!r}")
    if isinstance(epoch, int | float):
        return 2 - (epoch - 1) * 2 / num_epochs
    e = jnp.asarray(epoch).astype(jnp.float32)
    return jnp.float32(2) - (e - jnp.float32(1)) * jnp.float32(2 / num_epochs)


def criterion_loss(
    criterion: str,
    pred: ArrayLike,
    target: ArrayLike,
    *,
    gamma: ArrayLike = 2.0,
    axis: Axis = None,
) -> jax.Array:
    """The loss named by ``--criteria`` (``L0``, ``L1`` or ``L2``); ``gamma`` is used by L0 only.

    Raises:
      ValueError: unknown ``criterion``.
    """
    if criterion == "L2":
        return l2_loss(pred, target, axis=axis)
    if criterion == "L1":
        return l1_loss(pred, target, axis=axis)
    if criterion == "L0":
        return l0_loss(pred, target, gamma, axis=axis)
    raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
