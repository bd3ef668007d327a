"""Matching, average precision and the precision-recall curve (jaxpick.metrics).

Reference values: the spec's verified example, brute force over all matchings, the numpy port of
SciPy's assignment solved on whole matrices, and Topaz's own outputs stored in
``tests/data/topaz_metrics.npz`` (made by ``tests/data/make_topaz_metrics_fixtures.py``).
"""

from __future__ import annotations

import doctest
import io
import itertools
import math
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxpick.metrics
from jaxpick.errors import ConfigError, CoordinateFormatError
from jaxpick.io.coords import Coordinates, write_coordinates
from jaxpick.metrics import (
    PrecisionRecallConfig,
    average_precision,
    evaluate_picks,
    format_precision_recall,
    linear_sum_assignment_reference,
    match_coordinates,
    match_picks,
    precision_recall_curve,
    precision_recall_table,
)

FIXTURES = Path(__file__).resolve().parent / "data" / "topaz_metrics.npz"

SPEC_TARGETS = np.array([[10, 10], [30, 30], [50, 50]])
SPEC_PREDS = np.array([[11, 10], [29, 33], [80, 80], [50, 54]])


@pytest.fixture(scope="module")
def topaz() -> dict[str, np.ndarray]:
    with np.load(FIXTURES) as data:
        return {k: data[k] for k in data.files}


def total_cost(targets: np.ndarray, preds: np.ndarray, radius: float, match) -> float:
    """``Σ min(d² − R², 0)`` over the hit pairs of a match (what the assignment minimises)."""
    hit = np.flatnonzero(match.hits)
    d2 = np.sum((preds[hit] - targets[match.assigned[hit]]) ** 2, axis=1)
    return float(np.sum(d2 - radius * radius))


def brute_force(targets: np.ndarray, preds: np.ndarray, radius: float) -> tuple[float, int]:
    """The optimal total cost and the most hits among optimal matchings, by enumeration."""
    cost = np.minimum(np.sum((preds[:, None] - targets[None]) ** 2, 2) - radius * radius, 0)
    best = (0.0, 0)
    n_p, n_t = cost.shape
    for k in range(1, min(n_p, n_t) + 1):
        for rows in itertools.combinations(range(n_p), k):
            for cols in itertools.permutations(range(n_t), k):
                c = cost[list(rows), list(cols)]
                if (c < 0).all():
                    best = min(best, (float(c.sum()), -k))
    return best[0], -best[1]


# ------------------------------------------------------------------------------------ matching


def test_spec_reference_case() -> None:
    m = match_coordinates(SPEC_TARGETS, SPEC_PREDS, 4)
    assert m.hits.tolist() == [True, True, False, False]
    np.testing.assert_allclose(m.distances, [1, 3.1623, 42.43, 0], atol=5e-3)
    assert m.assigned.tolist() == [0, 1, 2, -1]  # leftover (50, 50) goes to the first leftover
    ap = average_precision(m.hits, [3, 1, 2, 0.5], num_targets=3)
    assert ap == pytest.approx(0.555556, abs=1e-6)


def test_hit_needs_distance_strictly_below_radius() -> None:
    m = match_coordinates([[0, 0]], [[3, 4]], 5)  # d == R exactly
    assert not m.hits[0]
    assert match_coordinates([[0, 0]], [[3, 4]], 5.0001).hits[0]


@pytest.mark.parametrize(("n_t", "n_p"), [(0, 3), (3, 0), (0, 0)])
def test_empty_inputs(n_t: int, n_p: int) -> None:
    m = match_coordinates(np.zeros((n_t, 2)), np.ones((n_p, 2)) * 5, 4)
    assert m.hits.shape == (n_p,)
    assert not m.hits.any()
    assert m.hits.dtype == bool
    assert m.distances.dtype == np.float64
    assert m.assigned.dtype == np.int64


def test_radius_zero_matches_nothing() -> None:
    assert not match_coordinates([[1, 1]], [[1, 1]], 0).hits.any()


def test_three_dimensional_coordinates() -> None:
    targets = np.array([[10, 10, 10], [30, 30, 30]])
    preds = np.array([[10, 10, 13], [30, 30, 40], [31, 30, 30]])
    m = match_coordinates(targets, preds, 4)
    assert m.hits.tolist() == [True, False, True]
    np.testing.assert_allclose(m.distances[m.hits], [3, 1])


