"""``jaxpick train``: the training loop. Iteration, logging, evaluation and checkpoints; the
maths is in :mod:`jaxpick.train.step`, :mod:`jaxpick.losses` and :mod:`jaxpick.data`.

What happens, in Topaz's order (spec 3): read the training (and test) images and particles,
print the data statistics, derive π (from ``-n`` with the true disc area unless
``--legacy-pi``) and apply the GE -> PN fallback rule, build the model (Topaz's pretrained
detector by default), then ``num_epochs`` epochs of ``epoch_size`` updates, each followed by
the test evaluation and a checkpoint.

The training curve is a TSV in Topaz's layout (spec 3.7: one ``train`` line per update, one
``test`` line per epoch) with one extra column, ``particle_auprc``. Metrics stay on the device
and are fetched every ``_LOG_EVERY`` updates, so the host never waits on a single step.

Checkpoints (``--save-prefix P``): ``P_epoch<N>/``, a jaxpick model directory (``extract -m
P_epoch<N>`` loads it) holding also the optimizer state, the step and the curve so far. With
``--resume`` training continues from the last complete one; since every minibatch is drawn
with ``fold_in(key, step)``, the result equals an uninterrupted run's.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from jaxpick.config import TrainConfig
from jaxpick.errors import ConfigError, FileFormatError

__all__ = ["TrainResult", "checkpoint_path", "train", "initial_picker"]

_LOG_EVERY = 50
_STATE_FOLDER = "train_state"
_CURVE_FILE = "curve.tsv"
_TRAIN_FILE = "train_config.json"
# Settings a resumed run must share with the run that wrote the checkpoint.
_RESUME_KEYS = (
    "train_images",
    "train_targets",
    "num_particles",
    "pi",
    "legacy_pi",
    "radius",
    "method",
    "slack",
    "autoencoder",
    "l2",
    "learning_rate",
    "minibatch_size",
    "minibatch_balance",
    "epoch_size",
    "pretrained",
    "model",
    "units",
    "dropout",
    "bn",
    "pooling",
    "unit_scaling",
    "ngf",
    "k_fold",
    "fold",
    "cross_validation_seed",
    "seed",
)


@dataclass
class TrainResult:
    """What training produced.

    Attributes:
      model: the trained picker (evaluation mode is chosen per call).
      checkpoints: checkpoint directories written, in order.
      history: the curve's rows (dicts of column -> value) including resumed ones.
      method: the objective actually used (after the GE -> PN rule).
      pi: π of the data; ``pi_used``: the prior the objective used.
      header: the TSV columns.
    """

    model: Any
    checkpoints: list[Path] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    method: str = ""
    pi: float = math.nan
    pi_used: float = math.nan
    header: tuple[str, ...] = ()

    def test_rows(self) -> list[dict[str, Any]]:
        return [r for r in self.history if r["split"] == "test"]


def checkpoint_path(prefix: str, epoch: int, num_epochs: int) -> Path:
    """``<prefix>_epoch<N>``, N zero-padded to ``ceil(log10(num_epochs))`` digits as Topaz."""
    digits = max(1, math.ceil(math.log10(num_epochs))) if num_epochs > 1 else 1
    return Path(f"{prefix}_epoch{epoch:0{digits}d}")


def _latest_checkpoint(prefix: str) -> tuple[int, Path] | None:
    parent = Path(prefix).parent
    stem = Path(prefix).name
    pattern = re.compile(re.escape(stem) + r"_epoch(\d+)$")
    found = []
    if parent.is_dir():
        for entry in parent.iterdir():
            m = pattern.match(entry.name)
            if m and (entry / _STATE_FOLDER).is_dir() and (entry / "config.json").is_file():
                found.append((int(m.group(1)), entry))
    return max(found) if found else None


def initial_picker(config: TrainConfig) -> tuple[Any, Any, str]:
    """The picker training starts from: a model file/checkpoint given as ``-m``, Topaz's
    pretrained detector (``--pretrained``, resnet8/resnet16 with 32 or 64 units), or a freshly
    initialised network. Returns ``(model, model_config, description)``."""
    from flax import nnx

    from jaxpick.checkpoint import resolve_model
    from jaxpick.models import ARCHITECTURES, ModelConfig, build_model

    if config.model not in ARCHITECTURES:
        if not os.path.exists(config.model):
            raise ConfigError(
                f"-m/--model {config.model!r}: not an architecture "
                f"({', '.join(ARCHITECTURES)}) nor an existing model file or checkpoint"
            )
        model, model_config = resolve_model(config.model)
        return model, model_config, f"continuing from {config.model}"
    name = f"{config.model}_u{config.units}"
    if config.pretrained and config.model in ("resnet8", "resnet16") and config.units in (32, 64):
        try:
            model, model_config = resolve_model(name)
        except FileFormatError as err:
            raise ConfigError(
                f"--pretrained: {err}. Install the weights (pip install --no-deps topaz-em) "
                "or train from scratch with --no-pretrained"
            ) from err
        return model, model_config, f"pretrained {name} (no batch norm; --bn/--dropout ignored)"
    model_config = ModelConfig(
        arch=config.model,
        units=config.units,
        bn=config.bn,
        dropout=config.dropout,
        pooling=config.pooling,
        unit_scaling=config.unit_scaling,
    )
    model = build_model(model_config, rngs=nnx.Rngs(config.seed))
    return model, model_config, f"new {config.model} ({config.units} units)"


def _header(objective_header: Sequence[str], autoencoder: bool) -> tuple[str, ...]:
    columns = list(objective_header)
    if autoencoder:
        after = columns.index("ge_penalty") if "ge_penalty" in columns else columns.index("loss")
        columns.insert(after + 1, "recon_error")
    return tuple(columns)


def _format(value: Any) -> str:
    if value is None or value == "-":
        return "-"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    if isinstance(value, str):
        return value
    return repr(float(value))


def _line(row: dict[str, Any], columns: Sequence[str]) -> str:
    return "\t".join(_format(row.get(c, "-")) for c in columns)


def _resume_settings(config: TrainConfig) -> dict[str, Any]:
    values = dataclasses.asdict(config)
    return {k: values[k] for k in _RESUME_KEYS}


def _parse_curve(text: str) -> list[dict[str, Any]]:
    lines = text.splitlines()
    if not lines:
        return []
    columns = lines[0].split("\t")
    rows = []
    for line in lines[1:]:
        values = line.split("\t")
        row: dict[str, Any] = {}
        for c, v in zip(columns, values, strict=True):
            if c in ("epoch", "iter"):
                row[c] = int(v)
            elif c == "split" or v == "-":
                row[c] = v
            else:
                row[c] = float(v)
        rows.append(row)
    return rows


def train(
    config: TrainConfig,
    *,
    progress: bool = True,
    log: TextIO | None = None,
    devices: Sequence[Any] | None = None,
) -> TrainResult:
    """Trains a picker (see the module docstring).

    Args:
      config: the settings (Topaz's ``train`` flags).
      progress: show a progress bar per epoch.
      log: where the statistics, warnings and ``#`` progress lines go (default: stderr).
      devices: the devices to train on (default: from ``config.device``); more than one shards
        each minibatch over them.

    Returns:
      A :class:`TrainResult`.

    Raises:
      ConfigError: settings that cannot train (no particles, a radius beyond the receptive
        field, a batch that does not split over the devices, ...).
      FileFormatError: unreadable images, coordinates or checkpoints.
    """
    import jax
    from flax import nnx
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    from jaxpick.checkpoint import arrays_to_state, load_arrays, save_model, state_to_arrays
    from jaxpick.data.sampling import to_device_data
    from jaxpick.data.targets import (
        data_statistics,
        format_statistics,
        load_training_set,
        prior_from_particles,
        split_folds,
    )
    from jaxpick.devices import select_devices
    from jaxpick.losses import effective_prior, get_objective, resolve_slack
    from jaxpick.models.generator import Generator, generator_depth
    from jaxpick.train.evaluate import make_evaluator
    from jaxpick.train.step import (
        StepSettings,
        Trainable,
        init_state,
        make_optimizer,
        make_train_step,
    )

    out = log if log is not None else sys.stderr

    def say(message: str) -> None:
        print(f"# {message}", file=out, flush=True)

    def warn(message: str) -> None:
        print(f"# warning: {message}", file=out, flush=True)

    # ---- data
    train_set = load_training_set(
        config.train_images, config.train_targets, radius=config.radius, warn=warn
    )
    test_set = None
    if config.k_fold > 1:
        train_idx, test_idx = split_folds(
            train_set.names, config.k_fold, config.fold, config.cross_validation_seed
        )
        test_set = train_set.subset(test_idx)
        train_set = train_set.subset(train_idx)
        say(
            f"cross-validation: fold {config.fold} of {config.k_fold} "
            f"({len(test_idx)} test, {len(train_idx)} training micrographs)"
        )
    elif config.test_images:
        test_set = load_training_set(
            config.test_images, config.test_targets, radius=config.radius, warn=warn
        )
    stats = data_statistics(train_set, legacy_pi=config.legacy_pi)
    test_stats = data_statistics(test_set, legacy_pi=config.legacy_pi) if test_set else None
    print(format_statistics(stats, test_stats), file=out, end="", flush=True)

    # ---- the prior and the objective
    if config.num_particles > 0:
        pi = prior_from_particles(config.num_particles, train_set, legacy=config.legacy_pi)
    else:
        assert config.pi is not None
        pi = config.pi
    if not 0 < pi < 1:
        raise ConfigError(
            f"pi = {pi:.4g} from -n {config.num_particles} and radius {config.radius} is not a "
            "fraction of the pixels: lower -n or the radius"
        )
    objective = get_objective(config.method)
    objective, pi_used, message = effective_prior(objective, pi, stats.p_observed)
    if message:
        warn(message)
    slack = resolve_slack(objective, config.slack)
    if config.autoencoder > 0 and not objective.supports_autoencoder:
        raise ConfigError(f"--autoencoder: the {objective.name} objective has no autoencoder term")
    est_max_prec = stats.p_observed / pi
    say(f"pi = {pi:.6g}, method {objective.name} with prior {pi_used:.6g}, slack {slack:g}")

    # ---- the model
    picker, model_config, description = initial_picker(config)
    rf = model_config.receptive_field
    if config.radius > rf // 2:
        raise ConfigError(
            f"-r/--radius {config.radius} is beyond the model's receptive field "
            f"({rf} px, radius {rf // 2}): the label disc would be larger than what one score sees"
        )
    say(f"model: {description}; receptive field {rf} px")
    generator = None
    if config.autoencoder > 0:
        generator = Generator(
            model_config.latent_dim,
            units=config.ngf,
            depth=generator_depth(rf),
            rngs=nnx.Rngs(config.seed + 1),
        )
    optimizer = make_optimizer(config.learning_rate, config.l2)
    graphdef, state = init_state(Trainable(picker, generator), optimizer)

    # ---- devices
    devices = list(devices) if devices is not None else select_devices(config.device)
    if config.minibatch_size % len(devices):
        raise ConfigError(
            f"--minibatch-size {config.minibatch_size} does not split over {len(devices)} devices"
        )
    mesh = Mesh(np.array(devices), ("data",))
    replicated = NamedSharding(mesh, PartitionSpec())
    data = to_device_data(train_set, sharding=replicated)
    key = jax.random.key(config.seed)
    settings = StepSettings(
        objective=objective,
        pi=pi_used,
        slack=slack,
        autoencoder=config.autoencoder,
        est_max_prec=est_max_prec,
        batch_size=config.minibatch_size,
        crop_size=rf,
        balance=config.minibatch_balance,
    )
    step_fn = make_train_step(graphdef, optimizer, settings, mesh=mesh)
    evaluator = None
    if test_set is not None:
        evaluator = make_evaluator(
            graphdef,
            test_set,
            radius=config.radius,
            eval_radius=config.eval_radius if config.eval_radius is not None else config.radius,
            est_max_prec=est_max_prec,
        )

    header = _header(objective.header, config.autoencoder > 0)
    columns = ("epoch", "iter", "split", *header, "auprc", "particle_auprc")
    history: list[dict[str, Any]] = []
    result = TrainResult(model=None, method=objective.name, pi=pi, pi_used=pi_used, header=columns)

    # ---- resume
    start_epoch = 0
    if config.resume:
        assert config.save_prefix is not None
        latest = _latest_checkpoint(config.save_prefix)
        if latest is None:
            say(f"--resume: no checkpoint under {config.save_prefix}_epoch*; starting afresh")
        else:
            start_epoch, where = latest
            saved = json.loads((where / _TRAIN_FILE).read_text(encoding="utf-8"))
            mine = json.loads(json.dumps(_resume_settings(config)))
            changed = sorted(k for k in mine if saved.get(k) != mine[k])
            if changed:
                raise ConfigError(
                    f"--resume: {where} was trained with other settings ({', '.join(changed)})"
                )
            arrays = load_arrays(where, _STATE_FOLDER)
            state = arrays_to_state(state, arrays, where)
            history = _parse_curve((where / _CURVE_FILE).read_text(encoding="utf-8"))
            say(f"resuming after epoch {start_epoch} from {where}")
    state = jax.device_put(state, replicated)

    # ---- the curve
    sink: TextIO
    if config.output is None:
        sink = sys.stdout
    else:
        Path(config.output).parent.mkdir(parents=True, exist_ok=True)
        sink = open(config.output, "w", encoding="utf-8")  # noqa: SIM115 - closed below

    def emit(row: dict[str, Any]) -> None:
        history.append(row)
        print(_line(row, columns), file=sink)

    try:
        print("\t".join(columns), file=sink)
        for row in history:
            print(_line(row, columns), file=sink)
        sink.flush()
        for epoch in range(start_epoch + 1, config.num_epochs + 1):
            state = _train_epoch(
                epoch=epoch,
                config=config,
                step_fn=step_fn,
                state=state,
                data=data,
                key=key,
                emit=emit,
                progress=progress,
                header=header,
            )
            if evaluator is not None:
                metrics = evaluator(state.params, state.batch_stats)
                row = {
                    "epoch": epoch,
                    "iter": epoch * config.epoch_size + 1,
                    "split": "test",
                    **metrics.columns(),
                }
                emit(row)
                say(
                    f"epoch {epoch}: test auprc (pixels) {metrics.auprc:.4f}, "
                    f"particle auprc {metrics.particle_auprc:.4f} ({metrics.picks} picks)"
                )
            sink.flush()
            if config.save_prefix is not None:
                model = nnx.merge(graphdef, *jax.device_get((state.params, state.batch_stats)))
                where = checkpoint_path(config.save_prefix, epoch, config.num_epochs)
                curve = (
                    "\t".join(columns) + "\n" + "".join(_line(r, columns) + "\n" for r in history)
                )
                save_model(
                    where,
                    model.picker,
                    provenance={"trained_by": "jaxpick train", "epoch": epoch},
                    overwrite=True,
                    extra_arrays={_STATE_FOLDER: state_to_arrays(state)},
                    extra_files={
                        _CURVE_FILE: curve,
                        _TRAIN_FILE: json.dumps(_resume_settings(config), indent=1) + "\n",
                    },
                )
                result.checkpoints.append(where)
    finally:
        if sink is not sys.stdout:
            sink.close()
    final = nnx.merge(graphdef, *jax.device_get((state.params, state.batch_stats)))
    result.model = final.picker
    result.history = history
    if config.output is not None:
        from jaxpick.plot import plot_training_curves

        plot_training_curves(Path(config.output).with_suffix(".png"), history)
    return result


def _train_epoch(
    *,
    epoch: int,
    config: TrainConfig,
    step_fn: Callable[..., Any],
    state: Any,
    data: Any,
    key: Any,
    emit: Callable[[dict[str, Any]], None],
    progress: bool,
    header: Sequence[str],
) -> Any:
    import jax
    from tqdm.auto import tqdm

    first = (epoch - 1) * config.epoch_size + 1
    pending: list[Any] = []
    bar = tqdm(
        total=config.epoch_size,
        desc=f"epoch {epoch}/{config.num_epochs}",
        unit="step",
        disable=not progress,
        leave=False,
        file=sys.stderr,
    )
    start = time.perf_counter()
    done = 0

    def flush() -> None:
        nonlocal done
        values = jax.device_get(pending)
        for metrics in values:
            it = first + done
            values_ = {k: float(v) for k, v in metrics.items()}
            emit({"epoch": epoch, "iter": it, "split": "train", **values_})
            done += 1
        if values:
            rate = done / max(time.perf_counter() - start, 1e-9)
            bar.set_postfix(loss=f"{float(values[-1]['loss']):.4f}", steps_s=f"{rate:.1f}")
            bar.update(len(values))
        pending.clear()

    try:
        for _ in range(config.epoch_size):
            state, metrics = step_fn(state, data, key)
            pending.append({k: metrics[k] for k in header if k in metrics})
            if len(pending) == _LOG_EVERY:
                flush()
        flush()
    finally:
        bar.close()
    return state
