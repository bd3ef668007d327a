"""The native CPU NMS kernel: its build and cache, the choice of implementation, the fallback,
and exactness on the shapes its pyramid of 16-wide maxima could get wrong.

`tests/kernels/test_nms.py` runs it through every test the other implementations pass.
"""

from __future__ import annotations

import functools
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpick.kernels.nms import Picks, cpu_ffi, nms, nms_reference

from .test_nms import assert_picks_equal, check_invariants, smooth_field

needs_kernel = pytest.mark.skipif(
    not cpu_ffi.available(), reason=f"native CPU NMS kernel unavailable: {cpu_ffi.build_error()}"
)


def run_cpu(x, **kwargs) -> Picks:
    picks = nms(jnp.asarray(x), implementation="cpu", **kwargs)
    return Picks(*(np.asarray(a) for a in picks))


@needs_kernel
@pytest.mark.parametrize(
    "shape",
    [(1, 1), (1, 17), (16, 16), (17, 33), (3, 257), (31, 16), (1, 1, 1), (2, 3, 17), (4, 16, 9)],
)
def test_shapes_around_node_boundaries(shape):
    # Maps of 1 pixel, of exactly one pyramid node, one past it, rows that are not a multiple
    # of 16, and volumes; with ties (rounding) and with a threshold.
    rng = np.random.default_rng(len(shape) * 100 + sum(shape))
    for radius in (0, 1, 3):
        for threshold in (-np.inf, 0.0):
            x = np.round(rng.standard_normal(shape) * 2).astype(np.float32)
            kwargs = dict(radius=radius, max_particles=64, threshold=threshold)
            got = run_cpu(x, **kwargs)
            assert_picks_equal(got, nms_reference(x, **kwargs))
            check_invariants(x, got, radius, threshold)


@needs_kernel
@pytest.mark.parametrize(("shape", "radius"), [((160, 203), 7), ((20, 36, 41), 4)])
def test_larger_smooth_maps_match_reference_and_xla(shape, radius):
    # Thousands of picks through many pyramid levels; the XLA kernel must agree too.
    x = smooth_field(shape, 2.0, seed=1)
    kwargs = dict(radius=radius, max_particles=6000, threshold=-6.0)
    want = nms_reference(x, **kwargs)
    got = run_cpu(x, **kwargs)
    assert_picks_equal(got, want)
    n = int(got.valid.sum())
    assert 200 < n < 6000
    xla = Picks(*(np.asarray(a) for a in nms(x, implementation="xla", **kwargs)))
    assert_picks_equal(xla, want)


@needs_kernel
def test_max_particles_cuts_the_greedy_order():
    x = smooth_field((64, 70), 2.0, seed=2)
    full = nms_reference(x, radius=4, max_particles=4000, threshold=-6.0)
    n = int(full.valid.sum())
    for k in (1, n - 1, n, n + 1):
        got = run_cpu(x, radius=4, max_particles=k, threshold=-6.0)
        want = nms_reference(x, radius=4, max_particles=k, threshold=-6.0)
        assert_picks_equal(got, want)


@needs_kernel
def test_vmap_with_unbatched_threshold_and_jit():
    xs = np.stack([smooth_field((30, 41), 2.0, seed=s) for s in range(3)])
    pick = functools.partial(nms, radius=3, max_particles=200, implementation="cpu")
    got = jax.jit(jax.vmap(lambda x, t: pick(x, threshold=t), in_axes=(0, None)))(xs, -5.0)
    for b in range(3):
        want = nms_reference(xs[b], radius=3, max_particles=200, threshold=-5.0)
        assert_picks_equal(Picks(*(np.asarray(a[b]) for a in got)), want)


@needs_kernel
def test_default_is_native_on_cpu_and_xla_elsewhere():
    x = np.zeros((8, 9), np.float32)
    pick = jax.jit(functools.partial(nms, radius=2, max_particles=4))
    texts = {
        platform: pick.trace(x).lower(lowering_platforms=(platform,)).as_text()
        for platform in ("cpu", "cuda", "tpu")
    }
    assert "jaxpick_nms_f32" in texts["cpu"]
    assert "jaxpick_nms_f32" not in texts["cuda"]
    assert "jaxpick_nms_f32" not in texts["tpu"]
    assert "top_k" not in texts["cpu"]  # the XLA kernel is not compiled on CPU at all
    assert "top_k" in texts["cuda"]


def test_fallback_to_xla_when_the_kernel_cannot_be_built(monkeypatch):
    monkeypatch.setattr(cpu_ffi, "_register", lambda: "no C++ compiler found")
    assert not cpu_ffi.available()
    x = np.random.default_rng(5).standard_normal((7, 13)).astype(np.float32)  # a fresh shape
    text = jax.jit(functools.partial(nms, radius=1, max_particles=8)).trace(x).lower().as_text()
    assert "jaxpick_nms_f32" not in text
    got = Picks(*(np.asarray(a) for a in nms(x, radius=1, max_particles=8)))
    assert_picks_equal(got, nms_reference(x, radius=1, max_particles=8))
    with pytest.raises(RuntimeError, match="no C\\+\\+ compiler found"):
        nms(x, radius=1, max_particles=8, implementation="cpu")


def test_disabled_by_environment(monkeypatch):
    monkeypatch.setenv("JAXPICK_NATIVE_KERNELS", "0")
    assert cpu_ffi._register.__wrapped__() == "disabled by JAXPICK_NATIVE_KERNELS"


def test_build_is_cached_and_atomic(tmp_path, monkeypatch):
    if cpu_ffi._compiler() is None:
        pytest.skip("no C++ compiler")
    monkeypatch.setenv("JAXPICK_KERNEL_CACHE_DIR", str(tmp_path))
    first, private = cpu_ffi._build()
    assert first.parent == tmp_path
    assert not private
    stamp = first.stat().st_mtime_ns
    assert cpu_ffi._build() == (first, False)  # found in the cache, not rebuilt
    assert first.stat().st_mtime_ns == stamp
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # no temporary left


def test_build_failure_says_why_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXPICK_KERNEL_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CXX", "false")  # a "compiler" that always fails
    if os.path.basename(cpu_ffi._compiler() or "") != "false":
        pytest.skip("no `false` command")
    with pytest.raises(RuntimeError, match="failed"):
        cpu_ffi._build()
    assert list(tmp_path.iterdir()) == []


def test_caching_off_builds_privately(monkeypatch):
    if cpu_ffi._compiler() is None:
        pytest.skip("no C++ compiler")
    monkeypatch.setenv("JAXPICK_KERNEL_CACHE_DIR", "off")
    assert cpu_ffi._cache_dir() is None
    built, private = cpu_ffi._build()
    try:
        assert private
        assert built.parent.name.startswith("jaxpick-kernels-")
        assert built.exists()
    finally:
        shutil.rmtree(built.parent)