@pytest.mark.parametrize(
    ("targets", "preds", "radius", "message"),
    [
        (np.zeros((2, 2)), np.zeros((2, 3)), 1, "same number of columns"),
        (np.zeros((2, 2)), np.zeros(3), 1, "shape"),
        (np.zeros((2, 2)), np.full((1, 2), np.nan), 1, "NaN"),
        (np.zeros((2, 2)), np.zeros((1, 2)), -1, "radius"),
        (np.zeros((2, 2)), np.zeros((1, 2)), math.inf, "radius"),
    ],
)
def test_bad_inputs(targets, preds, radius, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        match_coordinates(targets, preds, radius)


def test_lower_cost_beats_more_hits() -> None:
    # Topaz minimises Σ(d² − R²), not the number of misses: A sits on T1; pairing A–T2 and
    # B–T1 would give two hits but a higher total cost (−1.58 vs −16 in units of R² = 16).
    targets = np.array([[0.0, 0.0], [3.9, 0.0]])
    preds = np.array([[0.0, 0.0], [-3.9, 0.0]])
    m = match_coordinates(targets, preds, 4)
    assert m.hits.tolist() == [True, False]


def test_equal_cost_prefers_more_hits() -> None:
    # A on T1 (cost −25) versus A–T2 (−20) plus B–T1 (−5): equally optimal; two hits win.
    targets = np.array([[0, 0], [1, 2]])
    preds = np.array([[0, 0], [-4, -2]])
    m = match_coordinates(targets, preds, 5)
    assert m.hits.tolist() == [True, True]
    assert total_cost(targets, preds, 5, m) == -25


def test_equidistant_predictions_earlier_one_wins() -> None:
    m = match_coordinates([[10, 10]], [[20, 20], [13, 10], [10, 13], [7, 10]], 4)
    assert m.hits.tolist() == [False, True, False, False]


@pytest.mark.parametrize("seed", range(12))
def test_matches_brute_force_optimum(seed: int) -> None:
    rng = np.random.default_rng(seed)
    grid = seed % 2 == 0  # integer coordinates (ties) or floats
    n_t, n_p = rng.integers(1, 6), rng.integers(1, 6)
    targets = rng.integers(0, 12, (n_t, 2)) if grid else rng.uniform(0, 12, (n_t, 2))
    preds = rng.integers(0, 12, (n_p, 2)) if grid else rng.uniform(0, 12, (n_p, 2))
    radius = int(rng.integers(2, 6))
    m = match_coordinates(targets, preds, radius)
    cost, most_hits = brute_force(targets.astype(float), preds.astype(float), radius)
    assert total_cost(targets, preds, radius, m) == pytest.approx(cost, abs=1e-9)
    assert m.hits.sum() == most_hits


@pytest.mark.parametrize("seed", range(4))
def test_components_agree_with_one_dense_assignment(seed: int) -> None:
    """Splitting into components changes nothing: the whole matrix solved densely (the numpy
    port of SciPy's algorithm) has the same optimal cost and, for float coordinates, hits."""
    rng = np.random.default_rng(100 + seed)
    targets = rng.uniform(0, 80, (40, 2))
    preds = rng.uniform(0, 80, (70, 2))
    radius = 7.5
    m = match_coordinates(targets, preds, radius)
    d2 = np.sum((preds[:, None] - targets[None]) ** 2, 2)
    cost = np.minimum(d2 - radius * radius, 0)
    rows = linear_sum_assignment_reference(cost.T)  # more predictions than targets: transpose
    dense = cost[rows, np.arange(len(targets))]
    assert total_cost(targets, preds, radius, m) == pytest.approx(dense.sum(), abs=1e-9)
    assert sorted(rows[dense < 0]) == np.flatnonzero(m.hits).tolist()


coords = st.lists(st.tuples(st.integers(0, 25), st.integers(0, 25)), min_size=0, max_size=25)


@settings(max_examples=60, deadline=None)
@given(targets=coords, preds=coords, radius=st.integers(1, 8), seed=st.integers(0, 2**16))
def test_invariants(targets, preds, radius: int, seed: int) -> None:
    t = np.array(targets, dtype=float).reshape(-1, 2)
    p = np.array(preds, dtype=float).reshape(-1, 2)
    m = match_coordinates(t, p, radius)
    hit = np.flatnonzero(m.hits)
    # Hits pair distinct targets closer than the radius; never more than either side has.
    assert m.hits.sum() <= min(len(t), len(p))
    assert len(set(m.assigned[hit].tolist())) == len(hit)
    assert (m.distances[hit] < radius).all()
    np.testing.assert_allclose(
        m.distances[hit], np.linalg.norm(p[hit] - t[m.assigned[hit]], axis=1)
    )
    # Reordering either side changes neither the number of hits nor the optimal cost.
    rng = np.random.default_rng(seed)
    pt, pp = rng.permutation(len(t)), rng.permutation(len(p))
    shuffled = match_coordinates(t[pt], p[pp], radius)
    assert shuffled.hits.sum() == m.hits.sum()
    assert total_cost(t[pt], p[pp], radius, shuffled) == total_cost(t, p, radius, m)
    # Swapping the roles of predictions and targets gives the same number of pairs.
    assert match_coordinates(p, t, radius).hits.sum() == m.hits.sum()
    # Scores do not enter matching; AP stays within [0, 1].
    if len(t):
        ap = average_precision(m.hits, rng.normal(size=len(p)), num_targets=len(t))
        assert 0.0 <= ap <= 1.0


def test_perfect_predictions_have_ap_one() -> None:
    rng = np.random.default_rng(3)
    targets = rng.integers(0, 500, (50, 2))
    m = match_coordinates(targets, targets[rng.permutation(50)], 3)
    assert m.hits.all()
    assert average_precision(m.hits, rng.normal(size=50), num_targets=50) == 1.0


def test_thousands_of_picks_match_fast() -> None:
    rng = np.random.default_rng(0)
    targets = rng.uniform(0, 4096, (2000, 2))
    preds = np.concatenate(
        [targets + rng.normal(0, 5, targets.shape), rng.uniform(0, 4096, (3000, 2))]
    )
    start = time.perf_counter()
    m = match_coordinates(targets, preds, 15)
    elapsed = time.perf_counter() - start
    assert m.hits.sum() > 1900
    assert elapsed < 5.0, f"matching 2000 x 5000 took {elapsed:.2f} s"  # ~0.1 s typically


# ------------------------------------------------------------------------ the assignment solver


def test_assignment_reference_small_cases() -> None:
    assert linear_sum_assignment_reference([[4, 1, 3], [2, 0, 5], [3, 2, 2]]).tolist() == [1, 0, 2]
    assert linear_sum_assignment_reference(np.zeros((0, 3))).tolist() == []
    # A constant matrix gives the identity (SciPy's scan order, scipy#11602).
    assert linear_sum_assignment_reference(np.ones((3, 5))).tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="n <= m"):
        linear_sum_assignment_reference(np.zeros((3, 2)))


