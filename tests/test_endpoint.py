"""The cosim-pcie-ep device model: registers, DMA engine, ATS/ATC, invalidations, MSI-X,
traffic generator, fault injection and reset, against SparseMemory and a fake SMMU."""

from __future__ import annotations

import json
import struct
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cosim.arch import endpoint_regs as regs
from cosim.arch.domain import Domain
from cosim.endpoint.endpoint import RESET_FLR, Endpoint, EndpointOptions
from cosim.endpoint.testing import FAKE_DOMAIN, FakeSmmu
from cosim.memory import SparseMemory
from cosim.trace import TraceWriter, checking, read_trace
from cosim.trace.schema import check_written
from cosim.translation_agent import (
    ADDRESS_SPACE,
    Access,
    AtcInvalidation,
    AtsCompletion,
    AtsDevice,
    AtsStatus,
    Permissions,
    TranslationAgent,
)

RID = 0x10
PCIE, MSIX, ATS, PASID = 0x40, 0x60, 0x100, 0x120
K4 = 4096
R = {r.name: r.offset for r in regs.REGISTERS}
DONE, ERROR, MISCOMPARE = (int(regs.DmaStatus.DONE), int(regs.DmaStatus.ERROR),
                           int(regs.DmaStatus.MISCOMPARE))
ATS_FLAG, PASID_FLAG, IRQ_FLAG = (int(regs.DmaFlag.ATS), int(regs.DmaFlag.PASID),
                                  int(regs.DmaFlag.IRQ))


class Recorder:
    """Collects trace records in memory (same emit() signature as TraceWriter)."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.check = checking(None)  # on for the test session (tests/conftest.py)

    def emit(self, kind: str, **fields: Any) -> None:
        if self.check:
            check_written(kind, fields)
        self.records.append({"k": kind, **fields})

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r["k"] == kind]

    def kinds(self) -> list[str]:
        return [r["k"] for r in self.records]


class Rig:
    def __init__(self, smmu: FakeSmmu | None = None, mem: Any = None, bme: bool = True,
                 ats: bool = True, pasid: bool = True, msix: bool = False,
                 **opts: Any) -> None:
        self.smmu = smmu or FakeSmmu()
        self.mem = mem if mem is not None else SparseMemory()
        self.trace = Recorder()
        self.ep = Endpoint(1, self.smmu, self.mem, self.trace, EndpointOptions(**opts))
        self.ep.device_info(RID, PCIE, ATS, PASID, MSIX)
        if bme:
            self.ep.cfg_write(0x04, 2, 0x4)
        if ats:
            self.ep.cfg_write(ATS + 6, 2, 0x8000)
        if pasid:
            self.ep.cfg_write(PASID + 6, 2, 1)
        if msix:
            self.ep.cfg_write(MSIX + 2, 2, 0x8000)

    def w(self, name: str, value: int, size: int | None = None) -> None:
        self.ep.mmio_write(0, R[name], size or regs.BY_NAME[name].nbytes, value)

    def r(self, name: str) -> int:
        return self.ep.mmio_read(0, R[name], regs.BY_NAME[name].nbytes)

    def dma(self, op: int, src: int = 0, dst: int = 0, length: int = 0, flags: int = 0,
            pattern: int = 0, pasid: int = 0) -> tuple[int, int]:
        for name, v in (("DMA_OP", op), ("DMA_SRC", src), ("DMA_DST", dst), ("DMA_LEN", length),
                        ("DMA_FLAGS", flags), ("DMA_PATTERN", pattern), ("DMA_PASID", pasid)):
            self.w(name, v)
        self.w("DMA_DOORBELL", 1)
        return self.r("DMA_STATUS"), self.r("DMA_RESULT")


def ats_inv(ssid: int | None, addr: int = 0, size: int = ADDRESS_SPACE, global_: bool = False,
            inv_id: int = 1) -> AtcInvalidation:
    """An Invalidate Request for this device's StreamID (the whole space by default)."""
    return AtcInvalidation(RID, ssid, addr, size, global_, inv_id)


def err_code(status: int) -> int:
    return status >> regs.DMA_STATUS_ERR_SHIFT & regs.DMA_STATUS_ERR_MASK


def mapped_rig(**kw: Any) -> Rig:
    rig = Rig(**kw)
    rig.smmu.map(RID, None, 0x10000, 0x200000, 16 * K4)
    rig.smmu.map(RID, 7, 0x10000, 0x300000, 16 * K4)
    return rig


# -- registers -------------------------------------------------------------------------------

def test_identification_registers() -> None:
    rig = Rig(atc_entries=12)
    assert rig.r("ID") == regs.ID_VALUE
    assert rig.r("VERSION") == regs.VERSION_VALUE
    assert rig.r("CAPS") == 0xF
    assert rig.r("ATC_SIZE") == 12
    rig.w("ID", 0)  # RO: ignored, not counted as bad
    assert rig.r("ID") == regs.ID_VALUE and rig.r("CNT_BAD_MMIO") == 0


def test_every_register_read_write() -> None:
    rig = Rig()
    for reg in regs.REGISTERS:
        if reg.name in ("RESET", "DMA_DOORBELL", "MARKER_VALUE", "TG_CTRL"):
            continue  # action registers, tested separately
        for i in range(reg.count):
            off = reg.offset + i * reg.nbytes
            pattern = (0xA5A5A5A5_5A5A5A5A ^ off) & ((1 << reg.width) - 1)
            before = rig.ep.mmio_read(0, off, reg.nbytes)
            rig.ep.mmio_write(0, off, reg.nbytes, pattern)
            got = rig.ep.mmio_read(0, off, reg.nbytes)
            if reg.access == "RW":
                assert got == pattern, reg.name
            else:
                assert got == before, reg.name
    assert rig.r("CNT_BAD_MMIO") == 0


def test_64bit_register_halves() -> None:
    rig = Rig()
    rig.ep.mmio_write(0, R["DMA_SRC"], 4, 0x89ABCDEF)
    rig.ep.mmio_write(0, R["DMA_SRC"] + 4, 4, 0x01234567)
    assert rig.r("DMA_SRC") == 0x0123456789ABCDEF
    assert rig.ep.mmio_read(0, R["DMA_SRC"] + 4, 4) == 0x01234567


def test_unknown_offsets_read_zero_and_are_counted() -> None:
    rig = Rig()
    assert rig.ep.mmio_read(0, 0x044, 4) == 0
    rig.ep.mmio_write(0, 0x8000, 4, 1)
    rig.ep.mmio_write(0, R["DMA_OP"], 8, 1)  # 64-bit access to a 32-bit register
    assert rig.ep.mmio_read(5, 0, 4) == 0  # no such BAR
    assert rig.r("CNT_BAD_MMIO") == 4
    assert rig.r("DMA_OP") == 0


def test_mmio_trace_records() -> None:
    rig = Rig()
    rig.w("DMA_LEN", 0x1234)
    rig.r("DMA_LEN")
    mm = rig.trace.of("mmio")
    assert mm[-2] == {"k": "mmio", "dev": 1, "region": 0, "off": R["DMA_LEN"], "size": 8,
                      "rw": "w", "val": 0x1234}
    assert mm[-1]["rw"] == "r" and mm[-1]["val"] == 0x1234


def test_marker_with_label() -> None:
    rig = Rig()
    label = b"replace 3".ljust(32, b"\0")
    for i in range(8):
        rig.ep.mmio_write(0, R["MARKER_LABEL"] + 4 * i, 4,
                          int.from_bytes(label[4 * i:4 * i + 4], "little"))
    rig.w("MARKER_TAG", int(regs.MarkerTag.ATTACH_BEGIN))
    rig.w("MARKER_VALUE", 42)
    rig.w("MARKER_TAG", int(regs.MarkerTag.PASID_ATTACH_END))
    rig.ep.mmio_write(0, R["MARKER_VALUE"], 4, 7)  # low half alone: no marker yet
    rig.ep.mmio_write(0, R["MARKER_VALUE"] + 4, 4, 0)  # high half: recorded
    m = rig.trace.of("marker")
    assert m == [{"k": "marker", "dev": 1, "tag": "attach-begin", "value": 42,
                  "label": "replace 3"},
                 {"k": "marker", "dev": 1, "tag": "pasid-attach-end", "value": 7, "label": ""}]


# -- config ------------------------------------------------------------------------------------

def test_cfg_trace_record() -> None:
    rig = Rig(bme=False, ats=False, pasid=False)
    rig.ep.cfg_write(ATS + 6, 2, 0x8002)
    c = rig.trace.of("cfg")[-1]
    assert c == {"k": "cfg", "dev": 1, "off": ATS + 6, "size": 2, "val": 0x8002, "bme": False,
                 "ats": True, "stu": 2, "pasid_en": False, "msix_en": False}


# -- DMA engine, untranslated --------------------------------------------------------------------

def test_copy_untranslated_across_pages() -> None:
    rig = mapped_rig()
    data = bytes(range(256)) * 40
    rig.mem.write(0x200000 + 0x100, data)
    st, res = rig.dma(int(regs.DmaOp.COPY), 0x10100, 0x18000, len(data))
    assert st == DONE and res == len(data)
    assert rig.mem.read(0x200000 + 0x8000, len(data)) == data
    dmas = rig.trace.of("dma")
    assert all(d["ok"] and not d["ats"] and d["src"] == "engine" and d["dom"] == FAKE_DOMAIN
               for d in dmas)
    assert max(d["len"] for d in dmas) <= K4


def test_fill_and_compare() -> None:
    rig = mapped_rig()
    st, _ = rig.dma(int(regs.DmaOp.FILL), dst=0x10004, length=20, pattern=0x0807060504030201)
    assert st == DONE
    assert rig.mem.read(0x200004, 20) == bytes([1, 2, 3, 4, 5, 6, 7, 8] * 3)[:20]
    rig.dma(int(regs.DmaOp.FILL), dst=0x11000, length=64, pattern=0x1111111111111111)
    rig.dma(int(regs.DmaOp.FILL), dst=0x12000, length=64, pattern=0x1111111111111111)
    st, res = rig.dma(int(regs.DmaOp.COMPARE), 0x11000, 0x12000, 64)
    assert st == DONE and res == 64
    rig.mem.write(0x202000 + 37, b"\x99")
    st, res = rig.dma(int(regs.DmaOp.COMPARE), 0x11000, 0x12000, 64)
    assert st == DONE | MISCOMPARE and res == 37


