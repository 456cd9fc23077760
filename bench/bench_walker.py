"""Walker throughput: full 4-level 4 KB stage 1 walks (and nested, stage 2) over SparseMemory.

Prints a markdown table of translations per second, each as a ratio against a baseline measured
in the same run: a bare loop doing the same number of 8-byte `mem.read` + decode calls. The
ratio says how much the walk logic costs on top of the descriptor fetches it cannot avoid.

    .venv/bin/python bench/bench_walker.py [--n 20000]
"""

from __future__ import annotations

import argparse
import time

from cosim.arch.descriptors import (
    TableBuilder,
    s1_leaf,
    s1_start_level,
    s2_leaf,
    s2_start_level,
)
from cosim.memory import SparseMemory
from cosim.smmu.walker import Stage1Regime, StageConfig, translate_stage1, translate_stage2
from cosim.translation_agent import Access

PAGES = 512
S1_TABLES = 0x4000_0000
S2_TABLES = 0x8000_0000
S1_TO_PA = 0x1_0000_0000   # stage 2 maps IPA x to PA x + S1_TO_PA


def vas(n: int) -> list[int]:
    # Spread over 4 x 7 x 5 level 0..2 entries and PAGES pages, so walks touch 140 leaf tables.
    return [(i % 4) << 39 | (i % 7) << 30 | (i % 5) << 21 | (i % PAGES) << 12 | 0x10
            for i in range(n)]


def leaf_oa(va: int) -> int:
    return 0x10_0000 + (va >> 12 & 0xFFFF) * 4096


def build_stage1(mem, addrs: list[int]) -> StageConfig:
    tb = TableBuilder(mem, 4096, 16, s1_start_level(4096, 16), S1_TABLES)
    for va in set(addrs):
        tb.map(va, 3, s1_leaf(leaf_oa(va), page=True))
    return StageConfig(stage=1, granule=4096, tsz=16, ttb=tb.root, oas=48)


def build_stage2(mem, ipa_pages: list[int]) -> StageConfig:
    tb = TableBuilder(mem, 4096, 16, s2_start_level(4096, 2), S2_TABLES)
    for ipa in ipa_pages:
        tb.map(ipa, 3, s2_leaf(ipa + S1_TO_PA, page=True))
    return StageConfig(stage=2, granule=4096, tsz=16, ttb=tb.root, oas=48, sl0=2)


class Offset:
    def __init__(self, mem, off):
        self.mem, self.off = mem, off

    def write(self, addr, data, rid=0, msi=False):
        self.mem.write(addr + self.off, data)


def rate(fn, n: int) -> float:
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return n / best


def measure(n: int = 20000) -> dict[str, float]:
    """One measurement: bare descriptor reads/s and translations/s per walk kind.

    Keys: `bare_reads` (8-byte reads + decode per second), `s1`, `s2`, `nested`
    (translations per second), and `<kind>_reads` (descriptor reads per walk).
    """
    access = Access(read=True)
    addrs = vas(n)

    mem = SparseMemory()
    cfg = build_stage1(mem, addrs)
    regime = Stage1Regime(cfg, None)
    first = translate_stage1(mem, regime, addrs[0], access)
    assert first.ok and len(first.reads) == 4, first
    flat = [a for va in addrs for a, _ in translate_stage1(mem, regime, va, access).reads]

    def baseline():
        read = mem.read
        for a in flat:
            int.from_bytes(read(a, 8), "little")

    def s1_walks():
        for va in addrs:
            translate_stage1(mem, regime, va, access)

    # Nested: the same stage 1 tables in IPA space, stage 2 4-level, identity + offset.
    nmem = SparseMemory()
    s1n = TableBuilder(Offset(nmem, S1_TO_PA), 4096, 16, 0, S1_TABLES)
    ipas = set()
    for va in set(addrs):
        s1n.map(va, 3, s1_leaf(leaf_oa(va), page=True))
        ipas.add(leaf_oa(va))
    table_pages = {S1_TABLES + i * 4096 for i in range((s1n.next_free - S1_TABLES) // 4096)}
    s2cfg = build_stage2(nmem, sorted(ipas | table_pages))
    s1ncfg = StageConfig(stage=1, granule=4096, tsz=16, ttb=s1n.root, oas=48)
    nregime = Stage1Regime(s1ncfg, None)
    nested_first = translate_stage1(nmem, nregime, addrs[0], access, s2cfg)
    assert nested_first.ok and len(nested_first.reads) == 24, nested_first
    nn = max(n // 5, 1)

    def nested_walks():
        for va in addrs[:nn]:
            translate_stage1(nmem, nregime, va, access, s2cfg)

    ipa_list = [leaf_oa(va) + 0x10 for va in addrs]

    def s2_walks():
        for ipa in ipa_list:
            translate_stage2(nmem, s2cfg, ipa, access)

    return {"bare_reads": rate(baseline, len(flat)),  # descriptor reads per second
            "s1": rate(s1_walks, n), "s1_reads": 4,
            "s2": rate(s2_walks, n), "s2_reads": 4,
            "nested": rate(nested_walks, nn), "nested_reads": 24}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    m = measure(ap.parse_args().n)
    base = m["bare_reads"]
    rows = [
        ("stage 1, 4 KB, 4 levels", m["s1"], 4),
        ("stage 2, 4 KB, 4 levels", m["s2"], 4),
        ("nested 4+4 levels (24 reads)", m["nested"], 24),
    ]
    print(f"baseline: {base:,.0f} bare 8-byte mem.read + decode per second\n")
    print("| walk | translations/s | reads/walk | vs. bare reads (same count) |")
    print("|---|---:|---:|---:|")
    for name, r, reads in rows:
        print(f"| {name} | {r:,.0f} | {reads} | {r / (base / reads):.2f} |")


if __name__ == "__main__":
    main()
