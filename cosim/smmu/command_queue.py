"""Command queue: command formats, decode and execution (Arm IHI 0070 §4, §7.1).

Every command is 16 bytes; its fields are declared once in `CMD` and each opcode lists the
fields it uses (§4.1.2 onwards). The consumer runs when the driver moves CMDQ_PROD (and when
CR0.CMDQEN turns on). An illegal command stops the queue with CMDQ_CONS.ERR = CERROR_ILL and
GERROR.CMDQ_ERR until the driver acknowledges through GERRORN (§7.1). A CMD_SYNC after ATC_INV
commands waits for their completion (§4.7.3): the endpoint only records a completion, and
the waiting CMD_SYNC re-checks its invalidations whenever the SMMU is ticked (the backend
ticks after every request it serves and in its idle loop); one that times out fails with
CERROR_ATC_INV_SYNC.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cosim.memory import BusError
from cosim.translation_agent import AtcInvalidation

from .ats import ATC_SIZE_MAX, atc_range
from .bitfield import Layout
from .registers import CMDQ_CONS, CMDQ_PROD, Q_BASE

if TYPE_CHECKING:
    from .smmu import SMMUv3

log = logging.getLogger(__name__)

CMD_BYTES = 16

# §4.1.2 onwards: command fields (128 bits); each opcode uses the subset listed in COMMANDS.
CMD = Layout("CMD", 128, {
    "Opcode": (7, 0), "Global": 9, "SSec": 10, "SSV": 11, "SubstreamID": (31, 12),
    "StreamID": (63, 32),
    "NUM": (16, 12), "SCALE": (24, 20), "VMID": (47, 32), "ASID": (63, 48),
    "CS": (13, 12), "MSH": (23, 22), "MSIAttr": (27, 24), "MSIData": (63, 32),
    "Resp": (13, 12),
    "Leaf": 64, "Range": (68, 64), "Size": (69, 64), "PrefetchSize": (68, 64),
    "TTL": (73, 72), "TG": (75, 74), "Address": (127, 76), "IPA": (115, 76),
    "MSIAddress": (115, 66), "PRGI": (72, 64), "PriResp": (77, 76), "STAG": (79, 64),
})


@dataclass(frozen=True)
class CommandSpec:
    name: str
    fields: tuple[str, ...]


# §4: opcodes this model implements and the fields each one carries.
COMMANDS: dict[int, CommandSpec] = {
    0x01: CommandSpec("PREFETCH_CFG", ("SSV", "SubstreamID", "StreamID")),
    0x02: CommandSpec("PREFETCH_ADDR", ("SSV", "SubstreamID", "StreamID", "PrefetchSize",
                                        "Address")),
    0x03: CommandSpec("CFGI_STE", ("StreamID", "Leaf")),
    0x04: CommandSpec("CFGI_STE_RANGE", ("StreamID", "Range")),
    0x05: CommandSpec("CFGI_CD", ("SubstreamID", "StreamID", "Leaf")),
    0x06: CommandSpec("CFGI_CD_ALL", ("StreamID",)),
    0x10: CommandSpec("TLBI_NH_ALL", ("VMID",)),
    0x11: CommandSpec("TLBI_NH_ASID", ("VMID", "ASID")),
    0x12: CommandSpec("TLBI_NH_VA", ("NUM", "SCALE", "VMID", "ASID", "Leaf", "TTL", "TG",
                                     "Address")),
    0x13: CommandSpec("TLBI_NH_VAA", ("NUM", "SCALE", "VMID", "Leaf", "TTL", "TG", "Address")),
    0x20: CommandSpec("TLBI_EL2_ALL", ()),
    0x21: CommandSpec("TLBI_EL2_ASID", ("ASID",)),
    0x22: CommandSpec("TLBI_EL2_VA", ("NUM", "SCALE", "ASID", "Leaf", "TTL", "TG", "Address")),
    0x23: CommandSpec("TLBI_EL2_VAA", ("NUM", "SCALE", "Leaf", "TTL", "TG", "Address")),
    0x28: CommandSpec("TLBI_S12_VMALL", ("VMID",)),
    0x2A: CommandSpec("TLBI_S2_IPA", ("NUM", "SCALE", "VMID", "Leaf", "TTL", "TG", "IPA")),
    0x30: CommandSpec("TLBI_NSNH_ALL", ()),
    0x40: CommandSpec("ATC_INV", ("Global", "SSV", "SubstreamID", "StreamID", "Size",
                                  "Address")),
    0x41: CommandSpec("PRI_RESP", ("SSV", "SubstreamID", "StreamID", "PRGI", "PriResp")),
    0x44: CommandSpec("RESUME", ("Resp", "StreamID", "STAG")),
    0x46: CommandSpec("CMD_SYNC", ("CS", "MSH", "MSIAttr", "MSIData", "MSIAddress")),
}
OPCODES = {spec.name: op for op, spec in COMMANDS.items()}

# CMDQ_CONS.ERR codes (§7.1).
CERROR_NONE, CERROR_ILL, CERROR_ABT, CERROR_ATC_INV_SYNC = 0, 1, 2, 3
CERROR_NAMES = {CERROR_ILL: "CERROR_ILL", CERROR_ABT: "CERROR_ABT",
                CERROR_ATC_INV_SYNC: "CERROR_ATC_INV_SYNC"}

# CMD_SYNC.CS (§4.7.3).
CS_NONE, CS_IRQ, CS_SEV = 0, 1, 2
CS_NAMES = {CS_NONE: "NONE", CS_IRQ: "IRQ", CS_SEV: "SEV"}

# TLBI range encoding (§4.4.1): TG selects the granule the range counts in; 0 = not a range.
TG_GRANULE = {1: 4096, 2: 16384, 3: 65536}
CFGI_ALL_RANGE = 31


def encode_command(name: str, **fields: int) -> list[int]:
    """Build a command's two words from named fields (test driver and tools)."""
    op = OPCODES[name]
    spec = COMMANDS[op]
    for k in fields:
        if k not in spec.fields:
            raise ValueError(f"{name} has no field {k}")
    return CMD.to_words(CMD.encode(Opcode=op, **fields))