def test_untranslated_fault_counts() -> None:
    rig = mapped_rig()
    st, res = rig.dma(int(regs.DmaOp.FILL), dst=0x1F000, length=2 * K4)  # 2nd page unmapped
    assert st & ERROR and err_code(st) == regs.DmaErr.XLATE and res == K4
    assert rig.r("CNT_FAULTS") == 1
    bad = [d for d in rig.trace.of("dma") if not d["ok"]]
    assert len(bad) == 1 and bad[0]["err"] == "fault:F_TRANSLATION" and bad[0]["pa"] is None


def test_bus_error_is_an_abort() -> None:
    rig = Rig(mem=SparseMemory(size=0x1000000))
    rig.smmu.map(RID, None, 0x10000, 0x7000000)  # beyond memory
    st, _ = rig.dma(int(regs.DmaOp.FILL), dst=0x10000, length=8)
    assert err_code(st) == regs.DmaErr.XLATE
    assert rig.trace.of("dma")[-1]["err"] == "bus:DECODE_ERROR"


def test_bad_descriptors() -> None:
    rig = mapped_rig()
    assert err_code(rig.dma(9)[0]) == regs.DmaErr.BAD_DESC
    assert err_code(rig.dma(int(regs.DmaOp.FILL), dst=0x10000, length=1 << 40)[0]) == \
        regs.DmaErr.BAD_DESC
    assert err_code(rig.dma(int(regs.DmaOp.FILL), dst=(1 << 64) - 8, length=16)[0]) == \
        regs.DmaErr.BAD_DESC
    no_pasid = mapped_rig(pasid=False)
    st, _ = no_pasid.dma(int(regs.DmaOp.FILL), dst=0x10000, length=8, flags=PASID_FLAG,
                         pasid=7)
    assert err_code(st) == regs.DmaErr.BAD_DESC and not no_pasid.trace.of("dma")


def test_bus_master_off_drops() -> None:
    rig = mapped_rig(bme=False)
    st, _ = rig.dma(int(regs.DmaOp.FILL), dst=0x10000, length=8)
    assert err_code(st) == regs.DmaErr.BME and rig.r("CNT_BM_DROP") == 1
    # The record names the stream and the address it refused (the FILL writes 0x10000).
    assert rig.trace.of("drop") == [{"k": "drop", "dev": 1, "why": "bme", "sid": RID,
                                     "ssid": None, "iova": 0x10000, "rw": "w"}]
    assert not rig.trace.of("dma") and not rig.mem.writes


def test_zero_length_is_done() -> None:
    rig = mapped_rig()
    assert rig.dma(int(regs.DmaOp.COPY), 0x10000, 0x11000, 0) == (DONE, 0)


# -- ATS / ATC ---------------------------------------------------------------------------------

def test_ats_miss_then_hits() -> None:
    rig = mapped_rig()
    rig.mem.write(0x200000, b"x" * 64)
    st, _ = rig.dma(int(regs.DmaOp.COPY), 0x10000, 0x10800, 64, flags=ATS_FLAG)
    assert st == DONE and rig.mem.read(0x200800, 64) == b"x" * 64
    assert rig.r("CNT_ATS_REQ") == 1 and rig.r("CNT_ATC_MISS") == 1
    assert rig.r("CNT_ATC_HIT") == 1  # the write to the same page hits
    ins = rig.trace.of("atc_insert")
    assert ins == [{"k": "atc_insert", "dev": 1, "sid": RID, "ssid": None, "iova": 0x10000,
                    "size": K4, "pa": 0x200000, "perm": "rw", "dom": FAKE_DOMAIN, "id": 1}]
    dmas = rig.trace.of("dma")
    assert [d["atc_id"] for d in dmas] == [1, 1] and all(d["ats"] for d in dmas)
    rig.dma(int(regs.DmaOp.FILL), dst=0x10000, length=8, flags=ATS_FLAG)
    assert rig.r("CNT_ATS_REQ") == 1 and rig.r("CNT_ATC_HIT") == 2
    assert [c[0] for c in rig.smmu.calls] == ["ats"]


def test_ats_with_pasid_uses_pasid_tables() -> None:
    rig = mapped_rig()
    st, _ = rig.dma(int(regs.DmaOp.FILL), dst=0x10000, length=8, flags=ATS_FLAG | PASID_FLAG,
                    pattern=0x42, pasid=7)
    assert st == DONE and rig.mem.read(0x300000, 1) == b"\x42"
    assert rig.ep.atc.entries()[0].pasid == 7


def test_ats_completion_failure() -> None:
    rig = mapped_rig()
    st, _ = rig.dma(int(regs.DmaOp.FILL), dst=0x90000, length=8, flags=ATS_FLAG)
    assert err_code(st) == regs.DmaErr.ATS and rig.r("CNT_FAULTS") == 1
    assert rig.trace.of("dma")[-1]["err"] == "ats:UR" and len(rig.ep.atc) == 0


