"""STAR files: a general parser, the RELION coordinate mapping and RELION/Topaz-style writers.

The parser reads the STAR dialect RELION, crYOLO and the ``starfile`` package write: any number of
``data_<name>`` blocks, each holding key-value pairs (``_key value``) and/or ``loop_`` tables;
``#`` comments (whole lines, and after column names such as ``_rlnCoordinateX #1`` or
``_rlnMtfFileName #3 [Modulation Transfer Function]``); quoted values (``'a b'``, ``"a b"``,
empty ``""``; a quote closes only before whitespace, as in STAR/CIF); semicolon text fields;
spaces and tabs mixed; empty loops and single-row loops. Values stay text (``<NA>`` included);
:mod:`jaxpick.io.coords.table` helpers convert them. Each loop row must sit on one line, as every
RELION-family writer does, so a ragged row is reported with its line number.

RELION layouts recognised by :func:`star_to_coordinates`:

* RELION 3.0 and older (and Topaz): one block (``data_``, ``data_images``…) whose loop has
  ``_rlnCoordinateX/Y`` and ``_rlnMicrographName``; score = ``_rlnAutopickFigureOfMerit`` or the
  legacy ``_rlnParticleScore``.
* RELION 3.1 / 4 / 5 particle files: ``data_optics`` + ``data_particles`` (``# version 30001`` /
  ``50001``); the particles block is used, the optics block is not merged into the table.
  RELION 5 tomography files add ``_rlnCoordinateZ``.
* Per-micrograph coordinate files (RELION's autopick/manualpick ``<micrograph>_<suffix>.star``):
  a loop with coordinates but no ``_rlnMicrographName``; the image name comes from the file name.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Literal

import numpy as np

from jaxpick.errors import CoordinateFormatError
from jaxpick.io.coords.table import (
    MICROGRAPH_PATH,
    Coordinates,
    format_column,
    number_column,
    per_image_path,
    read_text_lines,
    stem_image_name,
    typed_column,
    write_lines,
)
from jaxpick.io.names import image_name as normalise_image_name

# --------------------------------------------------------------------------------------- model


@dataclass(frozen=True)
class StarLoop:
    """One ``loop_`` table: column names (without the leading ``_``) and rows of text values."""

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    #: 1-based line number of each row (for error messages).
    lines: tuple[int, ...]
    #: 1-based line number of the ``loop_`` keyword.
    line: int = 0

    def __len__(self) -> int:
        return len(self.rows)

    def column(self, name: str) -> list[str]:
        """The values of column ``name`` (exact name, without the leading ``_``)."""
        index = self.columns.index(name)
        return [row[index] for row in self.rows]


@dataclass(frozen=True)
class StarBlock:
    """One ``data_<name>`` block: key-value pairs (keys without ``_``) and loops, in file order."""

    name: str
    pairs: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    loops: tuple[StarLoop, ...] = ()
    line: int = 0

    @property
    def loop(self) -> StarLoop | None:
        """The block's first loop, or ``None``."""
        return self.loops[0] if self.loops else None


@dataclass(frozen=True)
class StarFile:
    """A parsed STAR file: its blocks in file order."""

    path: str
    blocks: tuple[StarBlock, ...]

    def block(self, name: str) -> StarBlock | None:
        """The first block called ``name`` (``""`` for a bare ``data_``), or ``None``."""
        for block in self.blocks:
            if block.name == name:
                return block
        return None


# --------------------------------------------------------------------------------------- parser


@dataclass(frozen=True)
class _Token:
    text: str
    line: int
    quoted: bool


_RESERVED = re.compile(r"(data_|loop_|save_|global_|stop_)", re.IGNORECASE)


def _tokenize(lines: Sequence[str], path: str | os.PathLike[str]) -> list[_Token]:
    tokens: list[_Token] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        lineno = i + 1
        i += 1
        if line.startswith(";"):
            # Semicolon text field: runs until a line that starts with ';'.
            text = [line[1:]]
            while i < len(lines) and not lines[i].startswith(";"):
                text.append(lines[i])
                i += 1
            if i == len(lines):
                raise CoordinateFormatError(
                    path, f"line {lineno}: text field opened with ';' is never closed"
                )
            i += 1
            tokens.append(_Token("\n".join(text).strip("\n"), lineno, True))
            continue
        if "'" not in line and '"' not in line and "#" not in line:
            tokens.extend(_Token(t, lineno, False) for t in line.split())
            continue
        pos, n = 0, len(line)
        while pos < n:
            c = line[pos]
            if c.isspace():
                pos += 1
            elif c == "#":
                break
            elif c in "'\"":
                # STAR/CIF: a quote closes the value only when followed by whitespace or the end
                # of the line, so "it's" needs no escaping.
                end = pos + 1
                while True:
                    end = line.find(c, end)
                    if end < 0:
                        raise CoordinateFormatError(
                            path,
                            f"line {lineno}: unterminated quoted value starting {line[pos:]!r}",
                        )
                    if end + 1 == n or line[end + 1].isspace():
                        break
                    end += 1
                tokens.append(_Token(line[pos + 1 : end], lineno, True))
                pos = end + 1
            else:
                end = pos
                while end < n and not line[end].isspace():
                    end += 1
                tokens.append(_Token(line[pos:end], lineno, False))
                pos = end
    return tokens


