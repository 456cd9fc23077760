"""End to end: area mmio (guest-tests/tests/cosim_mmio.c) in a real 6.12 guest. The program
reports as many reads as it was asked for, every one returned the endpoint's ID, and the
model's trace holds exactly those reads, each an endpoint `mmio` record of BAR0 ID, between
the loop's markers. Nothing here is about time: the figures are bench/run.py's."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import ROOT

from cosim import launcher, setup
from cosim.arch import endpoint_regs as regs
from cosim.trace import read_trace

sys.path.insert(0, str(ROOT / "bench"))
import bench_mmio  # noqa: E402

pytestmark = pytest.mark.e2e

READS = 1234   # not the program's default (2000), nor a multiple of its batch of 100


def test_mmio_area_reads_the_id_as_often_as_asked(products_612: setup.Products,
                                                  tmp_path: Path) -> None:
    cfg = launcher.RunConfig(products=products_612, tests=["mmio"], runs_dir=tmp_path / "runs",
                             test_args={"mmio": f"--count {READS}"}, echo=False,
                             kernel_choice="debian-6.12")
    out = launcher.execute(cfg)
    assert out.guest == "booted", out.results
    tests = {r.name: r for r in out.results}
    assert sorted(tests) == [f"mmio/{c}" for c in ("cfg_read", "ep_bar_read",
                                                   "syscall_baseline")], sorted(tests)
    for t in tests.values():
        assert t.status == "pass", (t.name, t.reason, t.output[-8:])
    results = {}
    for t in tests.values():
        results.update(bench_mmio.parse_results("\n".join(t.output)))
    assert sorted(results) == ["cfg_read", "ep_bar_read", "syscall_baseline"], results
    for name, r in results.items():
        assert (r.reads, r.wrong) == (READS, 0), (name, r)
        assert r.batches == (READS + r.batch - 1) // r.batch, (name, r)
        assert r.min_ns <= r.median_ns <= r.p90_ns <= r.max_ns, (name, r)

    # The model saw each of the loop's reads, and nothing else of the endpoint, between the
    # markers; every read it served returned the ID.
    records = read_trace(launcher.trace_of(out.run_dir)).records
    windows = bench_mmio.mmio_windows(records)
    assert len(windows) == 1, windows
    w = windows[0]
    assert (w.count, w.id_reads, w.wrong_values, w.other) == (READS, READS, 0, 0), w
    assert len(w.gaps_ns) == READS - 1
    # The config-space and syscall loops never reach the model: no endpoint register read
    # of ID after the ep_bar_read loop's end marker.
    end = max(i for i, r in enumerate(records)
              if r.get("k") == "marker" and r.get("tag") == "test-end"
              and r.get("label") == bench_mmio.MARKER_LABEL)
    assert not [r for r in records[end:] if r.get("k") == "mmio" and r.get("dev", 0) != 0
                and r.get("region") == regs.BAR_REGS and r.get("off") == bench_mmio.ID_OFFSET]
