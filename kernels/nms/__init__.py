"""Non-maximum suppression of score maps: turn a dense score map into a fixed-size pick list.

`nms` is the public entry point (jitted; ``radius``, ``max_particles`` and ``implementation``
static; ``threshold`` may be traced). Implementations:

* ``"cpu"``: `nms_cpu`, exact, a native greedy kernel called through XLA's FFI (C++ in
  ``cpu_ffi.cc``, compiled on first use and cached; see `kernels.nms.cpu_ffi`). CPU only.
* ``"xla"``: `nms_xla`, exact and vectorised, in ``jnp``/``lax``; every backend.
* ``"reference"``: `nms_reference`, the plain NumPy greedy loop that defines the semantics,
  run on the host through ``jax.pure_callback`` (so it also works under jit, vmap and
  shard_map, one map at a time). For tests and debugging.

The default (``implementation=None``) is ``"cpu"`` when the program runs on a CPU and the
native kernel is available, and ``"xla"`` otherwise (on GPUs and TPUs, or with no C++
compiler); the choice is made per backend inside the one jitted program
(``lax.platform_dependent``). Every implementation returns exactly the reference's picks.
`topaz_nms` is Topaz's own algorithm, quirks included, for parity checks.

Semantics in short (`kernels.nms.reference` has the full rules): greedy in descending score,
ties in ascending flat index; only ``score > threshold`` (float32) is picked; NaN is never
picked and never suppresses; a pick suppresses every pixel at squared distance
``<= radius**2`` inside the image, with no edge wrap-around.
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike

from . import cpu_ffi
from .cpu_ffi import nms_cpu
from .reference import Picks, _check_args, nms_reference, topaz_nms
from .xla import nms_xla

__all__ = [
    "IMPLEMENTATIONS",
    "Picks",
    "nms",
    "nms_cpu",
    "nms_reference",
    "nms_xla",
    "topaz_nms",
]

IMPLEMENTATIONS = ("cpu", "xla", "reference")


def _reference_on_host(
    score_map: jax.Array, threshold: jax.Array, *, radius: int, max_particles: int
) -> Picks:
    k, ndim = max_particles, score_map.ndim
    result_shapes = Picks(
        coords=jax.ShapeDtypeStruct((k, ndim), jnp.int32),
        scores=jax.ShapeDtypeStruct((k,), jnp.float32),
        valid=jax.ShapeDtypeStruct((k,), jnp.bool_),
    )

    def callback(x: np.ndarray, t: np.ndarray) -> Picks:
        return nms_reference(x, radius=radius, max_particles=max_particles, threshold=float(t))

    return jax.pure_callback(
        callback, result_shapes, score_map, threshold, vmap_method="sequential"
    )


@functools.partial(jax.jit, static_argnames=("radius", "max_particles", "implementation"))
def nms(
    score_map: ArrayLike,
    *,
    radius: int,
    max_particles: int,
    threshold: ArrayLike = -math.inf,
    implementation: Literal["cpu", "xla", "reference"] | None = None,
) -> Picks:
    """Greedy non-maximum suppression of a 2-D score map (or a 3-D volume), padded to K picks.

    Pixels are visited in descending score (ties: ascending row-major index); a visited pixel
    scoring strictly above ``threshold`` that no earlier pick suppressed is picked, and it
    suppresses every pixel within ``radius`` (squared distance ``<= radius**2``) inside the
    image. This is Topaz's ``non_maximum_suppression`` with its edge wrap-around fixed, a
    defined tie order, NaN never picked, and a cap of ``max_particles`` picks.

    Args:
      score_map: scores ``(H, W)``, or ``(D, H, W)`` for a volume (suppression in a ball);
        cast to float32.
      radius: suppression radius in pixels, an int >= 0 (static). 0 suppresses only the pick.
      max_particles: number of output slots ``K``, an int >= 0 (static); the first ``K`` picks
        in score order are returned.
      threshold: only scores strictly greater than this (compared in float32) are picked. May
        be a traced scalar.
      implementation: ``"cpu"``, ``"xla"`` or ``"reference"``; None (the default) picks
        ``"cpu"`` on CPUs where the native kernel is available and ``"xla"`` elsewhere.

    Returns:
      `Picks` ``(coords, scores, valid)``: int32 ``[K, ndim]`` coordinates in array-axis order
      (``(y, x)``, or ``(z, y, x)``), float32 ``[K]`` scores in non-increasing order, bool
      ``[K]`` validity. Unused slots have coordinates ``-1``, score ``-inf`` and valid false.

    Raises:
      ValueError: if ``score_map`` is not 2-D or 3-D, ``radius`` or ``max_particles`` is not
        a non-negative int, or ``implementation`` is unknown.
      RuntimeError: for ``implementation="cpu"`` when the native kernel could not be built.

    Examples:
      >>> import jax.numpy as jnp
      >>> x = jnp.zeros((5, 6)).at[1, 1].set(3.0).at[1, 2].set(2.0).at[4, 5].set(1.0)
      >>> picks = nms(x, radius=2, max_particles=3, threshold=0.5)
      >>> picks.coords.tolist(), picks.scores.tolist(), picks.valid.tolist()
      ([[1, 1], [4, 5], [-1, -1]], [3.0, 1.0, -inf], [True, True, False])

      Batches go through ``jax.vmap`` (one map per call, same shape):
      ``jax.vmap(functools.partial(nms, radius=2, max_particles=3))(maps)``.
    """
    x = jnp.asarray(score_map)
    _check_args(x.shape, radius, max_particles)
    args = dict(radius=radius, max_particles=max_particles, threshold=threshold)
    if implementation is None and cpu_ffi.available():
        return lax.platform_dependent(
            x,
            cpu=lambda x: nms_cpu(x, **args),
            default=lambda x: nms_xla(x, **args),
        )
    if implementation is None or implementation == "xla":
        return nms_xla(x, **args)
    if implementation == "cpu":
        return nms_cpu(x, **args)
    if implementation == "reference":
        return _reference_on_host(
            x.astype(jnp.float32),
            jnp.asarray(threshold, jnp.float32),
            radius=int(radius),
            max_particles=int(max_particles),
        )
    raise ValueError(
        f"implementation must be one of {IMPLEMENTATIONS} or None, got {implementation!r}"
    )
