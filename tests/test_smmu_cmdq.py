"""Command queue: every command, CMD_SYNC forms, CERROR_ILL / CERROR_ABT stalls and recovery,
ATC_INV ordering and CERROR_ATC_INV_SYNC, caching vs coherent (§4, §7.1)."""

import pytest
from smmu_driver import CMDQ, Driver, FakeEndpoint, bypass_ste, s1_cd, s1_ste, s2_ste

from cosim.arch.commands import (
    CERROR_ABT,
    CERROR_ATC_INV_SYNC,
    CERROR_ILL,
    CMD_BYTES,
    COMMANDS,
    CS_IRQ,
    CS_SEV,
    encode_command,
)
from cosim.arch.domain import BYPASS
from cosim.arch.registers import CMDQ_PROD, Q_BASE
from cosim.smmu import SmmuOptions

PA = 0x8000_0000


def s1_dev(d, sid=3, asid=5, va=0x1000, pa=PA):
    ttb = d.s1_tables({va: pa})
    cdtab = d.cd_table(sid)
    d.write_cd(cdtab, 0, s1_cd(ttb, asid=asid))
    d.write_ste(sid, s1_ste(cdtab, eats=1))
    return ttb, cdtab


ALL_COMMANDS = [
    ("PREFETCH_CFG", dict(StreamID=1)),
    ("CFGI_STE", dict(StreamID=1, Leaf=1)),
    ("CFGI_STE_RANGE", dict(StreamID=0, Range=31)),
    ("CFGI_STE_RANGE", dict(StreamID=4, Range=2)),
    ("CFGI_CD", dict(StreamID=1, SubstreamID=3, Leaf=1)),
    ("CFGI_CD_ALL", dict(StreamID=1)),
    ("TLBI_NH_ALL", dict(VMID=0)),
    ("TLBI_NH_ASID", dict(VMID=0, ASID=5)),
    ("TLBI_NH_VA", dict(VMID=0, ASID=5, Address=1, Leaf=1)),
    ("TLBI_NH_VA", dict(VMID=0, ASID=5, Address=1, NUM=3, SCALE=0, TG=1, TTL=3)),
    ("TLBI_S12_VMALL", dict(VMID=2)),
    ("TLBI_S2_IPA", dict(VMID=2, IPA=4, Leaf=1)),
    ("TLBI_NSNH_ALL", {}),
    ("ATC_INV", dict(StreamID=1, Size=0, Address=1)),
    ("RESUME", dict(StreamID=1, STAG=0)),
    ("CMD_SYNC", dict(CS=0)),
]


@pytest.mark.parametrize("name,fields", ALL_COMMANDS)
def test_each_command_is_consumed_and_traced(name, fields):
    d = Driver().init()
    before = d.cons()
    d.cmd(name, **fields)
    assert d.cons() == before + 1 and not d.cmdq_err()
    rec = d.trace.kinds("cmd")[-1]
    assert rec["op"] == name and rec["raw"] == encode_command(name, **fields)
    for k, v in fields.items():
        assert rec["f"][k] == v


def test_el2_and_pri_commands_are_illegal_without_the_feature():
    for name in ("TLBI_EL2_ALL", "PRI_RESP"):
        d = Driver().init()
        d.cmd(name)
        assert d.cmdq_err() and d.cons_err() == CERROR_ILL
    d = Driver(SmmuOptions(hyp=True)).init()
    d.cmd("TLBI_EL2_ALL")
    assert not d.cmdq_err()


def test_cmd_sync_forms():
    d = Driver().init()
    d.irqs.clear()
    d.sync()                                            # CS=NONE: just completes
    assert d.irqs == [] and d.trace.kinds("sync")[-1]["state"] == "done"
    msi = 0x70_0000
    d.mem.write(msi, b"\xff\xff\xff\xff")
    d.sync(cs=CS_IRQ, msi_addr=msi, msi_data=0)        # Linux's MSI-polled CMD_SYNC
    assert d.mem.read(msi, 4) == b"\0\0\0\0"
    assert d.mem.writes[-1][3] is True                 # written as an MSI
    assert d.irqs == [(2, 2)]          # and the wired SPI too (§4.7.3, "regardless")
    d.sync(cs=CS_SEV)
    assert d.trace.kinds("sync")[-1]["cs"] == "SEV"
    d.sync(cs=CS_IRQ)                                   # no MSI address: wired SPI
    assert d.irqs == [(2, 2), (2, 2)]
    d2 = Driver(SmmuOptions(msi=False)).init()
    d2.irqs.clear()
    d2.sync(cs=CS_IRQ, msi_addr=msi)
    assert d2.irqs == [(2, 2)]


