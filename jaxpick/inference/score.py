"""Dense scoring of whole micrographs, optionally in tiles with a receptive-field halo.

A dense picker model maps an image ``(B, H, W)`` to a logit map of the same size, treating
everything outside the image as zero (Topaz's ``fill()`` mode, spec 2.3). A pixel's score only
depends on the ``receptive_field`` window centred on it, so a micrograph can be scored in tiles:
pad it with zeros by ``halo = receptive_field // 2``, score overlapping windows of
``tile + 2 * halo`` pixels every ``tile`` pixels, keep the central ``tile × tile`` of each, and
paste them together (Topaz's ``-p/--patch-size``, spec 4.1). The result equals whole-image
scoring up to float32 rounding (the convolutions run on a different size), and bounds device
memory for any micrograph size.

Everything here is pure and traceable: `score_image` is the single-micrograph function that the
batch commands ``vmap`` or ``lax.map``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

from jaxpick.errors import ConfigError

__all__ = ["DenseModel", "score_image", "tile_grid"]

#: ``(B, h, w) float32 -> (B, h, w) float32`` logits with zero padding outside the input.
DenseModel = Callable[[jax.Array], jax.Array]


def tile_grid(shape: tuple[int, int], tile: int) -> tuple[int, int]:
    """Tiles per column and per row needed to cover ``shape`` with ``tile × tile`` tiles."""
    if tile < 1:
        raise ConfigError(f"tile must be a positive number of pixels, got {tile}")
    return math.ceil(shape[0] / tile), math.ceil(shape[1] / tile)


def score_image(
    apply: DenseModel,
    image: jax.Array,
    *,
    receptive_field: int,
    tile: int | None = None,
    tiles_per_call: int = 1,
) -> jax.Array:
    """Dense logits of one micrograph, whole or in tiles.

    Args:
      apply: the dense model on a batch of images (see `DenseModel`).
      image: ``(H, W)`` micrograph (normalised as the model expects).
      receptive_field: the model's receptive field in pixels; the halo is half of it.
      tile: side of the tiles scored at once (static); None or a tile covering the whole image
        scores it in one call.
      tiles_per_call: tiles per model call (static): more is faster on accelerators, up to
        memory.

    Returns:
      ``(H, W)`` float32 logits.

    Raises:
      ConfigError: (a ValueError) for a non-positive tile or receptive field.

    Examples:
      >>> import jax.numpy as jnp
      >>> box = lambda x: x  # a "model" with receptive field 1
      >>> score_image(box, jnp.arange(12.0).reshape(3, 4), receptive_field=1, tile=2).shape
      (3, 4)
    """
    if receptive_field < 1:
        raise ConfigError(f"receptive_field must be >= 1, got {receptive_field}")
    image = jnp.asarray(image, jnp.float32)
    height, width = image.shape
    if tile is None or (tile >= height and tile >= width):
        return apply(image[None])[0]
    rows, cols = tile_grid((height, width), tile)
    halo = receptive_field // 2
    side = tile + 2 * halo
    padded = jnp.pad(
        image, ((halo, halo + rows * tile - height), (halo, halo + cols * tile - width))
    )
    starts = [(r * tile, c * tile) for r in range(rows) for c in range(cols)]
    windows = jnp.stack([lax.dynamic_slice(padded, s, (side, side)) for s in starts])
    count = len(starts)
    per_call = max(1, min(tiles_per_call, count))
    calls = math.ceil(count / per_call)
    windows = jnp.pad(windows, ((0, calls * per_call - count), (0, 0), (0, 0)))
    scored = lax.map(apply, windows.reshape(calls, per_call, side, side))
    centres = scored.reshape(calls * per_call, side, side)[
        :count, halo : halo + tile, halo : halo + tile
    ]
    grid = centres.reshape(rows, cols, tile, tile).transpose(0, 2, 1, 3)
    return grid.reshape(rows * tile, cols * tile)[:height, :width]
