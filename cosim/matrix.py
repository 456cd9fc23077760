"""`cosim matrix`: the hitless suite over kernels x cache modes x areas, one `cosim run` per
cell, each judged against its kernel's recorded expectations (tests/expectations/), in one
table: Markdown for the terminal, a static HTML page, and JSON (docs/matrix.md).

Cells are independent guest runs. They run as plain `cosim run` subprocesses on a
`concurrent.futures` thread pool (`-j N` workers): each subprocess already owns its QEMU and
model process groups and cleans them up on every exit path, so the pool only starts, waits
for and, on Ctrl-C, terminates them. `--collect DIR...` builds the same table from run
directories made elsewhere (a CI farm's jobs, one per cell) without running anything.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as _dt
import html
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import expectations, launcher
from .mutate import test_at, tests_by_line
from .setup import KERNEL_CHOICES, ROOT, SetupError, ensure
from .smmu.options import CACHE_MODES

DEFAULT_MODES = ("coherent", "strict")
# The rule whose offences are aborts inside an attach at an address both domains map (the
# "aborts in attaches" column; an attach to the blocked domain aborts everything, rightly).
ABORT_RULES = ("inv3-abort-during-attach",)
# The rules whose offences are a use of a cache entry an invalidation had removed (the
# "stale uses" column): the SMMU's own caches, the device's ATC, the SMMU's TLB.
STALE_RULES = ("stale-cache", "inv2-invalidated-atc", "inv2-invalidated-tlb")
# Analysis verdicts that mean the run could not be judged at all.
UNJUDGED = ("error", "unreadable", "unavailable", "none")
PERFETTO = "perfetto.json"
FINDING_PAGES = ROOT / "docs" / "findings"
# A cell's `cosim run` gets this long beyond its own --timeout before it is terminated.
GRACE_S = 300.0


class MatrixError(Exception):
    """Bad input or an unusable run directory: one line for the user, exit 2."""


@dataclass(frozen=True)
class Cell:
    kernel: str                 # a KERNEL_CHOICES name (or, collected, whatever the run had)
    mode: str                   # the model's --cache-mode
    areas: tuple[str, ...]      # the guest areas the run ran

    @property
    def name(self) -> str:
        return f"{self.kernel}_{self.mode}_{'+'.join(self.areas)}"


@dataclass
class CellResult:
    cell: Cell
    verdict: str                 # expected | differs | error
    run_dir: str = ""
    kernel_version: str = ""
    guest: str = ""
    analysis: str = ""           # the analysis verdict of the run
    findings: list[str] = field(default_factory=list)     # recorded finding ids it showed
    missing: list[str] = field(default_factory=list)      # recorded ids it should have shown
    new: list[str] = field(default_factory=list)          # rule@test matching no finding
    differences: list[str] = field(default_factory=list)  # every difference, as sentences
    attaches: int | None = None
    aborts: int | None = None    # offences of ABORT_RULES
    stale: int | None = None     # offences of STALE_RULES
    report: str = ""             # paths; "" when the run has none
    perfetto: str = ""
    note: str = ""


# -- input ------------------------------------------------------------------------------------

def _names(text: str, what: str, choices: Iterable[str]) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    allowed = list(choices)
    bad = [n for n in names if n not in allowed]
    if bad or not names:
        raise MatrixError(f"unknown {what} {', '.join(repr(b) for b in bad) or '(none)'}; "
                          f"choose from {', '.join(allowed)}")
    return list(dict.fromkeys(names))


def parse_kernels(text: str | None) -> list[str]:
    return list(KERNEL_CHOICES) if text is None else _names(text, "kernel", KERNEL_CHOICES)


def parse_modes(text: str | None) -> list[str]:
    return list(DEFAULT_MODES) if text is None else _names(text, "cache mode", CACHE_MODES)


def parse_areas(text: str | None) -> list[tuple[str, ...]]:
    """Comma-separated cells' areas; `a+b` is one cell running both areas in one guest."""
    if text is None:
        return [(a,) for a in launcher.AREAS]
    groups = [g.strip() for g in text.split(",") if g.strip()]
    if not groups:
        raise MatrixError(f"no area given; choose from {', '.join(launcher.AREAS)}")
    out: list[tuple[str, ...]] = []
    for g in groups:
        areas = tuple(_names(g.replace("+", ","), "area", launcher.AREAS))
        if areas not in out:
            out.append(areas)
    return out


def cells(kernels: list[str], modes: list[str], areas: list[tuple[str, ...]]) -> list[Cell]:
    return [Cell(k, m, a) for k in kernels for m in modes for a in areas]


