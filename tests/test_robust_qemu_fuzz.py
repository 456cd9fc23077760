"""Fuzz QEMU's end of the link: a fake model sends bad and out-of-range messages to the real
patched QEMU (CPUs paused with -S, so no guest runs) and checks that QEMU answers each with
the architected status (docs/protocol.md), logs one line, writes no guest RAM (read back
through the shared RAM file) and keeps serving."""

from __future__ import annotations

import mmap
import os
import struct
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import zmq
from conftest import products_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cosim.link.protocol import (
    HEADER_SIZE,
    MAGIC,
    MAJOR,
    REPLY_BIT,
    Message,
    MsgType,
    Status,
    decode,
    encode,
)

pytestmark = pytest.mark.e2e

RAM_BASE = 0x4000_0000            # virt's guest RAM base
RAM_SIZE = 64 << 20
RAM_END = RAM_BASE + RAM_SIZE
MAX_DMA = 4096                    # small, so that TOO_BIG is cheap to provoke
SMMU_IRQ_LINES = 4                # eventq, priq, cmdq-sync, gerror
IRQ_PULSE = 2                     # the highest IRQ level
REPLY_WAIT_MS = 5000
# Above RAM on virt with 64 MiB: nothing is mapped up to the 256 GiB high-memory region.
UNMAPPED_TOP = 0x40_0000_0000
DMA_TYPES = (MsgType.DMA_READ, MsgType.DMA_WRITE)
SERVED = {int(MsgType.DMA_READ), int(MsgType.DMA_WRITE), int(MsgType.IRQ)}


@dataclass
class Qemu:
    proc: subprocess.Popen
    sock: zmq.Socket
    ram: mmap.mmap
    stderr: Path
    seq: int = 1000

    def log_lines(self) -> list[str]:
        return [ln for ln in self.stderr.read_text(errors="replace").splitlines()
                if "cosim-link" in ln]

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def recv(self, timeout_ms: int = REPLY_WAIT_MS) -> bytes | None:
        if self.sock.poll(timeout_ms, zmq.POLLIN):
            return self.sock.recv()
        return None

    def call(self, frame: bytes) -> Message:
        self.sock.send(frame)
        raw = self.recv()
        assert raw is not None, f"QEMU did not answer; stderr: {self.log_lines()[-5:]}"
        return decode(raw)


def _serve_startup(sock: zmq.Socket) -> None:
    """Answer QEMU's HELLO, DEVICE and RESET requests until it has gone quiet."""
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < 1.0:
        if not sock.poll(100, zmq.POLLIN):
            continue
        msg = decode(sock.recv())
        quiet_since = time.monotonic()
        assert not msg.reply, msg.describe()
        if msg.type is MsgType.HELLO:
            assert msg.ram_base == RAM_BASE and msg.ram_size == RAM_SIZE
            sock.send(encode(MsgType.HELLO, msg.seq, reply=True, minor=0, caps=msg.caps,
                             max_dma=MAX_DMA, name="fuzz-model"))
        else:
            sock.send(encode(msg.type, msg.seq, reply=True))


@pytest.fixture(scope="module")
def qemu(tmp_path_factory) -> Iterator[Qemu]:
    qemu_bin = products_for("debian-6.12").qemu
    d = tmp_path_factory.mktemp("qfuzz")
    os.chmod(d, 0o700)
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.PAIR)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(f"ipc://{d}/link")
    ram = d / "ram"
    stderr = d / "qemu.err"
    cmd = [str(qemu_bin), "-M", "virt,gic-version=3,iommu=smmuv3-cosim,memory-backend=ram",
           "-cpu", "max", "-m", f"{RAM_SIZE >> 20}M", "-S", "-nodefaults", "-display", "none",
           "-serial", "none", "-monitor", "none",
           "-object", f"memory-backend-file,id=ram,size={RAM_SIZE >> 20}M,mem-path={ram},"
                      "share=on",
           "-object", f"cosim-link,id=cosim,addr=ipc://{d}/link,timeout=5000,"
                      f"on-timeout=continue,memdev=ram,max-dma={MAX_DMA}",
           "-device", "cosim-pcie-ep,link=cosim,addr=2.0"]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=open(stderr, "w"), start_new_session=True)
    try:
        _serve_startup(sock)
        assert proc.poll() is None, stderr.read_text()
        with open(ram, "r+b") as f:
            view = mmap.mmap(f.fileno(), RAM_SIZE)
        yield Qemu(proc, sock, view, stderr)
        view.close()
    finally:
        proc.kill()
        proc.wait(10)
        sock.close(0)