def _is_key(token: _Token) -> bool:
    return not token.quoted and token.text.startswith("_")


def _is_reserved(token: _Token) -> bool:
    return not token.quoted and _RESERVED.match(token.text) is not None


def parse_star(lines: Sequence[str], path: str | os.PathLike[str] = "<string>") -> StarFile:
    """Parses STAR text (already split into lines) into blocks.

    Args:
      lines: the file's lines, without line terminators.
      path: the file name used in error messages.

    Raises:
      CoordinateFormatError: on anything that is not valid STAR (values outside a block, a loop
        without columns, a row with the wrong number of values, a key without a value,
        unterminated quotes, duplicate names), naming the line.
    """
    tokens = _tokenize(lines, path)
    blocks: list[StarBlock] = []
    pos = 0
    current: dict | None = None

    def finish() -> None:
        if current is not None:
            blocks.append(
                StarBlock(
                    name=current["name"],
                    pairs=MappingProxyType(current["pairs"]),
                    loops=tuple(current["loops"]),
                    line=current["line"],
                )
            )

    while pos < len(tokens):
        token = tokens[pos]
        lowered = token.text.lower()
        if not token.quoted and lowered.startswith("data_"):
            finish()
            current = {"name": token.text[5:], "pairs": {}, "loops": [], "line": token.line}
            pos += 1
            continue
        if not token.quoted and (lowered.startswith("save_") or lowered.startswith("global_")):
            raise CoordinateFormatError(
                path, f"line {token.line}: STAR {token.text!r} frames are not supported"
            )
        if current is None:
            raise CoordinateFormatError(
                path, f"line {token.line}: {token.text!r} appears before the first data_ block"
            )
        if not token.quoted and lowered == "stop_":
            pos += 1
            continue
        if not token.quoted and lowered == "loop_":
            pos = _parse_loop(tokens, pos, current, path)
            continue
        if _is_key(token):
            key = token.text[1:]
            value = tokens[pos + 1] if pos + 1 < len(tokens) else None
            # A value on the key's own line is taken as is (RELION writes data_01.mrc unquoted);
            # one on a later line (allowed by STAR) must not look like syntax.
            if (
                value is None
                or _is_key(value)
                or (value.line != token.line and _is_reserved(value))
            ):
                raise CoordinateFormatError(path, f"line {token.line}: {token.text} has no value")
            after = tokens[pos + 2] if pos + 2 < len(tokens) else None
            if after is not None and after.line == value.line == token.line:
                raise CoordinateFormatError(
                    path,
                    f"line {token.line}: unexpected {after.text!r} after the value of {token.text}",
                )
            if key in current["pairs"]:
                raise CoordinateFormatError(path, f"line {token.line}: {token.text} given twice")
            current["pairs"][key] = value.text
            pos += 2
            continue
        raise CoordinateFormatError(
            path, f"line {token.line}: unexpected {token.text!r} (not a key, loop_ or data_)"
        )
    finish()
    return StarFile(path=os.fspath(path), blocks=tuple(blocks))


