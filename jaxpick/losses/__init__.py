"""Training objectives: Topaz's positive-unlabelled losses and the registry of methods.

Public API:

- the objectives :func:`pn`, :func:`ge_binomial`, :func:`ge_kl`, :func:`nnpu`, all
  ``fn(logits, labels, *, pi, slack, weights=None) -> LossOutput``, and
  :func:`classification_metrics` (the per-step precision/tpr/fpr, for custom objectives);
- :class:`Objective`, :func:`get_objective` (``--method`` values, including
  ``package.module:function``), :func:`register_objective`, :func:`effective_prior`,
  :func:`resolve_slack`.
"""

from jaxpick.losses.pu import LossOutput, classification_metrics, ge_binomial, ge_kl, nnpu, pn
from jaxpick.losses.registry import (
    DEFAULT_HEADER,
    GE_HEADER,
    Objective,
    available_objectives,
    effective_prior,
    get_objective,
    register_objective,
    resolve_slack,
)

__all__ = [
    "DEFAULT_HEADER",
    "GE_HEADER",
    "LossOutput",
    "Objective",
    "available_objectives",
    "classification_metrics",
    "effective_prior",
    "ge_binomial",
    "ge_kl",
    "get_objective",
    "nnpu",
    "pn",
    "register_objective",
    "resolve_slack",
]
