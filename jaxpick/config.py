"""Frozen, keyword-only configurations: what the CLI parses flags into. No JAX, no numpy.

Each command's ``main`` turns its argparse namespace into one of these straight away and makes
one library call with it; no ``argparse.Namespace`` goes past ``jaxpick.cli``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from jaxpick.errors import ConfigError


def _check_batching(batch_size: int | None, num_readers: int) -> None:
    """The settings every batch command shares: device batch size and reader threads."""
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size!r}")
    if num_readers < 1:
        raise ConfigError(f"num_readers must be >= 1, got {num_readers!r}")


def _check_precision(precision: str) -> None:
    if precision not in ("float32", "bfloat16"):
        raise ConfigError(f"precision must be float32 or bfloat16, got {precision!r}")


@dataclass(frozen=True, kw_only=True)
class ConvertConfig:
    """``jaxpick convert``: coordinate files in, one coordinate file (or a folder of them) out.

    Attributes:
      inputs: coordinate files, concatenated in order.
      output: output file or folder; ``None`` writes to standard output.
      from_format: input format name or ``"auto"`` (by extension).
      to_format: output format name or ``"auto"`` (by output extension; a folder gets ``box``
        when ``box_size > 0``, else ``json``; standard output gets the input format).
      suffix: appended to image names in per-micrograph output file names.
      threshold: keep particles with score >= threshold (particles without a score are kept).
      down_scale: coordinates are divided by this (Topaz ``-s``) ...
      up_scale: ... and multiplied by this (Topaz ``-x``), then rounded to integers.
      invert_y: flip y as ``height - 1 - y`` using the heights of the images in ``image_dir``
        (the images the *input* coordinates refer to).
      image_dir: folder of micrographs; needed for ``invert_y`` and for cryoSPARC ``.cs`` output
        (micrograph shapes). Coordinates whose image is missing there are an error, not dropped.
      image_ext: appended to image names where a format stores micrograph file names
        (RELION ``MicrographName``, cryoSPARC ``micrograph_path``).
      box_size: box size in pixels for box-based formats (EMAN ``.box``, crYOLO ``.cbox``).
      voltage, detector_pixel_size, magnification, amplitude_contrast: metadata columns added to
        STAR output when set (Topaz uses -1 for "not set"; here ``None``).
    """

    inputs: tuple[str, ...]
    output: str | None = None
    from_format: str = "auto"
    to_format: str = "auto"
    suffix: str = ""
    threshold: float = -math.inf
    down_scale: float = 1.0
    up_scale: float = 1.0
    invert_y: bool = False
    image_dir: str | None = None
    image_ext: str = ".mrc"
    box_size: int = 0
    voltage: float | None = None
    detector_pixel_size: float | None = None
    magnification: float | None = None
    amplitude_contrast: float | None = None

    def __post_init__(self) -> None:
        if not self.inputs:
            raise ConfigError("inputs: at least one coordinate file is needed")
        for name in ("down_scale", "up_scale"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ConfigError(f"{name} must be a positive number, got {value!r}")
        if self.box_size < 0:
            raise ConfigError(f"box_size must be >= 0, got {self.box_size!r}")
        if self.invert_y and self.image_dir is None:
            raise ConfigError("invert_y needs image_dir: the image heights define the flip")


@dataclass(frozen=True, kw_only=True)
class SplitConfig:
    """``jaxpick split``: one coordinate file -> one file per micrograph.

    Attributes:
      input: the coordinate file.
      output_dir: folder for ``<image_name><suffix><ext>`` files.
      format: ``"auto"`` keeps the input format; otherwise an output format name.
      suffix: appended to each image name in the file names.
      threshold: keep particles with score >= threshold.
    """

    input: str
    output_dir: str
    format: str = "auto"
    suffix: str = ""
    threshold: float = -math.inf


@dataclass(frozen=True, kw_only=True)
class DemoConfig:
    """``jaxpick demo``: the whole pipeline on a built-in simulated dataset.

    Attributes:
      output_dir: where the dataset, outputs, pictures and ``results.json`` go.
      num_micrographs: micrographs to simulate.
      size: micrograph side in pixels.
      preset: simulation difficulty (easy, medium, hard).
      seed: random seed of the whole demo.
      train_steps: parameter updates of the training stage.
      minibatch_size: crops per update.
    """

    output_dir: str = "jaxpick-demo"
    num_micrographs: int = 8
    size: int = 512
    preset: str = "medium"
    seed: int = 0
    train_steps: int = 240
    minibatch_size: int = 32

    def __post_init__(self) -> None:
        if self.num_micrographs < 2:
            raise ConfigError(
                f"num_micrographs must be >= 2 (training and held-out), got {self.num_micrographs}"
            )
        if self.train_steps < 2:
            raise ConfigError(f"train_steps must be >= 2, got {self.train_steps}")
        if self.minibatch_size < 2:
            raise ConfigError(f"minibatch_size must be >= 2, got {self.minibatch_size}")
        if self.size < 64:
            raise ConfigError(f"size must be >= 64 pixels, got {self.size}")


@dataclass(frozen=True, kw_only=True)
class PreprocessConfig:
    """``jaxpick preprocess`` / ``normalize`` / ``downsample``: micrographs in, float32 out.

    Attributes:
      inputs: micrograph files.
      destdir: output folder; outputs are ``<destdir>/<image_name>.<format>``.
      scale: Fourier-crop downsampling factor (1 = none).
      normalize: fit and apply the per-micrograph normalisation (False: downsample only).
      affine: normalise with a plain z-score instead of the two-component GMM.
      sample: fit the GMM on a random 1/sample of the pixels (1 = all pixels).
      niters: maximum EM iterations per initialisation.
      alpha, beta: Beta prior on the background weight π.
      metadata: also write ``<image_name>.metadata.json`` with the fitted parameters.
      formats: output formats, from mrc, tiff, png (jpg).
      seed: seed of the pixel subsampling (Topaz's is unseeded); each micrograph's key comes from
        this seed and its name, so results do not depend on batch composition or order.
      batch_size: micrographs per device batch; None chooses from the micrograph size.
      num_readers: reader threads (prefetch).
      overwrite: redo micrographs whose outputs exist and are complete.
      device: -1 for CPU, >= 0 for that accelerator (as Topaz's ``-d``).
    """

    inputs: tuple[str, ...]
    destdir: str
    scale: float = 1.0
    normalize: bool = True
    affine: bool = False
    sample: int = 10
    niters: int = 100
    alpha: float = 900.0
    beta: float = 1.0
    metadata: bool = False
    formats: tuple[str, ...] = ("mrc",)
    seed: int = 0
    batch_size: int | None = None
    num_readers: int = 2
    overwrite: bool = False
    device: int = -1

    def __post_init__(self) -> None:
        if not self.inputs:
            raise ConfigError("no micrographs given")
        if not (self.scale >= 1 and math.isfinite(self.scale)):
            raise ConfigError(f"scale must be >= 1, got {self.scale!r}")
        if self.sample < 1:
            raise ConfigError(f"sample must be >= 1, got {self.sample!r}")
        if self.niters < 1:
            raise ConfigError(f"niters must be >= 1, got {self.niters!r}")
        if self.alpha <= 0 or self.beta <= 0:
            raise ConfigError(f"alpha and beta must be > 0, got {self.alpha!r}, {self.beta!r}")
        unknown = set(self.formats) - {"mrc", "tiff", "tif", "png", "jpg", "jpeg"}
        if unknown or not self.formats:
            raise ConfigError(
                f"format must be a comma-separated list of mrc, tiff, png, jpg; got {self.formats}"
            )
        _check_batching(self.batch_size, self.num_readers)


EXTRACT_FORMATS = ("coord", "csv", "star", "json", "box")


@dataclass(frozen=True, kw_only=True)
class ExtractConfig:
    """``jaxpick extract``: micrographs in, scored particle coordinates out (Topaz's flags).

    Attributes:
      inputs: micrograph files (already preprocessed as the model expects), or score maps
        when ``model == "none"``.
      model: a Topaz pretrained name (resnet16 = resnet16_u64, resnet8 = resnet8_u32, ...), a
        Topaz ``.sav`` file, a jaxpick checkpoint folder, or ``"none"``.
      radius: NMS radius in pixels; None runs the radius search (needs ``targets``).
      threshold: only scores above this are picked (logits; Topaz's default -6).
      down_scale, up_scale: output coordinates are ``round(coord * up_scale / down_scale)``
        (not rounded when the factor is 1).
      patch_size: score in tiles of this side (0: whole micrographs, or tiles chosen from
        memory).
      output: a file, a folder (with ``per_micrograph``), or None for standard output.
      per_micrograph: one coordinate file per micrograph, ``<dir>/<name><suffix>.<format>``.
      suffix: appended to image names in per-micrograph file names.
      format: output format (coord, csv, star, json, box).
      box_size: box side written in box files; None: twice the NMS radius (Topaz writes 0,
        a box no program can use).
      targets: ground-truth coordinate files for validation / the radius search.
      min_radius, max_radius, step_radius: the radius search grid (inclusive of max).
      assignment_radius: matching radius for validation (default: the NMS radius).
      only_validate: evaluate only, write no picks.
      max_particles: picks per micrograph at most (None: as many as the radius allows).
      precision: ``float32`` or ``bfloat16`` (slightly different scores; for GPUs and AMX
        CPUs: on AVX2 CPUs float32 is faster).
      batch_size: micrographs per device batch (None: from memory).
      num_readers: reader threads.
      overwrite: redo micrographs whose outputs exist.
      device: -1 CPU, k accelerator k, -2 all accelerators.
    """

    inputs: tuple[str, ...]
    model: str = "resnet16"
    radius: int | None = None
    threshold: float = -6.0
    down_scale: float = 1.0
    up_scale: float = 1.0
    patch_size: int = 0
    output: str | None = None
    per_micrograph: bool = False
    suffix: str = ""
    format: str = "coord"
    box_size: int | None = None
    targets: tuple[str, ...] = ()
    min_radius: int = 5
    max_radius: int = 100
    step_radius: int = 5
    assignment_radius: float | None = None
    only_validate: bool = False
    max_particles: int | None = None
    precision: str = "float32"
    batch_size: int | None = None
    num_readers: int = 2
    overwrite: bool = False
    device: int = 0

    def __post_init__(self) -> None:
        if not self.inputs:
            raise ConfigError("no micrographs given")
        if self.radius is None and not self.targets:
            raise ConfigError("-r/--radius is required unless --targets is given")
        if self.radius is not None and self.radius < 0:
            raise ConfigError(f"radius must be >= 0, got {self.radius}")
        if self.radius is None and not (
            0 <= self.min_radius <= self.max_radius and self.step_radius > 0
        ):
            raise ConfigError(
                "the radius search needs 0 <= --min-radius <= --max-radius and --step-radius > 0"
                f" (got {self.min_radius}, {self.max_radius}, {self.step_radius})"
            )
        for name in ("down_scale", "up_scale"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ConfigError(f"{name} must be a positive number, got {value!r}")
        if self.patch_size < 0:
            raise ConfigError(f"patch_size must be >= 0, got {self.patch_size}")
        if self.format not in EXTRACT_FORMATS:
            raise ConfigError(
                f"format must be one of {', '.join(EXTRACT_FORMATS)}, got {self.format!r}"
            )
        if self.per_micrograph and self.output is None:
            raise ConfigError("--per-micrograph needs -o/--output (a folder)")
        if self.only_validate and not self.targets:
            raise ConfigError("--only-validate needs --targets")
        if self.assignment_radius is not None and self.assignment_radius <= 0:
            raise ConfigError(f"assignment_radius must be > 0, got {self.assignment_radius}")
        if self.max_particles is not None and self.max_particles < 1:
            raise ConfigError(f"max_particles must be >= 1, got {self.max_particles}")
        _check_precision(self.precision)
        _check_batching(self.batch_size, self.num_readers)

    @property
    def radii(self) -> tuple[int, ...]:
        """The NMS radii to run: ``(radius,)``, or the search grid."""
        if self.radius is not None:
            return (self.radius,)
        return tuple(range(self.min_radius, self.max_radius + 1, self.step_radius))


@dataclass(frozen=True, kw_only=True)
class SegmentConfig:
    """``jaxpick segment``: micrographs in, dense score maps (logits) out.

    Attributes:
      inputs: micrograph files.
      destdir: output folder; maps are ``<destdir>/<name>.<format>``.
      model: as in `ExtractConfig`.
      format: ``tiff`` (Topaz's) or ``mrc``; float32 either way.
      patch_size, precision, batch_size, num_readers, overwrite, device: as in `ExtractConfig`.
    """

    inputs: tuple[str, ...]
    destdir: str
    model: str = "resnet16"
    format: str = "tiff"
    patch_size: int = 0
    precision: str = "float32"
    batch_size: int | None = None
    num_readers: int = 2
    overwrite: bool = False
    device: int = 0

    def __post_init__(self) -> None:
        if not self.inputs:
            raise ConfigError("no micrographs given")
        if self.format not in ("tiff", "tif", "mrc"):
            raise ConfigError(f"format must be tiff or mrc, got {self.format!r}")
        if self.patch_size < 0:
            raise ConfigError(f"patch_size must be >= 0, got {self.patch_size}")
        _check_precision(self.precision)
        _check_batching(self.batch_size, self.num_readers)


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """``jaxpick train``: a picker trained from labelled particles and unlabelled pixels.

    Topaz's flags and defaults (spec 1.1), with its unused ones made to work (``-k``/``--fold``
    cross-validation, image folders of any supported format) and π from the true disc area.

    Attributes:
      train_images: image files, a folder of images, or a Topaz image list (``image_name path
        [source]``); images must already be preprocessed.
      train_targets: coordinate files of the labelled particles (any supported format).
      test_images, test_targets: held-out images and their particles, evaluated every epoch.
      num_particles: expected particles per micrograph (``-n``); > 0 sets π.
      pi: fraction of pixels expected positive (``--pi``), used when ``num_particles <= 0``.
      legacy_pi: compute π from ``-n`` as Topaz 0.3 does, with the (2r+1)x inflated disc area.
      radius: pixels within this radius of a labelled particle count as positives.
      method: PN, GE-binomial, GE-KL, PU, or ``package.module:function`` (a custom objective).
      slack: weight of the GE term (< 0: the method's default, 10 for GE-KL, 1 otherwise).
      autoencoder: weight of the reconstruction loss (0: no generator).
      l2: L2 penalty on the picker's parameters (gradient ``l2 * w`` added before Adam).
      learning_rate: Adam's learning rate.
      minibatch_size: crops per parameter update.
      minibatch_balance: probability that a crop is a labelled positive.
      epoch_size: parameter updates per epoch.
      num_epochs: epochs.
      pretrained: start resnet8/resnet16 with 32/64 units from Topaz's pretrained detectors
        (which have no batch norm: ``bn`` and ``dropout`` are then ignored).
      model: architecture name, or a Topaz ``.sav`` file / jaxpick checkpoint to continue from.
      units, dropout, bn, pooling, unit_scaling: the architecture (``ModelConfig``).
      ngf: generator width for the autoencoder.
      k_fold, fold, cross_validation_seed: hold out fold ``fold`` of ``k_fold`` image folds as
        the test set (k_fold <= 1: no cross-validation).
      save_prefix: checkpoints go to ``<save_prefix>_epoch<N>`` (our format, loadable by
        ``extract``); None: no checkpoints.
      resume: continue from the last complete checkpoint under ``save_prefix``.
      output: the training-curve TSV (None: standard output).
      eval_radius: NMS and matching radius of the particle-level AUPRC on the test set
        (None: ``radius``).
      seed: seed of initialisation and sampling (same seed, same model).
      device: -1 CPU, k accelerator k, -2 all local accelerators (data parallel).
    """

    train_images: tuple[str, ...]
    train_targets: tuple[str, ...]
    test_images: tuple[str, ...] = ()
    test_targets: tuple[str, ...] = ()
    num_particles: float = -1.0
    pi: float | None = None
    legacy_pi: bool = False
    radius: int = 3
    method: str = "GE-binomial"
    slack: float = -1.0
    autoencoder: float = 0.0
    l2: float = 0.0
    learning_rate: float = 2e-4
    minibatch_size: int = 256
    minibatch_balance: float = 0.0625
    epoch_size: int = 1000
    num_epochs: int = 10
    pretrained: bool = True
    model: str = "resnet8"
    units: int = 32
    dropout: float = 0.0
    bn: bool = True
    pooling: str = "none"
    unit_scaling: int = 2
    ngf: int = 32
    k_fold: int = 0
    fold: int = 0
    cross_validation_seed: int = 42
    save_prefix: str | None = None
    resume: bool = False
    output: str | None = None
    eval_radius: int | None = None
    seed: int = 0
    device: int = 0

    def __post_init__(self) -> None:
        if not self.train_images:
            raise ConfigError("--train-images: no training images given")
        if not self.train_targets:
            raise ConfigError("--train-targets: no training particle coordinates given")
        if bool(self.test_images) != bool(self.test_targets):
            raise ConfigError("--test-images and --test-targets must be given together")
        if self.num_particles <= 0 and self.pi is None:
            raise ConfigError("give -n/--num-particles (expected particles per micrograph) or --pi")
        if self.pi is not None and not 0 < self.pi < 1:
            raise ConfigError(f"--pi must be in (0, 1), got {self.pi!r}")
        if self.radius < 0:
            raise ConfigError(f"-r/--radius must be >= 0, got {self.radius}")
        if self.eval_radius is not None and self.eval_radius < 0:
            raise ConfigError(f"--eval-radius must be >= 0, got {self.eval_radius}")
        if self.autoencoder < 0:
            raise ConfigError(f"--autoencoder must be >= 0, got {self.autoencoder}")
        if self.l2 < 0:
            raise ConfigError(f"--l2 must be >= 0, got {self.l2}")
        if not self.learning_rate > 0:
            raise ConfigError(f"--learning-rate must be > 0, got {self.learning_rate}")
        if self.minibatch_size < 2:
            raise ConfigError(f"--minibatch-size must be >= 2, got {self.minibatch_size}")
        if not 0 < self.minibatch_balance < 1:
            raise ConfigError(
                f"--minibatch-balance must be in (0, 1), got {self.minibatch_balance}"
            )
        if self.epoch_size < 1 or self.num_epochs < 1:
            raise ConfigError(
                f"--epoch-size and --num-epochs must be >= 1, got {self.epoch_size}, "
                f"{self.num_epochs}"
            )
        if self.ngf < 1:
            raise ConfigError(f"--ngf must be >= 1, got {self.ngf}")
        if self.k_fold > 1:
            if not 0 <= self.fold < self.k_fold:
                raise ConfigError(f"--fold must be in [0, {self.k_fold}), got {self.fold}")
            if self.test_images:
                raise ConfigError("-k/--k-fold holds out a fold as the test set: drop --test-*")
        if self.resume and self.save_prefix is None:
            raise ConfigError("--resume needs --save-prefix (where the checkpoints are)")
