"""The link's guest memory: DMA through QEMU's shared RAM mapping, or over the socket.

`LinkMemory` implements the model's `cosim.memory.GuestMemory` interface on top of the link
(docs/protocol.md "Shared guest RAM"); the backend hands it to the SMMU and the endpoints.
"""

from __future__ import annotations

import errno
import mmap
import os
from typing import Any, Protocol

from cosim.link.protocol import DEFAULT_MAX_DMA, DmaFlags, Message, MsgType, status_name
from cosim.memory import BusError

# Guest physical addresses are 64-bit; a range running past that decodes to nothing.
ADDR_LIMIT = 1 << 64


class SharedRam:
    """Guest RAM `[base, base+size)` mapped from QEMU's shared memory-backend file.

    Accesses here are plain loads and stores on the mapping, exactly what QEMU's own DMA to
    RAM does; the caller checks `contains` first.
    """

    def __init__(self, path: str, base: int, size: int) -> None:
        """Map `size` bytes of `path`; raise OSError (with the reason) when that cannot be done."""
        if size <= 0:
            raise OSError(errno.EINVAL, "shared RAM size is 0", path)
        try:
            fd = os.open(path, os.O_RDWR)
        except ValueError as e:  # e.g. an embedded NUL
            raise OSError(errno.EINVAL, str(e), path) from None
        try:
            st = os.fstat(fd)
            if st.st_size < size:
                raise OSError(errno.EINVAL,
                              f"file has {st.st_size} bytes, QEMU says RAM is {size}", path)
            self._map = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        self.path = path
        self.base = base
        self.size = size
        self.end = base + size

    def contains(self, addr: int, length: int) -> bool:
        return self.base <= addr and addr + length <= self.end

    def read(self, addr: int, length: int) -> bytes:
        off = addr - self.base
        return self._map[off:off + length]

    def write(self, addr: int, data: bytes) -> None:
        off = addr - self.base
        self._map[off:off + len(data)] = data

    def close(self) -> None:
        self._map.close()


class DmaPort(Protocol):
    """What LinkMemory needs from the link: the shared mapping (if any) and model requests."""

    shared_ram: SharedRam | None

    def request(self, mtype: MsgType, **fields: Any) -> Message: ...


class LinkMemory:
    """GuestMemory over the cosim link (docs/protocol.md "Shared guest RAM").

    A DMA whose whole range lies in the shared RAM mapping is done on the mapping; anything
    else (the ITS doorbell, other MMIO, RAM when sharing was not accepted) goes to QEMU as
    DMA_READ/DMA_WRITE. QEMU refuses a DMA longer than its max-dma, so longer transfers are
    split into max_dma chunks, each one a separate bus transaction the way a PCIe device
    splits a long DMA into several TLPs: a chunk that fails raises BusError, and the chunks
    before it have been performed. With split=False a long transfer is refused (TOO_BIG)
    before anything is sent.
    """

    def __init__(self, link: DmaPort, max_dma: int = DEFAULT_MAX_DMA, split: bool = True) -> None:
        if max_dma <= 0:
            raise ValueError("max_dma must be positive")
        self.link = link
        self.max_dma = max_dma
        self.split = split

    def _check(self, addr: int, length: int) -> None:
        if length < 0 or addr < 0 or addr + length > ADDR_LIMIT:
            raise BusError(addr, length, "DECODE_ERROR")
        if length > self.max_dma and not self.split:
            raise BusError(addr, length, "TOO_BIG")

    def read(self, addr: int, length: int, rid: int = 0) -> bytes:
        self._check(addr, length)
        ram = self.link.shared_ram
        if ram is not None and ram.contains(addr, length):
            return ram.read(addr, length)
        out = bytearray()
        for pos in range(0, length, self.max_dma):
            n = min(self.max_dma, length - pos)
            reply = self.link.request(MsgType.DMA_READ, rid=rid, flags=0, len=n, addr=addr + pos)
            if not reply.ok:
                raise BusError(addr + pos, n, status_name(reply.status))
            if len(reply.data) != n:
                raise BusError(addr + pos, n, "MALFORMED")
            out += reply.data
        return bytes(out)

    def write(self, addr: int, data: bytes, rid: int = 0, msi: bool = False) -> None:
        length = len(data)
        self._check(addr, length)
        ram = self.link.shared_ram
        if ram is not None and ram.contains(addr, length):
            ram.write(addr, data)
            return
        flags = int(DmaFlags.MSI) if msi else 0
        view = memoryview(data)
        for pos in range(0, length, self.max_dma):
            chunk = bytes(view[pos:pos + self.max_dma])
            reply = self.link.request(MsgType.DMA_WRITE, rid=rid, flags=flags, len=len(chunk),
                                      addr=addr + pos, data=chunk)
            if not reply.ok:
                raise BusError(addr + pos, len(chunk), status_name(reply.status))
