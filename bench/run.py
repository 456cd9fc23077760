"""`make bench`: every performance figure of cosim next to a baseline measured in the same run.

    .venv/bin/python bench/run.py [--reps N] [--quick] [--setup] [--make-test] [--only S,...]

Each figure is the median of --reps repetitions (default 5; --quick: 3 and smaller workloads)
with min and max, next to its baseline (median, min, max) and the ratio figure / baseline of
the medians. Markdown goes to stdout; everything (all repetitions, the machine) to
runs/bench-<timestamp>/bench.json. Guest runs keep their run directories (console, trace)
under runs/bench-<timestamp>/runs/.

Sections (--only takes their names): link, smmu, endpoint, analyzer, boot, guest (the MMIO
round trip timed in a booted guest by /tests/cosim_mmio, and replaces), suite (`make run`'s
`cosim run --tests all`: its time and the wait for its verdict after the run), devloop (a line
added to the driver in a git copy of the 6.12 source, then `cosim run --kernel TREE --tests
replace`), setup. A section that cannot run (no QEMU, a guest test failing) becomes an
"error" row; the others still run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_analyzer  # noqa: E402
import bench_endpoint  # noqa: E402
import bench_link  # noqa: E402
import bench_mmio  # noqa: E402
import bench_smmu  # noqa: E402
import bench_suite  # noqa: E402
import bench_trace  # noqa: E402
import bench_walker  # noqa: E402

from cosim.endpoint.requester import PIECE  # noqa: E402
from cosim.launcher import trace_of  # noqa: E402

SECTIONS = ("link", "smmu", "endpoint", "analyzer", "boot", "guest", "suite", "devloop",
            "setup")
# The developer loop: a driver file changed, then `cosim run --kernel TREE --tests replace`.
DEVLOOP_FILE = "drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3.c"
DEVLOOP_REPLACES = 50
KERNEL = os.environ.get("KERNEL", "debian-6.12")
REPLACES = 50          # --count of each cosim_replace run
REPLACE_CASES = (("untranslated", "replace_untranslated"), ("ATS", "replace_ats"))
MMIO_READS = 10000     # --count of each cosim_mmio run (--quick: MMIO_READS_QUICK)
MMIO_READS_QUICK = 3000
# cosim_mmio's cases: the loop through the model, then the two model-free baselines.
MMIO_CASES = ("ep_bar_read", "cfg_read", "syscall_baseline")
E2E_WORKERS = 2        # `make test`'s xdist workers for its end-to-end part (E2E_WORKERS)


@dataclass
class Figure:
    section: str
    name: str
    unit: str
    values: list[float]
    baseline_name: str = ""
    baseline: list[float] = field(default_factory=list)
    note: str = ""
    bytes_per_op: int = 0   # MB/s figures: also show ops/s
    error: str = ""

    @property
    def ratio(self) -> float | None:
        if not self.values or not self.baseline:
            return None
        b = statistics.median(self.baseline)
        return statistics.median(self.values) / b if b else None


class Bench:
    def __init__(self, args: argparse.Namespace, out_dir: Path) -> None:
        self.args = args
        self.reps: int = args.reps
        self.quick: bool = args.quick
        self.out_dir = out_dir
        self.figures: list[Figure] = []
        self.raw: dict[str, object] = {}
        self.products = None
        self._link_raw_us: list[float] = []
        self._emit: tuple[list[float], list[float]] | None = None

    def add(self, fig: Figure) -> None:
        self.figures.append(fig)

    def say(self, text: str) -> None:
        print(f"[bench] {text}", file=sys.stderr, flush=True)

    def section(self, name: str, fn: Callable[[], None]) -> None:
        if self.args.only and name not in self.args.only:
            return
        t0 = time.monotonic()
        self.say(f"{name}: start")
        try:
            fn()
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as e:  # noqa: BLE001 - one broken section must not lose the
            # others (cosim.link.transport's LinkDown is a BaseException)
            self.say(f"{name}: failed\n{traceback.format_exc()}")
            self.add(Figure(name, f"{name} section", "", [], error=f"{type(e).__name__}: {e}"))
        self.say(f"{name}: done in {time.monotonic() - t0:.0f}s")

    # -- in-process sections ----------------------------------------------------------------
    def link(self) -> None:
        iters, secs = (1000, 0.1) if self.quick else (3000, 0.25)
        runs = [bench_link.measure(iters, secs) for _ in range(self.reps)]
        raw = [statistics.median(r["raw"]) for r in runs]
        lnk = [statistics.median(r["link"]) for r in runs]
        self._link_raw_us = raw
        self.raw["link"] = [{"raw_us_median": a, "link_us_median": b,
                             "dma_ops_per_s": {"/".join(map(str, k)): v
                                               for k, v in r["dma"].items()}}
                            for a, b, r in zip(raw, lnk, runs, strict=True)]
        self.add(Figure("MMIO round trip", "Link MMIO_READ, model process in Python, fake QEMU "
                        "in Python (ipc://)", "µs", lnk, "raw pyzmq PAIR ping-pong", raw,
                        note=f"median of {iters} round trips per repetition"))
        for size in bench_link.DMA_SIZES:
            # What the shared path cannot beat: a bare copy of the same size in this process.
            bare = statistics.median(bench_link.bare_copy_rate(size, secs)
                                     for _ in range(self.reps)) * size / 1e6
            for d in ("read", "write"):
                mbs = [r["dma"][("shared", d, size)] * size / 1e6 for r in runs]
                base = [r["dma"][("socket", d, size)] * size / 1e6 for r in runs]
                note = f"a bare {size} B copy in this process: {bare:,.0f} MB/s"
                if size > PIECE:
                    note += (f"; the endpoint moves at most {PIECE} B per request (its DMA "
                             "pieces, cosim/endpoint/requester.py), this size is the link's "
                             "max-dma: the shared path runs near memory-copy speed, and the "
                             "socket's per-message cost is spread over more bytes, so the "
                             "ratio shrinks with the size")
                self.add(Figure("DMA to guest RAM", f"LinkMemory {d}, {size} B, shared mapping",
                                "MB/s", mbs, "same over the socket (fake QEMU in Python)", base,
                                bytes_per_op=size, note=note))

    def _record_cost(self) -> tuple[list[float], list[float]]:
        """Records/s of the emit call with tracing off and with the binary trace to a file
        (measured once, shared by the sections that judge tracing's cost against it)."""
        if self._emit is None:
            n = 50_000 if self.quick else 200_000
            off = [bench_trace.emit_rate(n, None, "cst", check=False) for _ in range(self.reps)]
            with tempfile.TemporaryDirectory() as d:
                on = [bench_trace.emit_rate(n, os.path.join(d, "e.cst"), "cst", check=False)
                      for _ in range(self.reps)]
            self._emit = (off, on)
        return self._emit

    def _per_record_us(self) -> float:
        """The trace's own cost of one record beyond the call made with tracing off, µs."""
        off, on = self._record_cost()
        return 1e6 / statistics.median(on) - 1e6 / statistics.median(off)

    def smmu(self) -> None:
        n = 3000 if self.quick else 10000
        runs = [bench_smmu.measure(n) for _ in range(self.reps)]
        self.raw["smmu"] = runs
        col = lambda k: [r[k] for r in runs]  # noqa: E731
        for pages in bench_smmu.WORKING_SETS:
            self.add(Figure("SMMU translations", f"SMMUv3.translate TLB hit (caching), "
                            f"{pages}-page working set", "xlate/s", col(f"tlb_hit_{pages}"),
                            "full walk: STE + CD + 4 levels (coherent)",
                            col(f"full_walk_{pages}")))
        per_rec = self._per_record_us()
        for suffix, fmt in (("_traced", "binary trace (trace.cst)"),
                            ("_traced_jsonl", "JSON-lines trace")):
            for key, what in (("full_walk_16", "full walk"), ("tlb_hit_16", "TLB hit")):
                note = "3 records per translation"
                if suffix == "_traced":
                    # The floor at the record cost measured in this run: 3 records against the
                    # untraced translation's own time.
                    per_x = 1e6 / statistics.median(col(key))
                    note += (f"; at the trace's own {per_rec:.2f} µs a record (row \"one xlate "
                             f"record emitted\") against {per_x:.1f} µs a translation untraced, "
                             f"a floor of {3 * per_rec / per_x:.0%} (ratio "
                             f"{per_x / (per_x + 3 * per_rec):.2f})")
                self.add(Figure("trace overhead", f"SMMUv3.translate {what}, {fmt} to file",
                                "xlate/s", col(f"{key}{suffix}"), "same, not traced",
                                col(key), note=note))
        wn = 3000 if self.quick else 10000
        walks = [bench_walker.measure(wn) for _ in range(self.reps)]
        self.raw["walker"] = walks
        for key, name in (("s1", "stage 1, 4 KB, 4 levels"), ("nested", "nested 4+4 levels")):
            reads = walks[0][f"{key}_reads"]
            self.add(Figure("SMMU translations", f"walker alone ({name})", "walk/s",
                            [w[key] for w in walks],
                            f"bare 8-byte reads + decode, {reads} per walk",
                            [w["bare_reads"] / reads for w in walks]))

    def endpoint(self) -> None:
        ops, length = (2000 if self.quick else 5000), 4096
        runs = [bench_endpoint.measure(ops, length) for _ in range(self.reps)]
        self.raw["endpoint"] = runs
        mbs = lambda k: [ops * length / r[k] / 1e6 for r in runs]  # noqa: E731
        self.add(Figure("DMA to guest RAM", "endpoint COPY 4 KiB via ATC hits (in-process)",
                        "MB/s", mbs("untraced"), "raw SparseMemory copy", mbs("raw"),
                        bytes_per_op=length))
        for key, fmt in (("traced", "binary trace"), ("traced_jsonl", "JSON-lines trace")):
            self.add(Figure("trace overhead", f"endpoint COPY 4 KiB via ATC hits, {fmt} to file",
                            "MB/s", mbs(key), "same, not traced", mbs("untraced"),
                            bytes_per_op=length))
        # The floor of the overhead: what one record costs the model, beyond the emit call a
        # model makes with tracing off too, against the model work per copy untraced.
        off, on = self._record_cost()
        per_rec = self._per_record_us()
        per_op = statistics.median(r["untraced"] for r in runs) / ops * 1e6
        self.raw["trace_emit"] = {"off": off, "on": on}
        self.add(Figure("trace overhead", "one xlate record emitted to the binary trace",
                        "µs/record", [1e6 / r for r in on], "the same emit call, tracing off",
                        [1e6 / r for r in off],
                        note=f"the trace's own cost {per_rec:.2f} µs a record (buffering, "
                             "orjson, zstd, "
                             "the write); the ATC-hit copy writes 5 records against "
                             f"{per_op:.1f} µs of model work untraced: a floor of "
                             f"{5 * per_rec / per_op:.0%} for that path at this record cost"))
        fm = bench_trace.formats(records=50_000 if self.quick else 200_000)
        self.raw["trace_formats"] = fm
        self.add(Figure("trace overhead", "trace size, binary (zstd frames)", "bytes/record",
                        [fm["cst_bytes"] / fm["records"]], "JSON lines",
                        [fm["jsonl_bytes"] / fm["records"]],
                        note=f"{fm['jsonl_bytes'] / fm['cst_bytes']:.1f}x smaller; "
                             "endpoint-shaped generated trace"))
        self.add(Figure("trace overhead", "TraceReader, binary trace", "records/s",
                        [fm["cst_read"]], "same trace as JSON lines", [fm["jsonl_read"]]))

    def analyzer(self) -> None:
        records = 30_000 if self.quick else 100_000
        runs = [bench_analyzer.measure(records, "coherent", 1) for _ in range(self.reps)]
        self.raw["analyzer"] = runs
        self.add(Figure("analyzer", f"cosim analyze ({records:,} records, "
                        f"{runs[0]['bytes'] / 1e6:.0f} MB, marker windows)", "records/s",
                        [r["records"] / r["full"] for r in runs], "decode each line only",
                        [r["records"] / r["parse"] for r in runs],
                        note=f"verdict {runs[-1]['verdict']}"))
        # The endpoint-shaped trace: driver windows, thousands of attaches, ATC_INVs dropping
        # entries. CPU time, not wall: the machine may be shared. Each run a fresh process.
        big = 200_000 if self.quick else 1_000_000
        reps = 1 if self.quick else min(self.reps, 3)
        ep = [bench_analyzer.measure(big, "coherent", 1, "endpoint") for _ in range(reps)]
        self.raw["analyzer_endpoint"] = ep
        rss = max(r["full_rss"] for r in ep) / 1024
        base_rss = max(r["parse_rss"] for r in ep) / 1024
        self.add(Figure("analyzer", f"cosim analyze ({big:,} records, "
                        f"{ep[0]['bytes'] / 1e6:.0f} MB, endpoint-shaped)", "records/CPU s",
                        [r["records"] / r["full_cpu"] for r in ep], "decode each line only",
                        [r["records"] / r["parse_cpu"] for r in ep],
                        note=f"verdict {ep[-1]['verdict']}; peak RSS {rss:.0f} MB against "
                             f"{base_rss:.0f} MB for decoding only ({rss / base_rss:.1f}x); "
                             "wall-clock records/s "
                             f"{max(r['records'] / r['full'] for r in ep):,.0f}; what bounds "
                             f"it (the fastest run), "
                             f"{bench_analyzer.bound(min(ep, key=lambda r: r['full_cpu']))}"))
        # The same trace in the binary format the model writes (what `make run` analyses).
        epc = [bench_analyzer.measure(big, "coherent", 1, "endpoint", "cst") for _ in range(reps)]
        self.raw["analyzer_endpoint_cst"] = epc
        self.add(Figure("analyzer", f"cosim analyze ({big:,} records, "
                        f"{epc[0]['bytes'] / 1e6:.0f} MB binary, endpoint-shaped)",
                        "records/CPU s", [r["records"] / r["full_cpu"] for r in epc],
                        "decompress + decode each frame only",
                        [r["records"] / r["parse_cpu"] for r in epc],
                        note=f"verdict {epc[-1]['verdict']}; what bounds it (the fastest run), "
                             f"{bench_analyzer.bound(min(epc, key=lambda r: r['full_cpu']))}"))
        self.add(Figure("analyzer", f"cosim analyze peak RSS ({big:,} records, "
                        "endpoint-shaped)", "MB", [r["full_rss"] / 1024 for r in ep],
                        "decode each line only", [r["parse_rss"] / 1024 for r in ep],
                        note="VmHWM of the analyzing process; bounded by live state, not by "
                             "the trace length (the 300 MB target)"))

    # -- guest sections -----------------------------------------------------------------------
    def ensure_products(self):
        if self.products is None:
            from cosim import setup
            self.say("guest products: cosim.setup.ensure (cached after the first set-up)")
            self.products = setup.ensure(KERNEL, quiet=True)
        return self.products

    def _run(self, smmu: str, timeout: float = 600.0, **kw):
        from cosim.launcher import Run, RunConfig
        cfg = RunConfig(products=self.ensure_products(), tests=[], smmu=smmu, timeout=timeout,
                        runs_dir=self.out_dir / "runs", echo=False, **kw)
        return Run(cfg)

    def boot_once(self, smmu: str) -> tuple[float, float]:
        """(seconds from QEMU start to the guest's init, seconds from `poweroff -f` to exit)."""
        import pexpect
        run = self._run(smmu)
        try:
            if smmu == "cosim":
                run.start_model()
            t0 = time.monotonic()
            run.start_qemu()
            state = run.boot()
            t_boot = time.monotonic() - t0
            if state != "booted":
                raise RuntimeError(f"{smmu} guest: {state} (see {run.dir}/console.log)")
            assert run.qemu is not None
            t1 = time.monotonic()
            run.qemu.sendline("poweroff -f")
            run.qemu.expect(pexpect.EOF, timeout=60)
            t_off = time.monotonic() - t1
        finally:
            run.stop()
        return t_boot, t_off

    def boot(self) -> None:
        self.ensure_products()
        res: dict[str, list[tuple[float, float]]] = {"cosim": [], "builtin": []}
        for i in range(self.reps):  # interleaved, so drift in machine load hits both alike
            for smmu in res:
                res[smmu].append(self.boot_once(smmu))
                self.say(f"boot {i + 1}/{self.reps} {smmu}: {res[smmu][-1][0]:.1f}s + "
                         f"poweroff {res[smmu][-1][1]:.1f}s")
        self.raw["boot"] = res
        for idx, what in ((0, "QEMU start to guest init (COSIM-GUEST-READY)"),
                          (1, "`poweroff -f` to QEMU exit")):
            self.add(Figure("guest boot", f"{what}, cosim SMMU + endpoint", "s",
                            [r[idx] for r in res["cosim"]], "QEMU built-in smmuv3, no endpoint",
                            [r[idx] for r in res["builtin"]]))

    def guest(self) -> None:
        """One cosim boot: cosim_mmio (the MMIO round trip timed in the guest) and cosim_replace
        per case, --reps times each; replaces/s and the loops' records come from the model's
        trace of that boot."""
        import pexpect
        run = self._run("cosim")
        outputs: list[dict] = []
        mmio: list[dict] = []
        try:
            run.start_model()
            run.start_qemu()
            state = run.boot()
            if state != "booted":
                raise RuntimeError(f"cosim guest: {state} (see {run.dir}/console.log)")
            # Kernel messages (e.g. SMMU events) go to the serial console at its speed and
            # would be timed as replace cost; the trace keeps every event anyway.
            run.run_command("dmesg -n 1", timeout=30)
            for i in range(self.reps):
                mmio.append(self._mmio_rep(run))
                self.say(f"guest {i + 1}/{self.reps} cosim_mmio: "
                         f"{mmio[-1]['ep_bar_read'].median_ns / 1000:.0f} µs per BAR read "
                         "(median of batches)")
            for i in range(self.reps):
                for label, case in REPLACE_CASES:
                    cmd = f"/tests/cosim_replace --count {REPLACES} --only {case}"
                    t0 = time.monotonic()
                    out, code, st = self._guest_cmd(run, cmd)
                    wall = time.monotonic() - t0
                    self.say(f"guest {i + 1}/{self.reps} {case}: exit {code} ({st}) in "
                             f"{wall:.1f}s")
                    if st != "ok":
                        tail = "\n".join(out.splitlines()[-15:])
                        raise RuntimeError(f"{cmd}: guest {st}; last lines:\n{tail}")
                    # A failing check (an invariant violation) is the test suite's finding,
                    # not the benchmark's: the replaces still ran and are timed; say so.
                    verdict = "pass" if f"\nok 1 - {case}" in "\n" + out else "fail"
                    outputs.append({"case": label, "wall_s": wall, "verdict": verdict,
                                    "exit": code})
            assert run.qemu is not None
            run.qemu.sendline("poweroff -f")
            run.qemu.expect(pexpect.EOF, timeout=60)
        finally:
            run.stop()  # waits for the model to flush its trace
        from cosim.trace import read_trace
        records = read_trace(trace_of(run.dir)).records
        segments = replace_segments(records)
        windows = bench_mmio.mmio_windows(records)
        del records
        if len(segments) != len(outputs):
            raise RuntimeError(f"{len(outputs)} cosim_replace runs but {len(segments)} "
                               "test-begin/test-end pairs in the trace")
        self.raw["guest"] = {"run_dir": str(run.dir), "runs": [
            {**o, **s} for o, s in zip(outputs, segments, strict=True)]}
        self._mmio_figures(mmio, windows, run.dir)
        self._real_trace_figure(trace_of(run.dir))
        why = ("n/a: cosim_replace cannot run with the generator stopped (it checks generator "
               "progress after every replace; --rate 0 means 1), and QEMU's built-in smmuv3 "
               "has no ATS endpoint to replace under")
        for label, case in REPLACE_CASES:
            rates = [s["replaces_per_s"] for s in segments
                     if s["label"] == label and s["replaces_per_s"]]
            fails = sum(1 for o in outputs if o["case"] == label and o["verdict"] != "pass")
            verdict = (f"; cosim_replace --only {case} FAILED its checks in {fails} of "
                       f"{self.reps} runs (see {run.dir}/console.log), the replaces are timed "
                       "anyway" if fails else f"; cosim_replace --only {case} passed")
            self.add(Figure("iommufd replace", f"VFIO_DEVICE_ATTACH_IOMMUFD_PT replace under "
                            f"{label} traffic ({REPLACES} per run)", "replace/s", rates,
                            note=why + "; rate = (markers - 1) / (last attach-begin - first), "
                            "console log level 1" + verdict))

    @staticmethod
    def _guest_cmd(run, cmd: str, timeout: float = 900) -> tuple[str, int | None, str]:
        # Output to a file, shown afterwards: a test's lines on the serial console would
        # otherwise be timed as its cost.
        return run.run_command(f"{cmd} >/tmp/bench.out 2>&1; s=$?; cat /tmp/bench.out; "
                               "(exit $s)", timeout=timeout)

    def _mmio_rep(self, run) -> dict:
        """One repetition of cosim_mmio, a case per command: its results by case, and the CPU
        time the model and QEMU processes spent (per thread name) while the loop through the
        model ran."""
        assert run.model is not None and run.qemu is not None
        reads = MMIO_READS_QUICK if self.quick else MMIO_READS
        rep: dict = {}
        for case in MMIO_CASES:
            cpu0 = (bench_mmio.thread_cpu_ns(run.model.pid), bench_mmio.thread_cpu_ns(run.qemu.pid))
            t0 = time.monotonic()
            cmd = f"/tests/cosim_mmio --only {case} --count {reads}"
            out, code, st = self._guest_cmd(run, cmd)
            wall = time.monotonic() - t0
            cpu1 = (bench_mmio.thread_cpu_ns(run.model.pid), bench_mmio.thread_cpu_ns(run.qemu.pid))
            if st != "ok" or code != 0 or f"\nok 1 - {case}" not in "\n" + out:
                tail = "\n".join(out.splitlines()[-15:])
                raise RuntimeError(f"{cmd}: guest {st}, exit {code}; last lines:\n{tail}")
            res = bench_mmio.parse_results(out).get(case)
            if res is None or res.reads != reads or res.wrong:
                raise RuntimeError(f"{cmd}: no mmio-result line of {reads} right reads in:\n"
                                   + "\n".join(out.splitlines()[-15:]))
            rep[case] = res
            if case == "ep_bar_read":
                rep["cpu"] = {"model": bench_mmio.cpu_delta(cpu0[0], cpu1[0]),
                              "qemu": bench_mmio.cpu_delta(cpu0[1], cpu1[1]), "wall_s": wall}
        return rep

    def _mmio_figures(self, mmio: list[dict], windows: list, run_dir: Path) -> None:
        """The guest-timed MMIO round trip against the raw pyzmq ping-pong, and the model-free
        vCPU exit against a bare syscall, with what bounds the first in its note."""
        us = lambda rs, k: [r[k].median_ns / 1000 for r in rs]  # noqa: E731
        loop = us(mmio, "ep_bar_read")
        base = self._link_raw_us or [statistics.median(bench_link.measure(1000, 0.01)["raw"])
                                     for _ in range(self.reps)]
        reads = mmio[0]["ep_bar_read"].reads
        mean = statistics.median(r["ep_bar_read"].mean_ns for r in mmio) / 1000
        p90 = statistics.median(r["ep_bar_read"].p90_ns for r in mmio) / 1000
        cfg = statistics.median(us(mmio, "cfg_read"))
        sysc = statistics.median(us(mmio, "syscall_baseline"))
        # The model's share: its Python work per read (in-process CPU, no socket), and the CPU
        # the model and QEMU processes really spent during the loop, per read.
        svc = [bench_mmio.model_service(3000 if self.quick else 10000, traced=True)
               for _ in range(self.reps)]
        svc_med = {k: statistics.median(s[k] for s in svc) for k in svc[0]}
        rec = statistics.median(bench_mmio.record_cost(20000) for _ in range(self.reps))
        cpu = {p: {k: statistics.median(r["cpu"][p][k] for r in mmio) / reads / 1000
                   for k in ("main", "zmq", "threads")} for p in ("model", "qemu")}
        ok = [w for w in windows if w.id_reads == w.count and not w.other and not w.wrong_values]
        gaps = [bench_mmio.median_us(w.gaps_ns) for w in windows]
        trace_gap = statistics.median(g for g in gaps if g is not None) if any(gaps) else None
        trace_mean = statistics.median(sum(w.gaps_ns) / len(w.gaps_ns) / 1000
                                       for w in windows if w.gaps_ns) if any(gaps) else None
        self.raw["guest_mmio"] = {
            "run_dir": str(run_dir), "reads_per_run": reads,
            "runs": [{k: (asdict(v) if isinstance(v, bench_mmio.MmioResult) else v)
                      for k, v in r.items()} for r in mmio],
            "model_service_us": svc, "trace_record_us": rec,
            "trace_windows": [{k: v for k, v in asdict(w).items() if k != "gaps_ns"}
                              | {"gap_median_us": g} for w, g in zip(windows, gaps, strict=True)]}
        m, q = cpu["model"], cpu["qemu"]
        both = sum(m.values()) + sum(q.values())
        trace_fact = (f"every read is traced: {len(ok)} of {len(windows)} loops show exactly "
                      f"their {reads:,} ID reads as endpoint `mmio` records between their "
                      "markers and no other endpoint access"
                      + (f"; the model's clock saw a read every {trace_mean:.0f} µs (mean "
                         f"gap; median {trace_gap:.0f})" if trace_gap is not None
                         and trace_mean is not None else ""))
        self.add(Figure(
            "MMIO round trip", "MMIO round trip: guest BAR read loop, timed in the guest",
            "µs", loop, "raw pyzmq PAIR ping-pong", base,
            note=f"per repetition, the median over batches of 100 back-to-back 32-bit reads "
                 f"of the endpoint's BAR0 ID (/tests/cosim_mmio --only ep_bar_read --count "
                 f"{reads}, sysfs resource0, no driver) of the batch's CLOCK_MONOTONIC time "
                 f"per read; mean {mean:.0f} µs, p90 {p90:.0f} µs. What one read is made of: "
                 f"the model's Python work {svc_med['total']:.0f} µs CPU in-process, hot "
                 f"(decode {svc_med['decode']:.0f}, Model.serve {svc_med['serve']:.0f} "
                 f"including its one trace record of {rec:.1f} µs, encode "
                 f"{svc_med['encode']:.0f}, the idle loop's turn after it "
                 f"{svc_med['idle']:.0f}); "
                 f"during the loop (CPU per read, schedstat) the model process spent "
                 f"{m['main']:.0f} µs in its Python thread (that work, the kernel's side of "
                 "its blocking poll and its sends, all run cold: the process sleeps between "
                 f"requests and others use its CPU meanwhile) and {m['zmq']:.0f} µs in "
                 f"its ZeroMQ I/O thread; QEMU {q['threads']:.0f} µs in its vCPU threads (TCG, "
                 f"the exit, its C ZeroMQ client's send and poll), {q['main']:.0f} µs in its "
                 f"main loop (which watches the link's ZMQ_FD) and {q['zmq']:.0f} µs in "
                 f"its ZeroMQ I/O thread; a vCPU exit QEMU serves itself costs "
                 f"{max(cfg - sysc, 0):.0f} µs "
                 f"(config read minus syscall, below). Both processes together: {both:.0f} µs "
                 f"CPU per read of the {mean:.0f} µs it takes ("
                 + ("the rest is waiting for a CPU" if both < mean else
                    "more than the wall time: the model's idle-loop step, the I/O threads and "
                    "QEMU's main loop partly run beside the critical path on the other CPU")
                 + "). The raw ping-pong "
                 "takes the link's path (each message: sender -> its ZeroMQ I/O thread -> "
                 "ipc socket -> the "
                 "peer's I/O thread -> receiver), so the ratio above 1 is the model's Python "
                 f"work plus QEMU's exit and client; {trace_fact}"))
        self.add(Figure(
            "MMIO round trip", "guest sysfs config-space dword read: a vCPU exit QEMU serves "
            "itself (ECAM), no model, timed in the guest", "µs", us(mmio, "cfg_read"),
            "getppid() in the guest (the syscall alone)", us(mmio, "syscall_baseline"),
            note=f"/tests/cosim_mmio --only cfg_read / --only syscall_baseline --count "
                 f"{reads}, medians of batches of 100; the config read is pread() of the "
                 "endpoint's sysfs config file: the syscall, the kernel's config accessor "
                 "and one ECAM load that QEMU's PCIe host bridge answers from its copy of "
                 "config space"))

    def _real_trace_figure(self, trace: Path) -> None:
        """`cosim analyze` of a trace the real model wrote in this run (the guest section's
        boot: probe, the replaces, the MMIO loops), each repetition a fresh process."""
        reps = 1 if self.quick else min(self.reps, 3)
        full = [bench_analyzer._child(bench_analyzer._ANALYZE, trace) for _ in range(reps)]
        dec = [bench_analyzer._child(bench_analyzer._DECODE_ONLY_CST, trace) for _ in range(reps)]
        n = full[0][2]
        self.raw["analyzer_real"] = {"trace": str(trace), "full": full, "decode": dec}
        self.add(Figure("analyzer", f"cosim analyze of this run's guest trace ({n:,} records "
                        "the model wrote)", "records/CPU s", [n / f[1] for f in full],
                        "decompress + decode each frame only", [n / d[1] for d in dec],
                        note=f"wall {min(f[0] for f in full):.1f} s for the whole analysis "
                             f"(the 3 s target of a `make run` trace); peak RSS "
                             f"{max(f[4] for f in full) / 1024:.0f} MB; verdict {full[-1][3]}"))

    # -- make run's suite -----------------------------------------------------------------
    def suite(self) -> None:
        """`make run`'s own command, warm cache (`cosim run --tests all`): its wall time, and
        the wait for the verdict once the guest is done (the analysis reads the trace while
        the model writes it) against the same trace analysed whole afterwards."""
        self.ensure_products()
        reps = 1 if self.quick else min(self.reps, 2)
        runs: list[dict] = []
        for i in range(reps):
            d = self.out_dir / "runs" / f"suite-{i}"
            cmd = [sys.executable, "-m", "cosim", "run", "--quiet-setup", "--kernel", KERNEL,
                   "--tests", "all", "--runs-dir", str(d)]
            t0 = time.monotonic()
            r = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, timeout=3600)
            wall = time.monotonic() - t0
            summary_path = d / "latest" / "summary.json"
            if not summary_path.exists():
                raise RuntimeError(f"{' '.join(cmd)}: no summary.json (exit {r.returncode}):\n"
                                   + "\n".join(r.stdout.splitlines()[-15:]))
            summary = json.loads(summary_path.read_text())
            an = summary.get("analysis") or {}
            if summary["guest"] != "booted" or not summary.get("analysis_live") \
                    or "counts" not in an:
                raise RuntimeError(f"{' '.join(cmd)}: guest {summary['guest']}, analysis "
                                   f"{an.get('verdict')} (see {summary['run_dir']})")
            trace = trace_of(Path(summary["run_dir"]))
            # The baseline: the finished trace analysed in a fresh process, as before.
            after = bench_analyzer._child(bench_analyzer._ANALYZE, trace)
            if (after[3].split(",")[0], after[2]) != (an["verdict"], an["counts"]["records"]):
                raise RuntimeError(f"{trace}: the run's verdict {an['verdict']!r} of "
                                   f"{an['counts']['records']} records, analysed afterwards "
                                   f"{after[3]!r} of {after[2]}")
            runs.append({"wall_s": wall, "exit": r.returncode,
                         "wait_s": summary["analysis_wait_s"],
                         "records": an["counts"]["records"], "verdict": an["verdict"],
                         "after_wall_s": after[0], "after_cpu_s": after[1],
                         "expected": bool((summary.get("expectations") or {}).get("match")),
                         "run_dir": summary["run_dir"], "bytes": trace.stat().st_size})
            self.say(f"suite {i + 1}/{reps}: {wall:.0f} s, verdict {runs[-1]['wait_s']:.1f} s "
                     f"after the run ({runs[-1]['records']:,} records; "
                     f"{after[0]:.1f} s analysed afterwards)")
        self.raw["suite"] = runs
        last = runs[-1]
        self.add(Figure("suite", f"`make run` warm: `cosim run --kernel {KERNEL} --tests all`",
                        "s", [r["wall_s"] for r in runs],
                        note=f"{last['records']:,} records, {last['bytes'] / 1e6:.0f} MB trace; "
                             f"verdict {last['verdict']}, "
                             f"{'as the kernel' if last['expected'] else 'NOT as the kernel'}'s "
                             f"expectations record; exit {last['exit']}"))
        self.add(Figure("suite", "its analysis step: the wait for the verdict after the run "
                        "(the trace read while the model wrote it)", "s",
                        [r["wait_s"] for r in runs],
                        "the same trace analysed whole after the run (fresh process, wall)",
                        [r["after_wall_s"] for r in runs],
                        note=f"the 3 s target; analysed afterwards the trace takes "
                             f"{last['records'] / last['after_cpu_s']:,.0f} records/CPU s, so "
                             "the wait is what the analysis could not read while the guest "
                             "ran (it shares the two cores with QEMU and the model)"))

    # -- the developer loop -------------------------------------------------------------------
    def _devloop_once(self, tree: Path) -> dict[str, float]:
        """One `cosim run --kernel TREE --tests replace`: wall seconds in all, and the seconds
        of each set-up step it printed (`==> step` ... `done in Ns`)."""
        cmd = [sys.executable, "-m", "cosim", "run", "--kernel", str(tree), "--tests", "replace",
               "--replaces", str(DEVLOOP_REPLACES), "--runs-dir", str(self.out_dir / "runs")]
        t0 = time.monotonic()
        r = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=3600)
        out: dict[str, float] = {"all": time.monotonic() - t0}
        if "\nGuest: booted" not in r.stdout:
            raise RuntimeError(f"{' '.join(cmd)}: no boot (exit {r.returncode}):\n"
                               + "\n".join(r.stdout.splitlines()[-15:]))
        step = ""
        for ln in r.stdout.splitlines():
            if ln.startswith("==> "):
                step = ln[4:].split(":")[0]
            elif ln.strip().startswith("done in ") and step:
                out[step] = out.get(step, 0.0) + float(ln.split()[2].rstrip("s"))
        return out

    def devloop(self) -> None:
        """A kernel developer's loop on a git work tree of Debian's 6.12 source (the pristine
        copy `cosim mutate` makes, under its lock): a one-line change to the driver, then
        `cosim run --kernel TREE --tests replace`; the baseline is the same run with the tree
        as it was (its build kept by content: no kbuild pass)."""
        from cosim import mutate
        self.ensure_products()
        with mutate.tree_lock("debian-6.12", self.say):
            tree = mutate.pristine_copy("debian-6.12", self.say)
            mutate.ensure_clean(tree, self.say)
            src = tree / DEVLOOP_FILE
            original = src.read_bytes()
            self.say(f"devloop: warm-up run of {tree} (a full build the first time)")
            self._devloop_once(tree)
            touched: list[dict[str, float]] = []
            same: list[dict[str, float]] = []
            reps = min(self.reps, 3)
            try:
                for i in range(reps):  # interleaved: drift in machine load hits both alike
                    # A new line each time: new content, so a real incremental build.
                    src.write_bytes(original + f"/* cosim bench devloop {time.time_ns()} */\n"
                                    .encode())
                    touched.append(self._devloop_once(tree))
                    src.write_bytes(original)
                    same.append(self._devloop_once(tree))
                    self.say(f"devloop {i + 1}/{reps}: changed {touched[-1]['all']:.0f}s, "
                             f"unchanged {same[-1]['all']:.0f}s")
            finally:
                src.write_bytes(original)
        self.raw["devloop"] = {"tree": str(tree), "changed": touched, "unchanged": same}
        steps = sorted({k for r in touched for k in r if k != "all"})
        split = ", ".join(f"{k} {statistics.median(r.get(k, 0.0) for r in touched):.0f} s"
                          for k in steps)
        self.add(Figure("developer loop", f"a line added to {DEVLOOP_FILE.rsplit('/', 1)[1]}, "
                        f"then `cosim run --kernel TREE --tests replace --replaces "
                        f"{DEVLOOP_REPLACES}`", "s", [r["all"] for r in touched],
                        "the same run, the tree as it was (build kept by content)",
                        [r["all"] for r in same],
                        note=f"set-up steps of the changed runs (medians): {split}; the rest "
                             "is boot, the replace area and the analysis (about the "
                             "baseline's whole time)"))

    # -- set-up -----------------------------------------------------------------------------
    def _timed_cmd(self, cmd: list[str], env: dict[str, str] | None = None,
                   timeout: float = 3600) -> float:
        t0 = time.monotonic()
        r = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=timeout)
        took = time.monotonic() - t0
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed (exit {r.returncode}):\n"
                               + "\n".join(r.stdout.splitlines()[-15:]))
        return took

    def setup(self) -> None:
        setup_cmd = [sys.executable, "-m", "cosim", "setup", "--kernel", KERNEL]
        self.ensure_products()  # make sure the cache is warm before timing it
        cached = [self._timed_cmd(setup_cmd) for _ in range(self.reps)]
        self.raw["setup_cached_s"] = cached
        if self.args.setup:
            fresh = []
            for _ in range(1):  # twenty minutes each: one repetition
                with tempfile.TemporaryDirectory(prefix="cosim-fresh-cache-") as d:
                    env = {**os.environ, "COSIM_CACHE": d}
                    fresh.append(self._timed_cmd(setup_cmd, env=env, timeout=4 * 3600))
            self.raw["setup_fresh_s"] = fresh
            self.add(Figure("set-up", "`cosim setup`, empty COSIM_CACHE (fresh download + QEMU "
                            "+ kernel + initramfs builds)", "s", fresh,
                            "`cosim setup`, warm cache", cached, note="one repetition"))
        else:
            self.add(Figure("set-up", "`cosim setup`, warm cache", "s", cached,
                            note="fresh-cache set-up (~20 min) is measured with --setup"))
        if self.args.make_test:
            took = self._timed_make_test()
            self.raw["make_test_s"] = {k: asdict(v) if isinstance(v, bench_suite.Floor) else v
                                       for k, v in took.items()}
            self.add(Figure("set-up", "`make test`, warm cache (all unit + e2e tests)", "s",
                            [took["all"]], "`make unit` (no guest boots)", [took["unit"]],
                            note=f"one repetition; make test exit {took['rc']}: "
                                 f"{took['summary']}"))
            # What bounds it: the end-to-end tests' own work, shared by the xdist workers.
            fl = took["floor"]
            if isinstance(fl, bench_suite.Floor):
                self.add(Figure("set-up", "`make test`, warm cache", "s", [took["all"]],
                                "its floor: unit part + e2e work / workers",
                                [took["unit"] + fl.seconds],
                                note=f"what bounds it: {fl.explain()}"))
            else:
                self.add(Figure("set-up", "`make test` floor", "s", [], error=str(fl)))
        else:
            self.add(Figure("set-up", "`make test`, warm cache", "s", [],
                            note="measured with --make-test (it boots the guest many times)"))

    def _timed_make_test(self) -> dict:
        out: dict = {}
        junit = self.out_dir / "make-test-e2e.xml"
        for target in ("unit", "test"):
            t0 = time.monotonic()
            r = subprocess.run(["make", target, f"E2E_WORKERS={E2E_WORKERS}",
                                f"E2E_ARGS=--junitxml={junit}"], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               timeout=4 * 3600)
            out["all" if target == "test" else "unit"] = time.monotonic() - t0
            out["rc"] = r.returncode
            (self.out_dir / f"make-{target}.log").write_text(r.stdout)
        summary = [ln for ln in r.stdout.splitlines() if " in " in ln and "passed" in ln]
        out["summary"] = summary[-1].strip("= ") if summary else "no pytest summary"
        try:
            out["floor"] = bench_suite.floor(junit, E2E_WORKERS)
        except bench_suite.JUnitError as e:
            out["floor"] = str(e)
        return out


