"""STE and CD layouts and the bits each configuration uses.

One declarative field table per structure (Arm IHI 0070 H.a §5.2 "Stream Table Entry" and §5.4
"Context Descriptor"); the used-bit masks, the field names in reports and the domain a fetched
configuration denotes are all derived from these tables.

"Used bits" follows the architecture's IGNORED rules: an STE with V=0 uses only V (§5.2: the
rest is not interpreted); Config (§5.2, STE.Config) selects which stage fields are consulted:
stage 1 fields are IGNORED unless Config[0] is set, stage 2 fields (all S2*, except S2VMID,
which also tags stage 1 TLB entries) unless Config[1] is set; the attribute overrides
(SHCFG, MTCFG, ...; §13.5) matter for bypass and for stage 1 with S1DSS=bypass. A CD with V=0
uses only V; with V=1 everything, except the TT0 (TT1) walk fields when EPD0 (EPD1) disables
those walks (§5.4, CD.EPD0/EPD1).
"""

from __future__ import annotations

from dataclasses import dataclass

QWORDS = 8  # STEs and CDs are both 64 bytes (§5.2, §5.4)
_ALL = (1 << 64) - 1


@dataclass(frozen=True)
class Field:
    name: str
    qw: int
    lsb: int
    width: int

    @property
    def mask(self) -> int:
        return ((1 << self.width) - 1) << self.lsb

    def get(self, qws: tuple[int, ...]) -> int:
        return (qws[self.qw] >> self.lsb) & ((1 << self.width) - 1)


def _table(*fields: tuple[str, int, int, int]) -> dict[str, Field]:
    return {f[0]: Field(*f) for f in fields}


# §5.2 Stream Table Entry (non-secure fields).
STE = _table(
    ("V", 0, 0, 1), ("Config", 0, 1, 3), ("S1Fmt", 0, 4, 2), ("S1ContextPtr", 0, 6, 46),
    ("S1CDMax", 0, 59, 5),
    ("S1DSS", 1, 0, 2), ("S1CIR", 1, 2, 2), ("S1COR", 1, 4, 2), ("S1CSH", 1, 6, 2),
    ("S2HWU", 1, 8, 4), ("DRE", 1, 12, 1), ("CONT", 1, 13, 4), ("DCP", 1, 17, 1),
    ("PPAR", 1, 18, 1), ("MEV", 1, 19, 1), ("S2FWB", 1, 25, 1), ("S1MPAM", 1, 26, 1),
    ("S1STALLD", 1, 27, 1), ("EATS", 1, 28, 2), ("STRW", 1, 30, 2), ("MemAttr", 1, 32, 4),
    ("MTCFG", 1, 36, 1), ("ALLOCCFG", 1, 37, 4), ("SHCFG", 1, 44, 2), ("NSCFG", 1, 46, 2),
    ("PRIVCFG", 1, 48, 2), ("INSTCFG", 1, 50, 2),
    ("S2VMID", 2, 0, 16), ("S2T0SZ", 2, 32, 6), ("S2SL0", 2, 38, 2), ("S2IR0", 2, 40, 2),
    ("S2OR0", 2, 42, 2), ("S2SH0", 2, 44, 2), ("S2TG", 2, 46, 2), ("S2PS", 2, 48, 3),
    ("S2AA64", 2, 51, 1), ("S2ENDI", 2, 52, 1), ("S2AFFD", 2, 53, 1), ("S2PTW", 2, 54, 1),
    ("S2HD", 2, 55, 1), ("S2HA", 2, 56, 1), ("S2S", 2, 57, 1), ("S2R", 2, 58, 1),
    ("S2TTB", 3, 4, 48),
)

# §5.4 Context Descriptor.
CD = _table(
    ("T0SZ", 0, 0, 6), ("TG0", 0, 6, 2), ("IR0", 0, 8, 2), ("OR0", 0, 10, 2), ("SH0", 0, 12, 2),
    ("EPD0", 0, 14, 1), ("ENDI", 0, 15, 1), ("T1SZ", 0, 16, 6), ("TG1", 0, 22, 2),
    ("IR1", 0, 24, 2), ("OR1", 0, 26, 2), ("SH1", 0, 28, 2), ("EPD1", 0, 30, 1), ("V", 0, 31, 1),
    ("IPS", 0, 32, 3), ("AFFD", 0, 35, 1), ("WXN", 0, 36, 1), ("UWXN", 0, 37, 1),
    ("TBI", 0, 38, 2), ("PAN", 0, 40, 1), ("AA64", 0, 41, 1), ("HD", 0, 42, 1), ("HA", 0, 43, 1),
    ("S", 0, 44, 1), ("R", 0, 45, 1), ("A", 0, 46, 1), ("ASET", 0, 47, 1), ("ASID", 0, 48, 16),
    ("NSCFG0", 1, 0, 1), ("HAD0", 1, 1, 1), ("TTB0", 1, 4, 48), ("HWU0", 1, 59, 4),
    ("NSCFG1", 2, 0, 1), ("HAD1", 2, 1, 1), ("TTB1", 2, 4, 48), ("HWU1", 2, 59, 4),
    ("MAIR", 3, 0, 64), ("AMAIR", 4, 0, 64), ("IMPDEF", 5, 0, 32),
    ("PARTID", 6, 0, 16), ("PMG", 6, 16, 8),
)

