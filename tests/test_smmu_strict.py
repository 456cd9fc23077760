"""Strict cache mode: everything IHI 0070 lets be late, cached or torn, is.

Each rule is driven through the reference driver (tests/smmu_driver.py) and judged on the
trace records the model writes:
1. CFGI_* / TLBI_* take effect only when a later CMD_SYNC completes (§4.7.3, §3.21.1, §3.21.3).
2. Fetched STEs/CDs stay cached until invalidated, valid or not (§3.21.3).
3. A fetch may mix, qword by qword, what the SMMU observed at the last completed CMD_SYNC
   (or last fetch) and memory now (§3.21.3, 64-bit single-copy atomicity; §3.21.3.1).
4. The endpoint completes an ATC invalidation only just before the SMMU's timeout, using the
   invalidated entries until then (PCIe ATS; §3.9.1.3, §4.7.3).
"""

from __future__ import annotations

import pytest
from smmu_driver import Driver, abort_ste, bypass_ste, s1_cd, s1_ste

from cosim.arch.descriptors import s1_leaf
from cosim.arch.domain import ABORT, BYPASS, Domain
from cosim.arch.ste import encode_ste
from cosim.backend import strict_endpoint
from cosim.endpoint.endpoint import Endpoint, EndpointOptions
from cosim.smmu import SmmuOptions
from cosim.smmu.options import CACHE_MODES
from cosim.trace.schema import BY_KIND

PA = 0x8000_0000
SID = 3
STRICT = SmmuOptions(cache_mode="strict")


def strict(**kw: object) -> Driver:
    return Driver(SmmuOptions(cache_mode="strict", **kw)).init()  # type: ignore[arg-type]


def s1_dev(d: Driver, sid: int = SID, asid: int = 5, eats: int = 0) -> int:
    ttb = d.s1_tables({0x1000: PA})
    cdtab = d.cd_table(sid)
    d.write_cd(cdtab, 0, s1_cd(ttb, asid=asid))
    d.write_ste(sid, s1_ste(cdtab, eats=eats))
    return ttb


def records_since(d: Driver, mark: int) -> list[dict]:
    return d.trace.records[mark:]


def last(d: Driver, kind: str) -> dict:
    return d.trace.kinds(kind)[-1]


def leaf_pte(d: Driver, ttb: int, va: int) -> int:
    """Address of the level 3 descriptor mapping `va` (4 KB granule, walk from level 0)."""
    table = ttb
    for lvl in range(3):
        idx = (va >> (12 + 9 * (3 - lvl))) & 0x1FF
        table = d.mem.read_u64(table + idx * 8) & 0xFFFF_FFFF_F000
    return table + ((va >> 12) & 0x1FF) * 8


def test_strict_is_a_cache_mode_the_trace_header_accepts() -> None:
    assert "strict" in CACHE_MODES
    assert BY_KIND["header"].by_name["cache_mode"].type.ok("strict")
    assert set(CACHE_MODES) == set(BY_KIND["header"].by_name["cache_mode"].type.order)


# -- 1. invalidations take effect at the next completed CMD_SYNC (§4.7.3) ------------------

def test_correct_sequence_write_cfgi_sync_sees_the_new_ste() -> None:
    d = strict()
    s1_dev(d)
    assert d.xl(SID, 0x1000).pa == PA
    mark = len(d.trace.records)
    d.write_ste(SID, bypass_ste())                   # write, CFGI_STE, CMD_SYNC
    recs = records_since(d, mark)
    kinds = [r["k"] for r in recs]
    cfgi = next(r for r in recs if r["k"] == "cfgi")
    assert cfgi["op"] == "CFGI_STE" and cfgi["effect"] == "sync"
    effect = next(r for r in recs if r["k"] == "inv_effect")
    # The STE and the CD cached through it went when the CMD_SYNC completed, just before
    # its `sync` record.
    assert effect["op"] == "CFGI_STE" and effect["n"] == 2
    assert kinds.index("inv_effect") == kinds.index("sync") - 1
    assert effect["sync"] == next(r for r in recs if r["k"] == "sync")["idx"]
    assert effect["cmd"] == next(r for r in recs if r["k"] == "cmd"
                                 and r["op"] == "CFGI_STE")["idx"]
    assert d.xl(SID, 0x1000).dom == BYPASS
    fetch = last(d, "ste_fetch")
    assert not fetch["cached"] and fetch["cfg"] == "bypass" and fetch["torn"] == []


