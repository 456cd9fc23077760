"""VMSAv8-64 stage 1 and stage 2 translation table walks, as the SMMUv3 performs them.

Arm IHI 0070 §3.4 (address sizes), §5.2 (STE S2* fields), §5.4 (CD TTB/TxSZ/TG/EPD/IPS/AFFD
fields), §7.3 (fault events F_TRANSLATION, F_ADDR_SIZE, F_ACCESS, F_PERMISSION, F_WALK_EABT);
the walk itself follows the Arm ARM (DDI 0487) VMSAv8-64 translation process.

Walk parameters (level shifts, index masks, address masks) are derived once per `StageConfig`,
when it is built, from the descriptor layouts in `cosim/arch/descriptors.py`; the per-translation
loop only indexes, reads and masks. Every outcome, including malformed configurations and
descriptors, is a `WalkResult`: nothing raises out of `translate_stage1` / `translate_stage2`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Protocol

from cosim.arch.descriptors import (
    ADDR,
    APTABLE_NO_EL0,
    APTABLE_NO_WRITE,
    DESC_BYTES,
    DESC_SIZE_LOG2,
    FINAL_LEVEL,
    GRANULE_BITS,
    MAX_S2_CONCAT_LOG2,
    OA_HI_64K,
    OA_HI_64K_DEST,
    S1_AP_RIGHTS,
    S1_LEAF,
    S2_LEAF,
    S2_MEMATTR_DEVICE_MASK,
    S2AP_READ,
    S2AP_WRITE,
    TABLE,
    TYPE,
    VALID,
    s1_start_level,
    s2_start_level,
)
from cosim.memory import BusError
from cosim.translation_agent import Access

log = logging.getLogger(__name__)

F_TRANSLATION = "F_TRANSLATION"
F_ADDR_SIZE = "F_ADDR_SIZE"
F_ACCESS = "F_ACCESS"
F_PERMISSION = "F_PERMISSION"
F_WALK_EABT = "F_WALK_EABT"

# Permission bit set used inside the walk; turned into 'r'/'w'/'x' strings at the end.
P_R, P_W, P_X = 1, 2, 4
_PERM_STR = tuple("".join(c for c, b in (("r", P_R), ("w", P_W), ("x", P_X)) if m & b)
                  for m in range(8))

VA_BITS = 64
UPPER_HALF_SELECT_BIT = 55  # §3.4.1 / Arm ARM: VA[55] selects TTB1 when the upper half exists
TXSZ_MAX = 39               # no small translation tables (IDR3.STT = 0)
TXSZ_MIN = 16               # 48-bit input ranges ...
TXSZ_MIN_64K_LVA = 12       # ... or 52-bit with the 64 KB granule (IDR5.VAX / FEAT_LPA)
OAS_LPA = 52                # output size at which the 64 KB granule gains level 1 blocks
# Stage 2 start level needs PAMax of at least this many bits (Arm ARM AArch64.S2InvalidSL).
S2_DEEP_START_MIN_PA = {4096: (0, 44), 16384: (1, 42), 65536: (1, 44)}
S2_SL0_MAX = 2              # S2SL0 == 0b11 is reserved without FEAT_TTST / LPA2


@dataclass(frozen=True)
class StageConfig:
    """One translation table regime half (stage 1) or a stage 2 configuration.

    `ttb` is already the table base address (for stage 1 under nesting: an IPA); `oas` is the
    effective output size in bits (CD.IPS or STE.S2PS, capped by SMMU_IDR5.OAS, §3.4).
    """

    stage: int
    granule: int
    tsz: int
    ttb: int
    oas: int
    sl0: int | None = None
    affd: bool = False
    disabled: bool = False
    s2_ptw: bool = False

    def __post_init__(self) -> None:
        # Derived once: the walk loop reads only these precomputed numbers.
        object.__setattr__(self, "_walk", _WalkParams(self))


@dataclass(frozen=True)
class Stage1Regime:
    ttb0: StageConfig
    ttb1: StageConfig | None


@dataclass(slots=True)
class WalkResult:
    ok: bool
    out: int = 0
    size: int = 0
    perm: str = ""
    level: int = 0
    fault: str | None = None
    fault_stage: int | None = None
    fault_ipa: int | None = None
    s2_on_s1_walk: bool = False
    reads: list[tuple[int, int]] = field(default_factory=list)
    abort_addr: int | None = None   # F_WALK_EABT: the descriptor address whose read aborted
    s1_perm: str | None = None      # nested success: stage 1's permissions alone
    not_global: bool = True         # stage 1 success: the leaf's nG (False: a global entry)
    ipa: int | None = None          # nested success: the IPA stage 1 output


# Descriptor bits used by the loop, derived once from the one declaration in cosim/arch.
_VALID = VALID.mask
_TYPE = TYPE.mask
_AF = S1_LEAF["AF"].mask
_NG = S1_LEAF["NG"].mask
assert _AF == S2_LEAF["AF"].mask
_AP_SHIFT, _AP_MASK, _AP_WIDTH = S1_LEAF["AP"].lo, S1_LEAF["AP"].max, S1_LEAF["AP"].width
_PXN = S1_LEAF["PXN"].mask
_UXN = S1_LEAF["UXN"].mask
_S2AP_SHIFT, _S2AP_MASK = S2_LEAF["S2AP"].lo, S2_LEAF["S2AP"].max
_S2XN = S2_LEAF["XN"].mask
_S2MEMATTR_SHIFT, _S2MEMATTR_MASK = S2_LEAF["MEMATTR"].lo, S2_LEAF["MEMATTR"].max
_OA_HI_SHIFT, _OA_HI_MASK = OA_HI_64K.lo, OA_HI_64K.max

# Table-descriptor restrictions accumulated down a stage 1 walk (hierarchical permissions):
# the walk ORs the table descriptors together and keeps the contiguous field run
# PXNTable..APTable as one small number, whose bits are these.
_PXNTABLE, _UXNTABLE, _APTABLE = TABLE["PXNTABLE"], TABLE["UXNTABLE"], TABLE["APTABLE"]
_HIER_LSB = _PXNTABLE.lo
_HIER_MASK = (1 << (_APTABLE.hi + 1 - _HIER_LSB)) - 1
_H_PXN = 1 << (_PXNTABLE.lo - _HIER_LSB)
_H_UXN = 1 << (_UXNTABLE.lo - _HIER_LSB)
_H_NO_EL0 = APTABLE_NO_EL0 << (_APTABLE.lo - _HIER_LSB)
_H_NO_WRITE = APTABLE_NO_WRITE << (_APTABLE.lo - _HIER_LSB)
_HIER_BITS = _HIER_MASK.bit_length()
_PERM_PXN_BIT = 1 << (_AP_WIDTH + _HIER_BITS)
_PERM_UXN_BIT = _PERM_PXN_BIT << 1


def _s1_rights(ap: int, hier: int, pxn: bool, uxn: bool) -> tuple[int, int]:
    """(privileged, unprivileged) permission sets for AP[2:1], table limits and XN bits."""
    (pr, pw), (ur, uw) = S1_AP_RIGHTS[ap]
    if hier & _H_NO_EL0:
        ur = uw = False
    if hier & _H_NO_WRITE:
        pw = uw = False
    priv = (P_R if pr else 0) | (P_W if pw else 0)
    unpriv = (P_R if ur else 0) | (P_W if uw else 0)
    # A location writable at EL0 is never privileged-executable (Arm ARM, EL1&0 regime).
    if not (pxn or hier & _H_PXN or uw):
        priv |= P_X
    if not (uxn or hier & _H_UXN):
        unpriv |= P_X
    return priv, unpriv


# Every combination of the stage 1 leaf's permission inputs, computed once:
# index = AP | hier << 2 | PXN << 6 | UXN << 7 -> (privileged, unprivileged) permission sets.
_S1_PERM_TABLE = tuple(
    _s1_rights(i & _AP_MASK, (i >> _AP_WIDTH) & _HIER_MASK,
               bool(i & _PERM_PXN_BIT), bool(i & _PERM_UXN_BIT))
    for i in range(_PERM_UXN_BIT << 1)
)


class _WalkParams:
    """Everything about one StageConfig that does not depend on the address being walked."""

    __slots__ = ("config_fault", "ia_bits", "start_level", "levels", "ttb", "oa_limit",
                 "lpa64", "table_mask", "stage", "affd", "disabled", "s2_ptw")

    def __init__(self, cfg: StageConfig) -> None:
        self.stage = cfg.stage
        self.affd = cfg.affd
        self.disabled = cfg.disabled
        self.s2_ptw = cfg.s2_ptw
        self.config_fault: str | None = None
        self.levels: tuple[tuple[int, int, int, int, bool], ...] = ()
        self.ia_bits = 0
        self.start_level = 0
        self.ttb = 0
        self.oa_limit = 0
        self.lpa64 = False
        self.table_mask = 0
        problem = _config_problem(cfg)
        if problem is not None:
            # Defensive: the STE/CD decoders reject these (C_BAD_STE / C_BAD_CD); a walk with
            # such a configuration faults instead of raising.
            self.config_fault = problem
            return
        gbits = GRANULE_BITS[cfg.granule]
        stride = gbits - DESC_SIZE_LOG2
        self.ia_bits = VA_BITS - cfg.tsz
        self.start_level = _start_level(cfg)
        self.oa_limit = 1 << cfg.oas
        self.lpa64 = cfg.granule == 65536
        levels = []
        for level in range(self.start_level, FINAL_LEVEL + 1):
            shift = gbits + (FINAL_LEVEL - level) * stride
            width = (self.ia_bits - shift) if level == self.start_level else stride
            size = 1 << shift
            addr_mask = ADDR.mask & ~(size - 1)
            levels.append((level, shift, (1 << width) - 1, addr_mask,
                           _block_allowed(cfg.granule, level, cfg.oas)))
        self.levels = tuple(levels)
        self.table_mask = ADDR.mask & ~((1 << gbits) - 1)  # next tables are granule-aligned
        # The base is aligned to the (possibly concatenated) start table; lower bits are RES0.
        start_table_bytes = (1 << (self.ia_bits - levels[0][1])) * DESC_BYTES
        self.ttb = cfg.ttb & ~(start_table_bytes - 1)


def _start_level(cfg: StageConfig) -> int:
    # Stage 2 from STE.S2SL0 (§5.2); stage 1 from TxSZ (Arm ARM "initial lookup level").
    if cfg.stage == 2:
        return s2_start_level(cfg.granule, cfg.sl0 or 0)
    return s1_start_level(cfg.granule, cfg.tsz)


def _block_allowed(granule: int, level: int, oas: int) -> bool:
    if level == FINAL_LEVEL:
        return False  # level 3 entries are pages; TYPE=0 there is reserved
    if granule == 4096:
        return level in (1, 2)
    if granule == 16384:
        return level == 2
    return level == 2 or (level == 1 and oas >= OAS_LPA)


def _txsz_range(granule: int) -> tuple[int, int]:
    low = TXSZ_MIN_64K_LVA if granule == 65536 else TXSZ_MIN
    return low, TXSZ_MAX


def _config_problem(cfg: StageConfig) -> str | None:
    """Why this configuration cannot be walked at all (a structural check only), or None."""
    if cfg.stage not in (1, 2):
        return f"stage {cfg.stage}"
    if cfg.granule not in GRANULE_BITS:
        return f"granule {cfg.granule}"
    low, high = _txsz_range(cfg.granule)
    if not low <= cfg.tsz <= high:
        return f"TxSZ {cfg.tsz} outside [{low}, {high}]"
    if not 0 < cfg.oas <= VA_BITS or cfg.ttb < 0:
        return f"oas {cfg.oas} / ttb {cfg.ttb:#x}"
    if cfg.stage == 2:
        if cfg.sl0 is None or not 0 <= cfg.sl0 <= S2_SL0_MAX:
            return f"S2SL0 {cfg.sl0}"
        if _s2_inconsistent(cfg):
            return f"S2T0SZ {cfg.tsz} inconsistent with S2SL0 {cfg.sl0} / granule {cfg.granule}"
    return None


def _s2_inconsistent(cfg: StageConfig) -> bool:
    # The start level must resolve at least one address bit and at most a full table's worth
    # plus 4 bits of concatenation (16 tables) (§5.2 S2T0SZ; Arm ARM S2InconsistentSL).
    gbits = GRANULE_BITS[cfg.granule]
    stride = gbits - DESC_SIZE_LOG2
    below = gbits + (FINAL_LEVEL - _start_level(cfg)) * stride
    ia_bits = VA_BITS - cfg.tsz
    return not below < ia_bits <= below + stride + MAX_S2_CONCAT_LOG2


def stage2_config_legal(cfg: StageConfig, pa_max: int | None = None) -> bool:
    """Whether the STE's S2TG/S2T0SZ/S2SL0 combination is legal (else the STE is ILLEGAL).

    §5.2 S2T0SZ: "Use of a value of S2T0SZ that is inconsistent with the permitted range (given
    S2SL0 and S2TG) is ILLEGAL" -> C_BAD_STE, checked by the STE decoder with this function.
    `pa_max` is the implementation's PA size in bits (SMMU_IDR5.OAS); it defaults to cfg.oas.
    The deepest start levels need a large enough PA (Arm ARM AArch64.S2InvalidSL), and the
    IPA range may not exceed it.
    """
    if cfg.stage != 2 or _config_problem(cfg) is not None:
        return False
    pa = cfg.oas if pa_max is None else pa_max
    deep_level, min_pa = S2_DEEP_START_MIN_PA[cfg.granule]
    if _start_level(cfg) == deep_level and pa < min_pa:
        return False
    return VA_BITS - cfg.tsz <= pa


def stage1_config_legal(cfg: StageConfig) -> bool:
    """Whether a CD's TGx/TxSZ/IPS give a walkable stage 1 configuration (§5.4, C_BAD_CD)."""
    return cfg.stage == 1 and _config_problem(cfg) is None


