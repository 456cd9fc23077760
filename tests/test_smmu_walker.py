"""VMSAv8-64 stage 1 / stage 2 / nested walks over tables built in SparseMemory."""

from __future__ import annotations

import pytest

from cosim.arch.descriptors import (
    AP_RO_ANY,
    AP_RO_PRIV_ONLY,
    AP_RW_ANY,
    AP_RW_PRIV_ONLY,
    S2AP_READ,
    S2AP_WRITE,
    TableBuilder,
    oa_bits_64k,
    s1_leaf,
    s1_start_level,
    s2_leaf,
    s2_start_level,
    table_desc,
)
from cosim.memory import SparseMemory
from cosim.smmu.walker import (
    Stage1Regime,
    StageConfig,
    WalkResult,
    stage1_config_legal,
    stage2_config_legal,
    tbi_strip,
    translate_stage1,
    translate_stage2,
)
from cosim.translation_agent import Access

R = Access(read=True)
W = Access(read=False, write=True)
X = Access(read=False, exec=True)
RP = Access(read=True, priv=True)
WP = Access(read=False, write=True, priv=True)
XP = Access(read=False, exec=True, priv=True)

TABLES = 0x4000_0000          # stage 1 tables (PA, or IPA under nesting)
S2_TABLES = 0x8000_0000       # stage 2 tables (PA)
SIZES = {4096: {1: 1 << 30, 2: 1 << 21, 3: 1 << 12},
         16384: {2: 1 << 25, 3: 1 << 14},
         65536: {1: 1 << 42, 2: 1 << 29, 3: 1 << 16}}


def s1(mem, granule=4096, tsz=16, oas=48, base=TABLES, **kw):
    tb = TableBuilder(mem, granule, tsz, s1_start_level(granule, tsz), base,
                      kw.pop("table_attrs", None))
    cfg = StageConfig(stage=1, granule=granule, tsz=tsz, ttb=tb.root, oas=oas, **kw)
    return tb, cfg


def s2(mem, granule=4096, tsz=24, sl0=1, oas=48, base=S2_TABLES, **kw):
    tb = TableBuilder(mem, granule, tsz, s2_start_level(granule, sl0), base)
    cfg = StageConfig(stage=2, granule=granule, tsz=tsz, ttb=tb.root, oas=oas, sl0=sl0, **kw)
    return tb, cfg


def walk1(mem, cfg, va, access=R, ttb1=None, s2cfg=None) -> WalkResult:
    return translate_stage1(mem, Stage1Regime(cfg, ttb1), va, access, s2cfg)


def assert_fault(r: WalkResult, kind: str, stage: int, level: int | None = None) -> None:
    assert not r.ok and r.fault == kind and r.fault_stage == stage, r
    if level is not None:
        assert r.level == level, r


# ------------------------------------------------------------------ stage 1 basics


def test_4k_four_level_page_walk_reads_every_level_in_order():
    mem = SparseMemory()
    tb, cfg = s1(mem)
    va = 0x0000_1234_5678_9ABC
    slot = tb.map(va, 3, s1_leaf(0x7654_3000, page=True))
    r = walk1(mem, cfg, va)
    assert r.ok and r.fault is None
    assert r.out == 0x7654_3ABC and r.size == 4096 and r.level == 3
    assert len(r.reads) == 4
    assert r.reads[0][0] == tb.root + ((va >> 39) & 0x1FF) * 8
    assert r.reads[-1][0] == slot and r.reads[-1][1] == s1_leaf(0x7654_3000, page=True)