# -- judging one run --------------------------------------------------------------------------

def mode_of(summary: dict) -> str:
    """The cache mode a run's model had: its trace header's, else its --cache-mode option."""
    header = (summary.get("analysis") or {}).get("header") or {}
    if header.get("cache_mode"):
        return str(header["cache_mode"])
    args = [str(a) for a in summary.get("model_args", [])]
    for i, a in enumerate(args):
        if a.startswith("--cache-mode="):
            return a.split("=", 1)[1]
        if a == "--cache-mode" and i + 1 < len(args):
            return args[i + 1]
    return "coherent"


def load_run(run_dir: Path) -> tuple[Cell, dict]:
    """The cell a `cosim run` directory is, and its summary; MatrixError when unusable."""
    f = run_dir / "summary.json"
    try:
        summary = json.loads(f.read_text())
    except OSError as e:
        raise MatrixError(f"{f}: {e.strerror}") from None
    except ValueError:
        raise MatrixError(f"{f}: not JSON") from None
    if not isinstance(summary, dict) or "kernel_choice" not in summary or "areas" not in summary:
        raise MatrixError(f"{f}: no kernel_choice/areas (a run from before `cosim matrix`; "
                          "run it again)")
    kernel = str(summary["kernel_choice"]) or str(summary.get("kernel", "?"))
    return Cell(kernel, mode_of(summary), tuple(str(a) for a in summary["areas"])), summary


def expectation_for(cell: Cell) -> expectations.Expectation:
    """The kernel's recorded expectations, cut to the cell's areas; a kernel without a file
    is expected to pass everything with no violation (as `cosim run` judges a path)."""
    if cell.kernel in KERNEL_CHOICES and expectations.available(cell.kernel):
        return expectations.for_areas(expectations.load(cell.kernel), cell.areas)
    return expectations.Expectation(cell.kernel, {}, set(), [], None)


def judge(cell: Cell, summary: dict, begins: list[tuple[int, str]],
          exp: expectations.Expectation) -> CellResult:
    """One cell: its findings by id, what differs from `exp`, its counts."""
    analysis = summary.get("analysis") or {}
    res = CellResult(cell, "expected", run_dir=str(summary.get("run_dir", "")),
                     kernel_version=str(summary.get("kernel", "")),
                     guest=str(summary.get("guest", "")),
                     analysis=str(analysis.get("verdict", "none")))
    observed: dict[str, int] = {}
    for v in analysis.get("violations", []):
        key = f"{v['rule']}@{test_at(begins, int(v.get('line') or 0))}"
        observed[key] = observed.get(key, 0) + int(v.get("count", 1))
    known: set[str] = set()
    for f in exp.findings:
        keys = expectations.finding_keys(f)
        known |= keys
        (res.findings if keys & set(observed) else res.missing).append(str(f["id"]))
    res.new = sorted(k for k in observed if k not in known)
    counts = analysis.get("counts") or {}
    if exp.verdict == "incomplete" and counts.get("attaches") == 0:
        # A file's 'incomplete' says its kernel's attaches cannot be shown hitless (no driver
        # probes); an area that attaches nothing has no such attach, and is judged clean.
        exp = dataclasses.replace(exp, verdict="clean")
    res.differences = expectations.mismatches(exp, summary)
    res.differences += [f"analysis: {k} matches no recorded finding ({observed[k]} offence(s))"
                        for k in res.new]
    if "attaches" in counts:
        res.attaches = int(counts["attaches"])
        res.aborts = _offences(analysis, ABORT_RULES)
        res.stale = _offences(analysis, STALE_RULES)
    if res.guest != "booted" or res.analysis in UNJUDGED:
        res.verdict = "error"
        res.note = (f"guest {res.guest}" if res.guest != "booted"
                    else f"analysis {res.analysis}: {analysis.get('why', '')}".rstrip(": "))
    elif res.differences:
        res.verdict = "differs"
    return res


def _offences(analysis: dict, rules: tuple[str, ...]) -> int:
    return sum(int(v.get("count", 1)) for v in analysis.get("violations", [])
               if v.get("rule") in rules)


def judge_dir(run_dir: Path) -> CellResult:
    cell, summary = load_run(run_dir)
    res = judge(cell, summary, tests_by_line(launcher.trace_of(run_dir)), expectation_for(cell))
    res.run_dir = str(run_dir)
    res.report = str(run_dir / "report.txt") if (run_dir / "report.txt").is_file() else ""
    res.perfetto = str(run_dir / PERFETTO) if (run_dir / PERFETTO).is_file() else ""
    return res


