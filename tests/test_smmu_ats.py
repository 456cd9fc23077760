"""ATS translation service (§3.9.1) and hitless STE updates the way Linux writes them."""

import pytest
from smmu_driver import Driver, bypass_ste, s1_cd, s1_ste, s2_ste

from cosim.arch.domain import BYPASS, Domain
from cosim.arch.ste import S1DSS_BYPASS, encode_ste
from cosim.smmu import SmmuOptions
from cosim.translation_agent import (
    Access,
    AtsStatus,
    Permissions,
    TranslationAgent,
    TranslationResult,
)

PA = 0x8000_0000
RW = Access(read=True, write=True)


def s1_dev(d, sid=3, asid=5, eats=1, ap=0b01, **kw):
    ttb = d.s1_tables({0x1000: PA}, perm_ap=ap)
    cdtab = d.cd_table(sid)
    d.write_cd(cdtab, 0, s1_cd(ttb, asid=asid))
    d.write_ste(sid, s1_ste(cdtab, eats=eats, **kw))
    return ttb, cdtab


def test_ats_success_carries_translation_size_perm_and_dom():
    d = Driver().init()
    ttb, _ = s1_dev(d)
    c = d.smmu.ats_translate(3, None, 0x1000, RW)
    assert c.status is AtsStatus.SUCCESS and c.pa == PA and c.size == 4096
    assert c.perm.read and c.perm.write and not c.perm.priv
    assert c.dom == Domain.stage1(5, ttb)
    rec = d.trace.kinds("ats")[-1]
    assert rec["status"] == "SUCCESS" and rec["acc"] == "w" and rec["pa"] == PA
    assert "r" in rec["perm"] and "w" in rec["perm"] and rec["dom"] == Domain.stage1(5, ttb)


def test_ats_read_only_page_reports_r_only():
    d = Driver().init()
    s1_dev(d, ap=0b11)
    c = d.smmu.ats_translate(3, None, 0x1000, RW)
    assert c.status is AtsStatus.SUCCESS and c.perm.read and not c.perm.write


def test_ats_translation_fault_is_success_without_permission_and_not_recorded():
    d = Driver().init()
    s1_dev(d)
    c = d.smmu.ats_translate(3, None, 0x9000, RW)
    assert c.status is AtsStatus.SUCCESS and c.perm == Permissions()
    assert c.dom is not None and c.dom.kind == "s1"   # the domain whose tables faulted
    assert d.trace.kinds("ats")[-1]["perm"] == ""
    assert d.event_names() == []


def test_ats_eats_zero_is_ur_with_f_bad_ats_treq():
    d = Driver().init()
    s1_dev(d, eats=0)
    c = d.smmu.ats_translate(3, None, 0x1000, RW)
    assert c.status is AtsStatus.UR and c.dom is None
    assert d.event_names() == ["F_BAD_ATS_TREQ"]


def test_ats_refused_when_disabled_or_unsupported():
    d = Driver().init(smmuen=False)
    c = d.smmu.ats_translate(3, None, 0x1000, RW)
    assert c.status is AtsStatus.UR and c.dom is None
    assert d.trace.kinds("ats")[-1]["status"] == "UR" and d.trace.kinds("ats")[-1]["dom"] is None
    d2 = Driver(SmmuOptions(ats=False)).init()
    s1_dev(d2)
    assert d2.smmu.ats_translate(3, None, 0x1000, RW).status is AtsStatus.UR


def test_ats_config_errors_are_ca():
    d = Driver().init()
    d.write_ste(1, encode_ste(V=0))
    c = d.smmu.ats_translate(1, None, 0, RW)
    assert c.status is AtsStatus.CA and c.dom is None
    d.write_ste(2, encode_ste(V=1, Config=0))
    c = d.smmu.ats_translate(2, None, 0, RW)
    # §3.9.1.2: an abort STE answers UR; a Translation Request records no C_BAD_STE (§7.3.6).
    assert c.status is AtsStatus.UR and c.dom is None
    assert d.event_names() == []