@pytest.mark.parametrize("granule,tsz,start", [
    (4096, 16, 0), (4096, 25, 1), (4096, 34, 2), (4096, 39, 2),
    (16384, 16, 0), (16384, 17, 1), (16384, 28, 2), (16384, 39, 3),
    (65536, 12, 1), (65536, 16, 1), (65536, 22, 2), (65536, 39, 3),
])
def test_start_level_and_page_for_each_granule(granule, tsz, start):
    mem = SparseMemory()
    assert s1_start_level(granule, tsz) == start
    tb, cfg = s1(mem, granule=granule, tsz=tsz)
    va = 0x5A5A_5A5A_5A5A_5123 & ((1 << (64 - tsz)) - 1)
    oa = 0x3_0000_0000 + granule * 7
    tb.map(va, 3, s1_leaf(oa, page=True))
    r = walk1(mem, cfg, va)
    assert r.ok, r
    assert r.out == oa | (va & (granule - 1))
    assert r.size == granule and r.level == 3
    assert len(r.reads) == 4 - start


@pytest.mark.parametrize("granule,level", [(4096, 1), (4096, 2), (16384, 2), (65536, 2)])
def test_blocks_where_the_granule_allows_them(granule, level):
    mem = SparseMemory()
    tb, cfg = s1(mem, granule=granule)
    size = SIZES[granule][level]
    va = 5 * size + 0x1234
    oa = 3 * size
    tb.map(va, level, s1_leaf(oa, page=False))
    r = walk1(mem, cfg, va)
    assert r.ok and r.size == size and r.level == level
    assert r.out == oa + 0x1234


def test_block_oa_bits_below_block_size_are_ignored():
    mem = SparseMemory()
    tb, cfg = s1(mem)
    tb.map(0x20_0000, 2, s1_leaf(0x4020_0000 | 0x5000, page=False))
    r = walk1(mem, cfg, 0x20_0010)
    assert r.ok and r.out == 0x4020_0010


@pytest.mark.parametrize("granule,level,oas", [
    (4096, 0, 48), (16384, 1, 48), (65536, 1, 48), (16384, 0, 48),
])
def test_blocks_at_levels_without_blocks_are_translation_faults(granule, level, oas):
    mem = SparseMemory()
    tb, cfg = s1(mem, granule=granule, tsz=16, oas=oas)
    if level < tb.start:
        pytest.skip("level above the start level")
    tb.map(0, level, s1_leaf(0, page=False))
    assert_fault(walk1(mem, cfg, 0x10), "F_TRANSLATION", 1, level)


def test_64k_level1_block_and_52bit_output_with_lpa():
    mem = SparseMemory()
    tb, cfg = s1(mem, granule=65536, tsz=12, oas=52)
    oa = (0xA << 48) | (3 << 42)
    desc = s1_leaf(0, page=False) | oa_bits_64k(oa)
    tb.map(1 << 42, 1, desc)
    r = walk1(mem, cfg, (1 << 42) + 0x77)
    assert r.ok and r.level == 1 and r.size == 1 << 42 and r.out == oa + 0x77
    # The same descriptor with a 48-bit output size is an address size fault.
    cfg48 = StageConfig(stage=1, granule=65536, tsz=12, ttb=tb.root, oas=48)
    assert_fault(walk1(mem, cfg48, (1 << 42) + 0x77), "F_TRANSLATION", 1, 1)  # no L1 blocks
    tb.map(0x2000_0000, 2, s1_leaf(0, page=False) | oa_bits_64k(0xA << 48))
    assert_fault(walk1(mem, cfg48, 0x2000_0000), "F_ADDR_SIZE", 1, 2)
    assert walk1(mem, cfg, 0x2000_0004).out == (0xA << 48) + 4


def test_level3_type0_is_reserved():
    mem = SparseMemory()
    tb, cfg = s1(mem)
    tb.map(0x5000, 3, s1_leaf(0x9000, page=False))
    assert_fault(walk1(mem, cfg, 0x5000), "F_TRANSLATION", 1, 3)


@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_invalid_descriptor_at_each_level(level):
    mem = SparseMemory()
    tb, cfg = s1(mem)
    va = 0x0000_0080_4020_1000
    tb.map(va, level, s1_leaf(0x1000, page=True) & ~1)   # valid bit clear
    r = walk1(mem, cfg, va)
    assert_fault(r, "F_TRANSLATION", 1, level)
    assert len(r.reads) == level + 1 and r.fault_ipa is None


