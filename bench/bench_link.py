"""Benchmark of the model's link: MMIO round trip and DMA bandwidth, printed as markdown.

  .venv/bin/python bench/bench_link.py [--iters N] [--quick]

1. MMIO-like round trip: a fake QEMU (Python, its own process) sends MMIO_READ and waits for
   the reply from a model process serving it through `cosim.link.transport.Link`; measured next to
   a raw pyzmq PAIR ping-pong of the same frame sizes in the same run, over ipc:// as QEMU
   uses it. The ratio is what the protocol layer (construct decode/encode, dispatch) costs.
2. DMA bandwidth of `LinkMemory`: reads and writes done on the shared-RAM mapping versus
   over the socket, served by a fake QEMU in Python (a C QEMU serves faster: the socket
   numbers are a lower bound).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import zmq  # noqa: E402

from cosim.link.memory import LinkMemory  # noqa: E402
from cosim.link.protocol import Caps, MsgType, decode, encode  # noqa: E402
from cosim.link.transport import Link, LinkDown  # noqa: E402

RECV_TIMEOUT_MS = 20000  # a peer that died must fail the benchmark, not hang it
MMIO_READ_FRAME = 32     # header + MMIO_READ body
MMIO_REPLY_FRAME = 24    # header + u64 value
RAM_SIZE = 16 << 20
RAM_BASE = 0x4000_0000
DMA_SIZES = (64, 4096, 65536)


# -- processes ----------------------------------------------------------------------------------

def raw_echo(addr: str) -> None:
    """Raw pyzmq peer: answer every frame with a reply-sized frame, until an empty frame."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PAIR)
    sock.bind(addr)
    reply = bytes(MMIO_REPLY_FRAME)
    while True:
        frame = sock.recv()
        if not frame:
            break
        sock.send(reply)
    sock.close()
    ctx.term()


def link_model(addr: str) -> None:
    """The model side: a Link serving MMIO_READ until BYE."""
    ctx = zmq.Context()
    link = Link(addr, handler=lambda msg: {"value": msg.offset}, context=ctx)
    link.bind()
    try:
        while True:
            link.poll(100)
    except LinkDown:  # BYE, or the peer gone: either ends the benchmark
        pass
    finally:
        link.close()
        ctx.term()


def dma_server(addr: str, ram_path: str) -> None:
    """Fake QEMU for DMA: HELLO with shared RAM, then serve DMA from the same file until done."""
    import mmap
    fd = os.open(ram_path, os.O_RDWR)
    ram = mmap.mmap(fd, RAM_SIZE)
    os.close(fd)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PAIR)
    sock.connect(addr)
    sock.send(encode(MsgType.HELLO, 1, minor=0, caps=int(Caps.SHARED_RAM), ram_base=RAM_BASE,
                     ram_size=RAM_SIZE, ram_path=ram_path))
    while True:
        msg = decode(sock.recv())
        if msg.reply:
            continue
        if msg.type is MsgType.IRQ:   # the benchmark's "stop" signal
            sock.send(encode(MsgType.IRQ, msg.seq, reply=True))
            break
        off = msg.addr - RAM_BASE
        if msg.type is MsgType.DMA_READ:
            sock.send(encode(msg.type, msg.seq, reply=True, data=ram[off:off + msg.len]))
        else:
            ram[off:off + msg.len] = msg.data
            sock.send(encode(msg.type, msg.seq, reply=True))
    sock.send(encode(MsgType.BYE, 2))
    sock.close(linger=1000)
    ctx.term()
    ram.close()


# -- measurements -------------------------------------------------------------------------------

def _percentile(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(p * len(s)))]


def measure_raw(addr: str, iters: int, warmup: int) -> list[float]:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PAIR)
    sock.setsockopt(zmq.RCVTIMEO, RECV_TIMEOUT_MS)
    sock.connect(addr)
    frame = bytes(MMIO_READ_FRAME)
    out = []
    for i in range(iters + warmup):
        t0 = time.perf_counter_ns()
        sock.send(frame)
        sock.recv()
        if i >= warmup:
            out.append((time.perf_counter_ns() - t0) / 1000)
    sock.send(b"")
    sock.close(linger=1000)
    ctx.term()
    return out


def measure_link(addr: str, iters: int, warmup: int) -> list[float]:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PAIR)
    sock.setsockopt(zmq.RCVTIMEO, RECV_TIMEOUT_MS)
    sock.connect(addr)
    # One pre-encoded request and raw replies: the peer costs what the raw echo peer costs,
    # so the difference to the raw series is the model side's Link alone.
    frame = encode(MsgType.MMIO_READ, 1, dev=0, region=0, size=4, offset=0x10)
    assert len(frame) == MMIO_READ_FRAME
    sock.send(frame)
    assert decode(sock.recv()).value == 0x10
    out = []
    for i in range(iters + warmup):
        t0 = time.perf_counter_ns()
        sock.send(frame)
        reply = sock.recv()
        if i >= warmup:
            out.append((time.perf_counter_ns() - t0) / 1000)
    assert len(reply) == MMIO_REPLY_FRAME
    sock.send(encode(MsgType.BYE, iters + warmup + 1))
    sock.recv()
    sock.close(linger=1000)
    ctx.term()
    return out


