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