@pytest.mark.parametrize("seed", range(20))
def test_assignment_reference_is_optimal(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 6))
    m = int(rng.integers(n, 7))
    cost = rng.integers(-4, 4, (n, m)).astype(float) if seed % 2 else rng.normal(size=(n, m))
    cols = linear_sum_assignment_reference(cost)
    assert len(set(cols.tolist())) == n
    best = min(cost[range(n), list(c)].sum() for c in itertools.permutations(range(m), n))
    assert cost[range(n), cols].sum() == pytest.approx(best)


def test_assignment_reference_equals_scipy() -> None:
    optimize = pytest.importorskip("scipy.optimize")
    rng = np.random.default_rng(7)
    for trial in range(100):
        n = int(rng.integers(1, 8))
        m = int(rng.integers(n, 10))
        cost = rng.integers(-3, 3, (n, m)).astype(float) if trial % 2 else rng.normal(size=(n, m))
        assert linear_sum_assignment_reference(cost).tolist() == (
            optimize.linear_sum_assignment(cost)[1].tolist()
        )


def test_components_of_a_long_chain() -> None:
    # A zig-zag chain of predictions and targets: one component of 400 nodes.
    xs = np.arange(200) * 3.0
    targets = np.stack([xs, np.zeros(200)], axis=1)
    preds = np.stack([xs + 1.5, np.ones(200)], axis=1)
    m = match_coordinates(targets, preds, 2.5)
    assert m.hits.all()
    assert jaxpick.metrics._components(4, np.array([0, 1]), np.array([1, 2])).tolist() == [
        0,
        0,
        0,
        3,
    ]


