"""The in-memory particle-coordinate table, plus small text helpers the format modules share.

:class:`Coordinates` is columnar (one numpy array per column) and immutable: every method returns a
new table. Coordinates follow :mod:`jaxpick.conventions` (x = column, y = row, origin at the
top-left pixel, floats). Columns a format carries beyond name/x/y/z/score live in ``extra`` under
the format's own names (RELION labels without ``_rln``, e.g. ``"DefocusU"``; crYOLO's ``"Width"``;
cryoSPARC's ``"location/min_dist_A"``), so a writer of the same format can reproduce them.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from jaxpick import conventions
from jaxpick.errors import CoordinateFormatError
from jaxpick.io.atomic import write_text_atomic
from jaxpick.io.names import image_name as normalise_image_name

#: ``extra`` keys holding box sizes in pixels (EMAN box and crYOLO cbox columns).
BOX_SIZE_COLUMNS = ("Width", "Height", "Depth", "EstWidth", "EstHeight")

#: ``extra`` key holding the micrograph path exactly as a STAR/cs file wrote it (before the
#: image-name normalisation), so writers of those formats can reproduce it.
MICROGRAPH_PATH = "micrograph_path"


def _readonly(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def _float_column(values: npt.ArrayLike, name: str) -> np.ndarray:
    array = np.array(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"Coordinates.{name} must be 1-D, got shape {array.shape}")
    return _readonly(array)


def _str_column(values: npt.ArrayLike, name: str) -> np.ndarray:
    array = np.array(values, dtype=np.str_)
    if array.ndim != 1:
        raise ValueError(f"Coordinates.{name} must be 1-D, got shape {array.shape}")
    return _readonly(array)


@dataclass(frozen=True, eq=False)
class Coordinates:
    """A table of particle coordinates, one row per particle.

    Attributes:
      image_name: 1-D str array, the image (micrograph) each particle is on, normalised by
        :func:`jaxpick.io.names.image_name` when read from a file. A single ``str`` given to the
        constructor is broadcast to every row.
      x: float64 column coordinates (pixels).
      y: float64 row coordinates (pixels).
      z: float64 slice coordinates for tomograms, or ``None`` for 2-D picks.
      score: float64 scores, or ``None`` when the source has none. ``NaN`` marks a row without a
        score (e.g. crYOLO's ``<NA>``).
      extra: further columns by name, each an array whose first axis has one entry per row.

    All arrays are copies and read-only; use :meth:`replace` to change columns.
    """

    image_name: np.ndarray
    x: np.ndarray
    y: np.ndarray
    z: np.ndarray | None = None
    score: np.ndarray | None = None
    extra: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        x = _float_column(self.x, "x")
        n = x.shape[0]
        names = self.image_name
        if isinstance(names, str):
            names = [names] * n
        columns: dict[str, Any] = {
            "image_name": _str_column(names, "image_name"),
            "x": x,
            "y": _float_column(self.y, "y"),
            "z": None if self.z is None else _float_column(self.z, "z"),
            "score": None if self.score is None else _float_column(self.score, "score"),
        }
        for name, column in columns.items():
            if column is not None and column.shape[0] != n:
                raise ValueError(
                    f"Coordinates columns differ in length: x has {n} rows, {name} has "
                    f"{column.shape[0]}"
                )
        extra: dict[str, np.ndarray] = {}
        for key, value in dict(self.extra).items():
            array = np.array(value)
            if array.dtype == object:
                array = array.astype(np.str_)
            if array.ndim == 0 or array.shape[0] != n:
                raise ValueError(
                    f"Coordinates.extra[{key!r}] must have {n} rows, got shape {array.shape}"
                )
            extra[str(key)] = _readonly(array)
        columns["extra"] = MappingProxyType(extra)
        for name, column in columns.items():
            object.__setattr__(self, name, column)

    # ----------------------------------------------------------------------------- basics

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __repr__(self) -> str:
        parts = [f"{len(self)} rows", f"{len(self.images())} images"]
        if self.z is not None:
            parts.append("3-D")
        if self.score is not None:
            parts.append("scored")
        if self.extra:
            parts.append("extra=" + ",".join(self.extra))
        return f"Coordinates({'; '.join(parts)})"

    @property
    def is_3d(self) -> bool:
        """Whether the table has a ``z`` column."""
        return self.z is not None

    @classmethod
    def empty(cls, *, z: bool = False, score: bool = False) -> Coordinates:
        """A table with no rows (and, if asked, empty ``z``/``score`` columns)."""
        none = np.zeros(0)
        return cls(
            image_name=np.zeros(0, dtype=np.str_),
            x=none,
            y=none,
            z=none if z else None,
            score=none if score else None,
        )

    def replace(self, **changes: Any) -> Coordinates:
        """A copy with the given fields replaced (validated like the constructor)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def concat(cls, tables: Iterable[Coordinates]) -> Coordinates:
        """Concatenates tables row-wise.

        A column missing from some tables is filled there: ``z``/``score``/numeric extras with
        ``NaN``, string extras with ``""``.
        """
        tables = list(tables)
        if not tables:
            return cls.empty()
        if len(tables) == 1:
            return tables[0]

        def optional(get: Callable[[Coordinates], np.ndarray | None]) -> np.ndarray | None:
            if all(get(t) is None for t in tables):
                return None
            parts = [get(t) for t in tables]
            return np.concatenate(
                [
                    np.full(len(t), np.nan) if p is None else p
                    for t, p in zip(tables, parts, strict=True)
                ]
            )

        keys = list(dict.fromkeys(k for t in tables for k in t.extra))
        extra = {k: _concat_extra([t.extra.get(k) for t in tables], tables) for k in keys}
        return cls(
            image_name=np.concatenate([t.image_name for t in tables]),
            x=np.concatenate([t.x for t in tables]),
            y=np.concatenate([t.y for t in tables]),
            z=optional(lambda t: t.z),
            score=optional(lambda t: t.score),
            extra=extra,
        )

    def select(self, which: npt.ArrayLike) -> Coordinates:
        """Rows chosen by a boolean mask (one entry per row) or by integer indices (any order)."""
        index = np.asarray(which)
        if index.dtype == bool:
            if index.shape != (len(self),):
                raise ValueError(f"mask has shape {index.shape}, expected ({len(self)},)")
        elif index.size == 0:
            index = np.zeros(0, dtype=np.intp)
        elif not np.issubdtype(index.dtype, np.integer):
            raise TypeError(f"select() takes a boolean mask or integer indices, not {index.dtype}")

        def take(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[index]

        return Coordinates(
            image_name=self.image_name[index],
            x=self.x[index],
            y=self.y[index],
            z=take(self.z),
            score=take(self.score),
            extra={k: v[index] for k, v in self.extra.items()},
        )

    # ----------------------------------------------------------------------------- grouping

    def images(self) -> list[str]:
        """The distinct image names, in order of first appearance."""
        if len(self) == 0:
            return []
        unique, first = np.unique(self.image_name, return_index=True)
        return [str(unique[i]) for i in np.argsort(first)]

    def per_image(self) -> Iterator[tuple[str, Coordinates]]:
        """Yields ``(image_name, rows of that image)`` in order of first appearance.

        Rows keep their original order within each image.
        """
        if len(self) == 0:
            return
        unique, first, inverse = np.unique(self.image_name, return_index=True, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        groups = np.split(order, np.cumsum(np.bincount(inverse, minlength=len(unique)))[:-1])
        for k in np.argsort(first):
            yield str(unique[k]), self.select(groups[k])

    # ----------------------------------------------------------------------------- transforms

    def filter_score(self, threshold: float) -> Coordinates:
        """Keeps rows with ``score >= threshold`` (Topaz ``convert``/``split`` semantics).

        Rows without a score (no score column, or ``NaN``) are kept.
        """
        if self.score is None:
            return self
        with np.errstate(invalid="ignore"):
            keep = np.isnan(self.score) | (self.score >= threshold)
        return self if keep.all() else self.select(keep)

    def scaled(self, down: float = 1, up: float = 1) -> Coordinates:
        """Coordinates (x, y and z) scaled like Topaz: ``round(c · up / down)`` to whole pixels.

        See :func:`jaxpick.conventions.scale_coordinates` (round-half-even; no-op for factor 1).
        Box sizes kept in ``extra`` (:data:`BOX_SIZE_COLUMNS`, from box/cbox files) are scaled
        the same way so that they still fit the particles; other extra columns are unchanged.
        """
        scale = conventions.scale_coordinates
        extra = dict(self.extra)
        for key in BOX_SIZE_COLUMNS:
            if key in extra and extra[key].dtype.kind in "iuf":
                extra[key] = scale(extra[key], down, up)
        return self.replace(
            x=scale(self.x, down, up),
            y=scale(self.y, down, up),
            z=None if self.z is None else scale(self.z, down, up),
            extra=extra,
        )

    def inverted_y(self, height: float | Mapping[str, float]) -> Coordinates:
        """y mirrored with :func:`jaxpick.conventions.invert_y` (``height − 1 − y``).

        Args:
          height: the image height in pixels, or a mapping from image name to height.

        Raises:
          KeyError: if a mapping lacks one of the table's images (the message names it).
        """
        if isinstance(height, Mapping):
            missing = [name for name in self.images() if name not in height]
            if missing:
                raise KeyError(f"no image height for {missing[0]!r}")
            heights = np.array([height[str(n)] for n in self.image_name], dtype=np.float64)
        else:
            heights = np.float64(height)
        return self.replace(y=conventions.invert_y(self.y, heights))

    def with_image_names(
        self, names: str | Sequence[str] | np.ndarray | Mapping[str, str]
    ) -> Coordinates:
        """A copy with new image names.

        Args:
          names: one name for every row, one name per row, or a mapping ``old → new`` (names
            not in the mapping are kept).

        The original-path column ``extra["micrograph_path"]`` is dropped, because it no longer
        describes the renamed images.
        """
        if isinstance(names, Mapping):
            new = [names.get(str(n), str(n)) for n in self.image_name]
        elif isinstance(names, str):
            new = [names] * len(self)
        else:
            new = list(names)
        extra = {k: v for k, v in self.extra.items() if k != MICROGRAPH_PATH}
        return self.replace(image_name=np.array(new, dtype=np.str_), extra=extra)

    # ----------------------------------------------------------------------------- comparison

    def equals(
        self,
        other: Coordinates,
        *,
        atol: float = 0.0,
        check_score: bool = True,
        check_extra: bool = True,
    ) -> bool:
        """Whether two tables hold the same rows in the same order (``NaN`` equals ``NaN``).

        Args:
          other: the table to compare with.
          atol: absolute tolerance for x/y/z/score and float extras.
          check_score: compare the score columns (presence and values).
          check_extra: compare the extra columns (same keys, same values).
        """
        if len(self) != len(other) or not np.array_equal(self.image_name, other.image_name):
            return False

        def close(a: np.ndarray | None, b: np.ndarray | None) -> bool:
            if a is None or b is None:
                return a is None and b is None
            if a.shape != b.shape:
                return False
            if a.dtype.kind in "iufb" and b.dtype.kind in "iufb":
                return bool(np.allclose(a, b, rtol=0.0, atol=atol, equal_nan=True))
            return bool(np.array_equal(a, b))

        if not (close(self.x, other.x) and close(self.y, other.y) and close(self.z, other.z)):
            return False
        if check_score and not close(self.score, other.score):
            return False
        if check_extra:
            if set(self.extra) != set(other.extra):
                return False
            return all(close(self.extra[k], other.extra[k]) for k in self.extra)
        return True


def _concat_extra(parts: list[np.ndarray | None], tables: list[Coordinates]) -> np.ndarray:
    present = [p for p in parts if p is not None]
    as_text = any(p.dtype.kind in "US" for p in present)
    if as_text:
        filled = [
            np.full(len(t), "", dtype=np.str_) if p is None else p.astype(np.str_)
            for p, t in zip(parts, tables, strict=True)
        ]
        return np.concatenate(filled)
    trailing = present[0].shape[1:]
    if any(p.shape[1:] != trailing for p in present):
        raise ValueError("cannot concatenate extra columns of different shapes")
    if any(p is None for p in parts):
        filled = [
            np.full((len(t), *trailing), np.nan) if p is None else p.astype(np.float64)
            for p, t in zip(parts, tables, strict=True)
        ]
        return np.concatenate(filled)
    return np.concatenate(present)


# ================================================================================================
# Text helpers shared by the format modules.
# ================================================================================================

#: Tokens that stand for a missing number: crYOLO/pandas ``<NA>`` and an empty field.
NA_TOKENS = frozenset({"<NA>", ""})

# ASCII decimal numbers, nan and inf only: Python's float() would also accept "1_000" and
# non-ASCII digits, which no coordinate file means.
_NUMBER = re.compile(
    r"[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|nan|inf|infinity)\Z",
    re.IGNORECASE | re.ASCII,
)
_INTEGER = re.compile(r"[+-]?\d+\Z", re.ASCII)


def parse_number(token: str) -> float | None:
    """``float(token)`` for a plain decimal/``nan``/``inf`` token, ``NaN`` for ``<NA>``/empty,
    ``None`` if the token is not a number."""
    token = token.strip()
    if token in NA_TOKENS:
        return float("nan")
    if _NUMBER.match(token):
        return float(token)
    return None


def number_column(
    tokens: Sequence[str],
    *,
    path: str | os.PathLike[str],
    what: str,
    lines: Sequence[int] | None = None,
    finite: bool = False,
) -> np.ndarray:
    """Parses a column of number tokens to float64, or raises a clear error.

    Args:
      tokens: the text of each value.
      path: the file, for the error message.
      what: the column's name, for the error message.
      lines: the 1-based line number of each value, for the error message.
      finite: whether missing (``<NA>``/empty), ``nan`` and ``inf`` are errors (coordinates).

    Raises:
      CoordinateFormatError: naming the file, line and column of the first bad value.
    """
    out = np.empty(len(tokens), dtype=np.float64)
    for i, token in enumerate(tokens):
        value = parse_number(token)
        if value is None or (finite and not np.isfinite(value)):
            where = f"line {lines[i]}: " if lines is not None else f"row {i + 1}: "
            kind = "a finite number" if finite else "a number"
            raise CoordinateFormatError(path, f"{where}{what} must be {kind}, got {token!r}")
        out[i] = value
    return out


def typed_column(tokens: Sequence[str]) -> np.ndarray:
    """Turns a column of text into int64, float64 (``<NA>`` → NaN) or str, whichever fits all.

    Used for columns kept verbatim in ``extra``: all-integer columns stay integers (RELION's
    ``ClassNumber``), numeric columns become floats, anything else stays text.
    """
    tokens = [t.strip() for t in tokens]
    # At most 18 digits: fits int64, and never meets Python's limit on int() of long strings.
    if tokens and all(_INTEGER.match(t) and len(t.lstrip("+-")) <= 18 for t in tokens):
        return np.array([int(t) for t in tokens], dtype=np.int64)
    numbers = [parse_number(t) for t in tokens]
    real = any(t not in NA_TOKENS for t in tokens) or any(t == "<NA>" for t in tokens)
    if tokens and real and all(v is not None for v in numbers):
        return np.array(numbers, dtype=np.float64)
    return np.array(tokens, dtype=np.str_)


def format_number(value: float) -> str:
    """One number as text: integral values without a decimal point, others as shortest repr."""
    value = float(value)
    if np.isfinite(value) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def format_column(values: np.ndarray) -> list[str]:
    """A column as text: integers when every finite value is integral, else the shortest repr of
    every value (``1.0``, ``2.5``); ``nan``/``inf`` as such, strings unchanged, bytes decoded."""
    if values.dtype.kind in "iu":
        return [str(int(v)) for v in values]
    if values.dtype.kind == "b":
        return ["1" if v else "0" for v in values]
    if values.dtype.kind == "f":
        finite = values[np.isfinite(values)]
        if np.all(finite == np.round(finite)) and np.all(np.abs(finite) < 2**53):
            return [format_number(v) for v in values]
        # Like pandas (Topaz's writer): one float in the column, every value with a point.
        return [repr(float(v)) for v in values]
    if values.dtype.kind == "S":
        return [v.decode("utf-8", errors="replace") for v in values]
    return [str(v) for v in values]


def read_text_lines(path: str | os.PathLike[str]) -> list[str]:
    """The lines of a UTF-8 text file (BOM, CRLF and CR handled), or a clear error.

    Raises:
      CoordinateFormatError: unreadable file, invalid UTF-8, or NUL bytes (a binary file).
    """
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise CoordinateFormatError(path, f"cannot read file: {e.strerror or e}") from e
    if b"\x00" in data:
        raise CoordinateFormatError(path, "contains NUL bytes: a binary file, not a text file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise CoordinateFormatError(
            path, f"not a UTF-8 text file (invalid byte at offset {e.start})"
        ) from e
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def write_lines(path: str | os.PathLike[str], lines: Iterable[str]) -> Path:
    """Writes lines (each ending in ``\\n``) to ``path`` atomically; returns the path."""
    text = "".join(line + "\n" for line in lines)
    write_text_atomic(path, text)
    return Path(path)


def stem_image_name(
    path: str | os.PathLike[str],
    *,
    suffix: str = "",
    strip: Sequence[str] = (),
    ending: str | None = None,
) -> str:
    """The image name a per-micrograph coordinate file stands for: ``<image><suffix><ext>``.

    Args:
      path: the coordinate file.
      suffix: a suffix to remove from the stem (the ``suffix`` a writer appended).
      strip: suffixes removed when ``suffix`` is empty and the stem ends with one of them
        (RELION's default picking suffixes ``_autopick``/``_manualpick``).
      ending: the whole file-name ending to remove instead of the last extension
        (``"_info.json"`` for EMAN2).
    """
    name = Path(path).name
    if ending and name.lower().endswith(ending.lower()) and len(name) > len(ending):
        stem = name[: -len(ending)]
    else:
        stem = os.path.splitext(name)[0]
    candidates = [suffix] if suffix else list(strip)
    for end in candidates:
        if end and stem.endswith(end) and len(stem) > len(end):
            stem = stem[: -len(end)]
            break
    return normalise_image_name(stem) or stem


def per_image_path(dest: str | os.PathLike[str], name: str, ending: str) -> Path:
    """``<dest>/<name><ending>`` for per-micrograph writers, refusing names that are not plain
    file names (they would escape ``dest``)."""
    if not name or name in {".", ".."} or "/" in name or "\\" in name or "\x00" in name:
        raise CoordinateFormatError(
            dest, f"cannot write a per-image file for image name {name!r}: not a plain file name"
        )
    return Path(dest) / f"{name}{ending}"
