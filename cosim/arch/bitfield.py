"""Declarative bit-field layouts: one table per register or in-memory structure, used both to
decode a value into named fields and to encode named fields into a value.

Multi-word structures (STEs, CDs, commands, event records) are handled as one little-endian
integer built from their 64-bit words, so field positions are written as the absolute bit
numbers the SMMUv3 specification uses (e.g. STE.EATS at bits [93:92] = word 1 bits [29:28]).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

WORD_BITS = 64
WORD_MASK = (1 << WORD_BITS) - 1


@dataclass(frozen=True)
class Field:
    name: str
    hi: int
    lo: int
    # Derived once from [hi:lo]: `get` runs on every register access and descriptor decode.
    mask: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "mask", ((1 << self.width) - 1) << self.lo)

    @property
    def width(self) -> int:
        return self.hi - self.lo + 1


class Layout:
    """A named set of fields over an `nbits`-wide value."""

    def __init__(self, name: str, nbits: int, fields: dict[str, tuple[int, int] | int]) -> None:
        self.name = name
        self.nbits = nbits
        self.fields: dict[str, Field] = {}
        for fname, pos in fields.items():
            hi, lo = (pos, pos) if isinstance(pos, int) else pos
            if not (0 <= lo <= hi < nbits):
                raise ValueError(f"{name}.{fname}: bits [{hi}:{lo}] outside {nbits}-bit layout")
            self.fields[fname] = Field(fname, hi, lo)
        # Per-word extraction plan for `decode_words`, derived from the same table: a field
        # inside one 64-bit word is read as (word >> shift) & mask without joining the words.
        self._word_plan: list[tuple[str, int, int, int]] = []
        self._spanning: list[Field] = []
        for f in self.fields.values():
            word = f.lo // WORD_BITS
            if f.hi // WORD_BITS == word:
                self._word_plan.append((f.name, word, f.lo - word * WORD_BITS,
                                        (1 << f.width) - 1))
            else:
                self._spanning.append(f)

    @property
    def nbytes(self) -> int:
        return self.nbits // 8

    @property
    def nwords(self) -> int:
        return max(1, self.nbits // WORD_BITS)

    def get(self, value: int, name: str) -> int:
        f = self.fields[name]
        return (value & f.mask) >> f.lo

    def set(self, value: int, name: str, field_value: int) -> int:
        f = self.fields[name]
        return (value & ~f.mask) | ((int(field_value) << f.lo) & f.mask)

    def decode(self, value: int) -> dict[str, int]:
        return {n: (value & f.mask) >> f.lo for n, f in self.fields.items()}

    def decode_words(self, words: Sequence[int]) -> dict[str, int]:
        """`decode(from_words(words))`, without building the wide integer."""
        if self._spanning:
            return self.decode(self.from_words(words))
        if len(words) < self.nwords:
            # Missing words read as zero, as in from_words.
            words = list(words) + [0] * (self.nwords - len(words))
        return {n: ((words[w] & WORD_MASK) >> sh) & m for n, w, sh, m in self._word_plan}

    def encode(self, **values: int) -> int:
        out = 0
        for n, v in values.items():
            out = self.set(out, n, v)
        return out

    def defined_mask(self) -> int:
        m = 0
        for f in self.fields.values():
            m |= f.mask
        return m

    # -- multi-word helpers --------------------------------------------------------------
    def from_words(self, words: Sequence[int]) -> int:
        return join_words(words)

    def to_words(self, value: int) -> list[int]:
        return split_words(value, self.nwords)

    def from_bytes(self, data: bytes) -> int:
        return int.from_bytes(data[: self.nbytes], "little")

    def to_bytes(self, value: int) -> bytes:
        return value.to_bytes(self.nbytes, "little")


def join_words(words: Iterable[int]) -> int:
    out = 0
    for i, w in enumerate(words):
        out |= (w & WORD_MASK) << (WORD_BITS * i)
    return out


def split_words(value: int, n: int) -> list[int]:
    return [(value >> (WORD_BITS * i)) & WORD_MASK for i in range(n)]


def mask(hi: int, lo: int = 0) -> int:
    """Bits [hi:lo] set."""
    return ((1 << (hi - lo + 1)) - 1) << lo
