"""A test-side SMMUv3 driver: builds stream tables, CDs and page tables in SparseMemory the way
Linux's arm-smmu-v3 does, and programs the model through MMIO only (CR0/CR0ACK handshake,
queue PROD/CONS, GERRORN). Field encodings come from the architecture's declarations in
cosim/arch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cosim.arch.cd import CD_BYTES, L1CD, encode_cd
from cosim.arch.commands import CMD_BYTES, encode_command
from cosim.arch.descriptors import TableBuilder, s1_leaf, s1_start_level, s2_leaf
from cosim.arch.events import EVENT_BYTES, EVENT_RECORD, decode_event
from cosim.arch.registers import (
    BY_NAME,
    CMDQ_CONS,
    CR0,
    CR2,
    EVTQ_CONS,
    EVTQ_PROD,
    GBPA,
    GERROR,
    IRQ_CTRL,
    Q_BASE,
    STRTAB_BASE,
    STRTAB_BASE_CFG,
)
from cosim.arch.ste import (
    CONFIG_BYPASS,
    CONFIG_NESTED,
    CONFIG_S1,
    CONFIG_S2,
    L1STD,
    STE_BYTES,
    encode_ste,
)
from cosim.memory import SparseMemory
from cosim.smmu import SmmuOptions, SMMUv3
from cosim.trace import checking
from cosim.trace.schema import check_written
from cosim.translation_agent import Access, AtcInvalidation, TranslationResult

STRTAB = 0x10_0000
L2_STRTAB = 0x18_0000
CMDQ = 0x20_0000
EVTQ = 0x30_0000
CDTAB = 0x40_0000
PGTABLES = 0x100_0000
SPLIT = 8


class RecordingTrace:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.check = checking(None)  # on for the test session (tests/conftest.py)

    def emit(self, kind: str, **fields: Any) -> None:
        if self.check:
            check_written(kind, fields)
        self.records.append({"k": kind, **fields})

    def kinds(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r["k"] == kind]


@dataclass
class FakeEndpoint:
    """An ATS device: completes invalidations inline, later, or never."""

    mode: str = "inline"           # inline | later | never
    received: list[AtcInvalidation] = field(default_factory=list)

    def ats_invalidate(self, inv: AtcInvalidation) -> None:
        self.received.append(inv)
        if self.mode == "inline":
            inv.complete()

    def finish(self) -> None:
        for inv in self.received:
            inv.complete()


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Driver:
    def __init__(self, options: SmmuOptions | None = None, st_fmt: str = "linear",
                 sid_bits: int = 8, cmdq_log2: int = 8, evtq_log2: int = 7,
                 mem_size: int = 1 << 40) -> None:
        self.mem = SparseMemory(size=mem_size)
        self.irqs: list[tuple[int, int]] = []
        self.trace = RecordingTrace()
        self.opt = options or SmmuOptions()
        self.smmu = SMMUv3(self.mem, lambda line, lvl: self.irqs.append((line, lvl)), self.trace,
                           self.opt, strict=True)
        self.clock = Clock()
        self.smmu.clock = self.clock
        self.st_fmt = st_fmt
        self.sid_bits = sid_bits
        self.cmdq_log2 = cmdq_log2
        self.evtq_log2 = evtq_log2
        self.cmd_prod = 0
        self.evt_cons = 0
        self.next_l2 = L2_STRTAB
        self.next_pt = PGTABLES
        self.l2_tables: dict[int, int] = {}

    # -- MMIO ------------------------------------------------------------------------------
    def rd(self, name: str) -> int:
        reg = BY_NAME[name]
        return self.smmu.mmio_read(reg.offset, reg.size)

    def wr(self, name: str, value: int) -> None:
        reg = BY_NAME[name]
        self.smmu.mmio_write(reg.offset, reg.size, value)

    def write_cr0(self, **bits: int) -> None:
        val = CR0.encode(**bits)
        self.wr("CR0", val)
        assert self.rd("CR0ACK") == val, "CR0ACK must follow CR0"

    # -- bring-up (as arm_smmu_device_reset does) -----------------------------------------
    def init(self, smmuen: bool = True, irqs: bool = True) -> Driver:
        self.write_cr0()
        if self.st_fmt == "linear":
            cfg = STRTAB_BASE_CFG.encode(LOG2SIZE=self.sid_bits, FMT=0)
        else:
            cfg = STRTAB_BASE_CFG.encode(LOG2SIZE=self.sid_bits, SPLIT=SPLIT, FMT=1)
        # arm_smmu_device_reset(): CR2 = PTM | RECINVSID (record C_BAD_STREAMID, §6.3.12).
        self.wr("CR2", CR2.encode(PTM=1, RECINVSID=1))
        self.wr("STRTAB_BASE", STRTAB_BASE.encode(ADDR=STRTAB >> 6, RA=1))
        self.wr("STRTAB_BASE_CFG", cfg)
        self.wr("CMDQ_BASE", Q_BASE.encode(ADDR=CMDQ >> 5, LOG2SIZE=self.cmdq_log2))
        self.wr("CMDQ_PROD", 0)
        self.wr("CMDQ_CONS", 0)
        self.write_cr0(CMDQEN=1)
        self.cmd("CFGI_STE_RANGE", Range=31)
        self.cmd("TLBI_NSNH_ALL")
        self.sync()
        self.wr("EVENTQ_BASE", Q_BASE.encode(ADDR=EVTQ >> 5, LOG2SIZE=self.evtq_log2))
        self.wr("EVENTQ_PROD", 0)
        self.wr("EVENTQ_CONS", 0)
        self.write_cr0(CMDQEN=1, EVENTQEN=1)
        if irqs:
            self.wr("IRQ_CTRL", IRQ_CTRL.encode(GERROR_IRQEN=1, EVENTQ_IRQEN=1))
            assert self.rd("IRQ_CTRLACK") == self.rd("IRQ_CTRL")
        if smmuen:
            # Linux sets CR0.ATSCHK whenever the SMMU has ATS: Translated traffic is checked
            # against STE.EATS (§3.9.1.3).
            self.write_cr0(CMDQEN=1, EVENTQEN=1, SMMUEN=1, ATSCHK=int(self.opt.ats))
        return self

    # -- commands --------------------------------------------------------------------------
    def queue_cmd(self, words: list[int]) -> None:
        idx = self.cmd_prod & ((1 << self.cmdq_log2) - 1)
        addr = CMDQ + idx * CMD_BYTES
        self.mem.write(addr, words[0].to_bytes(8, "little") + words[1].to_bytes(8, "little"))
        self.cmd_prod = (self.cmd_prod + 1) & ((2 << self.cmdq_log2) - 1)

    def cmd(self, name: str, publish: bool = True, **f: int) -> None:
        self.queue_cmd(encode_command(name, **f))
        if publish:
            self.publish()

    def publish(self, drain: bool = True) -> None:
        """Move PROD; with `drain`, poll CONS (as Linux does) until the SMMU stops making
        progress, so a model consuming a few commands per step (strict mode) has consumed
        the batch. drain=False leaves the steps to the test (`step`)."""
        self.wr("CMDQ_PROD", self.cmd_prod)
        if drain and self.opt.cmdq_per_step is not None:
            self.drain()

    def step(self) -> None:
        """One model step: the backend ticks the SMMU after each request and when idle."""
        self.smmu.tick()

    def drain(self) -> None:
        """Each CMDQ_CONS read is a request the backend serves and follows with a tick; stop
        when a tick moves nothing (queue empty, stalled on an error, or a CMD_SYNC waiting)."""
        while True:
            before = self.rd("CMDQ_CONS")
            self.step()
            if self.rd("CMDQ_CONS") == before:
                return

    def sync(self, cs: int = 0, msi_addr: int = 0, msi_data: int = 0) -> None:
        f: dict[str, int] = {"CS": cs}
        if msi_addr:
            f["MSIAddress"] = msi_addr >> 2
            f["MSIData"] = msi_data
        self.cmd("CMD_SYNC", **f)

    def cons(self) -> int:
        return CMDQ_CONS.get(self.rd("CMDQ_CONS"), "RD")

    def cons_err(self) -> int:
        return CMDQ_CONS.get(self.rd("CMDQ_CONS"), "ERR")

    def gerror_active(self) -> int:
        return self.rd("GERROR") ^ self.rd("GERRORN")

    def ack_gerror(self) -> None:
        self.wr("GERRORN", self.rd("GERROR"))
        if self.opt.cmdq_per_step is not None:
            self.drain()        # the restarted queue is consumed over the next steps

    def cmdq_err(self) -> bool:
        return bool(GERROR.get(self.gerror_active(), "CMDQ_ERR"))

    # -- stream table ----------------------------------------------------------------------
    def ste_addr(self, sid: int) -> int:
        if self.st_fmt == "linear":
            return STRTAB + sid * STE_BYTES
        l1 = sid >> SPLIT
        if l1 not in self.l2_tables:
            l2 = self.next_l2
            self.next_l2 += STE_BYTES << SPLIT
            self.l2_tables[l1] = l2
            desc = L1STD.encode(Span=SPLIT + 1, L2Ptr=l2 >> 6)
            self.mem.write_u64(STRTAB + l1 * 8, desc)
        return self.l2_tables[l1] + (sid & ((1 << SPLIT) - 1)) * STE_BYTES

    def write_ste(self, sid: int, words: list[int], invalidate: bool = True) -> None:
        addr = self.ste_addr(sid)
        for i, w in enumerate(words):
            self.mem.write_u64(addr + 8 * i, w)
        if invalidate:
            self.cmd("CFGI_STE", StreamID=sid, Leaf=1)
            self.sync()

    def write_ste_qword(self, sid: int, i: int, value: int) -> None:
        self.mem.write_u64(self.ste_addr(sid) + 8 * i, value)

    # -- CDs -------------------------------------------------------------------------------
    def cd_table(self, sid: int, fmt: int = 0, cdmax: int = 0) -> int:
        return CDTAB + sid * 0x10_0000

    def write_cd(self, table: int, ssid: int, words: list[int], fmt: int = 0) -> int:
        if fmt == 0:
            addr = table + ssid * CD_BYTES
        else:
            leaf_bits = 6 if fmt == 1 else 10
            l1 = table + (ssid >> leaf_bits) * 8
            desc = self.mem.read_u64(l1)
            if not L1CD.get(desc, "V"):
                l2 = self.alloc(CD_BYTES << leaf_bits)
                self.mem.write_u64(l1, L1CD.encode(V=1, L2Ptr=l2 >> 12))
                desc = self.mem.read_u64(l1)
            addr = (L1CD.get(desc, "L2Ptr") << 12) + (ssid & ((1 << leaf_bits) - 1)) * CD_BYTES
        for i, w in enumerate(words):
            self.mem.write_u64(addr + 8 * i, w)
        return addr

    def alloc(self, nbytes: int, align: int = 0x1_0000) -> int:
        addr = (self.next_pt + align - 1) & ~(align - 1)
        self.next_pt = addr + nbytes
        return addr

    # -- page tables -----------------------------------------------------------------------
    def s1_tables(self, mappings: dict[int, int], granule: int = 4096, tsz: int = 16,
                  perm_ap: int = 0b01, mem: Any = None, base: int | None = None) -> int:
        """Build stage 1 tables mapping page iova -> pa; returns TTB."""
        start = s1_start_level(granule, tsz)
        base = self.alloc(0x10_0000) if base is None else base
        tb = TableBuilder(mem or self.mem, granule, tsz, start, base)
        for va, pa in mappings.items():
            # io-pgtable-arm marks every stage 1 leaf non-global (ARM_LPAE_PTE_nG).
            tb.map(va, 3, s1_leaf(pa, page=True, ap=perm_ap, NG=1))
        return tb.root

    def s2_tables(self, mappings: dict[int, int], granule: int = 4096, tsz: int = 16,
                  sl0: int = 2, base: int | None = None, **leaf: int) -> int:
        from cosim.arch.descriptors import s2_start_level
        base = self.alloc(0x10_0000) if base is None else base
        tb = TableBuilder(self.mem, granule, tsz, s2_start_level(granule, sl0), base)
        for ipa, pa in mappings.items():
            tb.map(ipa, 3, s2_leaf(pa, page=True, **leaf))
        return tb.root

    # -- events ----------------------------------------------------------------------------
    def events(self) -> list[dict]:
        prod = EVTQ_PROD.get(self.rd("EVENTQ_PROD"), "WR")
        out = []
        mask = (2 << self.evtq_log2) - 1
        while self.evt_cons != prod:
            idx = self.evt_cons & ((1 << self.evtq_log2) - 1)
            raw = EVENT_RECORD.from_bytes(self.mem.read(EVTQ + idx * EVENT_BYTES, EVENT_BYTES))
            out.append(decode_event(raw))
            self.evt_cons = (self.evt_cons + 1) & mask
        ovf = EVTQ_PROD.get(self.rd("EVENTQ_PROD"), "OVFLG")
        self.wr("EVENTQ_CONS", EVTQ_CONS.encode(RD=self.evt_cons, OVACKFLG=ovf))
        return out

    def event_names(self) -> list[str]:
        return [str(e["name"]) for e in self.events()]

    # -- convenience -----------------------------------------------------------------------
    def gbpa(self, abort: bool) -> None:
        self.wr("GBPA", GBPA.encode(UPDATE=1, ABORT=int(abort), SHCFG=1))

    def xl(self, sid: int, iova: int, ssid: int | None = None, write: bool = False,
           priv: bool = False, exec_: bool = False) -> TranslationResult:
        return self.smmu.translate(sid, ssid, iova,
                                   Access(read=not write, write=write, exec=exec_, priv=priv))


# -- STE / CD builders in the shape Linux writes them -------------------------------------
def bypass_ste() -> list[int]:
    return encode_ste(V=1, Config=CONFIG_BYPASS, SHCFG=1)


def abort_ste() -> list[int]:
    return encode_ste(V=1, Config=0)


def s1_ste(cdtab: int, cdmax: int = 0, fmt: int = 0, s1dss: int = 0, eats: int = 0,
           vmid: int = 0) -> list[int]:
    return encode_ste(V=1, Config=CONFIG_S1, S1Fmt=fmt, S1ContextPtr=cdtab >> 6, S1CDMax=cdmax,
                      S1DSS=s1dss, S1CIR=1, S1COR=1, S1CSH=3, EATS=eats, STRW=0, S2VMID=vmid)


def s2_fields(ttb: int, vmid: int, tsz: int = 16, sl0: int = 2, tg: int = 0,
              s2r: int = 1) -> dict[str, int]:
    return dict(S2VMID=vmid, S2T0SZ=tsz, S2SL0=sl0, S2TG=tg, S2PS=5, S2AA64=1, S2R=s2r,
                S2TTB=ttb >> 4, S2IR0=1, S2OR0=1, S2SH0=3)


def s2_ste(ttb: int, vmid: int, eats: int = 0, **kw: int) -> list[int]:
    return encode_ste(V=1, Config=CONFIG_S2, EATS=eats, **s2_fields(ttb, vmid, **kw))


def nested_ste(cdtab: int, s2ttb: int, vmid: int, **kw: int) -> list[int]:
    return encode_ste(V=1, Config=CONFIG_NESTED, S1ContextPtr=cdtab >> 6,
                      **s2_fields(s2ttb, vmid), **kw)


def s1_cd(ttb0: int, asid: int, tsz: int = 16, tg0: int = 0, r: int = 1,
          epd1: int = 1, **kw: int) -> list[int]:
    f = dict(V=1, T0SZ=tsz, TG0=tg0, IR0=1, OR0=1, SH0=3, EPD1=epd1, IPS=5, AA64=1, R=r, A=1,
             ASET=1, ASID=asid, TTB0=ttb0 >> 4, MAIR=0x0000_0000_00FF_0444)
    f.update(kw)
    return encode_cd(**f)
