"""STAR files: a general parser, the RELION coordinate mapping and RELION/Topaz-style writers.

The parser reads the STAR dialect RELION, crYOLO and the ``starfile`` package write: any number of
``data_<name>`` blocks, each holding key-value pairs (``_key value``) and/or ``loop_`` tables;
``#`` comments (whole lines, and after column names such as ``_rlnCoordinateX #1`` or
``_rlnMtfFileName #3 [Modulation Transfer Function]``); quoted values (``'a b'``, ``"a b"``,
empty ``""``; a quote closes only before whitespace, as in STAR/CIF); semicolon text fields;
spaces and tabs mixed; empty loops and single-row loops. Values stay text (``<NA>`` included);
:mod:`jaxpick.io.coords.table` helpers convert them. Each loop row must sit on one line, as every
RELION-family writer does, so a ragged row is reported with its line number.

Particle files reach 10^6 rows, so loop bodies are read in bulk: runs of plain lines (no quote,
``#`` or text field) are split with numpy and their values kept as byte ranges of the file
(:mod:`jaxpick.io.coords._tokens`), which the table helpers convert column by column without a
Python string per value. Other lines go through the tokenizer. Both give the same values and the
same errors, and the errors still come in the order of a tokenize-everything-first parser.

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
from typing import Any, Literal

import numpy as np

from jaxpick.errors import CoordinateFormatError
from jaxpick.io.coords._tokens import PackedTokens, RaggedRow, split_rows
from jaxpick.io.coords.table import (
    MICROGRAPH_PATH,
    Coordinates,
    Tokens,
    decode_text,
    format_column,
    map_unique,
    number_column,
    parse_columns,
    per_image_path,
    read_bytes,
    stem_image_name,
    text_array,
    token_list,
    typed_column,
    write_lines,
)
from jaxpick.io.names import image_name as normalise_image_name

# --------------------------------------------------------------------------------------- model


class StarLoop:
    """One ``loop_`` table: column names (without the leading ``_``) and rows of text values.

    Immutable. Values are kept by column (a large loop read from a file as byte ranges of the
    file, not one string per value); :attr:`rows` and :attr:`lines` are built on first use.
    """

    __slots__ = ("_columns", "_line", "_lines", "_row_lines", "_rows", "_values")

    def __init__(
        self,
        columns: Sequence[str],
        rows: Sequence[Sequence[str]] = (),
        lines: Sequence[int] = (),
        line: int = 0,
    ) -> None:
        self._columns: tuple[str, ...] = tuple(columns)
        self._rows: tuple[tuple[str, ...], ...] | None = tuple(tuple(row) for row in rows)
        self._lines: tuple[int, ...] | None = tuple(lines)
        self._row_lines: Sequence[int] | np.ndarray = self._lines
        self._values: list[Tokens] | None = None
        self._line = line

    @classmethod
    def _from_columns(
        cls,
        columns: Sequence[str],
        values: list[Tokens],
        row_lines: Sequence[int] | np.ndarray,
        line: int,
    ) -> StarLoop:
        loop = cls.__new__(cls)
        loop._columns = tuple(columns)
        loop._values = values
        loop._row_lines = row_lines
        loop._rows = None
        loop._lines = None
        loop._line = line
        return loop

    @property
    def columns(self) -> tuple[str, ...]:
        """Column names, without the leading ``_``."""
        return self._columns

    @property
    def line(self) -> int:
        """1-based line number of the ``loop_`` keyword."""
        return self._line

    @property
    def rows(self) -> tuple[tuple[str, ...], ...]:
        """The rows, each a tuple of text values."""
        if self._rows is None:
            assert self._values is not None
            self._rows = tuple(zip(*(token_list(v) for v in self._values), strict=True))
        return self._rows

    @property
    def lines(self) -> tuple[int, ...]:
        """1-based line number of each row (for error messages)."""
        if self._lines is None:
            self._lines = tuple(np.asarray(self._row_lines, dtype=np.int64).tolist())
        return self._lines

    def __len__(self) -> int:
        return len(self._row_lines) if self._rows is None else len(self._rows)

    def column(self, name: str) -> list[str]:
        """The values of column ``name`` (exact name, without the leading ``_``)."""
        return token_list(self.tokens(name))

    def tokens(self, name: str) -> Tokens:
        """The values of column ``name`` as stored: strings, or packed byte ranges (cheaper to
        convert in bulk with :func:`~jaxpick.io.coords.table.number_column` and
        :func:`~jaxpick.io.coords.table.typed_column` than :meth:`column`)."""
        index = self._columns.index(name)
        if self._values is None:
            assert self._rows is not None
            return [row[index] for row in self._rows]
        return self._values[index]

    def row_lines(self) -> Sequence[int] | np.ndarray:
        """Like :attr:`lines`, as stored (an array for large loops)."""
        return self._row_lines if self._lines is None else self._lines

    def __setattr__(self, name: str, value: object) -> None:
        if not name.startswith("_"):
            raise AttributeError(f"StarLoop is immutable: cannot set {name!r}")
        object.__setattr__(self, name, value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StarLoop):
            return NotImplemented
        return (self.columns, self.rows, self.lines, self.line) == (
            other.columns,
            other.rows,
            other.lines,
            other.line,
        )

    def __hash__(self) -> int:
        return hash((self.columns, self.rows, self.lines, self.line))

    def __repr__(self) -> str:
        return f"StarLoop(columns={self.columns!r}, {len(self)} rows, line={self.line})"


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

# A token: its text, 1-based line number and whether it was quoted.
_Token = tuple[str, int, bool]

_RESERVED = re.compile(r"(data_|loop_|save_|global_|stop_)", re.IGNORECASE)

# Loop bodies are read in bulk in steps of this many characters, growing to the second.
_FIRST_STEP = 1 << 16
_LAST_STEP = 1 << 22

# Plain lines between lines for the tokenizer are left to it when they are fewer bytes than this.
_FEWEST_BYTES = 4096

# Characters that send a line to the full tokenizer (NUL would not survive numpy 'S' arrays).
_SPECIAL = ("'", '"', "#", "\x00")


# Runs of whitespace and of anything else; \s is exactly what str.isspace() accepts.
_SPACES = re.compile(r"\s*")
_WORD = re.compile(r"\S+")


def _tokenize_line(line: str, lineno: int, path: str | os.PathLike[str]) -> list[_Token]:
    if "'" not in line and '"' not in line and "#" not in line:
        return [(t, lineno, False) for t in line.split()]
    tokens: list[_Token] = []
    n = len(line)
    pos = _SPACES.match(line).end()  # type: ignore[union-attr]
    while pos < n:
        c = line[pos]
        if c == "#":
            break
        if c in "'\"":
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
            tokens.append((line[pos + 1 : end], lineno, True))
            pos = end + 1
        else:
            end = _WORD.match(line, pos).end()  # type: ignore[union-attr]
            tokens.append((line[pos:end], lineno, False))
            pos = end
        pos = _SPACES.match(line, pos).end()  # type: ignore[union-attr]
    return tokens


def _is_key(token: _Token) -> bool:
    return not token[2] and token[0].startswith("_")


def _is_reserved(token: _Token) -> bool:
    return not token[2] and _RESERVED.match(token[0]) is not None


@dataclass
class _Packed:
    """Loop rows read in bulk: token offsets into ``buffer`` and 1-based line numbers.

    The first ``size`` rows of the arrays are in use; the rest is room for rows to come.
    """

    buffer: np.ndarray
    starts: np.ndarray  # (rows, columns)
    ends: np.ndarray
    lines: np.ndarray
    size: int
    span: int  # bytes of text the rows come from

    def __len__(self) -> int:
        return self.size

    def extend(self, more: _Packed, room: int) -> None:
        """Appends the rows of ``more``, growing by at least ``room`` rows when full (once
        written, a growing array need not be concatenated again: no copies of the whole)."""
        need = self.size + more.size
        if need > len(self.lines):
            grown = max(need, self.size + room, int(1.25 * self.size))
            for name in ("starts", "ends", "lines"):
                old = getattr(self, name)
                new = np.empty((grown, *old.shape[1:]), dtype=old.dtype)
                new[: self.size] = old[: self.size]
                setattr(self, name, new)
        self.starts[self.size : need] = more.starts[: more.size]
        self.ends[self.size : need] = more.ends[: more.size]
        self.lines[self.size : need] = more.lines[: more.size]
        self.size = need
        self.span += more.span


@dataclass
class _Rows:
    """Loop rows read one line at a time."""

    rows: list[tuple[str, ...]]
    lines: list[int]

    def __len__(self) -> int:
        return len(self.rows)


class _Reader:
    """The tokens of STAR text, read a line at a time; loop bodies can be taken in bulk.

    The text is a ``str``, or ``bytes`` holding only ASCII (then lines are decoded as they are
    read, and the bytes serve the bulk reading as they are). ``tokens[next:]`` holds the tokens
    of whole lines read but not yet consumed.
    """

    def __init__(
        self,
        text: str | bytes,
        path: str | os.PathLike[str],
        lines: Sequence[str] | None = None,
    ) -> None:
        self.text: Any = text  # str or bytes: only the methods both have are used
        self.path = path
        self.lines = lines  # lines holding "\n" themselves: read one by one, never in bulk
        self.pos = 0  # offset in `text` (or index in `lines`) of the next unread line
        self.lineno = 1  # its line number
        self.tokens: list[_Token] = []
        self.next = 0
        # Where the last line read started (offset, line number, index of its first token), or
        # None if it was a semicolon text field: see unread_line().
        self._last: tuple[int, int, int] | None = None
        self._bytes = isinstance(text, bytes)
        self._newline: str | bytes = b"\n" if self._bytes else "\n"
        self._buffer = np.frombuffer(text, dtype=np.uint8) if self._bytes else None
        self._found: dict[str, tuple[int, int]] = {}
        # Tokens of the lines check_tokens() tokenized, by the line's offset (index in `lines`).
        self._checked: dict[int, list[_Token]] = {}

    # ------------------------------------------------------------------ token by token

    def _next_line(self) -> str | None:
        if self.lines is not None:
            if self.pos >= len(self.lines):
                return None
            line = self.lines[self.pos]
            self.pos += 1
        else:
            if self.pos >= len(self.text):
                return None
            end = self.text.find(self._newline, self.pos)
            if end < 0:
                end = len(self.text)
            line = self.text[self.pos : end]
            if isinstance(line, bytes):
                line = line.decode("ascii")
            self.pos = end + 1
        self.lineno += 1
        return line

    def _read_line(self) -> bool:
        """Tokenizes the next line (or semicolon text field); ``False`` at the end."""
        lineno, start, first = self.lineno, self.pos, len(self.tokens)
        checked = self._checked.pop(start, None)
        line = self._next_line()
        if line is None:
            return False
        self._last = (start, lineno, first)
        if checked is not None:
            self.tokens.extend(checked)
        elif line.startswith(";"):
            self._last = None
            # Semicolon text field: runs until a line that starts with ';'.
            text = [line[1:]]
            while (more := self._next_line()) is not None and not more.startswith(";"):
                text.append(more)
            if more is None:
                raise self._unclosed(lineno)
            self.tokens.append(("\n".join(text).strip("\n"), lineno, True))
        else:
            self.tokens.extend(_tokenize_line(line, lineno, self.path))
        return True

    def peek(self, k: int = 0) -> _Token | None:
        """The ``k``-th unconsumed token, or ``None`` past the end."""
        while len(self.tokens) - self.next <= k:
            if not self._read_line():
                return None
        return self.tokens[self.next + k]

    def advance(self, k: int = 1) -> None:
        self.next += k
        if self.next >= len(self.tokens):
            self.tokens.clear()
            self.next = 0

    def unread_line(self) -> bool:
        """Puts back the pending tokens if they are exactly the last line read (so that it can be
        read in bulk); returns whether it did."""
        if self._last is None or self.lines is not None:
            return False
        start, lineno, first = self._last
        if self.next != first or not self.pending():
            return False
        del self.tokens[first:]
        self.advance(0)
        self.pos, self.lineno, self._last = start, lineno, None
        return True

    def pending(self) -> bool:
        """Whether tokens were read but not consumed (the reader is inside a line)."""
        return self.next < len(self.tokens)

    def take_line(self) -> list[str]:
        """Consumes the tokens of the next token's line."""
        start = self.next
        line = self.tokens[start][1]
        end = start + 1
        while end < len(self.tokens) and self.tokens[end][1] == line:
            end += 1
        values = [t[0] for t in self.tokens[start:end]]
        self.advance(end - start)
        return values

    def check_tokens(self) -> None:
        """Raises the text's first tokenizer error (an unterminated quote or text field), as
        tokenizing all of it before parsing does: only lines with quotes or text fields can
        fail, so only they are tokenized here."""
        if self.lines is not None:
            i = 0
            while i < len(self.lines):
                line = self.lines[i]
                if line.startswith(";"):
                    end = i + 1
                    while end < len(self.lines) and not self.lines[end].startswith(";"):
                        end += 1
                    if end == len(self.lines):
                        raise self._unclosed(i + 1)
                    i = end + 1
                    continue
                if "'" in line or '"' in line:
                    self._checked[i] = _tokenize_line(line, i + 1, self.path)
                i += 1
            return
        text, size, nl = self.text, len(self.text), self._newline
        pos, counted, lines_before = 0, 0, 0
        while pos < size:
            quote = min(self._find("'", pos), self._find('"', pos))
            quote_line = text.rfind(nl, 0, quote) + 1 if quote < size else size
            if pos == 0 and text[:1] in (";", b";"):
                field = 0
            else:
                field = self._find("\n;", max(pos - 1, 0)) + 1
            start = min(quote_line, field, size)
            if start >= size:
                return
            lines_before += text.count(nl, counted, start)
            counted = start
            if start == field:  # a text field: runs to a line that starts with ';'
                close = text.find(b"\n;" if self._bytes else "\n;", start)
                if close < 0:
                    raise self._unclosed(lines_before + 1)
                end = text.find(nl, close + 1)
            else:
                end = text.find(nl, start)
                line = text[start : size if end < 0 else end]
                line = line.decode("ascii") if self._bytes else line
                self._checked[start] = _tokenize_line(line, lines_before + 1, self.path)
            pos = size if end < 0 else end + 1

    def _unclosed(self, line: int) -> CoordinateFormatError:
        return CoordinateFormatError(
            self.path, f"line {line}: text field opened with ';' is never closed"
        )

    # ------------------------------------------------------------------ in bulk

    def _find(self, needle: str, start: int) -> int:
        """``text.find(needle, start)`` (``len(text)`` if absent), remembering the last answer so
        that repeated searches stay linear."""
        assert start >= 0
        known = self._found.get(needle)
        if known is not None and known[0] <= start <= known[1]:
            return known[1]
        found = self.text.find(needle.encode() if self._bytes else needle, start)
        if found < 0:
            found = len(self.text)
        self._found[needle] = (start, found)
        return found

    def _plain_until(self, pos: int) -> int:
        """The start of the first line at or after ``pos`` that needs the full tokenizer: it
        holds a quote, ``#`` or NUL, or starts with ``;`` (``len(text)`` if none)."""
        text = self.text
        special = min(self._find(c, pos) for c in _SPECIAL)
        if special < len(text):
            newline = text.rfind(self._newline, pos, special)
            special = pos if newline < 0 else newline + 1
        semicolon = self._find("\n;", pos - 1)
        return min(special, semicolon + 1 if semicolon < len(text) else semicolon)

    def plain_bytes_ahead(self) -> int:
        """How much text from here on could be read in bulk (an upper bound)."""
        return self._plain_until(self.pos) - self.pos if 0 < self.pos < len(self.text) else 0

    def bulk_rows(self, ncols: int, size: int) -> _Packed | _Rows | None:
        """Reads loop rows from the next line on, up to about ``size`` characters and stopping
        before any line the full tokenizer must read or that ends the loop.

        Returns ``None`` when not even the next line can be read this way.
        """
        text, pos = self.text, self.pos
        if self.lines is not None or self.pending() or pos == 0 or pos >= len(text):
            return None
        end = self._plain_until(pos)
        if end - pos < _FEWEST_BYTES:
            return None  # a few plain lines (between others): not worth a bulk step
        if end > pos + size:
            cut = text.find(self._newline, pos + size, end)
            end = end if cut < 0 else cut + 1
        if self._buffer is None and text.isascii():
            self._buffer = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
        if self._buffer is not None:
            buffer, lo, hi = self._buffer, pos, end
        else:
            assert isinstance(text, str)
            chunk = text[pos:end]
            if not chunk.isascii():
                return self._bulk_python(chunk, ncols)
            buffer, lo, hi = np.frombuffer(chunk.encode("ascii"), dtype=np.uint8), 0, len(chunk)
        try:
            starts, ends, rows, stop, count = split_rows(buffer, lo, hi, ncols)
        except RaggedRow as e:
            raise self._ragged(self.lineno + e.line, e.count, ncols) from None
        if count == 0:
            return None  # the next line ends the loop
        packed = _Packed(buffer, starts, ends, rows + self.lineno, len(rows), stop - lo)
        self.pos += stop - lo
        self.lineno += count
        return packed

    def _bulk_python(self, chunk: str, ncols: int) -> _Rows | None:
        """:meth:`bulk_rows` for text that is not ASCII, with ``str.split``."""
        lines = chunk.split("\n")
        if chunk.endswith("\n"):
            lines.pop()
        rows = _Rows([], [])
        offset = 0
        count = len(lines)
        for k, line in enumerate(lines):
            values = line.split()
            if values and (values[0].startswith("_") or _RESERVED.match(values[0])):
                count = k
                break
            if values:
                if len(values) != ncols:
                    raise self._ragged(self.lineno + k, len(values), ncols)
                rows.rows.append(tuple(values))
                rows.lines.append(self.lineno + k)
            offset += len(line) + 1
        if count == 0:
            return None
        self.pos += min(offset, len(chunk))
        self.lineno += count
        return rows

    def _ragged(self, line: int, count: int, ncols: int) -> CoordinateFormatError:
        return CoordinateFormatError(
            self.path,
            f"line {line}: loop row has {count} values but the loop has {ncols} columns",
        )


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
    text = "\n".join(lines)
    if text.count("\n") == max(len(lines) - 1, 0):
        return _parse(_Reader(text, path), path)
    return _parse(_Reader("", path, lines=list(lines)), path)