def test_cfgi_without_cmd_sync_leaves_the_stale_ste_in_use() -> None:
    d = strict()
    ttb = s1_dev(d)
    assert d.xl(SID, 0x1000).ok
    d.write_ste(SID, bypass_ste(), invalidate=False)
    effects = len(d.trace.kinds("inv_effect"))
    d.cmd("CFGI_STE", StreamID=SID, Leaf=1)          # executed, but no CMD_SYNC yet
    assert last(d, "cfgi")["effect"] == "sync" and len(d.trace.kinds("inv_effect")) == effects
    t = d.xl(SID, 0x1000)
    assert t.dom == Domain.stage1(5, ttb)            # the SMMU still uses what it had
    assert last(d, "ste_fetch")["cached"] and last(d, "ste_fetch")["cfg"] == "s1"
    d.sync()
    assert last(d, "inv_effect")["op"] == "CFGI_STE"
    assert d.xl(SID, 0x1000).dom == BYPASS


def test_cfgi_without_cmd_sync_takes_effect_at_once_in_caching_mode() -> None:
    """The contrast: caching mode applies the invalidation as it executes it."""
    d = Driver(SmmuOptions(cache_mode="caching")).init()
    s1_dev(d)
    assert d.xl(SID, 0x1000).ok
    d.write_ste(SID, bypass_ste(), invalidate=False)
    d.cmd("CFGI_STE", StreamID=SID, Leaf=1)
    assert last(d, "cfgi")["effect"] == "now"
    assert d.xl(SID, 0x1000).dom == BYPASS
    assert not d.trace.kinds("inv_effect")            # caching mode writes none at all


def test_missing_cfgi_keeps_the_stale_ste_across_syncs() -> None:
    d = strict()
    ttb = s1_dev(d)
    assert d.xl(SID, 0x1000).ok
    d.write_ste(SID, abort_ste(), invalidate=False)
    d.sync()
    d.sync()
    assert d.xl(SID, 0x1000).dom == Domain.stage1(5, ttb)
    assert last(d, "ste_fetch")["cached"]


def test_tlbi_takes_effect_at_the_cmd_sync() -> None:
    d = strict()
    ttb = s1_dev(d)
    assert d.xl(SID, 0x1000).pa == PA                # fills the TLB
    d.mem.write_u64(leaf_pte(d, ttb, 0x1000), s1_leaf(PA + 0x10_0000, page=True))
    d.cmd("TLBI_NH_VA", VMID=0, ASID=5, Address=1, Leaf=1)
    tlbi = last(d, "tlbi")
    assert tlbi["effect"] == "sync" and "n" not in tlbi  # nothing removed yet
    assert d.xl(SID, 0x1000).pa == PA and last(d, "xlate")["tlb"]
    d.sync()
    assert last(d, "inv_effect") == {**last(d, "inv_effect"), "op": "TLBI_NH_VA", "n": 1}
    assert d.xl(SID, 0x1000).pa == PA + 0x10_0000 and not last(d, "xlate")["tlb"]


def test_a_failed_cmd_sync_completes_no_invalidation() -> None:
    """CERROR_ATC_INV_SYNC: the CMD_SYNC is not complete (§4.7.3), so neither are the
    invalidations before it; its retry completes them."""
    from smmu_driver import FakeEndpoint
    d = strict(atc_inv_timeout_ms=50)
    s1_dev(d)
    assert d.xl(SID, 0x1000).ok
    d.smmu.attach_ats_device(SID, FakeEndpoint(mode="never"))
    d.write_ste(SID, bypass_ste(), invalidate=False)
    effects = len(d.trace.kinds("inv_effect"))
    d.cmd("CFGI_STE", StreamID=SID, Leaf=1)
    d.cmd("ATC_INV", StreamID=SID, Size=0, Address=1)
    d.sync()
    d.clock.t += 0.06
    d.smmu.tick()
    assert d.cmdq_err() and last(d, "sync")["state"] == "fail"
    assert len(d.trace.kinds("inv_effect")) == effects
    assert d.xl(SID, 0x1000).dom != BYPASS
    d.ack_gerror()                                   # Linux retries the CMD_SYNC
    assert last(d, "sync")["state"] == "done" and last(d, "inv_effect")["op"] == "CFGI_STE"
    assert d.xl(SID, 0x1000).dom == BYPASS


# -- 2. structures are cached whether valid or not (§3.21.3) --------------------------------