def test_ats_read_only_translation_and_write() -> None:
    rig = Rig()
    rig.smmu.map(RID, None, 0x10000, 0x200000, perm="r")
    st, _ = rig.dma(int(regs.DmaOp.COMPARE), 0x10000, 0x10000, 8, flags=ATS_FLAG)
    assert st == DONE and rig.ep.atc.entries()[0].perm == "r"
    st, _ = rig.dma(int(regs.DmaOp.FILL), dst=0x10000, length=8, flags=ATS_FLAG)
    # The hit lacks write permission: the ATC asks again, and still may not write.
    assert err_code(st) == regs.DmaErr.XLATE and rig.r("CNT_ATS_REQ") == 2
    assert rig.trace.of("dma")[-1]["err"] == "ats:noperm" and not rig.mem.writes


def test_ats_disabled_drops() -> None:
    rig = mapped_rig(ats=False)
    st, _ = rig.dma(int(regs.DmaOp.FILL), dst=0x10000, length=8, flags=ATS_FLAG)
    assert err_code(st) == regs.DmaErr.ATS_OFF and rig.r("CNT_ATS_DROP") == 1
    assert rig.trace.of("drop") == [{"k": "drop", "dev": 1, "why": "ats", "sid": RID,
                                     "ssid": None, "iova": 0x10000, "rw": "w"}]
    assert rig.r("CNT_ATS_REQ") == 0


def test_translated_refused_without_eats() -> None:
    rig = mapped_rig()
    rig.smmu.eats = False
    st, _ = rig.dma(int(regs.DmaOp.FILL), dst=0x10000, length=8, flags=ATS_FLAG)
    assert err_code(st) == regs.DmaErr.XLATE and not rig.mem.writes
    assert rig.trace.of("dma")[-1]["err"] == "abort:translated-refused"


def test_stu_aligns_requests_and_large_completions() -> None:
    rig = mapped_rig()
    rig.smmu.ats_size = 4 * K4
    rig.ep.cfg_write(ATS + 6, 2, 0x8000 | 1)  # STU = 8 KiB
    rig.dma(int(regs.DmaOp.FILL), dst=0x13000, length=8, flags=ATS_FLAG)
    assert rig.smmu.calls[-1] == ("ats", RID, None, 0x12000)
    e = rig.ep.atc.entries()[0]
    assert (e.iova, e.size, e.pa) == (0x10000, 4 * K4, 0x200000)
    assert rig.mem.writes[-1][0] == 0x203000


def test_atc_replacement_through_device() -> None:
    rig = mapped_rig(atc_entries=2, atc_policy="fifo")
    for page in range(3):
        rig.dma(int(regs.DmaOp.FILL), dst=0x10000 + page * K4, length=8, flags=ATS_FLAG)
    assert rig.trace.of("atc_evict") == [{"k": "atc_evict", "dev": 1, "id": 1}]


# -- invalidation ----------------------------------------------------------------------------

def warm(rig: Rig, pages: int = 2, pasid: int | None = None) -> None:
    flags = ATS_FLAG | (PASID_FLAG if pasid is not None else 0)
    for p in range(pages):
        rig.dma(int(regs.DmaOp.FILL), dst=0x10000 + p * K4, length=8, flags=flags,
                pasid=pasid or 0)


def test_invalidate_range_completes_and_traces() -> None:
    rig = mapped_rig()
    warm(rig, 3)
    inv = ats_inv(None, 0x11000, K4)
    rig.ep.ats_invalidate(inv)
    assert inv.completions == 1
    assert [e.iova for e in rig.ep.atc.entries()] == [0x10000, 0x12000]
    rx, cpl = rig.trace.of("atc_inv_rx")[0], rig.trace.of("atc_inv_cpl")[0]
    assert rx == {"k": "atc_inv_rx", "dev": 1, "sid": RID, "ssid": None, "addr": 0x11000,
                  "size": K4, "g": False, "inv_id": 1, "dropped": [2]}
    assert cpl == {"k": "atc_inv_cpl", "dev": 1, "inv_id": 1, "ignored": False}
    assert rig.r("CNT_INV_REQ") == 1 and rig.r("CNT_INV_CPL") == 1


def test_invalidate_pasid_and_global() -> None:
    rig = mapped_rig()
    warm(rig, 2, pasid=7)
    warm(rig, 2)
    rig.ep.ats_invalidate(ats_inv(7))  # by PASID, whole space
    assert sorted(str(e.pasid) for e in rig.ep.atc.entries()) == ["None", "None"]
    warm(rig, 2, pasid=7)
    rig.ep.ats_invalidate(ats_inv(3, 0x10000, K4, global_=True))
    assert sorted((str(e.pasid), e.iova) for e in rig.ep.atc.entries()) == \
        [("7", 0x11000), ("None", 0x11000)]
    rig.ep.ats_invalidate(ats_inv(None))
    assert len(rig.ep.atc) == 0


