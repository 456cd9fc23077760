"""The model process: dispatch by device, the main loop's exits, and fuzzed input."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import struct
import sys
import threading

import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_transport_fakeqemu import FakeQemu, ThreadedQemu, inproc_address

import cosim.smmu
from cosim import backend
from cosim.backend import (
    EXIT_OK,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    EXIT_VERSION,
    Model,
    add_model_arguments,
    run_model,
)
from cosim.link.protocol import MAJOR, MsgType, ProtocolError, Status, decode, encode
from cosim.link.transport import Link, LinkClosed, VersionMismatch
from cosim.memory import BusError
from cosim.trace import TraceWriter, framing, read_trace

CTX = zmq.Context.instance()


class FakeSmmu:
    """Records calls; a write to 0x44 raises IRQ line 2, to 0x48 reads guest memory."""

    def __init__(self, mem, irq, trace=None, options=None) -> None:
        self.mem, self.irq, self.options = mem, irq, options
        self.calls: list[tuple] = []
        self.ticks = 0
        self.tick_times: list[float] = []
        self.now = 5.0
        self.attached: dict[int, object] = {}
        self.regs: dict[int, int] = {}

    def mmio_read(self, offset: int, size: int) -> int:
        self.calls.append(("r", offset, size))
        return self.regs.get(offset, 0xffff_ffff_ffff_ffff)

    def mmio_write(self, offset: int, size: int, value: int) -> None:
        self.calls.append(("w", offset, size, value))
        self.regs[offset] = value
        if offset == 0x44:
            self.irq(2, 2)
        if offset == 0x48:
            try:
                self.regs[0x50] = int.from_bytes(self.mem.read(value, 8), "little")
            except BusError:
                self.regs[0x50] = 0xbad

    def clock(self) -> float:
        self.now += 1.0
        return self.now

    def tick(self, now: float | None = None) -> None:
        self.ticks += 1
        assert now is not None
        self.tick_times.append(now)

    def busy(self) -> bool:
        return False

    def reset(self) -> None:
        self.calls.append(("reset",))

    def attach_ats_device(self, sid: int, device: object) -> None:
        self.attached[sid] = device


class FakeEndpoint:
    def __init__(self, dev, smmu, mem, trace=None, options=None) -> None:
        self.dev, self.smmu, self.options = dev, smmu, options
        self.calls: list[tuple] = []
        self.polls = 0
        self.inv_polls = 0

    def device_info(self, rid, pcie_off=0, ats_off=0, pasid_off=0, msix_off=0) -> None:
        self.rid = rid
        self.smmu.attach_ats_device(rid, self)

    def mmio_read(self, region, offset, size) -> int:
        if offset == 0xdead:
            raise KeyError("model bug")
        return 0x1000 + offset

    def mmio_write(self, region, offset, size, value) -> None:
        self.calls.append(("w", region, offset, size, value))

    def cfg_write(self, offset, size, value) -> None:
        self.calls.append(("cfg", offset, size, value))

    def reset(self, kind) -> None:
        self.calls.append(("reset", kind))

    def poll(self) -> None:
        self.polls += 1

    def poll_invalidations(self) -> None:
        self.inv_polls += 1

    busy = False  # no traffic generator


@pytest.fixture
def model(tmp_path):
    trace = TraceWriter(tmp_path / "trace.jsonl")
    link = Link(inproc_address(), context=CTX, timeout_ms=300, trace=trace,
                log=logging.getLogger("test.link"))
    link.bind()
    m = Model(link, lambda mem, irq: FakeSmmu(mem, irq), FakeEndpoint, trace,
              logging.getLogger("test.model"))
    peer = FakeQemu(link.endpoint, CTX)
    yield m, peer
    peer.close()
    link.close()


def ask(m: Model, peer: FakeQemu, mtype: MsgType, **fields):
    seq = peer.send(mtype, **fields)
    m.link.poll(1000)
    reply = peer.recv()
    assert reply.seq == seq and reply.type == mtype
    return reply


def describe_ep(m: Model, peer: FakeQemu, dev: int = 1, rid: int = 0x10):
    return ask(m, peer, MsgType.DEVICE, dev=dev, kind=2, rid=rid, pcie_off=0x40, ats_off=0x100,
               pasid_off=0x110, msix_off=0x80)


def test_each_served_request_is_followed_by_a_tick(model) -> None:
    """A completion an endpoint records while handling a request (reset, register write) is
    noticed by the SMMU before the reply, not only in the idle loop."""
    m, peer = model
    order: list[tuple] = []
    m.smmu.tick = lambda now=None: order.append(("tick",))
    write = m.smmu.mmio_write
    m.smmu.mmio_write = lambda off, size, value: (order.append(("w", off)),
                                                  write(off, size, value))
    assert ask(m, peer, MsgType.MMIO_WRITE, dev=0, region=0, size=4, offset=0x28, value=1).ok
    assert ask(m, peer, MsgType.MMIO_WRITE, dev=0, region=0, size=4, offset=0x2c, value=1).ok
    assert order == [("w", 0x28), ("tick",), ("w", 0x2c), ("tick",)]
    assert not ask(m, peer, MsgType.MMIO_READ, dev=5, region=0, size=4, offset=0).ok
    assert order[-1] == ("tick",) and len(order) == 4   # a refused request changed nothing


def test_smmu_mmio_goes_to_dev0(model) -> None:
    m, peer = model
    m.smmu.regs[0x20] = 0x1_0000_00ff
    assert ask(m, peer, MsgType.MMIO_READ, dev=0, region=0, size=4, offset=0x20).value == 0xff
    assert ask(m, peer, MsgType.MMIO_WRITE, dev=0, region=0, size=8, offset=0x28,
               value=7).ok
    assert m.smmu.calls == [("r", 0x20, 4), ("w", 0x28, 8, 7)]


@pytest.mark.parametrize("fields, status", [
    (dict(dev=0, region=1, size=4, offset=0), Status.DECODE_ERROR),
    (dict(dev=0, region=0, size=4, offset=0x20000), Status.DECODE_ERROR),
    (dict(dev=0, region=0, size=3, offset=0), Status.ACCESS_ERROR),
    (dict(dev=5, region=0, size=4, offset=0), Status.DECODE_ERROR),
])
def test_mmio_errors(model, fields, status) -> None:
    m, peer = model
    assert ask(m, peer, MsgType.MMIO_READ, **fields).status == status
    assert m.smmu.calls == []


def test_device_creates_endpoint_and_dispatches(model, tmp_path) -> None:
    m, peer = model
    assert describe_ep(m, peer).ok
    ep = m.endpoints[1]
    assert m.smmu.attached == {0x10: ep}
    assert ask(m, peer, MsgType.MMIO_READ, dev=1, region=0, size=4, offset=8).value == 0x1008
    ask(m, peer, MsgType.MMIO_WRITE, dev=1, region=2, size=4, offset=4, value=0x1_2345_6789)
    ask(m, peer, MsgType.CFG_WRITE, dev=1, size=2, offset=4, value=6)
    ask(m, peer, MsgType.RESET, dev=1, kind=1)
    assert ep.calls == [("w", 2, 4, 4, 0x2345_6789), ("cfg", 4, 2, 6), ("reset", 1)]
    # Due invalidations are completed after every request served (the DEVICE one and the
    # four after it), before the SMMU is ticked.
    assert ep.inv_polls == 5
    assert describe_ep(m, peer).status == Status.ACCESS_ERROR     # described twice
    assert ask(m, peer, MsgType.DEVICE, dev=2, kind=9, rid=0, pcie_off=0, ats_off=0,
               pasid_off=0, msix_off=0).status == Status.ACCESS_ERROR
    m.trace.close()
    dev = [r for r in read_trace(tmp_path / "trace.jsonl").records if r.get("event") == "device"]
    assert dev[0]["dev"] == 1 and dev[0]["rid"] == 0x10 and dev[0]["ats_off"] == 0x100


def test_reset_and_config_errors(model) -> None:
    m, peer = model
    assert ask(m, peer, MsgType.RESET, dev=0, kind=0).ok and m.smmu.calls == [("reset",)]
    assert ask(m, peer, MsgType.RESET, dev=0, kind=1).status == Status.ACCESS_ERROR
    assert ask(m, peer, MsgType.RESET, dev=0, kind=5).status == Status.ACCESS_ERROR
    assert ask(m, peer, MsgType.CFG_WRITE, dev=0, size=4, offset=4,
               value=0).status == Status.DECODE_ERROR
    describe_ep(m, peer)
    assert ask(m, peer, MsgType.CFG_WRITE, dev=1, size=8, offset=4,
               value=0).status == Status.ACCESS_ERROR


def test_model_bug_becomes_internal_and_model_goes_on(model) -> None:
    m, peer = model
    describe_ep(m, peer)
    assert ask(m, peer, MsgType.MMIO_READ, dev=1, region=0, size=4,
               offset=0xdead).status == Status.INTERNAL
    assert ask(m, peer, MsgType.MMIO_READ, dev=1, region=0, size=4, offset=0).value == 0x1000


def test_step_ticks_and_polls(model) -> None:
    m, peer = model
    describe_ep(m, peer)
    assert m.smmu.ticks == 1                 # the DEVICE request was followed by a tick
    m.step()
    m.step()
    assert m.smmu.ticks == 3 and m.endpoints[1].polls == 2
    # The SMMU goes last: it sees invalidations an endpoint completed in its poll.
    order: list[tuple[str, float | None]] = []
    m.endpoints[1].poll = lambda: order.append(("poll", m.smmu.clock()))
    m.smmu.tick = lambda now=None: order.append(("tick", now))
    m.step()
    assert [k for k, _ in order] == ["poll", "tick"]
    # ATC invalidation timeouts are judged as of a time read before the endpoints were
    # polled, so a completion they sent then was due no later than that.
    assert order[1][1] is not None and order[0][1] is not None and order[1][1] < order[0][1]
    assert not m.busy()
    m.endpoints[1].busy = True
    assert m.busy()


def test_dma_error_reply_is_a_bus_error_for_the_smmu(tmp_path) -> None:
    link = Link(inproc_address(), context=CTX, timeout_ms=2000)
    link.bind()
    m = Model(link, lambda mem, irq: FakeSmmu(mem, irq), FakeEndpoint, TraceWriter(None),
              logging.getLogger("test.model"))
    peer = ThreadedQemu(link.endpoint, CTX, bytearray(64))
    peer.status_for = lambda msg: (Status.DECODE_ERROR if msg.type is MsgType.DMA_READ
                                   else Status.OK)
    peer.start()
    try:
        peer.send(MsgType.MMIO_WRITE, dev=0, region=0, size=8, offset=0x48, value=0x100)
        peer.send(MsgType.MMIO_WRITE, dev=0, region=0, size=8, offset=0x44, value=1)
        deadline = 0
        while peer.replies.qsize() < 2 and deadline < 200:
            m.link.poll(10)
            deadline += 1
        assert [peer.replies.get().ok for _ in range(2)] == [True, True]
        assert m.smmu.regs[0x50] == 0xbad
        kinds = [r.type for r in peer.requests]
        assert kinds == [MsgType.DMA_READ, MsgType.IRQ]
        assert (peer.requests[1].line, peer.requests[1].level) == (2, 2)
    finally:
        peer.stop()
        link.close()


# -- fuzz: random frames into the model's receive path --------------------------------------

VALID = [
    encode(MsgType.MMIO_READ, 1, dev=0, region=0, size=4, offset=0x10),
    encode(MsgType.MMIO_WRITE, 2, dev=1, region=0, size=8, offset=0x10, value=3),
    encode(MsgType.CFG_WRITE, 3, dev=1, size=2, offset=4, value=6),
    encode(MsgType.RESET, 4, dev=1, kind=1),
    encode(MsgType.DEVICE, 5, dev=1, kind=2, rid=8, pcie_off=0, ats_off=0, pasid_off=0,
           msix_off=0),
    encode(MsgType.HELLO, 6, minor=0, caps=1, ram_base=0, ram_size=4096, ram_path="/nonexistent"),
    encode(MsgType.DMA_READ, 7, reply=True, data=b"abc"),
]


def _mutate(data) -> bytes:
    frame, cut, flips = data
    b = bytearray(frame)
    for pos, val in flips:
        if b:
            b[pos % len(b)] = val
    return bytes(b[:cut]) if cut is not None else bytes(b)


frames = st.one_of(
    st.binary(max_size=200),
    st.tuples(st.sampled_from(VALID), st.none() | st.integers(0, 200),
              st.lists(st.tuples(st.integers(0, 199), st.integers(0, 255)), max_size=4)
              ).map(_mutate),
    st.builds(lambda t, seq, body: struct.pack("<HBBIQ", 0x4353, MAJOR, t, 0, seq) + body,
              st.integers(0, 255), st.integers(0, 2**64 - 1), st.binary(max_size=170)),
)


class _Count(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    def emit(self, record) -> None:
        self.n += 1


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=frames)
def test_fuzz_receive_never_crashes(frame: bytes) -> None:
    counter = _Count()
    log = logging.getLogger("test.fuzz")
    log.addHandler(counter)
    log.propagate = False
    link = Link(inproc_address(), context=CTX, timeout_ms=50, log=log)
    link.bind()
    try:
        m = Model(link, lambda mem, irq: FakeSmmu(mem, irq), FakeEndpoint, TraceWriter(None), log)
        peer = FakeQemu(link.endpoint, CTX)
        peer.send_raw(frame)
        try:
            m.link.poll(0)
        except VersionMismatch:
            # Only a HELLO of another major may end the session.
            assert frame[:2] == b"SC" and frame[3] == MsgType.HELLO and frame[2] != MAJOR
        except LinkClosed:
            assert decode(frame).type is MsgType.BYE
        reply = peer.recv_raw(0)
        assert reply is not None or counter.n >= 1
        if reply is not None:
            assert reply[:2] == b"SC" and reply[3] & 0x80 and reply[8:16] == frame[8:16]
        try:
            decode(frame)
            valid = True
        except ProtocolError:
            valid = False
        if not valid:
            assert counter.n >= 1 and link.errors == 1
        peer.close()
    finally:
        link.close()
        log.removeHandler(counter)


# -- the process: run_model ----------------------------------------------------------------

def parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_model_arguments(p)
    return p.parse_args(list(argv))


@pytest.fixture
def fakes(monkeypatch):
    monkeypatch.setattr(backend, "_load_models", lambda: (FakeSmmu, FakeEndpoint))


def run_with_peer(args, script, memory=None, silent=False):
    peer = ThreadedQemu(args.addr, CTX, memory if memory is not None else bytearray(256))
    peer.silent = silent
    for mtype, fields in script:
        peer.send(mtype, **fields)
    peer.start()
    try:
        rc = run_model(args)
    finally:
        peer.stop()
    replies = []
    while not peer.replies.empty():
        replies.append(peer.replies.get())
    return rc, replies, peer


HELLO = (MsgType.HELLO, dict(minor=0, caps=0, ram_base=0, ram_size=0, ram_path=""))


@pytest.mark.parametrize("fmt", [None, "jsonl"])
def test_run_model_session_until_bye(fakes, tmp_path, fmt) -> None:
    args = parse("--addr", inproc_address(), "--trace", str(tmp_path / "t.jsonl"), "--log",
                 str(tmp_path / "model.log"), "--cache-mode", "caching", "--inv-ignore",
                 "--atc-entries", "4", "--ep-opt", "atc_policy=fifo",
                 *(["--trace-format", fmt] if fmt else []))
    rc, replies, peer = run_with_peer(args, [
        HELLO,
        (MsgType.DEVICE, dict(dev=1, kind=2, rid=0x10, pcie_off=0x40, ats_off=0x100,
                              pasid_off=0, msix_off=0)),
        (MsgType.MMIO_READ, dict(dev=1, region=0, size=4, offset=4)),
        (MsgType.MMIO_WRITE, dict(dev=0, region=0, size=4, offset=0x44, value=1)),
        (MsgType.BYE, {}),
    ])
    assert rc == EXIT_OK
    assert [r.type for r in replies] == [MsgType.HELLO, MsgType.DEVICE, MsgType.MMIO_READ,
                                         MsgType.MMIO_WRITE, MsgType.BYE]
    assert replies[2].value == 0x1004
    assert [r.type for r in peer.requests] == [MsgType.IRQ]
    # The binary format unless asked for JSON lines; the name of the file says nothing.
    first = (tmp_path / "t.jsonl").read_bytes()[:1]
    assert first == (b"{" if fmt == "jsonl" else framing.MAGIC[:1])
    trace = read_trace(tmp_path / "t.jsonl")
    assert trace.header["cache_mode"] == "caching"
    assert trace.header["options"]["endpoint"]["inv_ignore"] is True
    assert trace.header["options"]["endpoint"]["atc_entries"] == 4
    assert trace.header["options"]["endpoint"]["atc_policy"] == "fifo"
    events = [r["event"] for r in trace.records if r["k"] == "link"]
    assert events == ["hello", "device", "bye"]
    log = (tmp_path / "model.log").read_text()
    assert "BYE" in log and "listening on" in log


def test_run_model_times_out_cleanly(fakes, tmp_path) -> None:
    args = parse("--addr", inproc_address(), "--trace", str(tmp_path / "t.jsonl"),
                 "--log", str(tmp_path / "m.log"), "--timeout-ms", "200")
    rc, _, _ = run_with_peer(args, [
        HELLO, (MsgType.MMIO_WRITE, dict(dev=0, region=0, size=8, offset=0x48, value=0x10)),
    ], silent=True)
    assert rc == EXIT_TIMEOUT
    trace = read_trace(tmp_path / "t.jsonl")
    assert trace.torn is None
    assert [r["event"] for r in trace.records if r["k"] == "link"] == ["hello", "timeout"]
    assert "no message from QEMU within 200 ms" in (tmp_path / "m.log").read_text()


def test_run_model_bad_version(fakes, tmp_path) -> None:
    args = parse("--addr", inproc_address(), "--log", str(tmp_path / "m.log"))
    peer = FakeQemu(args.addr, CTX)
    frame = bytearray(encode(MsgType.HELLO, 1, minor=0, caps=0, ram_base=0, ram_size=0,
                             ram_path=""))
    frame[2] = 7
    peer.send_raw(bytes(frame))
    assert run_model(args) == EXIT_VERSION
    assert peer.recv().status == Status.BAD_VERSION
    assert "protocol major 7 not supported (model speaks 1)" in (tmp_path / "m.log").read_text()
    peer.close()


def test_run_model_sigterm_flushes_and_exits_0(fakes, tmp_path) -> None:
    args = parse("--addr", inproc_address(), "--trace", str(tmp_path / "t.jsonl"),
                 "--log", str(tmp_path / "m.log"))
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    rc, replies, _ = run_with_peer(args, [HELLO])
    timer.join()
    assert rc == EXIT_OK and replies[0].type is MsgType.HELLO
    trace = read_trace(tmp_path / "t.jsonl")
    assert [r["event"] for r in trace.records if r["k"] == "link"] == ["hello"]
    assert "SIGTERM" in (tmp_path / "m.log").read_text()


def test_run_model_bad_options(fakes, tmp_path, capsys) -> None:
    args = parse("--addr", inproc_address(), "--smmu-opt", "no_such=1")
    assert run_model(args) == EXIT_USAGE
    args = parse("--addr", inproc_address(), "--atc-entries", "0")
    assert run_model(args) == EXIT_USAGE
    args = parse("--addr", "udp://x")
    assert run_model(args) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "no_such" in err and "atc_entries" in err and "udp://x" in err


def test_run_model_without_smmu_fails_clearly(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.delattr(cosim.smmu, "SMMUv3", raising=False)
    monkeypatch.setitem(sys.modules, "cosim.smmu.smmu", None)
    args = parse("--addr", inproc_address())
    assert run_model(args) == EXIT_USAGE
    assert "cannot be loaded" in capsys.readouterr().err


def test_real_endpoint_behind_the_link(model) -> None:
    pytest.importorskip("cosim.endpoint.endpoint")
    from cosim.endpoint.endpoint import Endpoint
    m, peer = model
    m.make_endpoint = lambda dev, smmu, mem: Endpoint(dev, smmu, mem, m.trace)
    assert describe_ep(m, peer).ok
    assert isinstance(m.smmu.attached[0x10], Endpoint)
    ident = ask(m, peer, MsgType.MMIO_READ, dev=1, region=0, size=4, offset=0).value
    assert ident == 0x50455343   # "CSEP", docs/endpoint.md


def test_run_model_with_the_real_smmu_and_endpoint(tmp_path) -> None:
    """The whole model process behind a fake QEMU: HELLO, DEVICE, SMMU and endpoint MMIO."""
    args = parse("--addr", inproc_address(), "--trace", str(tmp_path / "t.jsonl"),
                 "--log", str(tmp_path / "m.log"))
    rc, replies, _ = run_with_peer(args, [
        HELLO,
        (MsgType.DEVICE, dict(dev=0, kind=1, rid=0, pcie_off=0, ats_off=0, pasid_off=0,
                              msix_off=0)),
        (MsgType.DEVICE, dict(dev=1, kind=2, rid=0x10, pcie_off=0x40, ats_off=0x100,
                              pasid_off=0x110, msix_off=0x80)),
        (MsgType.MMIO_READ, dict(dev=0, region=0, size=4, offset=0)),      # SMMU_IDR0
        (MsgType.MMIO_READ, dict(dev=1, region=0, size=4, offset=0)),      # endpoint ID
        (MsgType.BYE, {}),
    ])
    assert rc == EXIT_OK, (tmp_path / "m.log").read_text()
    assert [r.ok for r in replies] == [True] * 6
    assert replies[3].value & (1 << 10)        # IDR0.ATS (§6.3.1): the model offers ATS
    assert replies[4].value == 0x50455343
    assert read_trace(tmp_path / "t.jsonl").header["cache_mode"] == "coherent"


@pytest.mark.parametrize("extra, late", [((), 90.0), (("--ep-opt", "inv_late_ms=5"), 5.0)])
def test_strict_mode_header_and_late_endpoint(tmp_path, extra, late) -> None:
    """--cache-mode strict: the header names the mode and its seed, and endpoints complete ATC
    invalidations just short of the SMMU's timeout unless told otherwise."""
    args = parse("--addr", inproc_address(), "--trace", str(tmp_path / "t.jsonl"),
                 "--log", str(tmp_path / "m.log"), "--cache-mode", "strict",
                 "--atc-inv-timeout-ms", "100", "--smmu-opt", "strict_seed=7", *extra)
    rc, _, _ = run_with_peer(args, [HELLO, (MsgType.BYE, {})])
    assert rc == EXIT_OK, (tmp_path / "m.log").read_text()
    header = read_trace(tmp_path / "t.jsonl").header
    assert header["cache_mode"] == "strict"
    assert header["strict_seed"] == 7
    assert header["options"]["endpoint"]["inv_late_ms"] == late


def test_run_model_dumps_its_stacks_on_sigusr1(fakes, tmp_path, capfd) -> None:
    """A launcher that sees the guest hang sends SIGUSR1: the model writes every thread's
    stack to stderr and keeps serving (SIGTERM ends it here)."""
    args = parse("--addr", inproc_address(), "--trace", str(tmp_path / "t.jsonl"),
                 "--log", str(tmp_path / "m.log"))
    usr1 = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGUSR1))
    term = threading.Timer(0.6, os.kill, (os.getpid(), signal.SIGTERM))
    usr1.start()
    term.start()
    rc, replies, _ = run_with_peer(args, [HELLO])
    usr1.join()
    term.join()
    assert rc == EXIT_OK and replies[0].type is MsgType.HELLO
    err = capfd.readouterr().err
    assert "run_model" in err and "Thread" in err, err[-2000:]
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL
