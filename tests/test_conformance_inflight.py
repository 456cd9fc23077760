"""Translated requests in flight across an ATC invalidation (PCIe ATS invalidation ordering;
SMMUv3 §3.9.1, §4.5.1, §4.7.3), on the real SMMU and endpoint models in strict mode.

The endpoint keeps up to EndpointOptions.inflight translated writes of its traffic generator in
flight after their translation (strict mode: INFLIGHT_STRICT). The Invalidation Completion
pushes them: every request issued before the invalidation with an entry it drops is delivered,
with the old translation, before the completion; none issued after it uses the dropped entry.
The analysis judges a held delivery by its issue (its `atc_hit`/`ats` record), so a correct
driver sequence stays clean.
"""

from __future__ import annotations

from pathlib import Path

from smmu_driver import Driver, s1_cd, s1_ste

from cosim.analyzer import analyze_file
from cosim.arch.endpoint_regs import REGISTERS as EP_REGS
from cosim.arch.endpoint_regs import TG_RECORD_MAGIC, TgCtrl
from cosim.backend import INFLIGHT_STRICT, strict_endpoint
from cosim.endpoint.endpoint import Endpoint, EndpointOptions
from cosim.smmu import SmmuOptions
from cosim.trace import TraceWriter

SID = 0x10
IOVA = 0x4000
PA_A, PA_B = 0x8010_0000, 0x8020_0000
PCIE, ATS = 0x40, 0x100
REG = {r.name: r for r in EP_REGS}


class Rig:
    """A strict SMMU, one endpoint with its traffic generator writing one page by ATS."""

    def __init__(self, rate: int = 4, **ep: object) -> None:
        opts = SmmuOptions(cache_mode="strict")
        self.d = Driver(opts).init()
        self.ep_opts = strict_endpoint(opts, EndpointOptions(**ep))  # type: ignore[arg-type]
        self.ep = Endpoint(1, self.d.smmu, self.d.mem, self.d.trace, self.ep_opts)
        self.ep.clock = self.d.clock
        self.ep.device_info(SID, PCIE, ATS, 0, 0)
        self.ep.cfg_write(0x04, 2, 0x4)             # Bus Master Enable
        self.ep.cfg_write(ATS + 6, 2, 0x8000)       # ATS Enable, STU 4K
        self.cdtab = self.d.cd_table(SID)
        self.ttb_a = self.d.s1_tables({IOVA: PA_A})
        self.ttb_b = self.d.s1_tables({IOVA: PA_B})
        self.d.write_cd(self.cdtab, 0, s1_cd(self.ttb_a, asid=1))
        self.d.write_ste(SID, s1_ste(self.cdtab, eats=1))
        for name, v in (("TG_BASE", IOVA), ("TG_SIZE", 0x1000), ("TG_STRIDE", 64),
                        ("TG_RATE", rate)):
            self.wr(name, v)
        self.wr("TG_CTRL", int(TgCtrl.RUN | TgCtrl.ATS))

    def wr(self, name: str, value: int) -> None:
        r = REG[name]
        self.ep.mmio_write(0, r.offset, r.nbytes, value)

    def step(self) -> None:
        """One backend step: the endpoint's poll (generator burst), then the SMMU's tick."""
        self.ep.poll()
        self.d.smmu.tick()

    def replace(self, late: float = 0.2) -> None:
        """Domain A -> B as Linux does it (CD, CFGI_CD, SYNC, ATC_INV, SYNC), the device
        writing between every two commands; the ATC invalidation is acted on `late` s later."""
        self.d.mem.write_u64(self.cdtab + 8, s1_cd(self.ttb_b, asid=2)[1])
        self.d.mem.write_u64(self.cdtab, s1_cd(self.ttb_b, asid=2)[0])
        self.d.cmd("CFGI_CD", publish=False, StreamID=SID, SubstreamID=0, Leaf=1)
        self.d.cmd("CMD_SYNC", publish=False, CS=0)
        self.d.cmd("ATC_INV", publish=False, StreamID=SID, Size=52, Address=0)
        self.d.cmd("CMD_SYNC", publish=False, CS=0)
        self.d.publish(drain=False)
        for _ in range(4):
            self.step()
        self.d.clock.t += late
        for _ in range(3):
            self.step()

    def kinds(self) -> list[str]:
        return [r["k"] for r in self.d.trace.records]

    def analyze(self, tmp_path: Path):
        path = tmp_path / "t.jsonl"
        w = TraceWriter(path, cache_mode="strict")
        for rec in self.d.trace.records:
            w.emit(rec["k"], **{k: v for k, v in rec.items() if k != "k"})
        w.close()
        return analyze_file(path)


def test_strict_mode_keeps_eight_in_flight_other_modes_none() -> None:
    assert INFLIGHT_STRICT == 8
    assert strict_endpoint(SmmuOptions(cache_mode="strict"), EndpointOptions()).inflight == 8
    assert strict_endpoint(SmmuOptions(cache_mode="caching"), EndpointOptions()).inflight == 0
    assert strict_endpoint(SmmuOptions(cache_mode="strict"),
                           EndpointOptions(inflight=2)).inflight == 2