def _parse_loop(tokens: list[_Token], pos: int, block: dict, path: str | os.PathLike[str]) -> int:
    loop_token = tokens[pos]
    pos += 1
    columns: list[str] = []
    while pos < len(tokens) and _is_key(tokens[pos]):
        name = tokens[pos].text[1:]
        if name in columns:
            raise CoordinateFormatError(
                path, f"line {tokens[pos].line}: loop column _{name} appears twice"
            )
        columns.append(name)
        pos += 1
    if not columns:
        raise CoordinateFormatError(path, f"line {loop_token.line}: loop_ without column names")
    rows: list[tuple[str, ...]] = []
    row_lines: list[int] = []
    # A row is every token of one line. Only a line's first token can end the loop (a key,
    # data_, loop_...): unquoted values such as data_001.mrc inside a row are values, because
    # RELION writes them unquoted.
    while pos < len(tokens) and not _is_key(tokens[pos]) and not _is_reserved(tokens[pos]):
        line = tokens[pos].line
        start = pos
        while pos < len(tokens) and tokens[pos].line == line:
            pos += 1
        values = tuple(t.text for t in tokens[start:pos])
        if len(values) != len(columns):
            raise CoordinateFormatError(
                path,
                f"line {line}: loop row has {len(values)} values but the loop has "
                f"{len(columns)} columns",
            )
        rows.append(values)
        row_lines.append(line)
    block["loops"].append(
        StarLoop(tuple(columns), tuple(rows), tuple(row_lines), line=loop_token.line)
    )
    return pos


def read_star(path: str | os.PathLike[str]) -> StarFile:
    """Reads and parses a STAR (or crYOLO ``.cbox``) file.

    Raises:
      CoordinateFormatError: unreadable, not UTF-8 text, or not valid STAR.
    """
    return parse_star(read_text_lines(path), path)


# --------------------------------------------------------------------------------------- RELION

#: File-name suffixes RELION's own pickers use for per-micrograph coordinate files
#: (``<micrograph>_autopick.star``, ``<micrograph>_manualpick.star``); stripped from the file
#: stem when no ``suffix`` is given.
RELION_PICK_SUFFIXES = ("_autopick", "_manualpick")


def _label(name: str) -> str:
    """A RELION label without its ``rln`` prefix, as Topaz names STAR columns."""
    return name[3:] if name.startswith("rln") and len(name) > 3 else name


def _find_coordinate_loop(star: StarFile) -> tuple[StarBlock, StarLoop] | None:
    candidates: list[tuple[StarBlock, StarLoop]] = []
    for block in star.blocks:
        for loop in block.loops:
            labels = {_label(c) for c in loop.columns}
            if {"CoordinateX", "CoordinateY"} <= labels:
                candidates.append((block, loop))
    if not candidates:
        return None
    # RELION >= 3.1 keeps particles in data_particles; other files have one coordinate loop (or,
    # like starfile's rln3.1_data_style.star, the same table twice), so take the first.
    for block, loop in candidates:
        if block.name == "particles":
            return block, loop
    return candidates[0]


def star_to_coordinates(
    star: StarFile,
    *,
    image_name: str | None = None,
    suffix: str = "",
) -> Coordinates:
    """Maps a parsed RELION-style STAR file to a coordinate table.

    Coordinates are read as floats (Topaz truncates them to integers; we do not).

    Args:
      star: the parsed file.
      image_name: use this image name for every row (overrides ``_rlnMicrographName``).
      suffix: for files without ``_rlnMicrographName``, the suffix to remove from the file stem
        to get the image name; when empty, RELION's ``_autopick``/``_manualpick`` are removed.

    Returns:
      The table. ``extra`` holds every other loop column by its label without ``rln``
      (``"DefocusU"``, ``"ClassNumber"``…), and the micrograph path as written under
      ``"micrograph_path"``.

    Raises:
      CoordinateFormatError: no loop with ``_rlnCoordinateX``/``_rlnCoordinateY`` (e.g. a
        pipeline or optimiser STAR), or a coordinate that is not a finite number.
    """
    path = star.path
    found = _find_coordinate_loop(star)
    if found is None:
        columns = {_label(c) for b in star.blocks for lp in b.loops for c in lp.columns}
        columns |= {_label(k) for b in star.blocks for k in b.pairs}
        if any(c.startswith("CenteredCoordinate") for c in columns):
            problem = (
                "has RELION 5 _rlnCenteredCoordinate*Angst columns but no _rlnCoordinateX/Y; "
                "convert to pixel coordinates (e.g. with RELION's tomography tools) first"
            )
        elif not star.blocks:
            problem = "contains no data_ block: not a STAR coordinate file"
        else:
            names = ", ".join(f"data_{b.name}" for b in star.blocks)
            problem = (
                "has no coordinate columns (_rlnCoordinateX and _rlnCoordinateY) in any loop "
                f"(blocks: {names}); it is not a particle or coordinate STAR file"
            )
        raise CoordinateFormatError(path, problem)
    _, loop = found
    by_label: dict[str, str] = {}
    for column in loop.columns:
        by_label.setdefault(_label(column), column)

    def values(label: str) -> list[str]:
        return loop.column(by_label[label])

    def numbers(label: str, *, finite: bool) -> np.ndarray:
        return number_column(
            values(label), path=path, what=f"_{by_label[label]}", lines=loop.lines, finite=finite
        )

    used = {"CoordinateX", "CoordinateY"}
    x = numbers("CoordinateX", finite=True)
    y = numbers("CoordinateY", finite=True)
    z = None
    if "CoordinateZ" in by_label:
        z = numbers("CoordinateZ", finite=False)
        used.add("CoordinateZ")
        if np.isnan(z).all() and len(z):
            z = None
    score = None
    for label in ("AutopickFigureOfMerit", "ParticleScore"):
        if label in by_label:
            score = numbers(label, finite=False)
            used.add(label)
            break
    extra: dict[str, np.ndarray] = {}
    if "MicrographName" in by_label:
        used.add("MicrographName")
        paths = values("MicrographName")
        extra[MICROGRAPH_PATH] = np.array(paths, dtype=np.str_)
        names = [normalise_image_name(p) or p for p in paths]
    else:
        names = [stem_image_name(path, suffix=suffix, strip=RELION_PICK_SUFFIXES)] * len(loop)
    if image_name is not None:
        names = [image_name] * len(loop)
    for label, column in by_label.items():
        if label not in used and label not in extra:
            extra[label] = typed_column(loop.column(column))
    return Coordinates(
        image_name=np.array(names, dtype=np.str_), x=x, y=y, z=z, score=score, extra=extra
    )


