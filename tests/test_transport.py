"""The model's link against a fake QEMU: handshake, bad input, queueing, timeouts, BYE."""

from __future__ import annotations

import logging
import os
import stat
import struct
import time

import pytest
import zmq
from test_transport_fakeqemu import FakeQemu, ThreadedQemu, inproc_address

from cosim.link.protocol import MAJOR, Caps, Message, MsgType, Status, encode
from cosim.link.transport import (
    Link,
    LinkClosed,
    LinkError,
    LinkTimeout,
    RequestError,
    VersionMismatch,
    resolve_address,
)
from cosim.trace import TraceWriter, read_trace

CTX = zmq.Context.instance()


class Recorder:
    """A handler that records what it served."""

    def __init__(self) -> None:
        self.seen: list[Message] = []

    def __call__(self, msg: Message) -> dict | None:
        self.seen.append(msg)
        if msg.type is MsgType.MMIO_READ:
            return {"value": 0x1234 + msg.offset}
        if msg.type is MsgType.RESET and msg.kind > 1:
            raise RequestError(Status.ACCESS_ERROR, "no such reset kind")
        if msg.type is MsgType.CFG_WRITE and msg.offset == 0xbad:
            raise ZeroDivisionError("model bug")
        return None


@pytest.fixture
def pair(tmp_path):
    handler = Recorder()
    trace = TraceWriter(tmp_path / "trace.jsonl")
    link = Link(inproc_address(), handler=handler, context=CTX, timeout_ms=300, trace=trace,
                log=logging.getLogger("test.link"))
    link.bind()
    peer = FakeQemu(link.endpoint, CTX)
    yield link, peer, handler, trace
    peer.close()
    link.close()


def hello(peer: FakeQemu, **over) -> int:
    fields = dict(minor=0, caps=0, ram_base=0, ram_size=0, ram_path="")
    fields.update(over)
    return peer.send(MsgType.HELLO, **fields)


def test_hello_without_shared_ram(pair, tmp_path) -> None:
    link, peer, _, trace = pair
    seq = hello(peer, minor=5, caps=Caps.SHARED_RAM)
    assert link.poll(1000) == 1
    reply = peer.recv()
    assert (reply.type, reply.seq, reply.ok) == (MsgType.HELLO, seq, True)
    assert reply.minor == 0 and reply.caps == 0 and reply.max_dma == 65536
    assert reply.name == "cosim-model"
    assert link.shared_ram is None and link.session.minor == 0
    trace.close()
    rec = [r for r in read_trace(tmp_path / "trace.jsonl").records if r["k"] == "link"]
    assert rec[0]["event"] == "hello" and rec[0]["shared_ram"] is False


def test_hello_with_shared_ram_maps_the_file(pair, tmp_path) -> None:
    link, peer, _, _ = pair
    ram = tmp_path / "ram"
    ram.write_bytes(b"\x5a" * 8192)
    hello(peer, caps=Caps.SHARED_RAM | 0x80, ram_base=0x4000_0000, ram_size=8192,
          ram_path=str(ram))
    link.poll(1000)
    reply = peer.recv()
    assert reply.caps == Caps.SHARED_RAM   # unknown bit 7 not accepted
    assert link.shared_ram is not None and link.shared_ram.read(0x4000_0010, 2) == b"ZZ"


def test_hello_with_unmappable_ram_falls_back_to_socket(pair, tmp_path, caplog) -> None:
    link, peer, _, _ = pair
    with caplog.at_level(logging.WARNING, "test.link"):
        hello(peer, caps=Caps.SHARED_RAM, ram_base=0, ram_size=4096,
              ram_path=str(tmp_path / "missing"))
        link.poll(1000)
    assert peer.recv().caps == 0 and link.shared_ram is None
    assert any("cannot be mapped" in r.message for r in caplog.records)


def test_hello_wrong_major_replies_bad_version_and_stops(pair, caplog) -> None:
    link, peer, _, _ = pair
    frame = bytearray(encode(MsgType.HELLO, 1, minor=0, caps=0, ram_base=0, ram_size=0,
                             ram_path=""))
    frame[2] = MAJOR + 1
    peer.send_raw(bytes(frame))
    with caplog.at_level(logging.WARNING, "test.link"), pytest.raises(VersionMismatch):
        link.poll(1000)
    reply = peer.recv()
    assert reply.status == Status.BAD_VERSION and reply.major == MAJOR
    assert any(f"protocol major {MAJOR + 1} not supported (model speaks {MAJOR})" in r.message
               for r in caplog.records)


