"""The jitted PU training step: sample a minibatch on the device, forward, loss, Adam update.

The model is split once (``nnx.split``) into a graph definition and a :class:`TrainState`
pytree of arrays; the step merges them inside ``jax.jit`` (the NNX functional loop), so one
compiled program serves every update, with the state donated. The minibatch is drawn on the
device from :func:`jaxpick.data.sampling.sample_minibatch` with a key derived from the step
number (``fold_in(key, step)``): a run resumed at step ``n`` draws exactly what an
uninterrupted run draws, and the same seed gives the same model.

Data parallel: with a mesh, the crops are constrained to ``P("data")`` along the batch (the
parameters, optimizer state and training images are replicated); XLA partitions the forward
and backward passes and inserts the gradient all-reduce. Batch-norm statistics are those of
the whole minibatch, as on one device.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxpick.data.sampling import DeviceData, sample_minibatch
from jaxpick.losses import Objective
from jaxpick.models.generator import Generator, reconstruction_loss
from jaxpick.models.picker import Picker

__all__ = [
    "StepSettings",
    "TrainState",
    "Trainable",
    "init_state",
    "make_optimizer",
    "make_train_step",
]


class Trainable(nnx.Module):
    """What training updates: the picker and, with ``--autoencoder``, the generator."""

    def __init__(self, picker: Picker, generator: Generator | None = None) -> None:
        self.picker = picker
        self.generator = generator


class TrainState(NamedTuple):
    """Everything a training step reads and returns (a pytree of arrays)."""

    params: nnx.State  # nnx.Param of the picker (and generator)
    batch_stats: nnx.State  # batch-norm running statistics
    opt_state: optax.OptState
    step: jax.Array  # int32 scalar: updates done so far


@dataclass(frozen=True)
class StepSettings:
    """The static settings of a training step.

    Attributes:
      objective: the PU objective (after the GE -> PN fallback rule).
      pi: the prior the objective uses (``pi'`` for GE methods).
      slack: the GE weight, resolved.
      autoencoder: weight of the reconstruction term (0: none).
      est_max_prec: ``p_observed / pi``: precision is divided by it ("adjusted precision").
      batch_size, crop_size, balance: the minibatch (crop_size = the receptive field).
    """

    objective: Objective
    pi: float
    slack: float
    autoencoder: float
    est_max_prec: float
    batch_size: int
    crop_size: int
    balance: float


def _is_picker_param(path: tuple[Any, ...], _value: Any) -> bool:
    first = path[0]
    return getattr(first, "key", getattr(first, "name", None)) == "picker"


def make_optimizer(learning_rate: float, l2: float) -> optax.GradientTransformation:
    """Adam with torch's defaults, plus Topaz's L2: the gradient ``l2 * w`` of the picker's
    parameters (not the generator's) added before Adam, not decoupled weight decay."""
    adam = optax.chain(optax.scale_by_adam(b1=0.9, b2=0.999, eps=1e-8), optax.scale(-learning_rate))
    if l2 <= 0:
        return adam

    def mask(params: Any) -> Any:
        return jax.tree_util.tree_map_with_path(_is_picker_param, params)

    return optax.chain(optax.add_decayed_weights(l2, mask=mask), adam)


def init_state(
    model: Trainable, optimizer: optax.GradientTransformation
) -> tuple[nnx.GraphDef[Trainable], TrainState]:
    """Splits the model into its graph and a fresh :class:`TrainState` (step 0)."""
    graphdef, params, batch_stats = nnx.split(model, nnx.Param, nnx.BatchStat)
    state = TrainState(params, batch_stats, optimizer.init(params), jnp.zeros((), jnp.int32))
    return graphdef, state


def make_train_step(
    graphdef: nnx.GraphDef[Trainable],
    optimizer: optax.GradientTransformation,
    settings: StepSettings,
    *,
    mesh: jax.sharding.Mesh | None = None,
) -> Callable[[TrainState, DeviceData, jax.Array], tuple[TrainState, Mapping[str, jax.Array]]]:
    """The jitted ``(state, data, key) -> (state, metrics)``; ``state`` is donated.

    With ``mesh``, the state and data are expected replicated over it (``P()``) and the
    minibatch is sharded along ``"data"`` when the mesh has more than one device.

    ``metrics`` are float32 scalars named as the method's TSV columns (``loss``,
    ``ge_penalty``, ``recon_error``, ``precision``, ``adjusted_precision``, ``tpr``, ``fpr``).
    """
    s = settings
    exclude = s.objective.excludes_positives
    batch_sharding = replicated = None
    if mesh is not None:
        replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
        if mesh.size > 1:
            batch_sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))

    def loss_fn(
        params: nnx.State,
        batch_stats: nnx.State,
        crops: jax.Array,
        labels: jax.Array,
        key: jax.Array,
    ) -> tuple[jax.Array, tuple[dict[str, jax.Array], nnx.State]]:
        # copy=True: fresh Variables in this trace, so batch norm may update its statistics.
        model = nnx.merge(graphdef, params, batch_stats, copy=True)
        z = model.picker.feature_map(crops, train=True, key=key)
        logits = model.picker.classify(z)[:, 0, 0]
        out = s.objective.fn(logits, labels, pi=s.pi, slack=s.slack)
        total = out.objective
        metrics = {k: jnp.asarray(v, jnp.float32) for k, v in out.metrics.items()}
        if s.autoencoder > 0:
            assert model.generator is not None
            recon = model.generator(z[:, 0, 0, :], train=True)
            error = reconstruction_loss(crops, recon)
            total = total + s.autoencoder * error
            metrics["recon_error"] = error
        metrics["adjusted_precision"] = metrics["precision"] / s.est_max_prec
        return total, (metrics, nnx.state(model, nnx.BatchStat))

    def step(
        state: TrainState, data: DeviceData, key: jax.Array
    ) -> tuple[TrainState, dict[str, jax.Array]]:
        step_key = jax.random.fold_in(key, state.step)
        sample_key, dropout_key = jax.random.split(step_key)
        crops, labels = sample_minibatch(
            sample_key,
            data,
            batch_size=s.batch_size,
            crop_size=s.crop_size,
            balance=s.balance,
            exclude_positives=exclude,
        )
        if batch_sharding is not None:
            crops = jax.lax.with_sharding_constraint(crops, batch_sharding)
            labels = jax.lax.with_sharding_constraint(labels, batch_sharding)
        grads, (metrics, batch_stats) = jax.grad(loss_fn, has_aux=True)(
            state.params, state.batch_stats, crops, labels, dropout_key
        )
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return TrainState(params, batch_stats, opt_state, state.step + 1), metrics

    if replicated is None:
        return jax.jit(step, donate_argnums=(0,))
    # Outputs placed as the inputs are, so the next call hits the same compiled program.
    return jax.jit(step, donate_argnums=(0,), out_shardings=replicated)
