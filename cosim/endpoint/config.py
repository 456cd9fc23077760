"""Config-space mirror: the few control bits of the endpoint's config space the model obeys.

QEMU owns config space and forwards each guest config write (after applying it to its own
copy) as CFG_WRITE; the model applies the written bytes to a shadow and derives the control
bits from it at once. Capability offsets come from the DEVICE message.
"""

from __future__ import annotations

from dataclasses import dataclass

CONFIG_SPACE_SIZE = 4096  # PCIe extended config space

# Command register (PCI Local Bus / PCIe Base spec, Type 0 header).
COMMAND_OFF = 0x04
COMMAND_BME = 1 << 2  # Bus Master Enable: the function may issue memory requests (and MSIs)

# ATS Extended Capability: Capability register at +4 (16 bits), Control register at +6.
ATS_CONTROL = 6
ATS_CONTROL_ENABLE = 1 << 15
ATS_CONTROL_STU_MASK = 0x1F  # Smallest Translation Unit: 2^STU 4 KiB blocks
ATS_INV_QUEUE_DEPTH_MASK = 0x1F  # Capability[4:0]; 0 encodes 32 (PCIe Base §10.5.1.2)
ATS_INV_QUEUE_DEPTH_MAX = 32

# PASID Extended Capability: Control register at +6.
PASID_CONTROL = 6
PASID_CONTROL_ENABLE = 1 << 0

# MSI-X Capability: Message Control at +2.
MSIX_CONTROL = 2
MSIX_CONTROL_ENABLE = 1 << 15
MSIX_CONTROL_FUNCTION_MASK = 1 << 14

STU_BASE_SHIFT = 12


@dataclass(frozen=True)
class CapOffsets:
    """Config-space offsets of the capabilities (0 where the device has none)."""

    pcie: int = 0
    ats: int = 0
    pasid: int = 0
    msix: int = 0


class ConfigMirror:
    """Shadow of config space, fed by CFG_WRITE, exposing the control bits the model obeys."""

    def __init__(self, inv_queue_depth: int = ATS_INV_QUEUE_DEPTH_MAX) -> None:
        self.caps = CapOffsets()
        self.inv_queue_depth = max(1, min(inv_queue_depth, ATS_INV_QUEUE_DEPTH_MAX))
        self._shadow = bytearray(CONFIG_SPACE_SIZE)

    def set_caps(self, caps: CapOffsets) -> None:
        self.caps = caps

    def reset(self) -> None:
        """FLR and system reset return every control bit to 0 (disabled)."""
        self._shadow = bytearray(CONFIG_SPACE_SIZE)

    def write(self, offset: int, size: int, value: int) -> bool:
        """Apply a guest config write; False (and nothing applied) when it is malformed."""
        if size not in (1, 2, 4) or offset < 0 or offset + size > CONFIG_SPACE_SIZE:
            return False
        value &= (1 << (8 * size)) - 1
        self._shadow[offset:offset + size] = value.to_bytes(size, "little")
        return True

    def _u16(self, offset: int) -> int:
        return int.from_bytes(self._shadow[offset:offset + 2], "little")

    # -- derived control bits -----------------------------------------------------------------

    @property
    def bus_master(self) -> bool:
        return bool(self._u16(COMMAND_OFF) & COMMAND_BME)

    @property
    def ats_enabled(self) -> bool:
        return bool(self.caps.ats) and bool(self._u16(self.caps.ats + ATS_CONTROL)
                                            & ATS_CONTROL_ENABLE)

    @property
    def stu(self) -> int:
        """The STU field (log2 of the number of 4 KiB blocks); 0 without an ATS capability."""
        if not self.caps.ats:
            return 0
        return self._u16(self.caps.ats + ATS_CONTROL) & ATS_CONTROL_STU_MASK

    @property
    def stu_bytes(self) -> int:
        return 1 << (STU_BASE_SHIFT + self.stu)

    @property
    def pasid_enabled(self) -> bool:
        return bool(self.caps.pasid) and bool(self._u16(self.caps.pasid + PASID_CONTROL)
                                              & PASID_CONTROL_ENABLE)

    @property
    def msix_enabled(self) -> bool:
        return bool(self.caps.msix) and bool(self._u16(self.caps.msix + MSIX_CONTROL)
                                             & MSIX_CONTROL_ENABLE)

    @property
    def msix_function_mask(self) -> bool:
        return bool(self.caps.msix) and bool(self._u16(self.caps.msix + MSIX_CONTROL)
                                             & MSIX_CONTROL_FUNCTION_MASK)

    def summary(self) -> dict[str, object]:
        """The fields of the `cfg` trace record that describe the resulting state."""
        return {"bme": self.bus_master, "ats": self.ats_enabled, "stu": self.stu,
                "pasid_en": self.pasid_enabled, "msix_en": self.msix_enabled}
