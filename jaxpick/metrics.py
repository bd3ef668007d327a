"""Matching picks to ground truth, average precision and the precision-recall curve.

The library behind ``jaxpick precision_recall_curve``, with Topaz's semantics
(``topaz/algorithms.py: match_coordinates``, ``topaz/metrics.py``):

* **Matching** (:func:`match_coordinates`): each prediction is paired with at most one target
  and each target with at most one prediction so that the sum of ``min(d² − R², 0)`` over the
  pairs is minimal (an optimal linear assignment). A prediction is a *hit* when its pair is
  closer than the radius, ``d < R`` strictly.
* **Average precision** (:func:`average_precision`): predictions sorted by descending float32
  score, equal scores grouped into one bucket, ``AP = Σ_bucket precision · hits_in_bucket / N``
  with ``N`` the number of targets (targets nobody found lower the recall).
* **The curve** (:func:`precision_recall_table`): threshold, precision, recall and F1 after each
  bucket.

Matching runs on the host in numpy (it is bookkeeping, not a device kernel) and needs no SciPy:
only pairs closer than ``R`` can lower the cost, so the problem splits into the connected
components of the "within R" bipartite graph, each solved exactly on its own (see
:func:`match_coordinates`). Thousands of picks per micrograph match in tens of milliseconds.

Examples:
  >>> import numpy as np
  >>> targets = np.array([[10, 10], [30, 30], [50, 50]])
  >>> preds = np.array([[11, 10], [29, 33], [80, 80], [50, 54]])
  >>> match = match_coordinates(targets, preds, 4)
  >>> match.hits
  array([ True,  True, False, False])
  >>> round(average_precision(match.hits, [3, 1, 2, 0.5], num_targets=3), 6)
  0.555556
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple, TextIO, cast

import numpy as np
import numpy.typing as npt

from jaxpick.errors import ConfigError, CoordinateFormatError, JaxpickError
from jaxpick.io.coords import Coordinates, canonical_format, read_coordinates
from jaxpick.io.coords.registry import EXTENSIONS

ImageSet = Literal["target", "predicted", "union"]
IMAGE_SETS: tuple[str, ...] = ("target", "predicted", "union")

# Candidate pairs examined per chunk of the sweep in `_pairs_within` (bounds memory when the
# radius is large compared with the spacing of the points).
_PAIR_CHUNK = 1 << 22


# ------------------------------------------------------------------------------------ matching


class Match(NamedTuple):
    """The result of :func:`match_coordinates`, one entry per prediction.

    Attributes:
      hits: bool, whether the prediction is matched to a target closer than the radius.
      distances: float64, distance to the target the prediction is assigned to; 0 for a
        prediction left unassigned. For hits this is the matching distance. For other
        predictions the assigned target is an arbitrary leftover (every such pair costs 0, as in
        Topaz, whose SciPy assignment pairs leftovers too), so the value carries no information.
      assigned: int64 index of the assigned target, -1 if unassigned. Hits are assigned to
        distinct targets.
    """

    hits: np.ndarray
    distances: np.ndarray
    assigned: np.ndarray


def match_coordinates(targets: npt.ArrayLike, preds: npt.ArrayLike, radius: float) -> Match:
    """Matches predicted coordinates to target coordinates like Topaz, exactly and fast.

    Topaz builds the full ``len(preds) × len(targets)`` cost matrix ``min(d² − R², 0)`` and
    solves it with ``scipy.optimize.linear_sum_assignment`` (rows = predictions). Here, only
    pairs with ``d < R`` are found (a sweep over coordinates sorted by x), the bipartite graph of
    those pairs is split into connected components, and each component is solved on its own:
    a component with one prediction or one target takes its cheapest pair; a larger one is
    solved with the shortest-augmenting-path algorithm SciPy uses (Crouse 2016, ported to
    numpy). Pairs in different components cost 0, so the union of the components' optima is an
    optimal assignment of the whole problem: the total cost equals SciPy's.

    Ties: the total cost is always the optimum; *which* optimal assignment is chosen when
    there are several is deterministic but may differ from SciPy's (SciPy sees the whole
    matrix, this one component at a time). Such ties need exactly equal distances, which
    integer coordinates produce:

    * Among predictions equally close to a target with nothing else within reach, the earliest
      prediction is the hit (Topaz's ``extract`` writes picks by descending score, so the
      best-scoring one). Which prediction is the hit can change the AP.
    * When optimal assignments differ in their number of hits (sums such as
      ``−25 = −20 − 5``), the one with the most hits is chosen. This is exact whenever the
      costs are multiples of ``2**-10`` (integer and half-pixel coordinates), so the number of
      hits depends on the two point sets only, not on their order.

    Args:
      targets: ``(T, D)`` target coordinates (``D`` = 2 or 3; any consistent axis order).
      preds: ``(P, D)`` predicted coordinates.
      radius: the match radius ``R`` in the same units; pairs with ``d >= R`` never match.

    Returns:
      A :class:`Match` with one entry per prediction.

    Raises:
      ValueError: shapes that do not match, non-finite coordinates, or a negative or
        non-finite radius.

    Examples:
      >>> import numpy as np
      >>> m = match_coordinates(
      ...     np.array([[10, 10], [30, 30], [50, 50]]),
      ...     np.array([[11, 10], [29, 33], [80, 80], [50, 54]]),
      ...     radius=4,
      ... )
      >>> m.hits.tolist(), m.assigned.tolist()
      ([True, True, False, False], [0, 1, 2, -1])
      >>> np.round(m.distances, 4).tolist()
      [1.0, 3.1623, 42.4264, 0.0]
    """
    t = _points(targets, "targets")
    p = _points(preds, "preds")
    if t.shape[1] != p.shape[1] and len(t) and len(p):
        raise ValueError(
            f"targets and preds must have the same number of columns, got {t.shape} and {p.shape}"
        )
    r = float(radius)
    if not (math.isfinite(r) and r >= 0):
        raise ValueError(f"radius must be a finite number >= 0, got {radius!r}")
    n_p, n_t = len(p), len(t)
    assigned = np.full(n_p, -1, dtype=np.int64)
    if n_p and n_t:
        pi, ti, cost = _pairs_within(t, p, r)
        if len(pi):
            hit_p, hit_t = _solve_sparse(n_p, n_t, pi, ti, cost)
            assigned[hit_p] = hit_t
    hits = assigned >= 0
    # Complete the assignment like a full linear assignment would: leftover targets (by index)
    # go to leftover predictions (by index), at cost 0. Only the distances see this.
    free_t = np.setdiff1d(np.arange(n_t), assigned[hits], assume_unique=True)
    free_p = np.flatnonzero(~hits)
    k = min(len(free_t), len(free_p))
    assigned[free_p[:k]] = free_t[:k]
    distances = np.zeros(n_p, dtype=np.float64)
    have = assigned >= 0
    if have.any():
        delta = p[have] - t[assigned[have]]
        distances[have] = np.sqrt(np.sum(delta * delta, axis=1))
    return Match(hits=hits, distances=distances, assigned=assigned)


def _points(values: npt.ArrayLike, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        return array.reshape(0, array.shape[-1] if array.ndim == 2 else 2)
    if array.ndim != 2:
        raise ValueError(f"{name} must have shape (n, dims), got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite coordinates")
    return array


def _pairs_within(
    targets: np.ndarray, preds: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All (pred, target) pairs with ``d² − R² < 0``, and that cost, as Topaz computes it.

    Sweep: targets sorted by x; each prediction looks only at targets with ``|Δx| < R``.
    """
    rr = radius * radius
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64))
    if radius <= 0:
        return empty
    order = np.argsort(targets[:, 0], kind="stable")
    tx = targets[order, 0]
    # A slightly wider window than |Δx| < R: the exact test below decides.
    reach = radius * (1 + 1e-9) + 1e-300
    lo = np.searchsorted(tx, preds[:, 0] - reach, side="left")
    hi = np.searchsorted(tx, preds[:, 0] + reach, side="right")
    counts = np.maximum(hi - lo, 0)
    parts_p, parts_t, parts_c = [], [], []
    ends = np.cumsum(counts)
    start = 0
    while start < len(preds):
        # Chunk the predictions so that each chunk has at most ~_PAIR_CHUNK candidates.
        base = ends[start - 1] if start else 0
        stop = int(np.searchsorted(ends, base + _PAIR_CHUNK, side="right"))
        stop = max(stop, start + 1)
        c = counts[start:stop]
        total = int(c.sum())
        if total:
            pi = np.repeat(np.arange(start, stop), c)
            offsets = np.arange(total) - np.repeat(np.cumsum(c) - c, c)
            ti = order[np.repeat(lo[start:stop], c) + offsets]
            delta = preds[pi] - targets[ti]
            # The same arithmetic as Topaz: d² summed over the last axis, then d² − R².
            cost = np.sum(delta * delta, axis=1) - rr
            keep = cost < 0
            parts_p.append(pi[keep])
            parts_t.append(ti[keep])
            parts_c.append(cost[keep])
        start = stop
    if not parts_p:
        return empty
    return np.concatenate(parts_p), np.concatenate(parts_t), np.concatenate(parts_c)


