"""Event records, the Event queue and global errors (Arm IHI 0070 §7).

The SMMU writes 32-byte event records (layout and codes: cosim/arch/events.py) into the
guest's Event queue (§7.2, §7.3), flags overflow through EVENTQ_PROD.OVFLG (§7.4), signals the
queue interrupt, and reports global errors by toggling SMMU_GERROR bits (§7.5).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cosim.arch.events import EVENT_BYTES, EVENT_CODES, EVENT_RECORD
from cosim.arch.registers import EVTQ_CONS, EVTQ_PROD, GERROR, Q_BASE
from cosim.memory import BusError

if TYPE_CHECKING:
    from .smmu import SMMUv3

log = logging.getLogger(__name__)


@dataclass
class EventRecord:
    """One event as raised by the translation or command logic, before encoding."""

    name: str
    sid: int
    ssid: int | None = None
    fields: dict[str, int] = field(default_factory=dict)
    record: bool = True   # False: the fault is not recorded (CD.R / STE.S2R = 0, §3.12)

    @property
    def code(self) -> int:
        return EVENT_CODES[self.name]

    def encode(self) -> int:
        v = EVENT_RECORD.encode(EventType=self.code, StreamID=self.sid & 0xFFFF_FFFF)
        if self.ssid is not None:
            v = EVENT_RECORD.set(v, "SSV", 1)
            v = EVENT_RECORD.set(v, "SubstreamID", self.ssid)
        for k, val in self.fields.items():
            v = EVENT_RECORD.set(v, k, val)
        return v

    @property
    def addr(self) -> int | None:
        for k in ("InputAddr", "FetchAddr"):
            if k in self.fields:
                return self.fields[k] << EVENT_RECORD[k].word_lo
        return None


class EventQueue:
    """The producer side of the Event queue (§3.5.2, §7.4); the guest owns CONS."""

    def __init__(self, dev: SMMUv3) -> None:
        self.dev = dev
        self.recorded = 0
        self.lost = 0

    def _geometry(self) -> tuple[int, int]:
        base = self.dev.regs["EVENTQ_BASE"]
        log2 = min(Q_BASE.get(base, "LOG2SIZE"), self.dev.options.evtq_log2)
        return Q_BASE.get(base, "ADDR") << Q_BASE["ADDR"].word_lo, log2

    def record(self, ev: EventRecord) -> None:
        """Write `ev` to the queue if enabled (events are discarded while EVENTQEN=0, §7.2)."""
        dev = self.dev
        raw = ev.encode()
        dev.trace.emit("event", name=ev.name, code=ev.code, sid=ev.sid, ssid=ev.ssid,
                       addr=ev.addr, raw=EVENT_RECORD.to_words(raw))
        if not dev.cr0ack("EVENTQEN"):
            self.lost += 1
            return
        base, log2 = self._geometry()
        wrap_bit = 1 << log2
        pmask = (wrap_bit << 1) - 1
        prod_reg = dev.regs["EVENTQ_PROD"]
        cons_reg = dev.regs["EVENTQ_CONS"]
        prod = EVTQ_PROD.get(prod_reg, "WR") & pmask
        cons = EVTQ_CONS.get(cons_reg, "RD") & pmask
        empty = prod == cons
        full = (prod ^ cons) == wrap_bit
        if full:
            # §7.4: the record is lost; OVFLG is toggled only if no overflow is outstanding.
            self.lost += 1
            if EVTQ_PROD.get(prod_reg, "OVFLG") == EVTQ_CONS.get(cons_reg, "OVACKFLG"):
                dev.regs["EVENTQ_PROD"] = EVTQ_PROD.set(prod_reg, "OVFLG",
                                                        EVTQ_PROD.get(prod_reg, "OVFLG") ^ 1)
                self._interrupt()
            return
        addr = base + (prod & (wrap_bit - 1)) * EVENT_BYTES
        try:
            dev.mem.write(addr, EVENT_RECORD.to_bytes(raw))
        except BusError as e:
            # §7.5: an abort writing the Event queue is a global error; the record is lost.
            log.warning("event queue write abort at %#x: %s", addr, e)
            self.lost += 1
            dev.gerror.raise_error("EVENTQ_ABT_ERR")
            return
        prod = (prod + 1) & pmask
        dev.regs["EVENTQ_PROD"] = EVTQ_PROD.set(prod_reg, "WR", prod)
        self.recorded += 1
        if empty:
            # The queue went from empty to non-empty: the architected interrupt trigger.
            self._interrupt()

    def _interrupt(self) -> None:
        if self.dev.irq_enabled("EVENTQ_IRQEN"):
            self.dev.signal_irq(0, "EVENTQ_IRQ_CFG")


class GlobalErrors:
    """SMMU_GERROR / SMMU_GERRORN (§7.5): an error is active while its bits differ."""

    def __init__(self, dev: SMMUv3) -> None:
        self.dev = dev

    def active(self, name: str) -> bool:
        r = self.dev.regs
        return bool(GERROR.get(r["GERROR"] ^ r["GERRORN"], name))

    def raise_error(self, name: str) -> None:
        """Toggle `name` in GERROR unless already active, and interrupt (§7.5)."""
        if self.active(name):
            return
        r = self.dev.regs
        r["GERROR"] = GERROR.set(r["GERROR"], name, GERROR.get(r["GERROR"], name) ^ 1)
        self.dev.trace.emit("gerror", bits=r["GERROR"])
        if self.dev.irq_enabled("GERROR_IRQEN"):
            self.dev.signal_irq(3, "GERROR_IRQ_CFG", on_abort="MSI_GERROR_ABT_ERR")


IrqFn = Callable[[int, int], None]
