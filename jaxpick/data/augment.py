"""Crop geometry for training augmentation: where each pixel of a rotated, flipped crop comes from.

Topaz (spec 3.2) cuts a window of about ``crop·√2`` pixels around the sample pixel (zero beyond
the image), rotates it with torchvision's ``rotate`` (angle ~ U[0, 360) degrees,
counter-clockwise as displayed with rows downwards, nearest neighbour, about the centre pixel,
zero fill), cuts the centred ``crop × crop`` window out of that, then flips it left-right and
top-bottom, each with probability 1/2.

All of that is a gather: output pixel ``(i, j)`` of the crop takes the image pixel at
``centre + offsets[i, j]``, or 0 when that lies outside the image. The functions here compute
``offsets`` (int32 ``[crop, crop, 2]``, ``(dy, dx)``) for a given angle and flips;
`jaxpick.data.sampling` does the gather for a whole minibatch at once. The window never matters:
it is large enough that every offset of the crop lies inside it.

Output pixel ``(i, j)`` sits at offset ``(a, b) = (i − crop//2, j − crop//2)`` from the centre
(after the flips, which act on the crop: ``i → crop − 1 − i``). Rotating counter-clockwise by θ
takes it from the source offset ``(round(cos θ·a + sin θ·b), round(cos θ·b − sin θ·a))``, with
ties rounded to even (torchvision's ``grid_sample`` nearest mode): θ = 90° is ``np.rot90``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

__all__ = [
    "centred_offsets",
    "random_offsets",
    "random_transform",
    "transform_offsets",
]


def _check_crop(crop_size: int) -> None:
    if not isinstance(crop_size, int) or crop_size < 1:
        raise ValueError(f"crop_size must be a positive int, got {crop_size!r}")


def centred_offsets(crop_size: int) -> jax.Array:
    """Offsets ``(dy, dx)`` of a plain crop centred on a pixel: ``i − crop_size // 2``.

    Args:
      crop_size: side of the crop (odd sizes are symmetric; even ones reach one pixel further
        up and left, as Topaz's centred crops do).

    Returns:
      int32 ``[crop_size, crop_size, 2]``.

    Examples:
      >>> centred_offsets(3)[0, 0].tolist(), centred_offsets(3)[1, 1].tolist()
      ([-1, -1], [0, 0])
    """
    _check_crop(crop_size)
    d = jnp.arange(crop_size, dtype=jnp.int32) - crop_size // 2
    dy, dx = jnp.meshgrid(d, d, indexing="ij")
    return jnp.stack([dy, dx], axis=-1)


def transform_offsets(
    crop_size: int,
    angle: ArrayLike,
    hflip: ArrayLike = False,
    vflip: ArrayLike = False,
) -> jax.Array:
    """Source offsets of a crop rotated by ``angle`` degrees, then flipped (Topaz's order).

    Args:
      crop_size: side of the crop.
      angle: rotation in degrees, counter-clockwise as displayed (rows downwards), as
        torchvision's ``rotate``; a scalar (float32).
      hflip: flip the rotated crop left-right (columns reversed); a scalar bool.
      vflip: flip it top-bottom (rows reversed); a scalar bool.

    Returns:
      int32 ``[crop_size, crop_size, 2]``: output pixel ``(i, j)`` is the image pixel at
      ``centre + offsets[i, j]``.

    Examples:
      >>> import numpy as np
      >>> off = transform_offsets(3, 90.0)
      >>> image = np.arange(9).reshape(3, 3)
      >>> bool((image[1 + off[..., 0], 1 + off[..., 1]] == np.rot90(image)).all())
      True
    """
    _check_crop(crop_size)
    index = jnp.arange(crop_size, dtype=jnp.int32)
    rows = jnp.where(jnp.asarray(vflip, bool), crop_size - 1 - index, index)
    cols = jnp.where(jnp.asarray(hflip, bool), crop_size - 1 - index, index)
    a = (rows - crop_size // 2).astype(jnp.float32)[:, None]
    b = (cols - crop_size // 2).astype(jnp.float32)[None, :]
    theta = jnp.deg2rad(jnp.asarray(angle, jnp.float32))
    cos, sin = jnp.cos(theta), jnp.sin(theta)
    # jnp.round rounds half to even, like torchvision's nearest-neighbour grid_sample.
    dy = jnp.round(cos * a + sin * b).astype(jnp.int32)
    dx = jnp.round(cos * b - sin * a).astype(jnp.int32)
    return jnp.stack([dy, dx], axis=-1)


def random_transform(key: jax.Array, shape: tuple[int, ...] = ()) -> tuple[jax.Array, ...]:
    """Random augmentation parameters as Topaz draws them.

    Args:
      key: a PRNG key.
      shape: batch shape of the parameters.

    Returns:
      ``(angle, hflip, vflip)``: float32 angles ~ U[0, 360) degrees and two bools of
      probability 1/2 each, all of ``shape``.
    """
    k_angle, k_h, k_v = jax.random.split(key, 3)
    angle = jax.random.uniform(k_angle, shape, jnp.float32, 0.0, 360.0)
    hflip = jax.random.bernoulli(k_h, 0.5, shape)
    vflip = jax.random.bernoulli(k_v, 0.5, shape)
    return angle, hflip, vflip


def random_offsets(key: jax.Array, crop_size: int, batch_size: int) -> jax.Array:
    """Source offsets of ``batch_size`` independently rotated and flipped crops.

    Args:
      key: a PRNG key.
      crop_size: side of each crop.
      batch_size: number of crops.

    Returns:
      int32 ``[batch_size, crop_size, crop_size, 2]`` (see :func:`transform_offsets`).
    """
    angle, hflip, vflip = random_transform(key, (batch_size,))
    return jax.vmap(lambda t, h, v: transform_offsets(crop_size, t, h, v))(angle, hflip, vflip)
