"""SMMUv3 programming interface: register offsets, field layouts and the register table
(Arm IHI 0070 §6).

Every register is declared once here, with its layout; the device (cosim/smmu/smmu.py) decides
what a write does, and reads and writes named fields through these layouts; the test driver
builds register values from them.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import driver_events
from .bitfield import Layout

# Page 1 (offset 0x10000) holds the queue PROD/CONS registers that software on another
# privilege level may own (§6.2); page 0 keeps aliases of them at the same page offsets.
PAGE1 = 0x10000
MMIO_SIZE = 0x20000

# -- layouts (§6.3) -------------------------------------------------------------------------
IDR0 = Layout("IDR0", 32, {
    "S2P": 0, "S1P": 1, "TTF": (3, 2), "COHACC": 4, "BTM": 5, "HTTU": (7, 6), "DORMHINT": 8,
    "HYP": 9, "ATS": 10, "NS1ATS": 11, "ASID16": 12, "MSI": 13, "SEV": 14, "ATOS": 15,
    "PRI": 16, "VMW": 17, "VMID16": 18, "CD2L": 19, "VATOS": 20, "TTENDIAN": (22, 21),
    "ATSRECERR": 23, "STALL_MODEL": (25, 24), "TERM_MODEL": 26, "ST_LEVEL": (28, 27),
})
IDR1 = Layout("IDR1", 32, {
    "SIDSIZE": (5, 0), "SSIDSIZE": (10, 6), "PRIQS": (15, 11), "EVENTQS": (20, 16),
    "CMDQS": (25, 21), "ATTR_PERMS_OVR": 26, "ATTR_TYPES_OVR": 27, "REL": 28,
    "QUEUES_PRESET": 29, "TABLES_PRESET": 30, "ECMDQ": 31,
})
IDR2 = Layout("IDR2", 32, {"BA_VATOS": (9, 0)})
IDR3 = Layout("IDR3", 32, {
    "HAD": 2, "PBHA": 3, "XNX": 4, "PPS": 5, "MPAM": 7, "FWB": 8, "STT": 9, "RIL": 10,
    "BBML": (12, 11), "E0PD": 13, "PTWNNC": 14,
})
IDR4 = Layout("IDR4", 32, {"IMPDEF": (31, 0)})
IDR5 = Layout("IDR5", 32, {
    "OAS": (2, 0), "GRAN4K": 4, "GRAN16K": 5, "GRAN64K": 6, "VAX": (11, 10),
    "STALL_MAX": (31, 16),
})
IIDR = Layout("IIDR", 32, {
    "Implementer": (11, 0), "Revision": (15, 12), "Variant": (19, 16), "ProductID": (31, 20),
})
AIDR = Layout("AIDR", 32, {"ArchMinorRev": (3, 0), "ArchMajorRev": (7, 4)})
CR0 = Layout("CR0", 32, {
    "SMMUEN": 0, "PRIQEN": 1, "EVENTQEN": 2, "CMDQEN": 3, "ATSCHK": 4, "VMW": (8, 6),
})
CR1 = Layout("CR1", 32, {
    "QUEUE_IC": (1, 0), "QUEUE_OC": (3, 2), "QUEUE_SH": (5, 4),
    "TABLE_IC": (7, 6), "TABLE_OC": (9, 8), "TABLE_SH": (11, 10),
})
CR2 = Layout("CR2", 32, {"E2H": 0, "RECINVSID": 1, "PTM": 2, "REC_CFG_ATS": 3})
STATUSR = Layout("STATUSR", 32, {"DORMANT": 0})
GBPA = Layout("GBPA", 32, {
    "MEMATTR": (3, 0), "MTCFG": 4, "ALLOCCFG": (11, 8), "SHCFG": (13, 12),
    "PRIVCFG": (17, 16), "INSTCFG": (19, 18), "ABORT": 20, "UPDATE": 31,
})
IRQ_CTRL = Layout("IRQ_CTRL", 32, {"GERROR_IRQEN": 0, "PRIQ_IRQEN": 1, "EVENTQ_IRQEN": 2})
GERROR = Layout("GERROR", 32, {
    "CMDQ_ERR": 0, "EVENTQ_ABT_ERR": 2, "PRIQ_ABT_ERR": 3, "MSI_CMDQ_ABT_ERR": 4,
    "MSI_EVENTQ_ABT_ERR": 5, "MSI_PRIQ_ABT_ERR": 6, "MSI_GERROR_ABT_ERR": 7, "SFM_ERR": 8,
    "CMDQP_ERR": 9,
})
IRQ_CFG0 = Layout("IRQ_CFG0", 64, {"ADDR": (51, 2)})
IRQ_CFG1 = Layout("IRQ_CFG1", 32, {"DATA": (31, 0)})
IRQ_CFG2 = Layout("IRQ_CFG2", 32, {"MEMATTR": (3, 0), "SH": (5, 4)})
STRTAB_BASE = Layout("STRTAB_BASE", 64, {"ADDR": (51, 6), "RA": 62})
STRTAB_BASE_CFG = Layout("STRTAB_BASE_CFG", 32, {
    "LOG2SIZE": (5, 0), "SPLIT": (10, 6), "FMT": (17, 16),
})
Q_BASE = Layout("Q_BASE", 64, {"LOG2SIZE": (4, 0), "ADDR": (51, 5), "RWA": 62})
CMDQ_PROD = Layout("CMDQ_PROD", 32, {"WR": (19, 0)})
CMDQ_CONS = Layout("CMDQ_CONS", 32, {"RD": (19, 0), "ERR": (30, 24)})
EVTQ_PROD = Layout("EVTQ_PROD", 32, {"WR": (19, 0), "OVFLG": 31})
EVTQ_CONS = Layout("EVTQ_CONS", 32, {"RD": (19, 0), "OVACKFLG": 31})

# Encodings used by the logic.
TTF_AARCH64 = 2
TTENDIAN_LE = 2
STALL_MODEL_TERMINATE_ONLY = 1   # IDR0.STALL_MODEL=0b01: stalls not supported (§6.3.1)
STRTAB_FMT_LINEAR = 0
STRTAB_FMT_2LVL = 1

# IDR5.OAS encodings (§6.3.6), shared by STE.S2PS (§5.2) and CD.IPS (§5.4): bits -> value.
OAS_ENCODING = {32: 0, 36: 1, 40: 2, 42: 3, 44: 4, 48: 5, 52: 6}
PS_BITS = {v: k for k, v in OAS_ENCODING.items()}


@dataclass(frozen=True)
class Reg:
    name: str
    offset: int
    size: int          # bytes: 4 or 8
    layout: Layout
    writable: bool


def _r(name: str, off: int, layout: Layout, writable: bool = True) -> Reg:
    return Reg(name, off, layout.nbits // 8, layout, writable)


REGISTERS: tuple[Reg, ...] = (
    _r("IDR0", 0x00, IDR0, False), _r("IDR1", 0x04, IDR1, False),
    _r("IDR2", 0x08, IDR2, False), _r("IDR3", 0x0C, IDR3, False),
    _r("IDR4", 0x10, IDR4, False), _r("IDR5", 0x14, IDR5, False),
    _r("IIDR", 0x18, IIDR, False), _r("AIDR", 0x1C, AIDR, False),
    _r("CR0", 0x20, CR0), _r("CR0ACK", 0x24, CR0, False),
    _r("CR1", 0x28, CR1), _r("CR2", 0x2C, CR2),
    _r("STATUSR", 0x40, STATUSR, False), _r("GBPA", 0x44, GBPA),
    _r("IRQ_CTRL", 0x50, IRQ_CTRL), _r("IRQ_CTRLACK", 0x54, IRQ_CTRL, False),
    _r("GERROR", 0x60, GERROR, False), _r("GERRORN", 0x64, GERROR),
    _r("GERROR_IRQ_CFG0", 0x68, IRQ_CFG0), _r("GERROR_IRQ_CFG1", 0x70, IRQ_CFG1),
    _r("GERROR_IRQ_CFG2", 0x74, IRQ_CFG2),
    _r("STRTAB_BASE", 0x80, STRTAB_BASE), _r("STRTAB_BASE_CFG", 0x88, STRTAB_BASE_CFG),
    _r("CMDQ_BASE", 0x90, Q_BASE), _r("CMDQ_PROD", 0x98, CMDQ_PROD),
    _r("CMDQ_CONS", 0x9C, CMDQ_CONS),
    _r("EVENTQ_BASE", 0xA0, Q_BASE), _r("EVENTQ_PROD", PAGE1 + 0xA8, EVTQ_PROD),
    _r("EVENTQ_CONS", PAGE1 + 0xAC, EVTQ_CONS),
    _r("EVENTQ_IRQ_CFG0", 0xB0, IRQ_CFG0), _r("EVENTQ_IRQ_CFG1", 0xB8, IRQ_CFG1),
    _r("EVENTQ_IRQ_CFG2", 0xBC, IRQ_CFG2),
    _r("PRIQ_BASE", 0xC0, Q_BASE), _r("PRIQ_PROD", PAGE1 + 0xC8, EVTQ_PROD),
    _r("PRIQ_CONS", PAGE1 + 0xCC, EVTQ_CONS),
    _r("PRIQ_IRQ_CFG0", 0xD0, IRQ_CFG0), _r("PRIQ_IRQ_CFG1", 0xD8, IRQ_CFG1),
    _r("PRIQ_IRQ_CFG2", 0xDC, IRQ_CFG2),
    # The model's own register in the IMPLEMENTATION DEFINED page-0 space (§6.2).
    _r("DRV_EVENT", driver_events.OFFSET, driver_events.DRV_EVENT),
    _r("DRV_ARG0", driver_events.ARG0_OFFSET, driver_events.DRV_ARG),
    _r("DRV_ARG1", driver_events.ARG1_OFFSET, driver_events.DRV_ARG),
)
BY_NAME: dict[str, Reg] = {r.name: r for r in REGISTERS}

# Page-0 aliases of the page-1 queue registers (§6.2: "SMMU_EVENTQ_PROD ... also at 0x000A8").
ALIASES: dict[int, str] = {
    0xA8: "EVENTQ_PROD", 0xAC: "EVENTQ_CONS", 0xC8: "PRIQ_PROD", 0xCC: "PRIQ_CONS",
}


def lookup(offset: int) -> tuple[Reg, int] | None:
    """The register covering byte `offset`, and the byte offset inside it."""
    name = ALIASES.get(offset & ~0x3)
    if name is not None:
        return BY_NAME[name], offset & 0x3
    for reg in _SORTED:
        if reg.offset <= offset < reg.offset + reg.size:
            return reg, offset - reg.offset
    return None


_SORTED = sorted(REGISTERS, key=lambda r: r.offset)
