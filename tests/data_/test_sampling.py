"""Tests of the on-device PU minibatch sampler (`jaxpick.data.sampling`)."""

from __future__ import annotations

import functools
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxpick.data.augment import transform_offsets
from jaxpick.data.sampling import (
    DeviceData,
    gather_crops,
    host_arrays,
    sample_minibatch,
    to_device_data,
)
from jaxpick.data.targets import TrainingSet, disc_offsets

SHAPES = ((20, 30), (33, 17), (25, 25))
BASE = 10_000  # image i holds the values i*BASE + 1 + flat index: every pixel tells where it is


def _training_set(
    radius: int = 2, coords: tuple[list[list[int]], ...] | None = None
) -> TrainingSet:
    images = tuple(
        (i * BASE + 1 + np.arange(h * w).reshape(h, w)).astype(np.float32)
        for i, (h, w) in enumerate(SHAPES)
    )
    if coords is None:
        coords = ([[1, 1], [10, 15], [11, 16]], [[30, 16], [5, 5]], [[12, 12]])
    return TrainingSet(
        names=("a", "b", "c"),
        paths=("a.mrc", "b.mrc", "c.mrc"),
        images=images,
        sources=(0, 0, 1),
        coords=tuple(np.asarray(c, np.int32).reshape(-1, 2) for c in coords),
        radius=radius,
    )


def _where(value: float) -> tuple[int, int, int]:
    """(image, y, x) of a pixel value of `_training_set`."""
    i, flat = divmod(int(round(value)) - 1, BASE)
    return i, flat // SHAPES[i][1], flat % SHAPES[i][1]


def _numpy_crop(image: np.ndarray, y: int, x: int, crop: int) -> np.ndarray:
    """Topaz's get_crop: the window around (y, x), zero beyond the image."""
    pad = crop
    padded = np.pad(image, pad)
    top, left = y - crop // 2 + pad, x - crop // 2 + pad
    return padded[top : top + crop, left : left + crop]


def _sampler(**static):
    return jax.jit(functools.partial(sample_minibatch, **static))


# ------------------------------------------------------------------------------ host side


def test_host_arrays_mask_table_weights() -> None:
    ts = _training_set()
    data = host_arrays(ts)
    assert data.images.shape == (3, 33, 30)
    assert data.images.dtype == np.float32
    np.testing.assert_array_equal(data.shapes, np.array(SHAPES, np.int32))
    for i, (h, w) in enumerate(SHAPES):
        np.testing.assert_array_equal(data.images[i, :h, :w], ts.images[i])
        assert not data.images[i, h:, :].any()
        assert not data.images[i, :, w:].any()
    # The table: every disc pixel inside the image, one row per disc (overlaps repeat).
    expected = []
    for i, coords in enumerate(ts.coords):
        for y, x in coords:
            for dy, dx in disc_offsets(2):
                if 0 <= y + dy < SHAPES[i][0] and 0 <= x + dx < SHAPES[i][1]:
                    expected.append((i, y + dy, x + dx))
    assert data.positives.dtype == np.int32
    assert sorted(map(tuple, data.positives.tolist())) == sorted(expected)
    assert len(expected) > len(set(expected))  # the overlapping discs of image 0
    mask = np.zeros_like(data.positive_mask)
    for i, y, x in expected:
        mask[i, y, x] = True
    np.testing.assert_array_equal(data.positive_mask, mask)
    # Uniform over the two sources, then over the images of a source.
    np.testing.assert_allclose(data.image_weights, [0.25, 0.25, 0.5])
    assert data.image_weights.dtype == np.float32


def test_to_device_data_replicated_by_default() -> None:
    data = to_device_data(_training_set())
    assert isinstance(data, DeviceData)
    for array in data:
        assert isinstance(array, jax.Array)
        assert array.sharding.is_fully_replicated
        assert len(array.sharding.device_set) == jax.device_count()
    assert data.positives.dtype == jnp.int32
    assert data.positive_mask.dtype == jnp.bool_
    one = to_device_data(_training_set(), sharding=jax.devices()[0])
    assert one.images.devices() == {jax.devices()[0]}


# ------------------------------------------------------------------------------- crops


