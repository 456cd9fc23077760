"""§3.17.1 The Global flag in the translation table descriptor: an entry from a stage 1 leaf
with nG == 0 matches lookups with any ASID through CDs of the same ASET; TLBI_NH_ASID does not
invalidate it, TLBI_NH_VA (any ASID) and TLBI_NH_ALL do (§4.4.2, Armv8-A rules)."""

from smmu_driver import Driver, s1_cd, s1_ste

from cosim.arch.descriptors import TableBuilder, s1_leaf, s1_start_level
from cosim.smmu import SmmuOptions

PA_G, PA_2 = 0x8000_0000, 0x9000_0000
VA = 0x1000


def setup(aset2: int = 1) -> Driver:
    d = Driver(SmmuOptions(cache_mode="caching")).init()
    tb = TableBuilder(d.mem, 4096, 16, s1_start_level(4096, 16), d.alloc(0x10_0000))
    tb.map(VA, 3, s1_leaf(PA_G, page=True, NG=0))                  # a global mapping
    ttb2 = d.s1_tables({VA: PA_2})                                  # nG=1
    for sid, asid, ttb, aset in ((1, 1, tb.root, 1), (2, 2, ttb2, aset2)):
        cdtab = d.cd_table(sid)
        d.write_cd(cdtab, 0, s1_cd(ttb, asid=asid, ASET=aset))
        d.write_ste(sid, s1_ste(cdtab))
    assert d.xl(1, VA).pa == PA_G                                   # inserted as global
    return d


def test_3_17_1_global_entry_matches_another_asid_with_the_same_aset():
    d = setup()
    t = d.xl(2, VA)
    assert t.pa == PA_G and d.trace.kinds("xlate")[-1]["tlb"] is True


def test_3_17_1_global_entry_does_not_match_another_aset():
    d = setup(aset2=0)
    assert d.xl(2, VA).pa == PA_2


def test_4_4_2_tlbi_nh_asid_leaves_global_entries_nh_va_removes_them():
    d = setup()
    d.cmd("TLBI_NH_ASID", VMID=0, ASID=1)
    d.sync()
    assert d.xl(2, VA).pa == PA_G                                   # still cached, global
    d.cmd("TLBI_NH_VA", VMID=0, ASID=2, Address=VA >> 12, Leaf=1)   # another ASID's VA
    d.sync()
    assert d.xl(2, VA).pa == PA_2