def tbi_strip(va: int) -> int:
    """VA with the top byte replaced by copies of bit 55, for CD.TBIx = 1 (§3.4.1)."""
    low = (1 << (UPPER_HALF_SELECT_BIT + 1)) - 1
    if (va >> UPPER_HALF_SELECT_BIT) & 1:
        return (va & low) | (((1 << VA_BITS) - 1) & ~low)
    return va & low


# --------------------------------------------------------------------------- the walk


def _fault(kind: str, stage: int, level: int, reads: list, ipa: int | None = None,
           s2_on_s1: bool = False) -> WalkResult:
    return WalkResult(False, 0, 0, "", level, kind, stage, ipa, s2_on_s1, reads)


class WalkCacheView(Protocol):
    """A walk cache for one stage of one translation context (caches.WalkCache.view): the
    table a walk reaches at `level` for the input-address prefix above that level, and the
    table descriptors ORed on the way (their hierarchical permission bits)."""

    def lookup(self, key: tuple[int, int, int]) -> tuple[int, int] | None: ...

    def insert(self, key: tuple[int, int, int], table: int, ored: int) -> None: ...


def _walk(mem, p: _WalkParams, ia: int, reads: list, s2p: _WalkParams | None,
          wc: WalkCacheView | None = None, wc2: WalkCacheView | None = None):
    """Walk one stage. Returns a WalkResult on fault, else (out, size, level, desc, hier).
    `wc`: this stage's walk cache; `wc2`: stage 2's, for the stage 2 walks of a nested one."""
    table = p.ttb
    read = mem.read
    append = reads.append
    tables_ored = 0
    levels = p.levels
    if wc is not None:
        # Resume from the deepest cached table (key: level, the parent level's shift, and
        # the input-address bits above the table).
        for i in range(len(levels) - 1, 0, -1):
            parent_shift = levels[i - 1][1]
            hit = wc.lookup((levels[i][0], parent_shift, ia >> parent_shift))
            if hit is not None:
                table, tables_ored = hit
                levels = levels[i:]
                break
    for level, shift, idx_mask, addr_mask, block_ok in levels:
        daddr = table | (((ia >> shift) & idx_mask) << DESC_SIZE_LOG2)
        if s2p is not None:
            # Nested (§3.4): each stage 1 table address is an IPA, translated by stage 2 first.
            t = _s2_for_walk(mem, s2p, daddr, reads, wc2)
            if type(t) is WalkResult:
                return t
            daddr = t
        try:
            desc = int.from_bytes(read(daddr, DESC_BYTES), "little")
        except BusError:
            r = _stage_fault(F_WALK_EABT, p, level, reads, ia)
            r.abort_addr = daddr
            return r
        append((daddr, desc))
        if not desc & _VALID:
            return _stage_fault(F_TRANSLATION, p, level, reads, ia)
        if desc & _TYPE and level != FINAL_LEVEL:
            table = desc & p.table_mask
            if p.lpa64:
                table |= ((desc >> _OA_HI_SHIFT) & _OA_HI_MASK) << OA_HI_64K_DEST
            if table >= p.oa_limit:
                return _stage_fault(F_ADDR_SIZE, p, level, reads, ia)
            tables_ored |= desc
            if wc is not None:
                wc.insert((level + 1, shift, ia >> shift), table, tables_ored)
            continue
        if not (desc & _TYPE or block_ok):
            # Block at a level that has none, or TYPE=0 at level 3: reserved, i.e. invalid.
            return _stage_fault(F_TRANSLATION, p, level, reads, ia)
        oa = desc & addr_mask
        if p.lpa64:
            oa |= ((desc >> _OA_HI_SHIFT) & _OA_HI_MASK) << OA_HI_64K_DEST
        if oa >= p.oa_limit:
            return _stage_fault(F_ADDR_SIZE, p, level, reads, ia)
        size = 1 << shift
        return (oa | (ia & (size - 1)), size, level, desc,
                (tables_ored >> _HIER_LSB) & _HIER_MASK)
    # Unreachable: level 3 always ends the loop; kept so a bad table still yields a result.
    return _stage_fault(F_TRANSLATION, p, FINAL_LEVEL, reads, ia)


