"""Tests of non-maximum suppression: every implementation against the plain greedy reference.

Each XLA compile costs about a second on CPU, so the tests share a few static configurations
(shape, radius, max_particles) and vary the maps and the (traced) threshold instead. Tests of
the native ``"cpu"`` implementation skip, saying why, where it cannot be built (no C++
compiler); `tests/kernels/test_nms_cpu_ffi.py` tests its build and the fallback.
"""

from __future__ import annotations

import doctest
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from jax import lax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxpick.kernels import nms as nms_package
from jaxpick.kernels.nms import IMPLEMENTATIONS, Picks, cpu_ffi, nms, nms_reference, topaz_nms
from jaxpick.kernels.nms import reference as reference_module

impls = pytest.mark.parametrize("impl", IMPLEMENTATIONS)
# The implementations fast enough for many maps per test (the reference is the oracle).
fast_impls = pytest.mark.parametrize("impl", ["cpu", "xla"])


@pytest.fixture(autouse=True)
def _skip_native_if_unavailable(request):
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and callspec.params.get("impl") == "cpu":
        reason = cpu_ffi.build_error()
        if reason is not None:
            pytest.skip(f"native CPU NMS kernel unavailable here: {reason}")


# The shared small configuration of the adversarial tests.
SHAPE = (12, 15)
RADIUS = 2
K = 64


def run(x, impl, *, radius=RADIUS, max_particles=K, threshold=-np.inf) -> Picks:
    picks = nms(
        jnp.asarray(x),
        radius=radius,
        max_particles=max_particles,
        threshold=threshold,
        implementation=impl,
    )
    return Picks(*(np.asarray(a) for a in picks))


def assert_picks_equal(got: Picks, want: Picks) -> None:
    assert got.coords.dtype == np.int32
    assert got.scores.dtype == np.float32
    assert got.valid.dtype == np.bool_
    np.testing.assert_array_equal(got.valid, want.valid)
    np.testing.assert_array_equal(got.coords, want.coords)
    np.testing.assert_array_equal(got.scores, want.scores)


def check_invariants(x: np.ndarray, picks: Picks, radius: int, threshold: float) -> None:
    """Properties every greedy NMS result has, checked without re-running greedy NMS."""
    x = np.asarray(x, np.float32)
    k = picks.valid.shape[0]
    n = int(picks.valid.sum())
    assert picks.coords.shape == (k, x.ndim)
    np.testing.assert_array_equal(picks.valid, np.arange(k) < n)  # filled slots first
    assert np.all(picks.coords[n:] == -1)
    assert np.all(picks.scores[n:] == -np.inf)
    kept, scores = picks.coords[:n], picks.scores[:n]
    np.testing.assert_array_equal(scores, x[tuple(kept.T)])
    # Compare as the spec does: subnormals as zero (see kernels.nms.reference).
    x, scores, threshold = flush(x), flush(scores), flush(np.float32(threshold))
    assert np.all(scores > threshold)
    assert np.all(scores[1:] <= scores[:-1])  # non-increasing
    flat = np.ravel_multi_index(tuple(kept.T), x.shape)
    ties = scores[1:] == scores[:-1]
    assert np.all(flat[1:][ties] > flat[:-1][ties])  # equal scores in flat-index order
    # Kept points are more than `radius` apart.
    d2 = ((kept[:, None, :] - kept[None, :, :]) ** 2).sum(-1)
    assert np.all(d2[~np.eye(n, dtype=bool)] > radius**2)
    # Every pixel visited before the last pick (all of them if the output is not full) is
    # kept or lies within `radius` of a kept pixel scoring at least as much.
    grid = np.stack(np.indices(x.shape), -1).reshape(-1, x.ndim)
    values = x.ravel()
    visited = values > threshold
    if n == k and n > 0:
        visited &= values > scores[-1]
    is_kept = np.zeros(values.shape, bool)
    is_kept[flat] = True
    for point, value in zip(grid[visited & ~is_kept], values[visited & ~is_kept], strict=True):
        near = ((kept - point) ** 2).sum(-1) <= radius**2
        assert np.any(near & (scores >= value)), f"pixel {point} ({value}) is not covered"


def flush(x: np.ndarray) -> np.ndarray:
    return np.where(np.abs(x) < np.finfo(np.float32).tiny, np.float32(0), x)


