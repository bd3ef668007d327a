"""The positive-unlabelled minibatch sampler, on the device (spec 3.2).

The whole training set lives on the device as one :class:`DeviceData` pytree (images zero-padded
to a common size, the positive mask, the table of expanded positive pixels, the image weights),
and :func:`sample_minibatch` draws a minibatch inside the jitted training step: no host work, no
transfers, no data loader. Per sample, as Topaz:

* with probability ``balance`` a positive: a uniformly random row of the expanded-positive table
  (every pixel within ``radius`` of a particle; pixels of overlapping discs appear once per disc,
  so they are drawn proportionally more often), label 1;
* otherwise an unlabelled pixel: a source uniformly, an image uniformly within it, a pixel
  uniformly inside the image's true shape, label 0. With ``exclude_positives`` (PN and GE
  methods) a pixel on a positive is redrawn until it is not one;
* a crop of ``crop_size`` centred on the pixel, rotated by a uniform angle, flipped left-right and
  top-bottom each with probability 1/2, zero beyond the image's true border
  (`jaxpick.data.augment`), taken with one gather for the whole minibatch.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxpick.data.augment import centred_offsets, random_offsets
from jaxpick.data.targets import TrainingSet, disc_offsets

__all__ = [
    "MAX_REDRAWS",
    "DeviceData",
    "gather_crops",
    "host_arrays",
    "sample_minibatch",
    "to_device_data",
]

#: Rounds of redrawing for ``exclude_positives``. A sample is still on a positive after them
#: with probability q^MAX_REDRAWS, q its image's positive fraction: < 1e-22 for q <= 0.95, so
#: exact in practice (typical q is 0.001-0.1, and the loop then stops after a few rounds). An
#: image with no unlabelled pixel at all (Topaz loops forever) gives label-0 samples centred on a
#: positive after the bound.
MAX_REDRAWS = 1024


class DeviceData(NamedTuple):
    """A training set on the device (a pytree of arrays).

    Attributes:
      images: float32 ``[N, Hmax, Wmax]``, each image top-left aligned, zero-padded.
      shapes: int32 ``[N, 2]``, each image's true ``(H, W)``.
      positive_mask: bool ``[N, Hmax, Wmax]``: pixels within ``radius`` of a particle (true
        disc), False outside the image.
      positives: int32 ``[P, 3]``: ``(image, y, x)`` of every expanded positive pixel inside its
        image, with a row per disc covering it (overlaps repeat, as in Topaz).
      image_weights: float32 ``[N]``: probability of each image for an unlabelled sample
        (uniform over sources, then uniform over the images of a source).
    """

    images: jax.Array
    shapes: jax.Array
    positive_mask: jax.Array
    positives: jax.Array
    image_weights: jax.Array


def host_arrays(ts: TrainingSet) -> DeviceData:
    """The arrays of :class:`DeviceData` as numpy arrays, built on the host.

    Args:
      ts: the training set.

    Returns:
      A `DeviceData` holding numpy arrays (see :func:`to_device_data`).
    """
    n = len(ts)
    if n == 0:
        raise ValueError("the training set has no images")
    shapes = np.array([image.shape for image in ts.images], dtype=np.int32).reshape(n, 2)
    hmax, wmax = (int(v) for v in shapes.max(axis=0))
    images = np.zeros((n, hmax, wmax), np.float32)
    mask = np.zeros((n, hmax, wmax), bool)
    offsets = disc_offsets(ts.radius)
    rows = []
    for i, (image, coords) in enumerate(zip(ts.images, ts.coords, strict=True)):
        height, width = image.shape
        images[i, :height, :width] = image
        pixels = (np.asarray(coords, np.int32)[:, None, :] + offsets[None]).reshape(-1, 2)
        inside = (
            (pixels[:, 0] >= 0)
            & (pixels[:, 0] < height)
            & (pixels[:, 1] >= 0)
            & (pixels[:, 1] < width)
        )
        pixels = pixels[inside]
        mask[i, pixels[:, 0], pixels[:, 1]] = True
        rows.append(np.concatenate([np.full((len(pixels), 1), i, np.int32), pixels], axis=1))
    sources = np.asarray(ts.sources)
    _, inverse, counts = np.unique(sources, return_inverse=True, return_counts=True)
    weights = 1.0 / (len(counts) * counts[inverse])
    # numpy arrays in the device pytree's places, for to_device_data to put on the device
    return DeviceData(  # type: ignore[arg-type]
        images=images,
        shapes=shapes,
        positive_mask=mask,
        positives=np.concatenate(rows, axis=0).astype(np.int32).reshape(-1, 3),
        image_weights=weights.astype(np.float32),
    )


def to_device_data(
    ts: TrainingSet, *, sharding: jax.sharding.Sharding | jax.Device | None = None
) -> DeviceData:
    """Puts a training set on the device(s) for :func:`sample_minibatch`.

    The mask and positive table are built on the host with numpy (:func:`host_arrays`).

    Args:
      ts: the training set.
      sharding: where the arrays go (a `jax.sharding.Sharding` or a device, applied to every
        array). None: replicated over all devices (``NamedSharding`` of a one-axis mesh of
        ``jax.devices()`` with ``P()``), so a minibatch sharded over them reads it without
        transfers. Give a replicated sharding over the training mesh when training on a subset
        of the devices.

    Returns:
      The training set as device arrays.
    """
    host = host_arrays(ts)
    if sharding is None:
        mesh = jax.sharding.Mesh(np.asarray(jax.devices()), ("data",))
        sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    return DeviceData(*(jax.device_put(a, sharding) for a in host))


def gather_crops(
    images: jax.Array,
    shapes: jax.Array,
    index: jax.Array,
    centres: jax.Array,
    offsets: jax.Array,
) -> jax.Array:
    """Crops of many images in one gather: pixel ``centre + offset``, 0 outside the image.

    Args:
      images: float32 ``[N, Hmax, Wmax]`` padded images.
      shapes: int32 ``[N, 2]`` true image shapes; pixels beyond them read as 0 even where the
        padded array has room.
      index: int32 ``[B]`` image of each crop.
      centres: int32 ``[B, 2]`` centre pixel ``(y, x)`` of each crop.
      offsets: int32 ``[B, c, c, 2]`` (or ``[c, c, 2]`` for all crops) source offsets, e.g. from
        `jaxpick.data.augment`.

    Returns:
      float32 ``[B, c, c]``.
    """
    if offsets.ndim == 3:
        offsets = jnp.broadcast_to(offsets[None], (index.shape[0], *offsets.shape))
    y = centres[:, 0, None, None] + offsets[..., 0]
    x = centres[:, 1, None, None] + offsets[..., 1]
    height = shapes[index, 0][:, None, None]
    width = shapes[index, 1][:, None, None]
    inside = (y >= 0) & (y < height) & (x >= 0) & (x < width)
    y = jnp.clip(y, 0, images.shape[1] - 1)
    x = jnp.clip(x, 0, images.shape[2] - 1)
    values = images.at[index[:, None, None], y, x].get(mode="promise_in_bounds")
    return jnp.where(inside, values, jnp.zeros((), images.dtype))


def _uniform_pixels(
    key: jax.Array, shapes: jax.Array, index: jax.Array
) -> tuple[jax.Array, jax.Array]:
    k_y, k_x = jax.random.split(key)
    y = jax.random.randint(k_y, index.shape, 0, shapes[index, 0], dtype=jnp.int32)
    x = jax.random.randint(k_x, index.shape, 0, shapes[index, 1], dtype=jnp.int32)
    return y, x


def _unlabelled_pixels(
    key: jax.Array,
    data: DeviceData,
    index: jax.Array,
    needed: jax.Array,
    exclude_positives: bool,
) -> tuple[jax.Array, jax.Array]:
    """Uniform pixels of the images ``index``; with ``exclude_positives``, the ``needed`` ones
    still on a positive are redrawn (all at once per round) until none is, for at most
    `MAX_REDRAWS` rounds. Conditioned on stopping before the bound this is exactly uniform
    over each image's non-positive pixels, as Topaz's unbounded loop."""
    k_first, k_loop = jax.random.split(key)
    y, x = _uniform_pixels(k_first, data.shapes, index)
    if not exclude_positives:
        return y, x

    def on_positive(y: jax.Array, x: jax.Array) -> jax.Array:
        return needed & data.positive_mask.at[index, y, x].get(mode="promise_in_bounds")

    def cond(state: tuple[Any, ...]) -> jax.Array:
        step, _, _, bad = state
        return (step < MAX_REDRAWS) & jnp.any(bad)

    def body(state: tuple[Any, ...]) -> tuple[Any, ...]:
        step, y, x, bad = state
        ny, nx = _uniform_pixels(jax.random.fold_in(k_loop, step), data.shapes, index)
        y = jnp.where(bad, ny, y)
        x = jnp.where(bad, nx, x)
        return step + 1, y, x, on_positive(y, x)

    state = (jnp.int32(0), y, x, on_positive(y, x))
    _, y, x, _ = jax.lax.while_loop(cond, body, state)
    return y, x


def sample_minibatch(
    key: jax.Array,
    data: DeviceData,
    *,
    batch_size: int,
    crop_size: int,
    balance: float,
    exclude_positives: bool,
    augment: bool = True,
) -> tuple[jax.Array, jax.Array]:
    """Draws a minibatch of labelled crops (see the module docstring).

    Pure and jit-able; everything but ``key`` and ``data`` is static (pass them with
    ``static_argnames`` or by closure). Inside a jitted step with the output constrained to a
    batch sharding, each device can produce its share.

    Args:
      key: a PRNG key.
      data: the training set on the device (:func:`to_device_data`).
      batch_size: crops per minibatch.
      crop_size: side of each crop (the model's receptive field).
      balance: probability that a sample is a positive (Topaz's ``--minibatch-balance``).
      exclude_positives: unlabelled samples never centre on a positive pixel (PN and GE
        methods); False for PU, where unlabelled pixels may be positives. Redraws are bounded
        by `MAX_REDRAWS` rounds (see there).
      augment: random rotation and flips; False gives plain centred crops.

    Returns:
      ``(crops, labels)``: float32 ``[batch_size, crop_size, crop_size]`` and int32
      ``[batch_size]`` (1 for positives, 0 for unlabelled).

    Raises:
      ValueError: a bad static argument, or ``balance > 0`` with no positives.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if not 0.0 <= balance <= 1.0:
        raise ValueError(f"balance must be in [0, 1], got {balance!r}")
    num_positives = data.positives.shape[0]
    if balance > 0 and num_positives == 0:
        raise ValueError("balance > 0 but the training set has no positive pixels")
    k_label, k_pos, k_image, k_pixel, k_aug = jax.random.split(key, 5)
    shape = (batch_size,)

    is_positive = jax.random.uniform(k_label, shape) < balance
    if num_positives:
        row = jax.random.randint(k_pos, shape, 0, num_positives, dtype=jnp.int32)
        positive = data.positives[row]
    else:
        positive = jnp.zeros((batch_size, 3), jnp.int32)

    num_images = data.images.shape[0]
    image = jax.random.choice(k_image, num_images, shape, p=data.image_weights).astype(jnp.int32)
    y, x = _unlabelled_pixels(k_pixel, data, image, ~is_positive, exclude_positives)

    index = jnp.where(is_positive, positive[:, 0], image)
    centres = jnp.stack(
        [jnp.where(is_positive, positive[:, 1], y), jnp.where(is_positive, positive[:, 2], x)],
        axis=-1,
    )
    if augment:
        offsets = random_offsets(k_aug, crop_size, batch_size)
    else:
        offsets = centred_offsets(crop_size)
    crops = gather_crops(data.images, data.shapes, index, centres, offsets)
    return crops, is_positive.astype(jnp.int32)
