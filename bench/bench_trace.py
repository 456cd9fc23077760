"""`TraceWriter.emit` records per second: the cost the model pays per trace record.

One `xlate` record (the most frequent kind, with a stage 1 domain) emitted `n` times to a
file, with schema checking off (the default, what runs in production) and on
(`check=True`, what the test suite runs with).

    .venv/bin/python bench/bench_trace.py [--n 200000] [--reps 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

from cosim.arch.domain import Domain  # noqa: E402
from cosim.trace import TraceWriter  # noqa: E402

DOM = Domain.stage1(1, 0x40000)


def emit_rate(n: int, path: str, **kw: bool) -> float:
    """Records per second of `n` xlate emits to `path`."""
    w = TraceWriter(path, cache_mode="coherent", **kw)
    emit = w.emit
    t0 = time.perf_counter()
    for i in range(n):
        emit("xlate", sid=8, ssid=None, iova=i << 12, acc="r", ok=True, pa=0x8000_0000 + (i << 12),
             size=4096, perm="rw", dom=DOM, ste=0x1000, cd=0x2000, tlb=False, fault=None)
    w.close()
    return n / (time.perf_counter() - t0)


def measure(n: int = 200_000, reps: int = 5) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"check_off": [], "check_on": []}
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "t.jsonl")
        for _ in range(reps):
            out["check_off"].append(emit_rate(n, path, check=False))
            out["check_on"].append(emit_rate(n, path, check=True))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000, help="records per repetition")
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    m = measure(args.n, args.reps)
    print("| emit | median records/s | min | max |")
    print("|---|---:|---:|---:|")
    for key, vals in m.items():
        print(f"| {key} | {statistics.median(vals):,.0f} | {min(vals):,.0f} | {max(vals):,.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
