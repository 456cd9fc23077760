"""Analysis helpers over fetched STEs and CDs, built on the architecture's declarations.

The layouts and the "used bits" (IGNORED) rules are the model's own, declared once in
cosim/arch/ste.py (§5.2) and cosim/arch/cd.py (§5.4); this module adds what only the analysis
needs: reading the qwords a trace record carries, comparing an observed state with the old and
new entries of an update, and the parts of the domain a fetched configuration denotes.
"""

from __future__ import annotations

from cosim.arch.bitfield import WORD_MASK, Layout
from cosim.arch.cd import CD, CD_WORDS
from cosim.arch.ste import STE, STE_WORDS, config_name

QWORDS = STE_WORDS  # STEs and CDs are both 64 bytes (§5.2, §5.4)
assert CD_WORDS == QWORDS


def qwords(value: object) -> tuple[int, ...] | None:
    """The 8 qwords of a fetched structure, or None when the record does not carry them."""
    if not isinstance(value, list) or len(value) != QWORDS:
        return None
    if not all(isinstance(q, int) and 0 <= q <= WORD_MASK for q in value):
        return None
    return tuple(value)


def mismatched_bits(state: tuple[int, ...], old: tuple[int, ...], new: tuple[int, ...],
                    used: list[int]) -> list[int]:
    """Per qword, the used bits of `state` that equal neither `old` nor `new`."""
    return [used[q] & (state[q] ^ old[q]) & (state[q] ^ new[q]) for q in range(QWORDS)]


def is_valid(table: Layout, qws: tuple[int, ...]) -> bool:
    return bool(table["V"].of_words(qws))


def ste_stage_parts(ste: tuple[int, ...]) -> tuple[str, tuple | None]:
    """(config name, stage 2 part of the domain it denotes or None)."""
    cfg = config_name(ste)
    s2 = None
    if cfg in ("s2", "nested"):
        ttb = STE["S2TTB"]
        s2 = ("s2", STE["S2VMID"].of_words(ste), ttb.of_words(ste) << ttb.word_lo)
    return cfg, s2


def cd_stage1_part(cd: tuple[int, ...]) -> tuple | None:
    if not CD["V"].of_words(cd):
        return None
    ttb = CD["TTB0"]
    return ("s1", CD["ASID"].of_words(cd), ttb.of_words(cd) << ttb.word_lo)