def read_star_coordinates(
    path: str | os.PathLike[str], *, image_name: str | None = None, suffix: str = ""
) -> Coordinates:
    """Reads a RELION/Topaz particle or coordinate STAR file (see :func:`star_to_coordinates`)."""
    return star_to_coordinates(read_star(path), image_name=image_name, suffix=suffix)


# --------------------------------------------------------------------------------------- writing

StarStyle = Literal["relion", "topaz"]

# extra keys that come from box/cbox/CryoPPP files, not RELION: never written as _rln labels.
_NON_RELION_EXTRA = frozenset(
    {"Width", "Height", "Depth", "EstWidth", "EstHeight", "NumBoxes", "Angle", "Diameter"}
)
# RELION labels are CamelCase words: "DefocusU", "ClassNumber". This also leaves out cryoSPARC
# fields ("location/min_dist_A"), "micrograph_path" and CSV headers with spaces or dashes.
_LABEL = re.compile(r"[A-Z][A-Za-z0-9]*\Z")
_NEEDS_QUOTES = re.compile(r"\s")


def quote_value(text: str) -> str:
    """``text`` as one STAR token, quoted when it is empty, has whitespace or would read as
    syntax (``_key``, ``#comment``, ``loop_``, ``data_x``, a leading quote)."""
    if (
        text
        and not _NEEDS_QUOTES.search(text)
        and not (text[0] in "_#'\";" or _RESERVED.match(text))
    ):
        return text
    for quote in ('"', "'"):
        # A quote inside the value is fine unless followed by whitespace (it would close it).
        if not re.search(re.escape(quote) + r"(\s|\Z)", text):
            return f"{quote}{text}{quote}"
    raise ValueError(f"cannot write {text!r} as a STAR value: it contains both quote characters")


def _star_extra(coords: Coordinates) -> dict[str, np.ndarray]:
    """The extra columns a STAR writer keeps: 1-D, named like RELION labels, not box/cbox."""
    return {
        k: v
        for k, v in coords.extra.items()
        if v.ndim == 1
        and _LABEL.match(k)
        and k not in _NON_RELION_EXTRA
        and k not in {"MicrographName", "CoordinateX", "CoordinateY", "CoordinateZ"}
        and k not in {"AutopickFigureOfMerit", "ParticleScore"}
    }


def _micrograph_names(coords: Coordinates, image_ext: str) -> list[str]:
    paths = coords.extra.get(MICROGRAPH_PATH)
    out = []
    for i, name in enumerate(coords.image_name):
        original = str(paths[i]) if paths is not None else ""
        out.append(original if original else f"{name}{image_ext}")
    return out


def _loop_lines(
    columns: list[tuple[str, list[str]]], *, sep: str, numbered: bool, path: str | os.PathLike[str]
) -> list[str]:
    lines = ["loop_"]
    for i, (name, _) in enumerate(columns):
        lines.append(f"_rln{name} #{i + 1}" if numbered else f"_rln{name}")
    try:
        cells = [[quote_value(v) for v in values] for _, values in columns]
    except ValueError as e:
        raise CoordinateFormatError(path, str(e)) from e
    lines.extend(sep.join(row) for row in zip(*cells, strict=True))
    return lines


