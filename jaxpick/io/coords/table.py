"""The in-memory particle-coordinate table, plus small text helpers the format modules share.

:class:`Coordinates` is columnar (one numpy array per column) and immutable: every method returns a
new table. Coordinates follow :mod:`jaxpick.conventions` (x = column, y = row, origin at the
top-left pixel, floats). Columns a format carries beyond name/x/y/z/score live in ``extra`` under
the format's own names (RELION labels without ``_rln``, e.g. ``"DefocusU"``; crYOLO's ``"Width"``;
cryoSPARC's ``"location/min_dist_A"``), so a writer of the same format can reproduce them.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import compress
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from jaxpick import conventions
from jaxpick.errors import CoordinateFormatError
from jaxpick.io.atomic import write_text_atomic
from jaxpick.io.coords._tokens import (
    PackedTokens,
    Parsed,
    pack_strings,
    parse_many,
    parse_numbers,
)
from jaxpick.io.names import image_name as normalise_image_name

#: ``extra`` keys holding box sizes in pixels (EMAN box and crYOLO cbox columns).
BOX_SIZE_COLUMNS = ("Width", "Height", "Depth", "EstWidth", "EstHeight")

#: ``extra`` key holding the micrograph path exactly as a STAR/cs file wrote it (before the
#: image-name normalisation), so writers of those formats can reproduce it.
MICROGRAPH_PATH = "micrograph_path"


def _readonly(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def _float_column(values: npt.ArrayLike, name: str, copy: bool = True) -> np.ndarray:
    array = np.array(values, dtype=np.float64) if copy else np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"Coordinates.{name} must be 1-D, got shape {array.shape}")
    return _readonly(array)


def _str_column(values: npt.ArrayLike, name: str, copy: bool = True) -> np.ndarray:
    array = np.array(values, dtype=np.str_) if copy else np.asarray(values, dtype=np.str_)
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
        self._take_columns(copy=True)

    @classmethod
    def _adopt(
        cls,
        image_name: str | np.ndarray,
        x: np.ndarray,
        y: np.ndarray,
        z: np.ndarray | None = None,
        score: np.ndarray | None = None,
        extra: Mapping[str, np.ndarray] | None = None,
    ) -> Coordinates:
        """Like the constructor, but takes over the arrays instead of copying them (they are
        made read-only): for readers, whose arrays are new and referenced nowhere else."""
        table = object.__new__(cls)
        fields = {"image_name": image_name, "x": x, "y": y, "z": z, "score": score}
        for name, value in fields.items():
            object.__setattr__(table, name, value)
        object.__setattr__(table, "extra", {} if extra is None else extra)
        table._take_columns(copy=False)
        return table

    def _take_columns(self, *, copy: bool) -> None:
        x = _float_column(self.x, "x", copy)
        n = x.shape[0]
        names = self.image_name
        if isinstance(names, str):
            names = [names] * n
        columns: dict[str, Any] = {
            "image_name": _str_column(names, "image_name", copy),
            "x": x,
            "y": _float_column(self.y, "y", copy),
            "z": None if self.z is None else _float_column(self.z, "z", copy),
            "score": None if self.score is None else _float_column(self.score, "score", copy),
        }
        for name, column in columns.items():
            if column is not None and column.shape[0] != n:
                raise ValueError(
                    f"Coordinates columns differ in length: x has {n} rows, {name} has "
                    f"{column.shape[0]}"
                )
        extra: dict[str, np.ndarray] = {}
        for key, value in dict(self.extra).items():
            array = np.array(value) if copy else np.asarray(value)
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


#: Below this many values the per-value code is faster than setting up the bulk parser.
_BULK_MIN = 16

Tokens = Sequence[str] | PackedTokens


def _packed(tokens: Tokens) -> PackedTokens | None:
    """The tokens packed for the bulk parser, or ``None`` (few values, or not plain ASCII)."""
    if isinstance(tokens, PackedTokens):
        return tokens
    if len(tokens) < _BULK_MIN:
        return None
    return pack_strings(list(tokens))


def _text(tokens: Tokens, i: int) -> str:
    return tokens.text(i) if isinstance(tokens, PackedTokens) else tokens[i]


def token_list(tokens: Tokens) -> list[str]:
    """The tokens as a list of strings."""
    return tokens.texts() if isinstance(tokens, PackedTokens) else list(tokens)


def text_array(tokens: Tokens) -> np.ndarray:
    """The tokens as a ``str_`` array, unchanged (no stripping)."""
    if isinstance(tokens, PackedTokens):
        return tokens.array()
    return np.array(list(tokens), dtype=np.str_)


def _looks_numeric(tokens: Tokens) -> bool:
    """Whether the first values are all numbers (a text column shows itself there)."""
    return all(parse_number(_text(tokens, i)) is not None for i in range(min(len(tokens), 16)))


def parse_columns(columns: Sequence[Tokens]) -> list[Parsed | None]:
    """The bulk parse of the packed columns that look numeric (``None`` for the others), the
    columns of one loop together: one pass over the text rather than one per column.

    Hand each result to :func:`number_column` or :func:`typed_column`, which take it over.
    """
    out: list[Parsed | None] = [None] * len(columns)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, column in enumerate(columns):
        if isinstance(column, PackedTokens) and len(column) and _looks_numeric(column):
            groups.setdefault((id(column.buffer), len(column)), []).append(i)
    for members in groups.values():
        packed: list[PackedTokens] = [columns[i] for i in members]  # type: ignore[misc]
        for i, result in zip(members, parse_many(packed), strict=True):
            out[i] = result
    return out


def number_column(
    tokens: Tokens,
    *,
    path: str | os.PathLike[str],
    what: str,
    lines: Sequence[int] | np.ndarray | None = None,
    finite: bool = False,
    parsed: Parsed | None = None,
) -> np.ndarray:
    """Parses a column of number tokens to float64, or raises a clear error.

    Args:
      tokens: the text of each value (a sequence of strings or packed tokens).
      path: the file, for the error message.
      what: the column's name, for the error message.
      lines: the 1-based line number of each value, for the error message.
      finite: whether missing (``<NA>``/empty), ``nan`` and ``inf`` are errors (coordinates).
      parsed: the tokens' :func:`parse_columns` result, if already known (taken over).

    Raises:
      CoordinateFormatError: naming the file, line and column of the first bad value.
    """
    if parsed is None and (packed := _packed(tokens)) is not None:
        parsed = parse_numbers(packed)
    if parsed is None:
        out = np.empty(len(tokens), dtype=np.float64)
        todo = np.arange(len(tokens))
        texts = list(tokens)
        values = [parse_number(t) for t in texts]
    else:
        out, claimed, _ = parsed
        todo = np.flatnonzero(~claimed)  # claimed values are always finite
        texts, values = _parse_rest(tokens, todo)
    for i, token, value in zip(todo.tolist(), texts, values, strict=True):
        if value is None or (finite and not math.isfinite(value)):
            where = f"line {lines[i]}: " if lines is not None else f"row {i + 1}: "
            kind = "a finite number" if finite else "a number"
            raise CoordinateFormatError(path, f"{where}{what} must be {kind}, got {token!r}")
    out[todo] = values
    return out


def _parse_rest(tokens: Tokens, index: np.ndarray) -> tuple[list[str], list[float | None]]:
    """:func:`parse_number` of the tokens at ``index``, which the bulk parser left (tokens it
    could pack, so ASCII)."""
    if isinstance(tokens, PackedTokens):
        texts = PackedTokens(
            tokens.buffer, tokens.starts[index], tokens.ends[index], split=tokens.split
        ).texts()
    else:
        texts = [tokens[i] for i in index.tolist()]
    values: list[float | None] = []
    for text in texts:
        # For ASCII, float() accepts exactly what parse_number() does, and also "1_000".
        if "_" not in text:
            try:
                values.append(float(text))
                continue
            except ValueError:
                pass
        values.append(parse_number(text))
    return texts, values


def _is_int64_text(token: str) -> bool:
    # At most 18 digits: fits int64, and never meets Python's limit on int() of long strings.
    return bool(_INTEGER.match(token)) and len(token.lstrip("+-")) <= 18


def typed_column(tokens: Tokens, parsed: Parsed | None = None) -> np.ndarray:
    """Turns a column of text into int64, float64 (``<NA>`` → NaN) or str, whichever fits all.

    Used for columns kept verbatim in ``extra``: all-integer columns stay integers (RELION's
    ``ClassNumber``), numeric columns become floats, anything else stays text (stripped).
    ``parsed`` is the tokens' :func:`parse_columns` result, if already known (taken over).
    """
    n = len(tokens)
    packed = _packed(tokens) if n else None
    if packed is None:
        stripped = [t.strip() for t in tokens]
        if stripped and all(_is_int64_text(t) for t in stripped):
            return np.array([int(t) for t in stripped], dtype=np.int64)
        numbers = []
        for t in stripped:
            value = parse_number(t)
            if value is None:
                return np.array(stripped, dtype=np.str_)
            numbers.append(value)
        if any(t != "" for t in stripped):  # not all empty (<NA> counts as a value)
            return np.array(numbers, dtype=np.float64)
        return np.array(stripped, dtype=np.str_)

    def as_text() -> np.ndarray:
        if packed.split:  # no whitespace to strip
            return packed.array()
        return np.array([t.strip() for t in token_list(tokens)], dtype=np.str_)

    if parsed is None:
        if not _looks_numeric(tokens):
            return as_text()
        parsed = parse_numbers(packed)
    floats, float_claimed, int_claimed = parsed
    todo = np.flatnonzero(~int_claimed)
    if all(_is_int64_text(_text(tokens, i).strip()) for i in todo[:1].tolist()):
        texts = [t.strip() for t in _parse_rest(tokens, todo)[0]] if len(todo) else []
        if all(_is_int64_text(t) for t in texts):
            with np.errstate(invalid="ignore", over="ignore"):  # unclaimed slots are set below
                ints = floats.astype(np.int64)  # exact: claimed integers are at most 2^53
            ints[todo] = [int(t) for t in texts]
            return ints
    todo = np.flatnonzero(~float_claimed)
    texts, values = _parse_rest(tokens, todo)
    if any(v is None for v in values):
        return as_text()
    if n and len(texts) == n and all(t.strip() == "" for t in texts):
        return as_text()  # all empty: nothing to call a number (<NA> counts as a value)
    floats[todo] = values
    return floats


def map_unique(values: Tokens | np.ndarray, function: Callable[[str], str]) -> np.ndarray:
    """``[function(v) for v in values]`` as a ``str_`` array, calling ``function`` once per
    distinct value (image names repeat for every particle on a micrograph)."""
    if isinstance(values, PackedTokens):
        values = values.bytes_array()
    if isinstance(values, np.ndarray):
        if len(values) == 0:
            return np.zeros(0, dtype=np.str_)
        # Particle files list a micrograph's particles together: map runs of equal values.
        first = np.flatnonzero(np.concatenate(([True], values[1:] != values[:-1])))
        runs = values[first].tolist()
        if values.dtype.kind == "S":
            runs = [v.decode("ascii") for v in runs]
        cache: dict[str, str] = {}
        mapped = [cache[v] if v in cache else cache.setdefault(v, function(v)) for v in runs]
        return np.repeat(np.array(mapped, dtype=np.str_), np.diff(np.append(first, len(values))))
    table = {v: function(v) for v in dict.fromkeys(values)}
    return np.array(list(map(table.__getitem__, values)), dtype=np.str_)


def format_number(value: float) -> str:
    """One number as text: integral values without a decimal point, others as shortest repr."""
    value = float(value)
    if np.isfinite(value) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def format_column(values: np.ndarray) -> list[str]:
    """A column as text: integers when every finite value is integral, else the shortest repr of
    every value (``1.0``, ``2.5``); ``nan``/``inf`` as such, strings unchanged, bytes decoded."""
    kind = values.dtype.kind
    # Particle columns repeat values (per-micrograph defocus, optics groups...): format each
    # distinct value once. np.unique would merge -0.0 with 0.0, which print apart.
    if (
        kind in "iuf"
        and len(values) > _FORMAT_DISTINCT_MIN
        and len(np.unique(values[:: len(values) // 512])) < 256  # a sample repeats
        and (kind != "f" or not np.signbit(values[values == 0]).any())
    ):
        distinct, inverse = np.unique(values, return_inverse=True)
        if 2 * len(distinct) < len(values):
            texts = np.array(format_column(distinct), dtype=object)
            return texts[inverse.reshape(-1)].tolist()
    if kind in "iu":
        return list(map(str, values.tolist()))
    if kind == "b":
        return ["1" if v else "0" for v in values.tolist()]
    if kind == "f":
        finite_mask = np.isfinite(values)
        finite = values[finite_mask]
        if np.all(finite == np.round(finite)) and np.all(np.abs(finite) < 2**53):
            # format_number of each value: str(int(v)) when finite, repr otherwise.
            whole = np.where(finite_mask, values, 0).astype(np.int64)
            out = list(map(str, whole.tolist()))
            for i in np.flatnonzero(~finite_mask).tolist():
                out[i] = repr(float(values[i]))
            return out
        # Like pandas (Topaz's writer): one float in the column, every value with a point.
        return list(map(repr, values.astype(np.float64).tolist()))
    if kind == "S":
        return [v.decode("utf-8", errors="replace") for v in values]
    if kind == "U":
        return values.tolist()
    return [str(v) for v in values]


_FORMAT_DISTINCT_MIN = 1024


def read_text(path: str | os.PathLike[str]) -> str:
    """The text of a UTF-8 file with ``\\n`` line ends (BOM, CRLF and CR handled), or a clear
    error.

    Raises:
      CoordinateFormatError: unreadable file, invalid UTF-8, or NUL bytes (a binary file).
    """
    return decode_text(read_bytes(path), path)


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    """The bytes of a text file (see :func:`decode_text`).

    Raises:
      CoordinateFormatError: unreadable file, or NUL bytes (a binary file).
    """
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise CoordinateFormatError(path, f"cannot read file: {e.strerror or e}") from e
    if b"\x00" in data:
        raise CoordinateFormatError(path, "contains NUL bytes: a binary file, not a text file")
    return data


def decode_text(data: bytes, path: str | os.PathLike[str]) -> str:
    """``data`` as UTF-8 text with ``\\n`` line ends (BOM, CRLF and CR handled).

    Plain ASCII without ``\\r`` is that text byte for byte, so callers may skip this for it.

    Raises:
      CoordinateFormatError: invalid UTF-8.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise CoordinateFormatError(
            path, f"not a UTF-8 text file (invalid byte at offset {e.start})"
        ) from e
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def read_text_lines(path: str | os.PathLike[str]) -> list[str]:
    """The lines of a UTF-8 text file (BOM, CRLF and CR handled), or a clear error.

    Raises:
      CoordinateFormatError: unreadable file, invalid UTF-8, or NUL bytes (a binary file).
    """
    lines = read_text(path).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def nonblank_lines(lines: Sequence[str]) -> list[int]:
    """The indices of the lines that are not blank."""
    return list(compress(range(len(lines)), map(str.strip, lines)))


def write_lines(path: str | os.PathLike[str], lines: Iterable[str]) -> Path:
    """Writes lines (each ending in ``\\n``) to ``path`` atomically; returns the path."""
    lines = list(lines)
    text = "\n".join(lines) + "\n" if lines else ""
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