def test_invalid_ste_made_valid_without_cfgi_keeps_faulting() -> None:
    d = strict()
    d.write_ste(SID, encode_ste(V=0))
    assert not d.xl(SID, 0x1000).ok
    assert d.event_names() == ["C_BAD_STE"]
    ttb = d.s1_tables({0x1000: PA})
    cdtab = d.cd_table(SID)
    d.write_cd(cdtab, 0, s1_cd(ttb, asid=5))
    d.write_ste(SID, s1_ste(cdtab), invalidate=False)
    d.sync()                                         # a CMD_SYNC alone invalidates nothing
    t = d.xl(SID, 0x1000)
    assert not t.ok and t.fault == "C_BAD_STE"
    fetch = last(d, "ste_fetch")
    assert fetch["cached"] and not fetch["legal"] and fetch["cfg"] == "invalid"
    d.cmd("CFGI_STE", StreamID=SID, Leaf=1)
    d.sync()
    assert d.xl(SID, 0x1000).pa == PA


def test_invalid_ste_is_re_read_in_coherent_mode() -> None:
    """The contrast: coherent mode keeps nothing, so the missing CFGI is hidden there (caching
    mode keeps the invalid STE as strict does: tests/test_conformance_caching.py)."""
    d = Driver(SmmuOptions(cache_mode="coherent")).init()
    d.write_ste(SID, encode_ste(V=0))
    assert not d.xl(SID, 0x1000).ok
    ttb = d.s1_tables({0x1000: PA})
    cdtab = d.cd_table(SID)
    d.write_cd(cdtab, 0, s1_cd(ttb, asid=5))
    d.write_ste(SID, s1_ste(cdtab), invalidate=False)
    assert d.xl(SID, 0x1000).pa == PA


def test_invalid_cd_made_valid_without_cfgi_keeps_faulting() -> None:
    d = strict()
    ttb = d.s1_tables({0x1000: PA})
    cdtab = d.cd_table(SID)
    d.write_cd(cdtab, 0, [0] * 8)                    # CD.V = 0
    d.write_ste(SID, s1_ste(cdtab))
    assert d.xl(SID, 0x1000).fault == "C_BAD_CD"
    d.write_cd(cdtab, 0, s1_cd(ttb, asid=5))         # made valid, no CFGI_CD
    d.sync()
    assert d.xl(SID, 0x1000).fault == "C_BAD_CD"
    assert last(d, "cd_fetch")["cached"] and not last(d, "cd_fetch")["legal"]
    d.cmd("CFGI_CD", StreamID=SID, SubstreamID=0, Leaf=1)
    d.sync()
    assert d.xl(SID, 0x1000).pa == PA


# -- 3. torn fetches: per-qword mixes of the last observation and memory (§3.21.3) ----------

def _torn_run(seed: int) -> tuple[Driver, list[int], list[int]]:
    """An S1 STE observed at a CMD_SYNC, invalidated, then rewritten in two qwords with no
    CMD_SYNC before the SMMU fetches it again."""
    d = strict(strict_seed=seed)
    s1_dev(d)
    assert d.xl(SID, 0x1000).ok
    old = [d.mem.read_u64(d.ste_addr(SID) + 8 * i) for i in range(8)]
    new = list(old)
    new[1] ^= 0b11 << 2                              # qword 1 (S1CIR)
    new[2] ^= 0x1234                                 # and qword 2 (S2VMID)
    d.cmd("CFGI_STE", StreamID=SID, Leaf=1)
    d.sync()                                         # observed now: `old`
    for i in (1, 2):
        d.write_ste_qword(SID, i, new[i])
    d.xl(SID, 0x1000)
    return d, old, new


def test_torn_fetch_shows_in_ste_fetch_qw() -> None:
    mixes = set()
    for seed in range(1, 17):
        d, old, new = _torn_run(seed)
        fetch = last(d, "ste_fetch")
        assert not fetch["cached"]
        assert set(fetch["torn"]) <= {1, 2}
        for i in range(8):
            # `qw` is what the SMMU used: qwords in `torn` from the observation, the rest
            # from memory now.
            assert fetch["qw"][i] == (old[i] if i in fetch["torn"] else new[i])
        mixes.add(tuple(fetch["torn"]))
    # Deterministic per seed, and over seeds every mix of the two changed qwords occurs,
    # including the torn ones that are neither the old nor the new STE.
    assert mixes == {(), (1,), (2,), (1, 2)}
    d1, _, _ = _torn_run(5)
    d2, _, _ = _torn_run(5)
    assert last(d1, "ste_fetch")["torn"] == last(d2, "ste_fetch")["torn"]


