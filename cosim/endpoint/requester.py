"""The function's memory-request path: every DMA the endpoint issues goes through here.

It gates requests on Bus Master Enable and ATS Enable, translates through the ATC (sending
ATS Translation Requests to the SMMU on a miss) or sends untranslated requests that the SMMU
translates, performs the physical access, counts every failure, and writes the `dma`, `drop`,
`atc_*` trace records. It also tracks which ATC entries an access in flight is using, so that
an ATS invalidation completion can wait for them (PCIe ATS: the completion is sent only after
every request that used an invalidated translation has been issued).

With `hold` > 0 (strict mode) the traffic generator's translated writes, posted requests, stay
in flight after they were translated: up to `hold` of them, oldest delivered first, each still
using the ATC entry it was issued with. They are delivered when more are issued, before any
other request (writes do not pass writes, reads do not pass writes: PCIe ordering), at the
endpoint's next poll (a posted write lands in bounded time), when the generator stops, at a
reset, and when an invalidation of their entries is to be completed: the
Invalidation Completion pushes them (PCIe ATS, invalidation completion ordering), so they reach
memory with the old translation before the completion. Their `dma` record, written at
delivery, says `held`; the `atc_hit` or `ats` record was written when they were issued. A
posted write has no completion, so one that fails at delivery is not reported back to the
function: the generator counted it when it issued it.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from cosim.arch.domain import Domain
from cosim.arch.endpoint_regs import DmaErr
from cosim.endpoint.atc import Atc, AtcEntry
from cosim.endpoint.config import ConfigMirror
from cosim.memory import BusError, GuestMemory
from cosim.trace import TraceSink
from cosim.translation_agent import Access, AtsStatus, TranslationAgent

log = logging.getLogger("cosim.endpoint")

# Requests never cross a 4 KiB boundary: the smallest translation granule, so one untranslated
# translation or one ATC entry always covers a whole piece.
PIECE = 4096

Source = Literal["engine", "tg", "msi"]

READ = Access(read=True)
WRITE = Access(read=False, write=True)
# ATS Translation Requests ask for write permission too (NW=0), so a later write can hit.
ATS_RW = Access(read=True, write=True)


@dataclass
class Outcome:
    """Result of one transfer: bytes done before a failure, data read, error class."""

    ok: bool
    done: int
    data: bytes = b""
    err: DmaErr = DmaErr.NONE
    kind: str = ""  # counter class of a failure: 'xlate', 'abort', 'ats_err', 'drop'


@dataclass(frozen=True)
class _Xlate:
    """A translation ready to use for one piece."""

    pa: int
    dom: Domain | None
    entry: AtcEntry | None


@dataclass(frozen=True)
class _Held:
    """A translated posted write issued and not yet delivered."""

    iova: int
    data: bytes
    pasid: int | None
    src: Source
    seq: int | None
    xl: _Xlate


class _Fail(Exception):
    """Internal: a piece could not be translated or issued (never leaves this module)."""

    def __init__(self, err: DmaErr, kind: str, text: str, pa: int | None = None,
                 dom: Domain | None = None, entry: AtcEntry | None = None) -> None:
        super().__init__(text)
        self.err = err
        self.kind = kind
        self.text = text
        self.pa = pa
        self.dom = dom
        self.entry = entry


class Requester:
    """Issues the endpoint's memory requests (see module docstring)."""

    def __init__(self, dev: int, smmu: TranslationAgent, mem: GuestMemory, trace: TraceSink,
                 atc: Atc, config: ConfigMirror, counters: dict[str, int], xlate_fail: bool = False,
                 slow_us: int = 0, hold: int = 0) -> None:
        self.dev = dev
        self.smmu = smmu
        self.mem = mem
        self.trace = trace
        self.atc = atc
        self.config = config
        self.counters = counters
        self.xlate_fail = xlate_fail
        self.slow_us = slow_us
        self.rid = 0
        self.in_use: Counter[int] = Counter()
        self.on_release: Callable[[], None] = lambda: None
        self.hold = hold
        self.held: deque[_Held] = deque()

    # -- public ------------------------------------------------------------------------------

    def read(self, iova: int, length: int, pasid: int | None, ats: bool, src: Source,
             seq: int | None = None) -> Outcome:
        return self._transfer(iova, length, None, pasid, ats, src, seq)

    def write(self, iova: int, data: bytes, pasid: int | None, ats: bool, src: Source,
              seq: int | None = None, msi: bool = False) -> Outcome:
        return self._transfer(iova, len(data), data, pasid, ats, src, seq, msi)

    def deliver_held(self, count: int | None = None) -> None:
        """Deliver the held writes (the oldest `count`, or all), oldest first, each with the
        translation it was issued with, and release their ATC entries (an invalidation
        waiting on them may then complete)."""
        if not self.held:
            return
        n = len(self.held) if count is None else min(count, len(self.held))
        for _ in range(n):
            h = self.held.popleft()
            ok, err = True, None
            try:
                self.mem.write(h.xl.pa, h.data, self.rid, False)
            except BusError as e:
                ok, err = False, f"bus:{e.status}"
                self._count_failure("abort")
            self._emit_dma(h.iova, len(h.data), True, True, h.pasid, h.src, h.seq, ok, h.xl.pa,
                           h.xl.dom, h.xl.entry, err, held=True)
            assert h.xl.entry is not None
            self._release(h.xl.entry)
        self.on_release()

    def gate(self, ats: bool, iova: int, pasid: int | None, write: bool) -> Outcome | None:
        """The failure when the function may not issue this traffic at all, else None.

        Bus Master Enable clear forbids every memory request (MSIs included); ATS Enable clear
        forbids ATS requests and translated requests (PCIe ATS §5.1.3, ATS Control). The
        record names the stream and address, so the analysis can tell whose traffic the
        function refused (a PASID relying on ATS while the RID's domain changes).
        """
        if not self.config.bus_master:
            self.counters["CNT_BM_DROP"] += 1
            self.trace.emit("drop", dev=self.dev, why="bme", sid=self.rid, ssid=pasid,
                            iova=iova, rw="w" if write else "r")
            return Outcome(False, 0, err=DmaErr.BME, kind="drop")
        if ats and not self.config.ats_enabled:
            self.counters["CNT_ATS_DROP"] += 1
            self.trace.emit("drop", dev=self.dev, why="ats", sid=self.rid, ssid=pasid,
                            iova=iova, rw="w" if write else "r")
            return Outcome(False, 0, err=DmaErr.ATS_OFF, kind="ats_err")
        return None

    # -- transfer ----------------------------------------------------------------------------

    def _transfer(self, iova: int, length: int, data: bytes | None, pasid: int | None,
                  ats: bool, src: Source, seq: int | None, msi: bool = False) -> Outcome:
        if self.held and not self._holdable(data, ats, src):
            self.deliver_held()         # no request passes the posted writes before it
        blocked = self.gate(ats, iova, pasid, data is not None)
        if blocked is not None:
            return blocked
        out = bytearray()
        done = 0
        while done < length:
            addr = iova + done
            n = min(length - done, PIECE - addr % PIECE)
            chunk = None if data is None else data[done:done + n]
            try:
                got = self._piece(addr, n, chunk, pasid, ats, src, seq, msi)
            except _Fail as f:
                self._count_failure(f.kind)
                return Outcome(False, done, bytes(out), f.err, f.kind)
            if got is not None:
                out += got
            done += n
        return Outcome(True, done, bytes(out))

    def _holdable(self, data: bytes | None, ats: bool, src: Source) -> bool:
        return bool(self.hold) and data is not None and ats and src == "tg"

    def _piece(self, addr: int, n: int, data: bytes | None, pasid: int | None, ats: bool,
               src: Source, seq: int | None, msi: bool) -> bytes | None:
        write = data is not None
        xl: _Xlate | None = None
        try:
            xl = self._translate_ats(addr, pasid, write) if ats else \
                self._translate_untranslated(addr, pasid, write)
            if xl.entry is not None:
                self.in_use[xl.entry.id] += 1
            if self._holdable(data, ats, src) and xl.entry is not None:
                assert data is not None
                self.held.append(_Held(addr, bytes(data), pasid, src, seq, xl))
                xl = None               # the entry stays in use until delivery
                if len(self.held) > self.hold:
                    self.deliver_held(1)    # full: the oldest goes out to make room
                return None
            if self.slow_us:
                time.sleep(self.slow_us / 1e6)
            try:
                if write:
                    self.mem.write(xl.pa, bytes(data), self.rid, msi)
                    got = None
                else:
                    got = self.mem.read(xl.pa, n, self.rid)
            except BusError as e:
                raise _Fail(DmaErr.XLATE, "abort", f"bus:{e.status}", xl.pa, xl.dom,
                            xl.entry) from None
            self._emit_dma(addr, n, write, ats, pasid, src, seq, True, xl.pa, xl.dom,
                           xl.entry, None)
            return got
        except _Fail as f:
            self._emit_dma(addr, n, write, ats, pasid, src, seq, False, f.pa, f.dom,
                           f.entry, f.text)
            raise
        finally:
            if xl is not None and xl.entry is not None:
                self._release(xl.entry)
                self.on_release()

    def _release(self, entry: AtcEntry) -> None:
        self.in_use[entry.id] -= 1
        if self.in_use[entry.id] <= 0:
            del self.in_use[entry.id]

    def _emit_dma(self, iova: int, n: int, write: bool, ats: bool, pasid: int | None,
                  src: Source, seq: int | None, ok: bool, pa: int | None, dom: Domain | None,
                  entry: AtcEntry | None, err: str | None, held: bool = False) -> None:
        extra = {"held": True} if held else {}
        self.trace.emit("dma", dev=self.dev, sid=self.rid, ssid=pasid, iova=iova, pa=pa, len=n,
                        rw="w" if write else "r", ats=ats, ok=ok,
                        atc_id=entry.id if entry else None, dom=dom, err=err, src=src, seq=seq,
                        **extra)

    def _count_failure(self, kind: str) -> None:
        if kind in ("xlate", "abort"):
            self.counters["CNT_FAULTS"] += 1

    # -- translation -------------------------------------------------------------------------

    def _translate_untranslated(self, addr: int, pasid: int | None, write: bool) -> _Xlate:
        """Untranslated request: the SMMU translates it (or faults and aborts it)."""
        try:
            t = self.smmu.translate(self.rid, pasid, addr, WRITE if write else READ)
        except Exception as e:  # the SMMU must never take the device model down with it
            log.error("endpoint %d: SMMU translate raised %r", self.dev, e)
            raise _Fail(DmaErr.XLATE, "abort", "abort:smmu-internal") from None
        if not t.ok:
            raise _Fail(DmaErr.XLATE, "xlate", f"fault:{t.fault}", None, t.dom)
        return _Xlate(t.pa, t.dom, None)

    def _translate_ats(self, addr: int, pasid: int | None, write: bool) -> _Xlate:
        """Translated request: ATC hit, or ATS Translation Request then insert; then the SMMU
        must accept translated traffic from this stream (STE.EATS, SMMUv3 §3.9.1)."""
        entry = self.atc.lookup(pasid, addr)
        if entry is not None and (entry.write if write else entry.read):
            self.counters["CNT_ATC_HIT"] += 1
            self.trace.emit("atc_hit", dev=self.dev, sid=self.rid, ssid=pasid, iova=addr,
                            id=entry.id, dom=entry.dom)
        else:
            # A miss, or a hit lacking the permission: the ATC must ask again (PCIe ATS).
            self.counters["CNT_ATC_MISS"] += 1
            entry = self._ats_request(addr, pasid, write)
        pa = entry.pa_of(addr)
        if not self._translated_allowed(pasid, pa, write):
            raise _Fail(DmaErr.XLATE, "abort", "abort:translated-refused", pa, entry.dom, entry)
        return _Xlate(pa, entry.dom, entry)

    def _translated_allowed(self, pasid: int | None, pa: int, write: bool) -> bool:
        try:
            return self.smmu.check_translated(self.rid, pasid, pa, write)
        except Exception as e:
            log.error("endpoint %d: SMMU check_translated raised %r", self.dev, e)
            return False

    def _ats_request(self, addr: int, pasid: int | None, write: bool) -> AtcEntry:
        stu = self.config.stu_bytes
        req = addr & ~(stu - 1)
        self.counters["CNT_ATS_REQ"] += 1
        if self.xlate_fail:
            # Fault injection: behave as if the SMMU had answered Unsupported Request.
            raise _Fail(DmaErr.ATS, "xlate", "ats:UR(injected)")
        try:
            cpl = self.smmu.ats_translate(self.rid, pasid, req, ATS_RW)
        except Exception as e:
            log.error("endpoint %d: SMMU ats_translate raised %r", self.dev, e)
            raise _Fail(DmaErr.ATS, "ats_err", "ats:bad-completion") from None
        if cpl.status is not AtsStatus.SUCCESS:
            raise _Fail(DmaErr.ATS, "xlate", f"ats:{cpl.status.value}", None, cpl.dom)
        size = cpl.size
        if size & (size - 1) or size < PIECE:
            # PCIe ATS: a translation covers a power-of-two multiple of 4 KiB.
            log.warning("endpoint %d: ATS completion size %#x is not valid", self.dev, size)
            raise _Fail(DmaErr.ATS, "ats_err", "ats:bad-completion")
        perm, dom = cpl.perm, cpl.dom
        if not (perm.write if write else perm.read):
            # Success with the needed permission clear: the page is not accessible this way.
            raise _Fail(DmaErr.XLATE, "xlate", "ats:noperm", None, dom)
        entry, evicted = self.atc.insert(pasid, req, size, cpl.pa, perm.read, perm.write, dom,
                                         cpl)
        for e in evicted:
            self.trace.emit("atc_evict", dev=self.dev, id=e.id)
        self.trace.emit("atc_insert", dev=self.dev, sid=self.rid, ssid=pasid, iova=entry.iova,
                        size=entry.size, pa=entry.pa, perm=entry.perm, dom=dom, id=entry.id)
        return entry
