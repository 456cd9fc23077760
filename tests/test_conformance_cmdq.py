"""§4.5.1 CMD_ATC_INV while SMMUEN == 0, and §4.7.3 CMD_SYNC completion signals."""

from smmu_driver import Driver, FakeEndpoint

from cosim.arch.commands import CS_IRQ
from cosim.smmu import SmmuOptions


def test_4_5_1_atc_inv_is_ignored_while_smmuen_0():
    """"This command is IGNORED if it is not ILLEGAL and ... SMMUEN is 0": no Invalidate
    Request reaches the endpoint, no command error, the following CMD_SYNC completes."""
    d = Driver().init(smmuen=False)
    ep = FakeEndpoint(mode="never")
    d.smmu.attach_ats_device(3, ep)
    d.cmd("ATC_INV", StreamID=3, Size=0, Address=1)
    d.sync()
    assert ep.received == [] and not d.cmdq_err()
    assert d.trace.kinds("atc_inv") == []
    assert d.trace.kinds("sync")[-1]["state"] == "done"


def test_4_5_1_atc_inv_reaches_the_endpoint_with_smmuen_1():
    d = Driver().init()
    ep = FakeEndpoint()
    d.smmu.attach_ats_device(3, ep)
    d.cmd("ATC_INV", StreamID=3, Size=0, Address=1)
    assert len(ep.received) == 1


def test_4_7_3_sig_irq_asserts_the_wired_output_regardless_of_msiaddress():
    """"On implementations that support wired interrupts, an event on a unique wired
    interrupt output is asserted on this signal, regardless of the value of MSIAddress"."""
    d = Driver().init()
    d.irqs.clear()
    msi = 0x70_0000
    d.sync(cs=CS_IRQ, msi_addr=msi, msi_data=0x1234)
    assert d.mem.read(msi, 4) == (0x1234).to_bytes(4, "little")
    assert d.irqs == [(2, 2)]
    d2 = Driver(SmmuOptions(wired_irqs=False)).init()
    d2.irqs.clear()
    d2.sync(cs=CS_IRQ, msi_addr=msi, msi_data=1)
    assert d2.irqs == []                              # MSI only when no wire is connected


# -- consumption over time (strict mode: SmmuOptions.cmdq_budget, one command per step) -----

def _strict(**kw: object) -> Driver:
    return Driver(SmmuOptions(cache_mode="strict", **kw)).init()  # type: ignore[arg-type]


def _batch(d: Driver, names: list[str]) -> int:
    """Queue a batch as Linux's arm_smmu_cmdq_issue_cmdlist does, one PROD write at its end;
    returns CONS before it."""
    start = d.cons()
    for name in names:
        if name == "CMD_SYNC":
            d.cmd("CMD_SYNC", publish=False, CS=0)
        else:
            d.cmd(name, publish=False)
    d.publish(drain=False)
    return start


def test_3_5_4_batch_is_consumed_over_steps_and_cons_advances_per_command():
    """§3.5: the SMMU consumes from CONS towards PROD in its own time; §6.3.27 CMDQ_CONS.RD
    is the index of the next command to be consumed, so it moves by one each step."""
    d = _strict()
    assert d.opt.cmdq_per_step == 1
    start = _batch(d, ["TLBI_NSNH_ALL", "TLBI_NSNH_ALL", "TLBI_NSNH_ALL", "CMD_SYNC"])
    assert d.cons() == start and d.smmu.busy()      # the PROD write consumed nothing
    seen = []
    for _ in range(4):
        d.step()
        seen.append(d.cons() - start)
    assert seen == [1, 2, 3, 4] and not d.smmu.busy()
    assert d.trace.kinds("sync")[-1]["state"] == "done"


def test_3_5_whole_batch_at_the_prod_write_in_the_other_modes():
    for mode in ("coherent", "caching"):
        d = Driver(SmmuOptions(cache_mode=mode)).init()
        assert d.opt.cmdq_per_step is None
        start = _batch(d, ["TLBI_NSNH_ALL", "TLBI_NSNH_ALL", "CMD_SYNC"])
        assert d.cons() == start + 3
    d = _strict(cmdq_budget=0)                      # strict, with the old behaviour asked for
    start = _batch(d, ["TLBI_NSNH_ALL", "CMD_SYNC"])
    assert d.cons() == start + 2
    d = _strict(cmdq_budget=2)
    start = _batch(d, ["TLBI_NSNH_ALL", "TLBI_NSNH_ALL", "TLBI_NSNH_ALL", "CMD_SYNC"])
    d.step()
    assert d.cons() == start + 2