# ------------------------------------------------------------------ halves, ranges, EPD


def test_ttb1_upper_half_and_ttb0_lower_half():
    mem = SparseMemory()
    tb0, cfg0 = s1(mem)
    tb1, cfg1 = s1(mem, base=0x5000_0000)
    tb0.map(0x1000, 3, s1_leaf(0xA000, page=True))
    hi = 0xFFFF_FFFF_FFFF_F000
    tb1.map(hi, 3, s1_leaf(0xB000, page=True))
    assert walk1(mem, cfg0, 0x1008, ttb1=cfg1).out == 0xA008
    r = walk1(mem, cfg0, hi + 8, ttb1=cfg1)
    assert r.ok and r.out == 0xB008
    assert r.reads[0][0] == tb1.root + 511 * 8
    # Without an upper half, the same VA has no translation.
    assert_fault(walk1(mem, cfg0, hi), "F_TRANSLATION", 1)


@pytest.mark.parametrize("va", [
    1 << 48,                       # VA[55] = 0 but above T0SZ's range
    0x00FF_FFFF_FFFF_F000,         # VA[55] = 1 but bits [63:56] not all ones
    0xFFFF_0000_0000_0000 - 4096,  # VA[55] = 1, below T1SZ's range
    1 << 64, -1,                   # not a 64-bit address
])
def test_addresses_in_neither_range_fault_without_reads(va):
    mem = SparseMemory()
    _, cfg0 = s1(mem)
    _, cfg1 = s1(mem, base=0x5000_0000)
    r = walk1(mem, cfg0, va, ttb1=cfg1)
    assert_fault(r, "F_TRANSLATION", 1)
    assert r.reads == []


def test_tbi_strip_sign_extends_bit55():
    assert tbi_strip(0xAB00_0000_0000_1000) == 0x1000
    assert tbi_strip(0x12FF_FFFF_FFFF_F000) == 0xFFFF_FFFF_FFFF_F000


def test_epd_disabled_half_faults():
    mem = SparseMemory()
    tb, cfg = s1(mem, disabled=True)
    tb.map(0x1000, 3, s1_leaf(0xA000, page=True))
    r = walk1(mem, cfg, 0x1000)
    assert_fault(r, "F_TRANSLATION", 1)
    assert r.reads == []


# ------------------------------------------------------------------ address sizes


def test_ttb_beyond_ips_is_address_size_fault():
    mem = SparseMemory()
    cfg = StageConfig(stage=1, granule=4096, tsz=25, ttb=1 << 40, oas=40)
    r = walk1(mem, cfg, 0x1000)
    assert_fault(r, "F_ADDR_SIZE", 1)
    assert r.reads == []


def test_next_table_beyond_ips_is_address_size_fault():
    mem = SparseMemory()
    tb, cfg = s1(mem, tsz=25, oas=40)
    tb.map(0x4000_0000, 1, table_desc(1 << 40))
    assert_fault(walk1(mem, cfg, 0x4000_0000), "F_ADDR_SIZE", 1, 1)


def test_output_beyond_ips_is_address_size_fault():
    mem = SparseMemory()
    tb, cfg = s1(mem, tsz=25, oas=36)
    tb.map(0x1000, 3, s1_leaf(1 << 36, page=True))
    tb.map(0x2000, 3, s1_leaf((1 << 36) - 4096, page=True))
    assert_fault(walk1(mem, cfg, 0x1000), "F_ADDR_SIZE", 1, 3)
    assert walk1(mem, cfg, 0x2000).ok


# ------------------------------------------------------------------ access flag, permissions


def test_access_flag_fault_unless_disabled():
    mem = SparseMemory()
    tb, cfg = s1(mem)
    tb.map(0x1000, 3, s1_leaf(0xA000, page=True, af=0))
    assert_fault(walk1(mem, cfg, 0x1000), "F_ACCESS", 1, 3)
    cfg_affd = StageConfig(stage=1, granule=4096, tsz=16, ttb=tb.root, oas=48, affd=True)
    assert walk1(mem, cfg_affd, 0x1000).ok


