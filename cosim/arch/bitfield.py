"""Declarative bit-field layouts: one table per register, descriptor or in-memory record, used
to decode a value into named fields, to encode named fields into a value, by the analysis and by
the C header generators. This is the only field mechanism in cosim.

Multi-word structures (STEs, CDs, commands, event records) are handled as one little-endian
integer built from their 64-bit words, so field positions are written as the absolute bit
numbers the SMMUv3 specification uses (e.g. STE.EATS at bits [93:92] = word 1 bits [29:28]).
Hot paths do not go through names: they derive shifts and masks from the `Field`s once, at
import or configuration time (`Layout.decode_words` has such a plan built in).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

WORD_BITS = 64
WORD_MASK = (1 << WORD_BITS) - 1


@dataclass(frozen=True)
class Field:
    """Bits [hi:lo] of a layout. `mask` is the field in place; `max` its largest value."""

    name: str
    hi: int
    lo: int
    # Derived once from [hi:lo]: `get` runs on every register access and descriptor decode.
    mask: int = field(init=False, repr=False, compare=False)
    max: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "max", (1 << self.width) - 1)
        object.__setattr__(self, "mask", self.max << self.lo)

    @property
    def width(self) -> int:
        return self.hi - self.lo + 1

    # -- position inside the 64-bit words of a multi-word structure ---------------------------
    @property
    def word(self) -> int:
        """Index of the 64-bit word holding the field's low bit."""
        return self.lo // WORD_BITS

    @property
    def word_lo(self) -> int:
        """The field's low bit inside its word. Address fields (table pointers, queue bases,
        fault addresses) hold their address bits in place: address = value << word_lo."""
        return self.lo - self.word * WORD_BITS

    @property
    def word_mask(self) -> int:
        """The field in place inside its word (a field spanning words: its low word's part)."""
        return self.mask >> (self.word * WORD_BITS) & WORD_MASK

    def get(self, value: int) -> int:
        return (value & self.mask) >> self.lo

    def put(self, value: int, field_value: int) -> int:
        """`value` with this field replaced by `field_value`, which must fit."""
        if not 0 <= field_value <= self.max:
            raise ValueError(f"{self.name}={field_value:#x} does not fit {self.width} bits")
        return (value & ~self.mask) | (field_value << self.lo)

    def of_words(self, words: Sequence[int]) -> int:
        """The field read from a structure given as 64-bit words (analysis, tools)."""
        return self.get(join_words(words))


class Layout:
    """A named set of fields over an `nbits`-wide value.

    Fields may share bits only where the architecture overlays them (a command's fields depend
    on its opcode, an event record's on its type); `overlaps` lists those pairs, and a unit test
    checks that no other pair overlaps.
    """

    def __init__(self, name: str, nbits: int, fields: dict[str, tuple[int, int] | int],
                 overlaps: Iterable[tuple[str, str]] = ()) -> None:
        self.name = name
        self.nbits = nbits
        self.fields: dict[str, Field] = {}
        for fname, pos in fields.items():
            hi, lo = (pos, pos) if isinstance(pos, int) else pos
            if not (0 <= lo <= hi < nbits):
                raise ValueError(f"{name}.{fname}: bits [{hi}:{lo}] outside {nbits}-bit layout")
            self.fields[fname] = Field(fname, hi, lo)
        self.overlaps: frozenset[frozenset[str]] = frozenset(frozenset(p) for p in overlaps)
        for pair in self.overlaps:
            for fname in pair:
                if fname not in self.fields:
                    raise KeyError(f"{name}: overlap names unknown field {fname}")
        self._defined = 0
        for f in self.fields.values():
            self._defined |= f.mask
        # Per-word extraction plan for `decode_words`, derived from the same table: a field
        # inside one 64-bit word is read as (word >> shift) & mask without joining the words.
        self._word_plan: list[tuple[str, int, int, int]] = []
        self._spanning: list[Field] = []
        for f in self.fields.values():
            if f.hi // WORD_BITS == f.word:
                self._word_plan.append((f.name, f.word, f.word_lo, f.max))
            else:
                self._spanning.append(f)

    def __getitem__(self, name: str) -> Field:
        return self.fields[name]

    def __contains__(self, name: object) -> bool:
        return name in self.fields

    def __repr__(self) -> str:
        return f"Layout({self.name!r}, {self.nbits}, {len(self.fields)} fields)"

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
        """`value` with field `name` replaced by the low bits of `field_value` (a register
        write keeps what fits, as the hardware's field does)."""
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
        """A value from named fields; an unknown name or a value that does not fit raises."""
        out = 0
        for n, v in values.items():
            f = self.fields.get(n)
            if f is None:
                raise KeyError(f"{self.name} has no field {n}")
            out = f.put(out, v)
        return out

    def defined_mask(self) -> int:
        """Every bit some field covers (a register write keeps only these)."""
        return self._defined

    def word_masks(self, names: Iterable[str]) -> list[int]:
        """Per 64-bit word, the bits of the named fields (the analysis' used-bit masks)."""
        m = 0
        for n in names:
            m |= self.fields[n].mask
        return split_words(m, self.nwords)

    def fields_in(self, word_bits: Sequence[int]) -> list[str]:
        """Names of the fields that have a bit set in `word_bits` (per 64-bit word)."""
        bits = join_words(word_bits)
        return [f.name for f in self.fields.values() if bits & f.mask]

    def overlapping_pairs(self) -> list[tuple[str, str]]:
        """Every pair of fields that share a bit (declared in `overlaps` or not)."""
        fs = list(self.fields.values())
        return [(a.name, b.name) for i, a in enumerate(fs) for b in fs[i + 1:]
                if a.mask & b.mask]

    # -- multi-word helpers --------------------------------------------------------------
    def from_words(self, words: Sequence[int]) -> int:
        return join_words(words)

    def to_words(self, value: int) -> list[int]:
        return split_words(value, self.nwords)

    def encode_words(self, **values: int) -> list[int]:
        return self.to_words(self.encode(**values))

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

