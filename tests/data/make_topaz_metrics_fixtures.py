"""Regenerates ``topaz_metrics.npz``: Topaz's matching, AP and ``precision_recall_curve`` output.

Run with a Python environment that has Topaz installed (topaz, numpy, scipy, pandas; jaxpick is
not needed), from the repository root::

    /path/to/topaz-venv/bin/python tests/data/make_topaz_metrics_fixtures.py

The stored values were produced with topaz-em 0.3.20, numpy 2.4, scipy 1.17 and pandas 3.0.
``tests/test_metrics.py`` and ``tests/cli/test_precision_recall.py`` compare jaxpick with them,
so the tests never need Topaz.

The script re-runs itself with ``PYTHONHASHSEED=0``: Topaz visits micrographs in ``set`` order,
which depends on string hashing, and its running-mean "mae" depends on that order.

Contents (text is stored as UTF-8 bytes):

* matching, case ``i``: ``match{i}_targets`` and ``match{i}_preds`` (int32 coordinates, float64
  for the "float" cases), ``match{i}_topaz`` = Topaz's ``match_coordinates`` output stacked as
  ``[hits, dists]``; ``match_kinds[i]`` is "realistic" (case 0 is the spec's reference case),
  "float" (crowded, no exact ties) or "ties" (small integer grid, many exactly tied distances);
  ``match_info[i]`` = ``(radius, cost)`` with ``cost`` the total ``Σ min(d² − R², 0)`` of
  SciPy's assignment (the optimum);
* AP, case ``i``: ``ap{i}_input`` = ``[hits, scores]`` (float64 scores, rounded so that many
  tie; the last case has scores equal only in float32), ``ap{i}_topaz`` = Topaz's
  ``precision_recall_curve`` ``[precision, recall, threshold]``, ``ap_info[i]`` =
  ``(N, average_precision, auprc)``;
* ``prc_targets`` / ``prc_predicted``: two Topaz coordinate tables (6 micrographs; one has only
  predictions, one only targets; the predicted file starts with a ``#`` comment line),
  ``prc_radius``, and ``prc_out_{mode}``: what ``topaz precision_recall_curve`` prints for each
  ``--images`` mode.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas
import scipy
import topaz
from scipy.optimize import linear_sum_assignment
from topaz.algorithms import match_coordinates
from topaz.metrics import average_precision, particle_prc, precision_recall_curve

OUT = Path(__file__).resolve().parent / "topaz_metrics.npz"


def nms_points(rng: np.random.Generator, count: int, size: int, spacing: float) -> np.ndarray:
    """Up to ``count`` integer points in ``[0, size)²``, pairwise farther apart than ``spacing``
    (what NMS picks and hand-picked particles look like)."""
    kept: list[np.ndarray] = []
    for q in rng.integers(0, size, size=(count * 6, 2)):
        if all(((q - k) ** 2).sum() > spacing * spacing for k in kept):
            kept.append(q)
            if len(kept) == count:
                break
    return np.array(kept, dtype=np.int64).reshape(-1, 2)


def matching_cases(rng: np.random.Generator) -> list[tuple[str, np.ndarray, np.ndarray, float]]:
    cases = []
    # The spec's reference case.
    cases.append(
        (
            "realistic",
            np.array([[10, 10], [30, 30], [50, 50]]),
            np.array([[11, 10], [29, 33], [80, 80], [50, 54]]),
            4,
        )
    )
    for _ in range(4):  # particles a diameter apart, picks a radius apart, 3/4 of them found
        r = int(rng.integers(5, 14))
        t = nms_points(rng, 40, 300, 2 * r)
        p = nms_points(rng, 100, 300, r)
        k = min(len(t) * 3 // 4, len(p))
        p[:k] = t[:k] + rng.integers(-r // 2, r // 2 + 1, size=(k, 2))
        p = p[rng.permutation(len(p))]
        cases.append(("realistic", t, p, r))
    for _ in range(3):  # float coordinates, crowded: big components, no exact ties
        t = rng.uniform(0, 50, size=(35, 2))
        p = rng.uniform(0, 50, size=(60, 2))
        cases.append(("float", t, p, float(rng.uniform(4, 8))))
    for _ in range(3):  # integer coordinates on a small grid: many exactly tied distances
        t = rng.integers(0, 16, size=(20, 2))
        p = rng.integers(0, 16, size=(25, 2))
        cases.append(("ties", t, p, int(rng.integers(2, 5))))
    return cases


def ap_cases(rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray, int]]:
    cases = []
    cases.append((np.array([1, 1, 0, 0], np.float32), np.array([3, 1, 2, 0.5]), 3))
    for k in range(5):
        n = int(rng.integers(20, 200))
        scores = rng.normal(size=n).round(k % 3 + 1)  # 1-3 decimals: many equal scores
        hits = (rng.random(n) < 1 / (1 + np.exp(-2 * scores))).astype(np.float32)
        cases.append((hits, scores, int(hits.sum() + rng.integers(0, 20))))
    # Scores that differ in float64 but not in float32 share a bucket in Topaz.
    base = rng.normal(size=40)
    scores = np.concatenate([base, base + 1e-12])
    hits = (rng.random(80) < 0.5).astype(np.float32)
    cases.append((hits, scores, int(hits.sum()) + 3))
    return cases


def prc_tables(rng: np.random.Generator) -> tuple[str, str, int]:
    radius = 7
    target_rows, predicted_rows = [], []
    for m in range(6):
        name = f"mic_{m:02d}"
        t = nms_points(rng, 15, 200, 2 * radius)
        p = nms_points(rng, 35, 200, radius)
        k = min(len(t) * 2 // 3, len(p))
        p[:k] = t[:k] + rng.integers(-4, 5, size=(k, 2))
        scores = rng.normal(size=len(p)).round(2)
        scores[:k] += 1.5
        if m != 4:  # micrograph 4: predictions but no targets
            target_rows += [f"{name}\t{x}\t{y}" for x, y in t]
        if m != 5:  # micrograph 5: targets but no predictions
            predicted_rows += [
                f"{name}\t{x}\t{y}\t{s}" for (x, y), s in zip(p, scores, strict=True)
            ]
    targets = "image_name\tx_coord\ty_coord\n" + "\n".join(target_rows) + "\n"
    predicted = (
        "# made by make_topaz_metrics_fixtures.py\n"
        "image_name\tx_coord\ty_coord\tscore\n" + "\n".join(predicted_rows) + "\n"
    )
    return targets, predicted, radius


def main() -> None:
    if os.environ.get("PYTHONHASHSEED") != "0":
        env = dict(os.environ, PYTHONHASHSEED="0")
        sys.exit(subprocess.call([sys.executable, *sys.argv], env=env))
    rng = np.random.default_rng(20260704)
    out: dict[str, np.ndarray] = {}
    kinds, match_info = [], []
    for i, (kind, t, p, r) in enumerate(matching_cases(rng)):
        hits, dists = match_coordinates(t, p, r)
        d2 = np.sum((p[:, None] - t[None]) ** 2, 2)
        cost = np.minimum(d2 - r * r, 0)
        rows, cols = linear_sum_assignment(cost)
        kinds.append(kind)
        match_info.append((r, cost[rows, cols].sum()))
        dtype = np.float64 if kind == "float" else np.int32
        out[f"match{i}_targets"] = t.astype(dtype)
        out[f"match{i}_preds"] = p.astype(dtype)
        out[f"match{i}_topaz"] = np.stack([hits, dists])
    out["match_kinds"] = np.array(kinds)
    out["match_info"] = np.array(match_info, dtype=np.float64)
    ap_info = []
    for i, (hits, scores, n) in enumerate(ap_cases(rng)):
        scores32 = scores.astype(np.float32)
        ap = average_precision(hits, scores32, N=n)
        precision, recall, threshold, auprc = precision_recall_curve(hits, scores32, N=n)
        ap_info.append((n, ap, auprc))
        out[f"ap{i}_input"] = np.stack([hits.astype(np.float64), scores])
        out[f"ap{i}_topaz"] = np.stack([precision, recall, threshold.astype(np.float64)])
    out["ap_info"] = np.array(ap_info, dtype=np.float64)
    targets, predicted, radius = prc_tables(rng)
    out |= {
        "prc_targets": np.array(targets.encode()),
        "prc_predicted": np.array(predicted.encode()),
        "prc_radius": np.array(radius),
    }
    with tempfile.TemporaryDirectory() as folder:
        tpath, ppath = Path(folder) / "targets.txt", Path(folder) / "predicted.txt"
        tpath.write_text(targets)
        ppath.write_text(predicted)
        for mode in ("target", "predicted", "union"):
            text = io.StringIO()
            with contextlib.redirect_stdout(text):
                particle_prc(str(tpath), str(ppath), radius, mode)
            out[f"prc_out_{mode}"] = np.array(text.getvalue().encode())
    np.savez_compressed(OUT, **out)
    versions = f"topaz {topaz.__version__}, numpy {np.__version__}, scipy {scipy.__version__}"
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes; {versions}, pandas {pandas.__version__})")


if __name__ == "__main__":
    main()