@pytest.mark.parametrize("ap,priv_rw,unpriv_rw", [
    (AP_RW_PRIV_ONLY, "rw", ""), (AP_RW_ANY, "rw", "rw"),
    (AP_RO_PRIV_ONLY, "r", ""), (AP_RO_ANY, "r", "r"),
])
def test_ap_permissions(ap, priv_rw, unpriv_rw):
    mem = SparseMemory()
    tb, cfg = s1(mem)
    tb.map(0x1000, 3, s1_leaf(0xA000, page=True, ap=ap, UXN=1, PXN=1))
    for acc, allowed, want in ((RP, "r" in priv_rw, priv_rw), (WP, "w" in priv_rw, priv_rw),
                               (R, "r" in unpriv_rw, unpriv_rw), (W, "w" in unpriv_rw, unpriv_rw)):
        r = walk1(mem, cfg, 0x1000, acc)
        if allowed:
            assert r.ok and r.perm == want, (acc, r)
        else:
            assert_fault(r, "F_PERMISSION", 1, 3)


def test_execute_never_bits():
    mem = SparseMemory()
    tb, cfg = s1(mem)
    tb.map(0x1000, 3, s1_leaf(0xA000, page=True, ap=AP_RO_ANY, UXN=1))
    tb.map(0x2000, 3, s1_leaf(0xB000, page=True, ap=AP_RO_ANY, PXN=1))
    tb.map(0x3000, 3, s1_leaf(0xC000, page=True, ap=AP_RW_ANY))
    assert_fault(walk1(mem, cfg, 0x1000, X), "F_PERMISSION", 1)
    assert walk1(mem, cfg, 0x1000, XP).perm == "rx"
    assert walk1(mem, cfg, 0x2000, X).perm == "rx"
    assert_fault(walk1(mem, cfg, 0x2000, XP), "F_PERMISSION", 1)
    # Writable at EL0 implies privileged execute-never.
    assert walk1(mem, cfg, 0x3000, X).perm == "rwx"
    assert_fault(walk1(mem, cfg, 0x3000, XP), "F_PERMISSION", 1)
    assert walk1(mem, cfg, 0x3000, RP).perm == "rw"


@pytest.mark.parametrize("attrs,access,fault", [
    ({"APTABLE": 0b10}, WP, True), ({"APTABLE": 0b10}, RP, False),
    ({"APTABLE": 0b01}, R, True), ({"APTABLE": 0b01}, RP, False),
    ({"UXNTABLE": 1}, X, True), ({"UXNTABLE": 1}, XP, False),
    ({"PXNTABLE": 1}, XP, True), ({"PXNTABLE": 1}, X, False),
])
def test_hierarchical_table_permissions(attrs, access, fault):
    mem = SparseMemory()
    tb, cfg = s1(mem, table_attrs={1: attrs})
    # Read-only leaves for the XN cases: EL0-writable pages are never privileged-executable.
    ap = AP_RO_ANY if access.exec else AP_RW_ANY
    tb.map(0x1000, 3, s1_leaf(0xA000, page=True, ap=ap))
    r = walk1(mem, cfg, 0x1000, access)
    if fault:
        assert_fault(r, "F_PERMISSION", 1, 3)
    else:
        assert r.ok


# ------------------------------------------------------------------ bus errors


def test_bus_error_on_descriptor_fetch_is_walk_eabt():
    mem = SparseMemory(size=1 << 32)
    tb, cfg = s1(mem)
    tb.map(0x1000, 2, table_desc(1 << 33))
    r = walk1(mem, cfg, 0x1000)
    assert_fault(r, "F_WALK_EABT", 1, 3)
    assert len(r.reads) == 3


# ------------------------------------------------------------------ stage 2


