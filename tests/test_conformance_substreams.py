"""§5.2 S1DSS / §7.3.7 F_STREAM_DISABLED / §7.3.9 C_BAD_SUBSTREAMID, and §4.1.7
out-of-range command parameters."""

from smmu_driver import Driver, s1_cd, s1_ste

from cosim.arch.ste import S1DSS_SSID0
from cosim.smmu import SmmuOptions
from cosim.translation_agent import Access, AtsStatus

PA = 0x8000_0000
SID = 5


def test_7_3_7_s1dss_ssid0_with_substream_0_is_f_stream_disabled():
    """S1DSS == 0b10: "Transactions that include a substream and select Substream 0 are
    terminated. An abort is reported to the device and the F_STREAM_DISABLED event is
    recorded"; the record carries SubstreamID 0 with SSV == 1."""
    d = Driver().init()
    ttb = d.s1_tables({0x1000: PA})
    cdtab = d.cd_table(SID)
    d.write_cd(cdtab, 0, s1_cd(ttb, asid=1))
    d.write_ste(SID, s1_ste(cdtab, cdmax=4, s1dss=S1DSS_SSID0, eats=1))
    t = d.xl(SID, 0x1000, ssid=0)
    assert not t.ok and t.fault == "F_STREAM_DISABLED"
    ev = d.events()
    assert [e["name"] for e in ev] == ["F_STREAM_DISABLED"]
    assert ev[0]["SSV"] == 1 and ev[0]["SubstreamID"] == 0
    # An ATS Translation Request in the same case: CA, no event (§5.2 S1DSS, §3.9.1.2).
    c = d.smmu.ats_translate(SID, 0, 0x1000, Access(read=True))
    assert c.status is AtsStatus.CA and d.event_names() == []


def test_4_1_7_out_of_range_substreamid_in_a_command_is_not_cerror_ill():
    """§4.1.7: an out-of-range SubstreamID has a CONSTRAINED UNPREDICTABLE effect, not a
    command error; the model's choice is no effect."""
    d = Driver(SmmuOptions(ssid_bits=4, cache_mode="caching")).init()
    ttb = d.s1_tables({0x1000: PA})
    cdtab = d.cd_table(SID)
    d.write_cd(cdtab, 1, s1_cd(ttb, asid=1))
    d.write_ste(SID, s1_ste(cdtab, cdmax=4))
    assert d.xl(SID, 0x1000, ssid=1).ok
    d.cmd("CFGI_CD", StreamID=SID, SubstreamID=1 << 10, Leaf=1)
    d.cmd("PREFETCH_CFG", StreamID=SID, SSV=1, SubstreamID=1 << 10)
    d.sync()
    assert not d.cmdq_err()
    assert len(d.smmu.config_cache.cd) == 1          # CD 1 is still cached: no effect
