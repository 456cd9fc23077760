"""Context descriptor tables and CD decode (Arm IHI 0070 §3.3.2, §5.3, §5.4).

The CD layout and its encodings are declared in cosim/arch/cd.py. `select_substream` applies
the SubstreamID rules of the STE (S1CDMax, S1DSS); `cd_address` walks a linear or 2-level CD
table (fetch faults -> F_CD_FETCH, invalid L1CD -> C_BAD_SUBSTREAMID); `decode_cd` checks a CD
against §5.4's validity rules (-> C_BAD_CD).
"""

from __future__ import annotations

from dataclasses import dataclass

from cosim.arch.cd import (
    CD,
    CD_BYTES,
    L1CD,
    L1CD_BYTES,
    LEAF_BITS,
    TG1_GRANULE,
    TTB_SHIFT,
    cd_words,
)
from cosim.arch.events import EVENT_RECORD
from cosim.arch.ste import S1DSS_BYPASS, S1DSS_SSID0, S1DSS_TERMINATE, TG0_GRANULE
from cosim.memory import BusError, GuestMemory, read_or_none

from .event_queue import EventRecord
from .options import SmmuOptions
from .stream_table import TTB_48BIT_LIMIT, Ste, effective_oas
from .walker import TXSZ_MIN, Stage1Regime, StageConfig, stage1_config_legal

# Address fields hold their address bits in place (field value << its low bit in the word).
_L2PTR_LO = L1CD["L2Ptr"].word_lo
_FETCH_ADDR_LO = EVENT_RECORD["FetchAddr"].word_lo


@dataclass
class SubstreamChoice:
    """What to do for a transaction's (SubstreamID-present?, value) under this STE."""

    index: int | None           # CD index to use, or None
    bypass_s1: bool = False     # S1DSS=bypass: no stage 1 for non-substream traffic
    event: EventRecord | None = None


def select_substream(ste: Ste, sid: int, ssid: int | None) -> SubstreamChoice:
    """§3.3.2 / §5.2 S1DSS and S1CDMax: which CD (if any) this transaction uses."""
    if ssid is None:
        if ste.s1cdmax == 0:
            return SubstreamChoice(0)
        if ste.s1dss == S1DSS_TERMINATE:
            # Non-substream traffic is terminated and reported (S1DSS=0b00).
            return SubstreamChoice(None, event=EventRecord("F_STREAM_DISABLED", sid, None))
        if ste.s1dss == S1DSS_BYPASS:
            return SubstreamChoice(None, bypass_s1=True)
        return SubstreamChoice(0)   # S1DSS_SSID0
    if ste.s1cdmax == 0 or ssid >= (1 << ste.s1cdmax):
        return SubstreamChoice(None, event=EventRecord("C_BAD_SUBSTREAMID", sid, ssid))
    if ssid == 0 and ste.s1dss == S1DSS_SSID0:
        # §5.2 S1DSS=0b10 / §7.3.7: CD 0 belongs to non-substream traffic; a transaction
        # that selects SubstreamID 0 is terminated with F_STREAM_DISABLED.
        return SubstreamChoice(None, event=EventRecord("F_STREAM_DISABLED", sid, ssid))
    return SubstreamChoice(ssid)


@dataclass
class CdLocation:
    addr: int | None
    event: EventRecord | None = None
    l1_addr: int | None = None


def cd_address(mem: GuestMemory, ste: Ste, sid: int, ssid: int | None, index: int,
               ipa_to_pa=None) -> CdLocation:
    """Address of CD `index` (§3.3.2); `ipa_to_pa` maps table addresses under nesting.

    `ipa_to_pa(ipa) -> (pa | None, event | None)` performs the stage 2 translation of a CD
    table address when stage 2 is enabled (CD table pointers are IPAs, §3.3.2).
    """
    def xl(addr: int) -> tuple[int | None, EventRecord | None]:
        return (addr, None) if ipa_to_pa is None else ipa_to_pa(addr)

    base = ste.s1ctxptr
    if ste.s1cdmax == 0 or ste.s1fmt not in LEAF_BITS:
        addr, ev = xl(base + index * CD_BYTES)
        return CdLocation(addr, ev)
    leaf_bits = LEAF_BITS[ste.s1fmt]
    l1_ipa = base + (index >> leaf_bits) * L1CD_BYTES
    l1_pa, ev = xl(l1_ipa)
    if l1_pa is None:
        return CdLocation(None, ev)
    try:
        desc = int.from_bytes(mem.read(l1_pa, L1CD_BYTES), "little")
    except BusError:
        return CdLocation(None, EventRecord("F_CD_FETCH", sid, ssid,
                                            {"FetchAddr": l1_pa >> _FETCH_ADDR_LO}))
    if not L1CD.get(desc, "V"):
        # §5.3: an invalid L1CD makes the SubstreamID unusable.
        return CdLocation(None, EventRecord("C_BAD_SUBSTREAMID", sid, ssid), l1_pa)
    leaf = (L1CD.get(desc, "L2Ptr") << _L2PTR_LO) + (index & ((1 << leaf_bits) - 1)) * CD_BYTES
    addr, ev = xl(leaf)
    return CdLocation(addr, ev, l1_pa)