# ----------------------------------------------------------------------- Topaz parity (stored)


def test_matching_equals_topaz(topaz: dict[str, np.ndarray]) -> None:
    for i, kind in enumerate(topaz["match_kinds"].tolist()):
        targets, preds = topaz[f"match{i}_targets"], topaz[f"match{i}_preds"]
        radius, topaz_cost = topaz["match_info"][i]
        topaz_hits, topaz_dists = topaz[f"match{i}_topaz"]
        m = match_coordinates(targets, preds, radius)
        # The optimum is unique in value: always SciPy's total cost.
        assert total_cost(targets, preds, radius, m) == pytest.approx(topaz_cost, abs=1e-9), i
        if kind == "ties":
            # Exact ties: Topaz's choice among optimal assignments is arbitrary; jaxpick's has
            # the most hits among them.
            assert m.hits.sum() >= topaz_hits.sum(), i
        else:
            np.testing.assert_array_equal(m.hits, topaz_hits.astype(bool), err_msg=str(i))
            np.testing.assert_array_equal(m.distances[m.hits], topaz_dists[m.hits])
    np.testing.assert_array_equal(
        match_coordinates(SPEC_TARGETS, SPEC_PREDS, 4).distances, topaz["match0_topaz"][1]
    )


def test_average_precision_equals_topaz(topaz: dict[str, np.ndarray]) -> None:
    for i, (n, ap, auprc) in enumerate(topaz["ap_info"]):
        hits, scores = topaz[f"ap{i}_input"]
        precision, recall, threshold = topaz[f"ap{i}_topaz"]
        curve = precision_recall_table(hits, scores, int(n))
        # Same operations in the same order: bit-identical.
        assert curve.auprc == auprc == ap, i
        assert average_precision(hits.astype(bool), scores, int(n)) == ap
        np.testing.assert_array_equal(curve.precision, precision)
        np.testing.assert_array_equal(curve.recall, recall)
        np.testing.assert_array_equal(curve.threshold, threshold.astype(np.float32))
        assert curve.threshold.dtype == np.float32


def test_scores_equal_in_float32_share_a_bucket() -> None:
    curve = precision_recall_table([1, 0], [1.0, 1.0 + 1e-12], 1)
    assert curve.threshold.tolist() == [1.0]
    assert curve.precision.tolist() == [0.5]


def check_against_topaz_text(ours: str, theirs: str) -> None:
    """Table rows identical; the header's auprc identical, its mae equal to ~1e-12 (Topaz
    accumulates a running mean over micrographs in hash order)."""
    ours_lines, their_lines = ours.splitlines(), theirs.splitlines()
    assert ours_lines[1:] == their_lines[1:]
    head = dict(part.split("=") for part in ours_lines[0][2:].split(", "))
    their_head = dict(part.split("=") for part in their_lines[0][2:].split(", "))
    assert head["auprc"] == their_head["auprc"]
    assert float(head["mae"]) == pytest.approx(float(their_head["mae"]), rel=1e-12)


@pytest.mark.parametrize("mode", ["target", "predicted", "union"])
def test_command_output_equals_topaz(
    topaz: dict[str, np.ndarray], tmp_path: Path, mode: str
) -> None:
    targets, predicted = tmp_path / "targets.txt", tmp_path / "predicted.txt"
    targets.write_bytes(topaz["prc_targets"].item())
    predicted.write_bytes(topaz["prc_predicted"].item())  # starts with a '#' comment line
    config = PrecisionRecallConfig(
        predicted=(str(predicted),),
        targets=(str(targets),),
        radius=float(topaz["prc_radius"]),
        images=mode,
    )
    out = io.StringIO()
    evaluation = precision_recall_curve(config, stdout=out)
    check_against_topaz_text(out.getvalue(), topaz[f"prc_out_{mode}"].item().decode())
    assert evaluation.num_targets == len(targets.read_text().splitlines()) - 1


