"""Training data: loading images and labelled particles, statistics and π, and the on-device
positive-unlabelled minibatch sampler with rotated and flipped crops (spec 3.1, 3.2).

* :mod:`jaxpick.data.targets` (numpy only): :class:`TrainingSet`, :func:`load_training_set`,
  :func:`list_images`, :func:`disc_offsets`, :func:`positive_pixels`, :func:`data_statistics`,
  :func:`format_statistics`, :func:`prior_from_particles`, :func:`split_folds`;
* :mod:`jaxpick.data.sampling` (JAX): :class:`DeviceData`, :func:`to_device_data`,
  :func:`sample_minibatch`;
* :mod:`jaxpick.data.augment` (JAX): the crop geometry of rotations and flips.

The JAX names are imported on first use, so file handling does not import JAX.
"""

from __future__ import annotations

from typing import Any

from jaxpick.data.targets import (
    DataStatistics,
    SourceStatistics,
    TrainingSet,
    data_statistics,
    disc_offsets,
    format_statistics,
    list_images,
    load_training_set,
    positive_pixels,
    prior_from_particles,
    split_folds,
)

_LAZY = {
    "DeviceData": "jaxpick.data.sampling",
    "gather_crops": "jaxpick.data.sampling",
    "sample_minibatch": "jaxpick.data.sampling",
    "to_device_data": "jaxpick.data.sampling",
}

__all__ = [
    "DataStatistics",
    "DeviceData",
    "SourceStatistics",
    "TrainingSet",
    "data_statistics",
    "disc_offsets",
    "format_statistics",
    "gather_crops",
    "list_images",
    "load_training_set",
    "positive_pixels",
    "prior_from_particles",
    "sample_minibatch",
    "split_folds",
    "to_device_data",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'jaxpick.data' has no attribute {name!r}")