def test_invalidation_waits_for_in_flight_dma() -> None:
    """An invalidation arriving while a request using the entry is in flight: the entry is
    dropped at once, the request is issued, and only then the completion is returned."""
    rig = mapped_rig()
    warm(rig, 1)
    inv = ats_inv(None, 0x10000, K4)
    real_write = rig.mem.write

    def write_then_invalidate(addr: int, data: bytes, rid: int = 0, msi: bool = False) -> None:
        if not inv.completions and not rig.trace.of("atc_inv_rx"):
            rig.ep.ats_invalidate(inv)  # arrives while this write is being issued
            assert inv.completions == 0 and len(rig.ep.atc) == 0
        real_write(addr, data, rid, msi)

    rig.mem.write = write_then_invalidate  # type: ignore[method-assign]
    rig.dma(int(regs.DmaOp.FILL), dst=0x10000, length=8, flags=ATS_FLAG)
    assert inv.completions == 1
    seq = [(r["k"], r.get("atc_id")) for r in rig.trace.records
           if r["k"] in ("atc_inv_rx", "atc_inv_cpl", "dma")]
    assert seq[-3:] == [("atc_inv_rx", None), ("dma", 1), ("atc_inv_cpl", None)]


def test_invalidation_mid_generator_burst() -> None:
    rig = mapped_rig()
    rig.w("TG_BASE", 0x10000)
    rig.w("TG_SIZE", K4)
    rig.w("TG_RATE", 6)
    rig.w("TG_CTRL", int(regs.TgCtrl.RUN | regs.TgCtrl.ATS))
    inv = ats_inv(None, 0x10000, K4)
    real_write = rig.mem.write
    count = [0]

    def write(addr: int, data: bytes, rid: int = 0, msi: bool = False) -> None:
        count[0] += 1
        if count[0] == 3:
            rig.ep.ats_invalidate(inv)
        real_write(addr, data, rid, msi)

    rig.mem.write = write  # type: ignore[method-assign]
    rig.ep.poll()
    assert inv.completions == 1 and rig.r("TG_WRITES") == 6
    ks = [(r["k"], r.get("seq"), r.get("atc_id")) for r in rig.trace.records
          if r["k"] in ("dma", "atc_inv_rx", "atc_inv_cpl", "atc_insert")]
    i_rx = ks.index(("atc_inv_rx", None, None))
    assert ks[i_rx + 1] == ("dma", 2, 1)  # the in-flight record completes with the old entry
    assert ks[i_rx + 2] == ("atc_inv_cpl", None, None)
    assert ks[i_rx + 3][0] == "atc_insert"  # the next record must translate again
    assert all(a != 1 for k, _, a in ks[i_rx + 3:] if k == "dma")


def test_inv_delay_completes_on_poll() -> None:
    rig = mapped_rig(inv_delay_ms=20)
    warm(rig, 1)
    inv = ats_inv(None)
    rig.ep.ats_invalidate(inv)
    assert inv.completions == 0 and len(rig.ep.atc) == 0
    rig.ep.poll()
    assert inv.completions == 0
    time.sleep(0.03)
    rig.ep.poll()
    assert inv.completions == 1 and rig.ep.pending_invalidations == 0


def test_inv_late_keeps_entries_usable_until_it_acts() -> None:
    """inv_late_ms: the entries stay in the ATC and are used until the device acts on the
    invalidation (PCIe ATS lets a function use them until it sends the completion)."""
    now = [100.0]
    rig = mapped_rig(inv_late_ms=50)
    rig.ep.clock = lambda: now[0]
    warm(rig, 1)
    entry = rig.trace.of("atc_insert")[-1]["id"]
    inv = ats_inv(None)
    rig.ep.ats_invalidate(inv)
    assert inv.completions == 0 and len(rig.ep.atc) == 1 and not rig.trace.of("atc_inv_rx")
    now[0] += 0.049
    rig.ep.poll_invalidations()
    warm(rig, 1)
    assert inv.completions == 0 and rig.trace.of("dma")[-1]["atc_id"] == entry
    now[0] += 0.002
    rig.ep.poll_invalidations()
    assert inv.completions == 1 and len(rig.ep.atc) == 0
    assert rig.trace.of("atc_inv_rx")[-1]["dropped"] == [entry]
    assert [k for k in rig.trace.kinds() if k.startswith("atc_inv")][-2:] == [
        "atc_inv_rx", "atc_inv_cpl"]


def test_inv_late_owed_at_a_reset_completes() -> None:
    rig = mapped_rig(inv_late_ms=10_000)
    warm(rig, 1)
    inv = ats_inv(None)
    rig.ep.ats_invalidate(inv)
    rig.ep.reset(RESET_FLR)
    assert inv.completions == 1 and rig.trace.of("atc_inv_rx")[-1]["dropped"] == []


def test_inv_drop_never_completes() -> None:
    rig = mapped_rig(inv_drop=True)
    warm(rig, 1)
    inv = ats_inv(None)
    rig.ep.ats_invalidate(inv)
    rig.ep.poll()
    assert inv.completions == 0 and len(rig.ep.atc) == 0 and not rig.trace.of("atc_inv_cpl")
    assert rig.r("CNT_INV_CPL") == 0


def test_inv_ignore_completes_without_invalidating() -> None:
    rig = mapped_rig(inv_ignore=True)
    warm(rig, 1)
    inv = ats_inv(None)
    rig.ep.ats_invalidate(inv)
    assert inv.completions == 1 and len(rig.ep.atc) == 1
    assert rig.trace.of("atc_inv_rx")[0]["dropped"] == []
    assert rig.trace.of("atc_inv_cpl")[0]["ignored"] is True
    rig.dma(int(regs.DmaOp.FILL), dst=0x10000, length=8, flags=ATS_FLAG)
    assert rig.trace.of("dma")[-1]["atc_id"] == 1  # the stale entry is still used