def header(mtype: int, seq: int, *, magic: int = MAGIC, major: int = MAJOR,
           status: int = 0) -> bytes:
    return struct.pack("<HBBIQ", magic, major, mtype, status, seq)


def dma_body(rid: int, length: int, addr: int) -> bytes:
    return struct.pack("<HHIQ", rid, 0, length, addr)


# -- what to send, and what QEMU must answer ------------------------------------------------------

seqs = st.integers(1, 2**64 - 1)
kinds = st.sampled_from(DMA_TYPES)


@st.composite
def bad_messages(draw) -> tuple[str, bytes, Status | None]:
    """(what, frame, expected reply status or None for 'no reply, only a log line')."""
    seq = draw(seqs)
    case = draw(st.sampled_from([
        "truncated-header", "bad-magic", "reply-bit", "unknown-type", "wrong-major",
        "dma-truncated", "dma-write-len-mismatch", "dma-read-extra", "dma-too-big",
        "dma-past-ram-end", "dma-unmapped", "dma-wraps", "irq-size", "irq-bad-dev",
        "irq-bad-level", "irq-bad-line"]))
    if case == "truncated-header":
        return case, draw(st.binary(max_size=HEADER_SIZE - 1)), None
    if case == "bad-magic":
        magic = draw(st.integers(0, 0xffff).filter(lambda m: m != MAGIC))
        return case, header(MsgType.DMA_READ, seq, magic=magic) + draw(st.binary(max_size=64)), \
            None
    if case == "reply-bit":
        t = draw(st.integers(0, 0x7f)) | REPLY_BIT
        return case, header(t, seq) + draw(st.binary(max_size=64)), None
    if case == "unknown-type":
        t = draw(st.integers(0, 0x7f).filter(lambda t: t not in SERVED))
        return case, header(t, seq) + draw(st.binary(max_size=64)), Status.UNKNOWN_TYPE
    if case == "wrong-major":
        major = draw(st.integers(0, 255).filter(lambda m: m != MAJOR))
        return case, header(MsgType.DMA_READ, seq, major=major) + dma_body(0, 8, RAM_BASE), \
            Status.MALFORMED
    if case == "dma-truncated":
        t = draw(kinds)
        return case, header(t, seq) + draw(st.binary(max_size=15)), Status.MALFORMED
    if case == "dma-write-len-mismatch":
        length = draw(st.integers(0, MAX_DMA))
        data = draw(st.binary(max_size=MAX_DMA + 64).filter(lambda b: len(b) != length))
        addr = draw(st.integers(RAM_BASE, RAM_END - MAX_DMA))
        return case, header(MsgType.DMA_WRITE, seq) + dma_body(0, length, addr) + data, \
            Status.MALFORMED
    if case == "dma-read-extra":
        extra = draw(st.binary(min_size=1, max_size=64))
        return case, header(MsgType.DMA_READ, seq) + dma_body(0, 8, RAM_BASE) + extra, \
            Status.MALFORMED
    if case == "dma-too-big":
        t = draw(kinds)
        length = draw(st.integers(MAX_DMA + 1, 2**32 - 1))
        addr = draw(st.integers(RAM_BASE, RAM_END - 1))
        # Oversized messages too: some writes carry all their data.
        data = bytes(length) if t is MsgType.DMA_WRITE and length < 4 * MAX_DMA else b""
        return case, header(t, seq) + dma_body(0, length, addr) + data, Status.TOO_BIG
    if case in ("dma-past-ram-end", "dma-unmapped", "dma-wraps"):
        t = draw(kinds)
        length = draw(st.integers(1, MAX_DMA))
        if case == "dma-past-ram-end":      # starts in RAM, runs off its end
            addr = draw(st.integers(RAM_END - length + 1, RAM_END - 1)) if length > 1 \
                else RAM_END
        elif case == "dma-unmapped":
            addr = draw(st.integers(RAM_END, UNMAPPED_TOP - length))
        else:                               # addr + len overflows 64 bits
            addr = draw(st.integers(2**64 - length, 2**64 - 1))
        data = draw(st.binary(min_size=length, max_size=length)) \
            if t is MsgType.DMA_WRITE else b""
        rid = draw(st.integers(0, 0xffff))
        return case, header(t, seq) + dma_body(rid, length, addr) + data, Status.DECODE_ERROR
    if case == "irq-size":
        body = draw(st.binary(max_size=32).filter(lambda b: len(b) != 8))
        return case, header(MsgType.IRQ, seq) + body, Status.MALFORMED
    if case == "irq-bad-dev":               # dev 1 (the endpoint) has no wired interrupts
        dev = draw(st.integers(1, 0xffff))
        return case, header(MsgType.IRQ, seq) + struct.pack("<HHI", dev, 0, 1), \
            Status.DECODE_ERROR
    if case == "irq-bad-level":
        line = draw(st.integers(0, SMMU_IRQ_LINES - 1))
        level = draw(st.integers(IRQ_PULSE + 1, 2**32 - 1))
        return case, header(MsgType.IRQ, seq) + struct.pack("<HHI", 0, line, level), \
            Status.ACCESS_ERROR
    line = draw(st.integers(SMMU_IRQ_LINES, 0xffff))
    return case, header(MsgType.IRQ, seq) + struct.pack("<HHI", 0, line, IRQ_PULSE), \
        Status.DECODE_ERROR