# ------------------------------------------------------------------------ precision and recall


def test_precision_recall_table_reference() -> None:
    pr = precision_recall_table([True, True, False, False], [3, 1, 2, 0.5], 3)
    assert pr.threshold.tolist() == [3.0, 2.0, 1.0, 0.5]
    np.testing.assert_allclose(pr.precision, [1, 1 / 2, 2 / 3, 1 / 2])
    np.testing.assert_allclose(pr.recall, [1 / 3, 1 / 3, 2 / 3, 2 / 3])
    np.testing.assert_allclose(pr.f1, [0.5, 0.4, 2 / 3, 4 / 7])


def test_no_predictions_and_no_hits() -> None:
    empty = precision_recall_table([], [], 5)
    assert empty.auprc == 0.0
    assert len(empty.threshold) == 0
    misses = precision_recall_table([0, 0], [1, 2], 5)
    assert misses.auprc == 0.0
    assert misses.f1.tolist() == [0.0, 0.0]


@pytest.mark.parametrize(
    ("hits", "scores", "n", "message"),
    [
        ([1, 0], [1.0], 2, "differ in length"),
        ([2, 0], [1.0, 2.0], 2, "0/1"),
        ([1, 0], [1.0, np.nan], 2, "NaN"),
        ([1, 0], [1.0, 2.0], 0, "positive"),
        ([1, 1], [1.0, 2.0], 1, "2 hits but only 1"),
    ],
)
def test_precision_recall_bad_inputs(hits, scores, n: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        precision_recall_table(hits, scores, n)


# ------------------------------------------------------------------------------ per micrograph


@pytest.fixture
def tables() -> tuple[Coordinates, Coordinates]:
    targets = Coordinates(image_name=["a", "a", "b", "c"], x=[10, 30, 5, 50], y=[10, 30, 5, 50])
    predicted = Coordinates(
        image_name=["a", "a", "b", "d"],
        x=[11, 90, 6, 1],
        y=[10, 90, 5, 1],
        score=[3.0, 1.0, 2.0, 5.0],
    )
    return targets, predicted


def test_images_modes(tables: tuple[Coordinates, Coordinates]) -> None:
    targets, predicted = tables
    target_mode = match_picks(targets, predicted, 4)
    assert target_mode.images == ("a", "b", "c")
    assert target_mode.hits.tolist() == [True, False, True]  # d's prediction ignored
    assert target_mode.num_targets == 4  # c's target counts although c has no predictions
    union = match_picks(targets, predicted, 4, images="union")
    assert union.images == ("a", "b", "c", "d")
    assert union.hits.tolist() == [True, False, True, False]  # d's prediction is a miss
    predicted_mode = match_picks(targets, predicted, 4, images="predicted")
    assert predicted_mode.images == ("a", "b", "d")
    assert predicted_mode.num_targets == 4  # Topaz: N = len(targets) in every mode
    assert evaluate_picks(targets, predicted, 4, images="predicted").curve.auprc == (
        evaluate_picks(targets, predicted, 4, images="union").curve.auprc
    )


def test_evaluation_numbers(tables: tuple[Coordinates, Coordinates]) -> None:
    targets, predicted = tables
    e = evaluate_picks(targets, predicted, 4)
    assert (e.num_targets, e.num_predictions, e.num_hits) == (4, 3, 2)
    assert (e.mean_distance, e.rmse, e.topaz_mae) == (1.0, 1.0, 1.0)
    # Precision 1 at scores 3 and 2 (2 hits of 4 targets): AP = (1 + 1) / 4.
    assert e.curve.auprc == 0.5
    no_hits = evaluate_picks(targets, predicted.replace(x=predicted.x + 100), 4)
    assert math.isnan(no_hits.mean_distance)
    assert math.isnan(no_hits.topaz_mae)
    assert format_precision_recall(no_hits).startswith("# auprc=0.0, mae=nan\n")


def test_topaz_mae_is_sqrt_of_mean_distance() -> None:
    t = Coordinates(image_name="m", x=SPEC_TARGETS[:, 0], y=SPEC_TARGETS[:, 1])
    p = Coordinates(image_name="m", x=SPEC_PREDS[:, 0], y=SPEC_PREDS[:, 1], score=[3, 1, 2, 0.5])
    e = evaluate_picks(t, p, 4)
    assert e.mean_distance == pytest.approx((1 + math.sqrt(10)) / 2)
    assert e.topaz_mae == pytest.approx(math.sqrt(e.mean_distance))
    assert e.rmse == pytest.approx(math.sqrt((1 + 10) / 2))
    assert format_precision_recall(e).splitlines()[0] == (
        "# auprc=0.5555555555555555, mae=1.442615274452683"
    )


def test_3d_tables_match_in_3d() -> None:
    t = Coordinates(image_name="tomo", x=[10], y=[10], z=[10])
    p = Coordinates(image_name="tomo", x=[10], y=[10], z=[20], score=[1.0])
    assert not match_picks(t, p, 4).hits.any()
    assert match_picks(t.replace(z=None), p, 4).hits.all()  # 2-D when either lacks z


def test_predictions_need_scores(tables: tuple[Coordinates, Coordinates]) -> None:
    targets, predicted = tables
    with pytest.raises(ValueError, match="no scores"):
        match_picks(targets, predicted.replace(score=None), 4)
    with pytest.raises(ValueError, match="images must be"):
        match_picks(targets, predicted, 4, images="all")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no target"):
        evaluate_picks(Coordinates.empty(), predicted, 4)


# ---------------------------------------------------------------------------------- the command


def test_config_validation() -> None:
    base = {"predicted": ("p.txt",), "targets": ("t.txt",), "radius": 4.0}
    PrecisionRecallConfig(**base)
    for change, message in [
        ({"radius": 0.0}, "radius"),
        ({"images": "all"}, "images"),
        ({"predicted": ()}, "predicted"),
        ({"targets_format": "pdf"}, "targets_format"),
    ]:
        with pytest.raises(ConfigError, match=message):
            PrecisionRecallConfig(**(base | change))


def test_reads_any_format_and_unknown_extensions(
    tmp_path: Path, tables: tuple[Coordinates, Coordinates]
) -> None:
    targets, predicted = tables
    write_coordinates(targets, tmp_path / "targets.star")
    write_coordinates(predicted, tmp_path / "picks.txt")
    (tmp_path / "picks.tsv").write_text((tmp_path / "picks.txt").read_text())
    results = []
    for name in ("picks.txt", "picks.tsv"):
        config = PrecisionRecallConfig(
            predicted=(str(tmp_path / name),), targets=(str(tmp_path / "targets.star"),), radius=4
        )
        results.append(precision_recall_curve(config, stdout=io.StringIO()).curve.auprc)
    assert results == [0.5, 0.5]


def test_errors_name_the_file(tmp_path: Path, tables: tuple[Coordinates, Coordinates]) -> None:
    targets, predicted = tables
    write_coordinates(targets, tmp_path / "targets.txt")
    write_coordinates(predicted.replace(score=None), tmp_path / "unscored.txt")
    (tmp_path / "empty.txt").write_text("image_name\tx_coord\ty_coord\n")
    (tmp_path / "bad.txt").write_text("# comment\nimage_name\tx_coord\ty_coord\na\t1\n")

    def run(pred: str, targ: str) -> None:
        config = PrecisionRecallConfig(
            predicted=(str(tmp_path / pred),), targets=(str(tmp_path / targ),), radius=4
        )
        precision_recall_curve(config, stdout=io.StringIO())

    for pred, targ, culprit, message in [
        ("missing.txt", "targets.txt", "missing.txt", "cannot read"),
        ("unscored.txt", "targets.txt", "unscored.txt", "score"),
        ("unscored.txt", "empty.txt", "empty.txt", "no target"),
        ("bad.txt", "targets.txt", "bad.txt", "line 3"),
    ]:
        with pytest.raises(CoordinateFormatError, match=message) as info:
            run(pred, targ)
        assert info.value.path == str(tmp_path / culprit)


def test_docstring_examples() -> None:
    result = doctest.testmod(jaxpick.metrics, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 10
    assert result.failed == 0
