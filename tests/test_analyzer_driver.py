"""The invariant rules on traces the real model writes: the SMMU model and the endpoint model,
driven as Linux's arm-smmu-v3 drives them (CD write, CFGI_CD, CMD_SYNC, ATC_INV, CMD_SYNC),
with the driver probes' DRV_EVENT writes around each attach, in the model's own record order.

Each case builds a correct driver sequence and its mutation, and checks that the analysis
calls the first clean and catches the second with exactly the rule the mutation breaks.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from smmu_driver import Driver, s1_cd, s1_ste

from cosim.analyzer import analyze_file
from cosim.arch import driver_events
from cosim.arch.domain import Domain
from cosim.arch.driver_events import DRV_EVENT, DrvOp, DrvPhase, DrvTarget
from cosim.arch.endpoint_regs import REGISTERS as EP_REGS
from cosim.arch.endpoint_regs import DmaFlag, DmaOp
from cosim.endpoint.endpoint import Endpoint
from cosim.smmu import SmmuOptions
from cosim.trace import TraceWriter

SID = 0x10
IOVA = 0x4000
PCIE, ATS = 0x40, 0x100
EP_OFF = {r.name: r for r in EP_REGS}


class Rig:
    """One endpoint behind the SMMU model, a CD table with CD 0, and domains to switch."""

    def __init__(self, cache_mode: str = "coherent", seed: int = 1) -> None:
        self.d = Driver(SmmuOptions(cache_mode=cache_mode, strict_seed=seed)).init()
        self.ep = Endpoint(1, self.d.smmu, self.d.mem, self.d.trace)
        self.ep.device_info(SID, PCIE, ATS, 0, 0)
        self.ep.cfg_write(0x04, 2, 0x4)             # Bus Master Enable
        self.ep.cfg_write(ATS + 6, 2, 0x8000)       # ATS Enable, STU 4K
        self.cdtab = self.d.cd_table(SID)
        self.domains: list[tuple[int, int]] = []    # (asid, ttb)
        for asid in (1, 2, 3):
            pa = 0x8000_0000 + asid * 0x10_0000
            self.domains.append((asid, self.d.s1_tables({IOVA: pa, IOVA + 0x1000: pa + 0x1000})))
        asid, ttb = self.domains[0]
        self.d.write_cd(self.cdtab, 0, s1_cd(ttb, asid=asid))
        self.d.write_ste(SID, s1_ste(self.cdtab, eats=1))

    def dom(self, n: int) -> Domain:
        asid, ttb = self.domains[n]
        return Domain.stage1(asid, ttb)

    def drv(self, phase: DrvPhase) -> None:
        self.d.smmu.mmio_write(driver_events.OFFSET, 8, DRV_EVENT.encode(
            OP=DrvOp.ATTACH, PHASE=phase, TARGET=DrvTarget.PAGING, SID=SID))

    def domain_inv(self, phase: DrvPhase, iova: int = IOVA, size: int = 0x1000,
                   asid: int | None = None) -> None:
        """The probes' report of arm_smmu_atc_inv_domain(iova, size) for the current domain."""
        if phase is DrvPhase.BEGIN:
            self.d.smmu.mmio_write(driver_events.ARG0_OFFSET, 8, iova)
            self.d.smmu.mmio_write(driver_events.ARG1_OFFSET, 8, size)
        self.d.smmu.mmio_write(driver_events.OFFSET, 8, DRV_EVENT.encode(
            OP=DrvOp.DOMAIN_INV, PHASE=phase, TARGET=DrvTarget.PAGING,
            SSID=self.domains[0][0] if asid is None else asid))

    def dma(self, ats: bool = True, iova: int = IOVA) -> None:
        """One 64-byte read by the endpoint's DMA engine (ATS: through its ATC)."""
        for name, v in (("DMA_OP", int(DmaOp.FILL)), ("DMA_DST", iova), ("DMA_LEN", 64),
                        ("DMA_FLAGS", int(DmaFlag.ATS) if ats else 0), ("DMA_PATTERN", 0)):
            r = EP_OFF[name]
            self.ep.mmio_write(0, r.offset, r.nbytes, v)
        r = EP_OFF["DMA_DOORBELL"]
        self.ep.mmio_write(0, r.offset, r.nbytes, 1)

    def attach(self, n: int, *, atc_inv: bool = True, cfgi: bool = True,
               during: Callable[[], None] | None = None, torn: bool = False,
               atc_sync: bool = True, atc_first: bool = False) -> None:
        """Replace the RID's domain by domain n the way the driver does; the keywords drop a
        step (a mutation) or run traffic in the middle of the update."""
        asid, ttb = self.domains[n]
        self.drv(DrvPhase.BEGIN)
        if atc_first:
            # Mutation: the ATC is invalidated before the CD changes.
            self.d.cmd("ATC_INV", StreamID=SID, Size=52, Address=0)
            self.d.sync()
            atc_inv = False
        new = s1_cd(ttb, asid=asid)
        addr = self.cdtab
        if torn:
            # Qword 0 (ASID) first, with a fetch in between: the CD names the new ASID with the
            # old table base for a while.
            self.d.mem.write_u64(addr, new[0])
            self.d.cmd("CFGI_CD", StreamID=SID, SubstreamID=0, Leaf=1)
            self.d.sync()
            if during is not None:
                during()
        for i, w in enumerate(new):
            self.d.mem.write_u64(addr + 8 * i, w)
        if cfgi:
            self.d.cmd("CFGI_CD", StreamID=SID, SubstreamID=0, Leaf=1)
            self.d.sync()
        if during is not None and not torn:
            during()
        if atc_inv:
            self.d.cmd("ATC_INV", StreamID=SID, Size=52, Address=0)
            if atc_sync:
                self.d.sync()
        self.drv(DrvPhase.END)

    def write(self, path: Path, writer: type[TraceWriter] = TraceWriter, **kw: int) -> Path:
        """The records the models emitted, in their order, as a trace file at `path`."""
        w = writer(path, cache_mode=self.d.opt.cache_mode, **kw)
        for rec in self.d.trace.records:
            fields = {k: v for k, v in rec.items() if k != "k"}
            w.emit(rec["k"], **fields)
        w.close()
        return path

    def analyze(self, tmp_path: Path, name: str = "t.jsonl"):
        return analyze_file(self.write(tmp_path / name))