def _parse(reader: _Reader, path: str | os.PathLike[str]) -> StarFile:
    reader.check_tokens()
    blocks: list[StarBlock] = []
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

    while (token := reader.peek()) is not None:
        text, line, quoted = token
        lowered = text.lower()
        if not quoted and lowered.startswith("data_"):
            finish()
            current = {"name": text[5:], "pairs": {}, "loops": [], "line": line}
            reader.advance()
            continue
        if not quoted and (lowered.startswith("save_") or lowered.startswith("global_")):
            raise CoordinateFormatError(
                path, f"line {line}: STAR {text!r} frames are not supported"
            )
        if current is None:
            raise CoordinateFormatError(
                path, f"line {line}: {text!r} appears before the first data_ block"
            )
        if not quoted and lowered == "stop_":
            reader.advance()
            continue
        if not quoted and lowered == "loop_":
            _parse_loop(reader, current, path)
            continue
        if _is_key(token):
            key = text[1:]
            value = reader.peek(1)
            # A value on the key's own line is taken as is (RELION writes data_01.mrc unquoted);
            # one on a later line (allowed by STAR) must not look like syntax.
            if value is None or _is_key(value) or (value[1] != line and _is_reserved(value)):
                raise CoordinateFormatError(path, f"line {line}: {text} has no value")
            after = reader.peek(2)
            if after is not None and after[1] == value[1] == line:
                raise CoordinateFormatError(
                    path, f"line {line}: unexpected {after[0]!r} after the value of {text}"
                )
            if key in current["pairs"]:
                raise CoordinateFormatError(path, f"line {line}: {text} given twice")
            current["pairs"][key] = value[0]
            reader.advance(2)
            continue
        raise CoordinateFormatError(
            path, f"line {line}: unexpected {text!r} (not a key, loop_ or data_)"
        )
    finish()
    return StarFile(path=os.fspath(path), blocks=tuple(blocks))


