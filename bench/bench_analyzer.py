"""Analyzer throughput and memory on generated traces, against baselines measured in the same
run: records analyzed per second next to only decoding the same file's lines, and the
analysis's peak RSS next to that of a process that only decodes.

    .venv/bin/python bench/bench_analyzer.py [--records N] [--mode coherent|caching]
    .venv/bin/python bench/bench_analyzer.py --shape endpoint [--records 1000000]
    .venv/bin/python bench/bench_analyzer.py --shape endpoint --format cst

`--format cst` measures the same trace converted to the binary format the model writes
(`trace.cst`, what `make run` analyses); its decode-only baseline decompresses each frame and
decodes its records.

`--shape marker` (the default) is a replace loop with userspace markers only; `--shape
endpoint` is shaped like the real endpoint's traces: driver probe windows (thousands of
attaches), ATS traffic filling a 32-entry ATC with unique entry ids, and every attach's
ATC_INV dropping the entries (`atc_inv_rx`). Prints a markdown table; the ratio says how many
times slower the full analysis is than decoding alone. Each figure is measured in a fresh
process (`cosim analyze`, or a decode-only loop), so peak RSS is that process's own.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cosim.analyzer import run
from cosim.arch.domain import Domain
from cosim.trace import SCHEMA, TraceReader
from cosim.trace.writer import open_writer

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
                     pa=iova + 0x10000, size=4096, perm="rw", dom=dom, tlb=False)
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


# -- the endpoint-shaped trace ------------------------------------------------------------------
EP_SID, EP_DEV, ATC_ENTRIES = 16, 1, 32
STE_WORDS = [9223372037951819819, 268435670, 0, 0, 0, 0, 0, 0]
_CD0, _CD3 = 811464277374224 & ((1 << 48) - 1), 18446744073508552516
WHOLE = 1 << 64   # the ATC_INV size the driver uses for the whole address space


def _cd_words(asid: int, ttb: int) -> list[int]:
    return [(asid << 48) | _CD0, ttb, 0, _CD3, 0, 0, 0, 0]


def generate_endpoint(path: Path, records: int, seed: int = 1) -> int:
    """Driver-probe attach windows replacing the stream's stage 1 domain (CD change, CFGI_CD +
    CMD_SYNC, ATC_INV + CMD_SYNC), ATS traffic in between with unique ATC entry ids, the
    ATC_INV dropping the held entries. A clean trace, written by hand in the model's format."""
    rnd = random.Random(seed)
    f = path.open("w")
    f.write(json.dumps({"t": 0, "k": "header", "schema": SCHEMA, "wall": 0.0,
                        "cache_mode": "coherent"}) + "\n")
    t = 0
    written = 0
    cmd_idx = inv_id = entry_id = 0
    held: list[tuple[int, int]] = []   # (id, iova), oldest first
    sep = (",", ":")

    def emit(rec: dict) -> None:
        nonlocal t, written
        if written >= records:
            return
        t += rnd.randint(200, 3000)
        f.write(json.dumps({"t": t, **rec}, separators=sep) + "\n")
        written += 1

    def dom(n: int) -> dict:
        return Domain.stage1(n, 0x41000000 + 0x8000 * n).to_record()

    def snap(d: dict | None, n: int) -> dict:
        cd = _cd_words(n, 0x41000000 + 0x8000 * n) if d is not None else None
        return {"dom": d or {"kind": "abort"}, "ste": STE_WORDS if d else [1, 0, 0, 0, 0, 0, 0,
                                                                          0],
                "cd": cd, "cd_addr": 0x41800000 if d else None}

    def command(name: str, **rec: object) -> None:
        nonlocal cmd_idx
        emit({"k": "cmd", "idx": cmd_idx, "op": name, "f": {}, "raw": [0, 0]})
        if name == "CMD_SYNC":
            emit({"k": "sync", "idx": cmd_idx, "cs": "IRQ", "state": "done"})
        elif rec:
            emit(rec)
        cmd_idx += 1

    emit({"k": "link", "event": "device", "dev": EP_DEV, "device": "pcie_ep", "rid": EP_SID,
          "pcie_off": 64, "ats_off": 256, "pasid_off": 272, "msix_off": 128})
    emit({"k": "drv_armed", "op": "attach", "target": "paging"})
    cur: dict | None = None
    cur_n = 0
    while written < records:
        # an attach: abort -> 2, then 2 -> 3 -> 4 -> 2 ...
        new_n = cur_n % 3 + 2
        new = dom(new_n)
        emit({"k": "drv", "op": "attach", "phase": "begin", "target": "paging", "sid": EP_SID,
              "ssid": None, "ret": None, **snap(cur, cur_n)})
        command("CFGI_CD", k="cfgi", op="CFGI_CD", sid=EP_SID, ssid=0, effect="now")
        command("CMD_SYNC")
        inv_id += 1
        command("ATC_INV", k="atc_inv", sid=EP_SID, ssid=None, addr=0, size=WHOLE, g=False,
                id=inv_id)
        emit({"k": "atc_inv_rx", "dev": EP_DEV, "sid": EP_SID, "ssid": None, "addr": 0,
              "size": WHOLE, "g": False, "inv_id": inv_id, "dropped": [e for e, _ in held]})
        held.clear()
        emit({"k": "atc_inv_cpl", "dev": EP_DEV, "inv_id": inv_id, "ignored": False})
        command("CMD_SYNC")
        emit({"k": "drv", "op": "attach", "phase": "end", "target": "paging", "sid": EP_SID,
              "ssid": None, "ret": 0, **snap(new, new_n)})
        cur, cur_n = new, new_n
        cd = _cd_words(cur_n, 0x41000000 + 0x8000 * cur_n)
        for _ in range(rnd.randint(40, 80)):   # traffic: mostly ATC hits, some misses
            iova = 0x40000000 + (rnd.randrange(0, 48) << 12)
            hit = next((e for e, a in held if a == iova), None)
            if hit is None:
                emit({"k": "ste_fetch", "sid": EP_SID, "addr": 0x41200000, "qw": STE_WORDS,
                      "cached": False, "cfg": "s1", "legal": True})
                emit({"k": "cd_fetch", "sid": EP_SID, "ssid": None, "addr": 0x41800000,
                      "qw": cd, "cached": False, "legal": True})
                emit({"k": "ats", "sid": EP_SID, "ssid": None, "iova": iova, "acc": "w",
                      "status": "SUCCESS", "pa": iova + 0x8000000, "size": 4096,
                      "perm": "rwx", "dom": cur, "tlb": False})
                if len(held) >= ATC_ENTRIES:
                    old_id, _ = held.pop(0)
                    emit({"k": "atc_evict", "dev": EP_DEV, "id": old_id})
                entry_id += 1
                hit = entry_id
                held.append((hit, iova))
                emit({"k": "atc_insert", "dev": EP_DEV, "sid": EP_SID, "ssid": None,
                      "iova": iova, "size": 4096, "pa": iova + 0x8000000, "perm": "rw",
                      "dom": cur, "id": hit})
            emit({"k": "atc_hit", "dev": EP_DEV, "sid": EP_SID, "ssid": None, "iova": iova,
                  "id": hit, "dom": cur})
            emit({"k": "dma", "dev": EP_DEV, "sid": EP_SID, "ssid": None, "iova": iova,
                  "pa": iova + 0x8000000, "len": 4096, "rw": "w", "ats": True, "ok": True,
                  "atc_id": hit, "dom": cur, "err": None, "src": "engine", "seq": None})
    f.close()
    return written


