"""VMSAv8-64 translation table descriptor layouts, declared once for decoding and encoding.

The SMMU walks the same long-descriptor format as the PE (Arm IHI 0070 §3.4, "the SMMU uses
the VMSAv8-64 translation table format"); the bit positions come from the Arm ARM
(DDI 0487, "VMSAv8-64 translation table format descriptors"). Each layout is a
`cosim.arch.bitfield.Layout` with the Arm ARM's bit numbers; the walker derives its masks and
shifts from these same fields once, at import, and tests build page tables with `encode()`, so
there is one source of truth for every bit.
"""

from __future__ import annotations

from .bitfield import Layout

DESC_BYTES = 8  # every VMSAv8-64 descriptor is one little-endian 64-bit word
DESC_SIZE_LOG2 = 3
FINAL_LEVEL = 3
MAX_S2_CONCAT_LOG2 = 4  # a stage 2 starting level may concatenate up to 16 tables

GRANULE_BITS = {4096: 12, 16384: 14, 65536: 16}

# Bits common to every descriptor: bit 0 valid, bit 1 type (table/page = 1, block = 0).
# Output / next-table address: bits [47:granule]. Bits [51:48] are OA[51:48] with the 64 KB
# granule under FEAT_LPA, where they live in bits [15:12] instead (OA_HI_64K), overlaying the
# low ADDR bits that a 64 KB-aligned address leaves zero.
_COMMON: dict[str, tuple[int, int] | int] = {"VALID": 0, "TYPE": 1, "ADDR": (47, 12)}
_OA_HI: dict[str, tuple[int, int] | int] = {"OA_HI_64K": (15, 12)}
_OA_HI_OVERLAP = (("ADDR", "OA_HI_64K"),)
OA_HI_64K_DEST = 48  # OA bit that OA_HI_64K's lsb supplies

TABLE = Layout("table", 64, {
    **_COMMON,
    "PXNTABLE": 59,
    "UXNTABLE": 60,             # XNTable at stage 1 regimes with one privilege level
    "APTABLE": (62, 61),        # [0]: no EL0 access below, [1]: no write below
    "NSTABLE": 63,
})

S1_LEAF = Layout("stage 1 block/page", 64, {
    **_COMMON, **_OA_HI,
    "ATTRINDX": (4, 2),
    "NS": 5,
    "AP": (7, 6),               # AP[2:1]
    "SH": (9, 8),
    "AF": 10,
    "NG": 11,
    "DBM": 51,
    "CONTIG": 52,
    "PXN": 53,
    "UXN": 54,
}, overlaps=_OA_HI_OVERLAP)

S2_LEAF = Layout("stage 2 block/page", 64, {
    **_COMMON, **_OA_HI,
    "MEMATTR": (5, 2),          # MemAttr[3:0]; [3:2] == 0b00 is Device memory (S2FWB=0)
    "S2AP": (7, 6),             # [0]: read allowed, [1]: write allowed
    "SH": (9, 8),
    "AF": 10,
    "DBM": 51,
    "CONTIG": 52,
    "XN": 54,                   # XN[1] (FEAT_XNX's XN[0], bit 53, is not implemented)
}, overlaps=_OA_HI_OVERLAP)

VALID = TABLE["VALID"]
TYPE = TABLE["TYPE"]
ADDR = TABLE["ADDR"]
OA_HI_64K = S1_LEAF["OA_HI_64K"]
assert all(L[n] == f for L in (S1_LEAF, S2_LEAF) for n, f in
           (("VALID", VALID), ("TYPE", TYPE), ("ADDR", ADDR), ("OA_HI_64K", OA_HI_64K)))

# Stage 1 AP[2:1] decode (Arm ARM "Data access permissions"): (privileged, unprivileged) rights
# as (read, write) pairs.
AP_RW_PRIV_ONLY = 0b00
AP_RW_ANY = 0b01
AP_RO_PRIV_ONLY = 0b10
AP_RO_ANY = 0b11
S1_AP_RIGHTS = {
    AP_RW_PRIV_ONLY: ((True, True), (False, False)),
    AP_RW_ANY: ((True, True), (True, True)),
    AP_RO_PRIV_ONLY: ((True, False), (False, False)),
    AP_RO_ANY: ((True, False), (True, False)),
}
APTABLE_NO_EL0 = 0b01
APTABLE_NO_WRITE = 0b10

S2AP_READ = 0b01
S2AP_WRITE = 0b10
S2_MEMATTR_DEVICE_MASK = 0b1100  # MemAttr[3:2] == 0b00 selects Device memory


