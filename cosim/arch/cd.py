"""Context Descriptor and Level 1 Context Descriptor (Arm IHI 0070 §5.3, §5.4).

The CD layout with the specification's absolute bit numbers, the TG1 and S1Fmt-dependent leaf
encodings, and the IGNORED rule ("used bits"). The model (cosim/smmu/context_descriptor.py) and
the analysis (cosim/analyzer) both read CDs through this one declaration.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from .bitfield import WORD_MASK, Layout
from .ste import S1FMT_4K_L2, S1FMT_64K_L2

CD_BYTES = 64
L1CD_BYTES = 8

# §5.4: the CD as one 512-bit value. TTB0/TTB1 hold table base bits [51:4] ([115:68],
# [179:132]; the wider form is VMSAv9-128 only). TBI is TBI0 and TBI1, MAIR is MAIR0 and MAIR1,
# AMAIR is AMAIR0 and AMAIR1, HWU0/HWU1 are HWU059..HWU062 / HWU159..HWU162, each as one field.
CD = Layout("CD", 512, {
    "T0SZ": (5, 0), "TG0": (7, 6), "IR0": (9, 8), "OR0": (11, 10), "SH0": (13, 12),
    "EPD0": 14, "ENDI": 15, "T1SZ": (21, 16), "TG1": (23, 22), "IR1": (25, 24),
    "OR1": (27, 26), "SH1": (29, 28), "EPD1": 30, "V": 31, "IPS": (34, 32), "AFFD": 35,
    "WXN": 36, "UWXN": 37, "TBI": (39, 38), "PAN": 40, "AA64": 41, "HD": 42, "HA": 43,
    "S": 44, "R": 45, "A": 46, "ASET": 47, "ASID": (63, 48),
    "NSCFG0": 64, "HAD0": 65, "E0PD0": 66, "TTB0": (115, 68), "HWU0": (127, 124),
    "NSCFG1": 128, "HAD1": 129, "E0PD1": 130, "TTB1": (179, 132), "HWU1": (191, 188),
    "MAIR": (255, 192), "AMAIR": (319, 256), "IMPDEF": (351, 320), "PARTID": (367, 352),
    "PMG": (375, 368),
})
CD_WORDS = CD.nwords
# The fetched CD as little-endian 64-bit words, the order decode_words indexes them in.
_CD_QWORDS = struct.Struct(f"<{CD_WORDS}Q")
# TTB0/TTB1 hold table base address bits [51:4] in place.
TTB_SHIFT = CD["TTB0"].word_lo
assert CD["TTB1"].word_lo == TTB_SHIFT

# §5.3: Level 1 Context Descriptor.
L1CD = Layout("L1CD", 64, {"V": 0, "L2Ptr": (51, 12)})

# CD.TG1 uses a different encoding from TG0 (§5.4; TG0 shares STE.S2TG's, see ste.py).
TG1_GRANULE = {1: 16384, 2: 4096, 3: 65536}
# Number of SSID bits indexing a leaf table, by STE.S1Fmt (§5.2 S1Fmt).
LEAF_BITS = {S1FMT_4K_L2: 6, S1FMT_64K_L2: 10}


def cd_words(data: bytes) -> list[int]:
    """The 64-byte CD as 64-bit words, the form decoders take and traces record."""
    return list(_CD_QWORDS.unpack(data))


def encode_cd(**fields: int) -> list[int]:
    """CD words from named fields (test driver, tools, synthetic traces)."""
    return CD.encode_words(**fields)


# -- used bits (§5.4 IGNORED rules) ------------------------------------------------------------
# A CD with V=0 uses only V; with V=1 everything, except the TT0 (TT1) walk fields when EPD0
# (EPD1) disables those walks (§5.4, CD.EPD0/EPD1).
_TT0 = ("T0SZ", "TG0", "IR0", "OR0", "SH0", "TTB0")
_TT1 = ("T1SZ", "TG1", "IR1", "OR1", "SH1", "TTB1")


def cd_used(words: Sequence[int]) -> list[int]:
    """Used-bit mask of a CD, per 64-bit word (§5.4)."""
    if not CD["V"].of_words(words):
        return CD.word_masks(["V"])
    ignored: list[str] = []
    if CD["EPD0"].of_words(words):
        ignored += _TT0
    if CD["EPD1"].of_words(words):
        ignored += _TT1
    return [WORD_MASK & ~bits for bits in CD.word_masks(ignored)]
