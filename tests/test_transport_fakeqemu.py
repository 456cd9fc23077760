"""A fake QEMU for link tests: the connecting end of the PAIR socket, written in Python.

`FakeQemu` is driven from the test's own thread (send, then let the model poll, then read
the reply). `ThreadedQemu` runs in a thread and serves the model's DMA and IRQ requests from
a buffer, for tests where the model blocks in `Link.request`.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable
from typing import Any

import zmq

from cosim.link.protocol import Message, MsgType, Status, decode, encode

_ids = itertools.count()


def inproc_address() -> str:
    return f"inproc://cosim-test-{next(_ids)}"


class FakeQemu:
    """Single-threaded fake peer: same thread as the model, inproc or ipc/tcp."""

    def __init__(self, endpoint: str, context: zmq.Context) -> None:
        self.sock = context.socket(zmq.PAIR)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self.seq = itertools.count(1)

    def send_raw(self, frame: bytes) -> None:
        self.sock.send(frame)

    def send(self, mtype: MsgType, **fields: Any) -> int:
        seq = next(self.seq)
        self.sock.send(encode(mtype, seq, **fields))
        return seq

    def recv_raw(self, timeout_ms: int = 2000) -> bytes | None:
        if self.sock.poll(timeout_ms, zmq.POLLIN):
            return self.sock.recv()
        return None

    def recv(self, timeout_ms: int = 2000) -> Message:
        frame = self.recv_raw(timeout_ms)
        assert frame is not None, "model sent nothing"
        return decode(frame)

    def close(self) -> None:
        self.sock.close(0)


DmaHandler = Callable[[Message], bytes]


class ThreadedQemu(threading.Thread):
    """Fake peer in a thread: serves DMA_READ/DMA_WRITE from `memory`, acks IRQ.

    `before_reply(msg)` may return frames to send before the reply (e.g. a QEMU request that
    crosses the model's DMA). `status_for(msg)` may return an error status for a request.
    The test thread sends QEMU requests with `send` and collects the model's replies with
    `replies.get()`; all model requests seen are in `requests`.
    """

    def __init__(self, endpoint: str, context: zmq.Context, memory: bytearray | Any,
                 base: int = 0) -> None:
        super().__init__(daemon=True)
        self.endpoint = endpoint
        self.context = context
        self.memory = memory
        self.base = base
        self.requests: list[Message] = []
        self.replies: queue.Queue[Message] = queue.Queue()
        self.outbox: queue.Queue[bytes] = queue.Queue()
        self.before_reply: Callable[[Message], list[bytes]] | None = None
        self.status_for: Callable[[Message], Status] | None = None
        self.silent = False   # never reply (timeout tests)
        # Like QEMU (requests only under the BQL): one request of ours outstanding at a time.
        self.awaiting = 0
        self.seq = itertools.count(1)
        self._stop_evt = threading.Event()
        self._ready = threading.Event()

    def send(self, mtype: MsgType, **fields: Any) -> int:
        seq = next(self.seq)
        self.outbox.put(encode(mtype, seq, **fields))
        return seq

    def start(self) -> None:
        super().start()
        self._ready.wait(5)

    def stop(self) -> None:
        self._stop_evt.set()
        self.join(5)

    def run(self) -> None:
        sock = self.context.socket(zmq.PAIR)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.endpoint)
        self._ready.set()
        try:
            while not self._stop_evt.is_set():
                if not self.awaiting and not self.outbox.empty():
                    sock.send(self.outbox.get())
                    self.awaiting += 1
                if not sock.poll(5, zmq.POLLIN):
                    continue
                msg = decode(sock.recv())
                if msg.reply:
                    self.awaiting -= 1
                    self.replies.put(msg)
                    continue
                self.requests.append(msg)
                if self.silent:
                    continue
                if self.before_reply:
                    for frame in self.before_reply(msg):
                        sock.send(frame)
                sock.send(self._serve(msg))
        finally:
            sock.close(0)

    def _serve(self, msg: Message) -> bytes:
        status = self.status_for(msg) if self.status_for else Status.OK
        if status != Status.OK:
            return encode(msg.type, msg.seq, reply=True, status=status)
        if msg.type is MsgType.DMA_READ:
            off = msg.addr - self.base
            data = bytes(self.memory[off:off + msg.len])
            return encode(msg.type, msg.seq, reply=True, data=data)
        if msg.type is MsgType.DMA_WRITE:
            off = msg.addr - self.base
            self.memory[off:off + msg.len] = msg.data
        return encode(msg.type, msg.seq, reply=True)


def test_fake_peer_talks_the_protocol() -> None:
    ctx = zmq.Context.instance()
    addr = inproc_address()
    server = ctx.socket(zmq.PAIR)
    server.bind(addr)
    peer = FakeQemu(addr, ctx)
    seq = peer.send(MsgType.RESET, dev=1, kind=1)
    msg = decode(server.recv())
    assert (msg.type, msg.seq, msg.dev, msg.kind) == (MsgType.RESET, seq, 1, 1)
    server.send(encode(MsgType.RESET, seq, reply=True))
    assert peer.recv().reply
    peer.close()
    server.close(0)