def decode_command(words: list[int]) -> tuple[str | None, dict[str, int]]:
    raw = CMD.from_words(words)
    spec = COMMANDS.get(CMD.get(raw, "Opcode"))
    if spec is None:
        return None, {}
    return spec.name, {k: CMD.get(raw, k) for k in spec.fields}


def tlbi_range(f: dict[str, int], addr_field: str, range_inv: bool) -> tuple[int, int]:
    """[lo, hi) covered by a TLBI_*_VA / TLBI_S2_IPA (§4.4.1: NUM/SCALE/TG range form)."""
    addr = f[addr_field] << 12
    granule = TG_GRANULE.get(f.get("TG", 0))
    if range_inv and granule is not None:
        span = (f["NUM"] + 1) << (5 * f["SCALE"] + 1)
        return addr, addr + span * granule
    # Non-range: every entry containing the address; the TTL hint may only narrow the
    # levels examined, so ignoring it never under-invalidates.
    return addr, addr + 1


class CommandQueue:
    """Consumer side of the command queue; the guest owns PROD, the SMMU owns CONS."""

    def __init__(self, dev: SMMUv3) -> None:
        self.dev = dev
        self.waiting_sync: dict | None = None     # CMD_SYNC blocked on ATC invalidations
        self.executed = 0

    # -- geometry ------------------------------------------------------------------------
    def _geometry(self) -> tuple[int, int]:
        base = self.dev.regs["CMDQ_BASE"]
        log2 = min(Q_BASE.get(base, "LOG2SIZE"), self.dev.options.cmdq_log2)
        return Q_BASE.get(base, "ADDR") << 5, log2

    def stalled(self) -> bool:
        """The queue stops while a command error is unacknowledged (§7.1)."""
        return self.dev.gerror.active("CMDQ_ERR")

    def _set_error(self, code: int) -> None:
        r = self.dev.regs
        r["CMDQ_CONS"] = CMDQ_CONS.set(r["CMDQ_CONS"], "ERR", code)
        log.warning("command queue error %s at CONS=%#x", CERROR_NAMES.get(code, code),
                    CMDQ_CONS.get(r["CMDQ_CONS"], "RD"))
        self.dev.gerror.raise_error("CMDQ_ERR")

    # -- consumer loop -------------------------------------------------------------------
    def run(self) -> None:
        """Consume commands until empty, stalled on an error, or blocked on a CMD_SYNC."""
        dev = self.dev
        while dev.cr0ack("CMDQEN") and not self.stalled():
            base, log2 = self._geometry()
            wrap = 1 << log2
            pmask = (wrap << 1) - 1
            prod = CMDQ_PROD.get(dev.regs["CMDQ_PROD"], "WR") & pmask
            cons = CMDQ_CONS.get(dev.regs["CMDQ_CONS"], "RD") & pmask
            if self.waiting_sync is not None:
                if not self._progress_sync():
                    return
                continue
            if prod == cons:
                return
            idx = cons & (wrap - 1)
            addr = base + idx * CMD_BYTES
            try:
                data = dev.mem.read(addr, CMD_BYTES)
            except BusError:
                # §7.1: an abort reading a command is CERROR_ABT; CONS stays at the command.
                self._set_error(CERROR_ABT)
                return
            words = [int.from_bytes(data[0:8], "little"), int.from_bytes(data[8:16], "little")]
            done = self._execute(idx, words)
            if done is None:
                if self.waiting_sync is not None:
                    continue      # a CMD_SYNC waiting on ATC invalidations: re-check it
                return            # error: CONS stays at this command
            self._advance(cons, pmask)

    def _advance(self, cons: int, pmask: int) -> None:
        r = self.dev.regs
        r["CMDQ_CONS"] = CMDQ_CONS.set(r["CMDQ_CONS"], "RD", (cons + 1) & pmask)
        self.executed += 1

    def _cons(self) -> tuple[int, int]:
        _, log2 = self._geometry()
        pmask = (2 << log2) - 1
        return CMDQ_CONS.get(self.dev.regs["CMDQ_CONS"], "RD") & pmask, pmask

    # -- execution -----------------------------------------------------------------------
    def _execute(self, idx: int, words: list[int]) -> bool | None:
        """Run one command. True: advance CONS; None: the queue stops at this command."""
        dev = self.dev
        opt = dev.options
        name, f = decode_command(words)
        dev.trace.emit("cmd", idx=idx, op=name or f"UNKNOWN_{words[0] & 0xFF:#x}", f=f,
                       raw=words)
        illegal = self._illegal(name, f)
        if illegal:
            log.warning("illegal command at index %d: %s", idx, illegal)
            self._set_error(CERROR_ILL)
            return None
        assert name is not None
        caches = dev.config_cache
        tlb = dev.tlb
        if name in ("PREFETCH_CFG", "PREFETCH_ADDR", "RESUME", "PRI_RESP"):
            # Prefetch is a hint; RESUME/PRI_RESP have no stalled transaction or page
            # request outstanding in this model (no stall, no PRI queue traffic).
            return True
        if name == "CFGI_STE":
            caches.inv_ste(f["StreamID"])
            dev.trace.emit("cfgi", op=name, sid=f["StreamID"])
        elif name == "CFGI_STE_RANGE":
            if f["Range"] == CFGI_ALL_RANGE:
                caches.inv_all()
                dev.trace.emit("cfgi", op="CFGI_ALL", range=f["Range"])
            else:
                caches.inv_ste_range(f["StreamID"], f["Range"])
                dev.trace.emit("cfgi", op=name, sid=f["StreamID"], range=f["Range"])
        elif name == "CFGI_CD":
            caches.inv_cd(f["StreamID"], f["SubstreamID"])
            dev.trace.emit("cfgi", op=name, sid=f["StreamID"], ssid=f["SubstreamID"])
        elif name == "CFGI_CD_ALL":
            caches.inv_cd_all(f["StreamID"])
            dev.trace.emit("cfgi", op=name, sid=f["StreamID"])
        elif name == "TLBI_NH_ALL":
            n = tlb.nh_all(f["VMID"])
            dev.trace.emit("tlbi", op=name, vmid=f["VMID"], n=n)
        elif name == "TLBI_NH_ASID":
            n = tlb.nh_asid(f["VMID"], f["ASID"])
            dev.trace.emit("tlbi", op=name, vmid=f["VMID"], asid=f["ASID"], n=n)
        elif name in ("TLBI_NH_VA", "TLBI_NH_VAA"):
            lo, hi = tlbi_range(f, "Address", opt.range_inv)
            asid = f.get("ASID") if name == "TLBI_NH_VA" else None
            n = tlb.nh_va(f["VMID"], asid, lo, hi)
            dev.trace.emit("tlbi", op=name, vmid=f["VMID"], asid=asid, addr=lo, size=hi - lo,
                           leaf=f["Leaf"], ttl=f["TTL"], n=n)
        elif name.startswith("TLBI_EL2"):
            n = tlb.el2_all()
            dev.trace.emit("tlbi", op=name, n=n)
        elif name == "TLBI_S12_VMALL":
            n = tlb.s12_vmall(f["VMID"])
            dev.trace.emit("tlbi", op=name, vmid=f["VMID"], n=n)
        elif name == "TLBI_S2_IPA":
            lo, hi = tlbi_range(f, "IPA", opt.range_inv)
            n = tlb.s2_ipa(f["VMID"], lo, hi)
            dev.trace.emit("tlbi", op=name, vmid=f["VMID"], addr=lo, size=hi - lo,
                           leaf=f["Leaf"], ttl=f["TTL"], n=n)
        elif name == "TLBI_NSNH_ALL":
            n = tlb.nsnh_all()
            dev.trace.emit("tlbi", op=name, n=n)
        elif name == "ATC_INV":
            self._atc_inv(f)
        elif name == "CMD_SYNC":
            return self._sync(idx, f)
        return True

    def _illegal(self, name: str | None, f: dict[str, int]) -> str | None:
        """Why a command is CERROR_ILL (§4.1.3, §7.1), or None."""
        opt = self.dev.options
        if name is None:
            return "unknown opcode"
        if name in ("PREFETCH_CFG", "CFGI_CD") and f.get("SSV", 1) and \
                f.get("SubstreamID", 0) >> opt.ssid_bits:
            return "SubstreamID beyond IDR1.SSIDSIZE"
        if name == "CFGI_CD" and f["SubstreamID"] >> opt.ssid_bits:
            return "SubstreamID beyond IDR1.SSIDSIZE"
        if name.startswith("TLBI_EL2") and not opt.hyp:
            return "TLBI_EL2_* without IDR0.HYP"
        if name in ("TLBI_S12_VMALL", "TLBI_S2_IPA") and not opt.stage2:
            return "stage 2 TLBI without IDR0.S2P"
        if name.startswith("TLBI_NH") and not opt.stage1:
            return "stage 1 TLBI without IDR0.S1P"
        if name == "ATC_INV":
            if not opt.ats:
                return "ATC_INV without IDR0.ATS"
            if f["Size"] > ATC_SIZE_MAX:
                return f"ATC_INV Size {f['Size']} > {ATC_SIZE_MAX}"
        if name == "PRI_RESP" and not opt.pri:
            return "PRI_RESP without IDR0.PRI"
        if name == "CMD_SYNC" and f["CS"] not in CS_NAMES:
            return f"reserved CMD_SYNC.CS {f['CS']}"
        return None

    # -- ATC invalidation (§4.5.1) ---------------------------------------------------------
    def _atc_inv(self, f: dict[str, int]) -> None:
        dev = self.dev
        sid = f["StreamID"]
        ssid = f["SubstreamID"] if f["SSV"] else None
        addr, size = atc_range(f["Address"] << 12, f["Size"])
        tracker = dev.atc
        inv = AtcInvalidation(sid, ssid, addr, size, bool(f["Global"]), tracker.new_id())
        dev.trace.emit("atc_inv", sid=sid, ssid=ssid, addr=addr, size=size, g=inv.global_,
                       id=inv.id)
        device = dev.ats_devices.get(sid)
        if device is None:
            return      # no endpoint behind this StreamID holds an ATC: nothing to wait for
        tracker.issued(inv, dev.clock())
        try:
            device.ats_invalidate(inv)
        except Exception:   # noqa: BLE001 - an endpoint bug must not kill the SMMU
            log.exception("endpoint ats_invalidate failed for sid %#x", sid)

    # -- CMD_SYNC (§4.7.3) -----------------------------------------------------------------
    def _sync(self, idx: int, f: dict[str, int]) -> bool | None:
        outstanding = self.dev.atc.outstanding()
        if outstanding:
            self.waiting_sync = {"idx": idx, "f": f, "ids": [o.inv.id for o in outstanding]}
            self.dev.trace.emit("sync", idx=idx, cs=CS_NAMES[f["CS"]], state="wait")
            return None
        self._signal_sync(idx, f)
        return True

    def _progress_sync(self) -> bool:
        """Re-check the blocked CMD_SYNC; True once it completed (and CONS moved on)."""
        dev = self.dev
        ws = self.waiting_sync
        assert ws is not None
        waiting = [o for o in dev.atc.outstanding() if o.inv.id in ws["ids"]]
        if waiting:
            expired = [o for o in waiting
                       if dev.clock() - o.issued_at >= dev.options.atc_inv_timeout_ms / 1000]
            if not expired:
                return False
            # §7.1: an ATC invalidation timeout fails the CMD_SYNC; CONS stays on it.
            dev.atc.abandon(expired)
            dev.trace.emit("atc_inv_sync", ids=ws["ids"], state="timeout")
            dev.trace.emit("sync", idx=ws["idx"], cs=CS_NAMES[ws["f"]["CS"]], state="fail",
                           err="CERROR_ATC_INV_SYNC")
            self.waiting_sync = None
            self._set_error(CERROR_ATC_INV_SYNC)
            return False
        dev.trace.emit("atc_inv_sync", ids=ws["ids"], state="done")
        self.waiting_sync = None
        cons, pmask = self._cons()
        self._signal_sync(ws["idx"], ws["f"])
        self._advance(cons, pmask)
        return True

    def _signal_sync(self, idx: int, f: dict[str, int]) -> None:
        dev = self.dev
        cs = f["CS"]
        if cs == CS_IRQ:
            msi_addr = f["MSIAddress"] << 2
            if dev.options.msi and msi_addr:
                # §4.7.3: the completion MSI is a 32-bit write of MSIData to MSIAddress.
                try:
                    dev.mem.write(msi_addr, f["MSIData"].to_bytes(4, "little"), msi=True)
                except BusError:
                    dev.gerror.raise_error("MSI_CMDQ_ABT_ERR")
            elif dev.options.wired_irqs:
                dev.pulse_irq(2)
        dev.trace.emit("sync", idx=idx, cs=CS_NAMES[cs], state="done")

    def tick(self) -> None:
        """Asynchronous progress: a CMD_SYNC waiting on ATC invalidations polls them for
        completions and timeouts."""
        if self.waiting_sync is not None:
            self.run()
