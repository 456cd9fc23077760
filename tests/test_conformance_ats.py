"""§3.9.1.3 Handling of ATS Translated transactions and §3.9.1.2 Responses to ATS Translation
Requests (with §5.2 STE.EATS / STE.Config and §7.3.6 F_BAD_ATS_TREQ, §7.3.8
F_TRANSL_FORBIDDEN): which Translated transactions pass, which Translation Requests complete
with UR or CA, and which events they record."""

import pytest
from smmu_driver import Driver, abort_ste, bypass_ste, nested_ste, s1_cd, s1_ste

from cosim.arch.events import EVENT_RECORD
from cosim.arch.registers import CR0, CR2
from cosim.arch.ste import S1DSS_TERMINATE, encode_ste
from cosim.smmu import SmmuOptions
from cosim.translation_agent import Access, AtsStatus

PA = 0x8000_0000
RW = Access(read=True, write=True)
SID = 3


def s1_dev(d: Driver, sid: int = SID, eats: int = 1, **kw: int) -> None:
    ttb = d.s1_tables({0x1000: PA})
    cdtab = d.cd_table(sid)
    d.write_cd(cdtab, 0, s1_cd(ttb, asid=5))
    d.write_cd(cdtab, 1, s1_cd(ttb, asid=6))
    d.write_ste(sid, s1_ste(cdtab, eats=eats, **kw))


def cr0(d: Driver, **bits: int) -> None:
    d.write_cr0(CMDQEN=1, EVENTQEN=1, **bits)


# -- §3.9.1.3 Translated transactions --------------------------------------------------------

def test_3_9_1_3_smmuen_0_is_f_transl_forbidden_whatever_gbpa():
    """SMMUEN == 0: "F_TRANSL_FORBIDDEN and aborted", with GBPA bypass as with GBPA abort."""
    for abort in (False, True):
        d = Driver().init(smmuen=False)
        d.gbpa(abort)
        assert d.smmu.check_translated(SID, None, PA, True) is False
        evs = d.events()
        assert [e["name"] for e in evs] == ["F_TRANSL_FORBIDDEN"]
        assert evs[0]["InputAddr"] == PA and evs[0]["RnW"] == 0


def test_3_9_1_3_atschk_0_passes_without_checking_the_ste():
    """ATSCHK == 0: Translated traffic bypasses the SMMU, even through an invalid, abort or
    EATS=0 STE; no event."""
    d = Driver().init()
    cr0(d, SMMUEN=1, ATSCHK=0)
    d.write_ste(1, encode_ste(V=0))
    d.write_ste(2, abort_ste())
    s1_dev(d, sid=3, eats=0)
    for sid in (1, 2, 3, 200):
        assert d.smmu.check_translated(sid, None, PA) is True
    assert d.event_names() == []


def test_3_9_1_3_atschk_1_checks_effective_eats():
    d = Driver().init()
    assert CR0.get(d.rd("CR0ACK"), "ATSCHK")
    s1_dev(d, sid=3, eats=1)
    s1_dev(d, sid=4, eats=0)
    s1_dev(d, sid=5, eats=0b11)        # DPT without IDR3.DPT: behaves as 0b00 (§5.2 EATS)
    d.write_ste(6, bypass_ste())       # Config 0b100: EATS effectively 0b00
    assert d.smmu.check_translated(3, None, PA) is True
    for sid in (4, 5, 6):
        assert d.smmu.check_translated(sid, None, PA) is False
    assert d.event_names() == ["F_TRANSL_FORBIDDEN"] * 3


def test_3_9_1_3_abort_ste_aborts_silently():
    """§5.2 Config 0b000 with ATSCHK == 1: aborted, no event recorded."""
    d = Driver().init()
    d.write_ste(SID, abort_ste())
    assert d.smmu.check_translated(SID, None, PA) is False
    assert d.event_names() == []


