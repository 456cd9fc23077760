"""Command queue: consumption and execution of commands (Arm IHI 0070 §4, §7.1).

The command layout, opcodes and error codes are declared in cosim/arch/commands.py. The
consumer runs when the driver moves CMDQ_PROD (and when CR0.CMDQEN turns on), or, with a
per-step budget (SmmuOptions.cmdq_per_step, strict mode's default), a few commands at each
`tick()`: the SMMU consumes commands in its own time (§3.5: the producer only moves PROD; §4:
CONS shows what has been consumed), so device traffic falls between two commands of one batch.
The backend ticks after every request it serves (the driver's CMDQ_CONS polls included) and in
its idle loop, which does not wait while commands are pending (SMMUv3.busy), so a driver
polling CONS or a CMD_SYNC's MSI location always sees the queue drain. An illegal
command stops the queue with CMDQ_CONS.ERR = CERROR_ILL and GERROR.CMDQ_ERR until the driver
acknowledges through GERRORN (§7.1). A CMD_SYNC after ATC_INV commands waits for their
completion (§4.7.3): the endpoint only records a completion, and the waiting CMD_SYNC
re-checks its invalidations whenever the SMMU is ticked (the backend ticks after every request
it serves and in its idle loop); one that times out fails with CERROR_ATC_INV_SYNC.

CFGI_* and TLBI_* take effect when executed, except in strict mode: there an invalidation is
only guaranteed complete once a later CMD_SYNC completes (§4.7.3; §3.21.1, §3.21.3), and until
then the SMMU goes on using what it holds, so the model applies them all as that CMD_SYNC
completes (an `inv_effect` record each), just before it observes the structures again
(structure_fetch.py) and signals the completion.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cosim.arch.commands import (
    CERROR_ABT,
    CERROR_ATC_INV_SYNC,
    CERROR_ILL,
    CERROR_NAMES,
    CFGI_ALL_RANGE,
    CMD,
    CMD_BYTES,
    CS_IRQ,
    CS_NAMES,
    TG_GRANULE,
    decode_command,
)
from cosim.arch.registers import CMDQ_CONS, CMDQ_PROD, Q_BASE
from cosim.arch.ste import STE_BYTES
from cosim.memory import BusError
from cosim.translation_agent import AtcInvalidation

from .ats import ATC_SIZE_MAX, atc_range
from .stream_table import locate_ste

if TYPE_CHECKING:
    from .smmu import SMMUv3

log = logging.getLogger(__name__)

# Address fields hold their address bits in place (field value << its low bit in the word).
_ADDR_LO = {name: CMD[name].word_lo for name in ("Address", "IPA", "MSIAddress")}


def tlbi_range(f: dict[str, int], addr_field: str, range_inv: bool) -> tuple[int, int]:
    """[lo, hi) covered by a TLBI_*_VA / TLBI_S2_IPA (§4.4.1.1: NUM/SCALE/TG range form)."""
    addr = f[addr_field] << _ADDR_LO[addr_field]
    granule = TG_GRANULE.get(f.get("TG", 0))
    if range_inv and granule is not None:
        # §4.4.1.1: Range = ((NUM+1) * 2^SCALE) * Translation_Granule_Size, from Address. The
        # SMMU's SCALE is a plain exponent, unlike the PE's TLBI RVA (2^(5*SCALE+1)).
        span = (f["NUM"] + 1) << f["SCALE"]
        return addr, addr + span * granule
    # Non-range: every entry containing the address; the TTL hint may only narrow the
    # levels examined, so ignoring it never under-invalidates.
    return addr, addr + 1


@dataclass
class Invalidation:
    """A CFGI_* or TLBI_* command: its trace record and the cache operation it performs."""

    kind: str                   # the record kind: 'cfgi' | 'tlbi'
    op: str
    fields: dict[str, int | None]
    apply: Callable[[], int]    # invalidates; returns how many entries it removed
    idx: int = 0                # its command queue index


class CommandQueue:
    """Consumer side of the command queue; the guest owns PROD, the SMMU owns CONS."""

    def __init__(self, dev: SMMUv3) -> None:
        self.dev = dev
        self.executed = 0
        self.reset()

    def reset(self) -> None:
        self.waiting_sync: dict | None = None     # CMD_SYNC blocked on ATC invalidations
        # Strict mode: invalidations executed and waiting for a CMD_SYNC to complete.
        self.deferred: list[Invalidation] = []

    # -- geometry ------------------------------------------------------------------------
    def _geometry(self) -> tuple[int, int]:
        base = self.dev.regs["CMDQ_BASE"]
        log2 = min(Q_BASE.get(base, "LOG2SIZE"), self.dev.options.cmdq_log2)
        return Q_BASE.get(base, "ADDR") << Q_BASE["ADDR"].word_lo, log2

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
    def kick(self) -> None:
        """A register write that may let the queue go on (CMDQ_PROD, CR0, GERRORN): without a
        per-step budget the whole batch is consumed now; with one, at the next ticks."""
        if self.dev.options.cmdq_per_step is None:
            self.run()

    def pending(self) -> bool:
        """Commands are waiting to be consumed (or a CMD_SYNC to complete) and the queue may
        process them: CMDQEN set and no command error outstanding."""
        dev = self.dev
        if not dev.cr0ack("CMDQEN") or self.stalled():
            return False
        if self.waiting_sync is not None:
            return True
        _, log2 = self._geometry()
        pmask = (2 << log2) - 1
        prod = CMDQ_PROD.get(dev.regs["CMDQ_PROD"], "WR") & pmask
        return prod != self._cons()[0]

    def disabled(self) -> None:
        """CR0.CMDQEN 1 -> 0 (§6.3.9.3): processing stops; CONS holds the index of the first
        unprocessed command. A CMD_SYNC still waiting on ATC invalidations is not Consumed
        (consuming it is completing it, §4.7.3): it signals nothing, CONS stays on it, and it
        is fetched and executed anew if CMDQEN is set again."""
        if self.waiting_sync is not None:
            self.dev.trace.emit("sync", idx=self.waiting_sync["idx"],
                                cs=CS_NAMES[self.waiting_sync["f"]["CS"]], state="stopped")
            self.waiting_sync = None

    def run(self, judged_at: float | None = None, budget: int | None = None) -> None:
        """Consume commands until empty, stalled on an error, blocked on a CMD_SYNC, or
        `budget` commands were consumed (None: no limit).

        `judged_at`: a blocked CMD_SYNC may also fail on an ATC invalidation that had timed
        out at that time. Only `tick()` judges timeouts, at the time the backend read before
        it let the endpoints send the completions due: a completion due before the timeout is
        then never taken for one, not because a register write (CMDQ_PROD, GERRORN, CR0)
        looked first nor because the model was descheduled between the two.
        """
        dev = self.dev
        consumed = 0
        while dev.cr0ack("CMDQEN") and not self.stalled():
            if budget is not None and consumed >= budget:
                return
            base, log2 = self._geometry()
            wrap = 1 << log2
            pmask = (wrap << 1) - 1
            prod = CMDQ_PROD.get(dev.regs["CMDQ_PROD"], "WR") & pmask
            cons = CMDQ_CONS.get(dev.regs["CMDQ_CONS"], "RD") & pmask
            if self.waiting_sync is not None:
                if not self._progress_sync(judged_at):
                    return
                consumed += 1
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
            consumed += 1

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
        if name in ("PREFETCH_CFG", "PREFETCH_ADDR", "RESUME", "PRI_RESP"):
            # Prefetch is a hint; RESUME/PRI_RESP have no stalled transaction or page
            # request outstanding in this model (no stall, no PRI queue traffic).
            return True
        inv = self._invalidation(name, f)
        if inv is not None:
            inv.idx = idx
            if opt.strict:
                # §4.7.3: complete only when a later CMD_SYNC completes; until then the SMMU
                # may go on using what it holds (§3.21.1, §3.21.3).
                self.deferred.append(inv)
                if name == "CFGI_STE":
                    self._expect_ste(f["StreamID"])
                dev.trace.emit(inv.kind, op=inv.op, **inv.fields, effect="sync")
            else:
                n = inv.apply()
                extra = {"n": n} if inv.kind == "tlbi" else {}
                dev.trace.emit(inv.kind, op=inv.op, **inv.fields, **extra, effect="now")
            return True
        if name == "ATC_INV":
            self._atc_inv(f)
        elif name == "CMD_SYNC":
            return self._sync(idx, f)
        return True

    def _invalidation(self, name: str, f: dict[str, int]) -> Invalidation | None:
        """The CFGI_* (§4.3) or TLBI_* (§4.4) command `name`, or None for any other."""
        dev = self.dev
        cfg = lambda: dev.config_cache  # noqa: E731 - the caches as they are when applied
        tlb = lambda: dev.tlb  # noqa: E731
        sid, vmid = f.get("StreamID", 0), f.get("VMID", 0)
        if name == "CFGI_STE":
            return Invalidation("cfgi", name, {"sid": sid}, lambda: cfg().inv_ste(sid))
        if name == "CFGI_STE_RANGE":
            rng = f["Range"]
            if rng == CFGI_ALL_RANGE:
                return Invalidation("cfgi", "CFGI_ALL", {"range": rng}, lambda: cfg().inv_all())
            return Invalidation("cfgi", name, {"sid": sid, "range": rng},
                                lambda: cfg().inv_ste_range(sid, rng))
        if name == "CFGI_CD":
            ssid = f["SubstreamID"]
            return Invalidation("cfgi", name, {"sid": sid, "ssid": ssid},
                                lambda: cfg().inv_cd(sid, ssid))
        if name == "CFGI_CD_ALL":
            return Invalidation("cfgi", name, {"sid": sid}, lambda: cfg().inv_cd_all(sid))
        if name == "TLBI_NH_ALL":
            return Invalidation("tlbi", name, {"vmid": vmid}, lambda: tlb().nh_all(vmid))
        if name == "TLBI_NH_ASID":
            asid = f["ASID"]
            return Invalidation("tlbi", name, {"vmid": vmid, "asid": asid},
                                lambda: tlb().nh_asid(vmid, asid))
        if name in ("TLBI_NH_VA", "TLBI_NH_VAA"):
            lo, hi = tlbi_range(f, "Address", dev.options.range_inv)
            va_asid = f.get("ASID") if name == "TLBI_NH_VA" else None
            return Invalidation("tlbi", name, {"vmid": vmid, "asid": va_asid, "addr": lo,
                                               "size": hi - lo, "leaf": f["Leaf"],
                                               "ttl": f["TTL"]},
                                lambda: tlb().nh_va(vmid, va_asid, lo, hi, bool(f["Leaf"])))
        if name.startswith("TLBI_EL2"):
            return Invalidation("tlbi", name, {}, lambda: tlb().el2_all())
        if name == "TLBI_S12_VMALL":
            return Invalidation("tlbi", name, {"vmid": vmid}, lambda: tlb().s12_vmall(vmid))
        if name == "TLBI_S2_IPA":
            ipa_lo, ipa_hi = tlbi_range(f, "IPA", dev.options.range_inv)
            return Invalidation("tlbi", name, {"vmid": vmid, "addr": ipa_lo,
                                               "size": ipa_hi - ipa_lo, "leaf": f["Leaf"],
                                               "ttl": f["TTL"]},
                                lambda: tlb().s2_ipa(vmid, ipa_lo, ipa_hi, bool(f["Leaf"])))
        if name == "TLBI_NSNH_ALL":
            return Invalidation("tlbi", name, {}, lambda: tlb().nsnh_all())
        return None

    def _expect_ste(self, sid: int) -> None:
        """Strict mode: the STE a CFGI_STE names is observed at the next CMD_SYNC, so even its
        first fetch may be torn between that observation and later writes."""
        dev = self.dev
        loc = locate_ste(dev.mem, dev.regs["STRTAB_BASE"], dev.regs["STRTAB_BASE_CFG"],
                         dev.options, sid, None)
        if loc.addr is not None:
            dev.fetcher.expect(loc.addr, STE_BYTES)

    def _illegal(self, name: str | None, f: dict[str, int]) -> str | None:
        """Why a command is CERROR_ILL (§4.1.3, §7.1), or None."""
        opt = self.dev.options
        if name is None:
            return "unknown opcode"
        # §4.1.7: an out-of-range StreamID or SubstreamID is not a command error; the
        # model's CONSTRAINED UNPREDICTABLE choice is "the command has no effect" (no
        # structure of such an ID can be cached, so invalidating by it removes nothing).
        if opt.range_inv and "TG" in f and f["TG"] in TG_GRANULE:
            # §4.4.1.1: with TG != 0, NUM == SCALE == TTL == 0 is Reserved (CERROR_ILL), and
            # so is TTL == 0b01 for a 16KB granule without IDR5.DS (no level 1 16KB blocks).
            if f["NUM"] == 0 and f["SCALE"] == 0 and f["TTL"] == 0:
                return "range TLBI with NUM=SCALE=TTL=0 (Reserved, §4.4.1.1)"
            if TG_GRANULE[f["TG"]] == 16384 and f["TTL"] == 1:
                return "TLBI TG=16KB with TTL=0b01 without IDR5.DS (§4.4.1.1)"
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
        if not dev.cr0ack("SMMUEN"):
            # §4.5.1: CMD_ATC_INV is IGNORED while SMMUEN == 0 (it is not ILLEGAL): no
            # Invalidate Request goes out, so no `atc_inv` record follows its `cmd` record.
            return
        sid = f["StreamID"]
        ssid = f["SubstreamID"] if f["SSV"] else None
        addr, size = atc_range(f["Address"] << _ADDR_LO["Address"], f["Size"])
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

    def _progress_sync(self, judged_at: float | None) -> bool:
        """Re-check the blocked CMD_SYNC; True once it completed (and CONS moved on)."""
        dev = self.dev
        ws = self.waiting_sync
        assert ws is not None
        waiting = [o for o in dev.atc.outstanding() if o.inv.id in ws["ids"]]
        if waiting:
            timeout = dev.options.atc_inv_timeout_ms / 1000
            expired = [o for o in waiting
                       if judged_at is not None and judged_at - o.issued_at >= timeout]
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
        # What the completion guarantees is observable before its signal and CONS (§4.7.3).
        self._complete_invalidations(idx)
        dev.fetcher.synced()
        cs = f["CS"]
        if cs == CS_IRQ:
            msi_addr = f["MSIAddress"] << _ADDR_LO["MSIAddress"]
            if dev.options.msi and msi_addr:
                # §4.7.3: the completion MSI is a 32-bit write of MSIData to MSIAddress.
                try:
                    dev.mem.write(msi_addr, f["MSIData"].to_bytes(4, "little"), msi=True)
                except BusError:
                    dev.gerror.raise_error("MSI_CMDQ_ABT_ERR")
            if dev.options.wired_irqs:
                # §4.7.3: the wired output is asserted "regardless of the value of
                # MSIAddress", so also when the MSI was written.
                dev.pulse_irq(2)        # IRQ_CMD_SYNC (smmu.py)
        dev.trace.emit("sync", idx=idx, cs=CS_NAMES[cs], state="done")

    def _complete_invalidations(self, sync_idx: int) -> None:
        """Strict mode: the deferred invalidations take effect as CMD_SYNC `sync_idx`
        completes, in the order they were executed."""
        deferred, self.deferred = self.deferred, []
        for inv in deferred:
            n = inv.apply()
            self.dev.trace.emit("inv_effect", op=inv.op, cmd=inv.idx, sync=sync_idx, n=n)

    def tick(self, now: float) -> None:
        """Asynchronous progress: a CMD_SYNC waiting on ATC invalidations polls them for
        completions, and for timeouts as of `now`; with a per-step budget, that many more
        commands are consumed."""
        budget = self.dev.options.cmdq_per_step
        if budget is not None:
            self.run(judged_at=now, budget=budget)
        elif self.waiting_sync is not None:
            self.run(judged_at=now)
