"""§3.21.1 walk caches and §4.4.1.1 Leaf: in the caching modes the SMMU keeps the
intermediate table entries a walk used, per stage 1 (VMID, ASID) and stage 2 (VMID) context.
A TLBI with Leaf=1 need only remove last-level entries, so a table the driver replaced (freed)
after a leaf-only TLBI goes on being walked; Leaf=0, the ASID and the VMALL scopes remove the
walk entries too."""

import pytest
from smmu_driver import Driver, s1_cd, s1_ste, s2_ste

from cosim.arch.descriptors import (
    DESC_BYTES,
    TableBuilder,
    s1_leaf,
    s1_start_level,
    s2_leaf,
    s2_start_level,
    table_desc,
)
from cosim.smmu import SmmuOptions

PA_OLD, PA_NEW = 0x8000_0000, 0x9000_0000
SID, ASID, VMID = 3, 5, 2
VA = 0x20_1000          # in the 2 MB region [0x20_0000, 0x40_0000): one level 3 table


def replace_l3_table(d: Driver, tb: TableBuilder, ia: int, leaf: int) -> None:
    """What a driver does when it frees a level 3 table and maps the region anew: a new
    table, and the level 2 entry rewritten to point at it."""
    new_l3 = d.alloc(0x1000, align=0x1000)
    d.mem.write_u64(new_l3 + ((ia >> 12) & 0x1FF) * DESC_BYTES, leaf)
    d.mem.write_u64(tb.entry_addr(ia, 2), table_desc(new_l3))


def s1_stream(d: Driver) -> TableBuilder:
    tb = TableBuilder(d.mem, 4096, 16, s1_start_level(4096, 16), d.alloc(0x10_0000))
    tb.map(VA, 3, s1_leaf(PA_OLD, page=True, NG=1))
    cdtab = d.cd_table(SID)
    d.write_cd(cdtab, 0, s1_cd(tb.root, asid=ASID))
    d.write_ste(SID, s1_ste(cdtab))
    assert d.xl(SID, VA).pa == PA_OLD
    return tb


@pytest.mark.parametrize("leaf,want", [(1, PA_OLD), (0, PA_NEW)])
def test_4_4_1_1_leaf_1_tlbi_keeps_the_walk_cache(leaf, want):
    d = Driver(SmmuOptions(cache_mode="caching")).init()
    tb = s1_stream(d)
    replace_l3_table(d, tb, VA, s1_leaf(PA_NEW, page=True, NG=1))
    d.cmd("TLBI_NH_VA", VMID=0, ASID=ASID, Address=VA >> 12, Leaf=leaf)
    d.sync()
    t = d.xl(SID, VA)
    assert t.pa == want and d.trace.kinds("xlate")[-1]["tlb"] is False   # walked again


def test_4_4_2_tlbi_nh_asid_removes_walk_entries():
    d = Driver(SmmuOptions(cache_mode="caching")).init()
    tb = s1_stream(d)
    replace_l3_table(d, tb, VA, s1_leaf(PA_NEW, page=True, NG=1))
    d.cmd("TLBI_NH_ASID", VMID=0, ASID=ASID)
    d.sync()
    assert d.xl(SID, VA).pa == PA_NEW
    assert len(d.smmu.tlb.walks) > 0                   # refilled by that walk


def test_3_21_1_coherent_mode_has_no_walk_cache():
    d = Driver().init()
    tb = s1_stream(d)
    replace_l3_table(d, tb, VA, s1_leaf(PA_NEW, page=True, NG=1))
    assert d.xl(SID, VA).pa == PA_NEW
    assert len(d.smmu.tlb.walks) == 0


@pytest.mark.parametrize("leaf,want", [(1, PA_OLD), (0, PA_NEW)])
def test_4_4_3_stage2_walk_cache_and_tlbi_s2_ipa_leaf(leaf, want):
    d = Driver(SmmuOptions(cache_mode="caching")).init()
    tb = TableBuilder(d.mem, 4096, 16, s2_start_level(4096, 2), d.alloc(0x10_0000))
    tb.map(VA, 3, s2_leaf(PA_OLD, page=True))
    d.write_ste(SID, s2_ste(tb.root, vmid=VMID))
    assert d.xl(SID, VA).pa == PA_OLD
    replace_l3_table(d, tb, VA, s2_leaf(PA_NEW, page=True))
    d.cmd("TLBI_S2_IPA", VMID=VMID, IPA=VA >> 12, Leaf=leaf)
    d.sync()
    assert d.xl(SID, VA).pa == want
    d.cmd("TLBI_S12_VMALL", VMID=VMID)
    d.sync()
    assert d.xl(SID, VA).pa == PA_NEW


def test_4_4_1_1_leaf_0_range_removes_only_overlapping_walk_entries():
    """A Leaf=0 range TLBI elsewhere leaves this region's walk entries alone."""
    d = Driver(SmmuOptions(cache_mode="caching")).init()
    tb = s1_stream(d)
    replace_l3_table(d, tb, VA, s1_leaf(PA_NEW, page=True, NG=1))
    d.cmd("TLBI_NH_VA", VMID=0, ASID=ASID, Address=VA >> 12, Leaf=1)       # the leaf
    d.cmd("TLBI_NH_VA", VMID=0, ASID=ASID, Address=0x80_0000 >> 12, Leaf=0, NUM=1, TG=1)
    d.sync()
    assert d.xl(SID, VA).pa == PA_OLD
