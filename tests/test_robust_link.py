"""Robustness of the model's link without QEMU: a peer that vanishes without BYE, stray
connections, private socket directories, loopback binds, and RESET clearing model state."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import zmq
from test_transport_fakeqemu import FakeQemu, inproc_address

from cosim.backend import Model, _load_models
from cosim.launcher import Run, RunConfig
from cosim.link.protocol import MsgType
from cosim.link.transport import Link, LinkDisconnected, LinkError, resolve_address
from cosim.setup import Products
from cosim.trace import TraceWriter, framing, read_trace

CTX = zmq.Context.instance()
NOTICE_S = 2.0          # a vanished peer must be noticed within this (it takes ~ms)
HELLO = dict(minor=0, caps=0, ram_base=0, ram_size=0, ram_path="")


def handler(msg):
    return {"value": 7} if msg.type is MsgType.MMIO_READ else None


def ipc_link(tmp_path: Path, trace: TraceWriter | None = None, timeout_ms: int = 5000) -> Link:
    d = tmp_path / "sock"
    link = Link(f"ipc://{d}/link", handler=handler, context=CTX, timeout_ms=timeout_ms,
                trace=trace, log=logging.getLogger("test.robust"))
    link.bind()
    return link


def session(link: Link) -> FakeQemu:
    peer = FakeQemu(link.endpoint, CTX)
    peer.send(MsgType.HELLO, **HELLO)
    assert link.poll(2000) == 1
    assert peer.recv().ok
    return peer


def poll_until_down(link: Link, seconds: float = NOTICE_S) -> float:
    """Poll like the model's idle loop; return how long it took to raise LinkDisconnected."""
    t0 = time.monotonic()
    with pytest.raises(LinkDisconnected):
        while time.monotonic() - t0 < seconds:
            link.poll(10)
    return time.monotonic() - t0


# -- a peer that goes away without BYE -----------------------------------------------------------

def test_idle_model_notices_vanished_peer(tmp_path, caplog) -> None:
    trace = TraceWriter(tmp_path / "trace.jsonl")
    link = ipc_link(tmp_path, trace)
    try:
        peer = session(link)
        link.poll(50)                 # idle: nothing happens while the peer lives
        peer.close()                  # like SIGKILL: the connection closes, no BYE
        with caplog.at_level(logging.INFO, "test.robust"):
            assert poll_until_down(link) < NOTICE_S
    finally:
        link.close()
        trace.close()
    lines = [r.message for r in caplog.records if r.name == "test.robust"]
    assert len(lines) == 1 and "without BYE" in lines[0]
    last = read_trace(tmp_path / "trace.jsonl").records[-1]
    assert (last["k"], last["event"]) == ("link", "disconnected")


def test_model_waiting_for_dma_notices_vanished_peer_before_its_timeout(tmp_path) -> None:
    link = ipc_link(tmp_path, timeout_ms=30000)
    try:
        peer = session(link)
        closer = threading.Timer(0.2, peer.close)   # QEMU dies while the DMA is outstanding
        closer.start()
        t0 = time.monotonic()
        with pytest.raises(LinkDisconnected):
            link.request(MsgType.DMA_READ, rid=1, flags=0, len=8, addr=0x1000)
        assert time.monotonic() - t0 < NOTICE_S, "waited for the 30 s timeout instead"
        closer.join()
    finally:
        link.close()


def test_requests_sent_before_vanishing_are_served_first(tmp_path) -> None:
    link = ipc_link(tmp_path)
    try:
        peer = session(link)
        peer.send(MsgType.MMIO_WRITE, dev=0, region=0, size=4, offset=0, value=1)
        peer.sock.setsockopt(zmq.LINGER, 1000)      # let the write leave before the close
        peer.sock.close()
        handled = []
        link.handler = lambda msg: handled.append(msg.type)
        poll_until_down(link)
        assert handled == [MsgType.MMIO_WRITE]
    finally:
        link.close()


def test_hello_then_immediate_death_still_ends_the_session(tmp_path) -> None:
    link = ipc_link(tmp_path)
    try:
        peer = FakeQemu(link.endpoint, CTX)
        peer.send(MsgType.HELLO, **HELLO)
        peer.sock.setsockopt(zmq.LINGER, 1000)
        peer.sock.close()
        time.sleep(0.2)                             # both the HELLO and the close are queued
        poll_until_down(link)
        assert link.session is not None
    finally:
        link.close()