def test_held_writes_land_at_the_next_poll_or_when_the_queue_is_full() -> None:
    rig = Rig(rate=12)
    rig.step()                                  # 12 issued: 8 in flight, the oldest 4 out
    dma = rig.d.trace.kinds("dma")
    assert [r["seq"] for r in dma] == [0, 1, 2, 3] and len(rig.ep.requester.held) == 8
    assert all(r["held"] and PA_A <= r["pa"] < PA_A + 0x1000 for r in dma)
    assert rig.d.mem.read_u64(PA_A + 3 * 64) == TG_RECORD_MAGIC    # record 3 landed
    assert rig.d.mem.read_u64(PA_A + 3 * 64 + 8) == 3
    assert rig.d.mem.read_u64(PA_A + 4 * 64) == 0                  # record 4 in flight
    rig.step()                                  # the 8 land first, then 12 more are issued
    assert [r["seq"] for r in rig.d.trace.kinds("dma")] == list(range(16))
    rig.wr("TG_CTRL", 0)                        # stopping the generator delivers the rest
    assert not rig.ep.requester.held and len(rig.d.trace.kinds("dma")) == 24
    assert not rig.ep.requester.in_use


def test_pcie_ats_invalidation_completion_pushes_the_requests_issued_before_it() -> None:
    """In flight across an ATC_INV: delivered before its completion, with the old entry."""
    rig = Rig(rate=8)
    rig.step()
    old_entry = rig.d.trace.kinds("atc_insert")[-1]["id"]
    assert rig.ep.requester.in_use[old_entry] == 8
    rig.replace()
    recs = rig.d.trace.records
    kinds = rig.kinds()
    rx = kinds.index("atc_inv_rx")
    cpl = kinds.index("atc_inv_cpl")
    assert recs[rx]["dropped"] == [old_entry]
    pushed = [r for r in recs[rx:cpl] if r["k"] == "dma"]
    assert len(pushed) == 8
    assert all(r["held"] and r["ok"] and r["atc_id"] == old_entry and PA_A <= r["pa"] < PA_A
               + 0x1000 for r in pushed)
    # §4.7.3: the CMD_SYNC after the ATC_INV completes only after the completion.
    done = [i for i, r in enumerate(recs) if r["k"] == "sync" and r["state"] == "done"]
    assert done[-1] > cpl
    # Nothing issued after the invalidation was acted on uses the dropped entry.
    after = [r for r in recs[cpl:] if r["k"] in ("atc_hit", "dma")]
    assert after and all(r.get("id", r.get("atc_id")) != old_entry for r in after)
    new = [r for r in recs[cpl:] if r["k"] == "atc_insert"]
    assert new and new[0]["pa"] == PA_B


def test_the_completion_waits_for_the_requests_in_flight() -> None:
    """The endpoint never completes an invalidation while a request still uses a dropped
    entry: the held queue is emptied first (the rule that was coded and never exercised)."""
    rig = Rig(rate=2)
    rig.step()
    rig.replace()
    recs = rig.d.trace.records
    cpl = rig.kinds().index("atc_inv_cpl")
    rx = rig.kinds().index("atc_inv_rx")
    assert not any(r["k"] == "dma" and r.get("held") for r in recs[cpl:cpl + 1])
    assert sum(1 for r in recs[rx:cpl] if r["k"] == "dma" and r.get("held")) >= 2
    assert not rig.ep.pending_invalidations


def test_analysis_judges_held_deliveries_by_their_issue(tmp_path: Path) -> None:
    rig = Rig(rate=4)
    rig.step()
    rig.step()
    rig.replace()
    rig.wr("TG_CTRL", 0)
    held = [r for r in rig.d.trace.kinds("dma") if r.get("held")]
    kinds = rig.kinds()
    assert any(i > kinds.index("atc_inv_rx") for i, r in enumerate(rig.d.trace.records)
               if r["k"] == "dma" and r.get("held"))
    assert held
    an = rig.analyze(tmp_path)
    assert an.verdict == "clean", [v.message for v in an.violations] + an.incomplete


def test_an_ignored_invalidation_is_caught_by_its_later_uses_not_the_held_ones(
        tmp_path: Path) -> None:
    """A device that completes without dropping its entries pushes nothing: its held writes
    are delivered after the CMD_SYNC completed. Those were issued before it and are no stale
    use (invariant 2 concerns what the device uses after the completion); the uses issued
    after it are."""
    rig = Rig(rate=4, inv_ignore=True)
    rig.step()
    rig.replace()
    for _ in range(2):
        rig.step()
    an = rig.analyze(tmp_path)
    recs = an.view.records
    sync_done = max(i for i, r in enumerate(recs) if r["k"] == "sync" and r["state"] == "done")
    assert any(r["k"] == "dma" and r.get("held") for r in recs[sync_done:])
    inv2 = [v for v in an.violations if v.rule == "inv2-invalidated-atc"]
    assert inv2
    for v in inv2:
        assert v.records and all(not recs[j].get("held") for j in v.records)
        assert all(j > sync_done for j in v.records)