def test_4_dma_falls_between_two_commands_of_one_batch():
    """A translation served between the CFGI_STE and the CMD_SYNC of one batch still uses
    the cached STE (§4.7.3, strict: the CFGI takes effect when the CMD_SYNC completes), and
    one after the CMD_SYNC sees the new one: the batch did not execute inside one write."""
    from smmu_driver import bypass_ste, s1_cd, s1_ste

    d = _strict()
    ttb = d.s1_tables({0x1000: 0x8000_0000})
    cdtab = d.cd_table(3)
    d.write_cd(cdtab, 0, s1_cd(ttb, asid=5))
    d.write_ste(3, s1_ste(cdtab))
    assert d.xl(3, 0x1000).pa == 0x8000_0000
    d.write_ste(3, bypass_ste(), invalidate=False)
    d.cmd("CFGI_STE", publish=False, StreamID=3, Leaf=1)
    d.cmd("CMD_SYNC", publish=False, CS=0)
    start = d.cons()
    d.publish(drain=False)
    d.step()                                        # CFGI_STE consumed, not yet synced
    assert d.cons() == start + 1
    mid = d.xl(3, 0x1000)
    assert mid.ok and mid.pa == 0x8000_0000          # between the two commands
    recs = d.trace.records
    cfgi = max(i for i, r in enumerate(recs) if r["k"] == "cfgi")
    xlate = max(i for i, r in enumerate(recs) if r["k"] == "xlate")
    assert cfgi < xlate and recs[cfgi]["effect"] == "sync"
    assert not any(r["k"] == "sync" for r in recs[cfgi:])
    d.step()                                        # CMD_SYNC: the CFGI takes effect
    assert d.cons() == start + 2
    after = d.xl(3, 0x1000)
    assert after.pa == 0x1000                       # bypass


def test_4_7_3_sync_completes_only_when_everything_before_it_is_consumed_and_complete():
    """The CMD_SYNC waits for the ATC_INV before it; the commands after it wait for it."""
    d = _strict()
    ep = FakeEndpoint(mode="later")
    d.smmu.attach_ats_device(3, ep)
    d.cmd("ATC_INV", publish=False, StreamID=3, Size=0, Address=1)
    d.cmd("CMD_SYNC", publish=False, CS=0)
    d.cmd("TLBI_NSNH_ALL", publish=False)
    start = d.cons()
    d.publish(drain=False)
    d.step()
    assert d.cons() == start + 1 and len(ep.received) == 1
    for _ in range(3):
        d.step()
        assert d.cons() == start + 1                # SYNC waits; the TLBI is not consumed
    assert d.trace.kinds("sync")[-1]["state"] == "wait"
    ep.finish()
    d.step()
    assert d.cons() == start + 2 and d.trace.kinds("sync")[-1]["state"] == "done"
    d.step()
    assert d.cons() == start + 3


def test_6_3_9_3_cmdqen_clear_stops_consumption_and_a_waiting_sync_signals_nothing():
    """§6.3.9.3: when CMDQEN is cleared, processing stops and CONS shows the first unprocessed
    command. A CMD_SYNC still waiting is not Consumed: no completion (no MSI, no done record),
    CONS stays on it; set CMDQEN again and it is executed anew and completes."""
    d = _strict()
    ep = FakeEndpoint(mode="later")
    d.smmu.attach_ats_device(3, ep)
    d.cmd("ATC_INV", publish=False, StreamID=3, Size=0, Address=1)
    msi = 0x70_0000
    d.cmd("CMD_SYNC", publish=False, CS=CS_IRQ, MSIAddress=msi >> 2, MSIData=0x55)
    d.cmd("TLBI_NSNH_ALL", publish=False)
    start = d.cons()
    d.publish(drain=False)
    d.step()
    d.step()
    assert d.trace.kinds("sync")[-1]["state"] == "wait"
    d.write_cr0(EVENTQEN=1, SMMUEN=1, ATSCHK=1)     # CMDQEN := 0
    assert d.trace.kinds("sync")[-1]["state"] == "stopped"
    ep.finish()
    for _ in range(3):
        d.step()
    assert d.cons() == start + 1 and not d.smmu.busy()
    assert d.mem.read(msi, 4) == bytes(4)           # no completion signalled
    assert not any(r["state"] == "done" and r["idx"] == (start + 1) % 256
                   for r in d.trace.kinds("sync"))
    d.write_cr0(CMDQEN=1, EVENTQEN=1, SMMUEN=1, ATSCHK=1)
    d.drain()
    assert d.cons() == start + 3
    assert d.mem.read(msi, 4) == (0x55).to_bytes(4, "little")
    assert d.trace.kinds("sync")[-1]["state"] == "done"


def test_backend_steps_at_once_while_commands_are_pending():
    """The model's idle loop does not wait for a request while the SMMU has commands to
    consume (SMMUv3.busy): a driver polling a CMD_SYNC's MSI location in memory, which sends
    the model nothing, still sees the batch consumed."""
    from types import SimpleNamespace

    from cosim.backend import Model

    d = _strict()
    model = SimpleNamespace(smmu=d.smmu, endpoints={})
    assert not Model.busy(model)  # type: ignore[arg-type]
    _batch(d, ["TLBI_NSNH_ALL", "CMD_SYNC"])
    assert d.smmu.busy() and Model.busy(model)  # type: ignore[arg-type]
    d.drain()
    assert not d.smmu.busy() and not Model.busy(model)  # type: ignore[arg-type]
