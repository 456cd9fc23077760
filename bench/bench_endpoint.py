"""Endpoint DMA throughput through the ATC (all hits), next to raw SparseMemory copies.

Each endpoint operation is one DMA_DOORBELL write running a COPY descriptor with the ATS flag,
so it includes MMIO decode, two ATC lookups per page, the SMMU's EATS check, the memory
accesses and (optionally) trace records. The baseline does the same copies directly on
SparseMemory in the same run, so the ratio is the model's overhead per DMA.

    .venv/bin/python bench/bench_endpoint.py [--ops N] [--len BYTES] [--trace PATH]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable

from cosim.arch import endpoint_regs as regs
from cosim.endpoint.endpoint import Endpoint
from cosim.endpoint.testing import FakeSmmu
from cosim.memory import SparseMemory
from cosim.trace import open_writer

RID = 0x10
ATS_OFF = 0x100
SRC_IOVA, DST_IOVA = 0x100000, 0x200000
SRC_PA, DST_PA = 0x4000000, 0x5000000


def _timed(fn: Callable[[], None], ops: int) -> float:
    # CPU time of this process (the trace's writes included): the machine may be shared.
    t0 = time.process_time()
    for _ in range(ops):
        fn()
    return time.process_time() - t0


def endpoint_copy(ops: int, length: int, trace_path: str | None,
                  fmt: str = "cst") -> tuple[float, Endpoint]:
    smmu = FakeSmmu()
    span = max(length, 4096)
    smmu.map(RID, None, SRC_IOVA, SRC_PA, span)
    smmu.map(RID, None, DST_IOVA, DST_PA, span)
    mem = SparseMemory()
    mem.write(SRC_PA, os.urandom(length))
    mem.writes = _NoLog()  # keep the test-only write log from growing during the bench
    trace = open_writer(trace_path, fmt)  # type: ignore[arg-type]
    ep = Endpoint(1, smmu, mem, trace)
    ep.device_info(RID, 0x40, ATS_OFF, 0, 0)
    ep.cfg_write(0x04, 2, 0x4)
    ep.cfg_write(ATS_OFF + 6, 2, 0x8000)
    off = {r.name: (r.offset, r.nbytes) for r in regs.REGISTERS}
    for name, value in (("DMA_OP", int(regs.DmaOp.COPY)), ("DMA_FLAGS", int(regs.DmaFlag.ATS)),
                        ("DMA_SRC", SRC_IOVA), ("DMA_DST", DST_IOVA), ("DMA_LEN", length)):
        ep.mmio_write(0, off[name][0], off[name][1], value)
    bell = off["DMA_DOORBELL"][0]

    def one() -> None:
        ep.mmio_write(0, bell, 4, 1)

    one()  # warm the ATC: every timed operation hits
    elapsed = _timed(one, ops)
    trace.close()
    assert ep.regs["DMA_STATUS"] == regs.DmaStatus.DONE, "benchmark DMA failed"
    assert mem.read(DST_PA, length) == mem.read(SRC_PA, length)
    return elapsed, ep


class _NoLog(list):
    def append(self, item: object) -> None:
        pass


def raw_copy(ops: int, length: int) -> float:
    mem = SparseMemory()
    mem.writes = _NoLog()
    mem.write(SRC_PA, os.urandom(length))

    def one() -> None:
        done = 0
        while done < length:  # the same 4 KiB pieces the endpoint issues
            n = min(length - done, 4096)
            mem.write(DST_PA + done, mem.read(SRC_PA + done, n))
            done += n

    return _timed(one, ops)


def measure(ops: int = 20000, length: int = 4096, trace_path: str | None = None) -> dict:
    """One measurement, in seconds for `ops` copies: `raw` (SparseMemory), `untraced` and
    `traced` (endpoint COPY via ATC hits, trace off / on: the binary format), `traced_jsonl`
    (JSON lines), and the untraced run's `atc_hits`."""
    raw = raw_copy(ops, length)
    untraced, ep = endpoint_copy(ops, length, None)
    with tempfile.TemporaryDirectory() as d:
        traced, _ = endpoint_copy(ops, length, trace_path or os.path.join(d, "bench.cst"))
        traced_jsonl, _ = endpoint_copy(ops, length, os.path.join(d, "bench.jsonl"), "jsonl")
    return {"raw": raw, "untraced": untraced, "traced": traced, "traced_jsonl": traced_jsonl,
            "atc_hits": ep.regs["CNT_ATC_HIT"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, default=20000)
    ap.add_argument("--len", type=int, default=4096, dest="length")
    ap.add_argument("--trace", help="write the binary trace to this file")
    args = ap.parse_args()
    ops, length = args.ops, args.length

    m = measure(ops, length, args.trace)
    rows: list[tuple[str, float]] = [
        ("raw SparseMemory copy (baseline)", m["raw"]),
        ("endpoint COPY via ATC hits, no trace", m["untraced"]),
        ("endpoint COPY via ATC hits, binary trace", m["traced"]),
        ("endpoint COPY via ATC hits, JSON-lines trace", m["traced_jsonl"]),
    ]
    base = rows[0][1]
    print(f"ops={ops} len={length} bytes, ATC hits in the untraced run: {m['atc_hits']}\n")
    print("| path | ops/s | MB/s | time vs baseline |")
    print("|---|---:|---:|---:|")
    for name, secs in rows:
        print(f"| {name} | {ops / secs:,.0f} | {ops * length / secs / 1e6:,.1f} | "
              f"{secs / base:.1f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
