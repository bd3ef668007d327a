"""Training data on the host: images, their labelled particles, statistics and π (spec 3.1, 3.2).

:func:`load_training_set` reads the micrographs (a folder, a Topaz image list or explicit files,
any image format jaxpick reads) and the particle coordinates (any coordinate format, detected
per file), matches them by image name (`jaxpick.io.names.image_name`: no folders, no image
extension) and returns a :class:`TrainingSet`: the images as float32 arrays and, per image, the
rounded particle centres that lie inside it. Topaz's warnings are kept (targets of missing
images, coordinates out of bounds, coordinates that do not reach 70 % of the image) and the
cases where training cannot be meaningful are errors instead of an exception deep inside.

:func:`data_statistics` and :func:`format_statistics` give Topaz's table of observed positive
fractions per source, and :func:`prior_from_particles` turns ``-n`` (expected particles per
micrograph) into π with the true disc area, or Topaz 0.3's inflated one with ``legacy=True``.
:func:`split_folds` is the k-fold split that Topaz 0.3 declares but never uses.

No JAX here (numpy and :mod:`jaxpick.io` only); `jaxpick.data.sampling` moves a training set to
the device.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jaxpick.errors import ConfigError, FileFormatError
from jaxpick.io.coords import EXTENSIONS as COORDINATE_EXTENSIONS
from jaxpick.io.coords import Coordinates
from jaxpick.io.image import read_image
from jaxpick.io.names import image_name, index_images, is_image_path, unmatched_names

# Reading targets as `jaxpick precision_recall_curve` does: format detected per file, Topaz
# tables may carry '#' comment lines, and unknown extensions are read as Topaz tables.
from jaxpick.metrics import _read_all as _read_coordinate_files

__all__ = [
    "DataStatistics",
    "SourceStatistics",
    "TrainingSet",
    "data_statistics",
    "disc_offsets",
    "format_statistics",
    "list_images",
    "load_training_set",
    "positive_pixels",
    "print_to_stderr",
    "prior_from_particles",
    "split_folds",
]

#: Topaz warns when no coordinate exceeds this fraction of the image width and height.
_SCALE_CHECK_FRACTION = 0.7
#: How many names an error or warning shows before "and N more".
_SHOW = 5


def print_to_stderr(message: str) -> None:
    """The default warning sink: ``WARNING: <message>`` on standard error."""
    print(f"WARNING: {message}", file=sys.stderr)


# ------------------------------------------------------------------------------ the data


@dataclass(frozen=True)
class TrainingSet:
    """Preprocessed micrographs and the labelled particle centres inside each.

    Attributes:
      names: image names (no folders, no extension), one per image, all different.
      paths: the image files.
      images: float32 ``[H, W]`` arrays (sizes may differ between images).
      sources: source id per image (the image list's ``source`` column, else 0).
      coords: per image, int32 ``[n_i, 2]`` particle centres as ``(y, x)`` rows, rounded to the
        nearest pixel (half to even, as Topaz's pandas ``round``), only those inside the image.
      radius: pixels within this distance of a centre are positives.
    """

    names: tuple[str, ...]
    paths: tuple[str, ...]
    images: tuple[np.ndarray, ...]
    sources: tuple[int, ...]
    coords: tuple[np.ndarray, ...]
    radius: int

    def __post_init__(self) -> None:
        n = len(self.names)
        for field in ("paths", "images", "sources", "coords"):
            if len(getattr(self, field)) != n:
                raise ValueError(
                    f"TrainingSet.{field} has {len(getattr(self, field))} entries for {n} images"
                )
        if self.radius < 0:
            raise ConfigError(f"radius must be >= 0, got {self.radius}")

    def __len__(self) -> int:
        return len(self.names)

    @property
    def num_particles(self) -> int:
        """Labelled particles inside their images, over all images."""
        return int(sum(len(c) for c in self.coords))

    @property
    def total_pixels(self) -> int:
        """Pixels over all images."""
        return int(sum(image.size for image in self.images))

    def subset(self, indices: Sequence[int]) -> TrainingSet:
        """The images at ``indices`` (in that order), e.g. one side of :func:`split_folds`."""
        idx = [int(i) for i in indices]
        return TrainingSet(
            names=tuple(self.names[i] for i in idx),
            paths=tuple(self.paths[i] for i in idx),
            images=tuple(self.images[i] for i in idx),
            sources=tuple(self.sources[i] for i in idx),
            coords=tuple(self.coords[i] for i in idx),
            radius=self.radius,
        )


# ---------------------------------------------------------------------------- the images


@dataclass(frozen=True)
class _Entry:
    name: str
    path: str
    source: int | None  # None: no source given (Topaz then takes the targets' source column)


def _as_list(spec: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[str]:
    if isinstance(spec, str | os.PathLike):
        return [os.fspath(spec)]
    return [os.fspath(s) for s in spec]


def _source_ids(values: list[str]) -> list[int]:
    """Source labels as ints: their own values when all are integers, else 0, 1, ... in sorted
    order of the distinct labels (Topaz groups by the label, sorted)."""
    try:
        return [int(v) for v in values]
    except ValueError:
        order = {label: i for i, label in enumerate(sorted(set(values)))}
        return [order[v] for v in values]


def _resolve_listed(path_text: str, list_file: Path) -> str | None:
    """A path from an image list: as given (relative to the current folder, as Topaz), else
    relative to the list's folder; None when neither exists."""
    path = Path(path_text)
    if path.is_absolute() or path.exists():
        return path_text if path.exists() else None
    beside = list_file.parent / path
    return os.fspath(beside) if beside.exists() else None


def _read_image_list(path: Path) -> list[_Entry]:
    """A Topaz image list: a whitespace-separated table with header ``image_name path
    [source]`` (extra columns are ignored; blank and ``#`` lines skipped)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise FileFormatError(path, f"cannot read file: {e.strerror or e}") from e
    lines = [
        (number, line.split())
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not lines:
        raise FileFormatError(path, "empty image list (expected a header 'image_name path')")
    header = lines[0][1]
    if "image_name" not in header or "path" not in header:
        raise FileFormatError(
            path,
            "not an image file (unknown extension) nor a Topaz image list: an image list is a "
            f"table with header 'image_name path [source]', this one starts with {header!r}",
        )
    name_col, path_col = header.index("image_name"), header.index("path")
    source_col = header.index("source") if "source" in header else None
    names: list[str] = []
    paths: list[str] = []
    sources: list[str] = []
    for number, fields in lines[1:]:
        if len(fields) != len(header):
            raise FileFormatError(
                path, f"line {number}: {len(fields)} fields for {len(header)} columns {header}"
            )
        resolved = _resolve_listed(fields[path_col], path)
        if resolved is None:
            raise FileFormatError(
                path,
                f"line {number}: image {fields[path_col]!r} not found (relative paths are "
                "taken from the current folder, then from the list's folder)",
            )
        names.append(image_name(fields[name_col]))
        paths.append(resolved)
        if source_col is not None:
            sources.append(fields[source_col])
    if source_col is None:
        return [_Entry(n, p, None) for n, p in zip(names, paths, strict=True)]
    ids = _source_ids(sources)
    return [_Entry(n, p, s) for n, p, s in zip(names, paths, ids, strict=True)]


def _gather_images(spec: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[_Entry]:
    entries: list[_Entry] = []
    for text in _as_list(spec):
        path = Path(text)
        if path.is_dir():
            found = index_images(path)
            if not found:
                raise ConfigError(
                    f"{path}: no image files in this folder (jaxpick reads MRC, TIFF, PNG and "
                    "JPEG files)"
                )
            entries.extend(_Entry(name, os.fspath(p), None) for name, p in found.items())
        elif path.is_file():
            if is_image_path(path):
                entries.append(_Entry(image_name(path), text, None))
            else:
                entries.extend(_read_image_list(path))
        else:
            raise FileFormatError(path, "no such image file, folder or image list")
    seen: dict[str, str] = {}
    for entry in entries:
        if entry.name in seen and seen[entry.name] != entry.path:
            raise ConfigError(
                f"two images share the name {entry.name!r}: {seen[entry.name]} and {entry.path}; "
                "coordinates could not tell them apart"
            )
        seen[entry.name] = entry.path
    unique = {e.name: e for e in entries}  # the same file listed twice counts once
    if not unique:
        raise ConfigError(f"no images in {_describe(_as_list(spec))}")
    return list(unique.values())


def list_images(
    spec: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
) -> list[tuple[str, str, int]]:
    """The images of a training or test set, as ``(name, path, source)``.

    Args:
      spec: a folder (every image file in it: MRC, TIFF, PNG or JPEG, not recursively), a Topaz
        image list (a whitespace-separated table with header ``image_name path [source]``;
        relative paths are taken from the current folder, else from the list's folder), an
        image file, or a sequence of any of these.

    Returns:
      One entry per image in the order given (folders sorted by name). Sources are the list's
      ``source`` column (integers, or 0, 1, ... for text labels in sorted order), else 0.

    Raises:
      FileFormatError: a path that does not exist, or a malformed image list (naming the file
        and line).
      ConfigError: no images, or two images with the same name.

    Examples:
      >>> list_images([])  # doctest: +IGNORE_EXCEPTION_DETAIL
      Traceback (most recent call last):
      ConfigError: no images in (nothing)
    """
    return [(e.name, e.path, 0 if e.source is None else e.source) for e in _gather_images(spec)]


# --------------------------------------------------------------------------- the targets


def _describe(paths: Sequence[str]) -> str:
    if not paths:
        return "(nothing)"
    return paths[0] if len(paths) == 1 else f"{paths[0]} (and {len(paths) - 1} more)"


def _target_files(spec: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[str]:
    """Coordinate files; a folder stands for every coordinate file in it (per-micrograph
    formats such as ``.box`` come as folders)."""
    files: list[str] = []
    for text in _as_list(spec):
        path = Path(text)
        if path.is_dir():
            inside = sorted(
                p
                for p in path.iterdir()
                if p.is_file() and p.suffix.lower() in COORDINATE_EXTENSIONS
            )
            if not inside:
                raise ConfigError(f"{path}: no coordinate files in this folder")
            files.extend(os.fspath(p) for p in inside)
        elif path.exists():
            files.append(text)
        else:
            raise FileFormatError(path, "no such coordinate file or folder")
    if not files:
        raise ConfigError("no particle coordinate files given")
    return files


def _group_rows(names: np.ndarray) -> dict[str, np.ndarray]:
    """Row indices of each image name, in file order."""
    if len(names) == 0:
        return {}
    unique, inverse = np.unique(names, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.cumsum(np.bincount(inverse, minlength=len(unique)))[:-1]
    return {str(u): rows for u, rows in zip(unique, np.split(order, bounds), strict=True)}


def _examples(names: Sequence[str]) -> str:
    shown = ", ".join(repr(n) for n in list(names)[:_SHOW])
    more = f" and {len(names) - _SHOW} more" if len(names) > _SHOW else ""
    return shown + more


def load_training_set(
    images: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    targets: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    radius: int,
    warn: Callable[[str], None] = print_to_stderr,
) -> TrainingSet:
    """Reads images and their labelled particles for training (spec 3.1, 3.2).

    Every image is kept (those without particles supply unlabelled pixels). Particles are
    matched to images by image name, their coordinates rounded to the nearest pixel; those of
    images not in ``images`` and those whose centre lies outside its image are dropped with a
    warning, as Topaz does. Topaz's scaling check warns when no particle lies beyond 70 % of its
    image's width or height (checked over the whole set; Topaz checks each image, which fires
    on every sparsely labelled one).

    Args:
      images: see :func:`list_images`.
      targets: coordinate files in any format jaxpick reads (detected per file; unknown
        extensions are read as Topaz tables), or folders of them.
      radius: pixels within this distance of a particle centre are positives (>= 0).
      warn: called with each warning message (default: standard error).

    Returns:
      The training set.

    Raises:
      ConfigError: a negative radius, no images, no particles, no image name in common between
        images and particles (both sides are shown), or no particle left inside its image.
      FileFormatError: an unreadable image or coordinate file, a 3-D image (naming the file).
    """
    if radius < 0:
        raise ConfigError(f"-r/--radius must be >= 0, got {radius}")
    entries = _gather_images(images)
    files = _target_files(targets)
    table: Coordinates = _read_coordinate_files(files, "auto")
    if len(table) == 0:
        raise ConfigError(f"{_describe(files)}: no particle coordinates")
    names = {e.name for e in entries}
    rows_of = _group_rows(table.image_name)
    missing = sorted(n for n in rows_of if n not in names)
    if len(missing) == len(rows_of):
        raise ConfigError(
            f"no image name in {_describe(files)} matches an image of {_describe(_as_list(images))}"
            f": the coordinates name images like {_examples(missing)}; the images are named "
            f"like {_examples(sorted(names))}"
        )
    if missing:
        dropped = sum(len(rows_of[n]) for n in missing)
        warn(
            f"{dropped} particles for {len(missing)} images with no matching micrograph were "
            f"dropped: {unmatched_names(missing, names, limit=_SHOW)}"
        )

    # Topaz takes the source from the targets when the image list has none.
    target_sources = table.extra.get("source")
    xs = table.x
    ys = table.y
    out_names, out_paths, out_images, out_sources, out_coords = [], [], [], [], []
    outside: list[tuple[str, int]] = []
    reach_x = reach_y = 0.0
    for entry in entries:
        data = read_image(entry.path).data
        if data.ndim != 2:
            raise FileFormatError(
                entry.path, f"expected one 2-D micrograph, got an image of shape {data.shape}"
            )
        data = np.ascontiguousarray(data, dtype=np.float32)
        height, width = data.shape
        rows = rows_of.get(entry.name, np.zeros(0, np.int64))
        y = np.rint(ys[rows])
        x = np.rint(xs[rows])
        inside = (y >= 0) & (y < height) & (x >= 0) & (x < width)
        if not inside.all():
            outside.append((entry.name, int((~inside).sum())))
        coords = np.stack([y[inside], x[inside]], axis=1).astype(np.int32).reshape(-1, 2)
        if len(coords):
            reach_x = max(reach_x, float(coords[:, 1].max()) / width)
            reach_y = max(reach_y, float(coords[:, 0].max()) / height)
        source = entry.source
        if source is None:
            source = 0
            if target_sources is not None and len(rows):
                source = _source_ids([str(target_sources[rows[0]])])[0]
        out_names.append(entry.name)
        out_paths.append(entry.path)
        out_images.append(data)
        out_sources.append(source)
        out_coords.append(coords)

    if outside:
        count = sum(k for _, k in outside)
        where = ", ".join(f"{name} ({k})" for name, k in outside[:_SHOW])
        more = f" and {len(outside) - _SHOW} more" if len(outside) > _SHOW else ""
        warn(
            f"{count} particles out of bounds of their micrograph were dropped, in "
            f"{len(outside)} micrographs: {where}{more}. Did you scale the micrographs and "
            "particle coordinates correctly?"
        )
    result = TrainingSet(
        names=tuple(out_names),
        paths=tuple(out_paths),
        images=tuple(out_images),
        sources=tuple(out_sources),
        coords=tuple(out_coords),
        radius=int(radius),
    )
    if result.num_particles == 0:
        raise ConfigError(
            f"no particle of {_describe(files)} lies inside its micrograph: nothing to train "
            "on. Did you scale the micrographs and particle coordinates correctly?"
        )
    if reach_x < _SCALE_CHECK_FRACTION and reach_y < _SCALE_CHECK_FRACTION:
        warn(
            f"no coordinates are observed beyond {_SCALE_CHECK_FRACTION:.0%} of the micrograph "
            f"width or height (the largest reach {reach_x:.0%} of the width and {reach_y:.0%} "
            "of the height). Did you scale the micrographs and particle coordinates correctly?"
        )
    return result


# ----------------------------------------------------------------------- discs, π, stats


def disc_offsets(radius: int) -> np.ndarray:
    """Pixel offsets ``(dy, dx)`` with ``dy² + dx² <= radius²``, row-major (Topaz's order).

    Args:
      radius: the disc radius in pixels (>= 0).

    Returns:
      int32 ``[m, 2]``.

    Examples:
      >>> len(disc_offsets(3)), len(disc_offsets(0))
      (29, 1)
    """
    if radius < 0:
        raise ConfigError(f"radius must be >= 0, got {radius}")
    r = int(math.floor(radius))
    d = np.arange(-r, r + 1)
    dy, dx = np.meshgrid(d, d, indexing="ij")
    keep = dy**2 + dx**2 <= radius**2
    return np.stack([dy[keep], dx[keep]], axis=1).astype(np.int32)


def positive_pixels(radius: int, legacy: bool = False) -> int:
    """Pixels labelled positive per particle: the disc area.

    Args:
      radius: the disc radius in pixels.
      legacy: Topaz 0.3's count (``topaz.stats.pixels_given_radius``), which counts the disc
        over a (2r+1)³ grid and so is (2r+1) times the disc area in 2-D (spec 3.1 step 3).

    Examples:
      >>> positive_pixels(3), positive_pixels(3, legacy=True)
      (29, 203)
    """
    area = len(disc_offsets(radius))
    return area * (2 * int(radius) + 1) if legacy else area


@dataclass(frozen=True)
class SourceStatistics:
    """One row of Topaz's statistics table."""

    source: int
    num_images: int
    num_particles: int
    positive_pixels: int
    total_pixels: int

    @property
    def p_observed(self) -> float:
        return self.positive_pixels / self.total_pixels if self.total_pixels else 0.0


@dataclass(frozen=True)
class DataStatistics:
    """Labelled and total pixels of a training or test set (spec 3.1 steps 2-4, 6).

    Attributes:
      total_pixels: pixels over all images.
      positive_pixels: ``num_particles * pixels_per_particle`` (Topaz counts positives this
        way, not by the union of the discs).
      p_observed: ``positive_pixels / total_pixels``.
      per_source: one row per source id, in increasing order.
      num_images, num_particles: of the whole set.
      pixels_per_particle: the disc area used (:func:`positive_pixels`).
    """

    total_pixels: int
    positive_pixels: int
    p_observed: float
    per_source: tuple[SourceStatistics, ...]
    num_images: int
    num_particles: int
    pixels_per_particle: int


def data_statistics(ts: TrainingSet, *, legacy_pi: bool = False) -> DataStatistics:
    """Observed positive fractions, overall and per source.

    Args:
      ts: the training (or test) set.
      legacy_pi: count each particle with Topaz 0.3's inflated disc area (see
        :func:`positive_pixels`), as Topaz's table and its GE methods' p_observed do.

    Returns:
      The statistics. Particles are those inside their images (Topaz also counts particles
      whose centre is out of bounds here, while its sampler drops them).
    """
    per_particle = positive_pixels(ts.radius, legacy=legacy_pi)
    rows = []
    for source in sorted(set(ts.sources)):
        which = [i for i, s in enumerate(ts.sources) if s == source]
        particles = sum(len(ts.coords[i]) for i in which)
        rows.append(
            SourceStatistics(
                source=int(source),
                num_images=len(which),
                num_particles=particles,
                positive_pixels=particles * per_particle,
                total_pixels=sum(ts.images[i].size for i in which),
            )
        )
    total = ts.total_pixels
    positives = ts.num_particles * per_particle
    return DataStatistics(
        total_pixels=total,
        positive_pixels=positives,
        p_observed=positives / total if total else 0.0,
        per_source=tuple(rows),
        num_images=len(ts),
        num_particles=ts.num_particles,
        pixels_per_particle=per_particle,
    )


def format_statistics(train: DataStatistics, test: DataStatistics | None = None) -> str:
    """Topaz's statistics table, as it prints it (each line starts with ``# ``).

    ::

        # source	split	p_observed	num_positive_regions	total_regions
        # 0	train	2.90000e-03	2900	1000000

    Returns:
      The lines, tab-separated, each ending with a newline; test rows follow train rows.
    """
    lines = ["# source\tsplit\tp_observed\tnum_positive_regions\ttotal_regions"]
    for split, stats in (("train", train), ("test", test)):
        if stats is None:
            continue
        for row in stats.per_source:
            lines.append(
                f"# {row.source}\t{split}\t{row.p_observed:.5e}\t{row.positive_pixels}\t"
                f"{row.total_pixels}"
            )
    return "\n".join(lines) + "\n"


def prior_from_particles(num_particles: float, ts: TrainingSet, *, legacy: bool = False) -> float:
    """π from the expected number of particles per micrograph (Topaz's ``-n``, spec 3.1 step 5).

    ``π = P(r) · n · num_images / total_pixels`` with ``P(r)`` the disc area (Topaz 0.3's
    inflated area with ``legacy=True``).

    Args:
      num_particles: expected particles per micrograph (> 0).
      ts: the training set (its radius, image count and pixel count).
      legacy: Topaz 0.3's (2r+1)x inflated disc area.

    Returns:
      The expected fraction of positive pixels.

    Raises:
      ConfigError: ``num_particles <= 0``, or a π of 1 or more (too many particles for the
        pixels).
    """
    if not num_particles > 0:
        raise ConfigError(f"-n/--num-particles must be > 0, got {num_particles}")
    per_particle = positive_pixels(ts.radius, legacy=legacy)
    pi = per_particle * float(num_particles) * len(ts) / ts.total_pixels
    if pi >= 1:
        raise ConfigError(
            f"-n/--num-particles {num_particles} with radius {ts.radius} gives pi = {pi:.3g} "
            f"(>= 1): more positive pixels than pixels"
        )
    return pi


def split_folds(
    names: Sequence[str], k: int, fold: int, seed: int = 42
) -> tuple[list[int], list[int]]:
    """k-fold cross-validation over images: the train and test indices of fold ``fold``.

    Images are shuffled with ``seed`` (in sorted order of their names, so the split does not
    depend on the order they are listed in) and dealt into ``k`` folds of sizes differing by at
    most one; fold ``fold`` is the test set.

    Args:
      names: image names (one per image).
      k: number of folds; ``k <= 1`` means no cross-validation (all train, no test).
      fold: the held-out fold, in ``[0, k)``.
      seed: the shuffle's seed (Topaz's ``--cross-validation-seed``, default 42).

    Returns:
      ``(train, test)`` indices into ``names``, each sorted.

    Raises:
      ConfigError: ``fold`` outside ``[0, k)`` or more folds than images.

    Examples:
      >>> split_folds(["a", "b", "c"], 1, 0)
      ([0, 1, 2], [])
    """
    n = len(names)
    if k <= 1:
        return list(range(n)), []
    if not 0 <= fold < k:
        raise ConfigError(f"--fold must be in [0, {k}), got {fold}")
    if k > n:
        raise ConfigError(f"-k/--k-fold {k} is more folds than the {n} images")
    by_name = sorted(range(n), key=lambda i: (names[i], i))
    order = np.random.default_rng(seed).permutation(n)
    shuffled = [by_name[i] for i in order]
    test = sorted(int(i) for i in np.array_split(np.asarray(shuffled), k)[fold])
    held = set(test)
    return [i for i in range(n) if i not in held], test
