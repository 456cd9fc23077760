"""The cosim-pcie-ep register map (docs/endpoint.md), declared once.

The same table decodes guest MMIO in the model (cosim/endpoint) and generates the C header the
guest tests and the guest kernel module include (`python -m cosim.arch.endpoint_regs
--c-header`; `python -m cosim.endpoint.regs --c-header`, the command the committed header
names, runs the same generator), so the two can never disagree. Register fields are
`Layout`s; the IntEnums the model and the header use name their bits.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from enum import IntEnum

from .bitfield import Layout
from .pcie import (
    MSIX_CTRL_MASKED,
    MSIX_ENTRY_ADDR_HI,
    MSIX_ENTRY_ADDR_LO,
    MSIX_ENTRY_CTRL,
    MSIX_ENTRY_DATA,
    MSIX_ENTRY_SIZE,
    PASID_BITS,
)

# ---------------------------------------------------------------------------------------------
# BARs
BAR_REGS = 0
BAR_MSIX = 2
BAR_REGS_SIZE = 0x10000
BAR_MSIX_SIZE = 0x1000

ID_VALUE = 0x50455343  # "CSEP"
VERSION_VALUE = 1


@dataclass(frozen=True)
class Reg:
    """One register: `count` > 1 declares an array of consecutive registers of `width` bits."""

    name: str
    offset: int
    width: int  # bits: 32 or 64
    access: str  # "RO", "RW", "W" (write-only action, reads 0)
    doc: str
    count: int = 1

    @property
    def nbytes(self) -> int:
        return self.width // 8

    @property
    def span(self) -> int:
        return self.nbytes * self.count


REGISTERS: tuple[Reg, ...] = (
    # Identification and control
    Reg("ID", 0x000, 32, "RO", 'identification, 0x50455343 ("CSEP")'),
    Reg("VERSION", 0x004, 32, "RO", "register map version"),
    Reg("CAPS", 0x008, 32, "RO", "capabilities (CAPS_*)"),
    Reg("ATC_SIZE", 0x00C, 32, "RO", "ATC capacity in entries"),
    Reg("RESET", 0x010, 32, "W", "write 1: stop engines, clear the ATC and counters"),
    # Markers
    Reg("MARKER_TAG", 0x040, 32, "RW", "marker tag (MARKER_TAG_*)"),
    Reg("MARKER_VALUE", 0x048, 64, "RW", "writing the last byte records the marker"),
    Reg("MARKER_LABEL", 0x060, 32, "RW", "32 bytes of ASCII label, NUL padded", count=8),
    # DMA engine
    Reg("DMA_OP", 0x100, 32, "RW", "operation (DMA_OP_*)"),
    Reg("DMA_FLAGS", 0x104, 32, "RW", "flags (DMA_FLAG_*)"),
    Reg("DMA_SRC", 0x108, 64, "RW", "source IOVA"),
    Reg("DMA_DST", 0x110, 64, "RW", "destination IOVA"),
    Reg("DMA_LEN", 0x118, 64, "RW", "length in bytes"),
    Reg("DMA_PATTERN", 0x120, 64, "RW", "8-byte fill pattern"),
    Reg("DMA_PASID", 0x128, 32, "RW", "PASID when DMA_FLAG_PASID"),
    Reg("DMA_DOORBELL", 0x12C, 32, "W", "write 1 to run the descriptor"),
    Reg("DMA_STATUS", 0x130, 32, "RO", "status (DMA_STATUS_*, error code in 15:8)"),
    Reg("DMA_RESULT", 0x138, 64, "RO", "bytes done before the error / first difference"),
    # Traffic generator
    Reg("TG_CTRL", 0x200, 32, "RW", "control (TG_CTRL_*)"),
    Reg("TG_BASE", 0x208, 64, "RW", "base IOVA"),
    Reg("TG_SIZE", 0x210, 64, "RW", "window size in bytes"),
    Reg("TG_STRIDE", 0x218, 32, "RW", "bytes between records (>= 32)"),
    Reg("TG_RATE", 0x21C, 32, "RW", "records per poll (0 = 1)"),
    Reg("TG_PASID", 0x220, 32, "RW", "PASID when TG_CTRL_PASID"),
    Reg("TG_TAG", 0x228, 64, "RW", "tag written into each record"),
    Reg("TG_SEQ", 0x230, 64, "RO", "next sequence number"),
    Reg("TG_WRITES", 0x238, 64, "RO", "records written"),
    Reg("TG_XLATE_FAIL", 0x240, 64, "RO", "translation failures"),
    Reg("TG_ABORTS", 0x248, 64, "RO", "DMA aborted by the SMMU or the bus"),
    Reg("TG_ATS_ERR", 0x250, 64, "RO", "ATS protocol errors"),
    Reg("TG_MISMATCH", 0x258, 64, "RO", "read-back mismatches"),
    # Counters
    Reg("CNT_ATS_REQ", 0x300, 64, "RO", "ATS translation requests sent"),
    Reg("CNT_ATC_HIT", 0x308, 64, "RO", "ATC hits"),
    Reg("CNT_ATC_MISS", 0x310, 64, "RO", "ATC misses"),
    Reg("CNT_INV_REQ", 0x318, 64, "RO", "ATS invalidation requests received"),
    Reg("CNT_INV_CPL", 0x320, 64, "RO", "ATS invalidation completions returned"),
    Reg("CNT_BM_DROP", 0x328, 64, "RO", "DMA not issued: Bus Master Enable off"),
    Reg("CNT_ATS_DROP", 0x330, 64, "RO", "ATS traffic not issued: ATS Enable off"),
    Reg("CNT_FAULTS", 0x338, 64, "RO", "translation failures and aborts"),
    Reg("CNT_BAD_MMIO", 0x340, 64, "RO", "accesses to unknown offsets or with a bad size"),
)

COUNTERS: tuple[str, ...] = tuple(r.name for r in REGISTERS if r.name.startswith("CNT_"))
TG_COUNTERS: tuple[str, ...] = ("TG_WRITES", "TG_XLATE_FAIL", "TG_ABORTS", "TG_ATS_ERR",
                                "TG_MISMATCH")

BY_NAME: dict[str, Reg] = {r.name: r for r in REGISTERS}


def _build_index() -> dict[int, Reg]:
    index: dict[int, Reg] = {}
    for r in REGISTERS:
        for off in range(r.offset, r.offset + r.span, 4):
            assert off not in index, f"register overlap at {off:#x}"
            index[off] = r
    return index


_BY_DWORD = _build_index()


@dataclass(frozen=True)
class Decoded:
    """An access resolved to a register: `index` within an array, byte `shift` within it."""

    reg: Reg
    index: int
    shift: int  # bit position of the access inside the register value


def decode(offset: int, size: int) -> Decoded | None:
    """Resolve a BAR0 access, or None when it is not an architected access to a register.

    32-bit registers take 32-bit accesses; 64-bit registers take a 64-bit access or a 32-bit
    access to either half (docs/endpoint.md, BARs).
    """
    if size not in (4, 8) or offset % size:
        return None
    reg = _BY_DWORD.get(offset)
    if reg is None:
        return None
    rel = offset - reg.offset
    index, within = divmod(rel, reg.nbytes)
    if size > reg.nbytes or within + size > reg.nbytes:
        return None
    return Decoded(reg, index, within * 8)


# ---------------------------------------------------------------------------------------------
# Field values: each register's fields declared once as a Layout; the enums name its bits.

CAPS = Layout("CAPS", 32, {"DMA": 0, "TG": 1, "ATS": 2, "PASID": 3})
DMA_FLAGS = Layout("DMA_FLAGS", 32, {"ATS": 0, "PASID": 1, "IRQ": 2})
DMA_STATUS = Layout("DMA_STATUS", 32, {"DONE": 0, "ERROR": 1, "MISCOMPARE": 2, "ERR": (15, 8)})
TG_CTRL = Layout("TG_CTRL", 32, {"RUN": 0, "ATS": 1, "PASID": 2, "READBACK": 3})
PASID_REG = Layout("DMA_PASID/TG_PASID", 32, {"PASID": (PASID_BITS - 1, 0)})


class Caps(IntEnum):
    DMA = CAPS["DMA"].mask
    TG = CAPS["TG"].mask
    ATS = CAPS["ATS"].mask
    PASID = CAPS["PASID"].mask


class MarkerTag(IntEnum):
    ATTACH_BEGIN = 1
    ATTACH_END = 2
    UNMAP_BEGIN = 3
    UNMAP_END = 4
    TEST_BEGIN = 5
    TEST_END = 6
    LABEL = 7
    PASID_ATTACH_BEGIN = 8
    PASID_ATTACH_END = 9

    @property
    def trace_name(self) -> str:
        """The tag as it appears in `marker` trace records, e.g. 'attach-begin'."""
        return self.name.lower().replace("_", "-")


MARKER_LABEL_BYTES = 32


class DmaOp(IntEnum):
    COPY = 1
    FILL = 2
    COMPARE = 3


class DmaFlag(IntEnum):
    ATS = DMA_FLAGS["ATS"].mask
    PASID = DMA_FLAGS["PASID"].mask
    IRQ = DMA_FLAGS["IRQ"].mask


class DmaStatus(IntEnum):
    DONE = DMA_STATUS["DONE"].mask
    ERROR = DMA_STATUS["ERROR"].mask
    MISCOMPARE = DMA_STATUS["MISCOMPARE"].mask


DMA_STATUS_ERR_SHIFT = DMA_STATUS["ERR"].lo
DMA_STATUS_ERR_MASK = DMA_STATUS["ERR"].max


class DmaErr(IntEnum):
    """DMA_STATUS bits 15:8."""

    NONE = 0
    XLATE = 1  # translation fault or abort (SMMU or bus)
    ATS = 2  # ATS translation request failed (UR/CA completion)
    BME = 3  # Bus Master Enable off
    ATS_OFF = 4  # ATS requested while ATS Enable is off
    BAD_DESC = 5  # bad descriptor (op, length, PASID without PASID Enable)


class TgCtrl(IntEnum):
    RUN = TG_CTRL["RUN"].mask
    ATS = TG_CTRL["ATS"].mask
    PASID = TG_CTRL["PASID"].mask
    READBACK = TG_CTRL["READBACK"].mask


TG_RECORD_MAGIC = 0x3143455254475343  # "CSTGREC1"
TG_RECORD_SIZE = 32
PASID_MASK = PASID_REG["PASID"].mask

# MSI-X BAR (BAR2): this device's table and PBA placement; the entry layout is PCIe's
# (cosim/arch/pcie.py).
MSIX_VECTORS = 16
MSIX_TABLE_OFF = 0x000
MSIX_PBA_OFF = 0x800


class MsixVector(IntEnum):
    DMA_DONE = 0
    ERROR = 1


# ---------------------------------------------------------------------------------------------
# C header

_ENUMS: tuple[tuple[str, type[IntEnum]], ...] = (
    ("CAPS", Caps),
    ("MARKER_TAG", MarkerTag),
    ("DMA_OP", DmaOp),
    ("DMA_FLAG", DmaFlag),
    ("DMA_STATUS", DmaStatus),
    ("DMA_ERR", DmaErr),
    ("TG_CTRL", TgCtrl),
    ("MSIX_VEC", MsixVector),
)

_CONSTANTS: tuple[tuple[str, int], ...] = (
    ("BAR_REGS", BAR_REGS),
    ("BAR_REGS_SIZE", BAR_REGS_SIZE),
    ("BAR_MSIX", BAR_MSIX),
    ("BAR_MSIX_SIZE", BAR_MSIX_SIZE),
    ("ID_VALUE", ID_VALUE),
    ("VERSION_VALUE", VERSION_VALUE),
    ("MARKER_LABEL_BYTES", MARKER_LABEL_BYTES),
    ("DMA_STATUS_ERR_SHIFT", DMA_STATUS_ERR_SHIFT),
    ("DMA_STATUS_ERR_MASK", DMA_STATUS_ERR_MASK),
    ("TG_RECORD_MAGIC", TG_RECORD_MAGIC),
    ("TG_RECORD_SIZE", TG_RECORD_SIZE),
    ("PASID_MASK", PASID_MASK),
    ("MSIX_VECTORS", MSIX_VECTORS),
    ("MSIX_TABLE_OFF", MSIX_TABLE_OFF),
    ("MSIX_ENTRY_SIZE", MSIX_ENTRY_SIZE),
    ("MSIX_ENTRY_ADDR_LO", MSIX_ENTRY_ADDR_LO),
    ("MSIX_ENTRY_ADDR_HI", MSIX_ENTRY_ADDR_HI),
    ("MSIX_ENTRY_DATA", MSIX_ENTRY_DATA),
    ("MSIX_ENTRY_CTRL", MSIX_ENTRY_CTRL),
    ("MSIX_CTRL_MASKED", MSIX_CTRL_MASKED),
    ("MSIX_PBA_OFF", MSIX_PBA_OFF),
)

PREFIX = "COSIM_EP_"


# The committed header names the entry point it was first generated with; keeping the text
# keeps the header byte-identical (it is an input of the cached guest kernel build, whose
# module includes it), and that entry point still runs this generator.
_GENERATOR = "python -m cosim.endpoint.regs --c-header"
_SOURCE = "cosim/endpoint/regs.py"


def c_header() -> str:
    """The guest-tests header: register offsets, widths and field values."""
    out = [
        "/* SPDX-License-Identifier: MIT */",
        f"/* cosim-pcie-ep register map. GENERATED by `{_GENERATOR}`",
        f" * from {_SOURCE} (docs/endpoint.md). Do not edit. */",
        "#ifndef COSIM_EP_H",
        "#define COSIM_EP_H",
        "",
        "#define COSIM_EP_VENDOR_ID 0x1b36",
        "#define COSIM_EP_DEVICE_ID 0x0120",
        "",
        "/* BAR0 registers: offset, width in bits (_W), array length (_N) */",
    ]
    for r in REGISTERS:
        out.append(f"#define {PREFIX}{r.name:<20} 0x{r.offset:03x} /* {r.access}: {r.doc} */")
        out.append(f"#define {PREFIX}{r.name + '_W':<20} {r.width}")
        if r.count > 1:
            out.append(f"#define {PREFIX}{r.name + '_N':<20} {r.count}")
    out.append("")
    out.append("/* Constants */")
    for name, value in _CONSTANTS:
        text = f"0x{value:x}ULL" if value > 0xFFFFFFFF else f"0x{value:x}"
        out.append(f"#define {PREFIX}{name:<20} {text}")
    for group, enum in _ENUMS:
        out.append("")
        out.append(f"/* {enum.__name__} */")
        for member in enum:
            name = f"{group}_{member.name}"
            out.append(f"#define {PREFIX}{name:<20} 0x{int(member):x}")
    out.append("")
    out.append("#endif /* COSIM_EP_H */")
    names = [line.split()[1] for line in out if line.startswith("#define")]
    assert len(names) == len(set(names)), "duplicate macro names in the C header"
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--c-header", action="store_true", help="print the C header")
    args = ap.parse_args(argv)
    if args.c_header:
        sys.stdout.write(c_header())
        return 0
    for r in REGISTERS:
        print(f"{r.offset:#06x} {r.width:2d}{'x' + str(r.count) if r.count > 1 else '':3s} "
              f"{r.access:2s} {r.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
