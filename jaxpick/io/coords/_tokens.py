"""Text values in bulk: many short ASCII tokens held as byte ranges of one buffer.

Particle files reach 10^6 rows of ~20 columns, 2·10^7 values. A Python string, a regex and a
``float()`` per value cost tens of seconds there, so the readers keep such columns as
:class:`PackedTokens` (one ``uint8`` buffer plus start/end offsets, split with numpy) and parse
numbers with :func:`parse_numbers`, which is exact but only claims tokens of a narrow grammar. The
callers hand every token it does not claim to their per-value code, so results and error messages
do not depend on which path a value took.
"""

from __future__ import annotations

import numpy as np

# The ASCII characters str.split() and str.isspace() treat as whitespace.
_WHITESPACE = np.zeros(256, dtype=bool)
_WHITESPACE[[9, 10, 11, 12, 13, 28, 29, 30, 31, 32]] = True

# Exact powers of ten in float64 (10^22 is the largest exact one).
_POW10 = np.array([float(10**k) for k in range(23)], dtype=np.float64)
# Where long double has a 64-bit (x87) or wider significand, it holds every 18-digit integer and
# the powers of ten up to 10^27 exactly; numbers beyond the float64 fast path go through it.
_EXTENDED = np.finfo(np.longdouble).nmant >= 63
_POW10_EXTENDED = np.ones(28, dtype=np.longdouble)
for _k in range(1, 28):
    _POW10_EXTENDED[_k] = _POW10_EXTENDED[_k - 1] * 10  # exact: no rounding up to 10^27

# STAR words that end a loop when a line starts with them (any case), as in star._RESERVED.
_RESERVED_WORDS = [np.frombuffer(w, dtype=np.uint8) for w in (b"data_", b"loop_", b"save_")]
_RESERVED_WORDS += [np.frombuffer(w, dtype=np.uint8) for w in (b"global_", b"stop_")]

#: Longest token :func:`parse_numbers` looks at; longer ones are left to the caller.
MAX_NUMBER_WIDTH = 40
_ROW_BLOCK = 1 << 14  # tokens per vectorised parsing step (keeps the temporaries small)


class PackedTokens:
    """A column of ASCII tokens: ``buffer[starts[i]:ends[i]]`` is token ``i``.

    ``split`` marks tokens cut out by whitespace splitting, which therefore hold no whitespace
    (``token.strip()`` is the token itself). Tokens never hold NUL bytes.
    """

    __slots__ = ("buffer", "ends", "split", "starts")

    def __init__(
        self, buffer: np.ndarray, starts: np.ndarray, ends: np.ndarray, *, split: bool
    ) -> None:
        self.buffer = buffer
        self.starts = starts
        self.ends = ends
        self.split = split

    def __len__(self) -> int:
        return len(self.starts)

    def text(self, i: int) -> str:
        """Token ``i``."""
        return self.buffer[int(self.starts[i]) : int(self.ends[i])].tobytes().decode("ascii")

    def _matrix(self) -> np.ndarray:
        """``(n, width)`` uint8: the tokens, zero-padded to the longest."""
        lengths = self.ends - self.starts
        width = max(int(lengths.max()), 1) if len(lengths) else 1
        return gather(self.buffer, self.starts, lengths, width)

    def bytes_array(self) -> np.ndarray:
        """The tokens as a numpy ``S`` array."""
        matrix = self._matrix()
        return matrix.view(f"S{matrix.shape[1]}").reshape(-1)

    def array(self) -> np.ndarray:
        """The tokens as a numpy ``str_`` array."""
        # ASCII: each character's UCS-4 code is its byte, so widening the bytes is the array.
        matrix = self._matrix()
        return matrix.astype(np.uint32).view(np.dtype((np.str_, matrix.shape[1]))).reshape(-1)

    def texts(self) -> list[str]:
        """The tokens as a list of strings."""
        return self.array().tolist()


def pack_strings(tokens: list[str] | tuple[str, ...]) -> PackedTokens | None:
    """Packs strings, or returns ``None`` unless all are ASCII without NUL and newline."""
    if not tokens:
        empty = np.zeros(0, dtype=np.int64)
        return PackedTokens(np.zeros(0, dtype=np.uint8), empty, empty, split=False)
    joined = "\n".join(tokens)
    if not joined.isascii() or "\x00" in joined:
        return None
    buffer = np.frombuffer(joined.encode("ascii"), dtype=np.uint8)
    newlines = np.flatnonzero(buffer == 10)
    if len(newlines) != len(tokens) - 1:
        return None  # a token holds a newline
    starts = np.concatenate(([0], newlines + 1))
    ends = np.concatenate((newlines, [len(buffer)]))
    return PackedTokens(buffer, starts, ends, split=False)