def test_xlate_fail_knob() -> None:
    rig = mapped_rig(xlate_fail=True)
    st, _ = rig.dma(int(regs.DmaOp.FILL), dst=0x10000, length=8, flags=ATS_FLAG)
    assert err_code(st) == regs.DmaErr.ATS and rig.r("CNT_ATS_REQ") == 1
    assert not rig.smmu.calls and len(rig.ep.atc) == 0
    st, _ = rig.dma(int(regs.DmaOp.FILL), dst=0x10000, length=8)  # untranslated still works
    assert st == DONE


def test_slow_us_knob() -> None:
    rig = mapped_rig(slow_us=5000)
    t0 = time.monotonic()
    rig.dma(int(regs.DmaOp.FILL), dst=0x10000, length=2 * K4)
    assert time.monotonic() - t0 >= 0.01


def test_bad_options_rejected() -> None:
    for bad in ({"atc_entries": 0}, {"atc_policy": "mru"}, {"inv_queue_depth": 33},
                {"inv_delay_ms": -1}):
        with pytest.raises(ValueError):
            EndpointOptions(**bad)


# -- traffic generator -----------------------------------------------------------------------

def start_tg(rig: Rig, ctrl: int, size: int = 128, rate: int = 3, tag: int = 0x77) -> None:
    rig.w("TG_BASE", 0x10000)
    rig.w("TG_SIZE", size)
    rig.w("TG_STRIDE", 32)
    rig.w("TG_RATE", rate)
    rig.w("TG_TAG", tag)
    rig.w("TG_CTRL", ctrl)


def test_generator_records_wrap_and_counters() -> None:
    rig = mapped_rig()
    start_tg(rig, int(regs.TgCtrl.RUN | regs.TgCtrl.READBACK))
    rig.ep.poll()
    rig.ep.poll()
    assert rig.r("TG_SEQ") == 6 and rig.r("TG_WRITES") == 6 and rig.r("TG_MISMATCH") == 0
    # 4 slots of 32 bytes: seq 4 and 5 overwrote slots 0 and 1.
    magic, seq, iova, tag = struct.unpack("<QQQQ", rig.mem.read(0x200000, 32))
    assert (magic, seq, iova, tag) == (regs.TG_RECORD_MAGIC, 4, 0x10000, 0x77)
    assert struct.unpack("<QQQQ", rig.mem.read(0x200060, 32))[1] == 3
    tg = [d for d in rig.trace.of("dma") if d["src"] == "tg"]
    assert [d["seq"] for d in tg if d["rw"] == "w"] == list(range(6))
    assert rig.ep.busy
    rig.w("TG_CTRL", 0)
    rig.ep.poll()
    assert rig.r("TG_SEQ") == 6 and not rig.ep.busy


def test_generator_readback_mismatch() -> None:
    class Lossy(SparseMemory):
        def read(self, addr: int, length: int, rid: int = 0) -> bytes:
            return bytes(length)

    rig = mapped_rig(mem=Lossy())
    start_tg(rig, int(regs.TgCtrl.RUN | regs.TgCtrl.READBACK), rate=2)
    rig.ep.poll()
    assert rig.r("TG_MISMATCH") == 2


def test_generator_failures_counted() -> None:
    rig = mapped_rig()
    rig.smmu.unmap(RID, None, 0x10000)
    start_tg(rig, int(regs.TgCtrl.RUN), rate=4)
    rig.ep.poll()
    assert rig.r("TG_XLATE_FAIL") == 4 and rig.r("CNT_FAULTS") == 4 and rig.r("TG_WRITES") == 0
    rig.w("TG_CTRL", 0)
    rig.smmu.eats = False
    rig.smmu.map(RID, None, 0x10000, 0x200000)
    start_tg(rig, int(regs.TgCtrl.RUN | regs.TgCtrl.ATS), rate=1)
    rig.ep.poll()
    assert rig.r("TG_ABORTS") == 1
    rig.w("TG_CTRL", 0)
    rig.ep.cfg_write(ATS + 6, 2, 0)
    start_tg(rig, int(regs.TgCtrl.RUN | regs.TgCtrl.ATS), rate=1)
    rig.ep.poll()
    assert rig.r("TG_ATS_ERR") == 1 and rig.r("CNT_ATS_DROP") == 1


def test_generator_bad_window_does_not_start() -> None:
    rig = mapped_rig()
    start_tg(rig, int(regs.TgCtrl.RUN), size=16)
    assert rig.r("TG_CTRL") & regs.TgCtrl.RUN == 0
    rig.ep.poll()
    assert rig.r("TG_SEQ") == 0


# -- MSI-X -----------------------------------------------------------------------------------

def program_vector(rig: Rig, v: int, addr: int, data: int, masked: bool) -> None:
    base = regs.MSIX_TABLE_OFF + v * regs.MSIX_ENTRY_SIZE
    rig.ep.mmio_write(2, base + regs.MSIX_ENTRY_ADDR_LO, 8, addr)
    rig.ep.mmio_write(2, base + regs.MSIX_ENTRY_DATA, 4, data)
    rig.ep.mmio_write(2, base + regs.MSIX_ENTRY_CTRL, 4, int(masked))


