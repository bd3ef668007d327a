"""Particle extraction: dense scoring of micrographs with a picker, then non-maximum suppression.

The library behind ``jaxpick extract`` and ``jaxpick segment`` (spec 1.2, 1.3, 4). One jitted
function per distinct micrograph shape scores a batch of micrographs (whole, or in tiles with a
receptive-field halo, `jaxpick.inference.score`) and runs the exact vectorised NMS of
`jaxpick.kernels.nms` on each score map, on the device; only the picks come back to the host.
:mod:`jaxpick.pipeline` keeps the device fed (prefetch, fixed-size padded batches, per-file
failures) as in preprocessing.

Outputs and restarts:

* ``--per-micrograph``: one coordinate file per micrograph, written atomically; a rerun skips
  micrographs whose file exists (``--overwrite`` redoes them).
* one file (or standard output): each finished micrograph's picks go to a hidden parts folder
  beside the output (``.<output>.parts/``) as they come; the output is assembled from the parts
  in input order, written atomically, and the parts removed. A crash loses no finished
  micrograph: the rerun reuses the parts (if they were made with the same settings) and scores
  only the rest. An output that exists is left alone unless ``--overwrite`` is given.

With ``--targets``: the picks of the micrographs that have targets are matched to them
(`jaxpick.metrics`) and ``# radius=…, auprc=…`` lines are printed; without ``-r`` the NMS runs at
every radius of the search grid in the same device call and the radius with the best AUPRC is
used for the output (Topaz's search, which its path/name mismatch breaks, works here).
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from jaxpick.config import ExtractConfig, SegmentConfig
from jaxpick.devices import batch_size_for, batched_jit, select_devices
from jaxpick.errors import ConfigError, JaxpickError
from jaxpick.io.atomic import write_text_atomic
from jaxpick.io.coords import Coordinates, read_coordinates, read_many, write_coordinates
from jaxpick.io.image import write_image
from jaxpick.pipeline import Batch, Item, Report, Writers, batches, plan

__all__ = [
    "ExtractResult",
    "RadiusEvaluation",
    "extract",
    "max_picks",
    "picks_to_coordinates",
    "segment",
]

# Input bytes of one batch on several CPU devices (one CPU device scores one micrograph per
# batch: `jaxpick.devices.batch_size_for`).
_CPU_BATCH_BYTES = 16 * 2**20
# Device memory of dense scoring per input pixel and latent channel (float32 activations of
# the widest layers, a few alive at once), used to choose batch and tile sizes on accelerators.
_BYTES_PER_PIXEL_CHANNEL = 4 * 4


def max_picks(shape: tuple[int, int], radius: int) -> int:
    """The most picks NMS with ``radius`` can make on a ``shape`` map (a static bound).

    Picks are more than ``radius`` apart, so discs of radius ``radius / 2`` around them are
    disjoint and lie inside the map grown by ``radius / 2`` on every side.
    """
    height, width = shape
    if radius <= 1:
        return height * width
    half = radius / 2
    bound = (height + radius) * (width + radius) / (math.pi * half * half)
    return int(min(height * width, math.ceil(bound)))


# ------------------------------------------------------------------------------- the scorer


@dataclass(frozen=True)
class _Scorer:
    """A resolved model: its graph and state, receptive field and latent width (or none)."""

    graphdef: Any  # nnx.GraphDef, or None for ``-m none`` (inputs are score maps)
    state: Any
    receptive_field: int
    latent_dim: int
    precision: str


def _load_scorer(model: str, precision: str) -> _Scorer:
    if model.lower() == "none":
        return _Scorer(None, None, 1, 1, precision)
    from flax import nnx

    from jaxpick.checkpoint import resolve_model

    net, net_config = resolve_model(model)
    graphdef, state = nnx.split(net)
    return _Scorer(graphdef, state, net_config.receptive_field, net_config.latent_dim, precision)


def _choose_tile(
    scorer: _Scorer, shape: tuple[int, int], devices: Sequence[Any], patch_size: int
) -> int | None:
    """Tile side: as asked (``-p``), else whole micrographs unless they do not fit the device."""
    if patch_size > 0:
        return patch_size
    if scorer.graphdef is None or devices[0].platform == "cpu":
        return None
    stats = devices[0].memory_stats() or {}
    if "bytes_limit" not in stats:
        return None
    free = stats["bytes_limit"] - stats.get("bytes_in_use", 0)
    per_pixel = _BYTES_PER_PIXEL_CHANNEL * scorer.latent_dim
    halo = scorer.receptive_field // 2
    if (shape[0] + 2 * halo) * (shape[1] + 2 * halo) * per_pixel <= free // 2:
        return None
    side = int(math.sqrt(free // 2 // per_pixel)) - 2 * halo
    side = max(64, side // 64 * 64)
    return side


def _score_one(scorer: _Scorer, tile: int | None) -> Callable[[Any, Any], Any]:
    """``(state, image (H, W)) -> logits (H, W)``: the model's dense scores, or the image
    itself for ``-m none``."""
    import jax
    from flax import nnx

    from jaxpick.inference.score import score_image

    def score(state: Any, image: jax.Array) -> jax.Array:
        if scorer.graphdef is None:
            return image.astype(jax.numpy.float32)
        net = nnx.merge(scorer.graphdef, state)

        def apply(x: jax.Array) -> jax.Array:
            return net(x, dense=True, compute_dtype=scorer.precision)

        return score_image(apply, image, receptive_field=scorer.receptive_field, tile=tile)

    return score


def _batch_function(
    scorer: _Scorer,
    devices: tuple[Any, ...],
    *,
    tile: int | None,
    radii: tuple[int, ...],
    limits: tuple[int, ...],
) -> Callable[..., Any]:
    """The jitted ``(state, images, threshold) -> picks per radius``."""
    from jaxpick.kernels.nms import nms

    score = _score_one(scorer, tile)

    def one(state: Any, image: Any, threshold: Any) -> Any:
        scores = score(state, image)
        return tuple(
            nms(scores, radius=r, max_particles=k, threshold=threshold)
            for r, k in zip(radii, limits, strict=True)
        )

    return batched_jit(one, devices, (None, 0, None))


def _batch_size(
    scorer: _Scorer, shape: tuple[int, ...], devices: Sequence[Any], requested: int | None, n: int
) -> int:
    overhead = max(8.0, _BYTES_PER_PIXEL_CHANNEL * scorer.latent_dim / 4)
    size = batch_size_for(
        4 * math.prod(shape), devices, requested, cpu_budget=_CPU_BATCH_BYTES, overhead=overhead
    )
    # Never pad beyond the work there is.
    return min(size, -(-n // len(devices)) * len(devices))


# ------------------------------------------------------------------------------------ picks


def picks_to_coordinates(
    name: str,
    coords: np.ndarray,
    scores: np.ndarray,
    valid: np.ndarray,
    *,
    scale: float = 1.0,
) -> Coordinates:
    """One micrograph's NMS output as a coordinate table (x = column, y = row).

    Coordinates are multiplied by ``scale`` (Topaz's ``-x / -s``) and rounded to integers when
    it is not 1, as Topaz does.
    """
    keep = np.asarray(valid, bool)
    yx = np.asarray(coords)[keep].astype(np.float64)
    x, y = yx[:, -1], yx[:, -2]
    if scale != 1:
        x, y = np.round(x * scale), np.round(y * scale)
    return Coordinates(image_name=name, x=x, y=y, score=np.asarray(scores, np.float64)[keep])


@dataclass(frozen=True)
class RadiusEvaluation:
    """Picks at one NMS radius against the targets (a ``# radius=…`` line)."""

    radius: int
    auprc: float
    rmse: float
    hits: int
    targets: int

    @property
    def recall(self) -> float:
        return self.hits / self.targets if self.targets else math.nan

    def line(self) -> str:
        """Topaz's line, with the recall as a fraction plus the hit count (Topaz prints the
        hit count as ``recall``)."""
        return (
            f"# radius={self.radius}, auprc={self.auprc}, rmse={self.rmse}, "
            f"recall={self.recall}, hits={self.hits}, targets={self.targets}"
        )


@dataclass
class ExtractResult:
    """What ``extract`` did: the per-file report, the evaluations, the radius used, the picks
    (only kept in memory for standard output and evaluation), the files written."""

    report: Report
    evaluations: list[RadiusEvaluation] = field(default_factory=list)
    radius: int | None = None
    picks: Coordinates | None = None
    written: list[Path] = field(default_factory=list)


def _evaluate(
    targets: Coordinates,
    picks: Coordinates,
    radius: int,
    assignment_radius: float | None,
) -> RadiusEvaluation:
    from jaxpick.metrics import evaluate_picks

    scored = set(picks.images()) if len(picks) else set()
    relevant = targets.select(np.isin(targets.image_name, sorted(scored)))
    match_radius = assignment_radius if assignment_radius is not None else radius
    if len(relevant) == 0:
        return RadiusEvaluation(radius, math.nan, math.nan, 0, 0)
    evaluation = evaluate_picks(relevant, picks, match_radius)
    return RadiusEvaluation(
        radius, evaluation.curve.auprc, evaluation.rmse, evaluation.num_hits, len(relevant)
    )


# ---------------------------------------------------------------------------- the command


def _fingerprint(config: ExtractConfig) -> str:
    """The settings that change picks: parts made with other settings are not reused."""
    keys = ("model", "radius", "threshold", "down_scale", "up_scale", "max_particles", "precision")
    text = json.dumps({k: asdict(config)[k] for k in keys}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _single_output(config: ExtractConfig) -> Path | None:
    """The one output file (Topaz: a folder gets ``extracted_particles.txt``), or None."""
    if config.output is None:
        return None
    out = Path(config.output)
    if out.is_dir() or config.output.endswith(("/", "\\")):
        return out / "extracted_particles.txt"
    return out


def _parts_dir(output: Path | None) -> Path | None:
    return None if output is None else output.parent / f".{output.name}.parts"


def _per_micrograph_path(config: ExtractConfig, name: str) -> Path:
    assert config.output is not None
    out = Path(config.output)
    # Topaz: a non-folder -o means its parent's COORDS folder.
    folder = out if (out.is_dir() or not out.suffix) else out.parent / "COORDS"
    if config.format == "json":  # EMAN2's name, as jaxpick convert writes (Topaz: .json)
        return folder / f"{name}{config.suffix}_info.json"
    return folder / f"{name}{config.suffix}.{config.format}"


def extract(
    config: ExtractConfig, *, progress: bool = True, log: TextIO | None = None
) -> ExtractResult:
    """Scores every micrograph, picks particles, evaluates and writes them (see module doc).

    Returns:
      An `ExtractResult`. Micrographs that fail (unreadable, wrong shape) are in
      ``result.report.failed`` with the reason; the others are complete.

    Raises:
      JaxpickError: a model that cannot be loaded, unreadable targets, or an output that
        cannot be written.
    """
    import jax
    from tqdm.auto import tqdm

    log = log or sys.stderr
    start = time.perf_counter()
    report = Report()
    result = ExtractResult(report=report)
    radii = config.radii
    evaluating = bool(config.targets)
    targets = read_many(config.targets) if evaluating else None
    write = not config.only_validate
    single = None if config.per_micrograph else _single_output(config)
    parts = _parts_dir(single) if write and not evaluating else None
    search = len(radii) > 1

    if write and single is not None and single.exists() and not config.overwrite:
        print(f"# {single} exists; --overwrite to redo it", file=log)
        report.skipped.extend(p for p in config.inputs)
        report.seconds = time.perf_counter() - start
        return result

    def outputs(name: str) -> list[Path]:
        if evaluating:
            return []  # everything is needed for the evaluation
        if config.per_micrograph:
            return [_per_micrograph_path(config, name)] if write else []
        return [parts / f"{name}.txt"] if parts is not None else []

    if parts is not None:
        _prepare_parts(parts, _fingerprint(config), overwrite=config.overwrite)
    groups = plan(
        config.inputs,
        outputs,
        overwrite=config.overwrite or evaluating,
        report=report,
    )
    total = sum(len(v) for v in groups.values())
    scorer = _load_scorer(config.model, config.precision)
    devices = tuple(select_devices(config.device))
    scale = config.up_scale / config.down_scale
    collected: dict[int, list[Coordinates]] = {r: [] for r in radii}
    bar = tqdm(total=total, unit="mic", desc="extract", disable=not progress, smoothing=0.1)
    readers = ThreadPoolExecutor(max_workers=config.num_readers, thread_name_prefix="jaxpick-read")
    writers = Writers(threads=2, limit=8)
    threshold = np.float32(config.threshold)
    try:
        for shape, items in groups.items():
            limits = tuple(
                min(max_picks(shape, r), config.max_particles or max_picks(shape, r)) for r in radii
            )
            tile = _choose_tile(scorer, shape, devices, config.patch_size)
            run = _batch_function(scorer, devices, tile=tile, radii=radii, limits=limits)
            size = _batch_size(scorer, shape, devices, config.batch_size, len(items))
            for batch in batches(items, size, readers=readers, report=report):
                picks = jax.device_get(run(scorer.state, batch.data, threshold))
                _dispatch_picks(
                    batch,
                    picks,
                    radii,
                    scale,
                    config,
                    parts,
                    collected,
                    writers,
                    report,
                    bar,
                    keep=evaluating or single is None or config.output is None,
                )
        writers.drain(report)
    finally:
        writers.close()
        readers.shutdown(wait=True)
        bar.close()

    tables = {r: Coordinates.concat(collected[r]) if collected[r] else _empty() for r in radii}
    chosen = radii[0]
    if evaluating:
        assert targets is not None
        for r in radii:
            evaluation = _evaluate(targets, tables[r], r, config.assignment_radius)
            result.evaluations.append(evaluation)
            print(evaluation.line(), file=sys.stdout)
        if search:
            scored = [e for e in result.evaluations if not math.isnan(e.auprc)]
            if scored:
                chosen = max(scored, key=lambda e: e.auprc).radius
            print(f"# optimal radius: {chosen}", file=log)
    result.radius = chosen

    if write:
        if config.per_micrograph and evaluating:
            picked = tables[chosen]
            for item_name, rows in picked.per_image():
                path = _per_micrograph_path(config, item_name)
                result.written += _write_per_micrograph(
                    rows, path, config.format, config, radius=chosen
                )
        elif not config.per_micrograph:
            result.written += _assemble(config, single, parts, tables[chosen], report)
    result.picks = tables[chosen] if (evaluating or single is None) else None
    report.seconds = time.perf_counter() - start
    return result


def _empty() -> Coordinates:
    return Coordinates(
        image_name=np.zeros(0, np.str_), x=np.zeros(0), y=np.zeros(0), score=np.zeros(0)
    )


def _prepare_parts(parts: Path, fingerprint: str, *, overwrite: bool) -> None:
    stamp = parts / "settings"
    if parts.exists() and (overwrite or not stamp.exists() or stamp.read_text() != fingerprint):
        shutil.rmtree(parts)
    parts.mkdir(parents=True, exist_ok=True)
    write_text_atomic(stamp, fingerprint)


def _dispatch_picks(
    batch: Batch,
    picks: Any,
    radii: tuple[int, ...],
    scale: float,
    config: ExtractConfig,
    parts: Path | None,
    collected: dict[int, list[Coordinates]],
    writers: Writers,
    report: Report,
    bar: Any,
    *,
    keep: bool,
) -> None:
    for index, item in enumerate(batch.items):
        tables = {
            r: picks_to_coordinates(
                item.name,
                picks[i].coords[index],
                picks[i].scores[index],
                picks[i].valid[index],
                scale=scale,
            )
            for i, r in enumerate(radii)
        }
        if keep or parts is None:
            for r, table in tables.items():
                collected[r].append(table)
        table = tables[radii[0]]
        target: Path | None = None
        if not config.targets and not config.only_validate:
            if config.per_micrograph:
                target = _per_micrograph_path(config, item.name)
            elif parts is not None:
                target = parts / f"{item.name}.txt"
        if target is None:
            report.done.append(item.name)
            bar.update(1)
            continue
        fmt = config.format if config.per_micrograph else "coord"

        def job(table: Coordinates = table, target: Path = target, fmt: str = fmt) -> None:
            _write_per_micrograph(table, target, fmt, config, radius=radii[0])

        def done(name: str = item.name) -> None:
            report.done.append(name)

        writers.submit(item.name, job, done, report)
        bar.update(1)


def _write_per_micrograph(
    table: Coordinates, path: Path, fmt: str, config: ExtractConfig, *, radius: int
) -> list[Path]:
    """One micrograph's picks to ``path`` (box and json name their files in the folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt in ("box", "json"):
        box = config.box_size if config.box_size is not None else max(2 * radius, 1)
        return write_coordinates(
            table, path.parent, fmt, suffix=config.suffix, box_size=box if fmt == "box" else None
        )
    return write_coordinates(table, path, fmt)


def _assemble(
    config: ExtractConfig,
    single: Path | None,
    parts: Path | None,
    picks: Coordinates,
    report: Report,
) -> list[Path]:
    """Writes the one output (file or standard output) in input order; removes the parts."""
    from jaxpick.io.names import image_name

    if parts is not None:
        tables = []
        for path in config.inputs:
            name = image_name(path)
            part = parts / f"{name}.txt"
            if name in report.failed or not part.exists():
                continue
            tables.append(read_coordinates(part, "coord", image_name=name))
        picks = Coordinates.concat(tables) if tables else _empty()
    text = _topaz_table(picks)
    if single is None:
        sys.stdout.write(text)
        return []
    single.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(single, text)
    if parts is not None and not report.failed:
        shutil.rmtree(parts, ignore_errors=True)
    return [single]


def _topaz_table(picks: Coordinates) -> str:
    """Topaz's single-file output: a tab-separated ``image_name x_coord y_coord score`` table."""
    lines = ["image_name\tx_coord\ty_coord\tscore"]
    assert picks.score is not None
    integral = bool(np.all(picks.x == np.round(picks.x)) and np.all(picks.y == np.round(picks.y)))
    for name, x, y, s in zip(picks.image_name, picks.x, picks.y, picks.score, strict=True):
        if integral:
            lines.append(f"{name}\t{int(x)}\t{int(y)}\t{str(np.float32(s))}")
        else:
            lines.append(f"{name}\t{x!r}\t{y!r}\t{str(np.float32(s))}")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------- segment


def segment(config: SegmentConfig, *, progress: bool = True) -> Report:
    """Writes the dense logit map of every micrograph (``topaz segment``), float32."""
    import jax
    from tqdm.auto import tqdm

    start = time.perf_counter()
    report = Report()
    if config.model.lower() == "none":
        raise ConfigError("segment needs a model (-m)")
    dest = Path(config.destdir)

    def outputs(name: str) -> list[Path]:
        return [dest / f"{name}.{config.format}"]

    groups = plan(config.inputs, outputs, overwrite=config.overwrite, report=report)
    total = sum(len(v) for v in groups.values())
    scorer = _load_scorer(config.model, config.precision)
    devices = tuple(select_devices(config.device))
    bar = tqdm(total=total, unit="mic", desc="segment", disable=not progress, smoothing=0.1)
    readers = ThreadPoolExecutor(max_workers=config.num_readers, thread_name_prefix="jaxpick-read")
    writers = Writers(threads=2, limit=8)
    try:
        for shape, items in groups.items():
            tile = _choose_tile(scorer, shape, devices, config.patch_size)
            run = batched_jit(_score_one(scorer, tile), devices, (None, 0))
            size = _batch_size(scorer, shape, devices, config.batch_size, len(items))
            for batch in batches(items, size, readers=readers, report=report):
                maps = np.asarray(jax.device_get(run(scorer.state, batch.data)))
                for index, item in enumerate(batch.items):
                    score_map = np.array(maps[index], np.float32)
                    path = outputs(item.name)[0]

                    def job(
                        score_map: np.ndarray = score_map, path: Path = path, item: Item = item
                    ) -> None:
                        path.parent.mkdir(parents=True, exist_ok=True)
                        write_image(path, score_map, pixel_size=item.pixel_size)

                    def done(name: str = item.name) -> None:
                        report.done.append(name)

                    writers.submit(item.name, job, done, report)
                    bar.update(1)
        writers.drain(report)
    except JaxpickError:
        raise
    finally:
        writers.close()
        readers.shutdown(wait=True)
        bar.close()
    report.seconds = time.perf_counter() - start
    return report
