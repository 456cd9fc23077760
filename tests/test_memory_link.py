"""LinkMemory: shared-RAM mapping, socket DMA, chunking, errors; both paths give the same data."""

from __future__ import annotations

import mmap
import os

import pytest
import zmq
from test_transport_fakeqemu import ThreadedQemu, inproc_address

from cosim.link.memory import LinkMemory, SharedRam
from cosim.link.protocol import Message, MsgType, Status
from cosim.link.transport import Link
from cosim.memory import BusError

CTX = zmq.Context.instance()
RAM_BASE = 0x4000_0000
RAM_SIZE = 1 << 20


class FakePort:
    """A DmaPort without sockets: records requests, serves them from a dict of pages."""

    def __init__(self, shared_ram: SharedRam | None = None) -> None:
        self.shared_ram = shared_ram
        self.requests: list[tuple[MsgType, dict]] = []
        self.fail_at: int | None = None
        self.short = False
        self.store: dict[int, int] = {}

    def request(self, mtype: MsgType, **fields) -> Message:
        self.requests.append((mtype, fields))
        if self.fail_at is not None and fields["addr"] <= self.fail_at < \
                fields["addr"] + fields["len"]:
            return Message(mtype, 1, True, Status.ACCESS_ERROR)
        if mtype is MsgType.DMA_READ:
            n = fields["len"] - (1 if self.short else 0)
            data = bytes(self.store.get(fields["addr"] + i, 0) for i in range(n))
            return Message(mtype, 1, True, Status.OK, {"data": data})
        for i, b in enumerate(fields["data"]):
            self.store[fields["addr"] + i] = b
        return Message(mtype, 1, True, Status.OK, {})


@pytest.fixture
def ram_file(tmp_path):
    path = tmp_path / "ram"
    with open(path, "wb") as f:
        f.write(os.urandom(RAM_SIZE))
    return str(path)


def test_shared_ram_maps_and_writes_through(ram_file) -> None:
    ram = SharedRam(ram_file, RAM_BASE, RAM_SIZE)
    assert ram.contains(RAM_BASE, RAM_SIZE) and not ram.contains(RAM_BASE - 1, 2)
    assert not ram.contains(RAM_BASE + RAM_SIZE - 4, 8)
    ram.write(RAM_BASE + 100, b"hello")
    ram.close()
    with open(ram_file, "rb") as f:
        f.seek(100)
        assert f.read(5) == b"hello"


def test_shared_ram_refuses_a_short_file(ram_file) -> None:
    with pytest.raises(OSError, match="QEMU says RAM is"):
        SharedRam(ram_file, 0, RAM_SIZE * 2)
    with pytest.raises(OSError):
        SharedRam(ram_file + ".missing", 0, 4096)


def test_in_ram_dma_does_not_touch_the_socket(ram_file) -> None:
    port = FakePort(SharedRam(ram_file, RAM_BASE, RAM_SIZE))
    mem = LinkMemory(port)
    mem.write(RAM_BASE + 8, b"\x01\x02", rid=5)
    assert mem.read(RAM_BASE + 8, 2) == b"\x01\x02"
    assert port.requests == []
    # straddling the end of RAM: whole access over the socket
    mem.read(RAM_BASE + RAM_SIZE - 2, 4, rid=5)
    assert port.requests == [(MsgType.DMA_READ, dict(rid=5, flags=0, len=4,
                                                     addr=RAM_BASE + RAM_SIZE - 2))]


def test_socket_dma_carries_rid_and_msi_flag() -> None:
    port = FakePort()
    mem = LinkMemory(port)
    mem.write(0x0809_0040, b"\x03\x00\x00\x00", rid=0x10, msi=True)
    mtype, fields = port.requests[0]
    assert mtype is MsgType.DMA_WRITE and fields["rid"] == 0x10 and fields["flags"] == 1
    mem.write(0x1000, b"x", rid=0x11)
    assert port.requests[1][1]["flags"] == 0
    assert mem.read(0x0809_0040, 4, rid=0x10) == b"\x03\x00\x00\x00"


def test_long_transfers_are_split_into_max_dma_chunks() -> None:
    port = FakePort()
    mem = LinkMemory(port, max_dma=16)
    data = bytes(range(40))
    mem.write(0x100, data, rid=1)
    assert [(f["addr"], f["len"]) for _, f in port.requests] == [(0x100, 16), (0x110, 16),
                                                                (0x120, 8)]
    port.requests.clear()
    assert mem.read(0x100, 40) == data
    assert [f["len"] for _, f in port.requests] == [16, 16, 8]


def test_refuse_instead_of_split() -> None:
    port = FakePort()
    mem = LinkMemory(port, max_dma=16, split=False)
    with pytest.raises(BusError) as info:
        mem.read(0, 17)
    assert info.value.status == "TOO_BIG" and port.requests == []


def test_error_reply_raises_bus_error_at_the_failing_chunk() -> None:
    port = FakePort()
    port.fail_at = 0x118
    mem = LinkMemory(port, max_dma=16)
    with pytest.raises(BusError) as info:
        mem.write(0x100, bytes(48))
    assert (info.value.addr, info.value.length, info.value.status) == (0x110, 16, "ACCESS_ERROR")
    assert len(port.requests) == 2   # the third chunk was never sent
    with pytest.raises(BusError):
        mem.read(0x116, 4)


def test_short_read_reply_is_a_bus_error() -> None:
    port = FakePort()
    port.short = True
    with pytest.raises(BusError) as info:
        LinkMemory(port).read(0, 8)
    assert info.value.status == "MALFORMED"


def test_out_of_range_addresses_decode_to_nothing() -> None:
    mem = LinkMemory(FakePort())
    with pytest.raises(BusError):
        mem.read((1 << 64) - 4, 8)
    with pytest.raises(BusError):
        mem.read(0, -1)


def test_shared_ram_and_socket_give_identical_data(ram_file) -> None:
    """The fake QEMU serves DMA from the very file the model maps: both paths must agree."""
    fd = os.open(ram_file, os.O_RDWR)
    backing = mmap.mmap(fd, RAM_SIZE)
    os.close(fd)
    link = Link(inproc_address(), context=CTX, timeout_ms=5000)
    link.bind()
    peer = ThreadedQemu(link.endpoint, CTX, backing, base=RAM_BASE)
    peer.start()
    try:
        socket_mem = LinkMemory(link)   # no HELLO: no shared RAM, everything over the socket
        shared = SharedRam(ram_file, RAM_BASE, RAM_SIZE)
        cases = [(RAM_BASE, 1), (RAM_BASE + 4093, 7), (RAM_BASE + 0x1234, 65536 + 100),
                 (RAM_BASE + RAM_SIZE - 64, 64), (RAM_BASE + 0x8000, 200_000)]
        for addr, n in cases:
            via_socket = socket_mem.read(addr, n, rid=3)
            link.shared_ram = shared
            via_map = socket_mem.read(addr, n, rid=3)
            link.shared_ram = None
            assert via_socket == via_map and len(via_map) == n
        assert len(peer.requests) == sum(-(-n // 65536) for _, n in cases)
        # a write over the socket is seen through the mapping, and the other way round
        socket_mem.write(RAM_BASE + 0x300, b"over the socket", rid=3)
        assert shared.read(RAM_BASE + 0x300, 15) == b"over the socket"
        shared.write(RAM_BASE + 0x400, b"through the map")
        assert socket_mem.read(RAM_BASE + 0x400, 15) == b"through the map"
        shared.close()
    finally:
        peer.stop()
        link.close()
        backing.close()
