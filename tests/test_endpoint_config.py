"""Endpoint config-space mirror: Command, ATS, PASID and MSI-X control, applied at once."""

from __future__ import annotations

from cosim.endpoint.config import CapOffsets, ConfigMirror

ATS, PASID, MSIX = 0x100, 0x120, 0x60


def mirror() -> ConfigMirror:
    c = ConfigMirror()
    c.set_caps(CapOffsets(pcie=0x40, ats=ATS, pasid=PASID, msix=MSIX))
    return c


def test_reset_state_all_disabled() -> None:
    c = mirror()
    assert c.summary() == {"bme": False, "ats": False, "stu": 0, "pasid_en": False,
                           "msix_en": False}


def test_bus_master_byte_word_dword_writes() -> None:
    c = mirror()
    c.write(0x04, 1, 0x04)
    assert c.bus_master
    c.write(0x04, 2, 0x02)
    assert not c.bus_master
    c.write(0x04, 4, 0xFFFF0006)  # dword write also covers Status
    assert c.bus_master


def test_ats_enable_and_stu() -> None:
    c = mirror()
    c.write(ATS + 6, 2, 0x8000 | 3)
    assert c.ats_enabled and c.stu == 3 and c.stu_bytes == 32768
    c.write(ATS + 4, 4, 0x0000_0020)  # dword at +4: capability low half, control high half
    assert not c.ats_enabled and c.stu == 0


def test_pasid_and_msix_control() -> None:
    c = mirror()
    c.write(PASID + 6, 2, 1)
    assert c.pasid_enabled
    c.write(MSIX + 2, 2, 0xC000)
    assert c.msix_enabled and c.msix_function_mask
    c.write(MSIX + 3, 1, 0x80)  # byte write to the high byte of Message Control
    assert c.msix_enabled and not c.msix_function_mask


def test_absent_capability_never_enabled() -> None:
    c = ConfigMirror()
    c.set_caps(CapOffsets(pcie=0x40))
    c.write(6, 2, 0xFFFF)  # offset 0 + 6 must not be read as ATS Control
    assert not c.ats_enabled and not c.pasid_enabled and not c.msix_enabled


def test_malformed_writes_rejected() -> None:
    c = mirror()
    assert not c.write(0x04, 3, 4)
    assert not c.write(4095, 2, 0xFFFF)
    assert not c.bus_master


def test_reset_clears_controls() -> None:
    c = mirror()
    c.write(0x04, 2, 4)
    c.write(ATS + 6, 2, 0x8000)
    c.reset()
    assert not c.bus_master and not c.ats_enabled


def test_inv_queue_depth_clamped() -> None:
    assert ConfigMirror(0).inv_queue_depth == 1
    assert ConfigMirror(64).inv_queue_depth == 32