@pytest.mark.parametrize("granule,tsz,sl0", [
    (4096, 24, 1), (4096, 32, 0), (4096, 16, 2), (4096, 25, 1),
    (16384, 24, 1), (16384, 16, 2), (65536, 16, 2), (65536, 24, 1), (65536, 34, 0),
])
def test_stage2_page_for_each_granule_and_sl0(granule, tsz, sl0):
    mem = SparseMemory()
    tb, cfg = s2(mem, granule=granule, tsz=tsz, sl0=sl0)
    assert stage2_config_legal(cfg)
    ipa = ((1 << (64 - tsz)) - 1) & 0x0000_A5A5_A5A5_A5A5
    oa = 0x2_0000_0000 + granule * 3
    tb.map(ipa, 3, s2_leaf(oa, page=True))
    r = translate_stage2(mem, cfg, ipa, R)
    assert r.ok, r
    assert r.out == oa | (ipa & (granule - 1)) and r.size == granule
    assert len(r.reads) == 4 - s2_start_level(granule, sl0)


def test_stage2_concatenated_start_table():
    mem = SparseMemory()
    # 4 KB, 40-bit IPA, start at level 1: level 1 resolves 10 bits -> 2 concatenated tables.
    tb, cfg = s2(mem, tsz=24, sl0=1)
    ipa = (1 << 39) | 0x4000_1000
    tb.map(ipa, 3, s2_leaf(0xC000, page=True))
    r = translate_stage2(mem, cfg, ipa, R)
    assert r.ok and r.out == 0xC000
    assert r.reads[0][0] == tb.root + 4096 + 1 * 8


def test_stage2_block_and_permissions():
    mem = SparseMemory()
    tb, cfg = s2(mem)
    tb.map(0x4000_0000, 1, s2_leaf(0x1_0000_0000, page=False, s2ap=S2AP_READ, XN=1))
    r = translate_stage2(mem, cfg, 0x4000_1234, R)
    assert r.ok and r.size == 1 << 30 and r.out == 0x1_0000_1234 and r.perm == "r"
    r = translate_stage2(mem, cfg, 0x4000_1234, W)
    assert_fault(r, "F_PERMISSION", 2, 1)
    assert r.fault_ipa == 0x4000_1234
    assert_fault(translate_stage2(mem, cfg, 0x4000_1234, X), "F_PERMISSION", 2)
    tb.map(0x8000_0000, 1, s2_leaf(0x1_4000_0000, page=False, s2ap=S2AP_WRITE))
    assert translate_stage2(mem, cfg, 0x8000_0000, WP).perm == "wx"
    assert_fault(translate_stage2(mem, cfg, 0x8000_0000, RP), "F_PERMISSION", 2)


def test_stage2_access_flag_and_s2affd():
    mem = SparseMemory()
    tb, cfg = s2(mem)
    tb.map(0x1000, 3, s2_leaf(0xA000, page=True, af=0))
    r = translate_stage2(mem, cfg, 0x1000, R)
    assert_fault(r, "F_ACCESS", 2, 3)
    assert r.fault_ipa == 0x1000
    cfg2 = StageConfig(stage=2, granule=4096, tsz=24, ttb=tb.root, oas=48, sl0=1, affd=True)
    assert translate_stage2(mem, cfg2, 0x1000, R).ok


def test_stage2_ipa_beyond_s2t0sz_and_output_beyond_s2ps():
    mem = SparseMemory()
    tb, cfg = s2(mem, tsz=24, oas=40)
    assert_fault(translate_stage2(mem, cfg, 1 << 40, R), "F_TRANSLATION", 2)
    tb.map(0x1000, 3, s2_leaf(1 << 40, page=True))
    assert_fault(translate_stage2(mem, cfg, 0x1000, R), "F_ADDR_SIZE", 2, 3)