def rules(an) -> set[str]:
    return {v.rule for v in an.violations}


def test_correct_replace_is_clean_and_windows_are_the_drivers(tmp_path: Path) -> None:
    rig = Rig()
    rig.dma()
    rig.dma()                           # an ATC hit
    rig.attach(1)
    rig.dma()
    rig.attach(2)
    rig.dma()
    an = rig.analyze(tmp_path)
    assert an.verdict == "clean", [v.message for v in an.violations] + an.incomplete
    a1, a2 = an.attaches
    key = (SID, None)
    assert a1.source == "driver" and a1.new_from[key] == "driver"
    assert (a1.old[key], a1.new[key]) == (rig.dom(0), rig.dom(1))
    assert (a2.old[key], a2.new[key]) == (rig.dom(1), rig.dom(2))
    kinds = [r["k"] for r in an.view.records]
    assert "atc_hit" in kinds and "atc_inv_rx" in kinds


def test_skipped_atc_invalidation_is_caught_at_the_return(tmp_path: Path) -> None:
    rig = Rig()
    rig.dma()
    rig.attach(1, atc_inv=False)        # mutation: no ATC_INV before the attach returns
    an = rig.analyze(tmp_path)          # no DMA after: the held entry alone is the evidence
    assert rules(an) == {"inv1-old-domain"}
    (v,) = an.violations
    assert "still held ATC entry" in v.message and v.entries["held_dom"] == rig.dom(0).label()


def test_stale_use_of_a_domain_two_attaches_back(tmp_path: Path) -> None:
    """A -> B -> C where the entry from A survives both attaches: judged against C, not B."""
    rig = Rig()
    rig.dma()
    rig.attach(1, atc_inv=False)
    rig.attach(2, atc_inv=False)
    rig.dma()                           # hits the ATC entry from domain A
    an = rig.analyze(tmp_path)
    assert rules(an) == {"inv1-old-domain"}
    used = [v for v in an.violations if "atc_hit" in v.message or "dma" in v.message]
    assert used and used[0].entries["used_dom"] == rig.dom(0).label()
    assert used[0].entries["new_dom"] == rig.dom(2).label()


def test_skipped_cfgi_in_caching_mode(tmp_path: Path) -> None:
    """Without CFGI_CD the caching SMMU keeps serving the old CD after the attach returned."""
    rig = Rig("caching")
    rig.dma(ats=False)
    rig.attach(1, cfgi=False, atc_inv=False)
    rig.dma(ats=False)
    an = rig.analyze(tmp_path)
    assert an.view.caching and "inv1-old-domain" in rules(an)
    ok = Rig("caching")
    ok.dma(ats=False)
    ok.attach(1)
    ok.dma(ats=False)
    assert ok.analyze(tmp_path, "ok.jsonl").verdict == "clean"


