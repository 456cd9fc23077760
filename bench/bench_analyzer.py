"""Analyzer throughput: records analyzed per second on a generated 200k-record trace, against
a baseline of only JSON-parsing the same file in the same run.

    .venv/bin/python bench/bench_analyzer.py [--records N] [--mode coherent|caching]

Prints a markdown table; the ratio says how many times slower the full analysis is than
parsing alone.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from cosim.analyzer import run
from cosim.analyzer.view import TraceView
from cosim.arch.domain import Domain
from cosim.trace import SCHEMA, read_trace

SID, DEV = 8, 1


def _doms(n: int) -> dict[str, int | str]:
    """The trace form of domain n (a `dom` object)."""
    return Domain.stage1(n, 0x40000 * n).to_record()


def generate(path: Path, records: int, mode: str, seed: int = 1) -> int:
    """A replace loop with ATS and untranslated traffic, invalidations and fetches."""
    rnd = random.Random(seed)
    lines = [json.dumps({"t": 0, "k": "header", "schema": SCHEMA, "wall": 0.0, "cache_mode": mode})]
    t = 0
    cmd = 0
    entry = 0
    inv = 0
    live: list[int] = []
    dom_n = 1

    def emit(k: str, **f: object) -> None:
        nonlocal t
        t += rnd.randint(200, 2000)
        lines.append(json.dumps({"t": t, "k": k, **f}, separators=(",", ":")))

    while len(lines) < records:
        dom = _doms(dom_n)
        for step in range(40):  # traffic; the first fetch after a CFGI misses the cache
            iova = rnd.randrange(0, 256) << 12
            ste_qw = [0xA00B + (dom_n << 12), 0x10000002, 0, 0, 0, 0, 0, 0]
            emit("ste_fetch", sid=SID, addr=0x1200, qw=ste_qw,
                 cached=mode == "caching" and step > 0, cfg="s1", legal=True)
            if rnd.random() < 0.5:
                emit("xlate", sid=SID, ssid=None, iova=iova, acc="r", ok=True, pa=iova + 0x10000,
                     size=4096, perm="rw", dom=dom, ste=None, cd=None,
                     tlb=mode == "caching" and rnd.random() < 0.7, fault=None)
                emit("dma", dev=DEV, sid=SID, ssid=None, iova=iova, pa=iova + 0x10000, len=64,
                     rw="r", ats=False, ok=True, atc_id=None, dom=dom, err=None, src="tg",
                     seq=None)
            else:
                entry += 1
                emit("ats", sid=SID, ssid=None, iova=iova, acc="w", status="SUCCESS",
                     pa=iova + 0x10000, size=4096, perm="rw", dom=dom)
                emit("atc_insert", dev=DEV, sid=SID, ssid=None, iova=iova, size=4096,
                     pa=iova + 0x10000, perm="rw", dom=dom, id=entry)
                emit("atc_hit", dev=DEV, sid=SID, ssid=None, iova=iova, id=entry, dom=dom)
                emit("dma", dev=DEV, sid=SID, ssid=None, iova=iova, pa=iova + 0x10000, len=64,
                     rw="w", ats=True, ok=True, atc_id=entry, dom=dom, err=None, src="tg",
                     seq=None)
                live.append(entry)
        # a replace: attach-begin, CFGI + sync, ATC_INV + sync, attach-end
        emit("marker", dev=DEV, tag="attach-begin", value=dom_n, label="")
        for op in ("CFGI_STE", "CMD_SYNC", "ATC_INV", "CMD_SYNC"):
            cmd += 1
            emit("cmd", idx=cmd, op=op, f={}, raw=[0, 0])
            if op == "CFGI_STE":
                emit("cfgi", op=op, sid=SID)
            elif op == "ATC_INV":
                inv += 1
                emit("atc_inv", sid=SID, ssid=None, addr=0, size=1 << 52, g=False, id=inv)
                for e in live:
                    emit("atc_evict", dev=DEV, id=e)
                live.clear()
            else:
                emit("sync", idx=cmd, cs="IRQ", state="done")
        dom_n = dom_n % 7 + 1  # cycles through domains, so A->B->...->A replaces occur
        emit("marker", dev=DEV, tag="attach-end", value=dom_n, label="")
    path.write_text("\n".join(lines[:records + 1]) + "\n")
    return records


def _best(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def measure(records: int = 200_000, mode: str = "coherent", repeat: int = 3) -> dict:
    """Best of `repeat`: seconds to json-parse (`parse`) and to read + analyze (`full`) a
    generated trace of `records` records; also `records`, `bytes` and the `verdict`."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "bench.jsonl"
        n = generate(path, records, mode)
        size = os.path.getsize(path)

        def parse_only() -> None:
            with open(path, "rb") as f:
                for line in f:
                    json.loads(line)

        verdicts = []

        def analyze() -> None:
            an = run(TraceView.from_trace(read_trace(path)))
            verdicts.append(f"{an.verdict}, {len(an.warnings)} warning(s)")

        t_parse = _best(parse_only, repeat)
        t_full = _best(analyze, repeat)
    return {"records": n, "bytes": size, "parse": t_parse, "full": t_full,
            "verdict": verdicts[-1]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--mode", choices=("coherent", "caching"), default="coherent")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    m = measure(args.records, args.mode, args.repeat)
    n, t_parse, t_full = m["records"], m["parse"], m["full"]
    print(f"trace: {n} records, {m['bytes'] / 1e6:.1f} MB, cache_mode {args.mode}, "
          f"verdict {m['verdict']}, best of {args.repeat}\n")
    print("| stage | seconds | records/s | ratio |")
    print("|---|---:|---:|---:|")
    print(f"| json.loads per line (baseline) | {t_parse:.3f} | {n / t_parse:,.0f} | 1.00 |")
    print(f"| read_trace + analyze | {t_full:.3f} | {n / t_full:,.0f} | "
          f"{t_full / t_parse:.2f} |")
    return 0 if m["verdict"].startswith("clean") else 1


if __name__ == "__main__":
    sys.exit(main())
