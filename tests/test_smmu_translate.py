"""Stream table, STE and CD decode, S1DSS and the events of each failure (§3.3, §5, §7.3)."""

import pytest
from smmu_driver import (
    CDTAB,
    Driver,
    abort_ste,
    bypass_ste,
    nested_ste,
    s1_cd,
    s1_ste,
    s2_ste,
)

from cosim.arch.domain import ABORT, BYPASS, Domain
from cosim.arch.ste import S1DSS_BYPASS, S1DSS_SSID0, S1DSS_TERMINATE, encode_ste
from cosim.smmu import SmmuOptions

PA = 0x8000_0000


def s1_setup(d, sid=3, asid=5, mappings=None, **ste_kw):
    ttb = d.s1_tables(mappings or {0x1000: PA})
    cdtab = d.cd_table(sid)
    d.write_cd(cdtab, 0, s1_cd(ttb, asid=asid))
    d.write_ste(sid, s1_ste(cdtab, **ste_kw))
    return ttb, cdtab


@pytest.mark.parametrize("fmt", ["linear", "2lvl"])
def test_s1_translation_both_stream_table_formats(fmt):
    d = Driver(st_fmt=fmt, sid_bits=12).init()
    ttb, _ = s1_setup(d, sid=0x305)
    t = d.xl(0x305, 0x1008, write=True)
    assert t.ok and t.pa == PA + 8 and t.perm.write
    rec = d.trace.kinds("xlate")[-1]
    assert rec["ok"] and rec["dom"] == Domain.stage1(5, ttb) and rec["acc"] == "w"
    assert "w" in rec["perm"]


def test_bypass_and_abort_ste():
    d = Driver().init()
    d.write_ste(1, bypass_ste())
    t = d.xl(1, 0xABC000)
    assert t.ok and t.pa == 0xABC000 and t.dom == BYPASS
    d.write_ste(2, abort_ste())
    t = d.xl(2, 0x1000)
    assert not t.ok and t.fault is None and t.dom == ABORT
    assert d.event_names() == []          # Config=abort terminates silently (§5.2)


def test_bad_streamid_linear_and_2lvl():
    d = Driver(sid_bits=4).init()
    t = d.xl(16, 0x1000)
    assert not t.ok and t.fault == "C_BAD_STREAMID" and t.dom is None
    d2 = Driver(st_fmt="2lvl", sid_bits=12).init()
    t = d2.xl(0x500, 0x1000)                 # L1 descriptor Span=0
    assert t.fault == "C_BAD_STREAMID"
    ev = d2.events()
    assert ev[0]["name"] == "C_BAD_STREAMID" and ev[0]["StreamID"] == 0x500


def test_invalid_ste_is_c_bad_ste_and_reserved_config_aborts():
    d = Driver().init()
    d.write_ste(1, encode_ste(V=0, Config=4))
    d.write_ste(2, encode_ste(V=1, Config=0b010))
    t = d.xl(1, 0)
    assert t.fault == "C_BAD_STE" and t.dom is None   # no domain: a configuration error
    assert d.trace.kinds("xlate")[-1]["dom"] is None
    # §5.2 Config 0b0xx: Reserved, behaves as 0b000 (abort, no event), not ILLEGAL.
    t = d.xl(2, 0)
    assert not t.ok and t.fault is None and t.dom == ABORT
    assert d.event_names() == ["C_BAD_STE"]
    rec = [r for r in d.trace.kinds("ste_fetch") if r["sid"] == 2][-1]
    assert rec["legal"] is True and rec["cfg"] == "abort"


def test_ste_fetch_abort():
    from cosim.arch.registers import STRTAB_BASE
    d = Driver(mem_size=1 << 32).init()
    d.wr("STRTAB_BASE", STRTAB_BASE.encode(ADDR=(1 << 33) >> 6))     # off the bus
    t = d.xl(1, 0)
    assert t.fault == "F_STE_FETCH" and t.dom is None
    ev = d.events()
    assert ev[0]["name"] == "F_STE_FETCH" and ev[0]["FetchAddr"] << 3 == (1 << 33) + 64


