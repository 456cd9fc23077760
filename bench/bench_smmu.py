"""SMMU translations per second through `SMMUv3.translate` (STE + CD + walk + TLB + trace).

The tables are built as Linux builds them (tests/smmu_driver.py programs the model over MMIO):
one stream, stage 1, 4 KB granule, 4 levels, a working set of distinct pages (16, the size of
the guest replace test's window, and 1024). Two cache modes:

* `caching`: STE, CD and TLB entries are kept until invalidated, so after one warm-up pass
  every timed translation is a TLB hit;
* `coherent`: every translation re-reads STE, CD and the four-level walk (the default mode,
  which catches drivers that forget an invalidation).

Each is also run with the trace written to a file, in the run's binary format
(`BinaryTraceWriter(path)`) and as JSON lines (`TraceWriter(path)`), versus disabled
(`TraceWriter(None)`): the ratio is the model's slowdown with tracing on.

`tlbi_va_<pages>` is the invalidation side of the TLB index: single-page TLBI_NH_VA calls per
second on a TLB holding every page of the working set (each call removes one entry).

    .venv/bin/python bench/bench_smmu.py [--n 20000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "tests"))  # the Linux-shaped test driver

from smmu_driver import Driver, s1_cd, s1_ste  # noqa: E402

from cosim.smmu import SmmuOptions  # noqa: E402
from cosim.trace import TraceWriter, open_writer  # noqa: E402
from cosim.translation_agent import Access  # noqa: E402

SID, ASID, VMID = 8, 1, 0  # VMID: the STE's S2VMID, which tags stage 1 TLB entries too
WORKING_SETS = (16, 1024)  # pages
IOVA_BASE = 0x10_0000_0000  # spread over several level 0..2 entries, see iovas()
PA_BASE = 0x8000_0000


def iovas(pages: int) -> list[int]:
    # Strides chosen so the walk touches several tables at every level.
    return sorted({IOVA_BASE + ((i % 3) << 39 | (i % 5) << 30 | (i % 7) << 21 | i << 12)
                   for i in range(pages)})


def build(cache_mode: str, trace: TraceWriter, pages: int) -> tuple[Driver, list[int]]:
    d = Driver(SmmuOptions(cache_mode=cache_mode)).init()
    addrs = iovas(pages)
    ttb = d.s1_tables({va: PA_BASE + n * 4096 for n, va in enumerate(addrs)})
    cdtab = d.cd_table(SID)
    d.write_cd(cdtab, 0, s1_cd(ttb, asid=ASID))
    d.write_ste(SID, s1_ste(cdtab, vmid=VMID))
    d.smmu.trace = trace
    return d, addrs


def rate(cache_mode: str, n: int, trace_path: str | None, pages: int = 16,
         fmt: str = "cst") -> float:
    """Translations per second of `n` reads spread over `pages` mapped pages, traced in
    `fmt` to `trace_path` (None: not traced)."""
    trace = open_writer(trace_path, fmt, cache_mode=cache_mode)  # type: ignore[arg-type]
    d, addrs = build(cache_mode, trace, pages)
    translate, access = d.smmu.translate, Access(read=True)
    for va in addrs:  # warm-up: fills the TLB in caching mode; checks every page maps
        t = translate(SID, None, va, access)
        assert t.ok, t
    seq = [addrs[i % len(addrs)] for i in range(n)]
    # CPU time of this process (the trace's writes included): the machine may be shared.
    t0 = time.process_time()
    for va in seq:
        translate(SID, None, va, access)
    elapsed = time.process_time() - t0
    trace.close()
    if cache_mode == "caching":
        # The TLB hit is the model's own business, not the device's: ask the translator.
        assert d.smmu.translator.resolve(SID, None, seq[-1], access).tlb, \
            "caching mode: last lookup missed the TLB"
    return n / elapsed


def tlbi_rate(pages: int, rounds: int = 5) -> float:
    """Single-page TLBI_NH_VA invalidations per second against a TLB of `pages` entries."""
    d, addrs = build("caching", TraceWriter(None), pages)
    translate, access, tlb = d.smmu.translate, Access(read=True), d.smmu.tlb
    elapsed = 0.0
    for _ in range(rounds):
        for va in addrs:
            translate(SID, None, va, access)
        assert len(tlb.entries) == len(addrs)
        t0 = time.perf_counter()
        for va in addrs:
            tlb.nh_va(VMID, ASID, va, va + 4096)
        elapsed += time.perf_counter() - t0
        assert not tlb.entries, "every page was invalidated"
    return rounds * len(addrs) / elapsed


def measure(n: int = 20000) -> dict[str, float]:
    """Translations/s, keys `tlb_hit_<pages>` and `full_walk_<pages>` for each working set,
    each also with `_traced` (binary trace written to a file) and `_traced_jsonl` (JSON lines)
    appended; `tlbi_va_<pages>`:
    invalidations/s (see the module docstring)."""
    out = {}
    with tempfile.TemporaryDirectory() as d:
        for pages in WORKING_SETS:
            for key, mode in ((f"tlb_hit_{pages}", "caching"), (f"full_walk_{pages}", "coherent")):
                out[key] = rate(mode, n, None, pages)
                out[key + "_traced"] = rate(mode, n, os.path.join(d, f"{key}.cst"), pages)
                out[key + "_traced_jsonl"] = rate(mode, n, os.path.join(d, f"{key}.jsonl"),
                                                  pages, "jsonl")
            out[f"tlbi_va_{pages}"] = tlbi_rate(pages)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000, help="timed translations per cell")
    m = measure(ap.parse_args().n)
    print("| path | trace off /s | binary trace /s | slowdown | JSON lines /s | slowdown |")
    print("|---|---:|---:|---:|---:|---:|")
    for pages in WORKING_SETS:
        for key, name in ((f"tlb_hit_{pages}", "TLB hit (cache_mode=caching)"),
                          (f"full_walk_{pages}", "STE + CD + 4-level walk (coherent)")):
            off, on, js = m[key], m[key + "_traced"], m[key + "_traced_jsonl"]
            print(f"| {name}, {pages} pages | {off:,.0f} | {on:,.0f} | {off / on:.2f}x "
                  f"| {js:,.0f} | {off / js:.2f}x |")
    for pages in WORKING_SETS:
        print(f"\n{pages} pages: TLB hit vs full walk "
              f"{m[f'tlb_hit_{pages}'] / m[f'full_walk_{pages}']:.1f}x; single-page TLBI_NH_VA "
              f"{m[f'tlbi_va_{pages}']:,.0f}/s", end="")
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