def test_torn_cd_during_the_attach_is_neither_domain(tmp_path: Path) -> None:
    rig = Rig()
    rig.dma(ats=False)
    rig.attach(1, torn=True, during=lambda: rig.dma(ats=False))
    rig.dma(ats=False)
    an = rig.analyze(tmp_path)
    assert rules(an) == {"inv3-neither-domain"}
    (v,) = an.violations
    torn = Domain.stage1(rig.domains[1][0], rig.domains[0][1])
    assert v.entries["used_dom"] == torn.label()


def test_traffic_inside_a_correct_attach_is_clean(tmp_path: Path) -> None:
    rig = Rig()
    rig.dma()
    rig.attach(1, during=lambda: (rig.dma(), rig.dma(ats=False)))
    rig.dma()
    an = rig.analyze(tmp_path)
    assert an.verdict == "clean", [v.message for v in an.violations]


def test_trace_ending_inside_an_attach_is_incomplete(tmp_path: Path) -> None:
    rig = Rig()
    rig.dma()
    rig.drv(DrvPhase.BEGIN)
    an = rig.analyze(tmp_path)
    assert an.verdict == "incomplete" and "never ended" in an.incomplete[0]


def test_skipped_cfgi_is_a_protocol_violation_in_coherent_mode(tmp_path: Path) -> None:
    """The coherent SMMU re-reads the CD on every translation, so no stale translation ever
    shows; the protocol check still sees that the CD it fetched before the attach changed and
    was never invalidated (§3.21, §4.3.4)."""
    rig = Rig()
    rig.dma(ats=False)                  # the SMMU fetches CD 0 of domain A
    rig.attach(1, cfgi=False)
    an = rig.analyze(tmp_path)
    assert rules(an) == {"protocol-cfgi"}
    (v,) = an.violations
    assert v.entries["structure"] == "CD" and "no completed CFGI" in v.message


def test_unsynced_atc_invalidation_is_a_protocol_violation(tmp_path: Path) -> None:
    rig = Rig()
    rig.dma()
    rig.attach(1, atc_sync=False)       # ATC_INV delivered, the attach returns before a sync
    an = rig.analyze(tmp_path)
    assert rules(an) == {"protocol-atc-sync"}
    rig2 = Rig()
    rig2.dma()
    rig2.attach(1)
    assert rig2.analyze(tmp_path, "ok.jsonl").verdict == "clean"


def test_atc_invalidated_before_the_cd_changes(tmp_path: Path) -> None:
    """Timing-free: whether or not an ATS request refilled the ATC in between, the order
    alone is reported; with a refill in between, the held entry is reported too."""
    rig = Rig()
    rig.dma()
    rig.attach(1, atc_first=True)
    assert rules(rig.analyze(tmp_path)) == {"protocol-atc-order"}
    rig = Rig()
    rig.dma()

    def refill() -> None:
        # An ATS request while the old CD is still in place, after the ATC_INV.
        rig.dma()

    rig.drv(DrvPhase.BEGIN)
    rig.d.cmd("ATC_INV", StreamID=SID, Size=52, Address=0)
    rig.d.sync()
    refill()
    asid, ttb = rig.domains[1]
    for i, w in enumerate(s1_cd(ttb, asid=asid)):
        rig.d.mem.write_u64(rig.cdtab + 8 * i, w)
    rig.d.cmd("CFGI_CD", StreamID=SID, SubstreamID=0, Leaf=1)
    rig.d.sync()
    rig.drv(DrvPhase.END)
    assert rules(rig.analyze(tmp_path, "refill.jsonl")) == {"protocol-atc-order",
                                                            "inv1-old-domain"}