def test_unsupported_stage_is_c_bad_ste():
    d = Driver(SmmuOptions(stage2=False)).init()
    d.write_ste(1, s2_ste(0x10_0000, vmid=1))
    assert d.xl(1, 0).fault == "C_BAD_STE"


def test_s2_fields_checked():
    d = Driver().init()
    ttb = d.s2_tables({0x2000: PA})
    d.write_ste(1, s2_ste(ttb, vmid=7))
    t = d.xl(1, 0x2010)
    assert t.ok and t.pa == PA + 0x10 and t.dom == Domain.stage2(7, ttb)
    d.write_ste(2, s2_ste(ttb, vmid=7, sl0=0))        # level 2 start cannot hold 48 bits
    assert d.xl(2, 0x2010).fault == "C_BAD_STE"
    d.write_ste(3, s2_ste(ttb, vmid=7, tg=3))         # reserved granule
    assert d.xl(3, 0x2010).fault == "C_BAD_STE"


def test_nested_translation_and_dom():
    d = Driver().init()
    ipa_cd = 0x4000_0000
    ipa_tt = 0x4010_0000
    # Stage 1 tables live at IPAs; stage 2 maps them (identity here, for simplicity).
    s2map = {ipa_cd: ipa_cd, 0x9000: PA}
    ttb1 = d.s1_tables({0x1000: 0x9000}, base=ipa_tt)
    for off in range(0, 0x10_0000, 0x1000):
        s2map[ipa_tt + off] = ipa_tt + off
    s2ttb = d.s2_tables(s2map)
    d.write_cd(ipa_cd, 0, s1_cd(ttb1, asid=9))
    d.write_ste(4, nested_ste(ipa_cd, s2ttb, vmid=3))
    t = d.xl(4, 0x1004)
    assert t.ok, t
    assert t.pa == PA + 4
    assert t.dom == Domain("nested", asid=9, ttb=ttb1, vmid=3, s2ttb=s2ttb)


def test_translation_fault_recorded_only_with_cd_r():
    d = Driver().init()
    s1_setup(d)
    t = d.xl(3, 0x7000)
    assert t.fault == "F_TRANSLATION"
    ev = d.events()
    assert [e["name"] for e in ev] == ["F_TRANSLATION"]
    assert ev[0]["InputAddr"] == 0x7000 and ev[0]["RnW"] == 1 and ev[0]["StreamID"] == 3
    ttb = d.s1_tables({0x1000: PA})
    d.write_cd(d.cd_table(3), 0, s1_cd(ttb, asid=5, r=0))
    d.cmd("CFGI_CD", StreamID=3, SubstreamID=0, Leaf=1)
    d.sync()
    assert d.xl(3, 0x7000).fault == "F_TRANSLATION"
    assert d.event_names() == []


def test_permission_fault():
    d = Driver().init()
    ttb = d.s1_tables({0x1000: PA}, perm_ap=0b11)      # read-only
    cdtab = d.cd_table(3)
    d.write_cd(cdtab, 0, s1_cd(ttb, asid=5))
    d.write_ste(3, s1_ste(cdtab))
    assert d.xl(3, 0x1000).ok
    t = d.xl(3, 0x1000, write=True)
    assert t.fault == "F_PERMISSION"
    ev = d.events()
    assert ev[-1]["name"] == "F_PERMISSION" and ev[-1]["RnW"] == 0


def test_bad_cd_and_cd_fetch():
    d = Driver(mem_size=1 << 32).init()
    cdtab = d.cd_table(3)
    d.write_cd(cdtab, 0, s1_cd(0x10_0000, asid=1, AA64=0))
    d.write_ste(3, s1_ste(cdtab))
    t = d.xl(3, 0x1000)
    assert t.fault == "C_BAD_CD" and t.dom is None
    d.write_ste(4, s1_ste(1 << 34))                     # CD beyond the bus: fetch abort
    assert d.xl(4, 0x1000).fault == "F_CD_FETCH"
    names = d.event_names()
    assert names == ["C_BAD_CD", "F_CD_FETCH"]


def test_ssid_rules_and_s1dss():
    d = Driver().init()
    ttb0 = d.s1_tables({0x1000: PA})
    ttb7 = d.s1_tables({0x1000: PA + 0x7000})
    cdtab = d.cd_table(5)
    d.write_cd(cdtab, 0, s1_cd(ttb0, asid=1))
    d.write_cd(cdtab, 7, s1_cd(ttb7, asid=7))
    # S1CDMax = 4 bits, S1DSS = SSID0: no-SSID traffic uses CD 0; SSID 0 is F_STREAM_DISABLED
    # (§7.3.7, tests/test_conformance_substreams.py).
    d.write_ste(5, s1_ste(cdtab, cdmax=4, s1dss=S1DSS_SSID0))
    assert d.xl(5, 0x1000).pa == PA
    assert d.xl(5, 0x1000, ssid=7).pa == PA + 0x7000
    t = d.xl(5, 0x1000, ssid=0)
    assert t.fault == "F_STREAM_DISABLED" and t.dom is None
    assert d.xl(5, 0x1000, ssid=16).fault == "C_BAD_SUBSTREAMID"     # beyond S1CDMax
    assert d.xl(5, 0x1000, ssid=3).fault == "C_BAD_CD"               # CD 3 has V=0
    d.write_ste(5, s1_ste(cdtab, cdmax=4, s1dss=S1DSS_TERMINATE))
    assert d.xl(5, 0x1000).fault == "F_STREAM_DISABLED"
    assert d.xl(5, 0x1000, ssid=0).ok                                # SSID 0 is ordinary here
    d.write_ste(5, s1_ste(cdtab, cdmax=4, s1dss=S1DSS_BYPASS))
    t = d.xl(5, 0x1234)
    assert t.ok and t.pa == 0x1234 and t.dom == BYPASS
    names = d.event_names()
    assert names == ["F_STREAM_DISABLED", "C_BAD_SUBSTREAMID", "C_BAD_CD", "F_STREAM_DISABLED"]
    # No substreams: any SSID is bad.
    d.write_ste(6, s1_ste(cdtab))
    assert d.xl(6, 0x1000, ssid=1).fault == "C_BAD_SUBSTREAMID"


@pytest.mark.parametrize("fmt", [1, 2])
def test_two_level_cd_tables(fmt):
    d = Driver().init()
    ttb = d.s1_tables({0x1000: PA + 0x3000})
    cdtab = CDTAB
    d.write_cd(cdtab, 1100, s1_cd(ttb, asid=11), fmt=fmt)
    d.write_ste(2, s1_ste(cdtab, cdmax=12, fmt=fmt, s1dss=S1DSS_SSID0))
    t = d.xl(2, 0x1000, ssid=1100)
    assert t.ok and t.pa == PA + 0x3000
    # An SSID whose L1 descriptor is invalid.
    assert d.xl(2, 0x1000, ssid=4000).fault == "C_BAD_SUBSTREAMID"


def test_event_queue_overflow_and_irq():
    d = Driver(evtq_log2=2).init()                   # 4 entries
    d.write_ste(1, encode_ste(V=0))
    d.irqs.clear()
    for _ in range(6):
        d.xl(1, 0)
    from cosim.arch.registers import EVTQ_PROD
    prod = d.rd("EVENTQ_PROD")
    assert EVTQ_PROD.get(prod, "OVFLG") == 1
    assert (0, 2) in d.irqs                           # eventq pulse
    ev = d.events()
    assert len(ev) == 4
    # Acknowledged overflow: new events flow again.
    d.xl(1, 0)
    assert len(d.events()) == 1


def test_event_queue_disabled_discards():
    d = Driver().init()
    d.write_cr0(CMDQEN=1, SMMUEN=1)
    d.write_ste(1, encode_ste(V=0))
    d.xl(1, 0)
    assert d.events() == []
