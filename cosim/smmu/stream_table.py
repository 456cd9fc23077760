"""Stream table walk and Stream Table Entry decode (Arm IHI 0070 §3.3.1, §5.1, §5.2).

The STE layout and its encodings are declared in cosim/arch/ste.py. `locate_ste` finds the STE
for a StreamID through a linear or 2-level stream table, reporting C_BAD_STREAMID /
F_STE_FETCH; `decode_ste` turns the 64 bytes into an `Ste` and decides legality against the
advertised features: an ILLEGAL STE is reported as C_BAD_STE by the caller (§5.2 "STE
validity").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from cosim.arch.events import EVENT_RECORD
from cosim.arch.registers import PS_BITS, STRTAB_BASE, STRTAB_BASE_CFG, STRTAB_FMT_2LVL
from cosim.arch.ste import (
    CONFIG_ABORT,
    CONFIG_BYPASS,
    CONFIG_NAMES,
    EATS_ABORT,
    EATS_DPT,
    EATS_S1CHK,
    L1STD,
    L1STD_BYTES,
    S1DSS_RESERVED,
    S1DSS_TERMINATE,
    S1FMT_LINEAR,
    S1FMT_RESERVED,
    STE,
    STE_BYTES,
    STRW_NSEL1,
    STRW_RESERVED_BIT,
    TG0_GRANULE,
    ste_words,
)
from cosim.memory import BusError, GuestMemory, read_or_none

from .event_queue import EventRecord
from .options import SmmuOptions
from .walker import StageConfig, stage2_config_legal

log = logging.getLogger(__name__)

# Address fields hold their address bits in place (field value << its low bit in the word).
_STRTAB_ADDR_LO = STRTAB_BASE["ADDR"].word_lo
_L2PTR_LO = L1STD["L2Ptr"].word_lo
_S1CTXPTR_LO = STE["S1ContextPtr"].word_lo
_S2TTB_LO = STE["S2TTB"].word_lo
_FETCH_ADDR_LO = EVENT_RECORD["FetchAddr"].word_lo

# A table base beyond 48 bits needs the 64 KB granule (or DS, not implemented): §5.2, §5.4.
TTB_48BIT_LIMIT = 48

# Valid STRTAB_BASE_CFG.SPLIT values (§6.3.24); others are reserved.
VALID_SPLITS = (6, 8, 10)


@dataclass
class Ste:
    """A decoded STE. `legal` is False for an ILLEGAL STE (the caller raises C_BAD_STE)."""

    addr: int
    words: list[int]
    cfg: str                     # abort | bypass | s1 | s2 | nested | invalid
    legal: bool
    why: str | None = None
    s1fmt: int = 0
    s1ctxptr: int = 0
    s1cdmax: int = 0
    s1dss: int = 0
    eats: int = 0
    strw: int = 0
    shcfg: int = 0
    s2vmid: int = 0
    s2: StageConfig | None = None
    s2r: bool = False

    @property
    def s1_enabled(self) -> bool:
        return self.cfg in ("s1", "nested")

    @property
    def s2_enabled(self) -> bool:
        return self.cfg in ("s2", "nested")


def effective_eats(ste: Ste, atschk: bool, opt: SmmuOptions) -> int:
    """STE.EATS as it acts (§5.2 EATS): 0b00 for bypass (Config 0b100), without IDR0.ATS,
    and for 0b11 without IDR3.DPT ("Reserved ... behaves as 0b00"); 0b10 (split-stage) acts
    as 0b00 while CR0.ATSCHK == 0."""
    if not opt.ats or ste.cfg not in ("s1", "s2", "nested"):
        return EATS_ABORT
    if ste.eats == EATS_DPT:
        return EATS_ABORT
    if ste.eats == EATS_S1CHK and not atschk:
        return EATS_ABORT
    return ste.eats


def effective_oas(ps_field: int, opt: SmmuOptions) -> int:
    """PS/IPS field in bits, capped to SMMU_IDR5.OAS (§3.4: larger values behave as OAS)."""
    return min(PS_BITS.get(ps_field, opt.oas_bits), opt.oas_bits)


def strtab_split(cfg_reg: int) -> int:
    """SPLIT, mapping reserved values onto a valid one (CONSTRAINED UNPREDICTABLE, §6.3.24)."""
    split = STRTAB_BASE_CFG.get(cfg_reg, "SPLIT")
    if split in VALID_SPLITS:
        return split
    return 6 if split < 6 else (8 if split <= 8 else 10)


@dataclass
class SteLocation:
    addr: int | None
    event: EventRecord | None = None


def locate_ste(mem: GuestMemory, base_reg: int, cfg_reg: int, opt: SmmuOptions,
               sid: int, ssid: int | None) -> SteLocation:
    """Find the STE address for `sid` (§3.3.1); fetch faults and bad StreamIDs are events."""
    log2size = min(STRTAB_BASE_CFG.get(cfg_reg, "LOG2SIZE"), opt.sid_bits)
    if sid >= (1 << log2size):
        return SteLocation(None, EventRecord("C_BAD_STREAMID", sid, ssid))
    base = STRTAB_BASE.get(base_reg, "ADDR") << _STRTAB_ADDR_LO
    fmt = STRTAB_BASE_CFG.get(cfg_reg, "FMT")
    if fmt != STRTAB_FMT_2LVL or not opt.st_2level:
        # Linear (§3.3.1.1); a 2-level format the SMMU does not implement reads as linear.
        return SteLocation(base + sid * STE_BYTES)
    split = strtab_split(cfg_reg)
    l1_addr = base + (sid >> split) * L1STD_BYTES
    try:
        desc = int.from_bytes(mem.read(l1_addr, L1STD_BYTES), "little")
    except BusError:
        return SteLocation(None, EventRecord("F_STE_FETCH", sid, ssid,
                                             {"FetchAddr": l1_addr >> _FETCH_ADDR_LO}))
    span = L1STD.get(desc, "Span")
    if span == 0:
        # §5.1: Span 0 marks the L2 table invalid; the StreamID is out of range.
        return SteLocation(None, EventRecord("C_BAD_STREAMID", sid, ssid))
    span = min(span, split + 1)
    l2_index = sid & ((1 << split) - 1)
    if l2_index >= (1 << (span - 1)):
        return SteLocation(None, EventRecord("C_BAD_STREAMID", sid, ssid))
    return SteLocation((L1STD.get(desc, "L2Ptr") << _L2PTR_LO) + l2_index * STE_BYTES)


def read_ste(mem: GuestMemory, addr: int) -> bytes | None:
    """The STE_BYTES bytes of the STE at `addr`, or None on an external abort."""
    return read_or_none(mem, addr, STE_BYTES)


def fetch_ste(mem: GuestMemory, addr: int) -> list[int] | None:
    data = read_ste(mem, addr)
    return None if data is None else ste_words(data)


def decode_ste(addr: int, words: list[int], opt: SmmuOptions) -> Ste:
    """Decode and check one STE against §5.2's validity rules and the advertised features."""
    f = STE.decode_words(words)
    config = f["Config"]

    def bad(why: str, cfg: str | None = None) -> Ste:
        return Ste(addr, words, cfg or CONFIG_NAMES.get(config, "invalid"), False, why)

    if not f["V"]:
        return Ste(addr, words, "invalid", False, "V=0")
    # §5.2 Config: the Reserved values 0b001-0b011 behave as 0b000 (abort, no event).
    ste = Ste(addr, words, CONFIG_NAMES.get(config, "abort"), True, shcfg=f["SHCFG"],
              s2vmid=f["S2VMID"])
    if config not in CONFIG_NAMES or config in (CONFIG_ABORT, CONFIG_BYPASS):
        # Translation fields are IGNORED for abort and bypass (§5.2).
        return ste
    s1 = bool(config & 1)
    s2 = bool(config & 2)
    if s1 and not opt.stage1:
        return bad("stage 1 not implemented (IDR0.S1P=0)")
    if s2 and not opt.stage2:
        return bad("stage 2 not implemented (IDR0.S2P=0)")
    # §5.2 STRW: RES0 without IDR0.HYP and IGNORED with stage 2 (effective NS-EL1); where it
    # is used, 0bx1 is Reserved and ILLEGAL (SteIllegal() in §5.2).
    strw_used = s1 and opt.hyp and not s2
    ste.strw = f["STRW"] if strw_used else STRW_NSEL1
    if ste.strw & STRW_RESERVED_BIT:
        return bad(f"reserved STRW {ste.strw:#04b}")
    # S2VMID tags stage 1 entries too, unless stage 2 is not implemented or the StreamWorld
    # is not EL1 (IgnoreSTES2VMID() in §5.2).
    if opt.vmid_bits == 8 and f["S2VMID"] >> 8 and opt.stage2 and ste.strw == STRW_NSEL1:
        return bad("S2VMID[15:8] != 0 without IDR0.VMID16")
    # EATS is IGNORED without IDR0.ATS (§5.2). 0b11 (DPT) without IDR3.DPT is Reserved and
    # behaves as 0b00 (effective_eats), not ILLEGAL. 0b10 (split-stage) is ILLEGAL with
    # IDR0.NS1ATS == 1, which this model advertises: it does not return IPAs.
    ste.eats = f["EATS"] if opt.ats else EATS_ABORT
    if ste.eats == EATS_S1CHK:
        return bad("EATS=0b10 (split-stage ATS) with IDR0.NS1ATS=1")
    if s2:
        s2cfg, why = _decode_s2(f, opt)
        if s2cfg is None:
            return bad(why or "bad stage 2 fields")
        ste.s2 = s2cfg
        ste.s2r = bool(f["S2R"])
    if s1:
        # §5.2: S1CDMax (and with it S1Fmt, S1DSS) is IGNORED with IDR1.SSIDSIZE == 0; the
        # Reserved S1Fmt 0b11 behaves as 0b00 (linear) and S1DSS 0b11 as 0b00 (terminate).
        ste.s1cdmax = f["S1CDMax"] if opt.ssid_bits else 0
        ste.s1fmt = S1FMT_LINEAR if f["S1Fmt"] == S1FMT_RESERVED else f["S1Fmt"]
        ste.s1dss = S1DSS_TERMINATE if f["S1DSS"] == S1DSS_RESERVED else f["S1DSS"]
        ste.s1ctxptr = f["S1ContextPtr"] << _S1CTXPTR_LO
        if ste.s1cdmax > opt.ssid_bits:
            return bad(f"S1CDMax {ste.s1cdmax} > IDR1.SSIDSIZE {opt.ssid_bits}")
        if ste.s1cdmax and ste.s1fmt != S1FMT_LINEAR and not opt.cd_2level:
            return bad("2-level CD table without IDR0.CD2L")
        # §5.2 S1ContextPtr: a PA within the OAS, or under nesting an IPA within the IAS
        # (= OAS, stage 2 being AArch64 only). An IPA the stage 2 tables do not cover is a
        # stage 2 fault on the CD fetch, not an ILLEGAL STE.
        if ste.s1ctxptr >> opt.oas_bits:
            return bad(f"S1ContextPtr {ste.s1ctxptr:#x} beyond {opt.oas_bits}-bit address space")
        if f["S1STALLD"]:
            return bad("S1STALLD=1 with IDR0.STALL_MODEL=0b01 (no stall)")
    return ste


