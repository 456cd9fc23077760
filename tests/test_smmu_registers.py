"""Register file: ID registers from SmmuOptions, acknowledgement handshakes, GBPA, aliases."""

from smmu_driver import Driver

from cosim.arch.domain import ABORT, BYPASS
from cosim.arch.registers import BY_NAME, CR0, GBPA, IDR0, IDR1, IDR3, IDR5, PAGE1
from cosim.smmu import SmmuOptions


def test_default_id_registers_advertise_the_brief_features():
    d = Driver()
    idr0 = IDR0.decode(d.rd("IDR0"))
    assert idr0["S1P"] == 1 and idr0["S2P"] == 1 and idr0["ATS"] == 1
    assert idr0["TTF"] == 2 and idr0["TTENDIAN"] == 2        # AArch64, little-endian
    assert idr0["COHACC"] == 1 and idr0["SEV"] == 1 and idr0["MSI"] == 1
    assert idr0["ASID16"] == 1 and idr0["VMID16"] == 1
    assert idr0["ST_LEVEL"] == 1 and idr0["CD2L"] == 1
    assert IDR1.get(d.rd("IDR1"), "SSIDSIZE") == 16
    idr5 = IDR5.decode(d.rd("IDR5"))
    assert idr5["OAS"] == 5 and idr5["GRAN4K"] and idr5["GRAN16K"] and idr5["GRAN64K"]
    assert IDR3.get(d.rd("IDR3"), "RIL") == 1


def test_options_present_other_hardware():
    d = Driver(SmmuOptions(ats=False, stage2=False, ssid_bits=8, st_2level=False,
                           gran16k=False, oas_bits=40))
    idr0 = IDR0.decode(d.rd("IDR0"))
    assert idr0["ATS"] == 0 and idr0["S2P"] == 0 and idr0["ST_LEVEL"] == 0
    assert IDR1.get(d.rd("IDR1"), "SSIDSIZE") == 8
    idr5 = IDR5.decode(d.rd("IDR5"))
    assert idr5["OAS"] == 2 and idr5["GRAN16K"] == 0


def test_id_registers_are_read_only():
    d = Driver()
    before = d.rd("IDR0")
    d.wr("IDR0", 0)
    assert d.rd("IDR0") == before


def test_cr0_ack_and_irq_ctrl_ack():
    d = Driver()
    d.wr("CR0", CR0.encode(CMDQEN=1, EVENTQEN=1))
    assert d.rd("CR0ACK") == CR0.encode(CMDQEN=1, EVENTQEN=1)
    d.wr("IRQ_CTRL", 0b101)
    assert d.rd("IRQ_CTRLACK") == 0b101


def test_gbpa_only_changes_with_update():
    d = Driver()
    d.wr("GBPA", GBPA.encode(ABORT=1))            # UPDATE=0: ignored
    assert GBPA.get(d.rd("GBPA"), "ABORT") == 0
    d.wr("GBPA", GBPA.encode(ABORT=1, UPDATE=1))
    v = d.rd("GBPA")
    assert GBPA.get(v, "ABORT") == 1 and GBPA.get(v, "UPDATE") == 0


def test_gbpa_abort_and_bypass_with_smmu_disabled():
    d = Driver().init(smmuen=False)
    t = d.xl(1, 0x5000)
    assert t.ok and t.pa == 0x5000 and t.dom == BYPASS
    d.gbpa(abort=True)
    t = d.xl(1, 0x5000)
    assert not t.ok and t.dom == ABORT and t.fault is None
    assert d.event_names() == []          # GBPA aborts are not recorded


def test_page1_and_page0_aliases_of_event_queue_pointers():
    d = Driver()
    d.smmu.mmio_write(PAGE1 + 0xAC, 4, 0x5)
    assert d.smmu.mmio_read(0xAC, 4) == 0x5
    assert d.smmu.mmio_read(BY_NAME["EVENTQ_CONS"].offset, 4) == 0x5


def test_64bit_register_halves():
    d = Driver()
    off = BY_NAME["STRTAB_BASE"].offset
    d.smmu.mmio_write(off, 4, 0x1234_5640)
    d.smmu.mmio_write(off + 4, 4, 0x4000_00AB)
    assert d.smmu.mmio_read(off, 8) == 0x4000_00AB_1234_5640
    assert d.smmu.mmio_read(off + 4, 4) == 0x4000_00AB


def test_unimplemented_offsets_raz_wi():
    d = Driver()
    # 0xE00 is the model's DRV_EVENT register; the rest of the IMPDEF space is unimplemented.
    d.smmu.mmio_write(0xEF0, 4, 0xFFFF_FFFF)
    assert d.smmu.mmio_read(0xEF0, 4) == 0


def test_mmio_trace_records():
    d = Driver()
    d.rd("IDR1")
    rec = d.trace.kinds("mmio")[-1]
    assert rec["rw"] == "r" and rec["off"] == 4 and rec["size"] == 4 and rec["dev"] == 0