def measure_dma(addr: str, ram_path: str, seconds: float) -> dict[tuple[str, str, int], float]:
    """ops/s per (path, direction, size)."""
    ctx = zmq.Context()
    link = Link(addr, context=ctx, timeout_ms=10000)
    link.bind()
    spawn = mp.get_context("spawn")
    server = spawn.Process(target=dma_server, args=(link.endpoint, ram_path))
    server.start()
    while link.session is None:
        link.poll(100)
    shared = link.shared_ram
    assert shared is not None, "shared RAM not accepted"
    mem = LinkMemory(link)
    results = {}
    for path in ("shared", "socket"):
        link.shared_ram = shared if path == "shared" else None
        for size in DMA_SIZES:
            data = os.urandom(size)
            for direction in ("read", "write"):
                n = 0
                addr_ = RAM_BASE
                t_end = time.perf_counter() + seconds
                t0 = time.perf_counter()
                while time.perf_counter() < t_end:
                    for _ in range(16):
                        if direction == "read":
                            mem.read(addr_, size, rid=8)
                        else:
                            mem.write(addr_, data, rid=8)
                        addr_ = RAM_BASE + (addr_ - RAM_BASE + size) % (RAM_SIZE - size)
                        n += 1
                results[(path, direction, size)] = n / (time.perf_counter() - t0)
    link.shared_ram = shared
    try:
        link.request(MsgType.IRQ, dev=0, line=0, level=0)
        link.poll(1000)
    except LinkDown:  # the server's BYE may race its disconnect; both end the run
        pass
    server.join(10)
    link.close()
    ctx.term()
    return results


def bare_copy_rate(size: int, seconds: float) -> float:
    """Copies/s of `size` bytes out of a large buffer into a new bytes object, in this process:
    what a read through the shared mapping cannot beat (memory bandwidth, Python's copy)."""
    buf = memoryview(bytearray(os.urandom(1 << 20)) * 64)
    span = len(buf) - size
    n, off = 0, 0
    t0 = time.perf_counter()
    t_end = t0 + seconds
    while time.perf_counter() < t_end:
        for _ in range(16):
            bytes(buf[off:off + size])
            off = (off + size) % span
            n += 1
    return n / (time.perf_counter() - t0)


def measure(iters: int = 5000, seconds: float = 0.5) -> dict:
    """One measurement: `raw` and `link` (lists of round-trip µs, warm-up dropped) and `dma`
    (ops/s keyed by (path, direction, size), path 'shared' or 'socket')."""
    warmup = max(50, iters // 10)
    spawn = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="cosim-bench-") as d:
        os.chmod(d, 0o700)
        raw_addr, link_addr, dma_addr = (f"ipc://{d}/{n}" for n in ("raw", "link", "dma"))
        p = spawn.Process(target=raw_echo, args=(raw_addr,))
        p.start()
        raw = measure_raw(raw_addr, iters, warmup)
        p.join(10)
        p = spawn.Process(target=link_model, args=(link_addr,))
        p.start()
        lnk = measure_link(link_addr, iters, warmup)
        p.join(10)
        ram_path = os.path.join(d, "ram")
        with open(ram_path, "wb") as f:
            f.truncate(RAM_SIZE)
        dma = measure_dma(dma_addr, ram_path, seconds)
    return {"raw": raw, "link": lnk, "dma": dma}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--iters", type=int, default=5000, help="round trips per latency series")
    ap.add_argument("--seconds", type=float, default=0.5, help="time per DMA cell")
    ap.add_argument("--quick", action="store_true", help="few iterations (smoke test)")
    args = ap.parse_args()
    if args.quick:
        args.iters, args.seconds = 300, 0.05
    m = measure(args.iters, args.seconds)
    raw, lnk, dma = m["raw"], m["link"], m["dma"]

    raw_med, link_med = statistics.median(raw), statistics.median(lnk)
    raw_p99, link_p99 = _percentile(raw, 0.99), _percentile(lnk, 0.99)
    print(f"## Link round trip (ipc://, {args.iters} round trips, fake QEMU in Python)\n")
    print("| path | median µs | p99 µs | ratio to raw (median) |")
    print("|---|---:|---:|---:|")
    print(f"| raw pyzmq PAIR ping-pong | {raw_med:.1f} | {raw_p99:.1f} | 1.00 |")
    print(f"| cosim Link MMIO_READ | {link_med:.1f} | {link_p99:.1f} | "
          f"{link_med / raw_med:.2f} |")
    print("\n## DMA through LinkMemory (fake QEMU in Python serves the socket path)\n")
    print("| size | dir | shared RAM ops/s | MB/s | socket ops/s | MB/s | shared/socket |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for size in DMA_SIZES:
        for direction in ("read", "write"):
            s, k = dma[("shared", direction, size)], dma[("socket", direction, size)]
            print(f"| {size} | {direction} | {s:,.0f} | {s * size / 1e6:,.1f} | {k:,.0f} | "
                  f"{k * size / 1e6:,.1f} | {s / k:.1f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