def test_tidying_the_old_cd_after_a_switch_to_blocked_is_not_an_order_violation(
        tmp_path: Path) -> None:
    """7.2 switches to blocked as: abort STE + CFGI_STE + sync, ATC_INV + sync, then clears the
    old CD 0 with CFGI_CD: the stream no longer uses that CD, so the ATC_INV came late enough."""
    from smmu_driver import abort_ste
    rig = Rig()
    rig.dma()
    rig.drv(DrvPhase.BEGIN)
    rig.d.write_ste(SID, abort_ste())               # CFGI_STE + CMD_SYNC
    rig.d.cmd("ATC_INV", StreamID=SID, Size=52, Address=0)
    rig.d.sync()
    for i in range(8):
        rig.d.mem.write_u64(rig.cdtab + 8 * i, 0)
    rig.d.cmd("CFGI_CD", StreamID=SID, SubstreamID=0, Leaf=1)
    rig.d.sync()
    rig.drv(DrvPhase.END)
    an = rig.analyze(tmp_path)
    assert an.verdict == "clean", [v.message for v in an.violations]
    assert an.attaches[0].new[(SID, None)].kind == "abort"


def _unmap(rig: Rig, *, atc_inv: bool = True, sync: bool = True,
           inv_iova: int = IOVA) -> None:
    """The unmap's invalidation of domain A's page at IOVA, as 6.12 issues it."""
    rig.domain_inv(DrvPhase.BEGIN)
    if atc_inv:
        # ATC_INV Address is in 4 KB units (§4.5.1); Size 0: one page.
        rig.d.cmd("ATC_INV", StreamID=SID, Size=0, Address=inv_iova >> 12)
        if sync:
            rig.d.sync()
    rig.domain_inv(DrvPhase.END)


def test_domain_invalidation_clean_and_its_mutations(tmp_path: Path) -> None:
    rig = Rig()
    rig.dma()
    _unmap(rig)
    an = rig.analyze(tmp_path, "ok.jsonl")
    assert an.verdict == "clean", [v.message for v in an.violations]
    assert [r["k"] for r in an.view.records].count("drv_inv") == 2
    for name, kw, want in (("skipped", {"atc_inv": False}, {"inv2-invalidated-atc"}),
                           ("wrong-range", {"inv_iova": IOVA + 0x1000},
                            {"inv2-invalidated-atc"}),
                           ("unsynced", {"sync": False}, {"protocol-atc-sync"})):
        rig = Rig()
        rig.dma()
        _unmap(rig, **kw)
        an = rig.analyze(tmp_path, f"{name}.jsonl")
        assert rules(an) == want, (name, [v.message for v in an.violations])


def test_domain_invalidation_of_another_asid_does_not_judge_this_one(tmp_path: Path) -> None:
    rig = Rig()
    rig.dma()
    rig.domain_inv(DrvPhase.BEGIN, asid=7)
    rig.domain_inv(DrvPhase.END, asid=7)
    assert rig.analyze(tmp_path).verdict == "clean"


def test_entry_update_judges_against_the_drivers_snapshots(tmp_path: Path) -> None:
    """Check d's old entry is the STE in memory when the driver's attach began (§3.21.3: the
    SMMU may fetch it between any two writes), not the last STE the SMMU happened to fetch: a
    blocked -> paging switch after a blocked period with no traffic fetches the abort STE during
    the attach, which is the old entry, not a third state. Fetches of a state that is neither
    snapshot still fire."""
    from smmu_driver import abort_ste
    rig = Rig()
    rig.dma()                                       # fetches the paging STE
    rig.drv(DrvPhase.BEGIN)                         # paging -> blocked, no traffic after it
    rig.d.write_ste(SID, abort_ste())
    rig.d.cmd("ATC_INV", StreamID=SID, Size=52, Address=0)
    rig.d.sync()
    rig.drv(DrvPhase.END)
    rig.drv(DrvPhase.BEGIN)                         # blocked -> paging
    rig.dma()                                       # meets the abort STE: the old entry
    rig.d.write_ste(SID, s1_ste(rig.cdtab, eats=1))
    rig.drv(DrvPhase.END)
    rig.dma()
    an = rig.analyze(tmp_path)
    assert "entry-update" not in rules(an), [v.message for v in an.violations]
    assert an.attaches[1].old[(SID, None)].kind == "abort"

    # The same switch where the STE passes through a state that is neither entry: a bypass
    # STE between the abort and the paging one.
    from smmu_driver import bypass_ste
    rig = Rig()
    rig.dma()
    rig.drv(DrvPhase.BEGIN)
    rig.d.write_ste(SID, abort_ste())
    rig.drv(DrvPhase.END)
    rig.drv(DrvPhase.BEGIN)
    rig.d.write_ste(SID, bypass_ste())
    rig.dma()
    rig.d.write_ste(SID, s1_ste(rig.cdtab, eats=1))
    rig.drv(DrvPhase.END)
    rig.dma()
    an = rig.analyze(tmp_path, "torn.jsonl")
    assert "entry-update" in rules(an), [v.message for v in an.violations]


