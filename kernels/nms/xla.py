"""Exact greedy non-maximum suppression in ``jnp``/``lax``: jit-, vmap- and shard_map-able.

Returns exactly the picks of `kernels.nms.reference.nms_reference` (the first ``max_particles``
of them), with the same float32 comparisons, tie order (score descending, then flat index
ascending), strict threshold, NaN rule and clipped (never wrapping) edges.

Algorithm: greedy NMS in rounds, each resolving up to the next ``C`` pixels in visiting order.

* State: a ``key`` map holding the score of every still-undecided pixel and ``-inf`` for pixels
  that are below the threshold, NaN, visited or suppressed. It is padded by ``radius`` on every
  side (so a pick's whole disc is an in-bounds window: no clipping, no wrap) and, along the last
  axis, to a multiple of ``_SEGMENT``. Each run of ``_SEGMENT`` pixels along the last axis is a
  *cell*, with its maximum kept in ``cmax``. Cells are in row-major order, so "cell maximum
  descending, then cell index" is the visiting order of the cells' best pixels, and
  ``lax.top_k`` (documented to return equal values lower index first) yields it exactly.
* A round takes the top ``M + 1`` cells; the last one is the bound ``(B, b)``. It gathers them
  in flat order (the pool) and takes the pool's top ``C`` pixels, again in exact visiting order
  thanks to top_k's tie rule. A candidate is *accepted* if it precedes the pixel
  ``(B, b * _SEGMENT)`` in visiting order. Every pixel outside the pool lies in a cell ranked
  after ``b``, so it scores below ``B``, or equals ``B`` at a larger flat index: the accepted
  candidates are exactly the next undecided pixels in visiting order. The best pixel of each of
  the ``M >= C`` leading cells is accepted, so a round takes ``C`` of them while ``C`` remain.
* One parallel step of the greedy rule over the accepted candidates, with a ``C x C`` conflict
  matrix (squared distance ``<= radius**2``): a candidate with no earlier accepted candidate in
  conflict is certainly picked, and a candidate in conflict with such a pick is suppressed.
  The picks are kept up to the first candidate left undecided; it and everything after it
  (except what the kept picks suppress) stay in ``key`` for the next round. So every round
  decides a prefix of the visiting order exactly as sequential greedy does (at least the first
  candidate), and on real maps nearly all of its ``C`` candidates: a 1024 x 1024 map with 13k
  picks takes 81 rounds, against 80 with the full greedy resolution of each round.
* The picks are appended to the output (they are in visiting order). Each pick's disc is
  written into ``key`` as ``-inf`` with a ``dynamic_update_slice``, and the cells under the
  disc's rows get their maxima recomputed. Every candidate before the cut lies in some kept
  pick's disc (its own, if picked), so it leaves the undecided set as well.
* The rounds repeat (a ``lax.while_loop``) until ``max_particles`` picks are made or no
  undecided pixel is left. Each round decides at least one pixel, so the loop ends.

No sort of the map is needed (XLA:CPU sorts a megapixel in about half a second): a round costs
two small ``top_k`` calls and a ``C x C`` matrix, plus a small window update per pick. On a
1024 x 1024 map with thousands of picks that is a few tens of rounds and some tens of ms on
two CPU cores. Limits: the padded map must have fewer than 2**31 pixels (int32 indices).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike

from .reference import Picks, _check_args

__all__ = ["nms_xla"]

# Pixels per cell along the last axis: the pool of a round holds _SEGMENT * M pixels.
_SEGMENT = 32
# Candidates resolved per round (C, and M cells). The conflict matrix is C x C; fewer means
# more rounds, more means a costlier matrix and top_k. 256 is the fastest on XLA:CPU for
# megapixel maps at radius 7-14.
_CANDIDATES = 256
# Picks painted per iteration of the paint loop (unrolled): XLA:CPU pays about a microsecond
# per loop iteration, more than painting one small disc.
_PAINT_GROUP = 4


def _effective_radius(shape: tuple[int, ...], radius: int) -> int:
    """``radius`` capped at the image diagonal: larger radii suppress exactly the same pixels."""
    diagonal = math.isqrt(sum((n - 1) ** 2 for n in shape))
    return min(radius, diagonal + 1)


def _ball(radius: int, ndim: int) -> np.ndarray:
    offsets = np.ogrid[(slice(-radius, radius + 1),) * ndim]
    return sum(o**2 for o in offsets) <= radius * radius


def _empty(max_particles: int, ndim: int) -> Picks:
    return Picks(
        coords=jnp.full((max_particles, ndim), -1, jnp.int32),
        scores=jnp.full((max_particles,), -jnp.inf, jnp.float32),
        valid=jnp.zeros((max_particles,), bool),
    )


def _greedy_step(conflict: jax.Array, accepted: jax.Array) -> jax.Array:
    """The candidates that greedy NMS certainly picks, among candidates in visiting order.

    One parallel step of the greedy rule: a candidate with no earlier accepted candidate in
    conflict is picked (nothing before it can suppress it). Those picks are kept only up to the
    first candidate that this step leaves undecided (neither picked nor in conflict with a
    pick), so that what is kept is the exact greedy result for a prefix of the candidates.

    Args:
      conflict: bool ``[C, C]``, symmetric, true on the diagonal.
      accepted: bool ``[C]``, the candidates taking part.

    Returns:
      bool ``[C]``, the picks; at least the first accepted candidate.
    """
    n = accepted.shape[0]
    position = jnp.arange(n)
    earlier = conflict & (position[None, :] < position[:, None])
    new = accepted & ~(earlier & accepted[None, :]).any(axis=1)
    undecided = accepted & ~(conflict & new[None, :]).any(axis=1)
    cut = jnp.where(undecided.any(), jnp.argmax(undecided), n)
    return new & (position < cut)


def nms_xla(
    score_map: ArrayLike, *, radius: int, max_particles: int, threshold: ArrayLike = -jnp.inf
) -> Picks:
    """Exact greedy NMS (the reference's picks) as one XLA program; see the module docstring.

    Not jitted itself: call it through `kernels.nms.nms` (jitted, ``radius`` and
    ``max_particles`` static) or inside your own ``jax.jit``.

    Args:
      score_map: 2-D ``(H, W)`` or 3-D ``(D, H, W)`` scores; cast to float32.
      radius: suppression radius in pixels (static).
      max_particles: number of output slots ``K`` (static).
      threshold: only scores strictly greater than this (in float32) are picked; may be traced.

    Returns:
      `Picks` of jax arrays: coords int32 ``[K, ndim]``, scores float32 ``[K]``, valid ``[K]``.

    Raises:
      ValueError: if ``score_map`` is not 2-D or 3-D, or ``radius`` / ``max_particles`` is not a
        non-negative int.
    """
    x = jnp.asarray(score_map)
    _check_args(x.shape, radius, max_particles)
    shape = tuple(int(n) for n in x.shape)
    ndim = len(shape)
    k_out = int(max_particles)
    if k_out == 0 or math.prod(shape) == 0:
        return _empty(k_out, ndim)
    r = _effective_radius(shape, int(radius))

    x = x.astype(jnp.float32)

    def flush(v: jax.Array) -> jax.Array:
        # Subnormals and -0.0 become +0.0: XLA may flush subnormals in comparisons (it does on
        # CPU), and lax.top_k orders floats totally (-0.0 below +0.0), whereas the visiting
        # order treats all of them as equal. Done explicitly, so it holds on every backend.
        return jnp.where(jnp.abs(v) < np.finfo(np.float32).tiny, 0.0, v)

    key = flush(x)
    key = jnp.where(key > flush(jnp.asarray(threshold, jnp.float32)), key, -jnp.inf)  # not NaN

    seg = _SEGMENT
    window = (2 * r + 1,) * ndim
    span = -(-window[-1] // seg) + 1  # cells that one row of a disc can touch
    padded_last = max(-(-(shape[-1] + 2 * r) // seg) * seg, span * seg)
    pads = [(r, r)] * (ndim - 1) + [(r, padded_last - shape[-1] - r)]
    key = jnp.pad(key, pads, constant_values=-jnp.inf)
    padded = key.shape
    strides = np.cumprod((1,) + padded[:0:-1])[::-1]  # row-major strides of the padded map
    n_cells = key.size // seg
    m = min(_CANDIDATES, n_cells)
    c = min(_CANDIDATES, m * seg)
    ball = jnp.asarray(_ball(r, ndim))
    group = min(_PAINT_GROUP, c)
    c_pad = -(-c // group) * group
    refresh_box = window[:-1] + (span * seg,)

    def cell_max(key: jax.Array) -> jax.Array:  # (..., padded_last // seg)
        return key.reshape(key.shape[:-1] + (-1, seg)).max(axis=-1)

    def unravel(flat: jax.Array) -> jax.Array:
        parts = []
        for stride in strides:
            parts.append(flat // int(stride))
            flat = flat % int(stride)
        return jnp.stack(parts, axis=-1)

    def paint(i: jax.Array, carry: tuple[jax.Array, jax.Array], corners, n_paint):
        """Paints picks ``group*i ...`` of the round, then refreshes the cells they touched."""
        key, cmax = carry
        for j in range(group):
            slot = group * i + j
            corner = tuple(corners[slot])
            patch = lax.dynamic_slice(key, corner, window)
            disc = ball & (slot < n_paint)
            key = lax.dynamic_update_slice(key, jnp.where(disc, -jnp.inf, patch), corner)
        for j in range(group):
            # The whole cells under the box's rows. Near the right edge dynamic_slice and
            # dynamic_update_slice both shift the start left by whole cells: still covering.
            corner = tuple(corners[group * i + j])
            first_cell = corner[-1] // seg
            rows = lax.dynamic_slice(key, corner[:-1] + (first_cell * seg,), refresh_box)
            cmax = lax.dynamic_update_slice(cmax, cell_max(rows), corner[:-1] + (first_cell,))
        return key, cmax

    def round_(state):
        key, cmax, count, coords = state
        # The top m + 1 cells: the best m, and the bound (the (m+1)-th cell). A -inf sentinel
        # cell stands in for the bound when every cell is pooled. top_k's outputs are only
        # reduced, never sliced: XLA would fold a slice into the top_k and make it a full sort.
        top, cells = lax.top_k(jnp.append(cmax.reshape(-1), -jnp.inf), m + 1)
        bound = top.min()
        bound_cell = jnp.where(top == bound, cells, -1).max()  # ties come in cell order
        # Pool all m + 1 (the bound cell's pixels are never accepted), in flat order so that
        # top_k's tie order is the visiting order.
        pooled = jnp.sort(cells)
        pool = key.reshape(n_cells, seg).at[pooled].get(mode="fill", fill_value=-jnp.inf)
        pool = pool.reshape(-1)
        value, pos = lax.top_k(pool, c)
        flat = pooled[pos // seg] * seg + pos % seg
        accepted = (value > -jnp.inf) & (
            (value > bound) | ((value == bound) & (flat < bound_cell * seg))
        )

        point = unravel(flat)  # padded coordinates = true coordinates + r
        diff = point[:, None, :] - point[None, :, :]
        conflict = (diff * diff).sum(axis=-1) <= r * r
        picked = _greedy_step(conflict, accepted)

        # The picks, in visiting order, go to output slots count, count + 1, ... (the buffer
        # has c spare slots; what lands past the last pick is overwritten or masked later).
        # top_k and dynamic_update_slice instead of cumsum and scatter: same speed, and they
        # compile in a fraction of the time on XLA:CPU.
        order = lax.top_k(jnp.where(picked, -jnp.arange(c, dtype=jnp.float32), -jnp.inf), c)[1]
        corners = point[order] - r  # padded coordinates of the discs' boxes = true coordinates
        coords = lax.dynamic_update_slice(coords, corners, (count, 0))
        n_new = picked.sum(dtype=jnp.int32)
        count = jnp.minimum(count + n_new, k_out)

        # Suppress each pick's disc (no need once the output is full).
        corners = jnp.pad(corners, ((0, c_pad - c), (0, 0)))
        n_paint = jnp.where(count < k_out, n_new, 0)
        key, cmax = lax.fori_loop(
            0,
            (n_paint + group - 1) // group,
            functools.partial(paint, corners=corners, n_paint=n_paint),
            (key, cmax),
        )
        return key, cmax, count, coords

    def more(state) -> jax.Array:
        _, cmax, count, _ = state
        return (count < k_out) & (cmax.max() > -jnp.inf)

    # zeros_like, not zeros: inside shard_map the carry must vary over the map's mesh axes.
    init = (
        key,
        cell_max(key),
        jnp.zeros_like(key, jnp.int32, shape=()),
        jnp.zeros_like(key, jnp.int32, shape=(k_out + c, ndim)),
    )
    _, _, count, coords = lax.while_loop(more, round_, init)
    valid = jnp.arange(k_out) < count
    coords = jnp.where(valid[:, None], coords[:k_out], -1)
    scores = jnp.where(valid, x[tuple(coords.T)], -jnp.inf)  # the input's own values (-0.0)
    return Picks(coords=coords, scores=scores, valid=valid)