def gather(buffer: np.ndarray, starts: np.ndarray, lengths: np.ndarray, width: int) -> np.ndarray:
    """An ``(n, width)`` uint8 array: row ``i`` holds token ``i`` (cut at ``width``), then zeros."""
    n = len(starts)
    size = len(buffer)
    if size >= width:
        # Every window of `width` bytes as one item, so that taking rows is one copy each.
        windows = np.ndarray((size - width + 1,), dtype=f"V{width}", buffer=buffer, strides=(1,))
        clipped = np.minimum(starts, size - width)
        out = windows[clipped].view(np.uint8).reshape(n, width)
        moved = np.flatnonzero(clipped != starts)  # tokens in the buffer's last bytes
    else:
        out = np.zeros((n, width), dtype=np.uint8)
        moved = np.arange(n)
    for i in moved:
        piece = buffer[int(starts[i]) : int(starts[i]) + width]
        out[i] = 0
        out[i, : len(piece)] = piece
    # Zero the bytes past each token's end: only columns beyond the shortest token hold any.
    shortest = int(lengths.min()) if n else width
    for j in range(max(shortest, 0), width):
        out[:, j] *= lengths > j
    return out


# ------------------------------------------------------------------------------------ numbers


#: parse_numbers() results: (floats, float_ok, int_ok).
Parsed = tuple[np.ndarray, np.ndarray, np.ndarray]


def parse_numbers(tokens: PackedTokens) -> Parsed:
    """Parses plain decimal tokens exactly, in bulk.

    Returns ``(floats, float_ok, int_ok)``. ``float_ok[i]`` claims token ``i`` has the form
    ``[+-]?(digits[.digits]|.digits)([eE][+-]?digits)?``; then ``floats[i] == float(token)``
    exactly. The value is the integer M spelt by the mantissa digits times 10^p; when M ≤ 2^53
    and |p| ≤ 22 one float64 multiplication or division by an exact power of ten rounds it
    correctly (Clinger's fast path). Up to 18 digits and |p| ≤ 27 it is rounded once in long
    double, where that is wider, and once to float64; the second rounding can only differ from
    rounding the exact value when the first lands on a float64 midpoint, and such tokens are not
    claimed. ``int_ok[i]`` claims the form ``[+-]?digits`` with M ≤ 2^53; then ``floats[i] ==
    int(token)`` exactly. Tokens not claimed (``nan``, ``<NA>``, 20-digit numbers, text...) are
    for the caller's per-value code.
    """
    return parse_many([tokens])[0]