def smooth_field(shape: tuple[int, ...], sigma: float, seed: int) -> np.ndarray:
    """A logit-like score map: Gaussian-blurred white noise, many broad peaks, ~75% above -6."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(shape)
    freqs = np.meshgrid(*(np.fft.fftfreq(n) for n in shape), indexing="ij")
    gain = np.exp(-2 * (np.pi * sigma) ** 2 * sum(f**2 for f in freqs))
    field = np.fft.ifftn(np.fft.fftn(noise) * gain).real
    return (3 * (field - field.mean()) / field.std() - 4).astype(np.float32)


def spec_map(height: int = 40, width: int = 50) -> np.ndarray:
    """Spec 4.2's map ``f(i,j) = float32(sin(0.1i)·cos(0.07j) + 0.01·((31i+17j) mod 13))``."""
    i, j = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    return (np.sin(0.1 * i) * np.cos(0.07 * j) + 0.01 * ((31 * i + 17 * j) % 13)).astype(np.float32)


# --- the reference itself and lax.top_k's tie order -------------------------------------------


def test_reference_by_hand():
    x = np.zeros((5, 6), np.float32)
    x[1, 1], x[1, 3], x[2, 2], x[4, 5] = 3.0, 2.5, 2.0, 1.0
    picks = nms_reference(x, radius=2, max_particles=4, threshold=0.5)
    # (1, 3) is 2 px from (1, 1): suppressed; (2, 2) is sqrt(2) away: suppressed.
    assert picks.coords.tolist() == [[1, 1], [4, 5], [-1, -1], [-1, -1]]
    assert picks.scores.tolist() == [3.0, 1.0, -np.inf, -np.inf]
    assert picks.valid.tolist() == [True, True, False, False]


def test_top_k_returns_ties_in_index_order():
    # nms_xla's exactness relies on this documented lax.top_k property; check it here.
    x = jnp.array([1.0, 2.0, 2.0, 1.0, 2.0, 0.0, 2.0])
    assert lax.top_k(x, 5)[1].tolist() == [1, 2, 4, 6, 0]
    flat = jnp.zeros(34_255).at[jnp.array([7, 300, 30_000])].set(1.0)
    assert (
        lax.top_k(flat, 257)[1].tolist()
        == [7, 300, 30_000] + [i for i in range(257) if i not in (7,)][:254]
    )


def test_docstring_examples():
    for module in (reference_module, nms_package):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.failed == 0, module.__name__


# --- agreement with the reference on random maps ------------------------------------------------


# (40, 50) is test_spec_map's configuration (max_particles below the number of picks), and
# (96, 80) test_realistic_score_map's (above); the odd sizes are in the other tests.
@fast_impls
@pytest.mark.parametrize(
    ("shape", "radius", "max_particles"), [((40, 50), 5, 16), ((96, 80), 6, 512)]
)
def test_random_maps_match_reference(impl, shape, radius, max_particles):
    rng = np.random.default_rng(sum(shape))
    for trial in range(4):
        x = rng.standard_normal(shape).astype(np.float32)
        if trial % 2:
            x = np.round(x * 2)  # many ties
        threshold = [-np.inf, -0.5, 0.0, 1.0][trial]
        want = nms_reference(x, radius=radius, max_particles=max_particles, threshold=threshold)
        got = run(x, impl, radius=radius, max_particles=max_particles, threshold=threshold)
        assert_picks_equal(got, want)
        check_invariants(x, got, radius, threshold)


@settings(max_examples=25, deadline=None, database=None)
@given(
    x=arrays(
        np.float32,
        SHAPE,
        elements=st.one_of(
            st.sampled_from([-1.0, -0.0, 0.0, 1e-40, 1.0, 2.0, np.nan, np.inf, -np.inf]),
            st.floats(-3, 3, width=32),
        ),
    ),
    threshold=st.sampled_from([-np.inf, -1.0, 0.0, 1e-40, 0.5]),
)
def test_hypothesis_matches_reference(x, threshold):
    want = nms_reference(x, radius=RADIUS, max_particles=K, threshold=threshold)
    impls_here = ["xla"] + (["cpu"] if cpu_ffi.available() else [])
    for impl in impls_here:
        got = run(x, impl, threshold=threshold)
        assert_picks_equal(got, want)
        check_invariants(x, got, RADIUS, threshold)


