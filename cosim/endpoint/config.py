"""Config-space mirror: the few control bits of the endpoint's config space the model obeys.

QEMU owns config space and forwards each guest config write (after applying it to its own
copy) as CFG_WRITE; the model applies the written bytes to a shadow and derives the control
bits from it at once. Capability offsets come from the DEVICE message; the capability layouts
are declared in cosim/arch/pcie.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from cosim.arch.pcie import (
    ATS_CONTROL,
    ATS_CTRL,
    ATS_INV_QUEUE_DEPTH_MAX,
    COMMAND,
    COMMAND_OFF,
    CONFIG_SPACE_SIZE,
    MSIX_CONTROL,
    MSIX_CTRL,
    PASID_CONTROL,
    PASID_CTRL,
    STU_BASE_SHIFT,
)

# Control bits, derived once from the capability layouts in cosim/arch/pcie.py.
_BME = COMMAND["BME"].mask
_ATS_ENABLE = ATS_CTRL["ENABLE"].mask
_ATS_STU = ATS_CTRL["STU"]
_PASID_ENABLE = PASID_CTRL["ENABLE"].mask
_MSIX_ENABLE = MSIX_CTRL["ENABLE"].mask
_MSIX_FUNCTION_MASK = MSIX_CTRL["FUNCTION_MASK"].mask


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
        return bool(self._u16(COMMAND_OFF) & _BME)

    @property
    def ats_enabled(self) -> bool:
        return bool(self.caps.ats) and bool(self._u16(self.caps.ats + ATS_CONTROL)
                                            & _ATS_ENABLE)

    @property
    def stu(self) -> int:
        """The STU field (log2 of the number of 4 KiB blocks); 0 without an ATS capability."""
        if not self.caps.ats:
            return 0
        return _ATS_STU.get(self._u16(self.caps.ats + ATS_CONTROL))

    @property
    def stu_bytes(self) -> int:
        return 1 << (STU_BASE_SHIFT + self.stu)

    @property
    def pasid_enabled(self) -> bool:
        return bool(self.caps.pasid) and bool(self._u16(self.caps.pasid + PASID_CONTROL)
                                              & _PASID_ENABLE)

    @property
    def msix_enabled(self) -> bool:
        return bool(self.caps.msix) and bool(self._u16(self.caps.msix + MSIX_CONTROL)
                                             & _MSIX_ENABLE)

    @property
    def msix_function_mask(self) -> bool:
        return bool(self.caps.msix) and bool(self._u16(self.caps.msix + MSIX_CONTROL)
                                             & _MSIX_FUNCTION_MASK)

    def summary(self) -> dict[str, object]:
        """The fields of the `cfg` trace record that describe the resulting state."""
        return {"bme": self.bus_master, "ats": self.ats_enabled, "stu": self.stu,
                "pasid_en": self.pasid_enabled, "msix_en": self.msix_enabled}
