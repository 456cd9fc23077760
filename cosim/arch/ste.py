"""Stream Table Entry and Level 1 Stream Table Descriptor (Arm IHI 0070 §5.1, §5.2).

The STE layout with the specification's absolute bit numbers, the encodings of its
Config/S1Fmt/S1DSS/EATS/STRW/S2TG fields, and the architecture's IGNORED rule ("used bits"):
which bits a given STE's own V and Config make the SMMU interpret. The model's legality checks
(cosim/smmu/stream_table.py) and the analysis (cosim/analyzer) both read STEs through this one
declaration.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from .bitfield import Layout

STE_BYTES = 64
L1STD_BYTES = 8

# §5.2: the STE, as one 512-bit little-endian value (non-secure fields this project reads).
# S1ContextPtr and S2TTB stop at bit 51 of the address ([51:6], [243:196]): IHI 0070 widens
# them to 56-bit addresses, whose upper bits are RES0 above SMMU_IDR5.OAS, and OAS <= 52 here.
# S2HWU is S2HWU59..S2HWU62, bits [75:72], as one field.
STE = Layout("STE", 512, {
    "V": 0, "Config": (3, 1), "S1Fmt": (5, 4), "S1ContextPtr": (51, 6), "S1CDMax": (63, 59),
    "S1DSS": (65, 64), "S1CIR": (67, 66), "S1COR": (69, 68), "S1CSH": (71, 70),
    "S2HWU": (75, 72), "DRE": 76, "CONT": (80, 77), "DCP": 81, "PPAR": 82, "MEV": 83,
    "S2FWB": 89, "S1MPAM": 90, "S1STALLD": 91, "EATS": (93, 92), "STRW": (95, 94),
    "MemAttr": (99, 96), "MTCFG": 100, "ALLOCCFG": (104, 101), "SHCFG": (109, 108),
    "NSCFG": (111, 110), "PRIVCFG": (113, 112), "INSTCFG": (115, 114),
    "S2VMID": (143, 128), "S2T0SZ": (165, 160), "S2SL0": (167, 166), "S2IR0": (169, 168),
    "S2OR0": (171, 170), "S2SH0": (173, 172), "S2TG": (175, 174), "S2PS": (178, 176),
    "S2AA64": 179, "S2ENDI": 180, "S2AFFD": 181, "S2PTW": 182, "S2HD": 183, "S2HA": 184,
    "S2S": 185, "S2R": 186,
    "S2TTB": (243, 196),
})
STE_WORDS = STE.nwords
# The fetched STE as little-endian 64-bit words, the order decode_words indexes them in.
_STE_QWORDS = struct.Struct(f"<{STE_WORDS}Q")

# §5.1: Level 1 Stream Table Descriptor.
L1STD = Layout("L1STD", 64, {"Span": (4, 0), "L2Ptr": (51, 6)})

# STE.Config (§5.2): bit 0 of the upper pair = stage 1 translates, bit 1 = stage 2 translates.
CONFIG_ABORT = 0b000
CONFIG_BYPASS = 0b100
CONFIG_S1 = 0b101
CONFIG_S2 = 0b110
CONFIG_NESTED = 0b111
CONFIG_S1_BIT = 0b001
CONFIG_S2_BIT = 0b010
CONFIG_TRANSLATE_BIT = 0b100
# The names the trace's `ste_fetch.cfg` and the domains use for them.
CONFIG_NAMES = {CONFIG_ABORT: "abort", CONFIG_BYPASS: "bypass", CONFIG_S1: "s1",
                CONFIG_S2: "s2", CONFIG_NESTED: "nested"}

S1FMT_LINEAR, S1FMT_4K_L2, S1FMT_64K_L2, S1FMT_RESERVED = 0, 1, 2, 3
S1DSS_TERMINATE, S1DSS_BYPASS, S1DSS_SSID0, S1DSS_RESERVED = 0, 1, 2, 3
EATS_ABORT, EATS_TRANS, EATS_S1CHK, EATS_DPT = 0, 1, 2, 3
STRW_NSEL1, STRW_EL2 = 0, 2
STRW_RESERVED_BIT = 0b01     # STRW 0bx1 is Reserved, ILLEGAL where STRW is used (§5.2)

# STE.S2TG and CD.TG0 share this encoding (§5.2, §5.4).
TG0_GRANULE = {0: 4096, 1: 65536, 2: 16384}


def ste_words(data: bytes) -> list[int]:
    """The 64-byte STE as 64-bit words, the form decoders take and traces record."""
    return list(_STE_QWORDS.unpack(data))


def encode_ste(**fields: int) -> list[int]:
    """STE words from named fields (test driver, tools, synthetic traces)."""
    return STE.encode_words(**fields)


def config_name(words: Sequence[int]) -> str:
    """abort | bypass | s1 | s2 | nested, or 'invalid' for V=0. The Reserved Config values
    0b001-0b011 behave as 0b000 (§5.2 Config), so they are 'abort'."""
    if not STE["V"].of_words(words):
        return "invalid"
    return CONFIG_NAMES.get(STE["Config"].of_words(words), "abort")


def may_serve_ats(words: Sequence[int]) -> bool:
    """Can a stream with this STE get a successful ATS Translation Completion? Not when it is
    invalid, aborts or bypasses, or has EATS=0b00 (§3.9.1.2: all those complete with UR). EATS
    0b10 counts as serving: it does when SMMU_CR0.ATSCHK=1, which the STE alone cannot tell."""
    if not STE["V"].of_words(words):
        return False
    if STE["Config"].of_words(words) not in (CONFIG_S1, CONFIG_S2, CONFIG_NESTED):
        return False
    return STE["EATS"].of_words(words) != EATS_ABORT


# -- used bits (§5.2 IGNORED rules) ------------------------------------------------------------
# An STE with V=0 uses only V ("Other STE fields are IGNORED"). Config selects which stage
# fields are consulted: stage 1 fields are IGNORED unless Config[0] is set, stage 2 fields
# (all S2*, except S2VMID, which also tags stage 1 TLB entries) unless Config[1] is set; the
# attribute overrides (SHCFG, MTCFG, ...; §13.5) matter for bypass and for stage 1 with
# S1DSS=bypass.
_USED_ALWAYS = ("V", "Config")
_USED_OVERRIDES = ("SHCFG", "MTCFG", "MemAttr", "ALLOCCFG", "NSCFG", "PRIVCFG", "INSTCFG")
_USED_S1 = ("S1Fmt", "S1ContextPtr", "S1CDMax", "S1DSS", "S1CIR", "S1COR", "S1CSH",
            "S1STALLD", "EATS", "STRW", "S2VMID", "MEV")
_USED_S2 = ("EATS", "SHCFG", "S2FWB", "MEV", "S2VMID", "S2T0SZ", "S2SL0", "S2IR0", "S2OR0",
            "S2SH0", "S2TG", "S2PS", "S2AA64", "S2ENDI", "S2AFFD", "S2PTW", "S2HD", "S2HA",
            "S2S", "S2R", "S2HWU", "S2TTB")


def used_fields(words: Sequence[int]) -> list[str]:
    """The fields an STE's own V and Config make the SMMU interpret (§5.2)."""
    if not STE["V"].of_words(words):
        return ["V"]
    cfg = STE["Config"].of_words(words)
    names: list[str] = list(_USED_ALWAYS)
    if cfg == CONFIG_BYPASS:
        names += _USED_OVERRIDES
    if cfg & CONFIG_TRANSLATE_BIT and cfg & CONFIG_S1_BIT:
        names += _USED_S1
        if STE["S1DSS"].of_words(words) == S1DSS_BYPASS:
            names += _USED_OVERRIDES
    if cfg & CONFIG_TRANSLATE_BIT and cfg & CONFIG_S2_BIT:
        names += _USED_S2
    return names


def ste_used(words: Sequence[int]) -> list[int]:
    """Used-bit mask of an STE, per 64-bit word (§5.2)."""
    return STE.word_masks(used_fields(words))