# -- measuring ---------------------------------------------------------------------------------
_DECODE_ONLY = """
import sys, time
try:
    from orjson import loads
except ImportError:
    from json import loads
t0, c0 = time.perf_counter(), time.process_time()
n = 0
with open(sys.argv[1], "rb") as f:
    for line in f:
        loads(line)
        n += 1
print(time.perf_counter() - t0, time.process_time() - c0, n, _hwm())
"""

_DECODE_ONLY_CST = """
import sys, time, zstandard
from orjson import loads
from cosim.trace import framing
t0, c0 = time.perf_counter(), time.process_time()
n = 0
zd = zstandard.ZstdDecompressor()
with open(sys.argv[1], "rb") as f:
    f.read(len(framing.MAGIC) + framing.ORIGIN.size)
    for frame in framing.frames(f, 0):
        arr = loads(framing.decompress(frame, zd))
        n += len(arr[0] if frame.flags & framing.WIDE else arr)
print(time.perf_counter() - t0, time.process_time() - c0, n, _hwm())
"""

_READ_ONLY = """
import sys, time
from cosim.trace import TraceReader
t0, c0 = time.perf_counter(), time.process_time()
n = 0
for _ in TraceReader(sys.argv[1]):
    n += 1
print(time.perf_counter() - t0, time.process_time() - c0, n, _hwm())
"""

_ANALYZE = """
import sys, time
from cosim.analyzer import run
t0, c0 = time.perf_counter(), time.process_time()
an = run(sys.argv[1])
print(time.perf_counter() - t0, time.process_time() - c0, an.counts["records"], _hwm(),
      an.verdict + ", " + str(len(an.warnings)) + " warning(s)")
"""
# Peak RSS of this process alone: VmHWM restarts at exec (getrusage's maxrss would carry the
# forking parent's).
_HWM = """
def _hwm():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
"""