def test_msix_delivery_through_smmu() -> None:
    rig = mapped_rig(msix=True)
    rig.smmu.map(RID, None, 0x8000000, 0x8090000)  # MSI IOVA -> ITS doorbell page
    program_vector(rig, 0, 0x8000040, 0x25, masked=False)
    st, _ = rig.dma(int(regs.DmaOp.FILL), dst=0x10000, length=8, flags=IRQ_FLAG)
    assert st == DONE
    addr, data, rid, msi = rig.mem.writes[-1]
    assert (addr, data, rid, msi) == (0x8090040, b"\x25\0\0\0", RID, True)
    assert rig.trace.of("dma")[-1]["src"] == "msi"


def test_msix_error_vector_and_masking() -> None:
    rig = mapped_rig(msix=True)
    rig.smmu.map(RID, None, 0x8000000, 0x8090000)
    program_vector(rig, 1, 0x8000040, 0x31, masked=True)
    rig.dma(int(regs.DmaOp.FILL), dst=0x90000, length=8, flags=IRQ_FLAG)  # fails -> vector 1
    assert rig.ep.mmio_read(2, regs.MSIX_PBA_OFF, 8) == 0b10
    assert not any(w[3] for w in rig.mem.writes)
    rig.ep.mmio_write(2, regs.MSIX_TABLE_OFF + regs.MSIX_ENTRY_SIZE + regs.MSIX_ENTRY_CTRL, 4, 0)
    assert rig.mem.writes[-1] == (0x8090040, b"\x31\0\0\0", RID, True)
    assert rig.ep.mmio_read(2, regs.MSIX_PBA_OFF, 8) == 0


def test_msix_function_mask_and_disable() -> None:
    rig = mapped_rig(msix=True)
    rig.smmu.map(RID, None, 0x8000000, 0x8090000)
    program_vector(rig, 0, 0x8000040, 1, masked=False)
    rig.ep.cfg_write(MSIX + 2, 2, 0xC000)  # function mask
    rig.dma(int(regs.DmaOp.FILL), dst=0x10000, length=8, flags=IRQ_FLAG)
    assert rig.ep.mmio_read(2, regs.MSIX_PBA_OFF, 4) == 1
    rig.ep.cfg_write(MSIX + 2, 2, 0x8000)
    assert rig.mem.writes[-1][3] is True and rig.ep.mmio_read(2, regs.MSIX_PBA_OFF, 4) == 0
    rig.ep.cfg_write(MSIX + 2, 2, 0)  # MSI-X disabled: the event is lost
    n = len(rig.mem.writes)
    rig.dma(int(regs.DmaOp.FILL), dst=0x10000, length=8, flags=IRQ_FLAG)
    assert len(rig.mem.writes) == n + 1 and rig.ep.mmio_read(2, regs.MSIX_PBA_OFF, 4) == 0


def test_msix_table_reset_masked_and_pba_read_only() -> None:
    rig = Rig()
    for v in range(regs.MSIX_VECTORS):
        off = regs.MSIX_TABLE_OFF + v * regs.MSIX_ENTRY_SIZE + regs.MSIX_ENTRY_CTRL
        assert rig.ep.mmio_read(2, off, 4) == regs.MSIX_CTRL_MASKED
    rig.ep.mmio_write(2, regs.MSIX_PBA_OFF, 8, 0xFFFF)
    assert rig.ep.mmio_read(2, regs.MSIX_PBA_OFF, 8) == 0
    assert rig.ep.mmio_read(2, 0x400, 4) == 0 and rig.r("CNT_BAD_MMIO") == 1


def test_msi_fault_counted() -> None:
    rig = mapped_rig(msix=True)
    program_vector(rig, 0, 0x9990000, 1, masked=False)  # MSI IOVA not mapped
    st, _ = rig.dma(int(regs.DmaOp.FILL), dst=0x10000, length=8, flags=IRQ_FLAG)
    assert st == DONE and rig.r("CNT_FAULTS") == 1
    assert rig.trace.of("dma")[-1]["src"] == "msi" and not rig.trace.of("dma")[-1]["ok"]


# -- reset -----------------------------------------------------------------------------------

def test_reset_register_and_flr() -> None:
    rig = mapped_rig(inv_delay_ms=10_000)
    warm(rig, 2)
    start_tg(rig, int(regs.TgCtrl.RUN))
    rig.ep.poll()
    inv = ats_inv(None, 0x50000, K4)
    rig.ep.ats_invalidate(inv)
    rig.w("RESET", 1)
    assert len(rig.ep.atc) == 0 and not rig.ep.tg.running and rig.r("CNT_ATS_REQ") == 0
    assert rig.r("TG_SEQ") == 0 and rig.r("TG_STRIDE") == 32 and inv.completions == 1
    assert sorted(e["id"] for e in rig.trace.of("atc_evict")) == [1, 2]
    assert rig.ep.config.bus_master  # the RESET register leaves config space alone
    rig.ep.reset(RESET_FLR)
    assert not rig.ep.config.bus_master and not rig.ep.config.ats_enabled
    st, _ = rig.dma(int(regs.DmaOp.FILL), dst=0x10000, length=8)
    assert err_code(st) == regs.DmaErr.BME


