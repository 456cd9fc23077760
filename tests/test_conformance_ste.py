"""§5.2 STE: Reserved encodings that "behave as" another value (not ILLEGAL), fields that
are IGNORED, and the ILLEGAL conditions of SteIllegal() (§5.2 pseudocode)."""

import pytest
from smmu_driver import Driver, s1_cd, s1_ste, s2_ste

from cosim.arch.domain import ABORT, Domain
from cosim.arch.ste import STE, encode_ste
from cosim.smmu import SmmuOptions
from cosim.smmu.stream_table import decode_ste

PA = 0x8000_0000
SID = 3


def with_field(words: list[int], name: str, value: int) -> list[int]:
    return STE.to_words(STE.set(STE.from_words(words), name, value))


def s1_stream(d: Driver, **kw: int) -> tuple[int, int]:
    ttb = d.s1_tables({0x1000: PA})
    cdtab = d.cd_table(SID)
    d.write_cd(cdtab, 0, s1_cd(ttb, asid=5))
    d.write_cd(cdtab, 1, s1_cd(ttb, asid=6))
    d.write_ste(SID, s1_ste(cdtab, **kw))
    return ttb, cdtab


@pytest.mark.parametrize("config", [0b001, 0b010, 0b011])
def test_5_2_reserved_config_behaves_as_abort(config):
    """Config 0b0xx: "Reserved (behaves as 0b000)": abort, no event."""
    d = Driver().init()
    d.write_ste(SID, encode_ste(V=1, Config=config))
    t = d.xl(SID, 0x1000)
    assert not t.ok and t.fault is None and t.dom == ABORT
    assert d.event_names() == []


def test_5_2_reserved_s1fmt_behaves_as_linear():
    """S1Fmt 0b11: "Reserved (behaves as 0b00)": a linear table indexed by SubstreamID."""
    d = Driver().init()
    ttb, cdtab = s1_stream(d, cdmax=2, fmt=0b11, s1dss=2)
    t = d.xl(SID, 0x1000, ssid=1)
    assert t.ok and t.pa == PA and t.dom == Domain.stage1(6, ttb)


def test_5_2_reserved_s1dss_behaves_as_terminate():
    """S1DSS 0b11: "Reserved (behaves as 0b00)": non-substream traffic is F_STREAM_DISABLED."""
    d = Driver().init()
    s1_stream(d, cdmax=2, s1dss=0b11)
    assert d.xl(SID, 0x1000).fault == "F_STREAM_DISABLED"
    assert d.xl(SID, 0x1000, ssid=1).ok


def test_5_2_eats_dpt_without_idr3_dpt_is_legal():
    """EATS 0b11 with IDR3.DPT == 0: "Reserved ... behaves as 0b00", so the STE is legal."""
    d = Driver().init()
    s1_stream(d, eats=0b11)
    assert d.xl(SID, 0x1000).ok


def test_5_2_eats_split_stage_is_illegal_with_ns1ats():
    """EATS 0b10 is ILLEGAL when SMMU_IDR0.NS1ATS == 1, which the model advertises."""
    d = Driver().init()
    assert d.rd("IDR0") >> 11 & 1
    s1_stream(d, eats=0b10)
    assert d.xl(SID, 0x1000).fault == "C_BAD_STE"


def test_5_2_eats_ignored_without_ats():
    d = Driver(SmmuOptions(ats=False)).init()
    s1_stream(d, eats=0b10)
    assert d.xl(SID, 0x1000).ok


@pytest.mark.parametrize("strw", [0b01, 0b10, 0b11])
def test_5_2_strw_ignored_without_hyp(strw):
    """STRW is RES0 in the Non-secure Stream table when IDR0.HYP == 0: not ILLEGAL."""
    d = Driver().init()
    ttb, cdtab = s1_stream(d)
    d.write_ste(SID, with_field(s1_ste(cdtab), "STRW", strw))
    assert d.xl(SID, 0x1000).ok


def test_5_2_strw_ignored_with_stage2():
    """STE.Config == 0b11x: STRW is IGNORED (effective StreamWorld NS-EL1), even with HYP."""
    d = Driver(SmmuOptions(hyp=True)).init()
    ttb = d.s2_tables({0x2000: PA})
    d.write_ste(SID, with_field(s2_ste(ttb, vmid=4), "STRW", 0b11))
    assert d.xl(SID, 0x2000).ok


@pytest.mark.parametrize("strw", [0b01, 0b11])
def test_5_2_reserved_strw_is_illegal_where_used(strw):
    d = Driver(SmmuOptions(hyp=True)).init()
    ttb, cdtab = s1_stream(d)
    d.write_ste(SID, with_field(s1_ste(cdtab), "STRW", strw))
    assert d.xl(SID, 0x1000).fault == "C_BAD_STE"


def test_5_2_s1cdmax_ignored_without_substreams():
    """IDR1.SSIDSIZE == 0: S1CDMax is IGNORED, S1ContextPtr points at one CD."""
    d = Driver(SmmuOptions(ssid_bits=0)).init()
    ttb, cdtab = s1_stream(d, cdmax=5)
    t = d.xl(SID, 0x1000)
    assert t.ok and t.dom == Domain.stage1(5, ttb)


def test_5_2_s2vmid_high_bits_illegal_for_stage1_with_8bit_vmids():
    """IgnoreSTES2VMID(): with stage 2 implemented, S2VMID tags a stage 1-only (EL1) stream
    too, so S2VMID[15:8] != 0 without IDR0.VMID16 is ILLEGAL there as well."""
    opt = SmmuOptions(vmid16=False)
    words = s1_ste(0x40_0000, vmid=0x100)
    assert not decode_ste(0, words, opt).legal
    assert decode_ste(0, words, SmmuOptions(vmid16=False, stage2=False)).legal
