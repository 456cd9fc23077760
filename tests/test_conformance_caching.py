"""§3.21.3 Configuration structures and configuration invalidation: "An implementation is
permitted to cache any successfully fetched or prefetched configuration structure, whether
marked as valid or not". The `caching` cache mode does so, like `strict`: a driver that makes
an STE or CD valid without the CMD_CFGI_* keeps seeing the invalid one."""

import pytest
from smmu_driver import Driver, s1_cd, s1_ste

from cosim.arch.ste import encode_ste
from cosim.smmu import SmmuOptions

PA = 0x8000_0000
SID = 3


def last(d: Driver, kind: str) -> dict:
    return d.trace.kinds(kind)[-1]


@pytest.mark.parametrize("mode", ["caching", "strict"])
def test_3_21_3_invalid_ste_is_cached_until_cfgi_ste(mode):
    d = Driver(SmmuOptions(cache_mode=mode)).init()
    d.write_ste(SID, encode_ste(V=0))
    assert d.xl(SID, 0x1000).fault == "C_BAD_STE"
    ttb = d.s1_tables({0x1000: PA})
    cdtab = d.cd_table(SID)
    d.write_cd(cdtab, 0, s1_cd(ttb, asid=5))
    d.write_ste(SID, s1_ste(cdtab), invalidate=False)   # made valid, no CFGI_STE
    d.sync()
    assert d.xl(SID, 0x1000).fault == "C_BAD_STE"
    fetch = last(d, "ste_fetch")
    assert fetch["cached"] and not fetch["legal"]
    d.cmd("CFGI_STE", StreamID=SID, Leaf=1)
    d.sync()
    assert d.xl(SID, 0x1000).pa == PA


@pytest.mark.parametrize("mode", ["caching", "strict"])
def test_3_21_3_illegal_ste_is_cached_until_cfgi_ste(mode):
    """An ILLEGAL STE (here stage 1 with S1STALLD on a no-stall SMMU) is cached as fetched."""
    d = Driver(SmmuOptions(cache_mode=mode)).init()
    ttb = d.s1_tables({0x1000: PA})
    cdtab = d.cd_table(SID)
    d.write_cd(cdtab, 0, s1_cd(ttb, asid=5))
    bad = s1_ste(cdtab)
    bad[1] |= 1 << (91 - 64)                            # S1STALLD
    d.write_ste(SID, bad)
    assert d.xl(SID, 0x1000).fault == "C_BAD_STE"
    d.write_ste(SID, s1_ste(cdtab), invalidate=False)
    assert d.xl(SID, 0x1000).fault == "C_BAD_STE"
    d.cmd("CFGI_STE", StreamID=SID, Leaf=1)
    d.sync()
    assert d.xl(SID, 0x1000).ok


def test_3_21_3_invalid_cd_is_cached_until_cfgi_cd():
    d = Driver(SmmuOptions(cache_mode="caching")).init()
    ttb = d.s1_tables({0x1000: PA})
    cdtab = d.cd_table(SID)
    d.write_cd(cdtab, 0, [0] * 8)                       # CD.V = 0
    d.write_ste(SID, s1_ste(cdtab))
    assert d.xl(SID, 0x1000).fault == "C_BAD_CD"
    d.write_cd(cdtab, 0, s1_cd(ttb, asid=5))            # made valid, no CFGI_CD
    assert d.xl(SID, 0x1000).fault == "C_BAD_CD"
    assert last(d, "cd_fetch")["cached"]
    d.cmd("CFGI_CD", StreamID=SID, SubstreamID=0, Leaf=1)
    d.sync()
    assert d.xl(SID, 0x1000).pa == PA


def test_3_21_3_an_aborted_fetch_is_not_cached():
    """Only a successfully fetched structure may be cached: an STE fetch that aborts is
    retried at the next transaction."""
    d = Driver(SmmuOptions(cache_mode="caching"), mem_size=1 << 32).init()
    d.wr("STRTAB_BASE", (0xFFFF_F000 >> 6) << 6)        # table at the top of a 4 GB memory
    t = d.xl(200, 0x1000)
    assert t.fault == "F_STE_FETCH"
    assert not d.smmu.config_cache.ste
