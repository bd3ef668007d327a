"""Training objectives by name: Topaz's ``--method`` choices and user-supplied losses.

:func:`get_objective` resolves ``PN``, ``GE-binomial``, ``GE-KL`` and ``PU`` (any case; ``nnPU``
is an alias of ``PU``), names added with :func:`register_objective`, or ``package.module:function``
for a loss of one's own with the signature of :func:`jaxpick.losses.pn`. Attributes on such a
function override the defaults of its :class:`Objective` (``header``, ``default_slack``,
``prior``, ``excludes_positives``, ``supports_autoencoder``); see
``tests/losses/custom_loss_example.py``.

Examples:
  >>> objective = get_objective("ge-binomial")
  >>> objective.header
  ('loss', 'ge_penalty', 'precision', 'adjusted_precision', 'tpr', 'fpr')
  >>> resolve_slack(objective, -1.0)
  1.0
  >>> effective_prior(objective, 0.5, 0.125)[1]  # pi' = pi - p_observed
  0.375
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from jaxpick.errors import ConfigError
from jaxpick.losses.pu import LossOutput, ge_binomial, ge_kl, nnpu, pn

#: TSV columns of the methods without a GE term (Topaz's ``PN``/``PU`` header).
DEFAULT_HEADER: tuple[str, ...] = ("loss", "precision", "adjusted_precision", "tpr", "fpr")
#: TSV columns of the GE methods.
GE_HEADER: tuple[str, ...] = (
    "loss",
    "ge_penalty",
    "precision",
    "adjusted_precision",
    "tpr",
    "fpr",
)
#: Columns the trainer computes itself rather than reading from the objective's metrics.
TRAINER_COLUMNS = frozenset({"adjusted_precision"})

Prior = Literal["unlabeled", "total"]
_PRIORS = ("unlabeled", "total")


@dataclass(frozen=True)
class Objective:
    """A training objective and how the trainer uses it.

    Attributes:
      name: the method as the user wrote it (``"GE-binomial"``, ``"my.module:loss"``).
      fn: ``fn(logits, labels, *, pi, slack, weights=None) -> LossOutput``.
      header: the method's TSV columns in Topaz's order; every column except
        ``adjusted_precision`` (computed by the trainer) is a key of the metrics.
      default_slack: the slack used when the user passes a negative one.
      prior: ``"unlabeled"``: ``fn`` takes ``pi' = pi - p_observed`` and the method falls back to
        PN when ``pi <= p_observed`` (the GE methods); ``"total"``: ``fn`` takes ``pi``.
      excludes_positives: unlabelled samples are drawn away from labelled-positive pixels.
      supports_autoencoder: the method can be combined with ``--autoencoder``.
    """

    name: str
    fn: Callable[..., LossOutput]
    header: tuple[str, ...] = DEFAULT_HEADER
    default_slack: float = 1.0
    prior: Prior = "total"
    excludes_positives: bool = True
    supports_autoencoder: bool = True


PN = Objective("PN", pn)
GE_BINOMIAL = Objective(
    "GE-binomial", ge_binomial, header=GE_HEADER, default_slack=1.0, prior="unlabeled"
)
GE_KL = Objective(
    "GE-KL",
    ge_kl,
    header=GE_HEADER,
    default_slack=10.0,
    prior="unlabeled",
    supports_autoencoder=False,
)
PU = Objective("PU", nnpu, excludes_positives=False)

_REGISTRY: dict[str, Objective] = {o.name.lower(): o for o in (PN, GE_BINOMIAL, GE_KL, PU)}
_ALIASES: dict[str, str] = {"nnpu": "pu"}


def register_objective(objective: Objective) -> None:
    """Makes ``objective`` available to :func:`get_objective` under its (case-free) name.

    A later registration under the same name replaces the earlier one.

    Args:
      objective: the objective; its name must not contain ``:`` (that form means a module path).

    Raises:
      ConfigError: a name with ``:`` or an empty name (``--method``).
    """
    key = objective.name.strip().lower()
    if not key or ":" in key:
        raise ConfigError(
            f"--method: cannot register an objective named {objective.name!r} "
            "(names must be non-empty and without ':')"
        )
    _REGISTRY[key] = objective


def available_objectives() -> tuple[str, ...]:
    """The registered method names (as registered), for help texts and messages."""
    return tuple(o.name for o in _REGISTRY.values())


def get_objective(method: str) -> Objective:
    """The objective for a ``--method`` value.

    Args:
      method: ``PN``, ``GE-binomial``, ``GE-KL``, ``PU`` (case-insensitive; ``nnPU`` = ``PU``),
        a name registered with :func:`register_objective`, or ``package.module:function``.

    Returns:
      The :class:`Objective`, with ``name`` set to ``method`` as written.

    Raises:
      ConfigError: an unknown name, a module that cannot be imported, a missing or non-callable
        function, or invalid override attributes on it (the message names ``--method``).
    """
    text = method.strip()
    if ":" in text:
        return _import_objective(text)
    key = _ALIASES.get(text.lower(), text.lower())
    if key not in _REGISTRY:
        choices = ", ".join(available_objectives())
        raise ConfigError(
            f"--method: unknown method {method!r}; choose one of {choices}, "
            "or give a loss of your own as package.module:function"
        )
    return dataclasses.replace(_REGISTRY[key], name=text)


def _import_objective(spec: str) -> Objective:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"--method: {spec!r} is not of the form package.module:function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(f"--method: cannot import module {module_name!r} ({err})") from err
    try:
        fn = getattr(module, attr)
    except AttributeError as err:
        raise ConfigError(f"--method: module {module_name!r} has no attribute {attr!r}") from err
    if not callable(fn):
        raise ConfigError(f"--method: {spec!r} is not callable (a {type(fn).__name__})")
    return Objective(
        name=spec,
        fn=fn,
        header=_header_override(spec, getattr(fn, "header", DEFAULT_HEADER)),
        default_slack=_slack_override(spec, getattr(fn, "default_slack", 1.0)),
        prior=_prior_override(spec, getattr(fn, "prior", "total")),
        excludes_positives=_bool_override(
            spec, "excludes_positives", getattr(fn, "excludes_positives", True)
        ),
        supports_autoencoder=_bool_override(
            spec, "supports_autoencoder", getattr(fn, "supports_autoencoder", True)
        ),
    )


def _header_override(spec: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, tuple | list) or not all(isinstance(c, str) for c in value):
        raise ConfigError(f"--method: {spec}.header must be a sequence of column names")
    header = tuple(value)
    if "loss" not in header:
        raise ConfigError(f"--method: {spec}.header must contain 'loss', got {header}")
    return header


def _slack_override(spec: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"--method: {spec}.default_slack must be a finite number, got {value!r}")
    return float(value)


def _prior_override(spec: str, value: Any) -> Prior:
    if value not in _PRIORS:
        raise ConfigError(f"--method: {spec}.prior must be one of {_PRIORS}, got {value!r}")
    return value


def _bool_override(spec: str, name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"--method: {spec}.{name} must be True or False, got {value!r}")
    return value


def resolve_slack(objective: Objective, slack: float) -> float:
    """Topaz's ``--slack``: a negative value means the method's default.

    Args:
      objective: the method.
      slack: the user's value (Topaz's default is -1).

    Returns:
      ``objective.default_slack`` if ``slack < 0``, else ``slack``.

    Raises:
      ConfigError: a non-finite slack (``--slack``).
    """
    if not math.isfinite(slack):
        raise ConfigError(f"--slack must be a finite number, got {slack}")
    return objective.default_slack if slack < 0 else float(slack)


def effective_prior(
    objective: Objective, pi: float, p_observed: float
) -> tuple[Objective, float, str | None]:
    """The objective and prior actually trained with (Topaz's ``make_training_step_method``).

    Methods with ``prior == "unlabeled"`` (the GE methods) see only unlabelled pixels, whose
    expected positive fraction is ``pi - p_observed``. If that is not positive the unlabelled
    data are taken to be all negative and training switches to PN with ``pi = p_observed``,
    with a warning.

    Args:
      objective: the requested method.
      pi: the expected fraction of positive pixels (``--pi``, or derived from ``-n``).
      p_observed: the fraction of pixels labelled positive in the training set.

    Returns:
      ``(objective, prior, warning)``: the objective to use, the ``pi`` to pass to it, and a
      warning text when the method was switched (else ``None``).

    Raises:
      ConfigError: ``pi`` not in [0, 1] (``--pi``).
    """
    if not (math.isfinite(pi) and 0.0 <= pi <= 1.0):
        raise ConfigError(f"--pi must be a fraction in [0, 1], got {pi}")
    if objective.prior == "total":
        return objective, float(pi), None
    if pi <= p_observed:
        warning = (
            f"pi={pi} but the observed fraction of positives is {p_observed} and method is set "
            f"to {objective.name}; setting method to PN with pi={p_observed} instead. If you "
            f"meant to use {objective.name}, please set pi > {p_observed}."
        )
        return PN, float(p_observed), warning
    return objective, float(pi - p_observed), None