def test_domain_invalidation_that_leaves_the_tlb_entry(tmp_path: Path) -> None:
    """inv2-invalidated-tlb (caching and strict modes): 6.12's unmap issues TLBI_NH_VA + CMD_SYNC
    and then arm_smmu_atc_inv_domain(); a driver that skips the TLBI returns from the domain
    invalidation with the SMMU still holding the page's TLB entry (§4.4), which serves the
    device's next translation of that page."""
    for mode in ("caching", "strict"):
        for tlbi in (True, False):
            rig = Rig(mode)
            rig.dma(ats=False)                      # walk: a TLB entry of IOVA
            rig.dma(ats=False)                      # served from the TLB
            if tlbi:
                rig.d.cmd("TLBI_NH_VA", VMID=0, ASID=rig.domains[0][0], Address=IOVA >> 12,
                          Leaf=1)
                rig.d.sync()
            _unmap(rig)
            rig.dma(ats=False)
            an = rig.analyze(tmp_path, f"{mode}-{tlbi}.jsonl")
            want = set() if tlbi else {"inv2-invalidated-tlb"}
            assert rules(an) == want, (mode, tlbi, [v.message for v in an.violations])
    rig = Rig()                                     # coherent: no TLB, nothing to judge
    rig.dma(ats=False)
    _unmap(rig)
    rig.dma(ats=False)
    assert rig.analyze(tmp_path, "coherent.jsonl").verdict == "clean"


def test_entry_update_steps_not_synced_between(tmp_path: Path) -> None:
    """protocol-cfgi-step (mutant 02): the hitless STE update writes, invalidates and syncs each
    step (§3.21.3); a writer that issues each step's CFGI_STE without the CMD_SYNC that waits
    for it fires, whatever the traffic, even though a later sync completes before the return."""
    from smmu_driver import abort_ste
    for synced in (True, False):
        rig = Rig()
        rig.dma()
        rig.drv(DrvPhase.BEGIN)
        for i, w in reversed(list(enumerate(abort_ste()))):   # qword 0 last, as a step
            rig.d.write_ste_qword(SID, i, w)
            if i in (1, 0):
                rig.d.cmd("CFGI_STE", StreamID=SID, Leaf=1)
                if synced:
                    rig.d.sync()
        rig.d.cmd("ATC_INV", StreamID=SID, Size=52, Address=0)
        rig.d.sync()
        rig.drv(DrvPhase.END)
        an = rig.analyze(tmp_path, f"steps-{synced}.jsonl")
        want = set() if synced else {"protocol-cfgi-step"}
        assert rules(an) == want, (synced, [v.message for v in an.violations])
        if not synced:
            assert an.violations[0].attach == an.attaches[0].n


def test_atc_invalidated_first_when_the_old_ste_serves_no_ats(tmp_path: Path) -> None:
    """protocol-atc-order judges only what the old configuration could refill: 6.12 enabling
    ATS (blocked -> paging) flushes the ATC before pci_enable_ats(), before the STE is written;
    the old abort STE answers every Translation Request with UR (§3.9.1.2), so the early
    ATC_INV is not late. With an old STE that serves ATS the same order still fires."""
    from smmu_driver import abort_ste
    for old_serves in (False, True):
        rig = Rig()
        if not old_serves:
            rig.d.write_ste(SID, abort_ste())
        rig.drv(DrvPhase.BEGIN)
        rig.d.cmd("ATC_INV", StreamID=SID, Size=52, Address=0)
        rig.d.sync()
        asid, ttb = rig.domains[1]
        rig.d.write_cd(rig.cdtab, 0, s1_cd(ttb, asid=asid))
        rig.d.write_ste(SID, s1_ste(rig.cdtab, eats=1))
        rig.drv(DrvPhase.END)
        rig.dma()
        an = rig.analyze(tmp_path, f"order-{old_serves}.jsonl")
        got = "protocol-atc-order" in rules(an)
        assert got == old_serves, (old_serves, [v.message for v in an.violations])