def _parse_loop(reader: _Reader, block: dict, path: str | os.PathLike[str]) -> None:
    loop_token = reader.peek()
    assert loop_token is not None
    reader.advance()
    columns: list[str] = []
    while (token := reader.peek()) is not None and _is_key(token):
        name = token[0][1:]
        if name in columns:
            raise CoordinateFormatError(path, f"line {token[1]}: loop column _{name} appears twice")
        columns.append(name)
        reader.advance()
    if not columns:
        raise CoordinateFormatError(path, f"line {loop_token[1]}: loop_ without column names")
    pieces: list[_Packed | _Rows] = []
    rows = _Rows([], [])
    step = _FIRST_STEP
    # A row is every token of one line. Only a line's first token can end the loop (a key,
    # data_, loop_...): unquoted values such as data_001.mrc inside a row are values, because
    # RELION writes them unquoted. Plain lines go in bulk; others through the tokenizer.
    reader.unread_line()
    while True:
        if not reader.pending():
            piece = reader.bulk_rows(len(columns), step)
            if piece is not None:
                last = pieces[-1] if pieces else None
                if not rows and isinstance(last, _Packed) and last.buffer is piece.buffer:
                    # Room for as many rows as the plain text ahead may hold at this density.
                    ahead = reader.plain_bytes_ahead() * last.size // max(last.span, 1)
                    last.extend(piece, ahead + ahead // 8 + 1024)
                else:
                    pieces += [rows, piece]
                rows = _Rows([], [])
                step = min(2 * step, _LAST_STEP)
                continue
        token = reader.peek()
        if token is None or _is_key(token) or _is_reserved(token):
            break
        line = token[1]
        values = reader.take_line()
        if len(values) != len(columns):
            raise CoordinateFormatError(
                path,
                f"line {line}: loop row has {len(values)} values but the loop has "
                f"{len(columns)} columns",
            )
        rows.rows.append(tuple(values))
        rows.lines.append(line)
    pieces.append(rows)
    block["loops"].append(_loop_from_pieces(columns, pieces, loop_token[1]))


def _loop_from_pieces(columns: list[str], pieces: list[_Packed | _Rows], line: int) -> StarLoop:
    pieces = [p for p in pieces if len(p)]
    if not pieces:
        return StarLoop._from_columns(columns, [[] for _ in columns], (), line)
    if all(isinstance(p, _Packed) for p in pieces):
        packed: list[_Packed] = pieces  # type: ignore[assignment]
        buffers = list({id(p.buffer): p.buffer for p in packed}.values())
        if len(packed) == 1:
            buffer, (only,) = buffers[0], packed
            starts, ends, lines = only.starts[: only.size], only.ends[: only.size], only.lines
        elif len(buffers) == 1:
            buffer = buffers[0]
            starts = np.concatenate([p.starts[: p.size] for p in packed])
            ends = np.concatenate([p.ends[: p.size] for p in packed])
        else:  # separate chunks of a non-ASCII file: one buffer for the loop
            offsets = np.cumsum([0] + [len(p.buffer) for p in packed])
            buffer = np.concatenate([p.buffer for p in packed])
            starts = np.concatenate(
                [p.starts[: p.size] + o for p, o in zip(packed, offsets, strict=False)]
            )
            ends = np.concatenate(
                [p.ends[: p.size] + o for p, o in zip(packed, offsets, strict=False)]
            )
        if len(packed) > 1:
            lines = np.concatenate([p.lines[: p.size] for p in packed])
        values: list[Tokens] = [
            PackedTokens(buffer, starts[:, c], ends[:, c], split=True) for c in range(len(columns))
        ]
        return StarLoop._from_columns(columns, values, lines[: len(starts)], line)
    texts: list[list[str]] = [[] for _ in columns]
    row_lines: list[int] = []
    for piece in pieces:
        if isinstance(piece, _Packed):
            for c, column in enumerate(texts):
                column += PackedTokens(
                    piece.buffer,
                    piece.starts[: piece.size, c],
                    piece.ends[: piece.size, c],
                    split=True,
                ).texts()
            row_lines += piece.lines[: piece.size].tolist()
        else:
            for c, column in enumerate(texts):
                column += [row[c] for row in piece.rows]
            row_lines += piece.lines
    return StarLoop._from_columns(columns, list(texts), tuple(row_lines), line)


def read_star(path: str | os.PathLike[str]) -> StarFile:
    """Reads and parses a STAR (or crYOLO ``.cbox``) file.

    Raises:
      CoordinateFormatError: unreadable, not UTF-8 text, or not valid STAR.
    """
    data = read_bytes(path)
    if data.isascii() and b"\r" not in data:
        return _parse(_Reader(data, path), path)  # the bytes are the text
    return _parse(_Reader(decode_text(data, path), path), path)


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

    lines = loop.row_lines()

    def values(label: str) -> Tokens:
        return loop.tokens(by_label[label])

    # Every numeric column in one go (cheaper than column by column for short loops).
    numeric = [label for label in by_label if label != "MicrographName"]
    parsed = dict(zip(numeric, parse_columns([values(label) for label in numeric]), strict=True))

    def numbers(label: str, *, finite: bool) -> np.ndarray:
        what = f"_{by_label[label]}"
        return number_column(
            values(label), path=path, what=what, lines=lines, finite=finite, parsed=parsed[label]
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
    names: str | np.ndarray
    if "MicrographName" in by_label:
        used.add("MicrographName")
        paths = text_array(values("MicrographName"))
        extra[MICROGRAPH_PATH] = paths
        names = map_unique(paths, lambda p: normalise_image_name(p) or p)
    else:
        names = stem_image_name(path, suffix=suffix, strip=RELION_PICK_SUFFIXES)
    if image_name is not None:
        names = image_name
    if isinstance(names, str):
        names = np.array([names] * len(loop), dtype=np.str_)
    for label, column in by_label.items():
        if label not in used and label not in extra:
            extra[label] = typed_column(loop.tokens(column), parsed[label])
    return Coordinates._adopt(names, x, y, z, score, extra)


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


def _micrograph_names(coords: Coordinates, image_ext: str) -> np.ndarray:
    named = np.char.add(coords.image_name, image_ext) if len(coords) else coords.image_name
    paths = coords.extra.get(MICROGRAPH_PATH)
    if paths is None:
        return named
    originals = paths if paths.dtype.kind == "U" else np.array([str(p) for p in paths], dtype=str)
    return np.where(originals != "", originals, named)


# A value quote_value() leaves as it is.
_PLAIN_VALUE = re.compile(r"(?![_#'\";])(?!(?i:data_|loop_|save_|global_|stop_))\S+\Z")
_RESERVED_CODES = [np.array([ord(c) for c in w]) for w in ("data_", "loop_", "save_", "stop_")]
_RESERVED_CODES.append(np.array([ord(c) for c in "global_"]))

# (label, values as text, whether no value needs quotes)
_Column = tuple[str, list[str], bool]


def _formatted(label: str, values: np.ndarray) -> _Column:
    # Numbers print as digits, signs, '.', 'e', nan or inf: never anything to quote.
    if values.dtype.kind in "iufb":
        return label, format_column(values), True
    return label, format_column(values), _plain_text(values)


def _plain_text(values: np.ndarray) -> bool:
    """Whether quote_value() leaves every value of a text column as it is; ``False`` when
    unsure (then each value is checked)."""
    if values.dtype.kind != "U" or len(values) == 0 or values.dtype.itemsize == 0:
        return False
    codes = np.ascontiguousarray(values).view(np.uint32).reshape(len(values), -1)
    if codes.max() >= 128:
        return False  # not ASCII: leave it to the regex
    first = codes[:, 0]
    if (first == 0).any() or np.isin(first, [ord(c) for c in "_#'\";"]).any():
        return False  # empty, or starts like a key, comment, quote or text field
    if (((codes >= 9) & (codes <= 13)) | ((codes >= 28) & (codes <= 32))).any():
        return False  # whitespace
    head = np.zeros((len(values), 7), dtype=np.uint32)
    head[:, : min(7, codes.shape[1])] = codes[:, :7]
    lower = np.where((head >= 65) & (head <= 90), head | 32, head)
    return not any((lower[:, : len(w)] == w).all(axis=1).any() for w in _RESERVED_CODES)


def _loop_lines(
    columns: list[_Column], *, sep: str, numbered: bool, path: str | os.PathLike[str]
) -> list[str]:
    lines = ["loop_"]
    for i, (name, _, _) in enumerate(columns):
        lines.append(f"_rln{name} #{i + 1}" if numbered else f"_rln{name}")
    try:
        cells = [
            values
            if plain or all(map(_PLAIN_VALUE.match, values))
            else [quote_value(v) for v in values]
            for _, values, plain in columns
        ]
    except ValueError as e:
        raise CoordinateFormatError(path, str(e)) from e
    lines.extend(map(sep.join, zip(*cells, strict=True)))
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
    xyz = [_formatted("CoordinateX", coords.x), _formatted("CoordinateY", coords.y)]
    if coords.z is not None:
        xyz.append(_formatted("CoordinateZ", coords.z))
    fom = [] if coords.score is None else [_formatted("AutopickFigureOfMerit", coords.score)]
    extra = _star_extra(coords)
    if style == "topaz":
        columns = [_formatted(k, v) for k, v in extra.items()]
        columns += fom + [_formatted("MicrographName", _micrograph_names(coords, image_ext))] + xyz
        return ["data_images", *_loop_lines(columns, sep="\t", numbered=True, path=path)]
    if style != "relion":
        raise ValueError(f"STAR style must be 'relion' or 'topaz', not {style!r}")
    if per_image:
        n = len(coords)
        klass = extra.get("ClassNumber", np.zeros(n, dtype=np.int64))
        psi = extra.get("AnglePsi", np.zeros(n))
        columns = xyz + fom
        columns += [_formatted("ClassNumber", klass), _formatted("AnglePsi", psi)]
        body = _loop_lines(columns, sep=" ", numbered=True, path=path)
        return ["", "# version 30001", "", "data_", "", *body]
    columns = [_formatted("MicrographName", _micrograph_names(coords, image_ext))] + xyz + fom
    columns += [_formatted(k, v) for k, v in extra.items()]
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