def _components(n_nodes: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Connected-component label (the smallest node id) of each node; edges ``a[k]–b[k]``.

    Vectorised hooking and pointer jumping: every round, each root with a lower-numbered
    neighbouring root hooks onto the lowest one, then all pointers jump to their roots. The
    number of roots in each component at least halves per round.
    """
    parent = np.arange(n_nodes)
    while True:
        pa, pb = parent[a], parent[b]
        differ = pa != pb
        if not differ.any():
            return parent
        pa, pb = pa[differ], pb[differ]
        np.minimum.at(parent, np.maximum(pa, pb), np.minimum(pa, pb))
        while True:
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped


def _solve_sparse(
    n_p: int, n_t: int, pi: np.ndarray, ti: np.ndarray, cost: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Optimal assignment restricted to the given (negative-cost) pairs: the hit pairs."""
    parent = _components(n_p + n_t, pi, ti + n_p)
    comps, comp = np.unique(parent[pi], return_inverse=True)
    # Distinct predictions and targets per component (each node is in one component).
    size_p = np.bincount(np.searchsorted(comps, parent[np.unique(pi)]), minlength=len(comps))
    size_t = np.bincount(np.searchsorted(comps, parent[np.unique(ti) + n_p]), minlength=len(comps))

    # Edges grouped by component; within a component by cost, then prediction, then target.
    order = np.lexsort((ti, pi, cost, comp))
    starts = np.searchsorted(comp[order], np.arange(len(comps)))

    # Stars (one prediction or one target): the cheapest pair; ties go to the lower index.
    star = (size_p == 1) | (size_t == 1)
    hit_p = [pi[order[starts[star]]]]
    hit_t = [ti[order[starts[star]]]]
    general = np.flatnonzero(~star)
    if len(general):
        edges = order[np.isin(comp[order], general)]
        e_comp, e_p, e_t = comp[edges], pi[edges], ti[edges]
        e_cost = _prefer_more_hits(cost[edges], int(np.minimum(size_p, size_t)[general].max()))
        # Row (prediction) and column (target) of each edge inside its component's matrix.
        row = _rank_within(e_comp, e_p)
        col = _rank_within(e_comp, e_t)
        bounds = np.searchsorted(e_comp, general)
        bounds = np.append(bounds, len(edges))
        for k, (lo, hi) in enumerate(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)):
            g = general[k]
            matrix = np.zeros((size_p[g], size_t[g]), dtype=np.float64)
            matrix[row[lo:hi], col[lo:hi]] = e_cost[lo:hi]
            rows, cols = _assign(matrix)
            hit = matrix[rows, cols] < 0
            preds = np.empty(size_p[g], dtype=np.int64)
            preds[row[lo:hi]] = e_p[lo:hi]
            targets = np.empty(size_t[g], dtype=np.int64)
            targets[col[lo:hi]] = e_t[lo:hi]
            hit_p.append(preds[rows[hit]])
            hit_t.append(targets[cols[hit]])
    return np.concatenate(hit_p), np.concatenate(hit_t)