def test_illegal_command_stalls_until_gerrorn_then_resumes():
    d = Driver().init()
    s1_dev(d)
    d.irqs.clear()
    start = d.cons()
    d.queue_cmd([0xFF, 0])                              # unknown opcode
    d.cmd("CMD_SYNC", publish=False, CS=0)
    d.publish()
    assert d.cons() == start and d.cons_err() == CERROR_ILL
    assert d.cmdq_err() and (3, 2) in d.irqs            # GERROR interrupt
    # Still stalled: more commands do not run.
    d.cmd("CMD_SYNC", CS=0)
    assert d.cons() == start
    # Linux's arm_smmu_cmdq_skip_err: overwrite the bad command with a CMD_SYNC, ack.
    idx = start & 0xFF
    d.mem.write(CMDQ + idx * CMD_BYTES, b"".join(
        w.to_bytes(8, "little") for w in encode_command("CMD_SYNC", CS=0)))
    d.ack_gerror()
    assert not d.cmdq_err()
    assert d.cons() == d.cmd_prod


def test_command_fetch_abort_is_cerror_abt():
    d = Driver(mem_size=1 << 32).init()
    d.write_cr0(EVENTQEN=1, SMMUEN=1)
    d.wr("CMDQ_BASE", Q_BASE.encode(ADDR=(1 << 33) >> 5, LOG2SIZE=8))
    d.wr("CMDQ_PROD", 0)
    d.wr("CMDQ_CONS", 0)
    d.write_cr0(CMDQEN=1, EVENTQEN=1, SMMUEN=1)
    d.wr("CMDQ_PROD", CMDQ_PROD.encode(WR=1))
    assert d.cmdq_err() and d.cons_err() == CERROR_ABT


def test_atc_inv_sync_waits_for_late_completion():
    d = Driver().init()
    ep = FakeEndpoint(mode="later")
    d.smmu.attach_ats_device(3, ep)
    start = d.cons()
    d.cmd("ATC_INV", publish=False, StreamID=3, SSV=1, SubstreamID=2, Size=1, Address=0x3)
    d.cmd("CMD_SYNC", publish=False, CS=0)
    d.publish()
    assert len(ep.received) == 1
    inv = ep.received[0]
    assert (inv.sid, inv.ssid, inv.addr, inv.size, inv.global_) == (3, 2, 0x2000, 0x2000, False)
    assert d.cons() == start + 1                        # the CMD_SYNC is still pending
    assert d.trace.kinds("sync")[-1]["state"] == "wait"
    d.smmu.tick()
    assert d.cons() == start + 1
    ep.finish()
    # complete() only records: the queue notices it when it next polls (the next tick).
    assert inv.done and d.cons() == start + 1
    d.smmu.tick()
    assert d.cons() == start + 2
    assert d.trace.kinds("atc_inv_sync")[-1]["state"] == "done"
    assert d.trace.kinds("atc_inv")[-1]["id"] == inv.id


def test_atc_inv_inline_completion_and_no_device():
    d = Driver().init()
    d.smmu.attach_ats_device(3, FakeEndpoint(mode="inline"))
    d.cmd("ATC_INV", StreamID=3, Size=0, Address=1)
    d.cmd("ATC_INV", StreamID=9, Size=0, Address=1)     # no endpoint: nothing to wait for
    d.sync()
    assert d.cons() == d.cmd_prod and not d.cmdq_err()


def test_atc_inv_timeout_is_cerror_atc_inv_sync():
    d = Driver(SmmuOptions(atc_inv_timeout_ms=50)).init()
    d.smmu.attach_ats_device(3, FakeEndpoint(mode="never"))
    d.cmd("ATC_INV", StreamID=3, Size=0, Address=1)
    d.sync()
    sync_idx = d.cons()
    d.clock.t += 0.01
    d.smmu.tick()
    assert not d.cmdq_err()
    d.clock.t += 0.05
    d.smmu.tick()
    assert d.cmdq_err() and d.cons_err() == CERROR_ATC_INV_SYNC
    assert d.cons() == sync_idx                          # CONS stays on the CMD_SYNC
    assert d.trace.kinds("atc_inv_sync")[-1]["state"] == "timeout"
    assert d.trace.kinds("sync")[-1]["err"] == "CERROR_ATC_INV_SYNC"
    # Linux retries the CMD_SYNC as is: the failed invalidation is abandoned, so it completes.
    d.ack_gerror()
    assert d.cons() == d.cmd_prod and not d.cmdq_err()


def test_only_tick_judges_atc_inv_timeouts():
    """A register write that restarts the queue while the CMD_SYNC waits past the timeout
    does not fail it: only tick() does, after the backend let the endpoints complete what was
    due, so a completion sent in time is never mistaken for a timeout."""
    d = Driver(SmmuOptions(atc_inv_timeout_ms=50)).init()
    ep = FakeEndpoint(mode="later")
    d.smmu.attach_ats_device(3, ep)
    d.cmd("ATC_INV", StreamID=3, Size=0, Address=1)
    d.sync()
    d.clock.t += 0.06
    d.cmd("CMD_SYNC", CS=0)                              # CMDQ_PROD write: the queue runs
    assert not d.cmdq_err() and d.trace.kinds("sync")[-1]["state"] == "wait"
    ep.finish()
    d.smmu.tick()
    assert not d.cmdq_err() and d.cons() == d.cmd_prod
    assert d.trace.kinds("atc_inv_sync")[-1]["state"] == "done"


