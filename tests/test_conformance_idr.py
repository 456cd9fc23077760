"""§6.3.1 SMMU_IDR0 advertises only what the model does, and the ILLEGAL conditions that
follow from it (§5.2 SteIllegal(), §5.4 CdIllegal(), §5.5): no split-stage ATS (NS1ATS=1),
abort-only termination (TERM_MODEL=1, CD.A=0 ILLEGAL), no HTTU (CD.HA/HD, STE.S2HA/S2HD
ILLEGAL), no VAX (TxSZ >= 16)."""

import pytest
from smmu_driver import Driver, s1_cd, s1_ste, s2_ste

from cosim.arch.registers import IDR0, IDR5
from cosim.arch.ste import STE
from cosim.smmu import SmmuOptions

PA = 0x8000_0000
SID = 3


def test_6_3_1_idr0_fields():
    d = Driver().init()
    idr0 = d.rd("IDR0")
    assert IDR0.get(idr0, "NS1ATS") == 1           # split-stage ATS not supported
    assert IDR0.get(idr0, "TERM_MODEL") == 1       # abort only, no RAZ/WI
    assert IDR0.get(idr0, "HTTU") == 0
    assert IDR0.get(idr0, "STALL_MODEL") == 0b01   # no stall
    assert IDR0.get(idr0, "ATSRECERR") == 0
    assert IDR5.get(d.rd("IDR5"), "VAX") == 0
    # NS1ATS is RES0 without ATS or without both stages.
    assert IDR0.get(Driver(SmmuOptions(ats=False)).smmu.reg("IDR0"), "NS1ATS") == 0
    assert IDR0.get(Driver(SmmuOptions(stage2=False)).smmu.reg("IDR0"), "NS1ATS") == 0


def cd_stream(d: Driver, **cd_fields: int):
    ttb = d.s1_tables({0x1000: PA})
    cdtab = d.cd_table(SID)
    d.write_cd(cdtab, 0, s1_cd(ttb, asid=5, **cd_fields))
    d.write_ste(SID, s1_ste(cdtab))
    return d.xl(SID, 0x1000)


@pytest.mark.parametrize("fields", [dict(A=0), dict(HA=1), dict(HD=1), dict(T0SZ=12, TG0=1)])
def test_5_4_cd_illegal_for_what_idr0_and_idr5_do_not_offer(fields):
    assert cd_stream(Driver().init(), **fields).fault == "C_BAD_CD"


def test_5_4_linux_cd_is_legal():
    """arm_smmu_make_s1_cd(): R, A, ASET, AA64, EPD1, T0SZ=16: legal, translates."""
    assert cd_stream(Driver().init()).ok


@pytest.mark.parametrize("field", ["S2HA", "S2HD"])
def test_5_2_ste_s2ha_s2hd_illegal_without_httu(field):
    d = Driver().init()
    ttb = d.s2_tables({0x2000: PA})
    words = s2_ste(ttb, vmid=1)
    words = STE.to_words(STE.set(STE.from_words(words), field, 1))
    d.write_ste(SID, words)
    assert d.xl(SID, 0x2000).fault == "C_BAD_STE"
