"""Smoke: stage 1 translation through a linear stream table."""

from smmu_driver import Driver, s1_cd, s1_ste

from cosim.arch.domain import Domain


def test_s1_translation_linear():
    d = Driver().init()
    ttb = d.s1_tables({0x1000: 0x8000_0000})
    cdtab = d.cd_table(3)
    d.write_cd(cdtab, 0, s1_cd(ttb, asid=5))
    d.write_ste(3, s1_ste(cdtab))
    t = d.xl(3, 0x1234)
    assert t.ok, t
    assert t.pa == 0x8000_0234
    assert t.dom == Domain.stage1(5, ttb)
    assert d.trace.kinds("xlate")[-1]["dom"] == Domain.stage1(5, ttb)
    assert d.event_names() == []