@fast_impls
def test_realistic_score_map(impl):
    # The (96, 80) configuration of test_random_maps_match_reference, on smooth fields.
    for seed in range(3):
        x = smooth_field((96, 80), 2.0, seed)
        want = nms_reference(x, radius=6, max_particles=512, threshold=-6.0)
        got = run(x, impl, radius=6, max_particles=512, threshold=-6.0)
        assert_picks_equal(got, want)
        check_invariants(x, got, 6, -6.0)
        n = int(got.valid.sum())
        assert 100 < n < 512

        # Topaz agrees until its edge wrap bites: a pick near the right edge suppresses
        # column 0 of the next rows, so Topaz misses a peak on the left edge that we keep.
        topaz_scores, topaz_xy = topaz_nms(x, 6, -6.0)
        ours_xy = got.coords[:n, ::-1]
        m = min(n, len(topaz_xy))
        differ = np.flatnonzero(np.any(topaz_xy[:m] != ours_xy[:m], axis=1))
        assert differ.size, "expected the wrap bug to matter on this map"
        first = differ[0]
        np.testing.assert_array_equal(topaz_scores[:first], got.scores[:first])
        assert ours_xy[first][0] == 0  # our extra pick is on the left edge
        assert not np.any(np.all(topaz_xy == ours_xy[first], axis=1))


# --- adversarial maps -----------------------------------------------------------------------------