def find_runs(dirs: list[Path]) -> list[Path]:
    """Every run directory (one holding summary.json) at or under `dirs`, once each; the
    runs dir's `latest` symlinks are not followed."""
    found: dict[Path, None] = {}
    for d in dirs:
        if not d.is_dir():
            raise MatrixError(f"--collect {d}: not a directory")
        for top, subdirs, files in os.walk(d):
            subdirs.sort()
            if "summary.json" in files:
                found.setdefault(Path(top).resolve(), None)
    if not found:
        raise MatrixError(f"--collect {' '.join(map(str, dirs))}: no run directory "
                          "(summary.json) found")
    return list(found)


def _order(r: CellResult) -> tuple:
    def idx(seq: Iterable[str], x: str) -> int:
        seq = list(seq)
        return seq.index(x) if x in seq else len(seq)
    return (idx(KERNEL_CHOICES, r.cell.kernel), r.cell.kernel, idx(CACHE_MODES, r.cell.mode),
            [idx(launcher.AREAS, a) for a in r.cell.areas], r.run_dir)


def collect(dirs: list[Path]) -> list[CellResult]:
    """The table of existing runs; every directory is read before anything is written."""
    return sorted((judge_dir(d) for d in find_runs(dirs)), key=_order)


def exit_code(results: list[CellResult]) -> int:
    return 0 if results and all(r.verdict == "expected" for r in results) else 1


# -- the table ---------------------------------------------------------------------------------

HEAD = ["kernel", "mode", "areas", "verdict", "findings", "attaches", "aborts in attaches",
        "stale uses", "report", "perfetto"]


def _num(n: int | None) -> str:
    return "-" if n is None else str(n)


def _findings_text(r: CellResult) -> list[str]:
    return (r.findings + [f"{i} (missing)" for i in r.missing]
            + [f"new: {k}" for k in r.new])


def _page(finding: str) -> str:
    """The finding's page in docs/findings (`cosim findings`), "" when it has none."""
    page = FINDING_PAGES / f"{finding}.md"
    return str(page) if page.is_file() else ""


def _link(path: str, base: Path | None) -> str:
    """`path` relative to `base` (the written table's directory: it moves with the runs), or
    absolute when `base` is None (the terminal)."""
    if not path:
        return ""
    return os.path.relpath(path, base) if base is not None else os.path.abspath(path)


def _kernel_label(r: CellResult) -> str:
    return r.cell.kernel + (f" ({r.kernel_version})" if r.kernel_version else "")


def render_markdown(results: list[CellResult], base: Path | None,
                    notes: Sequence[str] = ()) -> str:
    """The table as Markdown; links relative to `base` (where the file is written), absolute
    when it is None."""
    def esc(s: str) -> str:
        return s.replace("|", "\\|")

    def link(text: str, path: str) -> str:
        return f"[{text}]({_link(path, base)})" if path else "-"

    def found(r: CellResult) -> str:
        shown = [link(f, _page(f)) if _page(f) else esc(f) for f in r.findings]
        return ", ".join(shown + [esc(t) for t in _findings_text(r)[len(r.findings):]]) or "-"

    lines = ["| " + " | ".join(HEAD) + " |", "|" + "---|" * len(HEAD)]
    for r in results:
        row = [_kernel_label(r), r.cell.mode, "+".join(r.cell.areas),
               r.verdict + (f" ({r.note})" if r.note else "")]
        nums = [_num(r.attaches), _num(r.aborts), _num(r.stale)]
        lines.append("| " + " | ".join(esc(c) for c in row) + f" | {found(r)} | "
                     + " | ".join(nums) + " | " + link("report", r.report) + " | "
                     + link("perfetto", r.perfetto) + " |")
    diffs = [(r, d) for r in results for d in r.differences]
    if diffs:
        lines += ["", "Differences from the recorded expectations:", ""]
        lines += [f"- {r.cell.kernel} {r.cell.mode} {'+'.join(r.cell.areas)}: {d}"
                  for r, d in diffs]
    if notes:
        lines += [""] + [f"Note: {n}" for n in notes]
    return "\n".join(lines) + "\n"


CSS = """
body { font-family: sans-serif; margin: 2em; }
table { border-collapse: collapse; }
th, td { border: 1px solid #999; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #eee; }
td.num { text-align: right; }
tr.expected td.verdict { background: #cfc; }
tr.differs td.verdict { background: #fcc; }
tr.error td.verdict { background: #fc9; }
ul.diff { margin: 0.2em 0; padding-left: 1.2em; font-size: 90%; }
"""


