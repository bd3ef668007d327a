"""The specification of non-maximum suppression: a plain greedy loop, and Topaz's own algorithm.

`nms_reference` *defines* the semantics that every other implementation in this package must
reproduce exactly (it is the test oracle). It is written to be checked by eye, not to be fast:

1. Scores are compared in float32 (the map and ``threshold`` are both cast to float32), and
   subnormal values compare as zero: XLA flushes them on CPU and GPU, so this is the one
   float semantics every implementation can honour. -0.0 equals 0.0. Reported scores are the
   input's own values.
2. Pixels are visited in descending score; equal scores in ascending flat (row-major) index,
   i.e. ``y * W + x`` in 2-D and ``(z * H + y) * W + x`` in 3-D.
3. Only pixels with ``score > threshold`` (strictly) are visited. NaN fails every comparison, so
   a NaN pixel is never visited: it is never picked and never suppresses anything, and the
   pixels after it are still visited. ``-inf`` is never picked either (``-inf > t`` is false
   for every ``t``); ``+inf`` is an ordinary, highest score.
4. A visited pixel that is not suppressed is picked, and every pixel of the image whose squared
   Euclidean distance to it is ``<= radius**2`` is suppressed (itself included; ``radius=0``
   suppresses only the pixel itself). Neighbours are clipped to the image: there is no flat
   index wrap-around (Topaz's bug, reproduced by `topaz_nms`).
5. The first ``max_particles`` picks are returned, in visiting order, padded to
   ``max_particles`` slots (coordinates ``-1``, score ``-inf``, ``valid`` false).

Works on 2-D maps ``(H, W)`` (a disc) and 3-D volumes ``(D, H, W)`` (a ball).

`topaz_nms` is a line-by-line NumPy transcription of ``topaz.algorithms.non_maximum_suppression``
(2-D) and ``non_maximum_suppression_3d`` (3-D, with ``scale=1``), bugs included, for parity tests
and benchmarks. Both import only NumPy.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["Picks", "nms_reference", "topaz_nms"]


class Picks(NamedTuple):
    """Fixed-size NMS result: ``max_particles`` slots, filled in descending score.

    A NamedTuple, hence a pytree: it passes through ``jax.jit``, ``jax.vmap`` and
    ``jax.shard_map`` (batched fields gain leading axes).

    Attributes:
      coords: int32 ``[K, ndim]`` pick coordinates in array-axis order, ``(y, x)`` for a 2-D map
        and ``(z, y, x)`` for a volume; ``-1`` in padded slots.
      scores: float32 ``[K]`` pick scores, non-increasing; ``-inf`` in padded slots.
      valid: bool ``[K]``; true for the filled slots, which always come first.
    """

    coords: ArrayLike
    scores: ArrayLike
    valid: ArrayLike


def _check_args(shape: tuple[int, ...], radius: object, max_particles: object) -> None:
    if len(shape) not in (2, 3):
        raise ValueError(f"score_map must be 2-D (H, W) or 3-D (D, H, W), got shape {shape}")
    for name, value in (("radius", radius), ("max_particles", max_particles)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
            raise ValueError(f"{name} must be a non-negative int (static), got {value!r}")


def _flush_subnormals(x: np.ndarray) -> np.ndarray:
    return np.where(np.abs(x) < np.finfo(np.float32).tiny, np.float32(0), x)


def _empty_picks(max_particles: int, ndim: int) -> Picks:
    return Picks(
        coords=np.full((max_particles, ndim), -1, dtype=np.int32),
        scores=np.full((max_particles,), -np.inf, dtype=np.float32),
        valid=np.zeros((max_particles,), dtype=bool),
    )


def nms_reference(
    score_map: ArrayLike, *, radius: int, max_particles: int, threshold: float = -np.inf
) -> Picks:
    """Greedy non-maximum suppression, the plain way: the oracle for the fast implementations.

    See the module docstring for the exact rules (float32 comparisons, tie order, strict
    threshold, NaN, edges).

    Args:
      score_map: a 2-D ``(H, W)`` score map or a 3-D ``(D, H, W)`` volume; cast to float32.
      radius: suppression radius in pixels; pixels at squared distance ``<= radius**2`` from a
        pick are suppressed.
      max_particles: number of output slots ``K``; the first ``K`` picks are kept.
      threshold: only scores strictly greater than this (in float32) are picked.

    Returns:
      A `Picks` of NumPy arrays: coords int32 ``[K, ndim]``, scores float32 ``[K]``,
      valid bool ``[K]``.

    Raises:
      ValueError: if ``score_map`` is not 2-D or 3-D, or ``radius`` / ``max_particles`` is not a
        non-negative int.

    Examples:
      >>> x = np.array([[0.0, 1.0, 0.75, 0.0], [0.0, 0.0, 0.0, 0.5]], np.float32)
      >>> picks = nms_reference(x, radius=1, max_particles=4, threshold=-1.0)
      >>> picks.coords.tolist(), picks.scores.tolist(), picks.valid.tolist()
      ([[0, 1], [1, 3], [1, 0], [-1, -1]], [1.0, 0.5, 0.0, -inf], [True, True, True, False])
    """
    x = np.asarray(score_map, dtype=np.float32)
    _check_args(x.shape, radius, max_particles)
    picks = _empty_picks(int(max_particles), x.ndim)
    if max_particles == 0:
        return picks

    flat = x.ravel()
    key = _flush_subnormals(flat)
    visit = np.flatnonzero(key > _flush_subnormals(np.float32(threshold)))  # never NaN
    visit = visit[np.lexsort((visit, -key[visit]))]  # score descending, then flat index

    shape = np.array(x.shape)
    suppressed = np.zeros(x.shape, dtype=bool)
    count = 0
    for index in visit:
        point = np.array(np.unravel_index(index, x.shape))
        if suppressed[tuple(point)]:
            continue
        picks.coords[count] = point
        picks.scores[count] = flat[index]
        picks.valid[count] = True
        count += 1
        if count == max_particles:
            break
        # Suppress the disc/ball around the pick, clipped to the image (no wrap-around).
        lo = np.maximum(point - radius, 0)
        hi = np.minimum(point + radius + 1, shape)
        box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        offsets = np.ogrid[box]
        dist2 = sum((o - p) ** 2 for o, p in zip(offsets, point, strict=True))
        suppressed[box] |= dist2 <= radius * radius
    return picks


def topaz_nms(
    score_map: ArrayLike, radius: int, threshold: float = -np.inf
) -> tuple[np.ndarray, np.ndarray]:
    """Topaz's NMS, transcribed from ``topaz/algorithms.py`` with its quirks kept.

    2-D maps follow ``non_maximum_suppression(x, r, threshold)``; 3-D volumes follow
    ``non_maximum_suppression_3d(x, r, scale=1, threshold)``. The quirks:

    * 2-D neighbours are clipped to ``[0, H]`` x ``[0, W]`` instead of ``H - 1`` / ``W - 1``, so
      near the right edge the suppression lands on column 0 of the next row (spec 4.2).
    * 3-D neighbours are flat-index offsets without any bounds check: they wrap across rows
      and planes.
    * Ties are visited in the reverse of NumPy's default (unstable) ``argsort`` order.
    * NaN sorts last in ``argsort``, so it is visited *first*, and is picked (``NaN <= t`` is
      false).
    * There is no cap on the number of picks.

    Args:
      score_map: 2-D ``(H, W)`` or 3-D ``(D, H, W)`` array.
      radius: suppression radius in pixels.
      threshold: scores ``<= threshold`` stop the scan.

    Returns:
      ``(scores, coords)`` as Topaz returns them: float32 ``[n]`` and int32 ``[n, ndim]`` with
      coordinates in **(x, y)** / **(x, y, z)** order (Topaz's, not ours).

    Examples:
      >>> x = np.zeros((3, 4), np.float32); x[0, 3] = 1.0; x[1, 0] = 0.5
      >>> topaz_nms(x, 1, threshold=0.0)  # (0, 3) wrongly suppresses (1, 0)
      (array([1.], dtype=float32), array([[3, 0]], dtype=int32))
    """
    x = np.asarray(score_map)
    if x.ndim == 3:
        return _topaz_nms_3d(x, radius, threshold)
    if x.ndim != 2:
        raise ValueError(f"score_map must be 2-D or 3-D, got shape {x.shape}")
    r = radius
    # --- topaz/algorithms.py: non_maximum_suppression ---
    width = r
    ii, jj = np.meshgrid(np.arange(-width, width + 1), np.arange(-width, width + 1))
    mask = (ii**2 + jj**2) <= r * r
    ii = ii[mask]
    jj = jj[mask]
    major_axis = x.shape[1]

    A = x.ravel()
    I = np.argsort(A, axis=None)[::-1]  # noqa: E741 (Topaz's name)
    S = set()
    scores = np.zeros(len(A), dtype=np.float32)
    coords = np.zeros((len(A), 2), dtype=np.int32)
    j = 0
    for i in I:
        if A[i] <= threshold:
            break
        if i not in S:
            xx = i % major_axis
            yy = i // major_axis
            scores[j] = A[i]
            coords[j, 0] = xx
            coords[j, 1] = yy
            j += 1
            y_coords = np.clip(yy + ii, 0, x.shape[0])
            x_coords = np.clip(xx + jj, 0, x.shape[1])
            for y_coord, x_coord in zip(y_coords, x_coords, strict=True):
                S.add(y_coord * major_axis + x_coord)
    return scores[:j], coords[:j]


def _topaz_nms_3d(x: np.ndarray, r: int, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    # --- topaz/algorithms.py: non_maximum_suppression_3d, with scale=1 ---
    width = int(np.ceil(r))
    A = np.arange(-width, width + 1)
    ii, jj, kk = np.meshgrid(A, A, A)
    mask = (ii**2 + jj**2 + kk**2) <= r * r
    ii = ii[mask]
    jj = jj[mask]
    kk = kk[mask]
    zstride = x.shape[1] * x.shape[2]
    ystride = x.shape[2]
    coord_deltas = ii * zstride + jj * ystride + kk

    A = x.ravel()
    I = np.argsort(A, axis=None)[::-1]  # noqa: E741 (Topaz's name)
    S = set()
    scores = np.zeros(len(A), dtype=np.float32)
    coords = np.zeros((len(A), 3), dtype=np.int32)
    j = 0
    for i in I:
        if A[i] <= threshold:
            break
        if i not in S:
            zz, yy, xx = np.unravel_index(i, x.shape)
            scores[j] = A[i]
            coords[j, 0] = xx
            coords[j, 1] = yy
            coords[j, 2] = zz
            j += 1
            for delta in coord_deltas:
                S.add(i + delta)
    return scores[:j], coords[:j]