def assert_alive(q: Qemu) -> None:
    """A valid DMA_READ still works (and orders us after QEMU's handling of the last frame)."""
    seq = q.next_seq()
    reply = q.call(encode(MsgType.DMA_READ, seq, rid=0, flags=0, len=8, addr=RAM_BASE + 64))
    assert (reply.type, reply.seq, reply.status) == (MsgType.DMA_READ, seq, Status.OK)
    assert reply.data == q.ram[64:72]
    assert q.proc.poll() is None


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bad=bad_messages())
def test_qemu_answers_bad_messages_with_error_status(qemu: Qemu, bad) -> None:
    what, frame, status = bad
    before = bytes(qemu.ram)
    lines = len(qemu.log_lines())
    qemu.sock.send(frame)
    if status is None:
        assert_alive(qemu)       # nothing came back for the bad frame itself
    else:
        raw = qemu.recv()
        assert raw is not None, f"{what}: no reply"
        assert len(raw) == HEADER_SIZE, f"{what}: an error reply has no body"
        magic, major, rtype, got, seq = struct.unpack("<HBBIQ", raw)
        assert (magic, major) == (MAGIC, MAJOR)
        assert rtype == frame[3] | REPLY_BIT and seq == struct.unpack_from("<Q", frame, 8)[0]
        assert Status(got) == status, f"{what}: got {Status(got).name}"
        assert_alive(qemu)
    assert len(qemu.log_lines()) == lines + 1, f"{what}: {qemu.log_lines()[lines:]}"
    assert bytes(qemu.ram) == before, f"{what}: guest RAM changed"


def test_valid_dma_write_lands_in_shared_ram(qemu: Qemu) -> None:
    """The positive control for 'nothing written': a good write is visible in the file."""
    off = 0x10_0000
    data = os.urandom(MAX_DMA)
    reply = qemu.call(encode(MsgType.DMA_WRITE, qemu.next_seq(), rid=0x10, flags=0,
                             len=len(data), addr=RAM_BASE + off, data=data))
    assert reply.ok
    assert qemu.ram[off:off + len(data)] == data
    reply = qemu.call(encode(MsgType.DMA_READ, qemu.next_seq(), rid=0x10, flags=0,
                             len=len(data), addr=RAM_BASE + off))
    assert reply.ok and reply.data == data