def test_stray_tcp_connection_closing_does_not_end_the_session() -> None:
    link = Link("tcp://127.0.0.1:0", handler=handler, context=CTX, timeout_ms=2000,
                log=logging.getLogger("test.robust"))
    link.bind()
    try:
        peer = session(link)
        stray = FakeQemu(link.endpoint, CTX)        # a second PAIR peer is refused...
        time.sleep(0.1)
        stray.close()                               # ...and its going away is no news
        for _ in range(20):
            link.poll(10)
        peer.send(MsgType.MMIO_READ, dev=0, region=0, size=4, offset=0)
        link.poll(1000)
        assert peer.recv().value == 7, "the session must survive a stray connection"
        peer.close()
        poll_until_down(link)
    finally:
        link.close()


def test_model_process_exits_0_with_flushed_trace_when_peer_vanishes(tmp_path) -> None:
    """`cosim model` as a process (real SMMU and endpoint): no BYE, still a clean exit."""
    addr = f"ipc://{tmp_path}/sock/link"
    trace, log = tmp_path / "trace.jsonl", tmp_path / "model.log"
    proc = subprocess.Popen([sys.executable, "-m", "cosim", "model", "--addr", addr,
                             "--trace", str(trace), "--log", str(log)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "sock" / "link").exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
            time.sleep(0.05)
        peer = FakeQemu(addr, CTX)
        peer.send(MsgType.HELLO, **HELLO)
        assert peer.recv(5000).ok
        peer.send(MsgType.DEVICE, dev=0, kind=1, rid=0, pcie_off=0, ats_off=0, pasid_off=0,
                  msix_off=0)
        assert peer.recv(5000).ok
        for off in range(0, 0x100, 4):          # enough records to need more than one flush
            peer.send(MsgType.MMIO_READ, dev=0, region=0, size=4, offset=off)
            assert peer.recv(5000).ok
        peer.close()
        assert proc.wait(5) == 0, proc.stdout.read() if proc.stdout else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    raw = trace.read_bytes()
    t = read_trace(trace)
    # The model's binary trace: it ends with a whole frame (else the reader says torn).
    assert raw.startswith(framing.MAGIC) and t.torn is None and t.problems == []
    assert sum(1 for r in t.records if r["k"] == "mmio") == 64
    assert (t.records[-1]["k"], t.records[-1]["event"]) == ("link", "disconnected")
    assert sum("without BYE" in ln for ln in log.read_text().splitlines()) == 1


# -- sockets -------------------------------------------------------------------------------------

def mode(path: str | Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_default_ipc_endpoint_is_in_a_fresh_0700_directory(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    os.chmod(tmp_path, 0o755)          # even under a readable runtime root
    link = Link("ipc://", context=CTX)
    link.bind()
    try:
        sock = link.endpoint[len("ipc://"):]
        parent = os.path.dirname(sock)
        assert os.path.dirname(parent) == str(tmp_path)
        assert mode(parent) == 0o700 and os.lstat(parent).st_uid == os.getuid()
        assert stat.S_ISSOCK(os.lstat(sock).st_mode)
    finally:
        link.close()
    assert not os.path.exists(parent), "the directory the link made is removed on close"


def test_explicit_ipc_endpoint_refuses_a_shared_directory(tmp_path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    os.chmod(shared, 0o755)
    with pytest.raises(LinkError, match="group/world"):
        resolve_address(f"ipc://{shared}/link")
    made = tmp_path / "new"
    endpoint, created = resolve_address(f"ipc://{made}/link")
    assert created == str(made) and mode(made) == 0o700


def test_launcher_runtime_directory_is_private(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    os.chmod(tmp_path, 0o755)
    fake = Products(qemu=Path("/bin/false"), kernel_dir=tmp_path, initramfs=tmp_path / "i")
    run = Run(RunConfig(products=fake, tests=[], runs_dir=tmp_path / "runs", echo=False))
    try:
        assert mode(run.runtime) == 0o700 and run.runtime.parent == tmp_path
        assert run.link_addr == f"ipc://{run.runtime}/link"
        # The address the launcher hands the model passes the model's own check.
        endpoint, created = resolve_address(run.link_addr)
        assert created is None
    finally:
        run.stop()
    assert not run.runtime.exists()


@pytest.mark.parametrize("addr", ["tcp://0", "tcp://:0", "tcp://*"])
def test_tcp_without_host_binds_loopback_only(addr: str) -> None:
    link = Link(addr, context=CTX)
    link.bind()
    try:
        assert link.endpoint.startswith("tcp://127.0.0.1:"), link.endpoint
    finally:
        link.close()


def test_tcp_with_explicit_host_is_taken_as_given() -> None:
    endpoint, _ = resolve_address("tcp://127.0.0.2:5555")
    assert endpoint == "tcp://127.0.0.2:5555"


# -- RESET clears model state (real SMMU and endpoint) -------------------------------------------

def real_model(tmp_path: Path) -> tuple[Model, FakeQemu]:
    from cosim.endpoint.endpoint import EndpointOptions
    from cosim.smmu.options import SmmuOptions
    smmu_cls, ep_cls = _load_models()
    trace = TraceWriter(tmp_path / "t.jsonl")
    link = Link(inproc_address(), context=CTX, timeout_ms=2000, trace=trace,
                log=logging.getLogger("test.robust"))
    link.bind()
    model = Model(link,
                  lambda mem, irq: smmu_cls(mem, irq=irq, trace=trace, options=SmmuOptions()),
                  lambda dev, smmu, mem: ep_cls(dev, smmu, mem, trace, EndpointOptions()),
                  trace, logging.getLogger("test.robust"))
    return model, FakeQemu(link.endpoint, CTX)


def ask(m: Model, peer: FakeQemu, mtype: MsgType, **fields):
    peer.send(mtype, **fields)
    for _ in range(100):              # a CR0 write may need IRQ round trips: none here
        if m.link.poll(20):
            break
    reply = peer.recv()
    assert reply.ok, reply
    return reply


def test_system_reset_clears_smmu_and_endpoint_state(tmp_path) -> None:
    STRTAB_BASE, CR0, CR0ACK, COMMAND = 0x80, 0x20, 0x24, 0x04
    m, peer = real_model(tmp_path)
    try:
        ask(m, peer, MsgType.DEVICE, dev=0, kind=1, rid=0, pcie_off=0, ats_off=0,
            pasid_off=0, msix_off=0)
        ask(m, peer, MsgType.DEVICE, dev=1, kind=2, rid=0x10, pcie_off=0x40, ats_off=0x100,
            pasid_off=0x110, msix_off=0x80)
        ask(m, peer, MsgType.MMIO_WRITE, dev=0, region=0, size=8, offset=STRTAB_BASE,
            value=0x4000_0000)
        ask(m, peer, MsgType.MMIO_WRITE, dev=0, region=0, size=4, offset=CR0, value=0x8)
        ask(m, peer, MsgType.CFG_WRITE, dev=1, size=2, offset=COMMAND, value=0x6)
        assert ask(m, peer, MsgType.MMIO_READ, dev=0, region=0, size=8,
                   offset=STRTAB_BASE).value == 0x4000_0000
        assert ask(m, peer, MsgType.MMIO_READ, dev=0, region=0, size=4, offset=CR0ACK).value
        ep = m.endpoints[1]
        assert ep.config.bus_master
        ask(m, peer, MsgType.RESET, dev=0, kind=0)
        ask(m, peer, MsgType.RESET, dev=1, kind=0)
        assert ask(m, peer, MsgType.MMIO_READ, dev=0, region=0, size=8,
                   offset=STRTAB_BASE).value == 0
        assert ask(m, peer, MsgType.MMIO_READ, dev=0, region=0, size=4, offset=CR0ACK).value == 0
        assert not ep.config.bus_master
        assert m.endpoints[1] is ep, "a reset keeps the device, only its state goes"
    finally:
        peer.close()
        m.link.close()
        m.trace.close()
    resets = [r for r in read_trace(tmp_path / "t.jsonl").records if r.get("event") == "reset"]
    assert [(r["dev"], r["reset"]) for r in resets] == [(0, "system"), (1, "system")]