def replace_segments(records: list[dict]) -> list[dict]:
    """Per cosim_replace run (test-begin .. test-end): its label and replaces per second from
    the attach-begin markers."""
    out: list[dict] = []
    cur: dict | None = None
    for r in records:
        k = r.get("k")
        if k == "marker" and r.get("tag") == "test-begin" and "replace" in (r.get("label") or ""):
            cur = {"label": "ATS" if "ats" in r["label"] else "untranslated", "attach": []}
        elif cur is not None:
            if k == "marker" and r.get("tag") == "attach-begin":
                cur["attach"].append(r["t"])
            elif k == "marker" and r.get("tag") == "test-end":
                out.append(_summarise(cur))
                cur = None
    return out


def _summarise(seg: dict) -> dict:
    a = seg["attach"]
    rate = (len(a) - 1) / ((a[-1] - a[0]) / 1e9) if len(a) > 1 and a[-1] > a[0] else None
    return {"label": seg["label"], "replaces": len(a), "replaces_per_s": rate}


# -- output ----------------------------------------------------------------------------------
def _num(x: float) -> str:
    a = abs(x)
    if a >= 100:
        return f"{x:,.0f}"
    if a >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}" if a >= 1 else f"{x:.3f}"


def _cell(xs: list[float], unit: str, bytes_per_op: int = 0) -> tuple[str, str]:
    if not xs:
        return "", ""
    med = statistics.median(xs)
    main = f"{_num(med)} {unit}"
    if bytes_per_op:
        main += f" ({_num(med * 1e6 / bytes_per_op)} ops/s)"
    return main, f"{_num(min(xs))} – {_num(max(xs))}"