def test_requests_reach_the_handler_and_get_replies(pair) -> None:
    link, peer, handler, _ = pair
    seq = peer.send(MsgType.MMIO_READ, dev=0, region=0, size=4, offset=0x20)
    link.poll(1000)
    reply = peer.recv()
    assert (reply.seq, reply.value) == (seq, 0x1254)
    peer.send(MsgType.RESET, dev=1, kind=7)
    link.poll(1000)
    assert peer.recv().status == Status.ACCESS_ERROR
    peer.send(MsgType.CFG_WRITE, dev=1, size=4, offset=0xbad, value=0)
    link.poll(1000)
    assert peer.recv().status == Status.INTERNAL
    assert len(handler.seen) == 3


@pytest.mark.parametrize("frame, status", [
    (b"\x53\x43\x01", None),                                     # truncated header
    (b"\x00\x00" + bytes(30), None),                              # bad magic
    (encode(MsgType.MMIO_READ, 9, dev=0, region=0, size=4, offset=0)[:-3], Status.MALFORMED),
    (encode(MsgType.MMIO_READ, 9, dev=0, region=0, size=4, offset=0) + b"!", Status.MALFORMED),
    (b"\x53\x43\x01\x2a" + bytes(4) + (9).to_bytes(8, "little"), Status.UNKNOWN_TYPE),
    (encode(MsgType.DMA_READ, 9, rid=0, flags=0, len=4, addr=0), Status.UNKNOWN_TYPE),
])
def test_bad_input_gets_error_reply_or_log_and_nothing_else(pair, caplog, frame,
                                                            status) -> None:
    link, peer, handler, _ = pair
    with caplog.at_level(logging.WARNING, "test.link"):
        peer.send_raw(frame)
        link.poll(1000)
    assert len([r for r in caplog.records if r.name == "test.link"]) == 1
    assert handler.seen == []
    if status is None:
        assert peer.recv_raw(50) is None
    else:
        raw = peer.recv_raw()
        magic, _, type_byte, got, seq = struct.unpack("<HBBIQ", raw)
        assert len(raw) == 16 and type_byte == frame[3] | 0x80
        assert (got, seq) == (status, 9)
    # the link still works afterwards
    peer.send(MsgType.MMIO_READ, dev=0, region=0, size=4, offset=0)
    link.poll(1000)
    assert peer.recv().value == 0x1234


def test_unexpected_reply_is_dropped(pair, caplog) -> None:
    link, peer, handler, _ = pair
    with caplog.at_level(logging.WARNING, "test.link"):
        peer.send_raw(encode(MsgType.DMA_READ, 99, reply=True, data=b"x"))
        link.poll(1000)
    assert peer.recv_raw(50) is None and link.errors == 1
    assert "unexpected" in caplog.records[-1].message


def test_bye_replies_and_closes(pair) -> None:
    link, peer, _, _ = pair
    seq = peer.send(MsgType.BYE)
    with pytest.raises(LinkClosed):
        link.poll(1000)
    reply = peer.recv()
    assert (reply.type, reply.seq, reply.ok) == (MsgType.BYE, seq, True)


def test_qemu_request_during_dma_wait_is_queued_then_served() -> None:
    handler = Recorder()
    addr = inproc_address()
    link = Link(addr, handler=handler, context=CTX, timeout_ms=2000)
    link.bind()
    mem = bytearray(range(256))
    peer = ThreadedQemu(link.endpoint, CTX, mem)
    crossing: list[int] = []

    def cross(msg: Message) -> list[bytes]:
        # A vCPU MMIO that was already on its way when the model's DMA went out.
        crossing.append(1)
        return [encode(MsgType.MMIO_READ, 50, dev=1, region=0, size=4, offset=8)]

    peer.before_reply = cross
    peer.start()
    try:
        reply = link.request(MsgType.DMA_READ, rid=3, flags=0, len=4, addr=16)
        assert reply.ok and reply.data == bytes([16, 17, 18, 19])
        assert handler.seen == [] and link.pending == 1     # not re-entered during the DMA
        assert link.poll(0) == 1
        mmio = peer.replies.get(timeout=2)
        assert (mmio.seq, mmio.value) == (50, 0x1234 + 8)
        assert peer.requests[0].rid == 3
    finally:
        peer.stop()
        link.close()


