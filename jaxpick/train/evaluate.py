"""Test-set evaluation after each epoch: Topaz's region metrics plus particle-level AUPRC.

Region metrics (spec 3.6) treat every pixel as a sample: the label of a pixel is 1 within
``radius`` of a test particle (a disc around the particle's integer position), the model's
dense logits are its scores, and loss (pixel-weighted mean BCE), precision (Σ_{y=1}σ / Σσ),
TPR, FPR and the average precision over all pixels are computed as Topaz does.

Particle-level AUPRC is what a user cares about: dense scores -> non-maximum suppression with
``eval_radius`` -> picks matched to the test particles within ``eval_radius``
(:func:`jaxpick.metrics.evaluate_picks`). At most ``max(100, 10 × particles)`` picks per
micrograph are kept (the best-scoring ones): lower-ranked picks add almost nothing to the
area and would only slow every epoch.

Scoring and NMS run in one jitted program per micrograph shape; the metrics' sums are taken
on the host in float64.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxpick.data.targets import TrainingSet, disc_offsets
from jaxpick.extract import max_picks, picks_to_coordinates
from jaxpick.io.coords import Coordinates
from jaxpick.metrics import average_precision, evaluate_picks

__all__ = ["TestMetrics", "disc_mask", "make_evaluator"]


@dataclass(frozen=True)
class TestMetrics:
    """One epoch's test metrics.

    Attributes:
      loss: mean per-pixel binary cross-entropy.
      precision, adjusted_precision, tpr, fpr: as in training, over all pixels.
      auprc: average precision of the pixel scores against the pixel labels (Topaz's column).
      particle_auprc: average precision of the picks against the test particles.
      picks: total picks evaluated.
    """

    loss: float
    precision: float
    adjusted_precision: float
    tpr: float
    fpr: float
    auprc: float
    particle_auprc: float
    picks: int

    def columns(self) -> dict[str, float]:
        """The values by TSV column name."""
        return {
            "loss": self.loss,
            "precision": self.precision,
            "adjusted_precision": self.adjusted_precision,
            "tpr": self.tpr,
            "fpr": self.fpr,
            "auprc": self.auprc,
            "particle_auprc": self.particle_auprc,
        }


def disc_mask(shape: tuple[int, int], coords: np.ndarray, radius: int) -> np.ndarray:
    """Boolean ``shape`` mask: True within ``radius`` of any ``(y, x)`` row of ``coords``."""
    mask = np.zeros(shape, dtype=bool)
    if len(coords) == 0:
        return mask
    offsets = disc_offsets(radius)
    points = coords[:, None, :].astype(np.int64) + offsets[None, :, :].astype(np.int64)
    points = points.reshape(-1, 2)
    inside = (
        (points[:, 0] >= 0)
        & (points[:, 0] < shape[0])
        & (points[:, 1] >= 0)
        & (points[:, 1] < shape[1])
    )
    points = points[inside]
    mask[points[:, 0], points[:, 1]] = True
    return mask


def _pick_limit(shape: tuple[int, int], radius: int, num_particles: int) -> int:
    return int(min(max_picks(shape, radius), max(100, 10 * num_particles)))


def make_evaluator(
    graphdef: nnx.GraphDef[Any],
    test: TrainingSet,
    *,
    radius: int,
    eval_radius: int,
    est_max_prec: float,
) -> Callable[[nnx.State, nnx.State], TestMetrics]:
    """``(params, batch_stats) -> TestMetrics`` on the test set.

    Args:
      graphdef: the graph of the :class:`jaxpick.train.step.Trainable`.
      test: the test images and their particles.
      radius: the label disc radius (the training ``-r``).
      eval_radius: NMS and matching radius for the particle-level AUPRC.
      est_max_prec: divides the precision into the adjusted precision.
    """
    from jaxpick.kernels.nms import nms

    masks = [
        disc_mask(img.shape, c, radius) for img, c in zip(test.images, test.coords, strict=True)
    ]
    most = max((len(c) for c in test.coords), default=0)
    targets = Coordinates.concat(
        Coordinates(image_name=name, x=c[:, 1].astype(np.float64), y=c[:, 0].astype(np.float64))
        for name, c in zip(test.names, test.coords, strict=True)
    )
    programs: dict[tuple[int, int], Callable[..., Any]] = {}

    def program(shape: tuple[int, int]) -> Callable[..., Any]:
        if shape not in programs:
            limit = _pick_limit(shape, eval_radius, most)

            @jax.jit
            def run(params: nnx.State, batch_stats: nnx.State, image: jax.Array) -> Any:
                model = nnx.merge(graphdef, params, batch_stats)
                logits = model.picker(image[None], dense=True)[0]
                picks = nms(logits, radius=eval_radius, max_particles=limit)
                return logits, picks

            programs[shape] = run
        return programs[shape]

    def evaluate(params: nnx.State, batch_stats: nnx.State) -> TestMetrics:
        bce = sig_all = sig_pos = sig_neg = 0.0
        n_pos = n_all = 0
        all_scores: list[np.ndarray] = []
        tables: list[Coordinates] = []
        for name, image, mask in zip(test.names, test.images, masks, strict=True):
            logits, picks = program(image.shape)(params, batch_stats, jnp.asarray(image))
            s = np.asarray(jax.device_get(logits), dtype=np.float64)
            p = 1 / (1 + np.exp(-s))
            # Stable BCE with logits: softplus(-s) for positives, softplus(s) for the rest.
            bce += float(np.sum(np.logaddexp(0, np.where(mask, -s, s))))
            sig_all += float(p.sum())
            sig_pos += float(p[mask].sum())
            sig_neg += float(p[~mask].sum())
            n_pos += int(mask.sum())
            n_all += mask.size
            all_scores.append(s.astype(np.float32).ravel())
            coords, scores, valid = jax.device_get(picks)
            tables.append(picks_to_coordinates(name, coords, scores, valid))
        precision = sig_pos / sig_all if sig_all > 0 else math.nan
        labels = np.concatenate([m.ravel() for m in masks])
        auprc = (
            average_precision(labels, np.concatenate(all_scores), int(labels.sum()))
            if labels.any()
            else math.nan
        )
        picked = Coordinates.concat(tables)
        if len(targets) and len(picked):
            particle_auprc = evaluate_picks(targets, picked, eval_radius).curve.auprc
        else:
            particle_auprc = math.nan if not len(targets) else 0.0
        return TestMetrics(
            loss=bce / n_all,
            precision=precision,
            adjusted_precision=precision / est_max_prec,
            tpr=sig_pos / n_pos if n_pos else math.nan,
            fpr=sig_neg / (n_all - n_pos) if n_all > n_pos else math.nan,
            auprc=auprc,
            particle_auprc=particle_auprc,
            picks=len(picked),
        )

    return evaluate
