"""Noise2Noise training of denoisers from even/odd pairs (Topaz spec 6.3 and 6.4).

:func:`train_noise2noise` fine-tunes a pretrained denoiser (or trains a fresh one) on pairs of
images that show the same specimen with independent noise: the sums of the even and of the odd
frames of each movie, as written by motion correction, or jaxpick splits the movie stacks
itself (``movies``). Micrographs (``ndim=2``, ``jaxpick denoise -a A -b B``) and tomograms
(``ndim=3``, ``jaxpick denoise3d -a EVEN -b ODD``) share one training loop.

**Data, as Topaz.** Pairs are matched by file name (``A/x.mrc`` with ``B/x.mrc``; any image
format). Each image is standardised by its own mean and (population) standard deviation; with
``pixel_cutoff`` > 0, pixels beyond that many σ are then set to 0. 2-D: ``int(holdout * n)``
pairs are held out for validation by a seeded permutation; every epoch visits each training
pair once in a fresh random order, ``batch_size`` pairs per step, one ``crop``-square crop at
the same random place in both images, flipped along each axis with probability 1/2, rotated
by ``k * 90°`` (k uniform in 0..3), and input and target swapped with probability 1/2. 3-D:
sub-volume positions are drawn per tomogram as in cryoCARE (:func:`sample_tile_corners`),
``n_train`` for training and ``n_test`` for validation, and each cube is flipped along each
axis and rotated by a random multiple of 90° in each of the planes (0,1), (0,2), (1,2) (no
swap, as Topaz).

**Differences from Topaz, on purpose.**

- Topaz reports the loss of the *last batch* of each pass as the epoch's train and validation
  loss (its ``__epoch`` resets the running mean every batch), and picks "best" checkpoints with
  it. Here both are means over the whole pass: every batch, weighted by its number of pairs.
- Validation crops and augmentations are drawn from a key fixed per validation item, so every
  epoch is validated on the same crops and the curve measures the model, not the draw.
- Crops, flips, rotations, swaps and the epoch's order are drawn on the device inside the one
  jitted training step from ``fold_in(key, step)`` (images stay on the device; sizes may
  differ: they are zero-padded and crops stay inside each image's true shape). Same seed, same
  model; a run resumed from a checkpoint equals an uninterrupted one.
- Topaz augments its 3-D training cubes once, when the data set is built; here every epoch
  draws fresh flips and rotations. Its cryoCARE-style exclusion leaves training cubes
  overlapping validation cubes by up to half a cube; here a training centre keeps a full cube
  from every validation centre in at least one axis, so no voxel is in both. Topaz crashes
  when more positions are asked for than exist (``replace=`` is inverted); here positions are
  drawn with replacement (what Topaz does whenever it works).
- With fewer pairs than ``1 / holdout`` Topaz crashes (no validation batch); here training
  goes on without validation (the loss is reported as ``nan``; checkpoints every
  ``save_interval`` epochs).
- Checkpoints are jaxpick denoiser directories (``jaxpick denoise -m <dir>`` loads them), also
  written after the last epoch, holding the optimizer state and the curve for ``resume``.
- Several devices: each batch is sharded over them (``NamedSharding``, ``P("data")``), padded
  to a multiple of the device count with masked slots; the result equals one device's within
  float rounding.

**Optimizers** (weight decay 0, as Topaz): ``adagrad`` (PyTorch's: no initial accumulator,
``eps`` 1e-10 added to the root), ``adam`` (PyTorch's defaults) and ``sgd`` (Nesterov,
momentum 0.9).

Examples:
  >>> from jaxpick.train.denoise import Noise2NoiseConfig, train_noise2noise  # doctest: +SKIP
  >>> result = train_noise2noise(Noise2NoiseConfig(dir_a="even", dir_b="odd", num_epochs=10,
  ...                                              save_prefix="models/n2n"))  # doctest: +SKIP
  >>> result.history[-1]["val_loss"]  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TextIO

import numpy as np

from jaxpick.errors import ConfigError, FileFormatError, JaxpickError
from jaxpick.losses.denoise import CRITERIA, criterion_loss, l0_gamma

if TYPE_CHECKING:
    import jax
    import optax
    from flax import nnx

    from jaxpick.models.unet import Denoiser, DenoiserConfig

__all__ = [
    "OPTIMIZERS",
    "Noise2NoiseConfig",
    "Noise2NoiseResult",
    "PairSet",
    "augment_pair",
    "find_pairs",
    "load_pairs",
    "PairData",
    "StepPlan",
    "TrainState",
    "make_denoise_optimizer",
    "make_steps",
    "sample_tile_corners",
    "split_movie",
    "standardize",
    "train_noise2noise",
]

#: ``--optim`` values.
OPTIMIZERS = ("adagrad", "adam", "sgd")
#: Default starting models (Topaz's defaults) by dimensionality.
DEFAULT_MODEL = {2: "unet", 3: "unet-3d"}
_STATE_FOLDER = "train_state"
_HISTORY_FILE = "history.json"
_SETTINGS_FILE = "noise2noise.json"
# Topaz's 0.3 ``--arch`` names for which a network exists (fcnet2 is DenoiseNet2 = fcnn);
# unet2, unet3 and fcnet never load in Topaz.
_TOPAZ_ARCH = {"unet": "unet", "unet-small": "unet-small", "affine": "affine", "fcnet2": "fcnn"}
# Positions enumerated exactly when the valid region is at most this big (else rejection).
_ENUMERATE_LIMIT = 1 << 22


# --- configuration -------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Noise2NoiseConfig:
    """Noise2Noise training (``jaxpick denoise -a/-b``, ``jaxpick denoise3d -a/-b``).

    Attributes:
      dir_a, dir_b: the two halves: folders whose files pair up by name (``A/x.mrc`` with
        ``B/x.mrc``), or two files. 3-D: the even and odd tomograms.
      pairs: further ``(a, b)`` file pairs, named after ``a``.
      movies: movie stacks (MRC or TIFF, frames along the first axis, folders allowed) whose
        frames 0, 2, 4, ... and 1, 3, 5, ... are summed into a pair on loading (2-D only; the
        frames should be aligned, i.e. motion-corrected).
      ndim: 2 (micrographs) or 3 (tomograms).
      model: where training starts: a pretrained name (``unet``, ``unet-small``, ``fcnn``,
        ``affine``, ``unet-v0.2.1``; 3-D ``unet-3d``, ``unet-3d-10a``, ``unet-3d-20a``), a Topaz
        ``.sav`` file or a jaxpick checkpoint; ``"none"``: a freshly initialised ``arch``.
        Default: ``unet`` (2-D), ``unet-3d`` (3-D), as Topaz.
      arch: the architecture of a fresh network (``model="none"``): a pretrained name (its
        architecture) or a :class:`~jaxpick.models.unet.DenoiserConfig`. Default as ``model``.
      crop: side of the square training crops (2-D; every image must be at least this big).
      batch_size: pairs (2-D) or cubes (3-D) per step.
      num_epochs: passes over the training data.
      optim: ``adagrad``, ``adam`` or ``sgd`` (Nesterov, momentum 0.9).
      lr: learning rate.
      criteria: ``L2``, ``L1`` or ``L0`` (exponent annealed per epoch,
        :func:`~jaxpick.losses.denoise.l0_gamma`).
      holdout: fraction of the pairs held out for validation (2-D): ``int(holdout * n)``.
      pixel_cutoff: after standardising, set pixels beyond this many σ to 0 (0 = off).
      n_train, n_test: training and validation cubes per tomogram (3-D).
      patch_size: side of the training cubes (3-D).
      seed: seeds the split, the 3-D positions, a fresh network and every draw.
      save_prefix: checkpoints ``<prefix>_epoch<N>`` (none if None).
      save_interval: also save every this many epochs.
      resume: continue from the last checkpoint under ``save_prefix`` (if any).
      device: Topaz's ``-d``: -1 CPU, k >= 0 accelerator k, -2 all accelerators.
    """

    dir_a: str | None = None
    dir_b: str | None = None
    pairs: tuple[tuple[str, str], ...] = ()
    movies: tuple[str, ...] = ()
    ndim: int = 2
    model: str | None = None
    arch: str | DenoiserConfig | None = None
    crop: int = 800
    batch_size: int = 4
    num_epochs: int = 100
    optim: str = "adagrad"
    lr: float = 0.001
    criteria: str = "L2"
    holdout: float = 0.1
    pixel_cutoff: float = 0.0
    n_train: int = 1000
    n_test: int = 200
    patch_size: int = 96
    seed: int = 0
    save_prefix: str | None = None
    save_interval: int = 10
    resume: bool = False
    device: int = 0

    def __post_init__(self) -> None:
        pairs = tuple((str(a), str(b)) for a, b in self.pairs)
        object.__setattr__(self, "pairs", pairs)
        object.__setattr__(self, "movies", tuple(str(m) for m in self.movies))
        if self.ndim not in (2, 3):
            raise ConfigError(f"ndim must be 2 or 3, got {self.ndim!r}")
        if (self.dir_a is None) != (self.dir_b is None):
            given, missing = ("-a", "-b") if self.dir_b is None else ("-b", "-a")
            raise ConfigError(f"{given} was given without {missing}: training needs both halves")
        if self.dir_a is None and not self.pairs and not self.movies:
            raise ConfigError("no training data: give -a/-b (dir_a, dir_b), pairs or movies")
        if self.ndim == 3 and self.movies:
            raise ConfigError("movies: only micrographs (ndim=2) can be made from movie stacks")
        for name in ("crop", "batch_size", "num_epochs", "save_interval", "n_train", "patch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(self.n_test, bool) or not isinstance(self.n_test, int) or self.n_test < 0:
            raise ConfigError(f"n_test must be an integer >= 0, got {self.n_test!r}")
        if self.optim not in OPTIMIZERS:
            raise ConfigError(f"optim must be one of {', '.join(OPTIMIZERS)}, got {self.optim!r}")
        if self.criteria not in CRITERIA:
            raise ConfigError(
                f"criteria must be one of {', '.join(CRITERIA)}, got {self.criteria!r}"
            )
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"lr must be a positive number, got {self.lr!r}")
        if not 0 <= self.holdout < 1:
            raise ConfigError(f"holdout must be in [0, 1), got {self.holdout!r}")
        if not (self.pixel_cutoff >= 0 and math.isfinite(self.pixel_cutoff)):
            raise ConfigError(f"pixel_cutoff must be >= 0, got {self.pixel_cutoff!r}")
        if self.resume and not self.save_prefix:
            raise ConfigError("resume needs save_prefix (--save-prefix): where the checkpoints are")

    @property
    def model_name(self) -> str:
        """``model`` with its default resolved."""
        return self.model if self.model is not None else DEFAULT_MODEL[self.ndim]

    @classmethod
    def from_denoise_config(cls, config: Any, **overrides: Any) -> Noise2NoiseConfig:
        """The training settings of a ``jaxpick denoise`` :class:`~jaxpick.denoise.DenoiseConfig`.

        The starting model is ``-m`` when it names one model other than the default, else
        ``--arch`` (Topaz 0.3 always starts from ``--arch``'s pretrained weights; ``fcnet2``
        is ``fcnn``); ``-m none`` trains a fresh ``--arch`` network.

        Args:
          config: a ``DenoiseConfig`` (read by attribute).
          **overrides: further fields (``seed``, ``resume``, ``movies``, ...).

        Raises:
          ConfigError: ``--hdf`` (broken in Topaz, not supported), ``--method masked``, several
            ``-m`` models, or an ``--arch`` with no network (unet2, unet3, fcnet).
        """
        if getattr(config, "hdf", None):
            raise ConfigError(
                "--hdf: HDF5 training stacks are not supported (Topaz's reader is broken); "
                "give -a/-b folders of paired images"
            )
        method = getattr(config, "method", "noise2noise")
        if method != "noise2noise":
            raise ConfigError(f"--method {method}: only noise2noise training is available")
        arch = _TOPAZ_ARCH.get(config.arch)
        if arch is None:
            raise ConfigError(
                f"--arch {config.arch}: no such trainable network (Topaz 0.3 cannot load it "
                f"either); use one of {', '.join(_TOPAZ_ARCH)}"
            )
        models = tuple(config.models)
        if len(models) > 1:
            raise ConfigError(f"-m: training starts from one model, got {len(models)}")
        model = arch if models == ("unet",) else models[0]
        values: dict[str, Any] = {
            "dir_a": config.dir_a,
            "dir_b": config.dir_b,
            "ndim": 2,
            "model": model,
            "arch": arch,
            "crop": config.crop,
            "batch_size": config.batch_size,
            "num_epochs": config.num_epochs,
            "optim": config.optim,
            "lr": config.lr,
            "criteria": config.criteria,
            "holdout": config.holdout,
            "pixel_cutoff": config.pixel_cutoff,
            "save_prefix": config.save_prefix,
            "save_interval": config.save_interval,
            "device": config.device,
        }
        values.update(overrides)
        return cls(**values)

    @classmethod
    def from_denoise3d_config(cls, config: Any, **overrides: Any) -> Noise2NoiseConfig:
        """The training settings of a ``jaxpick denoise3d``
        :class:`~jaxpick.denoise.Denoise3dConfig`: ``-a/-b`` even/odd tomograms (files or
        folders), ``-m`` the starting model, ``-s/--patch-size`` the cube side (Topaz trains on
        ``--patch-size`` cubes; ``-c/--crop`` is unused there too).

        Raises:
          ConfigError: ``--weight-decay`` other than 0 (Topaz ignores it; we refuse).
        """
        if getattr(config, "weight_decay", 0):
            raise ConfigError("--weight-decay: not supported (Topaz accepts it and ignores it)")
        values: dict[str, Any] = {
            "dir_a": config.even_train_path,
            "dir_b": config.odd_train_path,
            "ndim": 3,
            "model": config.model,
            "n_train": config.n_train,
            "n_test": config.n_test,
            "patch_size": config.patch_size,
            "batch_size": config.batch_size,
            "num_epochs": config.num_epochs,
            "optim": config.optim,
            "lr": config.lr,
            "criteria": config.criteria,
            "save_prefix": config.save_prefix,
            "save_interval": config.save_interval,
            "device": config.device,
        }
        values.update(overrides)
        return cls(**values)


@dataclass
class Noise2NoiseResult:
    """What training produced.

    Attributes:
      model: the trained denoiser (after the last epoch).
      config: its architecture.
      history: one row per epoch: ``epoch`` (1-based, as the checkpoint names),
        ``train_loss``, ``val_loss`` (``nan`` without validation data), ``best_val_loss``,
        ``gamma`` (L0 only, else None), ``seconds``; resumed runs include the earlier rows.
      checkpoints: checkpoint directories written by this call, in order.
      train_names, val_names: the pairs (2-D) or tomograms (3-D) trained and validated on.
      best_epoch: the epoch of the lowest validation loss (None without validation).
    """

    model: Denoiser
    config: DenoiserConfig
    history: list[dict[str, Any]] = field(default_factory=list)
    checkpoints: list[Path] = field(default_factory=list)
    train_names: tuple[str, ...] = ()
    val_names: tuple[str, ...] = ()
    best_epoch: int | None = None

    @property
    def last_checkpoint(self) -> Path | None:
        """The checkpoint of the final model (written after the last epoch), if saved."""
        return self.checkpoints[-1] if self.checkpoints else None


# --- host-side data ------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class PairSet:
    """Standardised image pairs in host memory.

    Attributes:
      names: one name per pair (sorted).
      a, b: float32 arrays, each standardised by its own mean and σ (and cut off).
      sources: where each pair came from (``"a.mrc + b.mrc"`` or the movie path).
    """

    names: tuple[str, ...]
    a: tuple[np.ndarray, ...]
    b: tuple[np.ndarray, ...]
    sources: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.names)


def standardize(image: np.ndarray, *, cutoff: float = 0.0, source: str = "image") -> np.ndarray:
    """``(x - mean) / std`` (population σ, float64 statistics), float32; then, with ``cutoff``
    > 0, pixels beyond ``cutoff`` set to 0 (Topaz's ``PairedImages.load_image``).

    Raises:
      FileFormatError: a constant image (σ = 0) or non-finite values (names ``source``).
    """
    x = np.asarray(image, dtype=np.float32)
    mean = float(np.mean(x, dtype=np.float64))
    std = float(np.std(x, dtype=np.float64))
    if not (math.isfinite(mean) and math.isfinite(std)):
        raise FileFormatError(source, "contains non-finite values (NaN or infinity)")
    if std == 0:
        raise FileFormatError(source, "is constant (standard deviation 0); nothing to learn from")
    out = ((x - np.float32(mean)) / np.float32(std)).astype(np.float32)
    if cutoff > 0:
        out[np.abs(out) > cutoff] = 0
    return out


def _image_files(folder: Path) -> dict[str, Path]:
    from jaxpick.io.names import is_image_path

    return {p.name: p for p in sorted(folder.iterdir()) if p.is_file() and is_image_path(p)}


def find_pairs(
    dir_a: str | os.PathLike[str], dir_b: str | os.PathLike[str]
) -> list[tuple[str, Path, Path]]:
    """``(name, a, b)`` for every image file in ``dir_a`` and its namesake in ``dir_b``.

    Two files pair with each other. Folders pair by file name, as Topaz, every image format
    (Topaz reads only ``*.mrc``); a file of one folder without a partner in the other is an
    error rather than silently skipped.

    Raises:
      FileFormatError: a path does not exist, a file is paired with a folder, a file has no
        partner (naming it and the expected partner), or a folder has no images.
    """
    from jaxpick.io.names import image_name

    a, b = Path(dir_a), Path(dir_b)
    for path in (a, b):
        if not path.exists():
            raise FileFormatError(path, "no such file or folder")
    if a.is_file() and b.is_file():
        return [(image_name(a), a, b)]
    if a.is_dir() != b.is_dir():
        raise FileFormatError(
            b if a.is_dir() else a, "pair a folder with a folder and a file with a file"
        )
    files_a, files_b = _image_files(a), _image_files(b)
    if not files_a:
        raise FileFormatError(a, "no image files (MRC, TIFF, PNG, JPEG) in this folder")
    lonely = [(p, b / n) for n, p in files_a.items() if n not in files_b]
    lonely += [(p, a / n) for n, p in files_b.items() if n not in files_a]
    if lonely:
        path, expected = lonely[0]
        more = f" ({len(lonely) - 1} more unpaired file(s))" if len(lonely) > 1 else ""
        raise FileFormatError(path, f"has no partner: expected {expected}{more}")
    return [(image_name(n), files_a[n], files_b[n]) for n in files_a]


def _read(path: Path, ndim: int) -> np.ndarray:
    from jaxpick.io.image import read_image

    data = read_image(path).data
    if data.ndim == ndim + 1 and data.shape[0] == 1:
        data = data[0]
    if data.ndim != ndim:
        kind = {2: "a 2-D image", 3: "a 3-D volume"}[ndim]
        raise FileFormatError(path, f"has shape {data.shape}; expected {kind}")
    return np.asarray(data, dtype=np.float32)


def split_movie(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """The sums of the even (0, 2, 4, ...) and odd (1, 3, 5, ...) frames of a movie stack.

    Frames are read one at a time (MRC stacks are memory-mapped), so only the two sums are
    held. Frames should be aligned (a motion-corrected stack): the sums of unaligned frames
    are blurred.

    Args:
      path: an MRC or TIFF stack, frames along the first axis.

    Returns:
      ``(even, odd)``, float32.

    Raises:
      FileFormatError: unreadable, or not a stack of at least two frames.
    """
    from jaxpick.io.image import read_image

    data = read_image(path, mmap=True).data
    if data.ndim != 3 or data.shape[0] < 2:
        raise FileFormatError(
            path, f"has shape {data.shape}; a movie stack of at least 2 frames is needed"
        )
    sums = [np.zeros(data.shape[1:], np.float64), np.zeros(data.shape[1:], np.float64)]
    for i in range(data.shape[0]):
        sums[i % 2] += data[i]
    return sums[0].astype(np.float32), sums[1].astype(np.float32)


def _movie_files(sources: Iterable[str]) -> list[Path]:
    from jaxpick.io.names import is_image_path

    files: list[Path] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and is_image_path(p))
            if not found:
                raise FileFormatError(path, "no movie stacks (MRC, TIFF) in this folder")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise FileFormatError(path, "no such movie stack or folder")
    return files


def load_pairs(config: Noise2NoiseConfig) -> PairSet:
    """Reads, checks and standardises every training pair of ``config`` (host memory).

    Raises:
      FileFormatError: unreadable files, unpaired files, pairs of different shapes (naming
        both files), images of the wrong dimensionality or constant images.
      JaxpickError: two pairs with the same name.
    """
    from jaxpick.io.names import image_name

    jobs: list[tuple[str, Callable[[], tuple[np.ndarray, np.ndarray]], str]] = []
    listed: list[tuple[str, Path, Path]] = []
    if config.dir_a is not None and config.dir_b is not None:
        listed += find_pairs(config.dir_a, config.dir_b)
    listed += [(image_name(a), Path(a), Path(b)) for a, b in config.pairs]
    for name, a, b in listed:

        def read_pair(a: Path = a, b: Path = b) -> tuple[np.ndarray, np.ndarray]:
            x, y = _read(a, config.ndim), _read(b, config.ndim)
            if x.shape != y.shape:
                raise FileFormatError(
                    a, f"has shape {x.shape} but its partner {b} has shape {y.shape}"
                )
            return x, y

        jobs.append((name, read_pair, f"{a} + {b}"))
    for movie in _movie_files(config.movies):
        jobs.append((image_name(movie), functools.partial(split_movie, movie), str(movie)))
    seen: dict[str, str] = {}
    names, xs, ys, sources = [], [], [], []
    for name, read, source in sorted(jobs, key=lambda job: job[0]):
        if name in seen:
            raise JaxpickError(f"two training pairs are named {name!r}: {seen[name]} and {source}")
        seen[name] = source
        x, y = read()
        first, second = source.split(" + ") if " + " in source else (source, source)
        xs.append(standardize(x, cutoff=config.pixel_cutoff, source=first))
        ys.append(standardize(y, cutoff=config.pixel_cutoff, source=second))
        names.append(name)
        sources.append(source)
    return PairSet(tuple(names), tuple(xs), tuple(ys), tuple(sources))


def sample_tile_corners(
    rng: np.random.Generator,
    shape: Sequence[int],
    patch_size: int,
    n_train: int,
    n_test: int,
    *,
    source: str = "volume",
) -> tuple[np.ndarray, np.ndarray]:
    """Corners of training and validation cubes in one tomogram (cryoCARE's sampling).

    Cube centres keep half a cube from every border (a cube of side ``patch_size`` starts at
    ``centre - patch_size // 2``). Two validation centres are drawn (their y and x at least
    ``span = round(0.05 * side)`` from the border); validation cubes are centred in the boxes
    ``[v - span, v + span)`` around them (``span`` at least 1); training centres are drawn from
    the valid positions at least one cube away, in some axis, from every validation box, so
    no voxel is in a training and a validation cube. Positions are drawn uniformly with
    replacement.

    Args:
      rng: the generator (seeded by the caller).
      shape: the tomogram's ``(D, H, W)``.
      patch_size: cube side.
      n_train, n_test: how many cubes of each.
      source: the tomogram's name, for errors.

    Returns:
      int32 ``[n_train, 3]`` and ``[n_test, 3]`` cube corners ``(z, y, x)``.

    Raises:
      ConfigError: the tomogram is too small for the cube size (names ``source``).
    """
    dims = np.asarray(shape, dtype=np.int64)
    half = patch_size // 2
    lo = np.full(3, half, np.int64)
    hi = dims - (patch_size - half) + 1  # exclusive: centre + (patch - half) <= side
    if np.any(hi <= lo):
        raise ConfigError(
            f"{source}: shape {tuple(int(n) for n in dims)} is too small for training cubes of "
            f"side {patch_size} (--patch-size)"
        )
    span = np.maximum(np.round(dims * 0.1 / 2).astype(np.int64), 1)
    v_lo, v_hi = lo.copy(), hi.copy()
    v_lo[1:] = np.maximum(lo[1:], span[1:])
    v_hi[1:] = np.minimum(hi[1:], dims[1:] - span[1:])
    v_lo, v_hi = np.where(v_hi > v_lo, v_lo, lo), np.where(v_hi > v_lo, v_hi, hi)
    centres = np.stack([rng.integers(v_lo, v_hi) for _ in range(2)])
    # Validation boxes, clipped to the valid centres.
    boxes = [(np.maximum(c - span, lo), np.minimum(c + span, hi)) for c in centres]
    val_positions = np.unique(
        np.concatenate(
            [
                np.stack(
                    np.meshgrid(
                        *[np.arange(a, b) for a, b in zip(bl, bh, strict=True)], indexing="ij"
                    ),
                    -1,
                ).reshape(-1, 3)
                for bl, bh in boxes
            ]
        ),
        axis=0,
    )
    val = val_positions[rng.integers(len(val_positions), size=n_test)]
    # Training centres within a cube of a validation box in every axis are excluded.
    excluded = [(bl - patch_size + 1, bh + patch_size - 1) for bl, bh in boxes]

    def allowed(points: np.ndarray) -> np.ndarray:
        ok = np.ones(len(points), bool)
        for el, eh in excluded:
            ok &= ~np.all((points >= el) & (points < eh), axis=1)
        return ok

    extent = hi - lo
    if int(np.prod(extent)) <= _ENUMERATE_LIMIT:
        grid = np.stack(
            np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi, strict=True)], indexing="ij"), -1
        )
        candidates = grid.reshape(-1, 3)
        candidates = candidates[allowed(candidates)]
        if len(candidates) == 0:
            raise ConfigError(
                f"{source}: shape {tuple(int(n) for n in dims)} leaves no training position "
                f"for cubes of side {patch_size} once the validation regions are excluded; "
                "use a smaller --patch-size"
            )
        train = candidates[rng.integers(len(candidates), size=n_train)]
    else:
        # Rejection sampling: the two validation regions exclude a small part of a big volume.
        found: list[np.ndarray] = []
        count = 0
        for _ in range(1000):
            draw = rng.integers(lo, hi, size=(max(n_train, 1024), 3))
            keep = draw[allowed(draw)]
            found.append(keep)
            count += len(keep)
            if count >= n_train:
                break
        if count < n_train:
            raise ConfigError(
                f"{source}: too few training positions for cubes of side {patch_size}"
            )
        train = np.concatenate(found)[:n_train]
    return (train - half).astype(np.int32), (val - half).astype(np.int32)


# --- the device step -----------------------------------------------------------------------


class TrainState(NamedTuple):
    """Everything a Noise2Noise step reads and returns (a pytree of arrays)."""

    params: nnx.State
    opt_state: optax.OptState
    step: jax.Array  # int32 scalar: updates done so far


class PairData(NamedTuple):
    """The training data on the device.

    Attributes:
      a, b: float32 ``[N, *max_shape]`` standardised images (zero-padded, top-left aligned).
      shapes: int32 ``[N, ndim]`` true shapes.
      train_items, val_items: int32 ``[M, 1 + ndim]``: image index and cube corner (3-D;
        2-D crops draw their corner per step and the corner columns are 0).
    """

    a: jax.Array
    b: jax.Array
    shapes: jax.Array
    train_items: jax.Array
    val_items: jax.Array


@dataclass(frozen=True)
class StepPlan:
    """Static settings of the jitted steps (hashable: equal plans share compiled programs).

    Attributes:
      ndim: 2 or 3.
      tile: crop or cube side.
      batch_size: real items per step; padded_batch: slots per step (a multiple of the devices).
      num_items: training items per epoch; steps_per_epoch: ``ceil(num_items / batch_size)``.
      num_epochs: for the L0 schedule.
      criteria, optim, lr: the loss and optimizer.
      random_origin: draw each crop's corner per step (2-D) instead of the item's (3-D).
      swap: swap input and target with probability 1/2 (2-D).
    """

    ndim: int
    tile: int
    batch_size: int
    padded_batch: int
    num_items: int
    steps_per_epoch: int
    num_epochs: int
    criteria: str
    optim: str
    lr: float
    random_origin: bool
    swap: bool


class _AdagradState(NamedTuple):
    sum_of_squares: Any


def _torch_adagrad(learning_rate: float, eps: float = 1e-10) -> optax.GradientTransformation:
    """PyTorch's Adagrad (``initial_accumulator_value=0``, ``p -= lr * g / (sqrt(sum) + eps)``);
    optax's starts the sum at 0.1 and uses ``rsqrt(sum + eps)``."""
    import jax
    import jax.numpy as jnp
    import optax

    def init(params: Any) -> _AdagradState:
        return _AdagradState(jax.tree.map(jnp.zeros_like, params))

    def update(updates: Any, state: _AdagradState, params: Any = None) -> tuple[Any, Any]:
        del params
        sums = jax.tree.map(lambda s, g: s + g * g, state.sum_of_squares, updates)
        out = jax.tree.map(lambda g, s: -learning_rate * g / (jnp.sqrt(s) + eps), updates, sums)
        return out, _AdagradState(sums)

    return optax.GradientTransformation(init, update)  # type: ignore[arg-type]


def make_denoise_optimizer(optim: str, lr: float) -> optax.GradientTransformation:
    """Topaz's denoiser optimizers with PyTorch's numerics: ``adagrad``, ``adam``, ``sgd``
    (Nesterov, momentum 0.9); no weight decay.

    Raises:
      ConfigError: unknown ``optim``.
    """
    import optax

    if optim == "adagrad":
        return _torch_adagrad(lr)
    if optim == "adam":
        return optax.adam(lr, b1=0.9, b2=0.999, eps=1e-8)
    if optim == "sgd":
        return optax.sgd(lr, momentum=0.9, nesterov=True)
    raise ConfigError(f"optim must be one of {', '.join(OPTIMIZERS)}, got {optim!r}")


def _planes(ndim: int) -> tuple[tuple[int, int], ...]:
    return ((0, 1),) if ndim == 2 else ((0, 1), (0, 2), (1, 2))


def augment_pair(
    key: jax.Array, x: jax.Array, y: jax.Array, *, swap: bool
) -> tuple[jax.Array, jax.Array]:
    """The same random flips and rotations of two square (cubic) arrays, then maybe a swap.

    Topaz's order: a flip of each axis (probability 1/2 each), then ``rot90`` by k ~ U{0..3}
    in each plane ((0, 1) in 2-D; (0, 1), (0, 2), (1, 2) in 3-D), then (``swap``) ``x`` and
    ``y`` exchanged with probability 1/2.

    Args:
      key: the draw.
      x, y: arrays of one shape with equal sides (2-D or 3-D).
      swap: allow the swap.

    Returns:
      ``(x', y')``.
    """
    import jax
    import jax.numpy as jnp
    from jax import lax

    nd = x.ndim
    k_flip, k_rot, k_swap = jax.random.split(key, 3)
    flips = jax.random.bernoulli(k_flip, 0.5, (nd,))
    planes = _planes(nd)
    turns = jax.random.randint(k_rot, (len(planes),), 0, 4)
    pair = jnp.stack([x, y])
    for axis in range(nd):
        pair = jnp.where(flips[axis], jnp.flip(pair, axis=1 + axis), pair)
    for p, (i, j) in enumerate(planes):
        branches = [functools.partial(jnp.rot90, k=r, axes=(1 + i, 1 + j)) for r in range(4)]
        pair = lax.switch(turns[p], branches, pair)
    if swap:
        pair = jnp.where(jax.random.bernoulli(k_swap), pair[::-1], pair)
    return pair[0], pair[1]


def _draw(
    key: jax.Array, item: jax.Array, data: PairData, plan: StepPlan
) -> tuple[jax.Array, jax.Array]:
    """One training example: the tile of ``item`` (its corner, or a random one), augmented."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    k_origin, k_aug = jax.random.split(key)
    image = item[0]
    if plan.random_origin:
        room = data.shapes[image] - plan.tile + 1
        corner = jax.random.randint(k_origin, (plan.ndim,), 0, room, dtype=jnp.int32)
    else:
        corner = item[1:]
    start = (image, *(corner[i] for i in range(plan.ndim)))
    size = (1, *([plan.tile] * plan.ndim))
    x = lax.dynamic_slice(data.a, start, size)[0]
    y = lax.dynamic_slice(data.b, start, size)[0]
    return augment_pair(k_aug, x, y, swap=plan.swap)


def _per_item_loss(
    plan: StepPlan, model: Any, x: jax.Array, y: jax.Array, gamma: jax.Array
) -> jax.Array:
    pred = model(x)
    axes = tuple(range(1, 1 + plan.ndim))
    return criterion_loss(plan.criteria, pred, y, gamma=gamma, axis=axes)


@functools.lru_cache(maxsize=16)
def make_steps(
    graphdef: nnx.GraphDef[Any], plan: StepPlan, mesh: jax.sharding.Mesh
) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """The jitted ``train_step(state, data, key) -> (state, metrics)`` (state donated) and
    ``eval_step(params, data, key, indices, valid, gamma) -> loss sum`` for ``plan``.

    Cached: equal arguments give the same functions, hence the same compiled programs.

    The train step derives everything from ``state.step``: the epoch (for the order of the
    items, ``permutation(fold_in(fold_in(key, 0), epoch))``, and L0's exponent), the position
    in the epoch, and the draws of slot ``s`` from ``fold_in(fold_in(fold_in(key, 1), step),
    s)``. Validation item ``i`` always draws from ``fold_in(fold_in(key, 2), i)``.
    ``metrics``: ``loss_sum`` (per-item losses summed over the real items) and ``count``.
    """
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx
    from jax.sharding import NamedSharding, PartitionSpec

    optimizer = make_denoise_optimizer(plan.optim, plan.lr)
    replicated = NamedSharding(mesh, PartitionSpec())
    batch_sharding = NamedSharding(mesh, PartitionSpec("data")) if mesh.size > 1 else None
    draw = jax.vmap(functools.partial(_draw, plan=plan), in_axes=(0, 0, None))

    def constrain(*arrays: jax.Array) -> tuple[jax.Array, ...]:
        if batch_sharding is None:
            return arrays
        return tuple(jax.lax.with_sharding_constraint(a, batch_sharding) for a in arrays)

    def train_step(
        state: TrainState, data: PairData, key: jax.Array
    ) -> tuple[TrainState, dict[str, jax.Array]]:
        epoch = state.step // plan.steps_per_epoch
        position = state.step % plan.steps_per_epoch
        order = jax.random.permutation(
            jax.random.fold_in(jax.random.fold_in(key, 0), epoch), plan.num_items
        )
        slots = jnp.arange(plan.padded_batch, dtype=jnp.int32)
        flat = position * plan.batch_size + slots
        valid = (slots < plan.batch_size) & (flat < plan.num_items)
        items = data.train_items[order[jnp.minimum(flat, plan.num_items - 1)]]
        step_key = jax.random.fold_in(jax.random.fold_in(key, 1), state.step)
        keys = jax.vmap(functools.partial(jax.random.fold_in, step_key))(slots)
        x, y = draw(keys, items, data)
        weights = valid.astype(jnp.float32)
        x, y, weights = constrain(x, y, weights)
        gamma = jnp.asarray(l0_gamma(epoch, plan.num_epochs), jnp.float32)

        def loss_fn(params: nnx.State) -> tuple[jax.Array, jax.Array]:
            model = nnx.merge(graphdef, params, copy=True)
            per_item = _per_item_loss(plan, model, x, y, gamma)
            total = jnp.sum(per_item * weights)
            return total / jnp.sum(weights), total

        (_, total), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"loss_sum": total, "count": jnp.sum(weights)}
        return TrainState(params, opt_state, state.step + 1), metrics

    def eval_step(
        params: nnx.State,
        data: PairData,
        key: jax.Array,
        indices: jax.Array,
        valid: jax.Array,
        gamma: jax.Array,
    ) -> jax.Array:
        val_key = jax.random.fold_in(key, 2)
        keys = jax.vmap(functools.partial(jax.random.fold_in, val_key))(indices)
        x, y = draw(keys, data.val_items[indices], data)
        weights = valid.astype(jnp.float32)
        x, y, weights = constrain(x, y, weights)
        model = nnx.merge(graphdef, params, copy=True)
        return jnp.sum(_per_item_loss(plan, model, x, y, gamma) * weights)

    train = jax.jit(train_step, donate_argnums=(0,), out_shardings=replicated)
    evaluate = jax.jit(eval_step, out_shardings=replicated)
    return train, evaluate


# --- models and checkpoints ----------------------------------------------------------------


def _initial_model(config: Noise2NoiseConfig) -> tuple[Denoiser, str]:
    """The network training starts from and a description of it."""
    from flax import nnx

    from jaxpick.models.denoisers import PRETRAINED_DENOISERS, denoiser_name, resolve_denoiser
    from jaxpick.models.unet import DenoiserConfig, build_denoiser

    name = config.model_name
    if name != "none":
        model, _ = resolve_denoiser(name, ndim=config.ndim)
        return model, f"starting from {name}"
    arch = config.arch if config.arch is not None else DEFAULT_MODEL[config.ndim]
    if isinstance(arch, DenoiserConfig):
        arch_config = arch
    else:
        resolved = denoiser_name(arch)
        if resolved is None:
            raise ConfigError(
                f"arch {arch!r}: not a denoiser architecture name "
                f"({', '.join(PRETRAINED_DENOISERS)}) nor a DenoiserConfig"
            )
        arch_config = PRETRAINED_DENOISERS[resolved].config
    if arch_config.ndim != config.ndim:
        raise ConfigError(f"arch {arch!r} is {arch_config.ndim}-D; training is {config.ndim}-D")
    model = build_denoiser(arch_config, rngs=nnx.Rngs(config.seed))
    return model, f"a new {arch_config.arch} network (seed {config.seed})"


def _settings(config: Noise2NoiseConfig, names: Sequence[str]) -> dict[str, Any]:
    """What a resumed run must share with the checkpoint's run (JSON-ready)."""
    values = dataclasses.asdict(config)
    for key in ("resume", "device", "save_interval", "save_prefix"):
        values.pop(key)
    arch = config.arch
    values["arch"] = arch.to_dict() if hasattr(arch, "to_dict") else arch  # type: ignore[union-attr]
    values["model"] = config.model_name
    values["pairs"] = [list(p) for p in config.pairs]
    values["movies"] = list(config.movies)
    values["data"] = list(names)
    return json.loads(json.dumps(values))


def _latest_checkpoint(prefix: str) -> tuple[int, Path] | None:
    parent = Path(prefix).parent
    pattern = re.compile(re.escape(Path(prefix).name) + r"_epoch(\d+)$")
    found = []
    if parent.is_dir():
        for entry in parent.iterdir():
            m = pattern.match(entry.name)
            if m and (entry / _STATE_FOLDER).is_dir() and (entry / _SETTINGS_FILE).is_file():
                found.append((int(m.group(1)), entry))
    return max(found) if found else None


def _save_checkpoint(
    where: Path,
    model: Denoiser,
    state: TrainState,
    *,
    history: list[dict[str, Any]],
    settings: dict[str, Any],
    provenance: dict[str, Any],
) -> Path:
    """A denoiser checkpoint (``save_denoiser``) plus the training state, written into a
    temporary sibling and renamed into place when complete."""
    import orbax.checkpoint as ocp

    from jaxpick.checkpoint import state_to_arrays
    from jaxpick.io.atomic import TEMP_PREFIX
    from jaxpick.models.denoisers import save_denoiser

    final = where.absolute()
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{final.name}-", dir=final.parent))
    try:
        inner = save_denoiser(tmp / final.name, model, provenance=provenance)
        checkpointer = ocp.StandardCheckpointer()
        try:
            checkpointer.save(inner / _STATE_FOLDER, state_to_arrays(state))
            checkpointer.wait_until_finished()
        finally:
            checkpointer.close()
        (inner / _HISTORY_FILE).write_text(json.dumps(history, indent=1) + "\n", encoding="utf-8")
        (inner / _SETTINGS_FILE).write_text(json.dumps(settings, indent=1) + "\n", encoding="utf-8")
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{final.name}-old-", dir=final.parent))
            os.replace(final, old / final.name)
            os.replace(inner, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(inner, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


# --- the loop ------------------------------------------------------------------------------


def _pad_stack(arrays: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    shapes = np.array([a.shape for a in arrays], dtype=np.int32)
    out = np.zeros((len(arrays), *shapes.max(axis=0)), np.float32)
    for i, a in enumerate(arrays):
        out[(i, *(slice(0, n) for n in a.shape))] = a
    return out, shapes


def _items(images: Sequence[int], corners: Sequence[np.ndarray] | None, ndim: int) -> np.ndarray:
    if corners is None:
        table = np.zeros((len(images), 1 + ndim), np.int32)
        table[:, 0] = images
        return table
    rows = [
        np.concatenate([np.full((len(c), 1), i, np.int32), c], axis=1)
        for i, c in zip(images, corners, strict=True)
    ]
    return np.concatenate(rows).astype(np.int32) if rows else np.zeros((0, 1 + ndim), np.int32)


class _Split(NamedTuple):
    train_items: np.ndarray
    val_items: np.ndarray
    train_names: tuple[str, ...]
    val_names: tuple[str, ...]


def _split(config: Noise2NoiseConfig, pairs: PairSet) -> _Split:
    """2-D: ``int(holdout * n)`` pairs for validation by a seeded permutation (every image at
    least ``crop``); 3-D: training and validation cubes of every tomogram."""
    nd = config.ndim
    if nd == 3:
        rng = np.random.default_rng(config.seed)
        train_corners, val_corners = [], []
        for name, a in zip(pairs.names, pairs.a, strict=True):
            t, v = sample_tile_corners(
                rng, a.shape, config.patch_size, config.n_train, config.n_test, source=name
            )
            train_corners.append(t)
            val_corners.append(v)
        every = list(range(len(pairs)))
        return _Split(
            _items(every, train_corners, nd),
            _items(every, val_corners, nd),
            pairs.names,
            pairs.names,
        )
    small = [
        (name, a.shape)
        for name, a in zip(pairs.names, pairs.a, strict=True)
        if min(a.shape) < config.crop
    ]
    if small:
        name, shape = small[0]
        raise ConfigError(
            f"-c/--crop {config.crop} is larger than image {name!r} of shape {shape}"
            + (f" (and {len(small) - 1} more)" if len(small) > 1 else "")
        )
    n_val = int(config.holdout * len(pairs))
    order = np.random.default_rng(config.seed).permutation(len(pairs))
    val_images, train_images = sorted(order[:n_val]), sorted(order[n_val:])
    if not train_images:
        raise ConfigError(f"holdout {config.holdout}: no training pair left of {len(pairs)}")
    return _Split(
        _items(train_images, None, nd),
        _items(val_images, None, nd),
        tuple(pairs.names[i] for i in train_images),
        tuple(pairs.names[i] for i in val_images),
    )


def _fmt(value: float) -> str:
    return "nan" if math.isnan(value) else str(round(value, 5))


def train_noise2noise(
    config: Noise2NoiseConfig,
    *,
    progress: bool = True,
    log: TextIO | None = None,
    devices: Sequence[Any] | None = None,
) -> Noise2NoiseResult:
    """Trains a denoiser with Noise2Noise (see the module docstring).

    Prints Topaz's per-epoch line ``# [e/num_epochs]\\ttrain\\tval\\tbest`` (0-based ``e``,
    means over the whole pass) and ``#`` messages to ``log``.

    Args:
      config: the settings.
      progress: a progress bar per epoch (standard error).
      log: where messages and the per-epoch lines go (default: standard error).
      devices: devices to train on (default: from ``config.device``); several shard each batch.

    Returns:
      A :class:`Noise2NoiseResult`.

    Raises:
      ConfigError: settings that cannot train (crop larger than an image, no training pair,
        a model of the wrong dimensionality, a resume with other settings, ...).
      FileFormatError: unreadable or unpaired files, or a damaged checkpoint.
    """
    import jax
    import jax.numpy as jnp
    from flax import nnx
    from jax.sharding import Mesh, NamedSharding, PartitionSpec
    from tqdm.auto import tqdm

    from jaxpick.checkpoint import arrays_to_state, load_arrays
    from jaxpick.devices import select_devices
    from jaxpick.models.denoisers import load_denoiser
    from jaxpick.train.loop import checkpoint_path

    out = log if log is not None else sys.stderr

    def say(message: str) -> None:
        print(f"# {message}", file=out, flush=True)

    nd = config.ndim
    pairs = load_pairs(config)
    if len(pairs) == 0:
        raise ConfigError("no training pairs found")

    # ---- the split
    split = _split(config, pairs)
    train_items, val_items = split.train_items, split.val_items
    if nd == 2:
        say(f"training with {len(split.train_names)} image pairs")
        say(f"validating on {len(split.val_names)} image pairs")
    else:
        say(f"training on {len(train_items)} cubes of {len(pairs)} tomogram pair(s)")
        say(f"validating on {len(val_items)} cubes")
    if len(val_items) == 0:
        say("no validation data: losses are reported as nan; checkpoints every save_interval")

    # ---- the model
    settings = _settings(config, pairs.names)
    start_epoch, history, resumed_from = 0, [], None
    if config.resume:
        assert config.save_prefix is not None
        latest = _latest_checkpoint(config.save_prefix)
        if latest is None:
            say(f"resume: no checkpoint under {config.save_prefix}_epoch*; starting afresh")
        else:
            start_epoch, resumed_from = latest
            saved = json.loads((resumed_from / _SETTINGS_FILE).read_text(encoding="utf-8"))
            changed = sorted(
                k for k in set(saved) | set(settings) if saved.get(k) != settings.get(k)
            )
            if changed:
                raise ConfigError(
                    f"resume: {resumed_from} was trained with other settings ({', '.join(changed)})"
                )
    if resumed_from is not None:
        model, _ = load_denoiser(resumed_from)
        description = f"resuming after epoch {start_epoch} from {resumed_from}"
    else:
        model, description = _initial_model(config)
    if model.config.ndim != nd:
        raise ConfigError(
            f"model {config.model_name!r} is {model.config.ndim}-D, training is {nd}-D"
        )
    tile = config.crop if nd == 2 else config.patch_size
    if tile < model.config.multiple:
        what = "-c/--crop" if nd == 2 else "--patch-size"
        raise ConfigError(
            f"{what} {tile} is smaller than {model.config.multiple}, the smallest side this "
            f"{model.config.depth}-level U-Net can pool"
        )
    say(f"model: {description}")

    # ---- devices, data, state
    devices = list(devices) if devices is not None else select_devices(config.device)
    mesh = Mesh(np.array(devices), ("data",))
    replicated = NamedSharding(mesh, PartitionSpec())
    batch = config.batch_size
    plan = StepPlan(
        ndim=nd,
        tile=tile,
        batch_size=batch,
        padded_batch=-(-batch // len(devices)) * len(devices),
        num_items=len(train_items),
        steps_per_epoch=-(-len(train_items) // batch),
        num_epochs=config.num_epochs,
        criteria=config.criteria,
        optim=config.optim,
        lr=float(config.lr),
        random_origin=nd == 2,
        swap=nd == 2,
    )
    a, shapes = _pad_stack(pairs.a)
    b, _ = _pad_stack(pairs.b)
    data = PairData(
        *(jax.device_put(x, replicated) for x in (a, b, shapes, train_items, val_items))
    )
    del a, b
    graphdef, params = nnx.split(model, nnx.Param)
    optimizer = make_denoise_optimizer(config.optim, config.lr)
    state = TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32))
    if resumed_from is not None:
        state = arrays_to_state(state, load_arrays(resumed_from, _STATE_FOLDER), resumed_from)
        history = json.loads((resumed_from / _HISTORY_FILE).read_text(encoding="utf-8"))
    state = jax.device_put(state, replicated)
    key = jax.device_put(jax.random.key(config.seed), replicated)
    train_step, eval_step = make_steps(graphdef, plan, mesh)

    # Validation batches, fixed: item indices padded to the slot count, with a mask.
    n_val = len(val_items)
    val_batches = []
    for start in range(0, n_val, batch):
        idx = np.arange(start, start + plan.padded_batch)
        valid = idx < min(start + batch, n_val)
        val_batches.append(
            (
                jax.device_put(np.minimum(idx, n_val - 1).astype(np.int32), replicated),
                jax.device_put(valid, replicated),
            )
        )

    result = Noise2NoiseResult(
        model=model,
        config=model.config,
        train_names=split.train_names,
        val_names=split.val_names,
    )
    best = min((r["val_loss"] for r in history if not math.isnan(r["val_loss"])), default=math.inf)
    provenance_base = {"trained_by": "jaxpick noise2noise", "criteria": config.criteria}
    for epoch in range(start_epoch, config.num_epochs):
        started = time.perf_counter()
        gamma = l0_gamma(epoch, config.num_epochs)
        pending = []
        bar = tqdm(
            total=plan.steps_per_epoch,
            desc=f"epoch {epoch + 1}/{config.num_epochs}",
            unit="step",
            disable=not progress,
            leave=False,
            file=sys.stderr,
        )
        try:
            for _ in range(plan.steps_per_epoch):
                state, metrics = train_step(state, data, key)
                pending.append(metrics)
                bar.update(1)
        finally:
            bar.close()
        sums = jax.device_get(pending)
        train_loss = float(sum(float(m["loss_sum"]) for m in sums)) / len(train_items)
        val_loss = math.nan
        if n_val:
            gamma_array = jax.device_put(jnp.float32(gamma), replicated)
            totals = [
                eval_step(state.params, data, key, idx, valid, gamma_array)
                for idx, valid in val_batches
            ]
            val_loss = float(sum(float(t) for t in jax.device_get(totals))) / n_val
        improved = val_loss < best
        if improved:
            best = val_loss
        history.append(
            {
                "epoch": epoch + 1,
                "train_loss": train_loss,
                "val_loss": val_loss,
                "best_val_loss": best if math.isfinite(best) else math.nan,
                "gamma": float(gamma) if config.criteria == "L0" else None,
                "seconds": time.perf_counter() - started,
            }
        )
        print(
            "\t".join(
                [
                    f"# [{epoch}/{config.num_epochs}]",
                    _fmt(train_loss),
                    _fmt(val_loss),
                    _fmt(best if math.isfinite(best) else math.nan),
                ]
            ),
            file=out,
            flush=True,
        )
        last = epoch + 1 == config.num_epochs
        if config.save_prefix is not None and (
            improved or (epoch + 1) % config.save_interval == 0 or last
        ):
            current = nnx.merge(graphdef, jax.device_get(state.params))
            where = checkpoint_path(config.save_prefix, epoch + 1, config.num_epochs)
            _save_checkpoint(
                where,
                current,
                state,
                history=history,
                settings=settings,
                provenance={**provenance_base, "epoch": epoch + 1, "val_loss": val_loss},
            )
            result.checkpoints.append(where)
    result.model = nnx.merge(graphdef, jax.device_get(state.params))
    result.history = history
    finite = [r for r in history if not math.isnan(r["val_loss"])]
    result.best_epoch = min(finite, key=lambda r: r["val_loss"])["epoch"] if finite else None
    return result