def parse_many(columns: list[PackedTokens]) -> list[Parsed]:
    """:func:`parse_numbers` of columns of equal length over one buffer (a loop's columns),
    taken a block of rows at a time: each stretch of the buffer is read once, not once per
    column."""
    n = len(columns[0])
    k = len(columns)
    out = [
        (np.zeros(n, dtype=np.float64), np.zeros(n, dtype=bool), np.zeros(n, dtype=bool))
        for _ in columns
    ]
    step = max(1, _ROW_BLOCK // k)
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        starts = np.stack([c.starts[lo:hi] for c in columns], axis=1).reshape(-1)
        ends = np.stack([c.ends[lo:hi] for c in columns], axis=1).reshape(-1)
        length = (ends - starts).astype(np.int64)
        width = min(int(length.max()), MAX_NUMBER_WIDTH)
        if width == 0:
            continue
        matrix = gather(columns[0].buffer, starts, length, width)
        fits = length <= width
        floats, float_ok, int_ok = _parse_block(
            np.ascontiguousarray(matrix.T), np.minimum(length, width)
        )
        float_ok &= fits
        int_ok &= fits
        for c, (f, fok, iok) in enumerate(out):
            f[lo:hi] = floats[c::k]
            fok[lo:hi] = float_ok[c::k]
            iok[lo:hi] = int_ok[c::k]
    return out


def _count(mask: np.ndarray) -> np.ndarray:
    """Per column, how many rows of ``mask`` are set (at most 255)."""
    return mask.view(np.uint8).sum(axis=0, dtype=np.uint8)


def _seen(mask: np.ndarray) -> np.ndarray:
    """``out[j] = mask[0] | ... | mask[j]`` (row loop: much faster than accumulate on axis 0)."""
    out = mask.copy()
    for j in range(1, len(out)):
        out[j] |= out[j - 1]
    return out


def _horner(digit: np.ndarray, which: np.ndarray) -> np.ndarray:
    """Per column, the integer spelt by the digits marked in ``which`` (wraps if too long)."""
    value = np.zeros(digit.shape[1], dtype=np.int64)
    for j in range(len(digit)):
        value = np.where(which[j], value * 10 + digit[j], value)
    return value


def _parse_block(m: np.ndarray, length: np.ndarray) -> Parsed:
    """:func:`parse_numbers` for ``m``: ``(width, n)`` characters (one token per column, zero
    padded) and the token lengths."""
    digit = m - np.uint8(48)  # wraps around below '0', so `digit < 10` means 0-9
    is_digit = digit < 10
    is_dot = m == 46
    negative = m[0] == 45
    n_digit = _count(is_digit)
    n_dot = _count(is_dot)
    # Most tokens are [+-]digits[.digits]: only digits and dots after an optional sign.
    simple = n_digit + n_dot + (negative | (m[0] == 43)) == length
    mantissa = _horner(digit, is_digit)
    fraction = _count(is_digit & _seen(is_dot)).astype(np.int64)
    value, exact = _scale(mantissa, -fraction)
    # At most 18 digits from the first non-zero one: the mantissa fits int64 without wrapping.
    significant = _count(is_digit & _seen(is_digit & (digit != 0)))
    float_ok = simple & (n_dot <= 1) & (n_digit >= 1) & (significant <= 18) & exact
    int_ok = float_ok & (n_dot == 0) & (mantissa <= 2**53)
    floats = np.where(negative, -value, value)
    other = np.flatnonzero(~simple)
    if len(other):  # exponents (and junk, which the general parser rejects)
        floats[other], float_ok[other] = _parse_general(m[:, other], length[other])
    return floats, float_ok, int_ok


def _parse_general(m: np.ndarray, length: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The float part of :func:`_parse_block` for any token, exponents included."""
    digit = m - np.uint8(48)
    is_digit = digit < 10
    is_dot = m == 46
    is_e = (m | 32) == 101
    is_minus = m == 45
    is_sign = is_minus | (m == 43)
    # Padding is zero bytes, none of these, so a token is all known characters iff the count of
    # known ones is its length.
    clean = _count(is_digit | is_dot | is_e | is_sign) == length
    after_e = _seen(is_e)  # the e itself and everything after it
    mantissa_digit = is_digit & ~after_e
    exponent_digit = is_digit & after_e
    n_e = _count(is_e)
    n_exponent = _count(exponent_digit)
    n_mantissa = _count(mantissa_digit)
    right_after_e = np.zeros_like(is_e)
    right_after_e[1:] = is_e[:-1]
    sign_allowed = right_after_e.copy()
    sign_allowed[0] = True
    exponent = _horner(digit, exponent_digit)
    exponent = np.where(_count(is_minus & right_after_e) > 0, -exponent, exponent)
    power = exponent - _count(mantissa_digit & _seen(is_dot))
    value, exact = _scale(_horner(digit, mantissa_digit), power)
    float_ok = (
        clean
        & (n_e <= 1)
        & (_count(is_dot) <= 1)
        & (_count(is_dot & after_e) == 0)
        & (_count(is_sign & ~sign_allowed) == 0)
        & ((n_e == 0) | ((n_exponent >= 1) & (n_exponent <= 4)))
        & (n_mantissa >= 1)
        & (_count(mantissa_digit & _seen(mantissa_digit & (digit != 0))) <= 18)
        & exact
    )
    return np.where(is_minus[0], -value, value), float_ok


def _scale(mantissa: np.ndarray, power: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``mantissa · 10^power`` correctly rounded to float64 where ``exact`` (``mantissa`` is
    below 10^18, so exact in int64 and in a 64-bit significand)."""
    exact = (np.abs(power) <= 22) & (mantissa <= 2**53)
    limited = np.clip(power, -22, 22)
    scale = _POW10[np.abs(limited)]
    value = mantissa.astype(np.float64)
    value = np.where(limited >= 0, value * scale, value / scale)
    rest = np.flatnonzero(~exact & (np.abs(power) <= 27) & (mantissa >= 0))
    if _EXTENDED and len(rest):
        wide = mantissa[rest].astype(np.longdouble)
        p = power[rest]
        scale_wide = _POW10_EXTENDED[np.abs(p)]
        rounded = np.where(p >= 0, wide * scale_wide, wide / scale_wide)
        value[rest] = narrow = rounded.astype(np.float64)
        # |rounded - narrow| is exact; a float64 midpoint lies half a spacing away (a quarter
        # below a power of two).
        gap = np.abs(rounded - narrow)
        spacing = np.spacing(narrow).astype(np.longdouble)
        exact[rest] = (gap * 2 != spacing) & (gap * 4 != spacing)
    return value, exact


# ------------------------------------------------------------------------------------ splitting


class RaggedRow(Exception):
    """A line with the wrong number of tokens (``line``: its index in the range)."""

    def __init__(self, line: int, count: int) -> None:
        super().__init__(line, count)
        self.line = line
        self.count = count


def _starts_loop_end(buffer: np.ndarray, heads: np.ndarray) -> np.ndarray:
    """Whether the tokens at ``heads`` start with ``_`` or a reserved word (any case)."""
    if len(heads) == 0:
        return np.zeros(0, dtype=bool)
    width = max(len(w) for w in _RESERVED_WORDS)
    head = gather(buffer, heads, np.full(len(heads), width), width)
    # The bytes after a token are whitespace, which no reserved word holds, so reading past a
    # short token never makes a match.
    lower = np.where((head >= 65) & (head <= 90), head | 32, head)
    found = head[:, 0] == 95
    for word in _RESERVED_WORDS:
        found |= (lower[:, : len(word)] == word).all(axis=1)
    return found


def split_rows(
    buffer: np.ndarray, lo: int, hi: int, ncols: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Splits the lines of ``buffer[lo:hi]`` into loop rows, as ``line.split()`` would.

    ``buffer`` holds ASCII without NUL; ``lo`` starts a line, lines end at ``\\n``, ``hi`` ends a
    line or the buffer. Blank lines are skipped; reading stops at the first line whose first token
    starts with ``_`` or a STAR reserved word (it ends the loop).

    Returns:
      ``(starts, ends, lines, stop, count)``: ``(rows, ncols)`` absolute token offsets, each row's
      line index in the range, the offset where reading stopped (``hi`` or the start of the
      ending line) and the number of lines read.

    Raises:
      RaggedRow: a line before the end has tokens but not ``ncols`` of them.
    """
    index_type = np.int32 if len(buffer) < 2**31 - 1 else np.int64
    if hi <= lo:
        empty = np.zeros((0, ncols), dtype=index_type)
        return empty, empty, np.zeros(0, dtype=np.int64), hi, 0
    segment = buffer[lo:hi]
    blank = segment <= 32
    low = np.flatnonzero(segment < 32)
    low_values = segment[low]
    if not _WHITESPACE[low_values].all():
        blank = _WHITESPACE[segment]  # control characters that are not whitespace
    newlines = low[low_values == 10]
    edges = np.flatnonzero(blank[1:] != blank[:-1]) + 1
    if not blank[0]:
        edges = np.concatenate(([0], edges))
    if not blank[-1]:
        edges = np.concatenate((edges, [len(segment)]))
    token_starts, token_ends = edges[0::2], edges[1::2]
    line_starts = np.concatenate(([0], newlines + 1))
    if line_starts[-1] == len(segment):
        line_starts = line_starts[:-1]  # the range ends with a newline: no line after it
    first = np.searchsorted(token_starts, line_starts)
    counts = np.diff(np.append(first, len(token_starts)))
    filled = np.flatnonzero(counts)
    stop_line = len(line_starts)
    ending = _starts_loop_end(buffer, token_starts[first[filled]] + lo)
    if ending.any():
        stop_line = int(filled[int(ending.argmax())])
        filled = filled[filled < stop_line]
    ragged = filled[counts[filled] != ncols]
    if len(ragged):
        line = int(ragged[0])
        raise RaggedRow(line, int(counts[line]))
    used = int(first[stop_line]) if stop_line < len(line_starts) else len(token_starts)
    starts = (token_starts[:used] + lo).astype(index_type).reshape(-1, ncols)
    ends = (token_ends[:used] + lo).astype(index_type).reshape(-1, ncols)
    stop = lo + int(line_starts[stop_line]) if stop_line < len(line_starts) else hi
    return starts, ends, filled, stop, stop_line
