"""§3.21.1 Translation tables and TLB invalidation: TLB behaviour follows Armv8-A, where an
entry that grants too little may be cached and the Permission fault taken from it. In the
caching modes the model does so (docs/conformance.md): a permission upgrade without a TLBI is
not seen, instead of being picked up by a silent re-walk."""

from smmu_driver import Driver, nested_ste, s1_cd, s1_ste

from cosim.arch.descriptors import S2AP_READ, TableBuilder, s2_leaf, s2_start_level
from cosim.smmu import SmmuOptions

PA = 0x8000_0000
SID, ASID = 3, 5
AP_RO = 0b11     # AP[2:1]: read-only at any EL


def last_xlate(d: Driver) -> dict:
    return d.trace.kinds("xlate")[-1]


def test_3_21_1_permission_fault_from_a_cached_entry_until_tlbi():
    d = Driver(SmmuOptions(cache_mode="caching")).init()
    base = d.alloc(0x10_0000)
    ttb = d.s1_tables({0x1000: PA}, perm_ap=AP_RO, base=base)
    cdtab = d.cd_table(SID)
    d.write_cd(cdtab, 0, s1_cd(ttb, asid=ASID))
    d.write_ste(SID, s1_ste(cdtab))
    assert d.xl(SID, 0x1000).ok                           # read: entry cached
    t = d.xl(SID, 0x1000, write=True)
    assert t.fault == "F_PERMISSION" and last_xlate(d)["tlb"] is True
    assert d.s1_tables({0x1000: PA}, base=base) == ttb    # now read-write, no TLBI
    t = d.xl(SID, 0x1000, write=True)
    assert t.fault == "F_PERMISSION" and last_xlate(d)["tlb"] is True
    ev = d.events()
    assert [e["name"] for e in ev] == ["F_PERMISSION", "F_PERMISSION"]
    assert ev[-1]["S2"] == 0 and ev[-1]["RnW"] == 0 and ev[-1]["InputAddr"] == 0x1000
    d.cmd("TLBI_NH_VA", VMID=0, ASID=ASID, Address=0x1000 >> 12, Leaf=1)
    d.sync()
    assert d.xl(SID, 0x1000, write=True).ok


def test_3_21_1_coherent_mode_sees_the_upgrade_at_once():
    d = Driver().init()
    base = d.alloc(0x10_0000)
    ttb = d.s1_tables({0x1000: PA}, perm_ap=AP_RO, base=base)
    cdtab = d.cd_table(SID)
    d.write_cd(cdtab, 0, s1_cd(ttb, asid=ASID))
    d.write_ste(SID, s1_ste(cdtab))
    assert d.xl(SID, 0x1000, write=True).fault == "F_PERMISSION"
    d.s1_tables({0x1000: PA}, base=base)
    assert d.xl(SID, 0x1000, write=True).ok


def test_3_21_1_combined_entry_blames_the_stage_that_denies():
    """A nested (combined) entry read-only at stage 2 only: the fault from the TLB is a stage 2
    F_PERMISSION carrying the IPA stage 1 produced."""
    d = Driver(SmmuOptions(cache_mode="caching")).init()
    ipa_cd, ipa_tt, ipa_data = 0x4000_0000, 0x4010_0000, 0x9000
    ttb1 = d.s1_tables({0x1000: ipa_data}, base=ipa_tt)
    tb = TableBuilder(d.mem, 4096, 16, s2_start_level(4096, 2), d.alloc(0x10_0000))
    for ipa in [ipa_cd] + [ipa_tt + off for off in range(0, 0x10_0000, 0x1000)]:
        tb.map(ipa, 3, s2_leaf(ipa, page=True))                        # identity, RW
    tb.map(ipa_data, 3, s2_leaf(PA, page=True, s2ap=S2AP_READ))        # data page RO
    d.write_cd(ipa_cd, 0, s1_cd(ttb1, asid=ASID))
    d.write_ste(SID, nested_ste(ipa_cd, tb.root, vmid=2))
    assert d.xl(SID, 0x1004).pa == PA + 4
    t = d.xl(SID, 0x1004, write=True)
    assert t.fault == "F_PERMISSION" and last_xlate(d)["tlb"] is True
    ev = d.events()[-1]
    assert ev["S2"] == 1 and ev["IPA"] << 12 == ipa_data


def test_3_17_a_tlb_hit_is_the_domain_its_entry_was_walked_in():
    """§3.17: TLB entries are tagged by ASID/VMID, not by the tables. A CD that names new
    tables under the same ASID, with no TLBI, keeps hitting the entries walked in the old ones:
    such a hit is the old domain's translation, and its `dom` (the provenance the analysis
    judges) says so, not the domain the CD names now."""
    d = Driver(SmmuOptions(cache_mode="caching")).init()
    ttb_a = d.s1_tables({0x1000: PA}, base=d.alloc(0x10_0000))
    ttb_b = d.s1_tables({0x1000: PA + 0x10_0000}, base=d.alloc(0x10_0000))
    assert ttb_a != ttb_b
    cdtab = d.cd_table(SID)
    d.write_cd(cdtab, 0, s1_cd(ttb_a, asid=ASID))
    d.write_ste(SID, s1_ste(cdtab))
    assert d.xl(SID, 0x1000).pa == PA
    d.write_cd(cdtab, 0, s1_cd(ttb_b, asid=ASID))
    d.cmd("CFGI_CD", StreamID=SID, SubstreamID=0, Leaf=1)  # the CD is seen; no TLBI
    d.sync()
    t = d.xl(SID, 0x1000)
    rec = last_xlate(d)
    assert t.pa == PA and rec["tlb"] is True
    assert (rec["dom"].asid, rec["dom"].ttb) == (ASID, ttb_a)
    d.cmd("TLBI_NH_ASID", VMID=0, ASID=ASID)
    d.sync()
    assert d.xl(SID, 0x1000).pa == PA + 0x10_0000
    assert last_xlate(d)["dom"].ttb == ttb_b