@pytest.mark.parametrize("granule,tsz,sl0,pa_max,legal", [
    (4096, 24, 1, 48, True),
    (4096, 16, 1, 48, False),    # 48-bit IPA from level 1 needs 512 concatenated tables
    (4096, 21, 1, 48, True),     # 43 bits: 16 concatenated tables, the most allowed
    (4096, 20, 1, 48, False),    # 44 bits: 32 tables
    (4096, 25, 0, 48, False),    # level 2 cannot resolve 39 bits
    (4096, 16, 2, 48, True),
    (4096, 24, 2, 40, False),    # start level 0 needs PAMax >= 44
    (4096, 24, 3, 48, False),    # S2SL0 = 3 is reserved
    (4096, 40, 0, 48, False),    # S2T0SZ above 39
    (4096, 16, 2, 40, False),    # IPA larger than the PA size
    (16384, 16, 2, 48, True),
    (16384, 30, 2, 48, False),   # start level 1 with only 34 bits: nothing for level 1
    (65536, 16, 2, 48, True),
    (65536, 16, 2, 42, False),
    (65536, 12, 2, 52, True),
])
def test_stage2_config_legal(granule, tsz, sl0, pa_max, legal):
    cfg = StageConfig(stage=2, granule=granule, tsz=tsz, ttb=0, oas=min(pa_max, 48), sl0=sl0)
    assert stage2_config_legal(cfg, pa_max) is legal
    if not legal and stage2_config_legal(cfg, 52) is False:
        # Illegal configurations still walk to a fault, never an exception.
        assert_fault(translate_stage2(SparseMemory(), cfg, 0, R), "F_TRANSLATION", 2)


def test_stage1_config_legal_ranges():
    assert stage1_config_legal(StageConfig(stage=1, granule=4096, tsz=16, ttb=0, oas=48))
    assert not stage1_config_legal(StageConfig(stage=1, granule=4096, tsz=12, ttb=0, oas=48))
    assert stage1_config_legal(StageConfig(stage=1, granule=65536, tsz=12, ttb=0, oas=52))
    assert not stage1_config_legal(StageConfig(stage=1, granule=8192, tsz=16, ttb=0, oas=48))
    bad = StageConfig(stage=1, granule=4096, tsz=40, ttb=0, oas=48)
    assert_fault(walk1(SparseMemory(), bad, 0), "F_TRANSLATION", 1)


# ------------------------------------------------------------------ nested


def nested(mem, *, s2_table_perm=S2AP_READ | S2AP_WRITE, s2_ptw=False, memattr=0b1111):
    """Stage 1 tables at IPA TABLES.. mapped by stage 2 to PA IPA + OFFSET."""
    offset = 0x1_0000_0000
    s2tb, s2cfg = s2(mem, tsz=24, sl0=1, s2_ptw=s2_ptw)
    # Stage 1 tables are written at their PA; the builder hands out IPAs.
    s1tb = TableBuilder(_Shifted(mem, offset), 4096, 25, s1_start_level(4096, 25), TABLES)
    s1cfg = StageConfig(stage=1, granule=4096, tsz=25, ttb=s1tb.root, oas=40)
    for page in range(16):
        ipa = TABLES + page * 4096
        s2tb.map(ipa, 3, s2_leaf(ipa + offset, page=True, s2ap=s2_table_perm, memattr=memattr))
    return s1tb, s1cfg, s2tb, s2cfg


class _Shifted:
    """Writes at IPA + offset: stage 1 tables in the guest's IPA space, stored at their PA."""

    def __init__(self, mem, offset):
        self.mem, self.offset = mem, offset

    def write(self, addr, data, rid=0, msi=False):
        self.mem.write(addr + self.offset, data)


def test_nested_translation_goes_through_both_stages():
    mem = SparseMemory(size=1 << 40)
    s1tb, s1cfg, s2tb, s2cfg = nested(mem)
    s1tb.map(0x40_0000, 2, s1_leaf(0x60_0000, page=False, ap=AP_RW_ANY, UXN=1))  # 2 MB block
    s2tb.map(0x60_0000 + 0x3000, 3, s2_leaf(0x9_0000_3000, page=True, s2ap=S2AP_READ))
    r = walk1(mem, s1cfg, 0x40_3010, R, s2cfg=s2cfg)
    assert r.ok, r
    assert r.out == 0x9_0000_3010
    assert r.size == 4096                      # the smaller of 2 MB (s1) and 4 KB (s2)
    assert r.perm == "r"                       # rw- (s1, unpriv, UXN) & r-x (s2)
    # 2 stage 1 fetches (levels 1, 2), each after a 3-level stage 2 walk, then the final one.
    assert len(r.reads) == 2 * (3 + 1) + 3
    w = walk1(mem, s1cfg, 0x40_3010, W, s2cfg=s2cfg)
    assert_fault(w, "F_PERMISSION", 2)
    assert w.fault_ipa == 0x60_3010 and not w.s2_on_s1_walk