def test_fetch_after_the_next_cmd_sync_sees_memory() -> None:
    for seed in range(1, 9):
        d, _, new = _torn_run(seed)
        d.cmd("CFGI_STE", StreamID=SID, Leaf=1)
        d.sync()
        d.xl(SID, 0x1000)
        fetch = last(d, "ste_fetch")
        assert fetch["torn"] == [] and fetch["qw"] == new


def test_first_fetch_of_a_cfgi_named_ste_may_be_torn() -> None:
    """The STE a CFGI_STE named is observed at the CMD_SYNC: its first fetch can mix that
    observation with later writes."""
    seen = set()
    for seed in range(1, 9):
        d = strict(strict_seed=seed)
        d.write_ste(SID, abort_ste())                # write, CFGI_STE, CMD_SYNC: observed
        d.write_ste_qword(SID, 0, bypass_ste()[0])   # Config abort -> bypass, no sync
        t = d.xl(SID, 0x1000)
        fetch = last(d, "ste_fetch")
        seen.add(tuple(fetch["torn"]))
        assert t.dom == (ABORT if fetch["torn"] == [0] else BYPASS)
    assert seen == {(), (0,)}


@pytest.mark.parametrize("mode", ["coherent", "caching"])
def test_other_modes_never_tear(mode: str) -> None:
    d = Driver(SmmuOptions(cache_mode=mode)).init()
    d.write_ste(SID, abort_ste())
    d.write_ste_qword(SID, 0, bypass_ste()[0])
    assert d.xl(SID, 0x1000).dom == BYPASS
    assert "torn" not in last(d, "ste_fetch")


# -- 4. ATC invalidations completed as late as the SMMU's timeout allows ------------------

def test_atc_invalidation_completes_just_before_the_timeout() -> None:
    opts = SmmuOptions(cache_mode="strict", atc_inv_timeout_ms=200)
    d = Driver(opts).init()
    s1_dev(d, sid=0x10, eats=1)
    ep_opts = strict_endpoint(opts, EndpointOptions())
    assert ep_opts.inv_late_ms == pytest.approx(180)
    ep = Endpoint(1, d.smmu, d.mem, d.trace, ep_opts)
    ep.clock = d.clock
    ep.device_info(0x10, 0x40, 0x100, 0x120, 0x60)
    ep.cfg_write(0x04, 2, 0x4)                       # Bus Master Enable
    ep.cfg_write(0x100 + 6, 2, 0x8000)               # ATS Enable
    assert ep.requester.read(0x1000, 8, None, True, "engine").ok
    entry = last(d, "atc_insert")["id"]
    d.cmd("ATC_INV", StreamID=0x10, Size=0, Address=1)
    d.sync()
    assert last(d, "sync")["state"] == "wait"
    # Until just before the SMMU's timeout the device still holds and uses the entry: a
    # driver that reuses the page before its CMD_SYNC completes sees the device write it.
    d.clock.t += 0.179
    ep.poll_invalidations()
    d.smmu.tick()
    assert last(d, "sync")["state"] == "wait" and not d.trace.kinds("atc_inv_rx")
    assert ep.requester.read(0x1000, 8, None, True, "engine").ok
    assert last(d, "dma")["atc_id"] == entry
    d.clock.t += 0.002                               # 181 ms: acted on and completed
    ep.poll_invalidations()
    d.smmu.tick()
    kinds = [r["k"] for r in d.trace.records]
    assert kinds[-4:] == ["atc_inv_rx", "atc_inv_cpl", "atc_inv_sync", "sync"]
    assert last(d, "atc_inv_rx")["dropped"] == [entry]
    assert last(d, "sync")["state"] == "done" and not d.cmdq_err()
    assert ep.requester.read(0x1000, 8, None, True, "engine").ok
    assert last(d, "dma")["atc_id"] != entry         # translated again


def test_strict_endpoint_leaves_other_modes_and_explicit_values_alone() -> None:
    assert strict_endpoint(SmmuOptions(cache_mode="caching"),
                           EndpointOptions()).inv_late_ms == 0
    assert strict_endpoint(STRICT, EndpointOptions(inv_late_ms=5)).inv_late_ms == 5