def _breaking_cd_update_with_a_fetch_before_the_last_sync(seed: int) -> Rig:
    """Linux's breaking CD update (qword 0 := 0, CFGI+SYNC; qword 1.., CFGI+SYNC; qword 0,
    CFGI+SYNC) on the strict model, which consumes one command per step: a translation falls
    between the last CFGI_CD and its CMD_SYNC."""
    rig = Rig("strict", seed=seed)
    rig.dma(ats=False)
    rig.drv(DrvPhase.BEGIN)
    asid, ttb = rig.domains[1]
    new = s1_cd(ttb, asid=asid)
    rig.d.mem.write_u64(rig.cdtab, 0)
    rig.d.cmd("CFGI_CD", StreamID=SID, SubstreamID=0, Leaf=1)
    rig.d.sync()
    for i in range(1, len(new)):
        rig.d.mem.write_u64(rig.cdtab + 8 * i, new[i])
    rig.d.cmd("CFGI_CD", StreamID=SID, SubstreamID=0, Leaf=1)
    rig.d.sync()
    rig.d.mem.write_u64(rig.cdtab, new[0])
    rig.d.cmd("CFGI_CD", publish=False, StreamID=SID, SubstreamID=0, Leaf=1)
    rig.d.cmd("CMD_SYNC", publish=False, CS=0)
    rig.d.publish(drain=False)
    rig.d.step()                        # the CFGI_CD consumed, its CMD_SYNC not yet
    rig.dma(ats=False)                  # fetches the CD: may be torn with qword 0 = 0
    rig.dma(ats=False)                  # a cache hit of that torn copy
    rig.d.drain()
    rig.d.cmd("ATC_INV", StreamID=SID, Size=52, Address=0)
    rig.d.sync()
    rig.drv(DrvPhase.END)
    return rig


def test_a_torn_fetch_between_a_cfgi_and_its_sync_is_removed_by_it(tmp_path: Path) -> None:
    """§3.21.3, §4.7.3: the torn qword of a fetch made while a covering CFGI is pending was
    held before that CFGI, so its completed CMD_SYNC removes it: the attach that returns
    after it is no protocol-cfgi offence (seen on 6.12 strict runs once the queue was consumed
    over time: runs/20261202-122413, attach #218)."""
    torn = None
    for seed in range(1, 40):
        rig = _breaking_cd_update_with_a_fetch_before_the_last_sync(seed)
        fetches = [r for r in rig.d.trace.kinds("cd_fetch") if r.get("torn")]
        if fetches and fetches[-1]["qw"][0] == 0:
            hits = rig.d.trace.kinds("cd_fetch")
            assert hits[-1]["cached"] and hits[-1]["qw"] == fetches[-1]["qw"]
            torn = rig
            break
    assert torn is not None, "no seed tore qword 0 of the fetch between CFGI and CMD_SYNC"
    an = torn.analyze(tmp_path)
    assert "protocol-cfgi" not in rules(an), [v.message for v in an.violations]


def test_atc_invalidated_first_while_ats_is_disabled_is_not_late(tmp_path: Path) -> None:
    """6.1's attach detaches first: pci_disable_ats() (ATS Enable clear in the endpoint's
    config space), ATC_INV + sync, the abort STE, then the new (here identity: bypass) STE. The
    ATC_INV precedes the last CFGI, but a Function with ATS Enable clear issues no Translation
    Request, so nothing could refill the ATC from the old STE in between: not
    protocol-atc-order. Set ATS Enable again before the CFGI and the same order fires: the
    device could then ask the old STE, which still serves ATS."""
    from smmu_driver import abort_ste, bypass_ste
    for reenabled in (False, True):
        rig = Rig()
        rig.dma()                                     # an old translation in the ATC
        rig.drv(DrvPhase.BEGIN)
        rig.ep.cfg_write(ATS + 6, 2, 0x0)             # pci_disable_ats()
        rig.d.cmd("ATC_INV", StreamID=SID, Size=52, Address=0)
        rig.d.sync()
        if reenabled:
            rig.ep.cfg_write(ATS + 6, 2, 0x8000)
        rig.d.write_ste(SID, abort_ste())             # detach: CFGI_STE + CMD_SYNC
        rig.d.write_ste(SID, bypass_ste())            # attach identity
        rig.drv(DrvPhase.END)
        an = rig.analyze(tmp_path, f"detach-first-{reenabled}.jsonl")
        got = "protocol-atc-order" in rules(an)
        assert got == reenabled, (reenabled, [v.message for v in an.violations])
        cfg = [r for r in rig.d.trace.kinds("cfg") if r["off"] == ATS + 6]
        assert [r["ats"] for r in cfg] == [True, False] + ([True] if reenabled else [])