def read_cd(mem: GuestMemory, addr: int) -> bytes | None:
    """The CD_BYTES bytes of the CD at `addr`, or None on an external abort."""
    return read_or_none(mem, addr, CD_BYTES)


def fetch_cd(mem: GuestMemory, addr: int) -> list[int] | None:
    data = read_cd(mem, addr)
    return None if data is None else cd_words(data)


@dataclass
class Cd:
    addr: int
    words: list[int]
    legal: bool
    why: str | None = None
    asid: int = 0
    ttb0: int = 0
    ttb1: int = 0
    regime: Stage1Regime | None = None
    record_faults: bool = True    # CD.R
    mair: int = 0
    tbi: int = 0                  # CD.TBI: bit 0 TBI0 (VA[55] == 0), bit 1 TBI1
    aset: bool = False            # CD.ASET: which global entries its lookups match


def decode_cd(addr: int, words: list[int], opt: SmmuOptions) -> Cd:
    """Decode and check a CD (§5.4 "CD validity"); illegal -> the caller raises C_BAD_CD."""
    f = CD.decode_words(words)

    def bad(why: str) -> Cd:
        return Cd(addr, words, False, why)

    if not f["V"]:
        return bad("V=0")
    if f["S"]:
        return bad("S=1 with IDR0.STALL_MODEL=0b01 (no stall)")
    if not f["A"]:
        # §5.5 / CdIllegal(): IDR0.TERM_MODEL=1, the model terminates with an abort only
        # (no RAZ/WI), so CD.A == 0 is ILLEGAL.
        return bad("A=0 with IDR0.TERM_MODEL=1 (abort only)")
    if f["EPD0"] == 0 or f["EPD1"] == 0:
        # CD.ENDI is IGNORED when both halves are disabled (CdIllegal()).
        if f["ENDI"]:
            return bad("ENDI=1 with IDR0.TTENDIAN little-endian only")
    if not f["AA64"]:
        return bad("AA64=0 on an AArch64-only SMMU (IDR0.TTF)")
    if f["HA"] or f["HD"]:
        # §5.4 CD.HA/HD: ILLEGAL with IDR0.HTTU == 0b00, which the model advertises (no
        # hardware Access flag or dirty state update).
        return bad("HA/HD=1 with IDR0.HTTU=0b00")
    if opt.asid_bits == 8 and f["ASID"] >> 8:
        return bad("ASID[15:8] != 0 without IDR0.ASID16")
    oas = effective_oas(f["IPS"], opt)
    halves: list[StageConfig | None] = []
    for n, tg_map in ((0, TG0_GRANULE), (1, TG1_GRANULE)):
        disabled = bool(f[f"EPD{n}"])
        ttb = f[f"TTB{n}"] << TTB_SHIFT
        granule = tg_map.get(f[f"TG{n}"])
        if disabled:
            # An EPDx=1 half is not walked, so its other fields are not checked (§5.4).
            halves.append(StageConfig(stage=1, granule=4096, tsz=16, ttb=0, oas=oas,
                                      affd=bool(f["AFFD"]), disabled=True))
            continue
        if granule is None or granule not in opt.granules:
            return bad(f"TG{n}={f[f'TG{n}']} not a supported granule")
        cfg = StageConfig(stage=1, granule=granule, tsz=f[f"T{n}SZ"], ttb=ttb, oas=oas,
                          affd=bool(f["AFFD"]))
        if not stage1_config_legal(cfg) or cfg.tsz < TXSZ_MIN:
            # CDTxSZInvalid(): without IDR5.VAX the minimum TxSZ is 16 for every granule.
            return bad(f"T{n}SZ={f[f'T{n}SZ']} out of range for granule {granule}")
        if ttb >> oas:
            return bad(f"TTB{n} {ttb:#x} outside the effective IPS ({oas} bits)")
        if ttb >> TTB_48BIT_LIMIT and granule != 65536:
            return bad(f"TTB{n} {ttb:#x} beyond 48 bits with a {granule}-byte granule")
        halves.append(cfg)
    t0, t1 = halves
    assert t0 is not None
    return Cd(addr, words, True, asid=f["ASID"], ttb0=f["TTB0"] << TTB_SHIFT,
              ttb1=f["TTB1"] << TTB_SHIFT, regime=Stage1Regime(ttb0=t0, ttb1=t1),
              record_faults=bool(f["R"]), mair=f["MAIR"], tbi=f["TBI"],
              aset=bool(f["ASET"]))