def test_nested_stage2_fault_on_stage1_table_fetch():
    mem = SparseMemory(size=1 << 40)
    s1tb, s1cfg, s2tb, s2cfg = nested(mem)
    s1tb.map(0x1000, 3, s1_leaf(0x5000, page=True))
    leaf_table = s1tb.entry_addr(0x1000, 3) & ~0xFFF
    s2tb.map(leaf_table, 3, 0)              # unmap the stage 1 level 3 table's IPA
    r = walk1(mem, s1cfg, 0x1000, RP, s2cfg=s2cfg)
    assert_fault(r, "F_TRANSLATION", 2, 3)
    assert r.s2_on_s1_walk and r.fault_ipa == s1tb.entry_addr(0x1000, 3)


def test_nested_stage2_permission_and_access_on_walk():
    mem = SparseMemory(size=1 << 40)
    s1tb, s1cfg, s2tb, s2cfg = nested(mem, s2_table_perm=S2AP_WRITE)
    s1tb.map(0x1000, 3, s1_leaf(0x5000, page=True))
    r = walk1(mem, s1cfg, 0x1000, RP, s2cfg=s2cfg)
    assert_fault(r, "F_PERMISSION", 2)
    assert r.s2_on_s1_walk and r.fault_ipa == s1cfg.ttb


def test_nested_s2ptw_device_memory_walk():
    mem = SparseMemory(size=1 << 40)
    s1tb, s1cfg, s2tb, s2cfg = nested(mem, s2_ptw=True, memattr=0b0001)   # Device-nGnRE
    s1tb.map(0x1000, 3, s1_leaf(0x5000, page=True))
    s2tb.map(0x5000, 3, s2_leaf(0x7000, page=True))
    r = walk1(mem, s1cfg, 0x1000, RP, s2cfg=s2cfg)
    assert_fault(r, "F_PERMISSION", 2)
    assert r.s2_on_s1_walk
    # Without S2PTW the same tables walk fine.
    s2cfg_off = StageConfig(stage=2, granule=4096, tsz=24, ttb=s2cfg.ttb, oas=48, sl0=1)
    r = walk1(mem, s1cfg, 0x1000, RP, s2cfg=s2cfg_off)
    assert r.ok and r.out == 0x7000


def test_nested_bus_error_in_stage2_walk():
    mem = SparseMemory(size=1 << 40)
    s1tb, s1cfg, s2tb, s2cfg = nested(mem)
    s1tb.map(0x1000, 3, s1_leaf(0x5000, page=True))
    s2tb.map(s1cfg.ttb, 2, table_desc(1 << 41))        # stage 2 table beyond memory
    r = walk1(mem, s1cfg, 0x1000, RP, s2cfg=s2cfg)
    assert_fault(r, "F_WALK_EABT", 2, 3)
    assert r.s2_on_s1_walk and r.fault_ipa == s1cfg.ttb


def test_nested_stage1_ttb_ipa_beyond_stage2_range():
    mem = SparseMemory(size=1 << 40)
    _, _, _, s2cfg = nested(mem)
    s1cfg = StageConfig(stage=1, granule=4096, tsz=25, ttb=1 << 41, oas=42)
    r = walk1(mem, s1cfg, 0x1000, RP, s2cfg=s2cfg)
    assert_fault(r, "F_TRANSLATION", 2)
    assert r.s2_on_s1_walk and r.fault_ipa == 1 << 41