# -- real trace writer -----------------------------------------------------------------------

def test_records_serialise_through_trace_writer(tmp_path: Any) -> None:
    path = tmp_path / "t.jsonl"
    tw = TraceWriter(path)
    smmu = FakeSmmu()
    smmu.map(RID, None, 0x10000, 0x200000)
    ep = Endpoint(1, smmu, SparseMemory(), tw)
    ep.device_info(RID, PCIE, ATS, PASID, MSIX)
    ep.cfg_write(0x04, 2, 4)
    ep.cfg_write(ATS + 6, 2, 0x8000)
    for name, v in (("DMA_OP", 2), ("DMA_DST", 0x10000), ("DMA_LEN", 8), ("DMA_FLAGS", 1)):
        ep.mmio_write(0, R[name], regs.BY_NAME[name].nbytes, v)
    ep.mmio_write(0, R["DMA_DOORBELL"], 4, 1)
    ep.ats_invalidate(ats_inv(None))
    tw.close()
    kinds = [r["k"] for r in read_trace(path).records]
    for k in ("cfg", "mmio", "atc_insert", "dma", "atc_inv_rx", "atc_inv_cpl"):
        assert k in kinds, k
    assert json.loads(path.read_text().splitlines()[-1])["k"] == "atc_inv_cpl"
    assert smmu.devices[RID] is ep


# -- the translation agent interface ------------------------------------------------------------

def test_shared_invalidation_and_completion_classes() -> None:
    rig = mapped_rig()
    warm(rig, 2)
    inv = ats_inv(None, 0x11000, K4, inv_id=17)
    rig.ep.ats_invalidate(inv)
    assert inv.completions == 1 and inv.done
    assert rig.trace.of("atc_inv_rx")[0]["inv_id"] == 17
    assert [e.iova for e in rig.ep.atc.entries()] == [0x10000]
    whole = ats_inv(None, inv_id=18)
    assert whole.whole and not inv.whole
    rig.ep.ats_invalidate(whole)
    assert whole.completions == 1 and len(rig.ep.atc) == 0
    d7 = Domain.stage1(7, 0x7000)

    class ReadExecOnly(FakeSmmu):
        def ats_translate(self, sid: int, ssid: int | None, iova: int,
                          access: Access) -> AtsCompletion:
            if iova == 0x10000:
                return AtsCompletion(AtsStatus.SUCCESS, 0x200000, K4,
                                     Permissions(read=True, exec=True), dom=d7)
            return AtsCompletion(AtsStatus.UR)

    rig2 = Rig(smmu=ReadExecOnly())
    st, _ = rig2.dma(int(regs.DmaOp.COMPARE), 0x10000, 0x10000, 8, flags=ATS_FLAG)
    assert st == DONE and rig2.trace.of("atc_insert")[0]["dom"] == d7
    assert rig2.trace.of("atc_insert")[0]["perm"] == "r"
    assert rig2.ep.atc.entries()[0].dom == d7
    st, _ = rig2.dma(int(regs.DmaOp.FILL), dst=0x20000, length=8, flags=ATS_FLAG)
    assert err_code(st) == regs.DmaErr.ATS
    assert rig2.trace.of("dma")[-1]["err"] == "ats:UR" and rig2.trace.of("dma")[-1]["dom"] is None


def test_fake_smmu_and_endpoint_implement_the_interface() -> None:
    rig = mapped_rig()
    agent: TranslationAgent = rig.smmu     # checked statically, and at run time below
    assert isinstance(agent, TranslationAgent)
    device: AtsDevice = rig.ep
    assert isinstance(device, AtsDevice) and not isinstance(object(), TranslationAgent)
    t = agent.translate(RID, None, 0x10000, Access())
    assert t.ok and t.dom == FAKE_DOMAIN and t.perm == Permissions(read=True, write=True)


def test_endpoint_package_does_not_import_the_smmu() -> None:
    import ast
    import pathlib

    import cosim.endpoint

    root = pathlib.Path(cosim.endpoint.__file__).parent
    files = sorted(root.rglob("*.py"))
    assert len(files) >= 8
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                assert not (name == "cosim.smmu" or name.startswith("cosim.smmu.")), \
                    f"{path.name} imports {name}"


def test_generator_rate_capped_per_poll() -> None:
    rig = mapped_rig()
    start_tg(rig, int(regs.TgCtrl.RUN), size=K4, rate=0xFFFFFFFF)
    rig.ep.poll()
    assert rig.r("TG_SEQ") == 4096


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["r", "w", "c"]), st.integers(0, 3),
                          st.integers(0, 0x1000), st.sampled_from([1, 2, 3, 4, 8, 16]),
                          st.integers(0, (1 << 64) - 1)), max_size=30))
def test_random_guest_accesses_never_raise(ops: list) -> None:
    rig = mapped_rig(msix=True)
    for kind, region, off, size, value in ops:
        if kind == "r":
            v = rig.ep.mmio_read(region, off, size)
            assert 0 <= v < (1 << 64)
        elif kind == "w":
            rig.ep.mmio_write(region, off, size, value)
        else:
            rig.ep.cfg_write(off, size, value)
        rig.ep.poll()
