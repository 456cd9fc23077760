"""The DRV_EVENT register (IMPLEMENTATION DEFINED page-0 space, IHI 0070 §6.2): the guest's
driver probes report attach steps, and the model records each with the domain the stream's
in-memory configuration denotes, without touching the SMMU's caches."""

from pathlib import Path

from smmu_driver import Driver, abort_ste, bypass_ste, s1_cd, s1_ste, s2_ste

from cosim.arch import driver_events
from cosim.arch.domain import ABORT, BYPASS, Domain
from cosim.arch.driver_events import DRV_EVENT, DrvOp, DrvPhase, DrvTarget
from cosim.arch.ste import S1DSS_SSID0
from cosim.smmu import SmmuOptions

HEADER = Path(__file__).resolve().parents[1] / "guest-tests" / "include" / "cosim_drv_event.h"


def drv(d: Driver, op: DrvOp, phase: DrvPhase, sid: int, ssid: int | None = None,
        ret: int = 0, target: DrvTarget = DrvTarget.PAGING, halves: bool = False) -> None:
    word = DRV_EVENT.encode(OP=op, PHASE=phase, TARGET=target, SID=sid,
                            SSV=int(ssid is not None), SSID=ssid or 0, RET=ret & 0xFFFF)
    if halves:
        d.smmu.mmio_write(driver_events.OFFSET, 4, word & 0xFFFF_FFFF)
        d.smmu.mmio_write(driver_events.OFFSET + 4, 4, word >> 32)
    else:
        d.smmu.mmio_write(driver_events.OFFSET, 8, word)


def test_committed_header_matches_generator() -> None:
    assert HEADER.read_text() == driver_events.c_header(), (
        "guest-tests/include/cosim_drv_event.h is stale: regenerate with "
        "`python -m cosim.arch.driver_events --c-header > guest-tests/include/cosim_drv_event.h`")


def test_register_in_impdef_page0_space() -> None:
    assert 0x0E00 <= driver_events.OFFSET and driver_events.OFFSET + 8 <= 0x0F00


def test_attach_end_records_the_configured_domain() -> None:
    d = Driver().init()
    ttb = d.s1_tables({0x1000: 0x8000_0000})
    cdtab = d.cd_table(3)
    d.write_cd(cdtab, 0, s1_cd(ttb, asid=5))
    d.write_ste(3, bypass_ste())
    drv(d, DrvOp.ATTACH, DrvPhase.BEGIN, 3)
    d.write_ste(3, s1_ste(cdtab))
    drv(d, DrvOp.ATTACH, DrvPhase.END, 3, ret=-22)
    begin, end = d.trace.kinds("drv")
    assert begin["phase"] == "begin" and begin["dom"] == BYPASS and begin["ret"] is None
    assert end["phase"] == "end" and end["op"] == "attach" and end["sid"] == 3
    assert end["dom"] == Domain.stage1(5, ttb) and end["ret"] == -22 and end["ssid"] is None


def test_snapshot_fills_no_cache_and_fetches_nothing() -> None:
    d = Driver(SmmuOptions(cache_mode="caching")).init()
    d.write_ste(4, abort_ste())
    drv(d, DrvOp.ATTACH, DrvPhase.END, 4)
    assert d.trace.kinds("drv")[-1]["dom"] == ABORT
    assert d.trace.kinds("ste_fetch") == [] and d.smmu.config_cache.get_ste(4) is None


def test_pasid_and_halves() -> None:
    d = Driver().init()
    ttb0 = d.s1_tables({0x1000: 0x8000_0000})
    ttb1 = d.s1_tables({0x2000: 0x9000_0000})
    cdtab = d.cd_table(6, cdmax=4)
    d.write_cd(cdtab, 0, s1_cd(ttb0, asid=1))
    d.write_cd(cdtab, 2, s1_cd(ttb1, asid=2))
    d.write_ste(6, s1_ste(cdtab, cdmax=4, s1dss=S1DSS_SSID0))
    drv(d, DrvOp.PASID_ATTACH, DrvPhase.END, 6, ssid=2, halves=True)
    drv(d, DrvOp.PASID_ATTACH, DrvPhase.END, 6, ssid=3)
    drv(d, DrvOp.ATTACH, DrvPhase.END, 6)
    pasid2, pasid3, rid = d.trace.kinds("drv")
    assert pasid2["ssid"] == 2 and pasid2["dom"] == Domain.stage1(2, ttb1)
    assert pasid3["dom"] is None          # CD 3 is not valid: no domain for that PASID
    assert rid["dom"] == Domain.stage1(1, ttb0)   # S1DSS=0b10: CD 0 serves no-PASID traffic


def test_stage2_and_invalid_ste() -> None:
    d = Driver().init()
    s2 = d.s2_tables({0x1000: 0x8000_0000})
    d.write_ste(7, s2_ste(s2, vmid=9))
    d.write_ste(8, [0] * 8)
    drv(d, DrvOp.ATTACH, DrvPhase.END, 7, target=DrvTarget.NESTED)
    drv(d, DrvOp.ATTACH, DrvPhase.END, 8, target=DrvTarget.BLOCKED)
    s2rec, bad = d.trace.kinds("drv")
    assert s2rec["dom"] == Domain.stage2(9, s2) and s2rec["target"] == "nested"
    assert bad["dom"] is None and bad["target"] == "blocked"


def test_armed_and_unknown_words() -> None:
    d = Driver().init()
    d.smmu.mmio_write(driver_events.OFFSET, 8, DRV_EVENT.encode(
        OP=DrvOp.ARMED, TARGET=DrvTarget.SVA, ARMED_OP=DrvOp.PASID_ATTACH))
    d.smmu.mmio_write(driver_events.OFFSET, 8, DRV_EVENT.encode(OP=7))
    assert d.trace.kinds("drv_armed") == [{"k": "drv_armed", "op": "pasid-attach",
                                           "target": "sva"}]
    assert d.trace.kinds("drv") == []
