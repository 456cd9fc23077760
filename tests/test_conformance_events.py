"""§7.3 event records: F_WALK_EABT (§7.3.12) is not a translation-related fault, so CD.R /
STE.S2R do not suppress it (§5.5) and its CLASS is TT for a stage 1 walk; the FetchAddr of
F_STE_FETCH (§7.3.4), F_CD_FETCH (§7.3.10) and F_WALK_EABT sits in doubleword 3, where Linux's
arm_smmu_decode_event() reads it (raw[3] & GENMASK(51, 3))."""

from smmu_driver import STRTAB, Driver, s1_cd, s1_ste, s2_fields

from cosim.arch.events import CLASS_TT, EVENT_RECORD
from cosim.arch.registers import STRTAB_BASE
from cosim.arch.ste import CONFIG_NESTED, encode_ste

SID = 3
OFF_BUS = 1 << 33          # beyond the 4 GB memory these tests give the model


def raw_words(d: Driver) -> list[int]:
    return d.trace.kinds("event")[-1]["raw"]


def test_7_3_12_walk_eabt_recorded_even_with_cd_r_0():
    """§5.5: "R ... only suppresses a fault record if ... the fault is of one of the four
    Translation-related faults"; §7.3.12: a stage 1 walk abort is S2 == 0, CLASS == TT, and
    FetchAddr is the descriptor address whose fetch aborted."""
    d = Driver(mem_size=1 << 32).init()
    cdtab = d.cd_table(SID)
    d.write_cd(cdtab, 0, s1_cd(OFF_BUS - (1 << 20), asid=5, r=0, tsz=25))
    d.write_ste(SID, s1_ste(cdtab))
    t = d.xl(SID, 0x1000)
    assert t.fault == "F_WALK_EABT"
    ev = d.events()
    assert [e["name"] for e in ev] == ["F_WALK_EABT"]
    assert ev[0]["S2"] == 0 and ev[0]["CLASS"] == CLASS_TT
    assert ev[0]["InputAddr"] == 0x1000
    fetch = ev[0]["FetchAddr"] << 3
    assert OFF_BUS - (1 << 20) <= fetch < OFF_BUS - (1 << 20) + 4096   # in the start table
    assert raw_words(d)[3] & ((1 << 52) - 8) == fetch


def test_5_5_translation_fault_still_suppressed_by_cd_r_0():
    d = Driver().init()
    ttb = d.s1_tables({0x1000: 0x8000_0000})
    cdtab = d.cd_table(SID)
    d.write_cd(cdtab, 0, s1_cd(ttb, asid=5, r=0))
    d.write_ste(SID, s1_ste(cdtab))
    assert d.xl(SID, 0x9000).fault == "F_TRANSLATION"
    assert d.event_names() == []


def test_5_5_stage2_walk_eabt_on_cd_fetch_recorded_with_s2r_0():
    """A stage 2 walk abort while translating the CD address: F_WALK_EABT, S2 == 1,
    CLASS == CD, recorded although STE.S2R == 0."""
    d = Driver(mem_size=1 << 32).init()
    s2ttb = OFF_BUS - (1 << 20)
    f = s2_fields(s2ttb, vmid=2, s2r=0)
    d.write_ste(SID, encode_ste(V=1, Config=CONFIG_NESTED, S1ContextPtr=0x40_0000 >> 6, **f))
    t = d.xl(SID, 0x1000)
    assert t.fault == "F_WALK_EABT"
    ev = d.events()
    assert [e["name"] for e in ev] == ["F_WALK_EABT"]
    assert ev[0]["S2"] == 1 and ev[0]["CLASS"] == 0


def test_7_3_4_f_ste_fetch_fetchaddr_in_doubleword_3():
    d = Driver(mem_size=1 << 32).init()
    d.wr("STRTAB_BASE", STRTAB_BASE.encode(ADDR=OFF_BUS >> 6))
    assert d.xl(1, 0).fault == "F_STE_FETCH"
    raw = raw_words(d)
    assert raw[3] & ((1 << 52) - 8) == OFF_BUS + 64
    assert raw[2] == 0                                   # no InputAddr in this record
    assert EVENT_RECORD["FetchAddr"].lo == 195


def test_7_3_10_f_cd_fetch_fetchaddr_in_doubleword_3():
    d = Driver(mem_size=1 << 32).init()
    d.wr("STRTAB_BASE", STRTAB_BASE.encode(ADDR=STRTAB >> 6))
    d.write_ste(SID, s1_ste(OFF_BUS))
    assert d.xl(SID, 0).fault == "F_CD_FETCH"
    assert raw_words(d)[3] & ((1 << 52) - 8) == OFF_BUS