def star_lines(
    coords: Coordinates,
    *,
    style: StarStyle = "relion",
    per_image: bool = False,
    image_ext: str = ".mrc",
    path: str | os.PathLike[str] = "<star>",
) -> list[str]:
    """The lines of a STAR file for ``coords``.

    Layouts:

    * ``style="relion"``, combined: ``data_particles`` with a loop of ``_rlnMicrographName``
      (the original path when known, else ``<image_name><image_ext>``), ``_rlnCoordinateX/Y``
      (``Z``), ``_rlnAutopickFigureOfMerit`` when scored, then every extra column that is a
      RELION label (so STAR → STAR keeps all particle columns). There is no optics block (it is
      not carried over from the input), so there is no ``# version 30001`` line either: RELION
      ≥ 3.1 reads unversioned files as legacy (3.0) STAR.
    * ``style="relion"``, ``per_image=True``: a RELION coordinate file as RELION's autopicker
      writes it and *Import coordinates* accepts it: ``# version 30001``, ``data_``, a loop of
      ``_rlnCoordinateX/Y`` (``Z``), ``_rlnAutopickFigureOfMerit`` (when scored),
      ``_rlnClassNumber`` and ``_rlnAnglePsi`` (from extra, else 0 as in RELION 3.0 autopick
      output); no micrograph name, which RELION takes from the file name.
    * ``style="topaz"``: exactly Topaz's writer: ``data_images``, ``loop_``, ``_rln<Name> #i``,
      tab-separated rows; extra columns first, then ``AutopickFigureOfMerit`` (when scored),
      ``MicrographName``, ``CoordinateX``, ``CoordinateY`` (``CoordinateZ``).

    Args:
      coords: the table (for ``per_image``, the rows of one image).
      style: ``"relion"`` or ``"topaz"``.
      per_image: write a per-micrograph coordinate file (no micrograph column; relion style).
      image_ext: appended to image names without a known original path (Topaz ``--image-ext``).
      path: the destination, for error messages.
    """
    xyz: list[tuple[str, list[str]]] = [
        ("CoordinateX", format_column(coords.x)),
        ("CoordinateY", format_column(coords.y)),
    ]
    if coords.z is not None:
        xyz.append(("CoordinateZ", format_column(coords.z)))
    fom = [] if coords.score is None else [("AutopickFigureOfMerit", format_column(coords.score))]
    extra = _star_extra(coords)
    if style == "topaz":
        columns = [(k, format_column(v)) for k, v in extra.items()]
        columns += fom + [("MicrographName", _micrograph_names(coords, image_ext))] + xyz
        return ["data_images", *_loop_lines(columns, sep="\t", numbered=True, path=path)]
    if style != "relion":
        raise ValueError(f"STAR style must be 'relion' or 'topaz', not {style!r}")
    if per_image:
        n = len(coords)
        klass = extra.get("ClassNumber", np.zeros(n, dtype=np.int64))
        psi = extra.get("AnglePsi", np.zeros(n))
        columns = xyz + fom
        columns += [("ClassNumber", format_column(klass)), ("AnglePsi", format_column(psi))]
        body = _loop_lines(columns, sep=" ", numbered=True, path=path)
        return ["", "# version 30001", "", "data_", "", *body]
    columns = [("MicrographName", _micrograph_names(coords, image_ext))] + xyz + fom
    columns += [(k, format_column(v)) for k, v in extra.items()]
    body = _loop_lines(columns, sep=" ", numbered=True, path=path)
    return ["", "data_particles", "", *body]


def write_star(
    coords: Coordinates,
    dest: str | os.PathLike[str],
    *,
    style: StarStyle = "relion",
    per_image: bool = False,
    suffix: str = "",
    image_ext: str = ".mrc",
) -> list[Path]:
    """Writes a STAR file (or, with ``per_image``, ``<dest>/<image><suffix>.star`` per image).

    See :func:`star_lines` for the layouts. Every file is written atomically.

    Returns:
      The files written.
    """
    if not per_image:
        lines = star_lines(coords, style=style, image_ext=image_ext, path=dest)
        return [write_lines(dest, lines)]
    written = []
    for name, rows in coords.per_image():
        target = per_image_path(dest, name, f"{suffix}.star")
        lines = star_lines(rows, style=style, per_image=True, image_ext=image_ext, path=target)
        written.append(write_lines(target, lines))
    return written