def markdown(figs: list[Figure], meta: dict) -> str:
    guest = f", guest {meta['guest_kernel']}" if meta.get("guest_kernel") else ""
    lines = [f"## cosim bench ({meta['when']}, {meta['machine']}{guest}, reps {meta['reps']}"
             f"{', quick' if meta['quick'] else ''})", "",
             "Each value: median of the repetitions, then min – max. Ratio = figure / "
             f"baseline (medians). Machine {meta['load']}.", "",
             "| section | figure | median | min – max | baseline | baseline median | "
             "min – max | ratio |",
             "|---|---|---:|---:|---|---:|---:|---:|"]
    notes: list[str] = []
    for f in figs:
        if f.error:
            lines.append(f"| {f.section} | **error** | | | {f.error.splitlines()[0][:150]} "
                         "| | | |")
            continue
        v, vr = _cell(f.values, f.unit, f.bytes_per_op)
        b, br = _cell(f.baseline, f.unit, f.bytes_per_op)
        ratio = f"{f.ratio:.2f}" if f.ratio is not None else "n/a"
        name = f.name
        if f.note:
            notes.append(f.note)
            name += f" [{len(notes)}]"
        if not f.values:
            v, vr = "not measured", ""
        lines.append(f"| {f.section} | {name} | {v} | {vr} | {f.baseline_name or 'n/a'} | "
                     f"{b} | {br} | {ratio} |")
    if notes:
        lines.append("")
        lines += [f"[{i}] {n}" for i, n in enumerate(notes, 1)]
    return "\n".join(lines) + "\n"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.startswith("model name"):
                cpu = ln.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, help="repetitions per figure (default 5, --quick 3)")
    ap.add_argument("--quick", action="store_true", help="3 repetitions, smaller workloads")
    ap.add_argument("--setup", action="store_true",
                    help="also time a fresh-cache `cosim setup` (about 20 minutes)")
    ap.add_argument("--make-test", action="store_true",
                    help="also time `make unit` and `make test` with a warm cache")
    ap.add_argument("--only", type=lambda s: [x.strip() for x in s.split(",") if x.strip()],
                    help=f"comma-separated sections: {', '.join(SECTIONS)}")
    ap.add_argument("--runs-dir", type=Path, default=ROOT / "runs")
    args = ap.parse_args(argv)
    if args.reps is None:
        args.reps = 3 if args.quick else 5
    if args.reps < 1:
        ap.error("--reps must be >= 1")
    for s in args.only or []:
        if s not in SECTIONS:
            ap.error(f"--only: unknown section {s!r} (sections: {', '.join(SECTIONS)})")

    when = dt.datetime.now()
    out_dir = args.runs_dir / f"bench-{when.strftime('%Y%m%d-%H%M%S')}"
    out_dir.mkdir(parents=True, exist_ok=True)
    b = Bench(args, out_dir)
    t0 = time.monotonic()
    # The link section runs first: its raw ping-pong is the guest MMIO figure's baseline.
    for name in SECTIONS:
        b.section(name, getattr(b, name))
    load = f"load average {os.getloadavg()[1]:.1f} over the last 5 min at the end"
    meta = {"when": when.strftime("%Y-%m-%d %H:%M"), "machine": machine(), "load": load,
            "reps": args.reps,
            "quick": args.quick, "kernel": KERNEL, "seconds": round(time.monotonic() - t0, 1),
            "cosim_qemu": os.environ.get("COSIM_QEMU")}
    if b.products is not None:
        meta["guest_kernel"] = b.products.kernel_version
        meta["qemu"] = str(b.products.qemu)
    md = markdown(b.figures, meta)
    print(md)
    doc = {"meta": meta, "figures": [
        {**asdict(f), "median": statistics.median(f.values) if f.values else None,
         "baseline_median": statistics.median(f.baseline) if f.baseline else None,
         "ratio": f.ratio} for f in b.figures], "raw": b.raw}
    (out_dir / "bench.json").write_text(json.dumps(doc, indent=1, default=str) + "\n")
    (out_dir / "bench.md").write_text(md)
    print(f"bench: {len(b.figures)} figures in {meta['seconds']:.0f}s; "
          f"{out_dir / 'bench.json'}", file=sys.stderr)
    return 1 if any(f.error for f in b.figures) else 0


if __name__ == "__main__":
    sys.exit(main())
