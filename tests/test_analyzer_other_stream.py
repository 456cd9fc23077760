"""`inv3-other-stream` on traces the real model writes: a PASID (the SVA case) translating with
ATS through its own CD while the driver changes the RID's domain. A correct RID replace leaves
the PASID alone; a driver that clears ATS Enable for the change, or rewrites the PASID's CD
through an invalid state, breaks the PASID's traffic inside the RID's window, and only this
rule can say so (the RID's own checks look at the RID's stream)."""

from __future__ import annotations

from pathlib import Path

from smmu_driver import s1_cd, s1_ste
from test_analyzer_driver import ATS, EP_OFF, IOVA, SID, Rig, rules

from cosim.arch.endpoint_regs import DmaFlag, DmaOp

PASID_CAP = 0x140
PASID = 1


class PasidRig(Rig):
    """The Rig with PASID 1 bound to domain 2 (an SVA-like stage 1 of its own)."""

    def __init__(self, cache_mode: str = "coherent") -> None:
        super().__init__(cache_mode)
        self.ep.device_info(SID, 0x40, ATS, PASID_CAP, 0)
        self.ep.cfg_write(PASID_CAP + 6, 2, 0x1)     # PASID Enable
        asid, ttb = self.domains[2]
        self.d.write_cd(self.cdtab, PASID, s1_cd(ttb, asid=asid))
        # S1DSS=0b10: traffic without a PASID uses CD 0, as Linux sets it (§5.2).
        self.d.write_ste(SID, s1_ste(self.cdtab, cdmax=4, s1dss=2, eats=1))

    def pasid_dma(self, iova: int = IOVA) -> None:
        """One ATS read by the DMA engine through PASID 1."""
        for name, v in (("DMA_OP", int(DmaOp.FILL)), ("DMA_DST", iova), ("DMA_LEN", 64),
                        ("DMA_FLAGS", int(DmaFlag.ATS | DmaFlag.PASID)), ("DMA_PATTERN", 0),
                        ("DMA_PASID", PASID)):
            r = EP_OFF[name]
            self.ep.mmio_write(0, r.offset, r.nbytes, v)
        r = EP_OFF["DMA_DOORBELL"]
        self.ep.mmio_write(0, r.offset, r.nbytes, 1)

    def ats_enable(self, on: bool) -> None:
        self.ep.cfg_write(ATS + 6, 2, 0x8000 if on else 0)


def test_rid_replace_under_pasid_traffic_is_clean(tmp_path: Path) -> None:
    rig = PasidRig()
    rig.pasid_dma()
    rig.dma()
    rig.attach(1, during=rig.pasid_dma)
    rig.pasid_dma(IOVA + 0x1000)
    an = rig.analyze(tmp_path)
    assert an.verdict == "clean", [v.message for v in an.violations]
    assert any(r.get("ssid") == PASID and r["k"] == "ats" for r in rig.d.trace.records)


def test_ats_cleared_for_a_rid_change_under_a_pasid_is_caught(tmp_path: Path) -> None:
    rig = PasidRig()
    rig.pasid_dma()

    def off_and_traffic() -> None:
        # Mutation: ATS off for the change (as before the hitless work), with the PASID's
        # ATS traffic in the middle.
        rig.ats_enable(False)
        rig.pasid_dma()
        rig.ats_enable(True)

    rig.attach(1, during=off_and_traffic)
    an = rig.analyze(tmp_path)
    assert rules(an) == {"inv3-other-stream"}, [v.message for v in an.violations]
    (v,) = an.violations
    assert (v.sid, v.ssid) == (SID, PASID)
    assert "ATS Enable was cleared" in v.message
    assert v.entries["kinds"] == {"drop": 1}
    assert an.attaches[0].rules == {"inv3-other-stream"}


def test_pasid_cd_torn_by_a_rid_change_is_caught(tmp_path: Path) -> None:
    rig = PasidRig()
    rig.pasid_dma()
    asid, ttb = rig.domains[2]
    cd_addr = rig.cdtab + PASID * 64

    def clobber_pasid_cd() -> None:
        # Mutation: the RID's change rewrites the whole CD table, the PASID's CD through V=0.
        rig.d.mem.write_u64(cd_addr, 0)
        rig.d.cmd("CFGI_CD", StreamID=SID, SubstreamID=PASID, Leaf=1)
        rig.d.sync()
        rig.pasid_dma(IOVA + 0x1000)
        rig.d.write_cd(rig.cdtab, PASID, s1_cd(ttb, asid=asid))
        rig.d.cmd("CFGI_CD", StreamID=SID, SubstreamID=PASID, Leaf=1)
        rig.d.sync()

    rig.attach(1, during=clobber_pasid_cd)
    rig.pasid_dma(IOVA + 0x1000)
    an = rig.analyze(tmp_path)
    assert "inv3-other-stream" in rules(an), [v.message for v in an.violations]
    v = next(v for v in an.violations if v.rule == "inv3-other-stream")
    assert (v.sid, v.ssid) == (SID, PASID)
    assert v.entries["changing"] == f"sid={SID}"


def test_a_page_the_pasid_domain_lacks_is_not_the_attachs_fault(tmp_path: Path) -> None:
    """A fault the PASID's own tables explain (an address they never mapped) during the
    RID's window is the PASID domain's contents speaking, not a disturbance."""
    rig = PasidRig()
    rig.pasid_dma()
    rig.attach(1, during=lambda: rig.pasid_dma(IOVA + 0x10_0000))
    an = rig.analyze(tmp_path)
    assert "inv3-other-stream" not in rules(an), [v.message for v in an.violations]