@pytest.mark.parametrize("rec_cfg_ats", [0, 1])
def test_3_9_1_3_configuration_errors_recorded_only_with_rec_cfg_ats(rec_cfg_ats):
    """C_BAD_STREAMID / C_BAD_STE / F_STREAM_DISABLED: aborted; "If ATSCHK == 1 and
    SMMU_CR2.REC_CFG_ATS == 1, the event is recorded ... Otherwise, no event is recorded"."""
    d = Driver(SmmuOptions(ats_rec_err=True)).init()
    d.wr("CR2", CR2.encode(PTM=1, RECINVSID=0, REC_CFG_ATS=rec_cfg_ats))
    d.write_ste(1, encode_ste(V=0))
    s1_dev(d, sid=2, cdmax=4, s1dss=S1DSS_TERMINATE)
    assert d.smmu.check_translated(1, None, PA) is False
    assert d.smmu.check_translated(1 << 9, None, PA) is False    # beyond LOG2SIZE
    assert d.smmu.check_translated(2, None, PA) is False
    # RECINVSID=0 does not hide a Translated transaction's C_BAD_STREAMID (§3.9.1.3 note).
    want = ["C_BAD_STE", "C_BAD_STREAMID", "F_STREAM_DISABLED"] if rec_cfg_ats else []
    assert d.event_names() == want


def test_3_9_1_3_rec_cfg_ats_is_res0_without_atsrecerr():
    d = Driver().init()
    d.wr("CR2", CR2.encode(RECINVSID=1, REC_CFG_ATS=1))
    assert not CR2.get(d.rd("CR2"), "REC_CFG_ATS")
    d.write_ste(1, encode_ste(V=0))
    assert d.smmu.check_translated(1, None, PA) is False
    assert d.event_names() == []


def test_3_9_1_1_translated_pa_beyond_oas_is_aborted_silently():
    d = Driver().init()
    s1_dev(d)
    assert d.smmu.check_translated(SID, None, 1 << 48) is False
    assert d.smmu.check_translated(SID, None, (1 << 48) - 4096) is True
    assert d.event_names() == []


def test_7_3_8_f_transl_forbidden_carries_inputaddr_and_rnw():
    d = Driver().init()
    s1_dev(d, eats=0)
    d.smmu.check_translated(SID, None, 0x1234_5000, False)
    ev = d.events()[0]
    assert ev["name"] == "F_TRANSL_FORBIDDEN" and ev["InputAddr"] == 0x1234_5000
    assert ev["RnW"] == 1 and not ev["SSV"]
    assert EVENT_RECORD["RnW"].lo == 99


# -- §3.9.1.2 ATS Translation Requests -------------------------------------------------------

def ats(d: Driver, sid: int = SID, ssid: int | None = None, iova: int = 0x1000):
    return d.smmu.ats_translate(sid, ssid, iova, RW)


def test_3_9_1_2_smmuen_0_is_ur_with_f_bad_ats_treq():
    for abort in (False, True):
        d = Driver().init(smmuen=False)
        d.gbpa(abort)
        assert ats(d).status is AtsStatus.UR
        evs = d.events()
        assert [e["name"] for e in evs] == ["F_BAD_ATS_TREQ"]
        assert evs[0]["InputAddr"] == 0x1000 and evs[0]["RnW"] == 0


def test_3_9_1_2_bypass_ste_is_ur_with_f_bad_ats_treq():
    """STE.Config == 0b100: "Terminated with UR status and F_BAD_ATS_TREQ generated"."""
    d = Driver().init()
    d.write_ste(SID, bypass_ste())
    c = ats(d)
    assert c.status is AtsStatus.UR
    assert d.event_names() == ["F_BAD_ATS_TREQ"]
    assert ats(d, ssid=1).status is AtsStatus.UR      # EATS decides before the SubstreamID


def test_3_9_1_2_abort_ste_is_ur_without_event():
    """STE.Config == 0b000: "Terminated with UR status" (no event), not CA."""
    d = Driver().init()
    d.write_ste(SID, abort_ste())
    assert ats(d).status is AtsStatus.UR
    assert d.event_names() == []


@pytest.mark.parametrize("eats", [0b00, 0b11])
def test_3_9_1_2_effective_eats_0_is_ur_with_f_bad_ats_treq(eats):
    """EATS 0b00, and 0b11 (DPT, Reserved without IDR3.DPT: behaves as 0b00, §5.2)."""
    d = Driver().init()
    s1_dev(d, eats=eats)
    assert ats(d).status is AtsStatus.UR
    assert d.event_names() == ["F_BAD_ATS_TREQ"]