def render_html(results: list[CellResult], base: Path, title: str,
                notes: Sequence[str] = ()) -> str:
    """The same table as a self-contained static page (inline CSS, no script)."""
    e = html.escape

    def link(text: str, path: str) -> str:
        return f'<a href="{e(_link(path, base))}">{text}</a>' if path else "-"

    def found(r: CellResult) -> str:
        shown = [link(e(f), _page(f)) if _page(f) else e(f) for f in r.findings]
        return "<br>".join(shown + [e(t) for t in _findings_text(r)[len(r.findings):]]) or "-"

    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{e(title)}</title><style>{CSS}</style></head><body>",
           f"<h1>{e(title)}</h1>",
           f"<p>{sum(r.verdict == 'expected' for r in results)} of {len(results)} cells as "
           "recorded in tests/expectations/.</p>"]
    out += [f"<p>Note: {e(n)}</p>" for n in notes]
    out += ["<table>", "<tr>" + "".join(f"<th>{e(h)}</th>" for h in HEAD) + "</tr>"]
    for r in results:
        verdict = e(r.verdict) + (f"<br><small>{e(r.note)}</small>" if r.note else "")
        if r.differences:
            verdict += '<ul class="diff">' + "".join(f"<li>{e(d)}</li>"
                                                     for d in r.differences) + "</ul>"
        cols = [f"<td>{e(_kernel_label(r))}</td>", f"<td>{e(r.cell.mode)}</td>",
                f"<td>{e('+'.join(r.cell.areas))}</td>", f'<td class="verdict">{verdict}</td>',
                f"<td>{found(r)}</td>",
                f'<td class="num">{_num(r.attaches)}</td>',
                f'<td class="num">{_num(r.aborts)}</td>',
                f'<td class="num">{_num(r.stale)}</td>',
                f"<td>{link('report', r.report)}</td>",
                f"<td>{link('perfetto', r.perfetto)}</td>"]
        out.append(f'<tr class="{e(r.verdict)}">' + "".join(cols) + "</tr>")
    out += ["</table>", "</body></html>"]
    return "\n".join(out) + "\n"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_table(out_dir: Path, results: list[CellResult], notes: Sequence[str] = ()) -> None:
    """matrix.md, index.html and matrix.json in `out_dir`, each replaced whole."""
    title = f"cosim {out_dir.name}"
    _write_atomic(out_dir / "matrix.md", f"# {title}\n\n" + render_markdown(results, out_dir,
                                                                             notes))
    _write_atomic(out_dir / "index.html", render_html(results, out_dir, title, notes))
    doc = {"cells": [{**asdict(r), "cell": {**asdict(r.cell), "name": r.cell.name}}
                     for r in results], "notes": list(notes), "exit_code": exit_code(results)}
    _write_atomic(out_dir / "matrix.json", json.dumps(doc, indent=2) + "\n")


def new_out_dir(runs_dir: Path) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = runs_dir / f"matrix-{stamp}"
    n = 1
    while out.exists():
        out = runs_dir / f"matrix-{stamp}-{n}"
        n += 1
    out.mkdir(parents=True)
    return out


# -- running -----------------------------------------------------------------------------------

@dataclass
class Options:
    kernels: list[str]
    modes: list[str]
    areas: list[tuple[str, ...]]
    jobs: int = 1
    runs_dir: Path = Path("runs")
    replaces: int = 50
    timeout: float = 1800.0
    perfetto: bool = True
    kernels_given: bool = False     # named by the user: a set-up failure is an error


class _Procs:
    """The cells' live `cosim run` processes, so an interrupt can terminate them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.live: set[subprocess.Popen[bytes]] = set()
        self.stopping = threading.Event()

    def start(self, cmd: list[str], log: Path) -> subprocess.Popen[bytes] | None:
        with self.lock:
            if self.stopping.is_set():
                return None
            with open(log, "ab") as f:
                # Its own session: a terminal's Ctrl-C reaches the matrix, which forwards it.
                p = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=f,
                                     stderr=subprocess.STDOUT, start_new_session=True)
            self.live.add(p)
            return p

    def done(self, p: subprocess.Popen[bytes]) -> None:
        with self.lock:
            self.live.discard(p)

    def stop_all(self) -> None:
        """SIGTERM every cell's `cosim run` (it stops its QEMU and model) and wait for it."""
        with self.lock:
            self.stopping.set()
            live = list(self.live)
        for p in live:
            try:
                p.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in live:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def cell_command(cell: Cell, runs_dir: Path, opts: Options) -> list[str]:
    return [sys.executable, "-m", "cosim", "run", "--quiet-setup", "--kernel", cell.kernel,
            "--tests", ",".join(cell.areas), "--runs-dir", str(runs_dir),
            "--timeout", str(opts.timeout), "--replaces", str(opts.replaces),
            f"--model-arg=--cache-mode={cell.mode}"]