def test_bye_while_waiting_for_a_dma_reply() -> None:
    link = Link(inproc_address(), handler=Recorder(), context=CTX, timeout_ms=2000)
    link.bind()
    peer = ThreadedQemu(link.endpoint, CTX, bytearray(16))
    peer.before_reply = lambda msg: [encode(MsgType.BYE, 1)]
    peer.silent = False
    peer.start()
    try:
        # The peer sends BYE before the reply: the model stops waiting and the session ends.
        with pytest.raises(LinkClosed):
            link.request(MsgType.IRQ, dev=0, line=0, level=2)
    finally:
        peer.stop()
        link.close()


def test_timeout_when_qemu_goes_silent(tmp_path, caplog) -> None:
    trace = TraceWriter(tmp_path / "t.jsonl")
    link = Link(inproc_address(), context=CTX, timeout_ms=150, trace=trace,
                log=logging.getLogger("test.link"))
    link.bind()
    peer = ThreadedQemu(link.endpoint, CTX, bytearray(16))
    peer.silent = True
    peer.start()
    try:
        t0 = time.monotonic()
        with caplog.at_level(logging.ERROR, "test.link"), pytest.raises(LinkTimeout) as info:
            link.request(MsgType.DMA_READ, rid=0, flags=0, len=4, addr=0x1000)
        elapsed = time.monotonic() - t0
        assert 0.14 <= elapsed < 1.5
        assert "within 150 ms" in str(info.value) and "DMA_READ at 0x1000" in str(info.value)
        assert caplog.records[-1].levelno == logging.ERROR
        trace.close()
        recs = [r for r in read_trace(tmp_path / "t.jsonl").records if r["k"] == "link"]
        assert recs[-1]["event"] == "timeout" and recs[-1]["request"] == "DMA_READ"
    finally:
        peer.stop()
        link.close()


def test_error_reply_to_model_request_is_returned() -> None:
    link = Link(inproc_address(), context=CTX, timeout_ms=2000)
    link.bind()
    peer = ThreadedQemu(link.endpoint, CTX, bytearray(16))
    peer.status_for = lambda msg: Status.DECODE_ERROR
    peer.start()
    try:
        reply = link.request(MsgType.DMA_WRITE, rid=0, flags=0, len=1, addr=0, data=b"x")
        assert reply.status == Status.DECODE_ERROR and reply.body is None
    finally:
        peer.stop()
        link.close()


def test_ipc_address_creates_a_private_directory(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    link = Link("ipc://", context=CTX)
    endpoint = link.bind()
    made = os.path.dirname(endpoint[len("ipc://"):])
    assert os.path.dirname(made) == str(tmp_path)
    assert stat.S_IMODE(os.stat(made).st_mode) == 0o700
    peer = FakeQemu(endpoint, CTX)
    peer.send(MsgType.RESET, dev=0, kind=0)
    link.poll(2000)
    assert peer.recv().status == Status.DECODE_ERROR   # no handler
    peer.close()
    link.close()
    assert not os.path.exists(made)


def test_explicit_ipc_directory_must_be_private(tmp_path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    os.chmod(shared, 0o755)
    with pytest.raises(LinkError, match="group/world accessible"):
        resolve_address(f"ipc://{shared}/link")
    private = tmp_path / "new"
    endpoint, made = resolve_address(f"ipc://{private}/link")
    assert made == str(private) and stat.S_IMODE(os.stat(private).st_mode) == 0o700


def test_tcp_binds_loopback_unless_told() -> None:
    assert resolve_address("tcp://5555")[0] == "tcp://127.0.0.1:5555"
    assert resolve_address("tcp://:*")[0] == "tcp://127.0.0.1:*"
    assert resolve_address("tcp://0.0.0.0:5555")[0] == "tcp://0.0.0.0:5555"
    with pytest.raises(LinkError):
        resolve_address("udp://1")


def test_tcp_link_round_trip() -> None:
    link = Link("tcp://:*", handler=Recorder(), context=CTX)
    endpoint = link.bind()
    assert endpoint.startswith("tcp://127.0.0.1:")
    peer = FakeQemu(endpoint, CTX)
    peer.send(MsgType.MMIO_READ, dev=0, region=0, size=8, offset=1)
    assert link.poll(2000) == 1
    assert peer.recv().value == 0x1235
    peer.close()
    link.close()