def _stage_fault(kind: str, p: _WalkParams, level: int, reads: list, ia: int) -> WalkResult:
    # Stage 2 faults report the IPA being translated (event record IPA field, §7.3).
    stage = p.stage
    return WalkResult(False, 0, 0, "", level, kind, stage, ia if stage == 2 else None,
                      False, reads)


def _s2_perm(desc: int) -> int:
    s2ap = (desc >> _S2AP_SHIFT) & _S2AP_MASK
    return ((P_R if s2ap & S2AP_READ else 0) | (P_W if s2ap & S2AP_WRITE else 0)
            | (0 if desc & _S2XN else P_X))


def _s2_for_walk(mem, s2p: _WalkParams, ipa: int, reads: list,
                 wc2: WalkCacheView | None = None):
    """Stage 2 translation of a stage 1 descriptor fetch: a data read. PA, or the fault."""
    r = _stage2(mem, s2p, ipa, P_R, reads, wc2)
    if type(r) is WalkResult:
        r.s2_on_s1_walk = True
        return r
    out, _size, level, desc = r
    # STE.S2PTW (§5.2): a stage 1 walk to stage 2 Device memory is a stage 2 Permission fault.
    if s2p.s2_ptw and not (desc >> _S2MEMATTR_SHIFT) & _S2MEMATTR_MASK & S2_MEMATTR_DEVICE_MASK:
        return _fault(F_PERMISSION, 2, level, reads, ipa, True)
    return out