def test_tick_judges_timeouts_as_of_the_time_it_is_given():
    """The backend passes the time it read before polling the endpoints: a model descheduled
    after the poll must not time out an invalidation the endpoint had not yet been due to
    complete when it was polled."""
    d = Driver(SmmuOptions(atc_inv_timeout_ms=50)).init()
    d.smmu.attach_ats_device(3, FakeEndpoint(mode="never"))
    d.cmd("ATC_INV", StreamID=3, Size=0, Address=1)
    d.sync()
    issued = d.clock.t
    d.clock.t += 1.0
    d.smmu.tick(now=issued + 0.04)
    assert not d.cmdq_err() and d.trace.kinds("sync")[-1]["state"] == "wait"
    d.smmu.tick(now=issued + 0.051)
    assert d.cmdq_err() and d.cons_err() == CERROR_ATC_INV_SYNC


def test_sync_before_atc_inv_does_not_wait_for_it():
    d = Driver().init()
    ep = FakeEndpoint(mode="later")
    d.smmu.attach_ats_device(3, ep)
    d.cmd("CMD_SYNC", publish=False, CS=0)
    d.cmd("ATC_INV", publish=False, StreamID=3, Size=0, Address=1)
    d.cmd("CMD_SYNC", publish=False, CS=0)
    d.publish()
    states = [r["state"] for r in d.trace.kinds("sync")]
    assert states[-2:] == ["done", "wait"]


@pytest.mark.parametrize("mode,stale", [("coherent", False), ("caching", True)])
def test_missing_cfgi_ste_visible_only_when_caching(mode, stale):
    d = Driver(SmmuOptions(cache_mode=mode)).init()
    s1_dev(d)
    assert d.xl(3, 0x1000).pa == PA
    d.write_ste(3, bypass_ste(), invalidate=False)      # driver forgets CFGI_STE
    t = d.xl(3, 0x1000)
    assert (t.dom != BYPASS) == stale
    d.cmd("CFGI_STE", StreamID=3, Leaf=1)
    d.sync()
    assert d.xl(3, 0x1000).dom == BYPASS


@pytest.mark.parametrize("mode", ["coherent", "caching"])
def test_tlb_needs_tlbi_when_caching(mode):
    d = Driver(SmmuOptions(cache_mode=mode)).init()
    ttb, _ = s1_dev(d)
    assert d.xl(3, 0x1000).ok
    assert not d.trace.kinds("xlate")[-1]["tlb"]
    # Remap the page behind the SMMU's back (4 KB granule, 4 levels from level 0).
    from cosim.arch.descriptors import s1_leaf
    table = ttb
    for lvl in range(3):
        idx = (0x1000 >> (12 + 9 * (3 - lvl))) & 0x1FF
        table = d.mem.read_u64(table + idx * 8) & 0xFFFF_FFFF_F000
    d.mem.write_u64(table + 8, s1_leaf(PA + 0x10_0000, page=True))
    t2 = d.xl(3, 0x1000)
    if mode == "caching":
        assert d.trace.kinds("xlate")[-1]["tlb"] and t2.pa == PA
        d.cmd("TLBI_NH_VA", VMID=0, ASID=5, Address=1, Leaf=1)
        d.sync()
    assert d.xl(3, 0x1000).pa == PA + 0x10_0000


def test_tlbi_scope_by_asid_and_vmid():
    d = Driver(SmmuOptions(cache_mode="caching")).init()
    s1_dev(d, sid=3, asid=5)
    s1_dev(d, sid=4, asid=6, pa=PA + 0x1000)
    ttb = d.s2_tables({0x2000: PA + 0x2000})
    d.write_ste(5, s2_ste(ttb, vmid=9))
    for sid, va in ((3, 0x1000), (4, 0x1000), (5, 0x2000)):
        d.xl(sid, va)
    assert len(d.smmu.tlb.entries) == 3
    d.cmd("TLBI_NH_ASID", VMID=0, ASID=5)
    assert {e.asid for e in d.smmu.tlb.entries} == {6, None}
    d.cmd("TLBI_S2_IPA", VMID=9, IPA=2)
    assert {e.asid for e in d.smmu.tlb.entries} == {6}
    d.cmd("TLBI_NSNH_ALL")
    assert d.smmu.tlb.entries == []


def test_command_table_has_all_brief_opcodes():
    names = {s.name for s in COMMANDS.values()}
    for n in ("PREFETCH_CFG", "CFGI_STE", "CFGI_STE_RANGE", "CFGI_CD", "CFGI_CD_ALL",
              "TLBI_NH_ALL", "TLBI_NH_ASID", "TLBI_NH_VA", "TLBI_EL2_ALL", "TLBI_S12_VMALL",
              "TLBI_S2_IPA", "TLBI_NSNH_ALL", "ATC_INV", "PRI_RESP", "RESUME", "CMD_SYNC"):
        assert n in names