# STE.Config encodings (§5.2) and the names the trace's `ste_fetch.cfg` uses for them.
CONFIG_NAMES = {0b000: "abort", 0b100: "bypass", 0b101: "s1", 0b110: "s2", 0b111: "nested"}
S1DSS_BYPASS = 0b01
S1DSS_SSID0 = 0b10

_STE_ALWAYS = ("V", "Config")
_STE_OVERRIDES = ("SHCFG", "MTCFG", "MemAttr", "ALLOCCFG", "NSCFG", "PRIVCFG", "INSTCFG")
_STE_S1 = ("S1Fmt", "S1ContextPtr", "S1CDMax", "S1DSS", "S1CIR", "S1COR", "S1CSH", "S1STALLD",
           "EATS", "STRW", "S2VMID", "MEV")
_STE_S2 = ("EATS", "SHCFG", "S2FWB", "MEV", "S2VMID", "S2T0SZ", "S2SL0", "S2IR0", "S2OR0",
           "S2SH0", "S2TG", "S2PS", "S2AA64", "S2ENDI", "S2AFFD", "S2PTW", "S2HD", "S2HA",
           "S2S", "S2R", "S2HWU", "S2TTB")
_CD_TT0 = ("T0SZ", "TG0", "IR0", "OR0", "SH0", "TTB0")
_CD_TT1 = ("T1SZ", "TG1", "IR1", "OR1", "SH1", "TTB1")


def _mask_of(table: dict[str, Field], names: tuple[str, ...] | list[str]) -> list[int]:
    m = [0] * QWORDS
    for n in names:
        f = table[n]
        m[f.qw] |= f.mask
    return m


def qwords(value: object) -> tuple[int, ...] | None:
    """The 8 qwords of a fetched structure, or None when the record does not carry them."""
    if not isinstance(value, list) or len(value) != QWORDS:
        return None
    if not all(isinstance(q, int) and 0 <= q <= _ALL for q in value):
        return None
    return tuple(value)


def ste_config(ste: tuple[int, ...]) -> str:
    if not STE["V"].get(ste):
        return "invalid"
    return CONFIG_NAMES.get(STE["Config"].get(ste), "invalid")


def ste_used(ste: tuple[int, ...]) -> list[int]:
    """Used-bit mask (per qword) of an STE, from its own V and Config (§5.2)."""
    if not STE["V"].get(ste):
        return _mask_of(STE, ["V"])
    cfg = STE["Config"].get(ste)
    names: list[str] = list(_STE_ALWAYS)
    if cfg == 0b100:
        names += _STE_OVERRIDES
    if cfg & 0b100 and cfg & 0b001:
        names += _STE_S1
        if STE["S1DSS"].get(ste) == S1DSS_BYPASS:
            names += _STE_OVERRIDES
    if cfg & 0b100 and cfg & 0b010:
        names += _STE_S2
    return _mask_of(STE, names)


def cd_used(cd: tuple[int, ...]) -> list[int]:
    """Used-bit mask of a CD (§5.4): V alone when invalid, else all but disabled-walk fields."""
    if not CD["V"].get(cd):
        return _mask_of(CD, ["V"])
    m = [_ALL] * QWORDS
    ignored: list[str] = []
    if CD["EPD0"].get(cd):
        ignored += _CD_TT0
    if CD["EPD1"].get(cd):
        ignored += _CD_TT1
    for q, bits in enumerate(_mask_of(CD, ignored)):
        m[q] &= ~bits
    return m


def mismatched_bits(state: tuple[int, ...], old: tuple[int, ...], new: tuple[int, ...],
                    used: list[int]) -> list[int]:
    """Per qword, the used bits of `state` that equal neither `old` nor `new`."""
    return [used[q] & (state[q] ^ old[q]) & (state[q] ^ new[q]) for q in range(QWORDS)]


def fields_in(table: dict[str, Field], bits: list[int]) -> list[str]:
    return [f.name for f in table.values() if bits[f.qw] & f.mask]


def is_valid(table: dict[str, Field], qws: tuple[int, ...]) -> bool:
    return bool(table["V"].get(qws))


def ste_stage_parts(ste: tuple[int, ...]) -> tuple[str, tuple | None]:
    """(config name, stage 2 part of the domain it denotes or None)."""
    cfg = ste_config(ste)
    s2 = None
    if cfg in ("s2", "nested"):
        s2 = ("s2", STE["S2VMID"].get(ste), STE["S2TTB"].get(ste) << STE["S2TTB"].lsb)
    return cfg, s2


def cd_stage1_part(cd: tuple[int, ...]) -> tuple | None:
    if not CD["V"].get(cd):
        return None
    return ("s1", CD["ASID"].get(cd), CD["TTB0"].get(cd) << CD["TTB0"].lsb)