def _stage2(mem, p: _WalkParams, ipa: int, need: int, reads: list,
            wc: WalkCacheView | None = None):
    """Stage 2 walk and checks. WalkResult on fault, else (pa, size, level, desc)."""
    if p.config_fault is not None:
        return _fault(F_TRANSLATION, 2, 0, reads, ipa)
    if ipa >> p.ia_bits or ipa < 0:
        # IPA beyond S2T0SZ's range: stage 2 translation fault (§3.4).
        return _fault(F_TRANSLATION, 2, 0, reads, ipa)
    if p.ttb >= p.oa_limit:
        return _fault(F_ADDR_SIZE, 2, 0, reads, ipa)
    w = _walk(mem, p, ipa, reads, None, wc)
    if type(w) is WalkResult:
        return w
    out, size, level, desc, _hier = w
    if not (desc & _AF or p.affd):
        return _fault(F_ACCESS, 2, level, reads, ipa)
    if need & ~_s2_perm(desc):
        return _fault(F_PERMISSION, 2, level, reads, ipa)
    return out, size, level, desc


def _need(access: Access) -> int:
    return (P_R if access.read else 0) | (P_W if access.write else 0) | (P_X if access.exec else 0)


def translate_stage2(mem, cfg: StageConfig, ipa: int, access: Access,
                     wc: WalkCacheView | None = None) -> WalkResult:
    """Stage-2-only translation of `ipa` (STE.Config = 0b110): never raises. `wc`: the
    stage 2 walk cache of the VMID, if the SMMU caches walks."""
    reads: list[tuple[int, int]] = []
    p = cfg._walk
    try:
        r = _stage2(mem, p, ipa, _need(access), reads, wc)
    except Exception:  # model rule: bad input becomes an event, never an exception
        log.exception("stage 2 walk of %#x failed unexpectedly", ipa)
        return _fault(F_WALK_EABT, 2, 0, reads, ipa)
    if type(r) is WalkResult:
        return r
    out, size, level, desc = r
    return WalkResult(True, out, size, _PERM_STR[_s2_perm(desc)], level, None, None, None,
                      False, reads)