def _decode_s2(f: dict[str, int], opt: SmmuOptions) -> tuple[StageConfig | None, str | None]:
    """Stage 2 fields of an STE with Config[1]=1 (§5.2)."""
    if not f["S2AA64"]:
        return None, "S2AA64=0 on an AArch64-only SMMU (IDR0.TTF)"
    if f["S2ENDI"]:
        return None, "S2ENDI=1 with IDR0.TTENDIAN little-endian only"
    if f["S2S"]:
        return None, "S2S=1 with IDR0.STALL_MODEL=0b01 (no stall)"
    if f["S2HA"] or f["S2HD"]:
        # §5.2 S2HA/S2HD: ILLEGAL with IDR0.HTTU == 0b00 (no hardware flag updates).
        return None, "S2HA/S2HD=1 with IDR0.HTTU=0b00"
    granule = TG0_GRANULE.get(f["S2TG"])
    if granule is None or granule not in opt.granules:
        return None, f"S2TG {f['S2TG']} not a supported granule"
    oas = effective_oas(f["S2PS"], opt)
    ttb = f["S2TTB"] << _S2TTB_LO
    if ttb >> oas:
        return None, f"S2TTB {ttb:#x} outside the effective S2PS ({oas} bits)"
    if ttb >> TTB_48BIT_LIMIT and granule != 65536:
        # §5.2 S2TTB: beyond 48 bits is ILLEGAL for 4 KB / 16 KB granules without S2DS.
        return None, f"S2TTB {ttb:#x} beyond 48 bits with a {granule}-byte granule"
    cfg = StageConfig(stage=2, granule=granule, tsz=f["S2T0SZ"], ttb=ttb, oas=oas,
                      sl0=f["S2SL0"], affd=bool(f["S2AFFD"]), s2_ptw=bool(f["S2PTW"]))
    if not stage2_config_legal(cfg, opt.oas_bits):
        return None, (f"S2T0SZ {f['S2T0SZ']} / S2SL0 {f['S2SL0']} / granule {granule} "
                      "inconsistent")
    return cfg, None
