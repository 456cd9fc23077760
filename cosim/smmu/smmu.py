"""The SMMUv3 device: programming interface and translation entry points (Arm IHI 0070).

MMIO accesses go through the register table in cosim/arch/registers.py (§6); writes with side
effects (CR0/CR0ACK, IRQ_CTRL/IRQ_CTRLACK, GBPA update, CMDQ_PROD, GERRORN) act here. Devices call
`translate` (untranslated DMA), `ats_translate` (ATS Translation Requests) and
`check_translated` (ATS Translated transactions, STE.EATS) on behalf of a StreamID: the
`TranslationAgent` side of cosim/translation_agent.py.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from cosim.arch.domain import Domain
from cosim.arch.driver_events import DRV_EVENT, DrvOp, DrvPhase, DrvTarget, ret_value
from cosim.arch.registers import (
    BY_NAME,
    CMDQ_PROD,
    CR0,
    CR2,
    EVTQ_CONS,
    EVTQ_PROD,
    GBPA,
    IRQ_CFG0,
    IRQ_CFG1,
    IRQ_CTRL,
    REGISTERS,
    Reg,
    lookup,
)
from cosim.memory import BusError, GuestMemory
from cosim.trace import NullTrace, TraceSink
from cosim.translation_agent import (
    Access,
    AtsCompletion,
    AtsDevice,
    AtsStatus,
    Permissions,
    TranslationResult,
)

from .ats import AtcTracker
from .caches import ConfigCache, Tlb
from .command_queue import CommandQueue
from .configuration import Configuration, configuration
from .event_queue import EventQueue, EventRecord, GlobalErrors
from .options import SmmuOptions
from .registers import build_id_registers
from .structure_fetch import StructureFetcher
from .translation import (
    ATS_FORBIDDEN,
    BYPASS,
    CONFIG_ERROR,
    OK,
    STE_ABORT,
    STE_BYPASS,
    TRANSLATION_FAULT,
    WALK_ABORT,
    Translation,
    Translator,
    bad_ats_treq,
)

log = logging.getLogger(__name__)

IRQ_EVENTQ, IRQ_PRIQ, IRQ_CMD_SYNC, IRQ_GERROR = 0, 1, 2, 3
IRQ_PULSE = 2   # the SPIs are edge-triggered: one call is one edge

# GERROR bit reporting an abort of each interrupt line's MSI write (§7.5).
MSI_ABORT_ERROR = {IRQ_EVENTQ: "MSI_EVENTQ_ABT_ERR", IRQ_PRIQ: "MSI_PRIQ_ABT_ERR",
                   IRQ_GERROR: "MSI_GERROR_ABT_ERR", IRQ_CMD_SYNC: "MSI_CMDQ_ABT_ERR"}

# Queue registers the guest may only write while the queue is disabled (§6.3.27, §6.3.30).
SMMU_OWNED_WHILE_ENABLED = {"CMDQ_CONS": "CMDQEN", "EVENTQ_PROD": "EVENTQEN",
                            "PRIQ_PROD": "PRIQEN"}

U64 = (1 << 64) - 1

# Translation outcome -> PCIe Translation Completion status (§3.9.1.2): UR where ATS is
# disabled for the stream (effective EATS 0b00, Config 0b100 or 0b000), CA for a
# configuration error or an external abort, Success (maybe granting nothing) otherwise.
ATS_STATUS = {
    OK: AtsStatus.SUCCESS, TRANSLATION_FAULT: AtsStatus.SUCCESS, BYPASS: AtsStatus.SUCCESS,
    STE_BYPASS: AtsStatus.UR, ATS_FORBIDDEN: AtsStatus.UR, STE_ABORT: AtsStatus.UR,
    CONFIG_ERROR: AtsStatus.CA, WALK_ABORT: AtsStatus.CA,
}


class SMMUv3:
    def __init__(self, mem: GuestMemory, irq: Callable[[int, int], None] | None = None,
                 trace: TraceSink | None = None, options: SmmuOptions | None = None,
                 strict: bool = False) -> None:
        self.mem = mem
        self.irq = irq or (lambda line, level: None)
        self.trace = trace if trace is not None else NullTrace()
        self.options = options or SmmuOptions()
        self.strict = strict      # tests: let internal errors propagate instead of logging
        self.clock: Callable[[], float] = time.monotonic
        self.ats_devices: dict[int, AtsDevice] = {}
        self.regs: dict[str, int] = {}
        self.gerror = GlobalErrors(self)
        self.evtq = EventQueue(self)
        self.cmdq = CommandQueue(self)
        self._ats_tlb = False
        self.translator = Translator(self)
        self.reset()

    # -- state ---------------------------------------------------------------------------
    def reset(self) -> None:
        """Reset values (§6.3): everything disabled, GBPA from options, caches empty."""
        opt = self.options
        self.regs = {r.name: 0 for r in REGISTERS}
        self.regs.update(build_id_registers(opt))
        # GBPA resets with SHCFG = 0b01 (use incoming) and ABORT IMPLEMENTATION DEFINED.
        self.regs["GBPA"] = GBPA.encode(SHCFG=1, ABORT=int(opt.gbpa_abort_at_reset))
        self.config_cache = ConfigCache(opt.caches, keep_invalid=opt.caches)
        self.tlb = Tlb(opt.caches)
        self.fetcher = StructureFetcher(self.mem, opt.strict, opt.strict_seed)
        self.atc = AtcTracker()
        self.cmdq.reset()

    def cr0ack(self, field: str) -> bool:
        return bool(CR0.get(self.regs["CR0ACK"], field))

    def irq_enabled(self, field: str) -> bool:
        return bool(IRQ_CTRL.get(self.regs["IRQ_CTRLACK"], field))

    def pulse_irq(self, line: int) -> None:
        self.trace.emit("irq", line=line, level=IRQ_PULSE)
        self.irq(line, IRQ_PULSE)

    def signal_irq(self, line: int, cfg_prefix: str, on_abort: str | None = None) -> None:
        """Raise an interrupt: MSI if configured (§3.18.2), else the wired SPI."""
        addr = IRQ_CFG0.get(self.regs[cfg_prefix + "0"], "ADDR") << IRQ_CFG0["ADDR"].word_lo
        if self.options.msi and addr:
            data = IRQ_CFG1.get(self.regs[cfg_prefix + "1"], "DATA")
            try:
                self.mem.write(addr, data.to_bytes(4, "little"), msi=True)
            except BusError:
                self.gerror.raise_error(on_abort or MSI_ABORT_ERROR[line])
            return
        if self.options.wired_irqs:
            self.pulse_irq(line)

    # -- MMIO ----------------------------------------------------------------------------
    def mmio_read(self, offset: int, size: int) -> int:
        try:
            val = self._read(offset, size)
        except Exception:
            if self.strict:
                raise
            log.exception("mmio_read(%#x, %d) failed", offset, size)
            val = 0
        self.trace.emit("mmio", dev=0, off=offset, size=size, rw="r", val=val)
        return val

    def mmio_write(self, offset: int, size: int, value: int) -> None:
        self.trace.emit("mmio", dev=0, off=offset, size=size, rw="w", val=value)
        try:
            self._write(offset, size, value)
        except Exception:
            if self.strict:
                raise
            log.exception("mmio_write(%#x, %d, %#x) failed", offset, size, value)

    def _read(self, offset: int, size: int) -> int:
        if size not in (1, 2, 4, 8):
            log.warning("mmio read of unsupported size %d at %#x", size, offset)
            return 0
        out = 0
        pos = 0
        while pos < size:
            hit = lookup(offset + pos)
            if hit is None:
                pos += 1    # unimplemented: RAZ (§6.2 reserved offsets are RES0)
                continue
            reg, inner = hit
            chunk = min(size - pos, reg.size - inner)
            val = (self.regs[reg.name] >> (8 * inner)) & ((1 << (8 * chunk)) - 1)
            out |= val << (8 * pos)
            pos += chunk
        return out

    def _write(self, offset: int, size: int, value: int) -> None:
        if size not in (1, 2, 4, 8):
            log.warning("mmio write of unsupported size %d at %#x", size, offset)
            return
        value &= (1 << (8 * size)) - 1
        pos = 0
        while pos < size:
            hit = lookup(offset + pos)
            if hit is None:
                log.debug("write to unimplemented offset %#x ignored", offset + pos)
                pos += 1
                continue
            reg, inner = hit
            chunk = min(size - pos, reg.size - inner)
            part = (value >> (8 * pos)) & ((1 << (8 * chunk)) - 1)
            keep = self.regs[reg.name] & ~(((1 << (8 * chunk)) - 1) << (8 * inner))
            self._write_reg(reg, keep | (part << (8 * inner)))
            if reg.name == "DRV_EVENT" and inner + chunk == reg.size:
                # A 64-bit register may be written as two 32-bit halves (§6.2); the write
                # of the upper half completes the word.
                self._driver_event(self.regs["DRV_EVENT"])
            pos += chunk

    def _write_reg(self, reg: Reg, value: int) -> None:
        name = reg.name
        r = self.regs
        if not reg.writable:
            log.debug("write to read-only %s ignored", name)
            return
        value &= reg.layout.defined_mask()
        if name == "CR0":
            was_on = self.cr0ack("CMDQEN")
            r["CR0"] = value
            # Enables take effect at once, and CR0ACK reports them (§6.3.10).
            r["CR0ACK"] = value
            if was_on and not self.cr0ack("CMDQEN"):
                self.cmdq.disabled()
            self.cmdq.kick()
            return
        if name == "IRQ_CTRL":
            r["IRQ_CTRL"] = value
            r["IRQ_CTRLACK"] = value
            return
        if name == "GBPA":
            # §6.3.9: only a write with UPDATE=1 changes GBPA; it completes at once.
            if GBPA.get(value, "UPDATE"):
                r["GBPA"] = GBPA.set(value, "UPDATE", 0)
            return
        if name == "CR2" and not (self.options.ats and self.options.ats_rec_err):
            r["CR2"] = CR2.set(value, "REC_CFG_ATS", 0)     # RES0 without IDR0.ATSRECERR
            return
        if name == "GERRORN":
            r["GERRORN"] = value
            self.cmdq.kick()    # an acknowledged CMDQ_ERR lets the queue restart (§7.1)
            return
        owner = SMMU_OWNED_WHILE_ENABLED.get(name)
        if owner is not None and self.cr0ack(owner):
            log.warning("write to %s while %s=1 ignored", name, owner)
            return
        r[name] = value
        if name == "CMDQ_PROD":
            r[name] = CMDQ_PROD.set(0, "WR", value)
            self.cmdq.kick()
        elif name in ("EVENTQ_CONS", "PRIQ_CONS"):
            r[name] = EVTQ_CONS.encode(RD=EVTQ_CONS.get(value, "RD"),
                                       OVACKFLG=EVTQ_CONS.get(value, "OVACKFLG"))
        elif name in ("EVENTQ_PROD", "PRIQ_PROD"):
            r[name] = EVTQ_PROD.encode(WR=EVTQ_PROD.get(value, "WR"),
                                       OVFLG=EVTQ_PROD.get(value, "OVFLG"))

    def _driver_event(self, word: int) -> None:
        """The guest's driver probes (guest-kmod/cosim_drv_probe.c) report an attach step:
        trace it with the domain the stream's in-memory configuration denotes right now."""
        f = DRV_EVENT.decode(word)
        try:
            op, target = DrvOp(f["OP"]), DrvTarget(f["TARGET"])
        except ValueError:
            log.warning("DRV_EVENT write %#x with an unknown operation ignored", word)
            return
        if op is DrvOp.ARMED:
            try:
                armed = DrvOp(f["ARMED_OP"])
            except ValueError:
                log.warning("DRV_EVENT armed-probe write %#x ignored", word)
                return
            self.trace.emit("drv_armed", op=armed.trace_name, target=target.trace_name)
            return
        phase = DrvPhase(f["PHASE"])
        if op is DrvOp.DOMAIN_INV:
            self.trace.emit("drv_inv", phase=phase.trace_name,
                            stage="s2" if target is DrvTarget.STAGE2 else "s1", tag=f["SSID"],
                            iova=self.regs["DRV_ARG0"], size=self.regs["DRV_ARG1"])
            return
        sid = f["SID"]
        ssid = f["SSID"] if f["SSV"] else None
        cfg = configuration(self.mem, self.regs["STRTAB_BASE"], self.regs["STRTAB_BASE_CFG"],
                            self.options, sid, ssid) if self.cr0ack("SMMUEN") \
            else Configuration(None)
        self.trace.emit("drv", op=op.trace_name, phase=phase.trace_name,
                        target=target.trace_name, sid=sid, ssid=ssid,
                        ret=ret_value(f["RET"]) if phase is DrvPhase.END else None, dom=cfg.dom,
                        ste=cfg.ste, cd=cfg.cd, cd_addr=cfg.cd_addr)

    # -- progress ------------------------------------------------------------------------
    def tick(self, now: float | None = None) -> None:
        """Asynchronous progress (a CMD_SYNC waiting on ATC invalidations). `now`: the time,
        read from `clock`, up to which the devices have been let deliver their completions
        (the backend reads it before polling the endpoints); ATC invalidation timeouts are
        judged at that time, so one completed in time is never missed. Default: the clock."""
        try:
            self.cmdq.tick(self.clock() if now is None else now)
        except Exception:
            if self.strict:
                raise
            log.exception("tick failed")

    def busy(self) -> bool:
        """True while the SMMU has work of its own to do: commands to consume or a CMD_SYNC
        to complete (the backend then steps at once instead of waiting for a request)."""
        return self.cmdq.pending()

    def attach_ats_device(self, sid: int, device: AtsDevice) -> None:
        self.ats_devices[sid] = device

    # -- translation entry points --------------------------------------------------------
    def translate(self, sid: int, ssid: int | None, iova: int,
                  access: Access) -> TranslationResult:
        """An untranslated transaction (§3.3): faults are recorded and return ok=False."""
        try:
            t = self.translator.resolve(sid, ssid, iova & U64, access)
        except Exception:
            if self.strict:
                raise
            log.exception("translate(%#x, %r, %#x) failed", sid, ssid, iova)
            t = Translation(False, sid=sid, ssid=ssid, iova=iova, outcome=CONFIG_ERROR)
        self.trace.emit("xlate", sid=sid, ssid=ssid, iova=iova, acc=access.code, ok=t.ok,
                        pa=t.pa, size=t.size, perm=t.perm, dom=t.dom, ste=t.ste, cd=t.cd,
                        tlb=t.tlb, fault=t.fault)
        return t.result(access)

    def ats_translate(self, sid: int, ssid: int | None, iova: int,
                      access: Access) -> AtsCompletion:
        """An ATS Translation Request (§3.9.1): PCIe completion status and translation."""
        self._ats_tlb = False
        try:
            c = self._ats(sid, ssid, iova & U64, access)
        except Exception:
            if self.strict:
                raise
            log.exception("ats_translate(%#x, %r, %#x) failed", sid, ssid, iova)
            c = AtsCompletion(AtsStatus.CA)
        self.trace.emit("ats", sid=sid, ssid=ssid, iova=iova, acc=access.code,
                        status=c.status.value, pa=c.pa, size=c.size, perm=c.perm.code,
                        dom=c.dom, tlb=self._ats_tlb)
        return c

    def _ats(self, sid: int, ssid: int | None, iova: int, access: Access) -> AtsCompletion:
        if not self.options.ats:
            return AtsCompletion(AtsStatus.UR)      # no ATS interface (IDR0.ATS == 0)
        if not self.cr0ack("SMMUEN"):
            # §3.9.1.2: SMMUEN == 0: UR with F_BAD_ATS_TREQ (§7.3.6).
            self.evtq.record(bad_ats_treq(sid, ssid, iova, access))
            return AtsCompletion(AtsStatus.UR)
        t = self.translator.resolve(sid, ssid, iova, access, ats=True)
        self._ats_tlb = t.tlb    # traced: check e judges completions served from the TLB too
        status = ATS_STATUS.get(t.outcome, AtsStatus.CA)
        if status is not AtsStatus.SUCCESS:
            # A failed completion carries no translation, so no domain gave one; an STE
            # bypass still names the bypass domain that refused ATS for the stream.
            dom: Domain | None = t.dom if t.outcome == STE_BYPASS else None
            return AtsCompletion(status, dom=dom)
        if t.outcome == TRANSLATION_FAULT:
            # §3.9.1: a translation fault is a successful completion granting no access.
            return AtsCompletion(AtsStatus.SUCCESS, pa=0, size=4096,
                                 perm=Permissions(priv=access.priv), dom=t.dom)
        return AtsCompletion(AtsStatus.SUCCESS, pa=t.pa, size=max(t.size, 4096),
                             perm=Permissions.from_code(t.perm, access.priv), dom=t.dom)

    def check_translated(self, sid: int, ssid: int | None, addr: int = 0,
                         write: bool = False) -> bool:
        """May an ATS Translated transaction from `sid` to PA `addr` pass (§3.9.1.3)?"""
        try:
            return self._check_translated(sid, addr & U64, write)
        except Exception:
            if self.strict:
                raise
            log.exception("check_translated(%#x, %r) failed", sid, ssid)
            return False

    def _check_translated(self, sid: int, addr: int, write: bool) -> bool:
        # The SubstreamID is not looked at: without IDR3.PASIDTT a Translated transaction is
        # treated as SSV == 0 (§3.9.1.3).
        if not self.options.ats or not self.cr0ack("SMMUEN"):
            # §3.9.1.3: SMMUEN == 0 means F_TRANSL_FORBIDDEN and abort, whatever GBPA says
            # (§7.3.8 permits the record then); without IDR0.ATS no Translated traffic
            # passes (§5.2 EATS).
            self.evtq.record(EventRecord("F_TRANSL_FORBIDDEN", sid, None,
                                         {"InputAddr": addr, "RnW": int(not write)}))
            return False
        if self.cr0ack("ATSCHK") and not self.translator.check_translated(sid, addr, write):
            return False
        # §3.9.1.1: a PA above IDR5.OAS is, by this implementation's choice, aborted without
        # an event (the other permitted behaviour truncates it).
        return not addr >> self.options.oas_bits

    # -- helpers for tests and tools -----------------------------------------------------
    def reg(self, name: str) -> int:
        return self.regs[BY_NAME[name].name]
