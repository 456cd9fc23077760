"""§4.4.1.1 Range-based invalidation and level hint: the range a CMD_TLBI_* covers, as the
TLB and the trace see it, and the Reserved encodings that are CERROR_ILL."""

import pytest
from smmu_driver import Driver, s1_cd, s1_ste, s2_ste

from cosim.arch.commands import CERROR_ILL
from cosim.smmu import SmmuOptions

PA = 0x8000_0000
SID, ASID, VMID = 3, 5, 0
PAGES = 64


def s1_cached(d: Driver, granule: int = 4096) -> list[int]:
    """A stage 1 stream with PAGES pages mapped, every one translated once (TLB filled)."""
    vas = [i * granule for i in range(PAGES)]
    tg0 = {4096: 0, 16384: 2, 65536: 1}[granule]
    ttb = d.s1_tables({va: PA + va for va in vas}, granule=granule)
    cdtab = d.cd_table(SID)
    d.write_cd(cdtab, 0, s1_cd(ttb, asid=ASID, tg0=tg0))
    d.write_ste(SID, s1_ste(cdtab))
    for va in vas:
        assert d.xl(SID, va).ok
    return vas


def still_cached(d: Driver, vas: list[int]) -> list[int]:
    d.trace.records.clear()
    out = []
    for va in vas:
        d.xl(SID, va)
        if d.trace.kinds("xlate")[-1]["tlb"]:
            out.append(va)
    return out


@pytest.mark.parametrize("num,scale,tg,granule", [
    (0, 1, 1, 4096),     # 1 * 2^1 * 4K = 8K
    (1, 2, 1, 4096),     # 2 * 2^2 * 4K = 32K (the PE formula would give 2 * 2^11 pages)
    (2, 3, 1, 4096),     # 3 * 2^3 * 4K = 96K
    (3, 0, 1, 4096),     # 4 * 4K
    (1, 1, 3, 65536),    # 2 * 2 * 64K
])
def test_4_4_1_1_range_is_num_plus_one_times_two_to_scale_granules(num, scale, tg, granule):
    """§4.4.1.1: Range = ((NUM+1) * 2^SCALE) * Translation_Granule_Size, Address <= A <
    Address + Range; the trace records that size and only those entries go."""
    d = Driver(SmmuOptions(cache_mode="caching")).init()
    vas = s1_cached(d, granule)
    base = 4 * granule
    d.cmd("TLBI_NH_VA", VMID=VMID, ASID=ASID, Address=base >> 12, NUM=num, SCALE=scale,
          TG=tg, TTL=0, Leaf=1)
    d.sync()
    span = (num + 1) * (1 << scale) * granule
    rec = d.trace.kinds("tlbi")[-1]
    assert (rec["addr"], rec["size"]) == (base, span)
    assert rec["n"] == span // granule
    kept = still_cached(d, vas)
    assert kept == [va for va in vas if not base <= va < base + span]


def test_4_4_1_1_s2_ipa_range_uses_the_same_formula():
    """§4.4.1.1 applies to TLBI_S2_IPA too (IPA field, stage 2 entries)."""
    d = Driver(SmmuOptions(cache_mode="caching")).init()
    ipas = [i * 4096 for i in range(PAGES)]
    ttb = d.s2_tables({ipa: PA + ipa for ipa in ipas})
    d.write_ste(SID, s2_ste(ttb, vmid=2))
    for ipa in ipas:
        assert d.xl(SID, ipa).ok
    d.cmd("TLBI_S2_IPA", VMID=2, IPA=0x8000 >> 12, NUM=1, SCALE=3, TG=1, TTL=3, Leaf=1)
    d.sync()
    rec = d.trace.kinds("tlbi")[-1]
    assert (rec["addr"], rec["size"], rec["n"]) == (0x8000, 16 * 4096, 16)


def test_4_4_1_1_non_range_tlbi_covers_the_entry_holding_the_address():
    """TG == 0b00: no range; the entry containing Address goes (§4.4, the low bits of the
    address are ignored as needed for the entry's size)."""
    d = Driver(SmmuOptions(cache_mode="caching")).init()
    vas = s1_cached(d)
    d.cmd("TLBI_NH_VA", VMID=VMID, ASID=ASID, Address=0x5000 >> 12, Leaf=1)
    d.sync()
    assert d.trace.kinds("tlbi")[-1]["n"] == 1
    assert 0x5000 not in still_cached(d, vas)


@pytest.mark.parametrize("fields", [
    dict(NUM=0, SCALE=0, TTL=0, TG=1),        # granule without range or TTL: Reserved
    dict(NUM=0, SCALE=0, TTL=0, TG=3),
    dict(NUM=4, SCALE=0, TTL=1, TG=2),        # 16KB, TTL=0b01 without IDR5.DS
])
def test_4_4_1_1_reserved_range_encodings_are_cerror_ill(fields):
    d = Driver().init()
    d.cmd("TLBI_NH_VA", VMID=0, ASID=1, Address=0, Leaf=1, **fields)
    assert d.cmdq_err() and d.cons_err() == CERROR_ILL


def test_4_4_1_1_linux_range_encodings_are_legal():
    """What arm_smmu_tlb_inv_range_cmdq() sends: TTL from the leaf level, or NUM bumped so the
    reserved combination never occurs."""
    d = Driver().init()
    d.cmd("TLBI_NH_VA", VMID=0, ASID=1, Address=0, Leaf=1, NUM=0, SCALE=0, TTL=3, TG=1)
    d.cmd("TLBI_NH_VA", VMID=0, ASID=1, Address=0, Leaf=0, NUM=1, SCALE=0, TTL=0, TG=1)
    d.sync()
    assert not d.cmdq_err()