def _child(code: str, path: Path) -> tuple[float, float, int, str, int]:
    """(wall s, CPU s, records, verdict, peak RSS in KiB) of a fresh process running code."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parent.parent)] + sys.path)}
    r = subprocess.run([sys.executable, "-c", _HWM + code, str(path)], capture_output=True,
                       text=True, env=env, check=True)
    parts = r.stdout.split(maxsplit=4)
    return (float(parts[0]), float(parts[1]), int(parts[2]),
            parts[4].strip() if len(parts) > 4 else "", int(parts[3]))


def measure(records: int = 200_000, mode: str = "coherent", repeat: int = 3,
            shape: str = "marker", fmt: str = "jsonl") -> dict:
    """Best of `repeat`: seconds to decode every line (`parse`; every frame, `fmt` 'cst')
    and to analyze (`full`) a generated trace of `records` records, each in a fresh process;
    `parse_cpu`/`full_cpu` the CPU seconds (steadier on a loaded machine), `parse_rss`/
    `full_rss` peak RSS in KiB, also `records`, `bytes` and the `verdict`."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "bench.jsonl"
        n = generate_endpoint(path, records) if shape == "endpoint" else \
            generate(path, records, mode)
        decode = _DECODE_ONLY
        if fmt == "cst":
            path = _to_cst(path)
            decode = _DECODE_ONLY_CST
        size = os.path.getsize(path)
        parse = [_child(decode, path) for _ in range(repeat)]
        read = [_child(_READ_ONLY, path) for _ in range(repeat)]
        full = [_child(_ANALYZE, path) for _ in range(repeat)]
    return {"records": n, "bytes": size,
            "parse": min(p[0] for p in parse), "full": min(f[0] for f in full),
            "parse_cpu": min(p[1] for p in parse), "full_cpu": min(f[1] for f in full),
            "read_cpu": min(r[1] for r in read),
            "parse_rss": max(p[4] for p in parse), "full_rss": max(f[4] for f in full),
            "verdict": full[-1][3]}


def _to_cst(path: Path) -> Path:
    """The trace at `path` (JSON lines) written in the binary format beside it."""
    out = path.with_suffix(".cst")
    with TraceReader(path) as reader:
        w = open_writer(out, "cst", check=False, copy_header=reader.header)
        for rec in reader:
            w.write_record(rec)
        w.close()
    return out


def bound(m: dict) -> str:
    """Where the time of a record goes, from one measure() (CPU time): decoding is the
    decode-only baseline (each line, or each frame decompressed and decoded); the schema
    check is TraceReader's time beyond it (its loop, the envelope added to each record, the
    per-kind test generated from cosim/trace/schema.py); trackers + rules the rest of
    `cosim analyze` (the engine's loop, the domain objects read, every handler)."""
    n = m["records"]
    dec = m["parse_cpu"] / n * 1e6
    chk = max(m["read_cpu"] - m["parse_cpu"], 0) / n * 1e6
    rules = max(m["full_cpu"] - m["read_cpu"], 0) / n * 1e6
    total = m["full_cpu"] / n * 1e6
    return (f"per record (CPU): {dec:.2f} us decoding, {chk:.2f} us schema check, "
            f"{rules:.2f} us trackers + rules = {total:.2f} us, {1e6 / total:,.0f} records/s; "
            f"300k records/s needs 3.33 us in all")


def in_process(path: Path) -> float:
    """Seconds for run(path) in this process (for profiling with cProfile)."""
    t0 = time.perf_counter()
    run(path)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int)
    ap.add_argument("--mode", choices=("coherent", "caching"), default="coherent")
    ap.add_argument("--shape", choices=("marker", "endpoint"), default="marker")
    ap.add_argument("--format", choices=("jsonl", "cst"), default="jsonl")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    records = args.records or (1_000_000 if args.shape == "endpoint" else 200_000)
    m = measure(records, args.mode, args.repeat, args.shape, args.format)
    n = m["records"]
    print(f"trace: {n} records, {m['bytes'] / 1e6:.1f} MB ({args.format}), shape "
          f"{args.shape}, cache_mode {args.mode}, verdict {m['verdict']}, best of "
          f"{args.repeat}\n")
    print("| stage | wall s | records/s | CPU s | records/CPU s | ratio (CPU) | peak RSS |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    what = "each frame" if args.format == "cst" else "each line"
    print(f"| decode {what} only (baseline) | {m['parse']:.2f} | {n / m['parse']:,.0f} | "
          f"{m['parse_cpu']:.2f} | {n / m['parse_cpu']:,.0f} | 1.00 | "
          f"{m['parse_rss'] / 1024:.0f} MB |")
    print(f"| decode + schema check (TraceReader) | | | {m['read_cpu']:.2f} | "
          f"{n / m['read_cpu']:,.0f} | {m['read_cpu'] / m['parse_cpu']:.2f} | |")
    print(f"| cosim analyze | {m['full']:.2f} | {n / m['full']:,.0f} | {m['full_cpu']:.2f} | "
          f"{n / m['full_cpu']:,.0f} | {m['full_cpu'] / m['parse_cpu']:.2f} | "
          f"{m['full_rss'] / 1024:.0f} MB ({m['full_rss'] / max(m['parse_rss'], 1):.1f}x) |")
    print("\n" + bound(m))
    return 0 if m["verdict"].startswith("clean") else 1


if __name__ == "__main__":
    sys.exit(main())
