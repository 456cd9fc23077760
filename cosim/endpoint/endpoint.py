"""The cosim-pcie-ep device: BAR decoding, config mirror, reset, markers, ATS invalidations.

The backend calls `mmio_read`/`mmio_write`/`cfg_write`/`reset`/`device_info` for the QEMU
messages addressed to this endpoint, `poll_invalidations()` after every request it serves,
`poll()` from its idle loop, and the SMMU calls `ats_invalidate()` for each CMD_ATC_INV naming
this device's StreamID. The endpoint sees the
SMMU only as a `TranslationAgent` and is its `AtsDevice` (cosim/translation_agent.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cosim.arch import endpoint_regs as regs
from cosim.endpoint.atc import DEFAULT_ENTRIES, POLICIES, Atc
from cosim.endpoint.config import ATS_INV_QUEUE_DEPTH_MAX, CapOffsets, ConfigMirror
from cosim.endpoint.dma_engine import DescriptorEngine, TrafficGenerator
from cosim.endpoint.msix import MsixTable
from cosim.endpoint.requester import Requester
from cosim.memory import GuestMemory
from cosim.trace import NullTrace, TraceSink
from cosim.translation_agent import AtcInvalidation, TranslationAgent

log = logging.getLogger("cosim.endpoint")

RESET_SYSTEM = 0
RESET_FLR = 1
MSI_DATA_BYTES = 4

# Records per poll at most: the model is single-threaded, so one poll must stay short enough
# for QEMU's requests (and its link timeout) whatever TG_RATE the guest writes.
TG_MAX_RATE = 4096

_RESET_VALUES = {"TG_STRIDE": regs.TG_RECORD_SIZE}


@dataclass
class EndpointOptions:
    """Model options, including the fault-injection knobs used to test the SMMU and analyzer."""

    atc_entries: int = DEFAULT_ENTRIES
    atc_policy: str = "lru"
    inv_delay_ms: float = 0.0  # hold each invalidation completion this long
    # Act on each invalidation only this long after receiving it: until then its entries stay
    # usable (PCIe ATS lets a function use them until it sends the completion). `cosim model
    # --cache-mode strict` sets it just short of the SMMU's atc_inv_timeout_ms.
    inv_late_ms: float = 0.0
    inv_drop: bool = False  # never complete invalidations (SMMU: CERROR_ATC_INV_SYNC)
    inv_ignore: bool = False  # complete invalidations without invalidating (broken device)
    xlate_fail: bool = False  # every ATS Translation Request fails (UR)
    slow_us: int = 0  # delay before each DMA request
    inv_queue_depth: int = ATS_INV_QUEUE_DEPTH_MAX  # ATS Capability Invalidate Queue Depth
    # Translated writes of the traffic generator kept in flight after translation, at most
    # this many (requester.py): an invalidation arriving meanwhile must push them before its
    # completion. `cosim model --cache-mode strict` sets it to INFLIGHT_STRICT.
    inflight: int = 0

    def __post_init__(self) -> None:
        if self.atc_entries < 1:
            raise ValueError("atc_entries must be >= 1")
        if self.atc_policy not in POLICIES:
            raise ValueError(f"atc_policy must be one of {POLICIES}")
        if not 1 <= self.inv_queue_depth <= ATS_INV_QUEUE_DEPTH_MAX:
            raise ValueError(f"inv_queue_depth must be 1..{ATS_INV_QUEUE_DEPTH_MAX}")
        if self.inflight < 0:
            raise ValueError("inflight must be >= 0")
        if self.inv_delay_ms < 0 or self.inv_late_ms < 0 or self.slow_us < 0:
            raise ValueError("delays must be >= 0")


@dataclass
class _PendingInvalidation:
    inv: AtcInvalidation
    ready_at: float                                 # complete no earlier than this
    act_at: float                                   # drop the entries at this time
    acted: bool = False                             # the entries are dropped
    waiting: set[int] = field(default_factory=set)  # ATC entry ids still used by a request


class Endpoint:
    """One cosim-pcie-ep function (docs/endpoint.md)."""

    def __init__(self, dev: int, smmu: TranslationAgent, mem: GuestMemory,
                 trace: TraceSink | None = None, options: EndpointOptions | None = None) -> None:
        self.dev = dev
        self.smmu = smmu
        self.mem = mem
        self.trace = trace if trace is not None else NullTrace()
        self.options = options or EndpointOptions()
        o = self.options
        self.config = ConfigMirror(o.inv_queue_depth)
        self.atc = Atc(o.atc_entries, o.atc_policy)
        self.regs: dict[str, int] = {}
        self.label = [0] * regs.BY_NAME["MARKER_LABEL"].count
        self._reset_registers()
        self.requester = Requester(dev, smmu, mem, self.trace, self.atc, self.config, self.regs,
                                   o.xlate_fail, o.slow_us, o.inflight)
        self.requester.on_release = self._progress_invalidations
        self.msix = MsixTable(self._send_msi, lambda: self.config.msix_enabled,
                              lambda: self.config.msix_function_mask)
        pasid_ok = lambda: self.config.pasid_enabled  # noqa: E731
        self.engine = DescriptorEngine(self.requester, pasid_ok, self.msix.signal)
        self.tg = TrafficGenerator(self.requester, pasid_ok)
        self._pending: list[_PendingInvalidation] = []
        self.clock: Callable[[], float] = time.monotonic   # tests substitute their own

    @property
    def rid(self) -> int:
        return self.requester.rid

    # -- QEMU-facing -------------------------------------------------------------------------

    def device_info(self, rid: int, pcie_off: int = 0, ats_off: int = 0, pasid_off: int = 0,
                    msix_off: int = 0) -> None:
        """The DEVICE message: requester ID (= StreamID on virt) and capability offsets."""
        self.requester.rid = rid
        self.config.set_caps(CapOffsets(pcie_off, ats_off, pasid_off, msix_off))
        self.smmu.attach_ats_device(rid, self)

    def cfg_write(self, offset: int, size: int, value: int) -> None:
        before_msix = (self.config.msix_enabled, self.config.msix_function_mask)
        if not self.config.write(offset, size, value):
            log.warning("endpoint %d: malformed config write off=%#x size=%d", self.dev, offset,
                        size)
            return
        self.trace.emit("cfg", dev=self.dev, off=offset, size=size, val=value,
                        **self.config.summary())
        if (self.config.msix_enabled, self.config.msix_function_mask) != before_msix:
            self.msix.unmasked()

    def mmio_read(self, region: int, offset: int, size: int) -> int:
        if region == regs.BAR_REGS:
            value = self._reg_read(offset, size)
        elif region == regs.BAR_MSIX:
            value = self.msix.mmio_read(offset, size)
        else:
            value = None
        if value is None:
            self._bad_mmio(region, offset, size, "read")
            value = 0
        self.trace.emit("mmio", dev=self.dev, region=region, off=offset, size=size, rw="r",
                        val=value)
        return value

    def mmio_write(self, region: int, offset: int, size: int, value: int) -> None:
        if size in (1, 2, 4, 8):
            value &= (1 << (8 * size)) - 1
        self.trace.emit("mmio", dev=self.dev, region=region, off=offset, size=size, rw="w",
                        val=value)
        if region == regs.BAR_REGS:
            ok = self._reg_write(offset, size, value)
        elif region == regs.BAR_MSIX:
            ok = self.msix.mmio_write(offset, size, value)
        else:
            ok = False
        if not ok:
            self._bad_mmio(region, offset, size, "write")

    def reset(self, kind: int = RESET_FLR) -> None:
        """FLR or system reset: config controls, engines, ATC, counters, MSI-X all back to
        their reset state. A function that was reset holds no translation, so invalidations
        it still owed are completed (unless completions are being dropped)."""
        if kind not in (RESET_SYSTEM, RESET_FLR):
            log.warning("endpoint %d: unknown reset kind %d, treated as FLR", self.dev, kind)
        self.config.reset()
        self.msix.reset()
        self._device_reset()

    def poll(self) -> None:
        """Idle-loop progress: delayed invalidation completions, then one generator burst."""
        self._progress_invalidations()
        # Posted writes reach memory in bounded time: those held since the last poll are
        # delivered now (after the invalidations due, so one acted on now still finds them in
        # flight); a guest reading the generator's window sees them land.
        self.requester.deliver_held()
        if self.tg.running:
            self.tg.step(self.regs, min(self.regs["TG_RATE"] or 1, TG_MAX_RATE))
            if not self.tg.running:
                self.regs["TG_CTRL"] &= ~regs.TgCtrl.RUN
                self.requester.deliver_held()
        self._progress_invalidations()

    # -- SMMU-facing -------------------------------------------------------------------------

    def ats_invalidate(self, inv: AtcInvalidation) -> None:
        """An ATS Invalidate Request: drop the entries now (or after `inv_late_ms`), complete
        once nothing in flight still uses them (PCIe ATS invalidation ordering) and any
        injected delay has passed."""
        self.regs["CNT_INV_REQ"] += 1
        if inv.sid != self.rid:
            log.warning("endpoint %d: invalidation for sid %s, this device is %d", self.dev,
                        inv.sid, self.rid)
        outstanding = len(self._pending) + 1
        if outstanding > self.config.inv_queue_depth:
            log.warning("endpoint %d: %d invalidations outstanding, queue depth is %d",
                        self.dev, outstanding, self.config.inv_queue_depth)
        now = self.clock()
        p = _PendingInvalidation(inv, now + self.options.inv_delay_ms / 1000.0,
                                 now + self.options.inv_late_ms / 1000.0)
        if not self.options.inv_late_ms:
            self._act(p)
        self._pending.append(p)
        self._progress_invalidations()

    def poll_invalidations(self) -> None:
        """Act on and complete the invalidations whose time has come (the backend calls this
        after every request it serves, before ticking the SMMU, so a completion due before the
        SMMU's timeout is always seen first)."""
        self._progress_invalidations()

    @property
    def busy(self) -> bool:
        """True while the device makes progress on its own (the backend then polls at once)."""
        return self.tg.running

    @property
    def pending_invalidations(self) -> int:
        return len(self._pending)

    # -- internals ---------------------------------------------------------------------------

    def _act(self, p: _PendingInvalidation) -> None:
        """Drop the entries the invalidation names; from now on the device cannot use them."""
        inv = p.inv
        if self.options.inv_ignore:
            dropped = []
        else:
            dropped = self.atc.invalidate(inv.ssid, inv.addr, None if inv.whole else inv.size,
                                          inv.global_)
        # The SMMU's invalidation id, so the trace correlates both sides.
        self.trace.emit("atc_inv_rx", dev=self.dev, sid=inv.sid, ssid=inv.ssid, addr=inv.addr,
                        size=inv.size, g=inv.global_, inv_id=inv.id,
                        dropped=[e.id for e in dropped])
        p.waiting = {e.id for e in dropped if e.id in self.requester.in_use}
        p.acted = True

    def _progress_invalidations(self) -> None:
        if not self._pending:
            return
        now = self.clock()
        for p in self._pending:
            if not p.acted and now >= p.act_at:
                self._act(p)
        if self.options.inv_drop:
            return
        if any(p.acted and p.waiting for p in self._pending):
            # The completion pushes the requests issued before it with the entries it
            # dropped (PCIe ATS invalidation ordering): they are delivered first.
            self.requester.deliver_held()
        in_use = self.requester.in_use
        still = []
        ready = []
        for p in self._pending:
            p.waiting = {i for i in p.waiting if i in in_use}
            (ready if p.acted and not p.waiting and now >= p.ready_at else still).append(p)
        self._pending = still
        for p in ready:
            self._complete(p)

    def _complete(self, p: _PendingInvalidation) -> None:
        self.regs["CNT_INV_CPL"] += 1
        self.trace.emit("atc_inv_cpl", dev=self.dev, inv_id=p.inv.id,
                        ignored=self.options.inv_ignore)
        # Only recorded on the invalidation: the SMMU's command queue polls for it.
        p.inv.complete()

    def _device_reset(self) -> None:
        """Engines stopped, ATC emptied (traced), registers and counters cleared."""
        self.tg.stop()
        self.requester.deliver_held()       # issued before the reset: already left the function
        for e in self.atc.entries():
            self.trace.emit("atc_evict", dev=self.dev, id=e.id)
        self.atc.clear()
        self._reset_registers()
        if not self.options.inv_drop:
            pending, self._pending = self._pending, []
            for p in pending:
                if not p.acted:
                    self._act(p)    # the ATC is empty now: it drops nothing
                self._complete(p)

    def _reset_registers(self) -> None:
        # Mutated in place: the requester and engines hold this very dict.
        self.regs.clear()
        for r in regs.REGISTERS:
            if r.count == 1:
                self.regs[r.name] = _RESET_VALUES.get(r.name, 0)
        self.label = [0] * regs.BY_NAME["MARKER_LABEL"].count

    def _bad_mmio(self, region: int, offset: int, size: int, rw: str) -> None:
        self.regs["CNT_BAD_MMIO"] += 1
        log.info("endpoint %d: %s of %d bytes at BAR%d+%#x decodes to nothing", self.dev, rw,
                 size, region, offset)

    def _constant(self, name: str) -> int | None:
        if name == "ID":
            return regs.ID_VALUE
        if name == "VERSION":
            return regs.VERSION_VALUE
        if name == "CAPS":
            return int(regs.Caps.DMA | regs.Caps.TG | regs.Caps.ATS | regs.Caps.PASID)
        if name == "ATC_SIZE":
            return self.atc.capacity
        return None

    def _reg_read(self, offset: int, size: int) -> int | None:
        d = regs.decode(offset, size)
        if d is None:
            return None
        if d.reg.access == "W":
            return 0
        const = self._constant(d.reg.name)
        if const is not None:
            full = const
        elif d.reg.count > 1:
            full = self.label[d.index]
        else:
            full = self.regs[d.reg.name]
        return (full >> d.shift) & ((1 << (8 * size)) - 1)

    def _reg_write(self, offset: int, size: int, value: int) -> bool:
        d = regs.decode(offset, size)
        if d is None:
            return False
        reg = d.reg
        if reg.access == "RO":
            return True  # architected: RO writes are ignored
        mask = ((1 << (8 * size)) - 1) << d.shift
        if reg.count > 1:
            self.label[d.index] = (self.label[d.index] & ~mask) | (value << d.shift)
            return True
        old = self.regs[reg.name]
        new = (old & ~mask) | (value << d.shift)
        if reg.access == "RW":
            self.regs[reg.name] = new
        self._side_effect(reg.name, old, new, d.shift + 8 * size == reg.width)
        return True

    def _side_effect(self, name: str, old: int, new: int, last_byte: bool) -> None:
        if name == "RESET" and new & 1:
            self._device_reset()
        elif name == "DMA_DOORBELL" and new & 1:
            self.regs["DMA_STATUS"] = 0
            self.engine.run(self.regs)
        elif name == "MARKER_VALUE" and last_byte:
            # A 64-bit write, or the upper half of a low-then-high pair, records the marker.
            self._marker(new)
        elif name == "TG_CTRL":
            self._tg_ctrl(old, new)

    def _tg_ctrl(self, old: int, new: int) -> None:
        run = regs.TgCtrl.RUN
        if new & run and not old & run:
            if not self.tg.start(self.regs):
                self.regs["TG_CTRL"] = new & ~run
        elif old & run and not new & run:
            self.tg.stop()
            self.requester.deliver_held()

    def _marker(self, value: int) -> None:
        raw = b"".join(w.to_bytes(4, "little") for w in self.label)
        label = raw.split(b"\0", 1)[0].decode("ascii", errors="replace")
        tag = self.regs["MARKER_TAG"]
        try:
            name = regs.MarkerTag(tag).trace_name
        except ValueError:
            log.warning("endpoint %d: marker with unknown tag %d", self.dev, tag)
            name = "unknown"
        self.trace.emit("marker", dev=self.dev, tag=name, value=value, label=label)
        self.label = [0] * len(self.label)

    def _send_msi(self, addr: int, data: int) -> None:
        """An MSI-X message is a 4-byte DMA write from this requester, translated by the SMMU
        like any untranslated write (it carries no PASID)."""
        payload = (data & 0xFFFFFFFF).to_bytes(MSI_DATA_BYTES, "little")
        r = self.requester.write(addr, payload, None, False, "msi", msi=True)
        if not r.ok:
            log.warning("endpoint %d: MSI write to %#x failed (%s)", self.dev, addr, r.err.name)

