"""PCIe configuration-space structures the endpoint obeys or advertises (PCI Express Base
Specification): the Type 0 header's Command register, the PCI Express Capability's Device
Capabilities 2, and the ATS, PASID and MSI-X capabilities, plus the MSI-X table entry.

Offsets are from the start of each capability (the DEVICE message gives where each one sits,
docs/protocol.md); QEMU owns config space, the model mirrors the control bits
(cosim/endpoint/config.py).
"""

from __future__ import annotations

from .bitfield import Layout

CONFIG_SPACE_SIZE = 4096  # PCIe extended config space

# Type 0 header, Command register (offset 0x04).
COMMAND_OFF = 0x04
COMMAND = Layout("Command", 16, {
    "IO": 0,                 # I/O Space Enable
    "MEM": 1,                # Memory Space Enable
    "BME": 2,                # Bus Master Enable: the function may issue memory requests (MSIs)
    "PARITY": 6,             # Parity Error Response
    "SERR": 8,               # SERR# Enable
    "INTX_DISABLE": 10,      # Interrupt Disable
})

# PCI Express Capability, Device Capabilities 2 (+0x24). QEMU's patch sets End-End TLP Prefix
# Supported, without which Linux does not enable PASID on the function (docs/endpoint.md).
PCIE_DEVCAP2 = 0x24
DEVCAP2 = Layout("DEVCAP2", 32, {
    "EXT_FMT": 20,                   # Extended Fmt Field Supported
    "E2E_PREFIX": 21,                # End-End TLP Prefix Supported
    "MAX_E2E_PREFIXES": (23, 22),    # Max End-End TLP Prefixes (0 encodes 4)
})

# ATS Extended Capability (§10.5.1): Capability register at +4, Control register at +6.
ATS_CAPABILITY = 4
ATS_CAP = Layout("ATS Capability", 16, {
    "INV_QUEUE_DEPTH": (4, 0),       # Invalidate Queue Depth; 0 encodes 32 (§10.5.1.2)
    "PAGE_ALIGNED_REQ": 5,
    "GLOBAL_INV": 6,
})
ATS_INV_QUEUE_DEPTH_MAX = 32
ATS_CONTROL = 6
ATS_CTRL = Layout("ATS Control", 16, {
    "STU": (4, 0),                   # Smallest Translation Unit: 2^STU 4 KiB blocks
    "ENABLE": 15,
})
STU_BASE_SHIFT = 12

# PASID Extended Capability: Control register at +6.
PASID_CONTROL = 6
PASID_CTRL = Layout("PASID Control", 16, {"ENABLE": 0, "EXEC": 1, "PRIV": 2})
PASID_BITS = 20  # a PASID is 20 bits wide (End-End TLP Prefix)

# MSI-X Capability: Message Control at +2.
MSIX_CONTROL = 2
MSIX_CTRL = Layout("MSI-X Message Control", 16, {
    "TABLE_SIZE": (10, 0),           # N - 1
    "FUNCTION_MASK": 14,
    "ENABLE": 15,
})

# MSI-X table entry: four dwords, Message Address (low, high), Message Data, Vector Control.
MSIX_ENTRY = Layout("MSI-X table entry", 128, {
    "ADDR_LO": (31, 0),              # bits [1:0] are 0: dword-aligned
    "ADDR_HI": (63, 32),
    "DATA": (95, 64),
    "MASKED": 96,                    # Vector Control bit 0: Mask (resets to 1)
})
MSIX_ENTRY_SIZE = MSIX_ENTRY.nbytes
# Byte offsets of the entry's dwords, and the Mask bit inside Vector Control.
MSIX_ENTRY_ADDR_LO = MSIX_ENTRY["ADDR_LO"].lo // 8
MSIX_ENTRY_ADDR_HI = MSIX_ENTRY["ADDR_HI"].lo // 8
MSIX_ENTRY_DATA = MSIX_ENTRY["DATA"].lo // 8
MSIX_ENTRY_CTRL = MSIX_ENTRY["MASKED"].lo // 32 * 4
MSIX_CTRL_MASKED = 1 << MSIX_ENTRY["MASKED"].lo % 32
