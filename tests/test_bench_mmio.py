"""bench/bench_mmio.py: the parser of cosim_mmio's result lines, the loop windows it finds in a
trace, and the in-process model measurement (its value, not its speed)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import bench_mmio  # noqa: E402

from cosim.arch import endpoint_regs as regs  # noqa: E402

LINE = ("# mmio-result target=ep_bar_read reads=3000 batch=100 batches=30 total_ns=450000000 "
        "mean_ns=150000 min_ns=120000 median_ns=140000 p90_ns=180000 max_ns=900000 wrong=0")


def test_parse_results_reads_each_case_line_and_ignores_the_rest() -> None:
    text = "\n".join(["TAP version 13", "1..2", "# ep_bar_read: --count reads", LINE,
                      "ok 1 - ep_bar_read",
                      LINE.replace("ep_bar_read", "cfg_read").replace("wrong=0", "wrong=2"),
                      "ok 2 - cfg_read"])
    res = bench_mmio.parse_results(text)
    assert sorted(res) == ["cfg_read", "ep_bar_read"]
    r = res["ep_bar_read"]
    assert (r.reads, r.batch, r.batches, r.median_ns, r.p90_ns, r.wrong) == \
        (3000, 100, 30, 140000, 180000, 0)
    assert res["cfg_read"].wrong == 2


@pytest.mark.parametrize("bad", [LINE.replace(" wrong=0", ""), LINE.replace("=3000", "=3e3"),
                                 LINE + " stray"])
def test_parse_results_refuses_a_line_it_cannot_read(bad: str) -> None:
    with pytest.raises(bench_mmio.ResultError):
        bench_mmio.parse_results(bad)


def test_result_keys_are_the_ones_the_guest_program_prints() -> None:
    src = (ROOT / "guest-tests" / "tests" / "cosim_mmio.c").read_text()
    fmt = "".join(re.findall(r'"([^"]*)"', src[src.index('"mmio-result'):src.index("l->target")]))
    assert fmt.startswith("mmio-result ") and bench_mmio.RESULT_PREFIX == "# mmio-result "
    keys = re.findall(r"(\w+)=%", fmt)
    assert keys == ["target", *bench_mmio.RESULT_KEYS]


def _rec(t: int, k: str, **f) -> dict:
    return {"t": t, "k": k, **f}


def _read(t: int, off: int = bench_mmio.ID_OFFSET, val: int = regs.ID_VALUE, dev: int = 1) -> dict:
    return _rec(t, "mmio", dev=dev, region=regs.BAR_REGS, off=off, size=4, rw="r", val=val)


def test_mmio_windows_count_the_reads_between_the_markers() -> None:
    begin = _rec(100, "marker", tag="test-begin", value=3, label=bench_mmio.MARKER_LABEL)
    end = _rec(900, "marker", tag="test-end", value=3, label=bench_mmio.MARKER_LABEL)
    records = [_read(50),                                   # before: not counted
               begin, _read(200), _read(350), _rec(400, "mmio", dev=0, off=0x20, size=4,
                                                    rw="r", val=0),  # the SMMU: not the ep's
               _read(500),
               # the end marker's own writes (label, tag, value) are not "other" accesses
               *[_rec(600 + i, "mmio", dev=1, region=regs.BAR_REGS, off=0x60 + 4 * i, size=4,
                      rw="w", val=0) for i in range(8)],
               _rec(700, "mmio", dev=1, region=regs.BAR_REGS, off=0x40, size=4, rw="w", val=6),
               _rec(701, "mmio", dev=1, region=regs.BAR_REGS, off=0x48, size=8, rw="w", val=3),
               end,
               _read(950),
               begin, _read(1000), _read(1100, val=0), _read(1200, off=0x8),
               _rec(1250, "mmio", dev=1, region=regs.BAR_REGS, off=0x10, size=4, rw="w", val=1),
               end,
               _rec(1300, "marker", tag="test-begin", value=1, label="replace")]
    w = bench_mmio.mmio_windows(records)
    assert len(w) == 2
    assert (w[0].count, w[0].id_reads, w[0].wrong_values, w[0].other, w[0].records) == \
        (3, 3, 0, 0, 14)
    assert w[0].gaps_ns == [150, 150]
    assert (w[1].id_reads, w[1].wrong_values, w[1].other) == (2, 1, 2)  # ID+8 read, RESET
    assert w[1].gaps_ns == [100]


def test_cpu_delta_per_role_never_goes_below_zero() -> None:
    assert bench_mmio.cpu_delta({"main": 5, "zmq": 3, "threads": 9},
                                {"main": 9, "zmq": 3, "threads": 2}) == \
        {"main": 4, "zmq": 0, "threads": 0}


def test_thread_cpu_of_this_process_has_its_main_thread_and_a_zmq_thread() -> None:
    import os

    import zmq
    ctx = zmq.Context()
    try:
        ctx.socket(zmq.PAIR).close()   # starts libzmq's I/O thread
        cpu = bench_mmio.thread_cpu_ns(os.getpid())
    finally:
        ctx.term()
    assert set(cpu) == {"main", "zmq", "threads"}
    assert cpu["main"] > 0, cpu


def test_model_service_serves_the_id_register_through_the_real_model() -> None:
    # model_service asserts the reply carries the ID value; the phases add up to the total.
    for traced in (False, True):
        s = bench_mmio.model_service(200, traced=traced)
        assert set(s) == {"decode", "serve", "encode", "idle", "total"}
        assert s["total"] == pytest.approx(s["decode"] + s["serve"] + s["encode"] + s["idle"])


def _bench_run():
    import importlib.util
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "bench" / "run.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_run"] = mod   # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_guest_mmio_figures_against_the_link_baseline(tmp_path: Path) -> None:
    import argparse
    run = _bench_run()
    b = run.Bench(argparse.Namespace(reps=1, quick=True, only=None), tmp_path)
    b._link_raw_us = [50.0]

    def res(target: str, median_ns: int) -> bench_mmio.MmioResult:
        return bench_mmio.MmioResult(target, 300, 100, 3, 3 * median_ns * 100, median_ns,
                                     median_ns, median_ns, median_ns, median_ns, 0)
    cpu = {"main": 300 * 90_000, "zmq": 300 * 20_000, "threads": 0}
    rep = {"ep_bar_read": res("ep_bar_read", 150_000), "cfg_read": res("cfg_read", 5_000),
           "syscall_baseline": res("syscall_baseline", 2_000),
           "cpu": {"model": cpu, "qemu": {**cpu, "main": 10 * 300_000}, "wall_s": 1.0}}
    window = bench_mmio.MmioWindow(300, 300, 0, 0, 310, [150_000] * 299)
    b._mmio_figures([rep], [window], tmp_path)
    loop, exit_ = b.figures
    assert loop.values == [150.0] and loop.baseline == [50.0] and loop.ratio == 3.0
    assert "1 of 1 loops show exactly their 300 ID reads" in loop.note
    assert "every 150 µs (mean gap; median 150)" in loop.note
    assert "90 µs in its Python thread" in loop.note and "10 µs in its main loop" in loop.note
    assert exit_.values == [5.0] and exit_.baseline == [2.0]
