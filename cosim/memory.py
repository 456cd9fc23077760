"""Guest physical memory as the model sees it: the one interface every model part uses for DMA.

The SMMU and the endpoint depend on this interface only, never on how an access reaches guest
RAM. The link's implementation (shared RAM mapping, DMA over the socket) is
`cosim.link.memory.LinkMemory`, which the backend wires in; `SparseMemory` is the in-process
one for unit tests. Nothing here may import `cosim.link` (tests/test_layering.py checks).
"""

from __future__ import annotations

from typing import Protocol


class BusError(Exception):
    """A DMA access that the bus refused (decode or target error); nothing was transferred."""

    def __init__(self, addr: int, length: int, status: str) -> None:
        super().__init__(f"bus error {status} at {addr:#x}+{length:#x}")
        self.addr = addr
        self.length = length
        self.status = status


class GuestMemory(Protocol):
    """Physical memory accesses issued on behalf of a requester ID (already translated)."""

    def read(self, addr: int, length: int, rid: int = 0) -> bytes: ...

    def write(self, addr: int, data: bytes, rid: int = 0, msi: bool = False) -> None: ...


def read_or_none(mem: GuestMemory, addr: int, length: int) -> bytes | None:
    """Exactly `length` bytes at `addr`, or None on an external abort (a BusError).

    A short read from a misbehaving memory supplies zero upper bytes, as a byte-wise decode of
    a table entry would, so a decoder never sees the wrong length.
    """
    try:
        data = mem.read(addr, length)
    except BusError:
        return None
    if type(data) is not bytes or len(data) != length:
        data = bytes(data[:length]).ljust(length, b"\0")
    return data


class SparseMemory:
    """In-process memory for unit tests: sparse 4 KiB pages, optional address limit."""

    PAGE = 4096

    def __init__(self, size: int = 1 << 48, base: int = 0) -> None:
        self.base = base
        self.size = size
        self.pages: dict[int, bytearray] = {}
        self.writes: list[tuple[int, bytes, int, bool]] = []

    def _check(self, addr: int, length: int) -> None:
        if addr < self.base or addr + length > self.base + self.size or length < 0:
            raise BusError(addr, length, "DECODE_ERROR")

    def read(self, addr: int, length: int, rid: int = 0) -> bytes:
        self._check(addr, length)
        out = bytearray()
        while length:
            page, off = divmod(addr, self.PAGE)
            n = min(length, self.PAGE - off)
            buf = self.pages.get(page)
            out += buf[off:off + n] if buf is not None else bytes(n)
            addr += n
            length -= n
        return bytes(out)

    def write(self, addr: int, data: bytes, rid: int = 0, msi: bool = False) -> None:
        self._check(addr, len(data))
        self.writes.append((addr, bytes(data), rid, msi))
        pos = 0
        while pos < len(data):
            page, off = divmod(addr + pos, self.PAGE)
            n = min(len(data) - pos, self.PAGE - off)
            buf = self.pages.setdefault(page, bytearray(self.PAGE))
            buf[off:off + n] = data[pos:pos + n]
            pos += n

    def read_u64(self, addr: int) -> int:
        return int.from_bytes(self.read(addr, 8), "little")

    def write_u64(self, addr: int, value: int) -> None:
        self.write(addr, value.to_bytes(8, "little"))