def adversarial_maps() -> dict[str, np.ndarray]:
    h, w = SHAPE
    rng = np.random.default_rng(7)
    maps = {
        "all_equal": np.full(SHAPE, 0.25, np.float32),
        "plateaus": np.kron(rng.integers(0, 3, (3, 5)), np.ones((4, 3))).astype(np.float32),
        "ties": rng.integers(-2, 3, SHAPE).astype(np.float32),
        "below_threshold": np.full(SHAPE, -1.0, np.float32),
        "ramp": np.add.outer(np.arange(h), np.arange(w)).astype(np.float32),
        "signed_zeros": np.where(rng.random(SHAPE) < 0.5, -0.0, 0.0).astype(np.float32),
        # Subnormals compare as zero (XLA flushes them); here mixed with zeros and ones.
        "subnormals": rng.choice(np.array([1e-40, -1e-40, 0.0, 1.0], np.float32), SHAPE),
    }
    border = np.zeros(SHAPE, np.float32)
    for y in (0, h // 2, h - 1):
        for x in (0, w // 2, w - 1):
            border[y, x] = 1.0 + y + 0.1 * x  # every corner and edge midpoint
    maps["border_peaks"] = border
    specials = rng.standard_normal(SHAPE).astype(np.float32)
    specials[0, 0], specials[5, 5], specials[11, 14], specials[6, 0] = (
        np.nan,
        np.inf,
        -np.inf,
        np.nan,
    )
    maps["nan_inf"] = specials
    return maps


@impls
@pytest.mark.parametrize("threshold", [-np.inf, -0.5])
def test_adversarial_maps(impl, threshold):
    for name, x in adversarial_maps().items():
        got = run(x, impl, threshold=threshold)
        want = nms_reference(x, radius=RADIUS, max_particles=K, threshold=threshold)
        assert_picks_equal(got, want)
        check_invariants(x, got, RADIUS, threshold)
        if name == "below_threshold" and threshold == -0.5:
            assert not got.valid.any()


@impls
def test_known_answers(impl):
    maps = adversarial_maps()
    # A constant map: a raster of picks, ties broken by flat index.
    got = run(maps["all_equal"], impl, threshold=0.0)
    first_row = [[0, 0], [0, 3], [0, 6], [0, 9], [0, 12]]
    assert got.coords[:5].tolist() == first_row
    # Every corner and edge midpoint is a pick (they are > radius apart).
    got = run(maps["border_peaks"], impl, threshold=0.5)
    assert int(got.valid.sum()) == 9
    assert got.coords[:9].tolist() == [
        [11, 14], [11, 7], [11, 0], [6, 14], [6, 7], [6, 0], [0, 14], [0, 7], [0, 0]
    ]  # fmt: skip
    # NaN is never picked and suppresses nothing; +inf is picked first; -inf never.
    got = run(maps["nan_inf"], impl)
    assert got.coords[0].tolist() == [5, 5]
    assert got.scores[0] == np.inf
    assert not np.isnan(got.scores).any()
    assert [11, 14] not in got.coords.tolist()


@impls
def test_no_edge_wrap(impl):
    # Topaz's clip to W (not W - 1) makes a pick on the right edge suppress column 0 of the
    # next row: here the 0.9 peak at (3, 0), 14 px from the only other peak.
    x = np.zeros(SHAPE, np.float32)
    x[2, 14], x[3, 0] = 1.0, 0.9
    got = run(x, impl, threshold=0.5)
    assert got.coords[:2].tolist() == [[2, 14], [3, 0]]
    scores, coords = topaz_nms(x, RADIUS, 0.5)
    assert coords.tolist() == [[14, 2]]  # (x, y): Topaz loses (3, 0)
    assert scores.tolist() == [1.0]


@impls
def test_radius_zero_keeps_every_pixel_above_threshold(impl):
    rng = np.random.default_rng(3)
    x = rng.integers(0, 4, SHAPE).astype(np.float32)  # ties everywhere
    got = run(x, impl, radius=0, threshold=1.5)
    n_above = int((x > 1.5).sum())
    assert n_above > K  # so max_particles truncates
    assert got.valid.all()
    assert_picks_equal(got, nms_reference(x, radius=0, max_particles=K, threshold=1.5))
    order = np.lexsort((np.arange(x.size), -x.ravel()))[:K]  # score desc, then flat index
    np.testing.assert_array_equal(np.ravel_multi_index(tuple(got.coords.T), SHAPE), order)


@impls
def test_radius_larger_than_image(impl):
    x = np.random.default_rng(4).standard_normal(SHAPE).astype(np.float32)
    got = run(x, impl, radius=1000)
    assert int(got.valid.sum()) == 1
    assert tuple(got.coords[0]) == np.unravel_index(np.argmax(x), SHAPE)


@impls
def test_max_particles_zero(impl):
    # (test_radius_zero_... covers max_particles below the number of picks, the others above.)
    got = run(np.ones(SHAPE, np.float32), impl, max_particles=0)
    assert got.coords.shape == (0, 2)
    assert got.scores.shape == got.valid.shape == (0,)


@impls
def test_single_column(impl):
    x = np.random.default_rng(6).standard_normal((37, 1)).astype(np.float32)
    got = run(x, impl, radius=3, max_particles=16)
    assert_picks_equal(got, nms_reference(x, radius=3, max_particles=16))
    check_invariants(x, got, 3, -np.inf)


@impls
def test_volume(impl):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((5, 9, 11)).astype(np.float32)
    x[1] = np.round(x[1])  # ties
    for threshold in (-np.inf, 0.0):
        got = run(x, impl, threshold=threshold)
        assert_picks_equal(
            got, nms_reference(x, radius=RADIUS, max_particles=K, threshold=threshold)
        )
        check_invariants(x, got, RADIUS, threshold)


def test_topaz_3d_transcription_on_interior_peaks():
    x = np.zeros((7, 8, 9), np.float32)
    x[3, 3, 3], x[3, 4, 4], x[2, 5, 6] = 2.0, 1.5, 1.0
    scores, coords = topaz_nms(x, 1, 0.5)
    ours = nms_reference(x, radius=1, max_particles=4, threshold=0.5)
    n = int(ours.valid.sum())
    np.testing.assert_array_equal(coords, ours.coords[:n, ::-1])  # (x, y, z) vs (z, y, x)
    np.testing.assert_array_equal(scores, ours.scores[:n])


@pytest.mark.parametrize(
    ("score_map", "kwargs", "match"),
    [
        (np.zeros(5), {}, "2-D"),
        (np.zeros((2, 2, 2, 2)), {}, "2-D"),
        (np.zeros((4, 4)), {"radius": -1}, "radius"),
        (np.zeros((4, 4)), {"radius": 1.5}, "radius"),
        (np.zeros((4, 4)), {"radius": True}, "radius"),
        (np.zeros((4, 4)), {"max_particles": -1}, "max_particles"),
        (np.zeros((4, 4)), {"implementation": "pallas"}, "implementation"),
    ],
)
def test_invalid_arguments(score_map, kwargs, match):
    kwargs = {"radius": 1, "max_particles": 2} | kwargs
    with pytest.raises(ValueError, match=match):
        nms(score_map, **kwargs)


# --- Topaz's reference values (spec 4.2) ---------------------------------------------------------

SPEC_FIRST_FIVE = [  # (x, y, score) as Topaz prints them
    (1, 17, 1.099236),
    (0, 12, 1.012039),
    (7, 15, 1.000123),
    (6, 21, 0.908187),
    (0, 22, 0.868496),
]


def test_topaz_transcription_reproduces_spec():
    scores, coords = topaz_nms(spec_map(), 5, 0.5)
    assert len(scores) == 14
    assert coords[:5].tolist() == [[x, y] for x, y, _ in SPEC_FIRST_FIVE]
    np.testing.assert_allclose(scores[:5], [s for _, _, s in SPEC_FIRST_FIVE], atol=5e-7)


@impls
def test_spec_map(impl):
    # Our NMS gives Topaz's 14 picks unchanged. The wrap does fire here, for the pick at
    # (x=45, y=39) on the bottom row, but it only hits column 0 of rows 35-39, which scores
    # below the threshold (sin(3.5..3.9) < 0), so the fix changes nothing on this map.
    x = spec_map()
    got = run(x, impl, radius=5, max_particles=16, threshold=0.5)
    topaz_scores, topaz_xy = topaz_nms(x, 5, 0.5)
    assert int(got.valid.sum()) == 14
    np.testing.assert_array_equal(got.coords[:14, ::-1], topaz_xy)
    np.testing.assert_array_equal(got.scores[:14], topaz_scores)
    assert [45, 39] in topaz_xy.tolist()
    assert np.all(x[35:40, 0] <= 0.5)


# --- transformations: jit, vmap, shard_map, tracing ----------------------------------------


@impls
def test_jit_with_traced_threshold_traces_once(impl):
    traces = 0

    @jax.jit
    def pick(x, threshold):
        nonlocal traces
        traces += 1
        return nms(x, radius=RADIUS, max_particles=K, threshold=threshold, implementation=impl)

    rng = np.random.default_rng(9)
    for threshold in (-0.5, 0.0, 0.5):
        x = rng.standard_normal(SHAPE).astype(np.float32)
        got = Picks(*(np.asarray(a) for a in pick(x, jnp.float32(threshold))))
        want = nms_reference(x, radius=RADIUS, max_particles=K, threshold=threshold)
        assert_picks_equal(got, want)
    assert traces == 1

    # nms's own jit cache: one entry per shape and static arguments, whatever the values.
    before = nms._cache_size()
    for threshold in (-1.0, 0.0, 1.0):
        run(rng.standard_normal(SHAPE).astype(np.float32), impl, threshold=threshold)
    assert nms._cache_size() - before <= 1


@impls
@pytest.mark.parametrize("batch", [0, 1, 3])
def test_vmap(impl, batch):
    rng = np.random.default_rng(11)
    xs = rng.standard_normal((batch, *SHAPE)).astype(np.float32)
    thresholds = np.linspace(-1.0, 0.5, batch).astype(np.float32)  # batched, traced
    pick = functools.partial(nms, radius=RADIUS, max_particles=K, implementation=impl)
    got = jax.vmap(lambda x, t: pick(x, threshold=t))(xs, thresholds)
    assert got.coords.shape == (batch, K, 2)
    assert got.scores.shape == got.valid.shape == (batch, K)
    for b in range(batch):
        want = nms_reference(xs[b], radius=RADIUS, max_particles=K, threshold=thresholds[b])
        assert_picks_equal(Picks(*(np.asarray(a[b]) for a in got)), want)


@impls
def test_shard_map_over_two_devices(impl):
    mesh = jax.make_mesh((2,), ("data",), devices=jax.devices()[:2])
    pick = functools.partial(nms, radius=RADIUS, max_particles=K, implementation=impl)
    sharded = jax.jit(
        jax.shard_map(jax.vmap(pick), mesh=mesh, in_specs=P("data"), out_specs=P("data"))
    )
    xs = np.random.default_rng(12).standard_normal((4, *SHAPE)).astype(np.float32)
    got = sharded(jax.device_put(xs, NamedSharding(mesh, P("data"))))
    assert got.coords.sharding.spec[0] == "data"
    got = Picks(*(np.asarray(a) for a in got))
    for b in range(4):
        want = nms_reference(xs[b], radius=RADIUS, max_particles=K)
        assert_picks_equal(Picks(*(a[b] for a in got)), want)