def table_desc(next_table: int, **attrs: int) -> int:
    """Encode a table descriptor pointing at `next_table` (a granule-aligned address)."""
    return TABLE.encode(VALID=1, TYPE=1, **attrs) | _addr_bits(next_table)


def s1_leaf(oa: int, *, page: bool, af: int = 1, ap: int = AP_RW_ANY, **attrs: int) -> int:
    """Encode a stage 1 block (`page=False`) or page (`page=True`) descriptor for `oa`."""
    return S1_LEAF.encode(VALID=1, TYPE=int(page), AF=af, AP=ap, **attrs) | _addr_bits(oa)


def s2_leaf(oa: int, *, page: bool, af: int = 1, s2ap: int = S2AP_READ | S2AP_WRITE,
            memattr: int = 0b1111, **attrs: int) -> int:
    """Encode a stage 2 block or page descriptor for `oa` (default Normal WB memory, RW)."""
    return (S2_LEAF.encode(VALID=1, TYPE=int(page), AF=af, S2AP=s2ap, MEMATTR=memattr, **attrs)
            | _addr_bits(oa))


def oa_bits_64k(oa: int) -> int:
    """Descriptor bits for a 52-bit output address with the 64 KB granule (FEAT_LPA)."""
    low = oa & ADDR.mask & ~((1 << GRANULE_BITS[65536]) - 1)
    return low | ((oa >> OA_HI_64K_DEST) << OA_HI_64K.lo)


def _addr_bits(addr: int) -> int:
    # Addresses above 48 bits only fit the 64 KB layout; callers use oa_bits_64k() for them.
    if addr & ~ADDR.mask:
        raise ValueError(f"{addr:#x} is not a 4 KB-aligned address below 2**48")
    return addr


def s1_start_level(granule: int, tsz: int) -> int:
    """Stage 1 initial lookup level: the fewest levels that resolve 64 - TxSZ address bits."""
    gbits = GRANULE_BITS[granule]
    stride = gbits - DESC_SIZE_LOG2
    return FINAL_LEVEL + 1 - (64 - tsz - gbits + stride - 1) // stride


def s2_start_level(granule: int, sl0: int) -> int:
    """Stage 2 initial lookup level from STE.S2SL0 (§5.2): 4 KB counts from 2, others from 3."""
    return (2 if granule == 4096 else 3) - sl0


class TableBuilder:
    """Writes a translation table tree into memory (tests and bring-up; not used by walks).

    `map(ia, level, desc)` places a descriptor for input address `ia` at `level`, creating the
    intermediate tables it needs from a bump allocator starting at `base`. The start table is
    sized for concatenation when the start level resolves more than one table's worth of bits.
    """

    def __init__(self, mem, granule: int, tsz: int, start_level: int, base: int,
                 table_attrs: dict[int, dict[str, int]] | None = None) -> None:
        self.mem = mem
        self.granule = granule
        self.gbits = GRANULE_BITS[granule]
        self.stride = self.gbits - DESC_SIZE_LOG2
        self.ia_bits = 64 - tsz
        self.start = start_level
        self.next_free = base
        self.table_attrs = table_attrs or {}
        self.tables: dict[tuple[int, int], int] = {}
        self.root = self.alloc(max(self._entries(start_level) * DESC_BYTES, granule))

    def shift(self, level: int) -> int:
        return self.gbits + (FINAL_LEVEL - level) * self.stride

    def _entries(self, level: int) -> int:
        width = self.ia_bits - self.shift(level) if level == self.start else self.stride
        return 1 << width

    def alloc(self, nbytes: int) -> int:
        align = max(self.granule, nbytes)
        addr = (self.next_free + align - 1) & ~(align - 1)
        self.next_free = addr + nbytes
        return addr

    def entry_addr(self, ia: int, level: int) -> int:
        """Address of `ia`'s descriptor at `level`, creating the tables above it."""
        table = self.root
        for lvl in range(self.start, level + 1):
            idx = (ia >> self.shift(lvl)) & (self._entries(lvl) - 1)
            slot = table + idx * DESC_BYTES
            if lvl == level:
                return slot
            key = (lvl, ia >> self.shift(lvl))
            if key not in self.tables:
                self.tables[key] = self.alloc(self.granule)
                desc = table_desc(self.tables[key], **self.table_attrs.get(lvl, {}))
                self.mem.write(slot, desc.to_bytes(DESC_BYTES, "little"))
            table = self.tables[key]
        raise ValueError(f"level {level} is above the start level {self.start}")

    def map(self, ia: int, level: int, desc: int) -> int:
        """Write `desc` as `ia`'s descriptor at `level`; returns the descriptor's address."""
        slot = self.entry_addr(ia, level)
        self.mem.write(slot, desc.to_bytes(DESC_BYTES, "little"))
        return slot