@pytest.mark.parametrize("rec_cfg_ats,recinvsid", [(0, 1), (1, 1), (1, 0)])
def test_3_9_1_2_configuration_errors_are_ca_recorded_only_with_rec_cfg_ats(rec_cfg_ats,
                                                                            recinvsid):
    """C_BAD_STE, C_BAD_SUBSTREAMID, F_STREAM_DISABLED, C_BAD_STREAMID: CA; the event only
    with REC_CFG_ATS == 1 (C_BAD_STREAMID: and RECINVSID == 1); §7.3.6: "Translation
    Requests do not cause other events (such as C_BAD_STE) to be recorded"."""
    d = Driver(SmmuOptions(ats_rec_err=True)).init()
    d.wr("CR2", CR2.encode(PTM=1, RECINVSID=recinvsid, REC_CFG_ATS=rec_cfg_ats))
    d.write_ste(1, encode_ste(V=0))
    s1_dev(d, sid=2, cdmax=4, s1dss=S1DSS_TERMINATE)
    s1_dev(d, sid=3, cdmax=2)
    assert ats(d, 1).status is AtsStatus.CA                 # C_BAD_STE
    assert ats(d, 2).status is AtsStatus.CA                 # F_STREAM_DISABLED (S1DSS=0b00)
    assert ats(d, 3, ssid=7).status is AtsStatus.CA         # C_BAD_SUBSTREAMID (>= 2^CDMax)
    assert ats(d, 1 << 9).status is AtsStatus.CA            # C_BAD_STREAMID
    want = []
    if rec_cfg_ats:
        want = ["C_BAD_STE", "F_STREAM_DISABLED", "C_BAD_SUBSTREAMID"]
        want += ["C_BAD_STREAMID"] if recinvsid else []
    assert d.event_names() == want


def test_3_9_1_2_translation_fault_is_success_without_access_and_no_event():
    d = Driver().init()
    s1_dev(d)
    c = ats(d, iova=0x9000)
    assert c.status is AtsStatus.SUCCESS and not c.perm.read and not c.perm.write
    assert d.event_names() == []


def test_3_9_1_2_walk_external_abort_is_ca():
    """F_WALK_EABT is in the configuration-error list: CA (no event without REC_CFG_ATS)."""
    d = Driver(mem_size=1 << 32).init()
    cdtab = d.cd_table(SID)
    d.write_cd(cdtab, 0, s1_cd(0xFFFF_0000_0000 & ((1 << 48) - 1), asid=5))
    d.write_ste(SID, s1_ste(cdtab, eats=1))
    assert ats(d).status is AtsStatus.CA
    assert d.event_names() == []
    assert d.xl(SID, 0x1000).fault == "F_WALK_EABT"       # the same walk, untranslated


def test_3_9_1_2_s1dss_bypass_is_identity_success():
    """"If STE.S1DSS causes a stage 1 skip, and STE.Config == 0b101, the response is Success,
    U == 0, R == W == 1, identity-mapping"."""
    d = Driver().init()
    s1_dev(d, cdmax=4, s1dss=1)
    c = ats(d, iova=0x7000)
    assert c.status is AtsStatus.SUCCESS and c.pa == 0x7000
    assert c.perm.read and c.perm.write


def test_3_9_1_2_stage2_fault_on_cd_fetch_is_success_without_access():
    """"This includes stage 2 faults for a CD fetch": R == W == 0, no event; an external abort
    on that stage 2 walk is CA (F_WALK_EABT, recorded only with REC_CFG_ATS)."""
    d = Driver(SmmuOptions(ats_rec_err=True), mem_size=1 << 32).init()
    s2ttb = d.s2_tables({0x2000: PA})                        # the CD's IPA is not mapped
    d.write_ste(SID, nested_ste(0x40_0000, s2ttb, vmid=2, EATS=1))
    c = ats(d)
    assert c.status is AtsStatus.SUCCESS and not c.perm.read and not c.perm.write
    assert d.event_names() == []
    d.wr("CR2", CR2.encode(RECINVSID=1, REC_CFG_ATS=1))
    d.write_ste(SID + 1, nested_ste(0x40_0000, (1 << 33) - (1 << 20), vmid=3, EATS=1))
    assert ats(d, SID + 1).status is AtsStatus.CA
    assert d.event_names() == ["F_WALK_EABT"]