def _wait(procs: _Procs, p: subprocess.Popen[bytes], timeout: float) -> str:
    try:
        p.wait(timeout=timeout)
        return ""
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        return f"stopped after {timeout:.0f} s"
    finally:
        procs.done(p)


def run_cell(cell: Cell, out_dir: Path, opts: Options, procs: _Procs) -> CellResult:
    """One cell's `cosim run` (and its Perfetto file), judged; never raises for the run."""
    cdir = out_dir / "cells" / cell.name
    cdir.mkdir(parents=True, exist_ok=True)
    log = cdir / "run.log"
    cmd = cell_command(cell, cdir, opts)
    log.write_text(shlex.join(cmd) + "\n")
    p = procs.start(cmd, log)
    if p is None:
        return CellResult(cell, "error", note="not run: interrupted")
    stopped = _wait(procs, p, opts.timeout + GRACE_S)
    run_dir = (cdir / "latest").resolve() if (cdir / "latest").exists() else None
    if run_dir is None or not (run_dir / "summary.json").is_file():
        return CellResult(cell, "error", note=stopped or f"cosim run exited {p.returncode} "
                          f"without a summary.json (see {log})")
    if opts.perfetto and launcher.trace_of(run_dir).is_file() and not stopped:
        q = procs.start([sys.executable, "-m", "cosim", "analyze", "-q", "--perfetto",
                         str(run_dir / PERFETTO), str(launcher.trace_of(run_dir))], log)
        if q is not None:
            _wait(procs, q, opts.timeout)
    try:
        res = judge_dir(run_dir)
    except MatrixError as e:
        return CellResult(cell, "error", run_dir=str(run_dir), note=str(e))
    if stopped:
        res.verdict, res.note = "error", stopped
    return res


def set_up(opts: Options, say: Callable[[str], None]) -> tuple[list[str], list[str]]:
    """Build (or take from the cache) each kernel once, before any cell starts, so parallel
    cells never build the same product. Returns the kernels to run and notes on the ones
    left out: a default kernel that does not build here is left out; a named one is an
    error (SetupError)."""
    kept, notes = [], []
    for k in opts.kernels:
        say(f"==> matrix: set-up of {k}")
        try:
            ensure(k)
            kept.append(k)
        except SetupError as e:
            if opts.kernels_given:
                raise
            notes.append(f"{k} left out: it does not build here ({e})")
            say(f"    {notes[-1]}")
    if not kept:
        raise SetupError("no kernel builds here: " + "; ".join(notes))
    return kept, notes


def execute(opts: Options, say: Callable[[str], None] = print
            ) -> tuple[list[CellResult], Path]:
    """Run every cell, `opts.jobs` at a time; the table is rewritten as each cell ends."""
    kernels, notes = set_up(opts, say)
    todo = cells(kernels, opts.modes, opts.areas)
    out_dir = new_out_dir(opts.runs_dir)
    say(f"==> matrix: {len(todo)} cells, {opts.jobs} at a time, in {out_dir}")
    procs = _Procs()
    results: list[CellResult] = []

    def on_signal(signum, frame):  # noqa: ARG001 - SIGTERM/SIGHUP end the matrix like Ctrl-C
        raise KeyboardInterrupt

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGHUP)}
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=opts.jobs)
    try:
        futures = {pool.submit(run_cell, c, out_dir.resolve(), opts, procs): c for c in todo}
        for fut in concurrent.futures.as_completed(futures):
            r = fut.result()
            results.append(r)
            say(f"    {len(results)}/{len(todo)} {r.cell.kernel} {r.cell.mode} "
                f"{'+'.join(r.cell.areas)}: {r.verdict}"
                + (f" ({', '.join(_findings_text(r))})" if _findings_text(r) else "")
                + (f" - {r.note}" if r.note else ""))
            write_table(out_dir, sorted(results, key=_order), notes)
    except KeyboardInterrupt:
        procs.stop_all()
        pool.shutdown(wait=True, cancel_futures=True)
        write_table(out_dir, sorted(results, key=_order),
                    notes + ["interrupted: the table lists the cells that finished"])
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        for s, h in old.items():
            signal.signal(s, h)
    results.sort(key=_order)
    return results, out_dir