def translate_stage1(mem, regime: Stage1Regime, va: int, access: Access,
                     s2: StageConfig | None = None, wc1: WalkCacheView | None = None,
                     wc2: WalkCacheView | None = None) -> WalkResult:
    """Stage 1 translation of `va`, then stage 2 of its output when `s2` is given (nested).
    `wc1` / `wc2`: the stage 1 (ASID, VMID) and stage 2 (VMID) walk caches, if any."""
    reads: list[tuple[int, int]] = []
    try:
        return _translate_stage1(mem, regime, va, access, s2, reads, wc1, wc2)
    except Exception:  # model rule: bad input becomes an event, never an exception
        log.exception("stage 1 walk of %#x failed unexpectedly", va)
        return _fault(F_WALK_EABT, 1, 0, reads)


def _translate_stage1(mem, regime: Stage1Regime, va: int, access: Access,
                      s2: StageConfig | None, reads: list, wc1: WalkCacheView | None,
                      wc2: WalkCacheView | None) -> WalkResult:
    # TTB0/TTB1 selection by VA[55] and the TxSZ ranges (§3.4.1, §5.4 T0SZ/T1SZ):
    # an address in neither half's range is a stage 1 translation fault.
    if va < 0 or va >> VA_BITS:
        return _fault(F_TRANSLATION, 1, 0, reads)
    upper_half = (va >> UPPER_HALF_SELECT_BIT) & 1
    cfg = regime.ttb1 if upper_half else regime.ttb0
    if cfg is None:
        return _fault(F_TRANSLATION, 1, 0, reads)
    p = cfg._walk
    if p.config_fault is not None or p.disabled:
        return _fault(F_TRANSLATION, 1, 0, reads)  # §5.4 EPDx: walks of this half fault
    # TTB0 covers [0, 2**ia_bits), TTB1 covers [2**64 - 2**ia_bits, 2**64).
    expect_upper = (1 << (VA_BITS - p.ia_bits)) - 1 if upper_half else 0
    if va >> p.ia_bits != expect_upper:
        return _fault(F_TRANSLATION, 1, 0, reads)
    if p.ttb >= p.oa_limit:
        return _fault(F_ADDR_SIZE, 1, 0, reads)  # TTB beyond IPS (§3.4)
    s2p = s2._walk if s2 is not None else None
    w = _walk(mem, p, va, reads, s2p, wc1, wc2)
    if type(w) is WalkResult:
        return w
    out, size, level, desc, hier = w
    # Access flag before permission, without hardware AF update (CD.HA not modelled).
    if not (desc & _AF or p.affd):
        return _fault(F_ACCESS, 1, level, reads)
    idx = (((desc >> _AP_SHIFT) & _AP_MASK) | hier << _AP_WIDTH
           | (_PERM_PXN_BIT if desc & _PXN else 0) | (_PERM_UXN_BIT if desc & _UXN else 0))
    perm = _S1_PERM_TABLE[idx][0 if access.priv else 1]
    need = (access.read and P_R) | (access.write and P_W) | (access.exec and P_X)
    if need & ~perm:
        return _fault(F_PERMISSION, 1, level, reads)
    if s2p is None:
        return WalkResult(True, out, size, _PERM_STR[perm], level, None, None, None, False, reads,
                          not_global=bool(desc & _NG))
    r = _stage2(mem, s2p, out, need, reads, wc2)
    if type(r) is WalkResult:
        return r
    # Nested result: both stages' permissions, the smaller size, stage 1's leaf level.
    pa, s2size, _s2level, s2desc = r
    return WalkResult(True, pa, min(size, s2size), _PERM_STR[perm & _s2_perm(s2desc)],
                      level, None, None, None, False, reads, s1_perm=_PERM_STR[perm], ipa=out,
                      not_global=bool(desc & _NG))