@pytest.mark.parametrize("crop", [1, 6, 9])
def test_plain_crops_are_centred_numpy_slices(crop: int) -> None:
    ts = _training_set()
    data = to_device_data(ts)
    sample = _sampler(
        batch_size=256, crop_size=crop, balance=0.3, exclude_positives=True, augment=False
    )
    crops, labels = sample(jax.random.key(3), data)
    crops, labels = np.asarray(crops), np.asarray(labels)
    assert crops.shape == (256, crop, crop)
    assert crops.dtype == np.float32
    assert labels.dtype == np.int32
    mask = np.asarray(data.positive_mask)
    seen_border = False
    for c, label in zip(crops, labels, strict=True):
        i, y, x = _where(c[crop // 2, crop // 2])
        np.testing.assert_array_equal(c, _numpy_crop(ts.images[i], y, x, crop))
        # Positives sit on a positive pixel; with exclude_positives unlabelled ones never do.
        assert bool(mask[i, y, x]) == bool(label)
        seen_border |= bool((c == 0).any())
    assert seen_border or crop == 1  # zero padding was exercised


def test_pu_unlabelled_may_be_positive() -> None:
    # Discs cover most of image 0: PU's unlabelled samples land on positives often.
    ts = _training_set(radius=6, coords=([[5, 7], [14, 7], [5, 21], [14, 21]], [], []))
    data = to_device_data(ts)
    mask = np.asarray(data.positive_mask)
    for exclude in (False, True):
        sample = _sampler(
            batch_size=512, crop_size=1, balance=0.0, exclude_positives=exclude, augment=False
        )
        crops, labels = sample(jax.random.key(0), data)
        assert not np.asarray(labels).any()
        on = [mask[_where(v)] for v in np.asarray(crops)[:, 0, 0]]
        assert any(on) != exclude


def test_rotated_crops_zero_beyond_true_image() -> None:
    """Mixed sizes: the padded array has room (filled with junk here), crops still see 0."""
    ts = _training_set()
    host = host_arrays(ts)
    junk = host.images.copy()
    for i, (h, w) in enumerate(SHAPES):
        junk[i, h:, :] = -7.0
        junk[i, :, w:] = -7.0
    index = jnp.array([1, 1, 0, 2], jnp.int32)
    centres = jnp.array([[31, 15], [2, 16], [19, 29], [24, 0]], jnp.int32)
    crop = 9
    for k in range(4):
        offsets = transform_offsets(crop, 90.0 * k, hflip=k == 1, vflip=k == 3)
        got = np.asarray(gather_crops(jnp.asarray(junk), host.shapes, index, centres, offsets))
        assert not (got == -7.0).any()
        for b in range(4):
            i, (y, x) = int(index[b]), np.asarray(centres[b])
            plain = _numpy_crop(ts.images[i], y, x, crop)
            want = np.rot90(plain, k)
            if k == 1:
                want = want[:, ::-1]
            if k == 3:
                want = want[::-1, :]
            np.testing.assert_array_equal(got[b], want)


def test_augmented_crops_are_rotations_of_the_neighbourhood() -> None:
    ts = _training_set()
    data = to_device_data(ts)
    sample = _sampler(batch_size=64, crop_size=7, balance=0.5, exclude_positives=False)
    crops, _ = sample(jax.random.key(5), data)
    crops = np.asarray(crops)
    plain_neighbours = 0
    for c in crops:
        i, y, x = _where(c[3, 3])
        window = _numpy_crop(ts.images[i], y, x, 15)
        values = set(window.ravel().tolist())
        assert set(c.ravel().tolist()) <= values  # only pixels around the centre, or 0
        # The 4-neighbours of the centre are the 4-neighbours in the image, in some order
        # (a rotation by nearest neighbour moves them at most around the ring).
        ring = {c[2, 3], c[4, 3], c[3, 2], c[3, 4]}
        plain_neighbours += ring == {window[6, 7], window[8, 7], window[7, 6], window[7, 8]}
    assert plain_neighbours > 0


# ------------------------------------------------------------------------------- statistics


def test_balance_fraction() -> None:
    data = to_device_data(_training_set())
    sample = _sampler(batch_size=1024, crop_size=1, balance=0.2, exclude_positives=True)
    labels = np.concatenate([np.asarray(sample(jax.random.key(k), data)[1]) for k in range(8)])
    n = labels.size
    assert abs(labels.mean() - 0.2) < 4 * np.sqrt(0.2 * 0.8 / n)


def test_unlabelled_image_frequencies_follow_weights() -> None:
    data = to_device_data(_training_set())
    sample = _sampler(
        batch_size=2048, crop_size=1, balance=0.0, exclude_positives=True, augment=False
    )
    images = [
        _where(v)[0]
        for k in range(4)
        for v in np.asarray(sample(jax.random.key(k), data)[0])[:, 0, 0]
    ]
    counts = np.bincount(images, minlength=3)
    n = counts.sum()
    for count, p in zip(counts, [0.25, 0.25, 0.5], strict=True):
        assert abs(count / n - p) < 4 * np.sqrt(p * (1 - p) / n)


def test_unlabelled_pixels_uniform_within_true_shape() -> None:
    data = to_device_data(_training_set(coords=([], [], [])), sharding=jax.devices()[0])
    sample = _sampler(
        batch_size=4096, crop_size=1, balance=0.0, exclude_positives=False, augment=False
    )
    where = [_where(v) for v in np.asarray(sample(jax.random.key(0), data)[0])[:, 0, 0]]
    rows = np.array([y / SHAPES[i][0] for i, y, _ in where])
    cols = np.array([x / SHAPES[i][1] for i, _, x in where])
    for fractions in (rows, cols):
        assert fractions.min() >= 0
        assert fractions.max() < 1
        assert abs(fractions.mean() - 0.5) < 0.03


def test_positive_rows_uniform_with_duplicates() -> None:
    # Two radius-1 discs sharing two pixels: 10 rows, 8 distinct pixels, 2 of them twice.
    ts = _training_set(radius=1, coords=([[5, 5], [5, 6]], [], []))
    data = to_device_data(ts)
    rows = np.asarray(data.positives)
    assert len(rows) == 10
    sample = _sampler(
        batch_size=4096, crop_size=1, balance=1.0, exclude_positives=True, augment=False
    )
    crops, labels = sample(jax.random.key(1), data)
    assert np.asarray(labels).all()
    hits = [_where(v) for v in np.asarray(crops)[:, 0, 0]]
    n = len(hits)
    for pixel in {tuple(r) for r in rows.tolist()}:
        p = sum(tuple(r) == pixel for r in rows.tolist()) / len(rows)
        freq = sum(h == pixel for h in hits) / n
        assert abs(freq - p) < 4 * np.sqrt(p * (1 - p) / n), pixel


def test_exclude_positives_on_dense_labels() -> None:
    # Image 0 is 95 % positive: redraws must still find its 30 unlabelled pixels.
    coords = ([[5, 5], [5, 15], [5, 25], [15, 5], [15, 15], [15, 25]], [], [])
    data = to_device_data(_training_set(radius=6, coords=coords))
    mask = np.asarray(data.positive_mask)
    assert mask[0, :20, :30].mean() == pytest.approx(0.95)
    sample = _sampler(
        batch_size=1024, crop_size=1, balance=0.0, exclude_positives=True, augment=False
    )
    where = [_where(v) for v in np.asarray(sample(jax.random.key(2), data)[0])[:, 0, 0]]
    assert not any(mask[w] for w in where)
    assert sum(w[0] == 0 for w in where) > 150  # image 0 was drawn about 256 times


def test_static_argument_checks() -> None:
    data = to_device_data(_training_set(coords=([], [], [])))
    with pytest.raises(ValueError, match="no positive pixels"):
        sample_minibatch(
            jax.random.key(0),
            data,
            batch_size=4,
            crop_size=3,
            balance=0.5,
            exclude_positives=True,
        )
    with pytest.raises(ValueError, match="balance"):
        sample_minibatch(
            jax.random.key(0),
            data,
            batch_size=4,
            crop_size=3,
            balance=1.5,
            exclude_positives=True,
        )
    with pytest.raises(ValueError, match="batch_size"):
        sample_minibatch(
            jax.random.key(0),
            data,
            batch_size=0,
            crop_size=3,
            balance=0.0,
            exclude_positives=True,
        )
    sample = _sampler(batch_size=4, crop_size=3, balance=0.0, exclude_positives=True)
    crops, labels = sample(jax.random.key(0), data)  # no positives, balance 0: fine
    assert crops.shape == (4, 3, 3)
    assert not np.asarray(labels).any()
    assert next(iter(inspect.signature(sample_minibatch).parameters)) == "key"


# ------------------------------------------------------------------------- jit, sharding


def test_traced_once_and_deterministic() -> None:
    data = to_device_data(_training_set())
    traces = []

    def counted(key, data):
        traces.append(1)
        return sample_minibatch(
            key, data, batch_size=32, crop_size=5, balance=0.25, exclude_positives=True
        )

    sample = jax.jit(counted)
    outs = [sample(jax.random.key(k), data) for k in range(3)]
    again = sample(jax.random.key(0), data)
    assert len(traces) == 1
    np.testing.assert_array_equal(outs[0][0], again[0])
    assert not np.array_equal(outs[0][0], outs[1][0])
    # Static arguments through static_argnames trace once per value too.
    static = jax.jit(
        sample_minibatch,
        static_argnames=("batch_size", "crop_size", "balance", "exclude_positives", "augment"),
    )
    a = static(
        jax.random.key(0), data, batch_size=32, crop_size=5, balance=0.25, exclude_positives=True
    )
    np.testing.assert_array_equal(a[0], outs[0][0])


def test_sharded_over_four_devices() -> None:
    assert jax.device_count() == 4, "tests/conftest.py forces 4 host devices"
    mesh = jax.make_mesh((4,), ("data",))
    data = to_device_data(_training_set(), sharding=NamedSharding(mesh, P()))
    batch = NamedSharding(mesh, P("data"))
    sample = jax.jit(
        functools.partial(
            sample_minibatch, batch_size=64, crop_size=7, balance=0.25, exclude_positives=True
        ),
        out_shardings=(batch, batch),
    )
    crops, labels = sample(jax.random.key(9), data)
    assert crops.sharding.is_equivalent_to(batch, 3)
    assert labels.sharding.is_equivalent_to(batch, 1)
    assert len(crops.addressable_shards) == 4
    assert crops.addressable_shards[0].data.shape == (16, 7, 7)
    # The same numbers as on one device (partitionable threefry).
    single = to_device_data(_training_set(), sharding=jax.devices()[0])
    ref = jax.jit(
        functools.partial(
            sample_minibatch, batch_size=64, crop_size=7, balance=0.25, exclude_positives=True
        )
    )(jax.random.key(9), single)
    np.testing.assert_array_equal(crops, ref[0])
    np.testing.assert_array_equal(labels, ref[1])