def _rank_within(group: np.ndarray, node: np.ndarray) -> np.ndarray:
    """For edges sorted by ``group``: the rank of each edge's ``node`` among the distinct nodes
    of its group, in increasing node order (0, 1, ...)."""
    pairs = np.unique(np.stack([group, node]), axis=1)  # sorted by group, then node
    index = np.searchsorted(pairs[0] * (node.max() + 1) + pairs[1], group * (node.max() + 1) + node)
    first = np.searchsorted(pairs[0], group)
    return index - first


def _assign(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of an optimal assignment, as ``scipy.optimize.linear_sum_assignment``."""
    if matrix.shape[0] <= matrix.shape[1]:
        return np.arange(matrix.shape[0]), linear_sum_assignment_reference(matrix)
    # SciPy solves the transpose when there are more rows than columns.
    return linear_sum_assignment_reference(matrix.T), np.arange(matrix.shape[1])


def _prefer_more_hits(cost: np.ndarray, max_pairs: int) -> np.ndarray:
    """Costs whose optimal assignments are those optimal for ``cost`` with the most pairs.

    ``K·c − 1`` with ``K > max_pairs`` ranks assignments by total cost first, then by number of
    pairs, provided the costs are integers (so that different totals differ by at least 1).
    Costs on a dyadic grid (multiples of ``2**-s``, s ≤ 10) are scaled to integers first; other
    costs are returned unchanged (ties between their totals are then coincidences).
    """
    k = float(max_pairs + 1)
    for shift in (0, 1, 2, 4, 10):  # integers, half, quarter, 1/16 and 1/1024 grids
        scaled = cost * float(2**shift)
        if np.array_equal(scaled, np.round(scaled)):
            if -scaled.min() * k * max_pairs < 2.0**52:  # stays exact in float64
                return scaled * k - 1.0
            break
    return cost


def linear_sum_assignment_reference(cost: npt.ArrayLike) -> np.ndarray:
    """SciPy's ``linear_sum_assignment`` algorithm for a dense ``(n, m)`` matrix, ``n <= m``.

    A numpy port of the shortest augmenting path method in SciPy's ``rectangular_lsap.cpp``
    (Crouse 2016), with the same scan order and tie-breaking, so that on the same matrix it
    returns the same assignment. Used on the small components of :func:`match_coordinates`;
    the inner scan over columns is vectorised, the augmenting loop runs in Python.

    Args:
      cost: ``(n, m)`` finite costs with ``n <= m``.

    Returns:
      int64 ``(n,)``: the column assigned to each row (the total ``cost[i, col[i]]`` is
      minimal over assignments of every row to a distinct column).

    Raises:
      ValueError: ``n > m`` or non-finite costs.

    Examples:
      >>> linear_sum_assignment_reference([[4, 1, 3], [2, 0, 5], [3, 2, 2]]).tolist()
      [1, 0, 2]
    """
    matrix = np.asarray(cost, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] > matrix.shape[1]:
        raise ValueError(f"cost must be an (n, m) matrix with n <= m, got shape {matrix.shape}")
    nr, nc = matrix.shape
    if nr == 0:
        return np.zeros(0, dtype=np.int64)
    if not np.isfinite(matrix).all():
        raise ValueError("cost contains NaN or infinite values")
    matrix = matrix - matrix.min()  # SciPy works on a non-negative matrix
    u = np.zeros(nr)
    v = np.zeros(nc)
    path = np.full(nc, -1, dtype=np.int64)
    col4row = np.full(nr, -1, dtype=np.int64)
    row4col = np.full(nc, -1, dtype=np.int64)
    for cur in range(nr):
        min_val = 0.0
        remaining = np.arange(nc - 1, -1, -1)  # reverse order, as SciPy (scipy#11602)
        num = nc
        scanned_rows = np.zeros(nr, dtype=bool)
        scanned_cols = np.zeros(nc, dtype=bool)
        spc = np.full(nc, np.inf)  # shortest path costs
        i = cur
        sink = -1
        while sink == -1:
            scanned_rows[i] = True
            rem = remaining[:num]
            r = min_val + matrix[i, rem] - u[i] - v[rem]
            better = r < spc[rem]
            path[rem[better]] = i
            spc[rem[better]] = r[better]
            values = spc[rem]
            lowest = values.min()
            # SciPy scans `remaining` in order keeping the first minimum, but lets a later
            # minimum whose column is free take over: the last free minimum, else the first.
            at_min = values == lowest
            free = at_min & (row4col[rem] == -1)
            index = int(np.flatnonzero(free)[-1]) if free.any() else int(np.argmax(at_min))
            j = int(rem[index])
            min_val = float(lowest)
            if row4col[j] == -1:
                sink = j
            else:
                i = int(row4col[j])
            scanned_cols[j] = True
            num -= 1
            remaining[index] = remaining[num]
        u[cur] += min_val
        others = scanned_rows.copy()
        others[cur] = False
        u[others] += min_val - spc[col4row[others]]
        v[scanned_cols] -= min_val - spc[scanned_cols]
        j = sink
        while True:
            i = int(path[j])
            row4col[j] = i
            col4row[i], j = j, int(col4row[i])
            if i == cur:
                break
    return col4row


# ------------------------------------------------------------------------ precision and recall


class PrecisionRecall(NamedTuple):
    """The precision-recall curve, one entry per distinct score (descending).

    Attributes:
      threshold: float32 score of the bucket: counting every prediction scoring >= threshold.
      precision: float64 hits / predictions at that threshold.
      recall: float64 hits / number of targets.
      f1: float64 ``2PR / (P + R)`` (0 where ``P + R = 0``).
      auprc: the average precision (area under the curve, Topaz's step rule).
    """

    threshold: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    auprc: float


def precision_recall_table(
    hits: npt.ArrayLike, scores: npt.ArrayLike, num_targets: int
) -> PrecisionRecall:
    """The precision-recall curve with Topaz's buckets (``topaz.metrics.precision_recall_curve``).

    Scores are cast to float32 as Topaz does, so scores equal in float32 share one bucket.
    The arithmetic follows Topaz operation for operation, so the values are identical.

    Args:
      hits: one flag per prediction (bool, or 0/1 numbers), e.g. ``match_coordinates().hits``.
      scores: one score per prediction (higher = more confident).
      num_targets: ``N``, the number of targets, including those no prediction matched.

    Returns:
      A :class:`PrecisionRecall`; with no predictions, empty arrays and ``auprc = 0``.

    Raises:
      ValueError: lengths differ, NaN scores, hits that are not 0/1, ``num_targets < 1``, or
        more hits than targets.

    Examples:
      >>> pr = precision_recall_table([1, 0, 1, 0], [3, 2, 1, 0.5], num_targets=3)
      >>> pr.threshold.tolist(), pr.precision.round(3).tolist()
      ([3.0, 2.0, 1.0, 0.5], [1.0, 0.5, 0.667, 0.5])
      >>> round(pr.auprc, 6)
      0.555556
    """
    h, s = _hits_and_scores(hits, scores, num_targets)
    if len(h) == 0:
        empty = np.zeros(0, dtype=np.float64)
        return PrecisionRecall(np.zeros(0, np.float32), empty, empty, empty, 0.0)
    tp, pp, bucket_hits, threshold = _buckets(h, s)
    precision = tp / pp
    auprc = float(np.sum(precision * bucket_hits) / num_targets)
    recall = tp / num_targets
    # Topaz's F1, operation for operation.
    zero = (precision + recall) == 0
    f1 = 2 * precision * recall
    f1[zero] = 0
    f1[~zero] /= (precision + recall)[~zero]
    return PrecisionRecall(threshold, precision, recall, f1, auprc)


def average_precision(hits: npt.ArrayLike, scores: npt.ArrayLike, num_targets: int) -> float:
    """Average precision with Topaz's score buckets (``topaz.metrics.average_precision``).

    Predictions are sorted by descending float32 score and equal scores form one bucket;
    ``AP = Σ_bucket precision(bucket) · hits(bucket) / num_targets``, where precision is the
    cumulative hits over the cumulative predictions at the end of the bucket. A target no
    prediction matched counts in ``num_targets`` and so lowers the AP.

    Args:
      hits: one flag per prediction (bool, or 0/1 numbers).
      scores: one score per prediction.
      num_targets: the number of targets ``N`` (>= 1).

    Returns:
      The AP in [0, 1]; 0 when there are no predictions.

    Raises:
      ValueError: as :func:`precision_recall_table`.

    Examples:
      >>> round(average_precision([1, 1, 0, 0], [3, 1, 2, 0.5], num_targets=3), 6)
      0.555556
      >>> average_precision([1, 1], [0.5, 0.5], num_targets=2)  # one bucket of two hits
      1.0
    """
    return precision_recall_table(hits, scores, num_targets).auprc


def _hits_and_scores(
    hits: npt.ArrayLike, scores: npt.ArrayLike, num_targets: int
) -> tuple[np.ndarray, np.ndarray]:
    h = np.asarray(hits).reshape(-1)
    s = np.asarray(scores, dtype=np.float32).reshape(-1)
    if h.shape != s.shape:
        raise ValueError(f"hits and scores differ in length: {h.shape[0]} and {s.shape[0]}")
    if h.dtype != bool:
        if len(h) and not np.isin(h, (0, 1)).all():
            raise ValueError("hits must be booleans or 0/1 values")
        h = h.astype(bool)
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    if int(num_targets) != num_targets or num_targets < 1:
        raise ValueError(f"num_targets must be a positive integer, got {num_targets!r}")
    if int(h.sum()) > num_targets:
        raise ValueError(f"{int(h.sum())} hits but only {num_targets} targets")
    return h, s


def _buckets(
    hits: np.ndarray, scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative hits and predictions at the end of each equal-score bucket, the hits in each
    bucket, and the bucket scores (float32), in descending score order."""
    order = np.argsort(-scores, kind="stable")
    s = scores[order]
    last = np.concatenate((s[:-1] != s[1:], [True]))
    ends = np.flatnonzero(last)
    tp = np.cumsum(hits[order], dtype=np.int64)[ends]
    pp = ends + 1
    bucket_hits = np.diff(tp, prepend=0)
    return tp, pp, bucket_hits, s[ends]


# ------------------------------------------------------------------------------ per micrograph


class PickMatches(NamedTuple):
    """Predictions matched image by image (:func:`match_picks`), one entry per prediction kept.

    Attributes:
      image_name: str, the image of each prediction.
      scores: float32 scores.
      hits: bool hit flags.
      distances: float64 distances to the assigned target (see :class:`Match`).
      num_targets: ``N``: the number of targets, as Topaz counts it (see :func:`match_picks`).
      images: the images evaluated, targets' images first (file order), then the others.
    """

    image_name: np.ndarray
    scores: np.ndarray
    hits: np.ndarray
    distances: np.ndarray
    num_targets: int
    images: tuple[str, ...]


def match_picks(
    targets: Coordinates,
    predicted: Coordinates,
    radius: float,
    *,
    images: ImageSet = "target",
) -> PickMatches:
    """Matches predictions to targets micrograph by micrograph, as Topaz's precision-recall.

    ``images`` chooses the micrographs whose predictions count: ``"target"`` those with at
    least one target (predictions on other micrographs are ignored), ``"predicted"`` those with
    at least one prediction, ``"union"`` both. A prediction on a micrograph without targets is a
    miss. ``N`` is always the number of rows in ``targets`` (Topaz: ``N = len(targets)``), so a
    micrograph with targets but no predictions lowers the recall in every mode; therefore
    ``"predicted"`` and ``"union"`` give the same numbers, as in Topaz.

    Coordinates are matched in 2-D (x, y), or in 3-D when both tables have a z column.

    Args:
      targets: the ground-truth coordinates (scores ignored).
      predicted: the predictions; must have scores.
      radius: the match radius in pixels (a hit needs ``d < radius``).
      images: ``"target"``, ``"predicted"`` or ``"union"``.

    Returns:
      A :class:`PickMatches`.

    Raises:
      ValueError: ``predicted`` without scores or with NaN scores, or an unknown ``images``.

    Examples:
      >>> t = Coordinates(image_name=["a", "a", "b"], x=[10, 30, 5], y=[10, 30, 5])
      >>> p = Coordinates(image_name=["a", "c"], x=[11, 0], y=[10, 0], score=[1.0, 2.0])
      >>> m = match_picks(t, p, 4)
      >>> m.hits.tolist(), m.num_targets
      ([True], 3)
      >>> match_picks(t, p, 4, images="union").hits.tolist()
      [True, False]
    """
    if images not in IMAGE_SETS:
        raise ValueError(f"images must be one of {', '.join(IMAGE_SETS)}, got {images!r}")
    if predicted.score is None:
        raise ValueError("the predicted coordinates have no scores")
    if len(predicted) and np.isnan(predicted.score).any():
        raise ValueError("the predicted coordinates have rows without a score (NaN)")
    use_z = targets.z is not None and predicted.z is not None
    target_images = targets.images()
    predicted_images = predicted.images()
    if images == "target":
        names = target_images
    elif images == "predicted":
        names = predicted_images
    else:
        names = target_images + [n for n in predicted_images if n not in set(target_images)]
    by_target = dict(targets.per_image())
    by_predicted = dict(predicted.per_image())
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    for name in names:
        rows = by_predicted.get(name)
        if rows is None or len(rows) == 0:
            continue
        truth = by_target.get(name)
        match = match_coordinates(
            _xyz(truth, use_z) if truth is not None else np.zeros((0, 3 if use_z else 2)),
            _xyz(rows, use_z),
            radius,
        )
        assert rows.score is not None
        parts.append((rows.image_name, rows.score.astype(np.float32), match.hits, match.distances))
    if parts:
        columns = [np.concatenate(c) for c in zip(*parts, strict=True)]
    else:
        columns = [
            np.zeros(0, np.str_),
            np.zeros(0, np.float32),
            np.zeros(0, bool),
            np.zeros(0, np.float64),
        ]
    return PickMatches(*columns, num_targets=len(targets), images=tuple(names))


def _xyz(table: Coordinates, use_z: bool) -> np.ndarray:
    columns = [table.x, table.y] + ([table.z] if use_z and table.z is not None else [])
    return np.stack(columns, axis=1)


@dataclass(frozen=True)
class PickEvaluation:
    """What ``jaxpick precision_recall_curve`` reports (:func:`evaluate_picks`).

    Attributes:
      curve: the precision-recall curve and its AUPRC.
      num_targets: ``N``.
      num_predictions: predictions evaluated (on the chosen images).
      num_hits: predictions matched to a target closer than the radius.
      mean_distance: mean distance of the hits to their targets, in pixels (the real "mean
        absolute error"); NaN without hits.
      rmse: root mean square of those distances (what ``topaz extract`` prints as ``rmse``).
      topaz_mae: ``sqrt(mean_distance)``, the number Topaz prints as ``mae`` (its code takes
        the square root of the mean distance — neither an MAE nor an RMSE). Printed for
        compatibility; Topaz prints ``nan`` when the first image it visits has no hit, here it
        is NaN only when there are no hits at all.
      images: the images evaluated.
    """

    curve: PrecisionRecall
    num_targets: int
    num_predictions: int
    num_hits: int
    mean_distance: float
    rmse: float
    topaz_mae: float
    images: tuple[str, ...]


def evaluate_picks(
    targets: Coordinates,
    predicted: Coordinates,
    radius: float,
    *,
    images: ImageSet = "target",
) -> PickEvaluation:
    """Matches picks to targets per micrograph (:func:`match_picks`) and evaluates them.

    Args:
      targets: the ground truth.
      predicted: scored predictions.
      radius: the match radius in pixels.
      images: which micrographs count (see :func:`match_picks`).

    Returns:
      A :class:`PickEvaluation`.

    Raises:
      ValueError: no targets, predictions without scores, or a bad ``images``.

    Examples:
      >>> t = Coordinates(image_name="m", x=[10, 30, 50], y=[10, 30, 50])
      >>> p = Coordinates(image_name="m", x=[11, 29, 80, 50], y=[10, 33, 80, 54],
      ...                 score=[3, 1, 2, 0.5])
      >>> e = evaluate_picks(t, p, 4)
      >>> round(e.curve.auprc, 6), e.num_hits, round(e.mean_distance, 4)
      (0.555556, 2, 2.0811)
    """
    if len(targets) == 0:
        raise ValueError("there are no target coordinates")
    matches = match_picks(targets, predicted, radius, images=images)
    curve = precision_recall_table(matches.hits, matches.scores, matches.num_targets)
    num_hits = int(matches.hits.sum())
    if num_hits:
        d = matches.distances[matches.hits]
        mean_distance = float(np.sum(d) / num_hits)
        rmse = float(np.sqrt(np.sum(d * d) / num_hits))
    else:
        mean_distance = rmse = math.nan
    return PickEvaluation(
        curve=curve,
        num_targets=matches.num_targets,
        num_predictions=len(matches.hits),
        num_hits=num_hits,
        mean_distance=mean_distance,
        rmse=rmse,
        topaz_mae=math.sqrt(mean_distance) if num_hits else math.nan,
        images=matches.images,
    )


def format_precision_recall(evaluation: PickEvaluation) -> str:
    """The text ``topaz precision_recall_curve`` prints, byte for byte.

    A header ``# auprc=A, mae=M`` (``M`` is :attr:`PickEvaluation.topaz_mae`, the square root
    of the mean matched distance), then a tab-separated table ``threshold precision recall f1``
    with one row per distinct score, descending. Numbers are written as pandas writes them:
    thresholds as float32, the rest as the shortest float64 repr.

    Examples:
      >>> t = Coordinates(image_name="m", x=[10], y=[10])
      >>> p = Coordinates(image_name="m", x=[11, 40], y=[10, 40], score=[2, 1])
      >>> print(format_precision_recall(evaluate_picks(t, p, 4)), end="")
      # auprc=1.0, mae=1.0
      threshold	precision	recall	f1
      2.0	1.0	1.0	1.0
      1.0	0.5	1.0	0.6666666666666666
    """
    curve = evaluation.curve
    lines = [
        f"# auprc={_float64_text(curve.auprc)}, mae={_float64_text(evaluation.topaz_mae)}",
        "threshold\tprecision\trecall\tf1",
    ]
    # pandas writes float32 values as numpy's str() (shortest float32 repr: 3.73, 1e-04) and
    # float64 values as Python's repr.
    thresholds = [str(t) for t in curve.threshold.astype(np.float32)]
    for t, p, r, f in zip(
        thresholds, curve.precision.tolist(), curve.recall.tolist(), curve.f1.tolist(), strict=True
    ):
        lines.append(f"{t}\t{p!r}\t{r!r}\t{f!r}")
    return "\n".join(lines) + "\n"


def _float64_text(value: float) -> str:
    return repr(float(value))


# ---------------------------------------------------------------------------------- the command


@dataclass(frozen=True, kw_only=True)
class PrecisionRecallConfig:
    """``jaxpick precision_recall_curve``: scored picks and ground truth in, a curve out.

    Attributes:
      predicted: coordinate files of the scored predictions (concatenated).
      targets: coordinate files of the ground truth (concatenated).
      radius: match radius in pixels (Topaz ``-r/--assignment-radius``); a hit needs
        ``d < radius``.
      images: which micrographs count: ``"target"``, ``"predicted"`` or ``"union"``.
      predicted_format, targets_format: a coordinate format name, or ``"auto"``: by extension,
        and Topaz's tab-separated table for extensions no format claims (``.tsv``, none...).
      output: also write the printed text to this file.
      plot: also draw the curve into this PNG.
    """

    predicted: tuple[str, ...]
    targets: tuple[str, ...]
    radius: float
    images: str = "target"
    predicted_format: str = "auto"
    targets_format: str = "auto"
    output: str | None = None
    plot: str | None = None

    def __post_init__(self) -> None:
        if not self.predicted:
            raise ConfigError("predicted: a file of predicted coordinates is needed")
        if not self.targets:
            raise ConfigError("targets: a file of target coordinates is needed")
        if not (math.isfinite(self.radius) and self.radius > 0):
            raise ConfigError(f"radius must be a positive number, got {self.radius!r}")
        if self.images not in IMAGE_SETS:
            raise ConfigError(f"images must be one of {', '.join(IMAGE_SETS)}, got {self.images!r}")
        for name in ("predicted_format", "targets_format"):
            value = getattr(self, name)
            if value != "auto":
                try:
                    canonical_format(value)
                except ValueError as e:
                    raise ConfigError(f"{name}: {e}") from e


def precision_recall_curve(
    config: PrecisionRecallConfig, *, stdout: TextIO | None = None
) -> PickEvaluation:
    """Runs ``jaxpick precision_recall_curve``: read, match, print, and write the extras.

    Prints :func:`format_precision_recall` to ``stdout`` (default ``sys.stdout``), writes the
    same text to ``config.output`` and the curve to ``config.plot`` when set (atomically).

    Args:
      config: the command's settings.
      stdout: where the text goes.

    Returns:
      The evaluation.

    Raises:
      CoordinateFormatError: a file is missing or unreadable, the predictions have no scores,
        or the targets are empty (the message names the file).
    """
    targets = _read_all(config.targets, config.targets_format)
    predicted = _read_all(config.predicted, config.predicted_format)
    if len(targets) == 0:
        raise CoordinateFormatError(_names(config.targets), "no target coordinates")
    if predicted.score is None or (len(predicted) and np.isnan(predicted.score).any()):
        raise CoordinateFormatError(
            _names(config.predicted),
            "the predicted coordinates need a score for every row (a 'score' column)",
        )
    images = cast(ImageSet, config.images)  # validated by the config
    evaluation = evaluate_picks(targets, predicted, config.radius, images=images)
    text = format_precision_recall(evaluation)
    (stdout or sys.stdout).write(text)
    if config.output is not None:
        from jaxpick.io.atomic import write_text_atomic

        try:
            write_text_atomic(config.output, text)
        except OSError as e:
            raise JaxpickError(f"{config.output}: cannot write: {e.strerror or e}") from e
    if config.plot is not None:
        from jaxpick.plot import plot_precision_recall

        curve = evaluation.curve
        try:
            plot_precision_recall(
                config.plot,
                curve.recall,
                curve.precision,
                title=f"AUPRC = {curve.auprc:.4f}  (radius {config.radius:g} px, "
                f"{evaluation.num_hits}/{evaluation.num_targets} targets found)",
            )
        except OSError as e:
            raise JaxpickError(f"{config.plot}: cannot write: {e.strerror or e}") from e
    return evaluation


def _names(paths: Sequence[str]) -> str:
    return paths[0] if len(paths) == 1 else f"{paths[0]} (and {len(paths) - 1} more)"


def _read_all(paths: Sequence[str], format: str) -> Coordinates:
    return Coordinates.concat([_read_one(p, format) for p in paths])


def _read_one(path: str, format: str) -> Coordinates:
    """Reads a coordinate file; Topaz tables may contain ``#`` comment lines (Topaz reads
    predictions with ``comment='#'``), and unknown extensions are read as Topaz tables."""
    fmt = format
    if fmt == "auto":
        fmt = EXTENSIONS.get(Path(path).suffix.lower(), "coord")
    fmt = canonical_format(fmt)
    if fmt != "coord":
        return read_coordinates(path, fmt)
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise CoordinateFormatError(path, f"cannot read file: {e.strerror or e}") from e
    lines = data.split(b"\n")
    if not any(line.lstrip().startswith(b"#") for line in lines):
        return read_coordinates(path, "coord")
    # Blank the comment lines (line numbers in error messages stay right) and read a copy.
    blanked = b"\n".join(b"" if line.lstrip().startswith(b"#") else line for line in lines)
    with tempfile.TemporaryDirectory(prefix="jaxpick-pr-") as folder:
        copy = os.path.join(folder, Path(path).name or "coordinates.txt")
        Path(copy).write_bytes(blanked)
        try:
            return read_coordinates(copy, "coord")
        except CoordinateFormatError as e:
            raise CoordinateFormatError(path, e.problem) from e


__all__ = [
    "IMAGE_SETS",
    "Match",
    "PickEvaluation",
    "PickMatches",
    "PrecisionRecall",
    "PrecisionRecallConfig",
    "average_precision",
    "evaluate_picks",
    "format_precision_recall",
    "linear_sum_assignment_reference",
    "match_coordinates",
    "match_picks",
    "precision_recall_curve",
    "precision_recall_table",
]
