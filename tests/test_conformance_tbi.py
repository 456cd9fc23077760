"""§3.4.1 Input address size / §5.4 CD.TBI0, TBI1: with TBI the top byte of the VA is ignored
for translation (taken as a sign-extension of VA[55]); without it a tagged VA fails the range
check. Event records carry the input address unmodified."""

import pytest
from smmu_driver import Driver, s1_cd, s1_ste

from cosim.smmu import SmmuOptions

PA = 0x8000_0000
SID = 3
TAGGED = 0x5A00_0000_0000_1000


def stream(d: Driver, tbi: int) -> None:
    ttb = d.s1_tables({0x1000: PA})
    cdtab = d.cd_table(SID)
    d.write_cd(cdtab, 0, s1_cd(ttb, asid=5, TBI=tbi))
    d.write_ste(SID, s1_ste(cdtab))


@pytest.mark.parametrize("mode", ["coherent", "caching"])
def test_3_4_1_tbi0_ignores_the_top_byte(mode):
    d = Driver(SmmuOptions(cache_mode=mode)).init()
    stream(d, tbi=0b01)
    for _ in range(2):                                  # the second one from the TLB (caching)
        t = d.xl(SID, TAGGED + 0x24)
        assert t.ok and t.pa == PA + 0x24
    t = d.xl(SID, 0x5A00_0000_0000_9000)                # unmapped: the event keeps the tag
    assert t.fault == "F_TRANSLATION"
    assert d.events()[-1]["InputAddr"] == 0x5A00_0000_0000_9000


def test_3_4_1_without_tbi_a_tagged_va_is_a_translation_fault():
    d = Driver().init()
    stream(d, tbi=0b10)                                 # TBI1 only: the TTB0 half is checked
    t = d.xl(SID, TAGGED)
    assert t.fault == "F_TRANSLATION"
    assert d.events()[-1]["InputAddr"] == TAGGED