def test_ats_stage2_and_s1dss_bypass():
    d = Driver().init()
    ttb = d.s2_tables({0x2000: PA})
    d.write_ste(1, s2_ste(ttb, vmid=4, eats=1))
    c = d.smmu.ats_translate(1, None, 0x2000, RW)
    assert c.status is AtsStatus.SUCCESS and c.pa == PA and c.dom == Domain.stage2(4, ttb)
    _, cdtab = s1_dev(d, sid=2, cdmax=4, s1dss=S1DSS_BYPASS)
    c = d.smmu.ats_translate(2, None, 0x5000, RW)
    assert c.status is AtsStatus.SUCCESS and c.pa == 0x5000 and c.dom == BYPASS
    assert d.smmu.ats_translate(2, 0, 0x1000, RW).pa == PA


def test_check_translated_follows_eats():
    d = Driver().init()
    s1_dev(d, sid=3, eats=1)
    s1_dev(d, sid=4, eats=0)
    d.write_ste(5, bypass_ste())
    assert d.smmu.check_translated(3, None) is True
    assert d.smmu.check_translated(4, None) is False
    # §5.2 Config 0b100: EATS is effectively 0b00 with ATSCHK=1 (tests/test_conformance_ats.py).
    assert d.smmu.check_translated(5, None) is False
    assert d.event_names() == ["F_TRANSL_FORBIDDEN", "F_TRANSL_FORBIDDEN"]


@pytest.mark.parametrize("order", ["forward", "reverse"])
def test_hitless_ste_update_qword_by_qword(order):
    """arm_smmu_write_entry: each qword written, then CFGI_STE + CMD_SYNC; every intermediate
    STE the SMMU may fetch must decode legally (coherent mode re-reads it every time)."""
    d = Driver().init()
    ttb_a = d.s1_tables({0x1000: PA})
    ttb_b = d.s1_tables({0x1000: PA + 0x10_0000})
    cd_a, cd_b = d.cd_table(3), d.cd_table(4)
    d.write_cd(cd_a, 0, s1_cd(ttb_a, asid=1))
    d.write_cd(cd_b, 0, s1_cd(ttb_b, asid=2))
    old = s1_ste(cd_a, eats=1)
    new = s1_ste(cd_b, eats=1)
    targets = [bypass_ste(), new, old] if order == "forward" else [new, bypass_ste(), old]
    d.write_ste(3, old)
    cur = list(old)
    for target in targets:
        # Linux writes the unused qwords first, then the one that changes the config.
        for i in list(range(1, 8)) + [0]:
            if cur[i] != target[i]:
                cur[i] = target[i]
                d.write_ste_qword(3, i, cur[i])
                d.cmd("CFGI_STE", StreamID=3, Leaf=1)
                d.sync()
                t = d.xl(3, 0x1000)
                assert t.ok, (i, t)
    assert d.event_names() == []


def test_smmu_is_the_devices_translation_agent():
    d = Driver().init()
    agent: TranslationAgent = d.smmu
    assert isinstance(agent, TranslationAgent)
    ttb, _ = s1_dev(d)
    t = agent.translate(3, None, 0x1000, Access(read=True, priv=True))
    assert t == TranslationResult(True, PA, 4096, Permissions(read=True, write=True, priv=True),
                                  Domain.stage1(5, ttb))


def test_ats_record_says_when_the_tlb_served_it():
    """Check e needs to know an ATS completion came from the TLB (§3.9.1 completions are
    translations like any other)."""
    d = Driver(SmmuOptions(cache_mode="caching")).init()
    s1_dev(d)
    d.smmu.ats_translate(3, None, 0x1000, RW)
    d.smmu.ats_translate(3, None, 0x1000, RW)
    first, second = d.trace.kinds("ats")
    assert first["tlb"] is False and second["tlb"] is True
